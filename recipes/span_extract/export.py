"""The span extractor's raw-string serving signature (tokenization and span decoding in the graph).

Signature ``serving_default(question, context)``; ``task.export`` writes it as a SavedModel (load with
``import tensorflow_text`` then ``tf.saved_model.load(path)``; bertkit is not needed); the outputs are listed in
:func:`serving`.
"""

from __future__ import annotations

import numpy as np


def serving(model, tokenizer, head: dict):
    """The contract's ``serving`` step: a ``bertkit.export.Serving`` whose ``serving_default(question, context)``
    (string vectors) gives start/end logits, per-token character offsets into the context, and the decoded best span
    (character start/end, text, score); the in-graph tokenizer is its trackable.

    One window per pair: the in-graph tokenizer truncates the passage to ``max_len`` (longest first); long passages
    need ``predict.py``, which windows them."""
    import tensorflow as tf

    from bertkit.export import InGraphTokenizer, Serving

    in_graph = InGraphTokenizer.from_tokenizer(tokenizer, max_len=head["max_len"])
    max_answer_len = int(head["max_answer_len"])
    spec = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[spec, spec])
    def serve(question, context):
        encoded = in_graph.encode(question, context)
        token_ids, segment_ids = encoded["token_ids"], encoded["segment_ids"]
        passage = (segment_ids == 1) & (token_ids != in_graph.sep_id) & (token_ids != in_graph.pad_id)
        logits = model({"token_ids": token_ids, "segment_ids": segment_ids,
                        "passage_mask": tf.cast(passage, tf.int32)}, training=False)
        start_logits, end_logits = logits["start"], logits["end"]
        # best start <= end < start + max_answer_len on the passage: a banded (seq x seq) score per pair
        scores = start_logits[:, :, None] + end_logits[:, None, :]
        seq = tf.shape(scores)[1]
        band = tf.linalg.band_part(tf.ones([seq, seq], tf.bool), 0, max_answer_len - 1)
        both = passage[:, :, None] & passage[:, None, :] & band[None]
        scores = tf.where(both, scores, tf.constant(-np.inf, scores.dtype))
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=1, output_type=tf.int32)
        start, end = best // seq, best % seq
        offsets = tf.where(passage[:, :, None], encoded["offsets"], -1)
        char_start = tf.gather(offsets[:, :, 0], start, batch_dims=1)
        char_end = tf.gather(offsets[:, :, 1], end, batch_dims=1)
        text = tf.strings.substr(context, char_start, char_end - char_start, unit="UTF8_CHAR")
        return {"start_logits": start_logits, "end_logits": end_logits, "offsets": offsets,
                "answer_start": char_start, "answer_end": char_end, "answer": text,
                "score": tf.reduce_max(flat, axis=1)}

    return Serving({"serving_default": serve}, {"tokenizer": in_graph})
