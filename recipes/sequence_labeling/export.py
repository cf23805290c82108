"""The tagger's raw-string serving signature: word splitting, tokenization and decoding in the graph.

``task.export`` writes it as a SavedModel; load that with ``import tensorflow_text`` then ``tf.saved_model.load(path)``
(bertkit is not needed); the signature is described in ``tagger_serving``. ``entities_from_export`` turns one row of
its output into the entity list of ``task.predict``. Importing this module builds nothing.
"""

from __future__ import annotations

from .data import SPACE_PATTERN_RE2, WORD_PATTERN_RE2
from .task import char_entities


def tagger_serving(model, tokenizer, tags: list[str], *, max_len: int = 512):
    """A ``bertkit.export.Serving`` whose ``serving_default(texts)`` takes raw strings and returns, per word (padded):
    ``words``, ``tags`` (Viterbi in the graph when the model has a CRF), ``starts``/``ends`` (character offsets into
    the text) and ``num_words`` (words in the text) with ``num_tagged`` (words that fit in ``max_len`` pieces:
    the export does not window, so a longer text is reported, not silently cut; use ``predict.py`` for those).

    Words are split with the same rule as ``data.split_words`` (``WORD_PATTERN_RE2``; one word per visible character
    for a ``per_char`` tokenizer), each word is tokenised on its own by the in-graph twin of ``tokenizer``
    (``bertkit.export.InGraphTokenizer``, the trackable) and read at its first piece, exactly as in training.
    """
    import tensorflow as tf

    from bertkit.export import InGraphTokenizer, Serving, tf_text  # tensorflow-text, imported quietly there

    word_pattern = r"[^\s\p{Z}\p{C}]" if tokenizer.per_char else WORD_PATTERN_RE2
    in_graph = InGraphTokenizer.from_tokenizer(tokenizer, max_len=max_len)
    names = tf.constant(tags)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def serve(texts):
        words, byte_starts, byte_ends = tf_text.regex_split_with_offsets(
            texts, SPACE_PATTERN_RE2 + "|" + word_pattern, word_pattern)
        # byte offsets -> character offsets: position of each word's first/last byte among the text's characters
        _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8", errors="replace")
        big = tf.int64.max
        char_bytes = char_bytes.to_tensor(big)
        starts = tf.searchsorted(char_bytes, byte_starts.to_tensor(big), side="left")
        ends = tf.searchsorted(char_bytes, byte_ends.to_tensor(big), side="left")
        pieces = in_graph.tokenize(words.flat_values)["token_ids"]              # (all words, pieces)
        empty = tf.equal(pieces.row_lengths(), 0)                                # e.g. only accents: [UNK]
        unk = tf.ragged.boolean_mask(tf.fill(tf.stack([pieces.nrows(), 1]), in_graph.unk_id), empty[:, None])
        pieces = tf.concat([pieces, unk], axis=1)
        per_text = tf.RaggedTensor.from_row_splits(pieces, words.row_splits)     # (texts, words, pieces)
        first = tf.cumsum(per_text.row_lengths(axis=2), axis=1, exclusive=True) + 1   # first-piece positions
        budget = in_graph.max_len - 2
        fits = first <= budget
        word_index = tf.ragged.boolean_mask(first, fits)
        flat = per_text.merge_dims(1, 2)[:, :budget]
        n = flat.nrows()
        column = lambda v: tf.fill(tf.stack([n, 1]), tf.constant(v, flat.dtype))
        token_ids = tf.concat([column(in_graph.cls_id), flat, column(in_graph.sep_id)], axis=1).to_tensor(0)
        inputs = {"token_ids": tf.cast(token_ids, tf.int32), "segment_ids": tf.zeros_like(token_ids, tf.int32),
                  "word_index": tf.cast(word_index.to_tensor(0), tf.int32)}
        tag_ids = model.decode(inputs)
        num_tagged = tf.cast(word_index.row_lengths(), tf.int32)
        mask = tf.sequence_mask(num_tagged, tf.shape(tag_ids)[1])
        return {"words": words.to_tensor(""),
                "tags": tf.where(mask, tf.gather(names, tag_ids), ""),
                "starts": tf.cast(starts, tf.int32), "ends": tf.cast(ends, tf.int32),
                "num_words": tf.cast(words.row_lengths(), tf.int32), "num_tagged": num_tagged}

    return Serving({"serving_default": serve}, {"tokenizer": in_graph})


def entities_from_export(text: str, output: dict, row: int) -> list[dict]:
    """Entities of row ``row`` of the exported signature's output (NumPy values), like ``task.predict``'s."""
    n = int(output["num_tagged"][row])
    tags = [t.decode() for t in output["tags"][row][:n]]
    spans = list(zip(output["starts"][row][:n].tolist(), output["ends"][row][:n].tolist()))
    return char_entities(text, spans, tags)
