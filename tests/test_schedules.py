"""Schedules and AdamW: values at known steps, serialisation round trips, and that weight decay really skips
keras-bert's LayerNorm and bias variables."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bertkit.errors import ConfigError
from bertkit.optim import (NO_DECAY_PATTERNS, build_optimizer, is_decayed, optimizer_from_config,
                           optimizer_to_config)
from bertkit.schedules import (PiecewiseLinear, WarmupLinearDecay, plot_schedule, schedule_from_config,
                               schedule_to_config, schedule_values)


def test_warmup_linear_decay_values():
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    values = schedule_values(schedule, 120)
    assert values[0] == 0.0
    assert values[5] == pytest.approx(5e-4)
    assert values[10] == pytest.approx(1e-3)
    assert values.max() == pytest.approx(1e-3)
    assert values[55] == pytest.approx(1e-3 * 45 / 90)
    assert values[100] == 0.0 and values[120] == 0.0
    assert np.all(np.diff(values[:11]) > 0) and np.all(np.diff(values[10:101]) < 0)


def test_warmup_zero_starts_at_peak():
    values = schedule_values(WarmupLinearDecay(2e-5, total_steps=4, warmup_steps=0), 4)
    np.testing.assert_allclose(values, [2e-5, 1.5e-5, 1e-5, 0.5e-5, 0.0], rtol=1e-6, atol=1e-12)


def test_piecewise_linear_values():
    schedule = PiecewiseLinear([0, 100, 200], [0.0, 5e-5, 1e-5])
    values = schedule_values(schedule, 300)
    assert values[0] == 0.0
    assert values[50] == pytest.approx(2.5e-5)
    assert values[100] == pytest.approx(5e-5)
    assert values[150] == pytest.approx(3e-5)
    assert values[200] == pytest.approx(1e-5) and values[300] == pytest.approx(1e-5)


@pytest.mark.parametrize("schedule", [WarmupLinearDecay(3e-5, 1000, 100), PiecewiseLinear([0, 10], [1e-4, 0.0])])
def test_schedule_config_round_trip(schedule):
    config = json.loads(json.dumps(schedule_to_config(schedule)))
    rebuilt = schedule_from_config(config)
    assert type(rebuilt) is type(schedule)
    np.testing.assert_allclose(schedule_values(rebuilt, 50), schedule_values(schedule, 50))
    # Keras's own serialisation finds the registered class too.
    keras_copy = tf.keras.optimizers.schedules.deserialize(tf.keras.optimizers.schedules.serialize(schedule))
    np.testing.assert_allclose(schedule_values(keras_copy, 50), schedule_values(schedule, 50))


@pytest.mark.parametrize("config, words", [
    ({"class": "Cosine"}, "unknown learning-rate schedule 'Cosine'"),
    ({"class": "WarmupLinearDecay", "peak_lr": 1e-3, "total_steps": 10, "warmup": 1}, "warmup"),
    ({"class": "WarmupLinearDecay", "peak_lr": 1e-3, "total_steps": 10, "warmup_steps": 11}, "warmup_steps"),
    ({"class": "PiecewiseLinear", "boundaries": [0, 0], "values": [1, 2]}, "increase"),
    ({"peak_lr": 1}, "'class'"),
])
def test_bad_schedule_config(config, words):
    with pytest.raises(ConfigError, match=words):
        schedule_from_config(config)


def test_plot_schedule_writes_png(tmp_path):
    path = plot_schedule(WarmupLinearDecay(1e-3, 100, 10), 100, tmp_path / "plots" / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _keras_bert_model():
    import keras_bert

    inputs, outputs = keras_bert.get_model(token_num=30, head_num=2, transformer_num=1, embed_dim=8,
                                           feed_forward_dim=16, seq_len=None, training=False, trainable=True)
    hidden = tf.keras.layers.Lambda(lambda x: x[:, 0])(outputs)
    logits = tf.keras.layers.Dense(2, name="classifier")(hidden)
    return tf.keras.Model(inputs, logits)


def test_weight_decay_skips_keras_bert_layernorm_and_bias():
    model = _keras_bert_model()
    optimizer = build_optimizer(1e-3, 0.01)
    decayed = {v.name for v in model.trainable_variables if is_decayed(optimizer, v)}
    skipped = {v.name for v in model.trainable_variables} - decayed
    assert "Encoder-1-MultiHeadSelfAttention-Norm/gamma:0" in skipped
    assert "Encoder-1-FeedForward-Norm/beta:0" in skipped
    assert "Embedding-Norm/gamma:0" in skipped
    assert "Encoder-1-MultiHeadSelfAttention/Encoder-1-MultiHeadSelfAttention_bq:0" in skipped
    assert "Encoder-1-FeedForward/Encoder-1-FeedForward_b1:0" in skipped
    assert "classifier/bias:0" in skipped
    assert "Encoder-1-MultiHeadSelfAttention/Encoder-1-MultiHeadSelfAttention_Wq:0" in decayed
    assert "Encoder-1-FeedForward/Encoder-1-FeedForward_W2:0" in decayed
    assert "Embedding-Token/embeddings:0" in decayed
    assert "classifier/kernel:0" in decayed
    # Every 1-D weight (norm scales/offsets and biases) is skipped, every matrix decayed.
    for v in model.trainable_variables:
        assert is_decayed(optimizer, v) == (len(v.shape) > 1), v.name


def test_weight_decay_really_applied_only_to_decayed_weights():
    """With zero gradients Adam moves nothing, so any change is the decay itself."""
    kernel = tf.Variable(tf.ones((2, 2)), name="dense/kernel")
    norm = tf.Variable(tf.ones((2,)), name="Encoder-1-FeedForward-Norm/gamma")
    bias = tf.Variable(tf.ones((2,)), name="Encoder-1-FeedForward/Encoder-1-FeedForward_b1")
    optimizer = build_optimizer(0.1, 0.5)
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in (kernel, norm, bias)])
    np.testing.assert_allclose(kernel.numpy(), np.full((2, 2), 1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(norm.numpy(), np.ones(2))
    np.testing.assert_array_equal(bias.numpy(), np.ones(2))


def _keras_adamw(jit_compile: bool):
    """Keras's own AdamW with bertkit's settings (its plain-op updates: the reference for bertkit's)."""
    optimizer = tf.keras.optimizers.AdamW(learning_rate=WarmupLinearDecay(0.1, 10, 1), weight_decay=0.01,
                                          beta_1=0.9, beta_2=0.999, epsilon=1e-6, global_clipnorm=1.0,
                                          jit_compile=False)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERNS))
    return optimizer


def _train_steps(jit_compile: bool, steps: int = 3, make_optimizer=None):
    """``steps`` AdamW updates (decay, global-norm clipping) of a decayed matrix, a skipped bias and an embedding
    table with sparse gradients (``IndexedSlices``, as keras-bert's embeddings give), from the same values."""
    kernel = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), name="dense/kernel")
    bias = tf.Variable(np.linspace(0.5, 1, 4, dtype=np.float32), name="dense/bias")
    table = tf.Variable(np.linspace(-2, 2, 20, dtype=np.float32).reshape(5, 4), name="Embedding-Token/embeddings")
    make_optimizer = make_optimizer or (lambda jit: build_optimizer(WarmupLinearDecay(0.1, 10, 1), 0.01,
                                                                    jit_compile=jit))
    optimizer = make_optimizer(jit_compile)
    for step in range(steps):
        scale = float(step + 1)
        grads = [tf.constant(np.cos(np.arange(12, dtype=np.float32) * scale).reshape(3, 4)),
                 tf.constant(np.sin(np.arange(4, dtype=np.float32) + scale)),
                 tf.IndexedSlices(tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4) * scale),
                                  tf.constant([1, 3, 1]), tf.constant([5, 4]))]  # row 1 twice (a repeated token)
        optimizer.apply_gradients(zip(grads, (kernel, bias, table)))
    return optimizer, [v.numpy() for v in (kernel, bias, table)]


def test_adamw_updates_xla_compiled_on_cpu_too_and_same_as_plain_ops():
    """Keras 2.15 switches an optimizer's XLA updates off without a GPU; build_optimizer switches them back on
    (faster on CPU, benchmarks/README.md). The XLA kernels really run, and the weights they give are the plain
    ops' up to float rounding, sparse embedding rows included (the untouched rows move only by decay)."""
    xla, xla_values = _train_steps(True)
    plain, plain_values = _train_steps(False)
    assert xla.jit_compile is True and plain.jit_compile is False
    assert xla._update_step_xla.experimental_get_tracing_count() == 3  # one XLA kernel per weight
    assert plain._update_step_xla.experimental_get_tracing_count() == 0
    # the global-norm clipping of the dense gradients: one XLA kernel, traced once (the sparse ones stay plain ops)
    assert xla._clip_dense_by_global_norm.experimental_get_tracing_count() == 1
    assert plain._clip_dense_by_global_norm.experimental_get_tracing_count() == 0
    for got, expected in zip(xla_values, plain_values):  # the plain updates' fused kernel rounds otherwise (below)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    _, before = _train_steps(False, steps=0)
    assert not np.allclose(plain_values[0], before[0]) and not np.allclose(plain_values[2][1], before[2][1])
    decay = np.prod([1 - 0.01 * lr for lr in (0.0, 0.1, 0.1 * 8 / 9)])  # the schedule's first three rates
    np.testing.assert_allclose(xla_values[2][0], before[2][0] * decay, rtol=1e-6)


def test_plain_updates_are_one_fused_adam_op_per_dense_weight_with_keras_arithmetic():
    """Short runs' plain-op updates: each weight's Adam step is TensorFlow's fused ResourceApplyAdam (one op
    instead of about 20; the powers of beta made once per step), an embedding's too (its sparse gradient placed in
    a dense tensor: no scatter into m and v), and the weights equal Keras's own AdamW's to float rounding."""
    _, ours = _train_steps(False)
    keras_optimizer, theirs = _train_steps(False, make_optimizer=_keras_adamw)
    assert keras_optimizer.jit_compile is False
    for got, expected in zip(ours, theirs):  # a few ulps apart after three large steps (lr 0.1): the kernel's
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)  # vectorised loop rounds otherwise
    assert not np.array_equal(ours[0], _train_steps(False, steps=2)[1][0])  # (three steps did move the weights)

    def op_types(optimizer):
        kernel = tf.Variable(tf.ones((3, 4)), name="dense/kernel")
        bias = tf.Variable(tf.ones((4,)), name="dense/bias")
        table = tf.Variable(tf.ones((5, 4)), name="Embedding-Token/embeddings")
        optimizer.build([kernel, bias, table])

        @tf.function
        def step(rows):
            optimizer.apply_gradients([(tf.ones((3, 4)), kernel), (tf.ones((4,)), bias),
                                       (tf.IndexedSlices(tf.ones((3, 4)), rows, tf.constant([5, 4])), table)])
        return [op.type for op in step.get_concrete_function(tf.TensorSpec([None], tf.int32)).graph.get_operations()]

    fused = op_types(build_optimizer(WarmupLinearDecay(0.1, 10, 1), 0.01, jit_compile=False))
    plain = op_types(_keras_adamw(False))
    assert fused.count("ResourceApplyAdam") == 3 and plain.count("ResourceApplyAdam") == 0
    assert "ResourceScatterAdd" not in fused and plain.count("ResourceScatterAdd") == 2  # Keras's m and v scatters
    assert fused.count("Pow") == 2 and plain.count("Pow") == 6  # the powers of beta once per step, not per weight
    assert len(fused) < len(plain) - 30, (len(fused), len(plain))


def _sparse_steps(bucketed: bool, row_counts):
    """XLA AdamW steps of a 200-row table and a 2-row (segment) table, each step's gradient over ``row_counts[i]``
    distinct rows of the big one (deduplicated, as Keras gives them to the update) and row 0 of the small one;
    ``bucketed=False`` passes the rows to the update as they are."""
    table = tf.Variable(np.linspace(-2, 2, 800, dtype=np.float32).reshape(200, 4), name="Embedding-Token/embeddings")
    segments = tf.Variable(np.ones((2, 4), np.float32), name="Embedding-Segment/embeddings")
    optimizer = build_optimizer(WarmupLinearDecay(0.1, 10, 1), 0.01, jit_compile=True)
    if not bucketed:
        optimizer._row_gradients_in_row_buckets = lambda grads_and_vars: grads_and_vars
    shapes = []
    real_update = optimizer._update_step_xla
    optimizer._update_step_xla = lambda gradient, variable, key: (
        shapes.append((variable.name, tuple(gradient.values.shape))), real_update(gradient, variable, key))[1]
    rng = np.random.default_rng(0)
    for step, rows in enumerate(row_counts):
        indices = np.sort(rng.choice(200, size=rows, replace=False)).astype(np.int32)
        values = np.cos(np.arange(rows * 4, dtype=np.float32) + step).reshape(rows, 4)
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([200, 4])),
                                    table),
                                   (tf.IndexedSlices(tf.ones((1, 4)), tf.constant([0]), tf.constant([2, 4])),
                                    segments)])
    return real_update.experimental_get_tracing_count(), shapes, table.numpy(), segments.numpy()


def test_xla_updates_compile_an_embeddings_update_once_per_power_of_two_rows():
    """An embedding's gradient has one row per distinct token of the batch: a count that changes with every batch,
    and Keras's XLA update kernel is compiled for each count it meets. bertkit pads the rows to the next power of
    two (at least 64) with zero rows: the update of the 200-row table below meets 7 counts and 2 shapes; a table of
    at most 64 rows (segments) is left as it is. The weights are those of the unpadded update, to the bit."""
    counts = [5, 17, 40, 63, 64, 70, 100, 40]
    traces, shapes, table, segments = _sparse_steps(True, counts)
    table_shapes = [shape for name, shape in shapes if name.startswith("Embedding-Token")]
    assert table_shapes == [(64, 4)] * 5 + [(128, 4)] * 2 + [(64, 4)]
    assert {shape for name, shape in shapes if name.startswith("Embedding-Segment")} == {(1, 4)}
    assert traces == 3  # one trace (one XLA compilation) per weight and shape: 2 for the table, 1 for the segments
    unpadded_traces, unpadded_shapes, unpadded_table, unpadded_segments = _sparse_steps(False, counts)
    assert [shape for name, shape in unpadded_shapes if name.startswith("Embedding-Token")] == [(c, 4) for c in counts]
    assert unpadded_traces == 8  # 7 for the table
    np.testing.assert_array_equal(table, unpadded_table)
    np.testing.assert_array_equal(segments, unpadded_segments)
    _, _, before, _ = _sparse_steps(True, [])
    assert not np.array_equal(table, before)  # (the steps did move the table)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_xla_clipping_turns_a_non_finite_norm_into_nan_like_keras(bad):
    """tf.clip_by_global_norm makes every gradient NaN when the norm is not finite; the XLA clipping keeps that
    (an infinite norm must not become a silent zero-size step)."""
    results = []
    for jit_compile in (True, False):
        kernel = tf.Variable(tf.ones((2, 2)), name="dense/kernel")
        table = tf.Variable(tf.ones((3, 2)), name="Embedding-Token/embeddings")
        optimizer = build_optimizer(0.1, 0.01, jit_compile=jit_compile)
        grads = [tf.constant([[1.0, bad], [0.0, 1.0]]),
                 tf.IndexedSlices(tf.ones((1, 2)), tf.constant([0]), tf.constant([3, 2]))]
        optimizer.apply_gradients(zip(grads, (kernel, table)))
        results.append((kernel.numpy(), table.numpy()))
    (xla_kernel, xla_table), (plain_kernel, plain_table) = results
    assert np.isnan(xla_kernel).all() and np.isnan(plain_kernel).all()
    np.testing.assert_array_equal(np.isnan(xla_table), np.isnan(plain_table))
    assert np.isnan(xla_table[0]).all()  # the embedding row with a gradient


def test_optimizer_config_round_trip():
    optimizer = build_optimizer(WarmupLinearDecay(5e-5, 200, 20), 0.01, epsilon=1e-8)
    config = json.loads(json.dumps(optimizer_to_config(optimizer)))
    assert config["learning_rate"]["class"] == "WarmupLinearDecay"
    assert config["exclude_from_weight_decay"] == list(NO_DECAY_PATTERNS)
    rebuilt = optimizer_from_config(config)
    assert isinstance(rebuilt, tf.keras.optimizers.AdamW)
    assert optimizer_to_config(rebuilt) == config
    assert float(rebuilt.learning_rate) == 0.0  # step 0 of the warmup
    variable = tf.Variable(tf.ones(3), name="x/bias")
    assert not is_decayed(rebuilt, variable)


def test_optimizer_config_errors():
    with pytest.raises(ConfigError, match="unknown key"):
        optimizer_from_config({"learning_rate": 1e-3, "weight_decay": 0.0, "momentum": 0.9})
    with pytest.raises(ConfigError, match="only AdamW"):
        optimizer_from_config({"class": "SGD", "learning_rate": 1e-3, "weight_decay": 0.0})
    with pytest.raises(ConfigError, match="weight decay"):
        build_optimizer(1e-3, -1.0)
