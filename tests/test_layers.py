"""bertkit.layers: exact GELU, masked logits, pooling, the dtype-safe attention and saving/reloading models."""

import math

import numpy as np
import pytest
import tensorflow as tf

from bertkit import layers
from bertkit.encoder import load_encoder


@pytest.fixture
def policy():
    """Set a global mixed-precision policy for one test and always restore float32."""
    yield tf.keras.mixed_precision.set_global_policy
    tf.keras.mixed_precision.set_global_policy("float32")


def test_neg_inf_is_finite_in_half_precision_and_masks_softmax():
    for dtype in (tf.float16, tf.bfloat16):
        six_masked_scores = tf.constant([layers.NEG_INF] * 6, dtype).numpy().astype(np.float64).sum()
        assert np.isfinite(tf.cast(six_masked_scores, dtype).numpy().astype(np.float64))
        logits = layers.masked_logits(tf.constant([[3.0, -2.0, 5.0]], dtype), tf.constant([[True, True, False]]))
        probs = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
        assert np.all(np.isfinite(logits.numpy().astype(np.float32)))
        assert probs[0, 2] == 0.0
        np.testing.assert_allclose(probs[0, :2], [1 / (1 + math.exp(-5)), math.exp(-5) / (1 + math.exp(-5))],
                                   rtol=1e-2)
    assert tf.cast(layers.NEG_INF, tf.float16).numpy() == layers.NEG_INF


def test_masked_logits_replaces_only_masked_positions_and_keeps_dtype():
    logits = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], tf.float16)
    out = layers.masked_logits(logits, np.array([[1, 0, 1], [0, 0, 1]]))  # 0/1 ints broadcast like bools
    assert out.dtype == tf.float16
    np.testing.assert_array_equal(out.numpy(), [[1, layers.NEG_INF, 3], [layers.NEG_INF, layers.NEG_INF, 6]])
    per_row = layers.masked_logits(tf.zeros((2, 3)), tf.constant([[True], [False]]))
    np.testing.assert_array_equal(per_row.numpy(), [[0, 0, 0], [layers.NEG_INF] * 3])


def test_masked_logits_layer_from_token_ids_broadcasts_over_label_axis():
    token_ids = tf.constant([[5, 6, 0]])
    logits = tf.ones((1, 3, 4))
    out = layers.MaskedLogits(from_token_ids=True)([logits, token_ids]).numpy()
    np.testing.assert_array_equal(out[0, :2], 1.0)
    np.testing.assert_array_equal(out[0, 2], layers.NEG_INF)


def test_pooler_modes():
    hidden = tf.constant(np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2))
    token_ids = tf.constant([[7, 8, 0], [0, 0, 0]])
    np.testing.assert_array_equal(layers.Pooler("cls")([hidden, token_ids]).numpy(), hidden.numpy()[:, 0])
    np.testing.assert_array_equal(layers.Pooler("none")([hidden, token_ids]).numpy(), hidden.numpy())
    mean = layers.Pooler("mean")([hidden, token_ids]).numpy()
    np.testing.assert_allclose(mean[0], hidden.numpy()[0, :2].mean(0))  # padding excluded
    np.testing.assert_array_equal(mean[1], [0.0, 0.0])  # an all-padding row pools to zeros, not NaN
    with pytest.raises(ValueError, match="cls, mean, none"):
        layers.Pooler("max")


def test_mean_pooler_under_mixed_float16_matches_float32(policy):
    hidden = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
    token_ids = tf.constant([[7, 8, 9, 0], [5, 0, 0, 0]])
    expected = layers.Pooler("mean")([tf.constant(hidden), token_ids]).numpy()
    policy("mixed_float16")
    half = layers.Pooler("mean")([tf.constant(hidden), token_ids])
    assert half.dtype == tf.float16
    np.testing.assert_allclose(half.numpy().astype(np.float32), expected, atol=1e-2)


def test_gelu_exact_is_erf_gelu_not_keras_bert_tanh_gelu():
    from keras_bert import gelu as tanh_gelu

    x = np.linspace(-4, 4, 81).astype(np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(layers.gelu_exact(tf.constant(x)).numpy(), exact, atol=1e-6)
    assert np.abs(tanh_gelu(tf.constant(x)).numpy() - exact).max() > 1e-4


def test_dtype_safe_attention_matches_keras_multi_head_attention():
    from keras_multi_head import MultiHeadAttention

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 5, 8)).astype(np.float32))
    mask = tf.constant([[True] * 5, [True, True, True, False, False]])
    original = MultiHeadAttention(head_num=2, name="original")
    safe = layers.DtypeSafeMultiHeadAttention(head_num=2, name="safe")
    expected = original(x, mask=mask)
    safe(x, mask=mask)
    safe.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in original.get_weights()])
    original.set_weights(safe.get_weights())
    np.testing.assert_allclose(safe(x, mask=mask).numpy(), original(x, mask=mask).numpy(), atol=1e-5)
    assert expected.shape == (2, 5, 8)


def test_attention_projects_all_rows_at_once_in_training_with_the_same_values_and_gradients():
    """Training runs the Q/K/V/output projections as 2-D products of all (batch x seq) rows (one kernel gradient
    product each, not one per sequence summed); inference keeps the broadcast matmul a TensorFlow Lite export reads
    as one fully connected op. Same outputs and gradients within float rounding."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(3, 7, 8)).astype(np.float32))
    mask = tf.constant([[True] * 7, [True] * 4 + [False] * 3, [True] * 6 + [False]])
    attention = layers.DtypeSafeMultiHeadAttention(head_num=2)  # no dropout: training changes nothing else
    attention(x, mask=mask)
    attention.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in attention.get_weights()])

    def outputs_and_gradients(training):
        with tf.GradientTape() as tape:
            y = attention(x, mask=mask, training=training)
            loss = tf.reduce_sum(y * tf.cos(y))
        return y.numpy(), [g.numpy() for g in tape.gradient(loss, attention.trainable_weights)]

    (y_train, g_train), (y_infer, g_infer) = outputs_and_gradients(True), outputs_and_gradients(False)
    np.testing.assert_allclose(y_train, y_infer, rtol=0, atol=1e-5)
    for got, want in zip(g_train, g_infer):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    def products(training) -> dict:
        graph = tf.function(lambda t: attention(t, mask=mask, training=training)).get_concrete_function(
            tf.TensorSpec([None, None, 8], tf.float32)).graph
        ops = [op.type for op in graph.get_operations()]
        return {"MatMul": ops.count("MatMul"), "BatchMatMulV2": ops.count("BatchMatMulV2")}

    # Q, K, V and output: 2-D in training, broadcast in inference; the two attention products batched in both
    assert products(True) == {"MatMul": 4, "BatchMatMulV2": 2}
    assert products(False) == {"MatMul": 0, "BatchMatMulV2": 6}


def test_attention_dropout_drops_attention_probabilities_in_training_only():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(8, 16, 8)).astype(np.float32))
    mask = tf.constant([[True] * 16] * 7 + [[True] * 10 + [False] * 6])
    attention = layers.DtypeSafeMultiHeadAttention(head_num=2, attention_dropout=0.5)
    attention(x, mask=mask)
    # every value vector is all ones and the output projection the identity: without dropout each output is the
    # sum of one row of attention probabilities, exactly 1
    wq, bq, wk, bk, wv, bv, wo, bo = attention.get_weights()
    attention.set_weights([wq, bq, wk, bk, np.zeros_like(wv), np.ones_like(bv), np.eye(8, dtype=np.float32),
                           np.zeros_like(bo)])
    np.testing.assert_allclose(attention(x, mask=mask).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(attention(x, mask=mask, training=False).numpy(), 1.0, atol=1e-5)
    dropped = attention(x, mask=mask, training=True).numpy()
    # probabilities dropped, not outputs: sums of the kept probabilities / 0.5 spread around 1 (outputs dropped
    # would be 0 or 2 only), the same for the 4 features of a head, and unbiased
    assert not np.allclose(dropped, 1.0, atol=1e-2)
    assert np.mean((np.abs(dropped) < 1e-6) | (np.abs(dropped - 2.0) < 1e-6)) < 0.5
    np.testing.assert_allclose(dropped[..., :4], dropped[..., :1].repeat(4, -1), atol=1e-5)
    assert abs(dropped.mean() - 1.0) < 0.1
    assert layers.DtypeSafeMultiHeadAttention.from_config(attention.get_config()).attention_dropout == 0.5
    with pytest.raises(ValueError, match="attention_dropout"):
        layers.DtypeSafeMultiHeadAttention(head_num=2, attention_dropout=1.0)


def test_dtype_safe_attention_runs_under_mixed_float16(policy):
    policy("mixed_float16")
    attention = layers.DtypeSafeMultiHeadAttention(head_num=2)
    out = attention(tf.ones((1, 4, 8)), mask=tf.constant([[True, True, True, False]]))
    assert out.dtype == tf.float16 and np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize("file_name", ["model.keras", "saved_model", "model.h5"])
def test_saved_model_with_encoder_reloads_with_custom_objects(tiny_bert_dir, tmp_path, file_name):
    encoder = load_encoder(tiny_bert_dir, dropout=0.0)
    token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
    hidden = encoder([token_ids, segment_ids])
    pooled = layers.Pooler("mean")([hidden, token_ids])
    logits = tf.keras.layers.Dense(3)(pooled)
    tags = layers.MaskedLogits(from_token_ids=True)([tf.keras.layers.Dense(4)(hidden), token_ids])
    model = tf.keras.Model([token_ids, segment_ids], [logits, tags])
    inputs = [np.array([[3, 10, 11, 4, 0], [3, 12, 4, 13, 4]], np.int32), np.array([[0] * 5, [0, 0, 0, 1, 1]], np.int32)]
    before = model.predict(inputs, verbose=0)
    path = tmp_path / file_name
    model.save(path)
    reloaded = tf.keras.models.load_model(path, custom_objects=layers.custom_objects())
    after = reloaded.predict(inputs, verbose=0)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-6)
    attention = reloaded.get_layer(encoder.name).get_layer("Encoder-1-MultiHeadSelfAttention")
    assert isinstance(attention, layers.DtypeSafeMultiHeadAttention)
    assert attention.attention_dropout == 0.0


def test_custom_objects_keep_google_gelu_and_add_exact_gelu():
    objects = layers.custom_objects()
    from keras_bert import gelu as tanh_gelu

    assert objects["gelu"] is tanh_gelu
    assert objects["gelu_exact"] is layers.gelu_exact
    assert objects["MultiHeadAttention"] is layers.DtypeSafeMultiHeadAttention


# ------------------------------------------------------------------------------------------------ skip_autograph
class ValueBranch(tf.keras.layers.Layer):
    """A layer whose Python ``if`` reads a tensor's value: traceable only through autograph (a ``tf.cond``)."""

    def call(self, inputs, training=None, mask=None):
        self.seen = (training, mask is not None)
        if tf.reduce_sum(inputs) > 0:
            return inputs * 2.0
        return inputs


def test_skip_autograph_runs_call_as_written_and_keeps_its_arguments():
    plain, marked = ValueBranch(), ValueBranch()
    assert layers.skip_autograph([marked]) == 1
    assert layers.skip_autograph([marked]) == 0  # marked already: left as it is
    x = tf.ones((2, 3))
    traced = tf.function(lambda layer, training: layer(x, training=training))
    np.testing.assert_allclose(traced(plain, True).numpy(), 2.0)  # the class keeps autograph: converted to tf.cond
    assert plain.seen == (True, False)
    with pytest.raises(tf.errors.OperatorNotAllowedInGraphError, match="as a Python `bool`"):  # the if sees a tensor
        traced(marked, True)
    assert marked.seen == (True, False)  # Keras still passes training (read from the signature at construction)
    np.testing.assert_allclose(marked(x, training=False).numpy(), 2.0)  # eager: the same code, runs as written
    assert marked.seen == (False, False)
    own = ValueBranch()
    own.call = lambda inputs, training=None: inputs * 3.0  # a function set on the instance, not the class's method
    assert layers.skip_autograph([own]) == 1 and layers.skip_autograph([own]) == 0
    np.testing.assert_allclose(traced(own, True).numpy(), 3.0)


def test_encoder_layers_skip_autograph_and_compute_the_same_in_a_graph(tiny_bert_dir):
    encoder = load_encoder(tiny_bert_dir)
    custom = [layer for layer in encoder.layers if not type(layer).__module__.startswith("keras.")]
    assert any(isinstance(layer, layers.DtypeSafeMultiHeadAttention) for layer in custom)
    assert custom and all(getattr(layer.call, "_bertkit_skips_autograph", False) for layer in custom)
    assert layers.skip_autograph(encoder.layers) == 0  # every layer marked already
    inputs = [tf.constant([[2, 5, 6, 3, 0]]), tf.zeros((1, 5), tf.int32)]
    eager = encoder(inputs).numpy()
    graph = tf.function(lambda ids, segments: encoder([ids, segments]))(*inputs).numpy()
    np.testing.assert_allclose(graph, eager, atol=1e-5)
