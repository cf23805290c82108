"""The relation extractor's raw-string serving signatures (tokenization and decoding in the graph).

Signatures (``task.export`` writes them as a SavedModel; load it with ``import tensorflow_text`` then
``tf.saved_model.load(path)``; bertkit is not needed):

- ``serving_default(texts)``: all triples of a batch of texts, flat: ``sentence_index`` (which input text),
  ``subject``, ``predicate``, ``object`` (strings) and ``subject_start``, ``subject_end``, ``object_start``,
  ``object_end`` (character offsets into that text, end exclusive).
- ``subjects(texts)``: the first stage alone: ``sentence_index``, ``subject``, ``subject_start``, ``subject_end``.
- ``objects(texts, subject_start, subject_end)``: the second stage for one given subject per text (character
  offsets, e.g. from ``subjects``): ``pair_index`` (which input row), ``predicate``, ``object``, ``object_start``,
  ``object_end``.

Thresholds are the run's (baked in as constants); the decoding rule is the recipe's: each start above the
threshold pairs with the nearest end at or after it that is above the threshold.
"""

from __future__ import annotations


def decode_in_graph(start_probs, end_probs, valid, threshold: float):
    """Graph version of ``task.decode_spans`` for a batch: ``(n, seq, P)`` probabilities, ``valid`` ``(n, seq)``
    -> int32 vectors ``row, label, start, end`` of every decoded span."""
    import tensorflow as tf

    valid = valid[..., None]
    is_start = (start_probs > threshold) & valid
    is_end = tf.transpose((end_probs > threshold) & valid, [0, 2, 1])       # (n, P, seq)
    starts = tf.cast(tf.where(is_start), tf.int32)                        # (k, 3): row, position, label
    row, position, label = starts[:, 0], starts[:, 1], starts[:, 2]
    candidates = tf.gather_nd(is_end, tf.stack([row, label], axis=1))      # (k, seq)
    after = tf.range(tf.shape(candidates)[1])[None, :] >= position[:, None]
    ok = candidates & after
    found = tf.reduce_any(ok, axis=1)
    end = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)   # first True = nearest end
    keep = lambda x: tf.boolean_mask(x, found)  # noqa: E731
    return keep(row), keep(label), keep(position), keep(end)


def serving(model, tokenizer, head):
    """The contract's ``serving`` step: the trained cascade (``task.build_model``), split into its two stages,
    behind the signatures above (``triples`` is ``serving_default``), as a ``bertkit.export.Serving`` whose
    trackable is the in-graph tokenizer."""
    import tensorflow as tf

    from bertkit.export import InGraphTokenizer, Serving

    from .task import inference_stages

    in_graph = InGraphTokenizer.from_tokenizer(tokenizer, max_len=head["max_len"])
    names = tf.constant(head["predicates"])
    subject_threshold, object_threshold = (float(head["thresholds"][k]) for k in ("subject", "object"))
    subjects_model, object_head = inference_stages(model)

    text_spec = tf.TensorSpec([None], tf.string, name="texts")

    @tf.function(input_signature=[text_spec])  # traced once, called by all three signatures
    def encode(texts):
        enc = in_graph.encode(texts)
        offsets = enc["offsets"]
        valid = offsets[..., 1] > offsets[..., 0]  # text tokens; [CLS], [SEP] and padding have (0, 0)
        hidden, s_start, s_end = subjects_model({"token_ids": enc["token_ids"], "segment_ids": enc["segment_ids"]},
                                                training=False)
        return offsets, valid, tf.cast(hidden, tf.float32), s_start, s_end

    def chars(offsets, row, token_start, token_end):
        start = tf.gather_nd(offsets[..., 0], tf.stack([row, token_start], axis=1))
        end = tf.gather_nd(offsets[..., 1], tf.stack([row, token_end], axis=1))
        return start, end

    def substrings(texts, row, start, end):
        return tf.strings.substr(tf.gather(texts, row), start, end - start, unit="UTF8_CHAR")

    def objects_of(texts, offsets, valid, hidden, row, token_start, token_end):
        o_start, o_end = object_head([tf.gather(hidden, row), tf.stack([token_start, token_end], axis=1)],
                                     training=False)
        pair, label, s, e = decode_in_graph(o_start, o_end, tf.gather(valid, row), object_threshold)
        sentence = tf.gather(row, pair)
        start, end = chars(offsets, sentence, s, e)
        return pair, {"predicate": tf.gather(names, label), "object": substrings(texts, sentence, start, end),
                      "object_start": start, "object_end": end}

    @tf.function(input_signature=[text_spec])
    def subjects(texts):
        offsets, valid, _, s_start, s_end = encode(texts)
        row, _, s, e = decode_in_graph(s_start[..., None], s_end[..., None], valid, subject_threshold)
        start, end = chars(offsets, row, s, e)
        return {"sentence_index": row, "subject": substrings(texts, row, start, end), "subject_start": start,
                "subject_end": end}

    @tf.function(input_signature=[text_spec])
    def triples(texts):
        offsets, valid, hidden, s_start, s_end = encode(texts)
        row, _, s, e = decode_in_graph(s_start[..., None], s_end[..., None], valid, subject_threshold)
        pair, found = objects_of(texts, offsets, valid, hidden, row, s, e)
        sentence = tf.gather(row, pair)
        start, end = chars(offsets, sentence, tf.gather(s, pair), tf.gather(e, pair))
        return {"sentence_index": sentence, "subject": substrings(texts, sentence, start, end),
                "subject_start": start, "subject_end": end, **found}

    @tf.function(input_signature=[text_spec, tf.TensorSpec([None], tf.int32, name="subject_start"),
                                  tf.TensorSpec([None], tf.int32, name="subject_end")])
    def objects(texts, subject_start, subject_end):
        offsets, valid, hidden, _, _ = encode(texts)
        seq = tf.shape(valid)[1]
        # First text token starting at/after the subject's start; last text token ending at/before its end.
        first = valid & (offsets[..., 0] >= subject_start[:, None])
        last = valid & (offsets[..., 1] <= subject_end[:, None])
        token_start = tf.argmax(tf.cast(first, tf.int32), axis=1, output_type=tf.int32)
        token_end = seq - 1 - tf.argmax(tf.cast(tf.reverse(last, [1]), tf.int32), axis=1, output_type=tf.int32)
        row = tf.range(tf.shape(texts)[0])
        pair, found = objects_of(texts, offsets, valid, hidden, row, token_start, token_end)
        return {"pair_index": pair, **found}

    return Serving({"serving_default": triples, "subjects": subjects, "objects": objects}, {"tokenizer": in_graph})
