"""Keras building blocks around the keras-bert encoder: exact GELU, masking, pooling, a mixed-precision-safe
attention layer, and the custom objects needed to reload a saved model.

Importing this module registers nothing: Keras sees these objects only through :func:`custom_objects` (used as a
``tf.keras.utils.custom_object_scope``) or when a layer is built explicitly.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "NEG_INF",
    "gelu_exact",
    "masked_logits",
    "MaskedLogits",
    "Pooler",
    "FirstPosition",
    "DtypeSafeMultiHeadAttention",
    "LookupTokenEmbedding",
    "custom_objects",
    "skip_autograph",
]

# Large enough that softmax/exp of it is exactly 0 next to ordinary logits, small enough in magnitude that it stays
# finite in float16 (max 65504) and bfloat16 even when up to six masked scores are added together (as CRF path
# scores or start+end span scores do).
NEG_INF = -1.0e4


def gelu_exact(x):
    """GELU with the exact erf, as Hugging Face's ``"gelu"`` (keras-bert reads ``"gelu"`` as the tanh approximation,
    Google's convention). Converted checkpoints name it ``"hidden_act": "gelu_exact"``."""
    return tf.nn.gelu(x, approximate=False)


def masked_logits(logits, mask):
    """``logits`` where ``mask`` is true, :data:`NEG_INF` elsewhere (in the logits' dtype).

    ``mask`` broadcasts against ``logits`` (bool or 0/1 numbers). Replacing rather than adding keeps the result
    finite in float16 whatever the logits are.
    """
    logits = tf.convert_to_tensor(logits)
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        mask = tf.not_equal(mask, tf.zeros((), mask.dtype))
    neg = tf.constant(NEG_INF, dtype=logits.dtype)
    return tf.where(mask, logits, neg)


class MaskedLogits(tf.keras.layers.Layer):
    """Layer form of :func:`masked_logits`: ``MaskedLogits()([logits, mask])``.

    With ``from_token_ids=True`` the second input is the ``token_ids`` tensor and the mask is ``token_ids != 0``,
    broadcast over any trailing logits axes (e.g. ``(batch, seq, labels)``).
    """

    def __init__(self, from_token_ids: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.from_token_ids = from_token_ids

    def call(self, inputs):
        logits, mask = inputs
        if self.from_token_ids:
            mask = tf.not_equal(tf.cast(mask, tf.int32), 0)
        mask = tf.convert_to_tensor(mask)
        extra = tf.rank(logits) - tf.rank(mask)
        mask = tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([extra], tf.int32)], axis=0))
        return masked_logits(logits, mask)

    def compute_mask(self, inputs, mask=None):
        return None  # the padding is encoded in the values now

    def get_config(self):
        return {**super().get_config(), "from_token_ids": self.from_token_ids}


class Pooler(tf.keras.layers.Layer):
    """Sequence output ``(batch, seq, hidden)`` -> a fixed-size vector, or the sequence unchanged.

    Modes: ``"cls"`` the first position (``[CLS]``); ``"mean"`` the mean over non-padding positions;
    ``"none"`` the hidden states as they are. Call as ``Pooler(mode)([hidden, token_ids])``; padding is
    ``token_ids == 0``. The mean is computed in float32 and cast back, so it is exact under mixed precision too.
    """

    MODES = ("cls", "mean", "none")

    def __init__(self, mode: str = "cls", **kwargs):
        if mode not in self.MODES:
            raise ValueError(f"Pooler mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs):
        hidden, token_ids = inputs
        if self.mode == "none":
            return hidden
        if self.mode == "cls":
            return hidden[:, 0]
        mask = tf.cast(tf.not_equal(tf.cast(token_ids, tf.int32), 0), tf.float32)[:, :, None]
        total = tf.reduce_sum(tf.cast(hidden, tf.float32) * mask, axis=1)
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)  # an all-padding row pools to zeros, not NaN
        return tf.cast(total / count, hidden.dtype)

    def compute_mask(self, inputs, mask=None):
        if self.mode == "none" and isinstance(mask, (list, tuple)):
            return mask[0]
        return None

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class FirstPosition(tf.keras.layers.Layer):
    """``(batch, seq, hidden)`` -> ``(batch, 1, hidden)``: the first position (``[CLS]``) alone, its mask with it.

    The query of :func:`bertkit.encoder.first_token_encoder`'s last block: that block then attends from ``[CLS]`` only,
    over every position's keys and values."""

    def call(self, inputs):
        return tf.expand_dims(inputs[:, 0], 1)  # not inputs[:, :1], whose length 0 or 1 is unknown until run time

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else tf.expand_dims(mask[:, 0], 1)


def _multi_head_base():
    from keras_multi_head import MultiHeadAttention

    return MultiHeadAttention


class DtypeSafeMultiHeadAttention(_multi_head_base()):
    """keras-multi-head's ``MultiHeadAttention`` with the same weights, config and outputs, computed in the input's
    dtype.

    The original delegates to keras-self-attention's ``ScaledDotProductAttention``, which casts the scale and the
    mask to ``K.floatx()`` (float32) and so fails under ``mixed_float16`` / ``mixed_bfloat16`` with a dtype mismatch.
    Here the scale and mask follow the logits' dtype, and the masked scores get :data:`NEG_INF` added. The bertkit
    encoder is always built with this class (see ``bertkit.encoder.load_encoder``); :func:`custom_objects` maps the
    original class name to it, so saved keras-bert models reload with it as well.

    ``attention_dropout``: dropout on the attention probabilities while training, as BERT's
    ``attention_probs_dropout_prob`` (keras-multi-head has none; 0, the default, is the original layer). The encoder
    takes it from the checkpoint's config.
    """

    def __init__(self, head_num, attention_dropout: float = 0.0, **kwargs):
        super().__init__(head_num, **kwargs)
        self.attention_dropout = float(attention_dropout)
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {attention_dropout!r}")
        # no weights: checkpoints and saved models of the layer are the same with and without it
        self._probability_dropout = (tf.keras.layers.Dropout(self.attention_dropout, name="attention_dropout")
                                     if self.attention_dropout else None)

    def build(self, input_shape):
        # The .keras format rebuilds layers from a stored shape given as a plain list ([None, None, 384]), which the
        # original build would take for a [query, key, value] list of shapes.
        if isinstance(input_shape, list) and all(d is None or isinstance(d, int) for d in input_shape):
            input_shape = tuple(input_shape)
        super().build(input_shape)

    def call(self, inputs, mask=None, training=None):
        if isinstance(inputs, list):
            q, k, v = inputs
        else:
            q = k = v = inputs
        key_mask = mask[1] if isinstance(mask, list) else mask
        query_length = q.shape[1]  # static where known: 1 for first_token_encoder's [CLS]-only query
        q = self._project(q, self.Wq, self.bq, training)
        k = self._project(k, self.Wk, self.bk, training)
        v = self._project(v, self.Wv, self.bv, training)
        q, k, v = (self._split_heads(t) for t in (q, k, v))  # (batch, heads, seq, head_dim)
        # The 1/sqrt(head_dim) scale goes on the queries and the key mask is ADDED as a (batch, 1, 1, k_seq) bias:
        # the (batch, heads, q_seq, k_seq) scores then see one element-wise op before the softmax instead of a
        # division and a broadcast select. Same softmax up to float rounding (a masked score, NEG_INF more than an
        # ordinary one, still has exp = 0); the int8 TensorFlow Lite encoder runs 1.2-1.4x faster for it
        # (benchmarks/README.md), float32 Keras the same within noise.
        q = q * tf.math.rsqrt(tf.cast(tf.shape(q)[-1], q.dtype))
        scores = tf.matmul(q, k, transpose_b=True)  # (batch, heads, q_seq, k_seq)
        if self.history_only:
            q_len, k_len = tf.shape(q)[2], tf.shape(k)[2]
            causal = tf.range(k_len)[None, :] <= tf.range(q_len)[:, None]
            scores = masked_logits(scores, causal[None, None])
        if key_mask is not None:
            # (batch, k_seq) -> (batch, 1, 1, k_seq) by ExpandDims, not [:, None, None, :]: a strided slice with
            # new axes on a bool tensor has no TensorFlow Lite builtin (the int8 export would need a Flex kernel)
            key_mask = tf.expand_dims(tf.expand_dims(tf.cast(key_mask, tf.bool), 1), 1)
            scores += tf.where(key_mask, tf.zeros((), scores.dtype), tf.constant(NEG_INF, scores.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        if self._probability_dropout is not None:
            weights = self._probability_dropout(weights, training=training)
        y = self._merge_heads(tf.matmul(weights, v), query_length)
        return self._project(y, self.Wo, self.bo, training)

    def get_config(self):
        return {**super().get_config(), "attention_dropout": self.attention_dropout}

    def _project(self, x, kernel, bias, training=None):
        # (batch, seq, in) @ (in, out). Inference (what an export traces): a matmul broadcasting the kernel, one
        # fully connected op for TensorFlow Lite, where reshapes to and from 2-D (shapes computed at run time) split
        # the TensorFlow Lite encoder's XNNPack partitions (26 delegate nodes for MiniLM-L6 against 50).
        # Training: one 2-D product of all (batch x seq) rows, whose kernel gradient is one (in, rows) @ (rows, out)
        # product; the broadcast matmul's gradient computes a kernel gradient per sequence, then sums the batch of
        # them. Same values within float rounding; MiniLM-L6's 32 x 128 train step +5% in an A/B, the English no-flag
        # runs' training 2-15% shorter, most at SST-2's short batches (benchmarks/README.md).
        if training is True:  # a Python True (Keras passes one in fit); anything else: the inference form
            rows = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), tf.cast(kernel, x.dtype))
            y = tf.reshape(rows, tf.concat([tf.shape(x)[:-1], [kernel.shape[1]]], axis=0))
            y.set_shape(x.shape[:-1].concatenate([kernel.shape[1]]))
        else:
            y = tf.matmul(x, tf.cast(kernel, x.dtype))
        if self.use_bias:
            y = y + tf.cast(bias, y.dtype)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def _split_heads(self, x):
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], self.head_num, shape[2] // self.head_num])
        return tf.transpose(x, [0, 2, 1, 3])

    def _merge_heads(self, x, length=None):
        x = tf.transpose(x, [0, 2, 1, 3])
        shape = tf.shape(x)
        y = tf.reshape(x, [shape[0], shape[1], shape[2] * shape[3]])
        return tf.ensure_shape(y, [None, length, self.Wo.shape[0]])


def _token_embedding_base():
    from keras_bert.layers import TokenEmbedding

    return TokenEmbedding


class LookupTokenEmbedding(_token_embedding_base()):
    """keras-bert's ``TokenEmbedding`` (same weights, config, lookup and mask) without computing its second output.

    keras-bert's layer returns ``[lookup, table + 0]``: the whole table, for a masked-LM head that shares it. bertkit
    builds no such head (``load_trained_model_from_checkpoint(training=False)``), yet the ``+ 0`` ran in every train
    step and prediction call: a read of the 30,522 x 384 word embeddings (a copy, once the lookup has put the variable
    in TensorFlow's copy-on-read mode) and an add over it, about 7 ms of a 64 x 24 inference call of MiniLM-L6 on 2
    cores (159.6 against 152.9 ms; benchmarks/README.md, "What helped"). Here the second output is an empty
    ``(0, output_dim)`` tensor, which nothing reads. The bertkit encoder is always built with this class (see
    ``bertkit.encoder.load_encoder``); :func:`custom_objects` holds it for saved models, and keeps keras-bert's
    ``TokenEmbedding`` for a saved keras-bert model whose masked-LM head does read the table.
    """

    # Both methods go to Keras's Embedding, past keras-bert's, which name their class through a module global that
    # bertkit.encoder points at this class while keras-bert builds (so that ``super`` there would come back here).

    def call(self, inputs):
        lookup = super(LookupTokenEmbedding.__base__, self).call(inputs)
        return [lookup, tf.zeros((0, self.output_dim), dtype=lookup.dtype)]

    def compute_mask(self, inputs, mask=None):
        return [super(LookupTokenEmbedding.__base__, self).compute_mask(inputs, mask), None]


def skip_autograph(layers) -> int:
    """Have Keras run each of ``layers``' ``call`` as written, never through autograph; returns how many it marked.

    Keras hands the ``call`` of every layer defined outside its own modules to autograph, which rewrites its Python
    into graph code (an ``if`` on a tensor's value becomes a ``tf.cond``): when a functional model is built and again
    in each trace of a ``tf.function`` (the train step, the prediction function). keras-bert's layers and bertkit's
    have no such control flow (their ``if``s are on Python values and static shapes), so the rewriting only costs
    time: about 0.6 s of each process that builds the encoder (benchmarks/README.md, "What helped", 2026-12-06).
    ``bertkit.encoder.load_encoder`` marks the encoder's layers; call this for a layer of your own only where its
    ``call`` reads no tensor's value in Python control flow.

    Each layer gets its class's ``call`` under ``tf.autograph.experimental.do_not_convert``, bound to it as its own
    ``call`` (an instance attribute: the class and its other instances keep autograph), with the method's signature,
    so that Keras (``training``, ``mask``) and a SavedModel's tracing see the arguments they saw before. Marking a
    layer twice is harmless."""
    import inspect
    import types

    marked = 0
    for layer in layers:
        call = layer.call
        if getattr(call, "_bertkit_skips_autograph", False):
            continue
        function = getattr(call, "__func__", call)  # the class's method, or a function set on the layer itself
        unconverted = tf.autograph.experimental.do_not_convert(function)
        # as the method itself to whatever inspects it (Keras and tf.function read its arguments)
        unconverted.__signature__ = inspect.signature(function)
        unconverted._bertkit_skips_autograph = True
        layer.call = types.MethodType(unconverted, layer) if function is not call else unconverted
        marked += 1
    return marked


def custom_objects() -> dict:
    """Every custom object a saved Keras model containing the bertkit/keras-bert encoder needs, for
    ``tf.keras.models.load_model(path, custom_objects=custom_objects())`` or ``tf.keras.utils.custom_object_scope``.

    ``"gelu"`` stays keras-bert's tanh approximation (Google checkpoints); ``"gelu_exact"`` is the erf GELU.
    """
    import keras_bert

    objects = dict(keras_bert.get_custom_objects())
    objects.update(
        {
            "gelu_exact": gelu_exact,
            "MultiHeadAttention": DtypeSafeMultiHeadAttention,
            "DtypeSafeMultiHeadAttention": DtypeSafeMultiHeadAttention,
            "LookupTokenEmbedding": LookupTokenEmbedding,  # keras-bert's own "TokenEmbedding" kept for its MLM head
            "MaskedLogits": MaskedLogits,
            "Pooler": Pooler,
            "FirstPosition": FirstPosition,
        }
    )
    return objects
