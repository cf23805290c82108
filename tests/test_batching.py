"""make_dataset: dynamic padding, pad values, multi-dim targets, grouping by length, seeded reshuffling, sampling;
batch_predictor: one trace per model for every batch shape."""

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from bertkit.batching import (batch_predictor, batches_per_epoch, batches_per_group, make_dataset, make_training_data,
                              predict_in_length_order, sample_examples)
from bertkit.errors import ConfigError


def _examples(n=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(3, 12))
        out.append({"token_ids": rng.integers(1, 100, length).tolist(), "segment_ids": [0] * length,
                    "tags": np.full(length, 2), "label": i % 3, "score": float(i) / 2, "id": i})
    return out


def test_dynamic_padding_to_each_batch_longest():
    examples = _examples()
    batches = list(make_dataset(examples, 4))
    assert len(batches) == batches_per_epoch(examples, 4) == 3
    for b, (inputs, labels) in enumerate(batches):
        chunk = examples[4 * b: 4 * b + 4]
        longest = max(len(e["token_ids"]) for e in chunk)
        assert inputs["token_ids"].shape == (len(chunk), longest)
        assert inputs["token_ids"].dtype == tf.int32 and inputs["segment_ids"].dtype == tf.int32
        for row, example in zip(inputs["token_ids"].numpy(), chunk):
            n = len(example["token_ids"])
            assert row[:n].tolist() == example["token_ids"] and not row[n:].any()
        assert labels.numpy().tolist() == [e["label"] for e in chunk]


def test_pad_values_multi_targets_and_floats():
    examples = _examples(5)
    for e in examples:
        n = len(e["token_ids"])
        e["pairs"] = np.ones((n, 3, 2), dtype=np.int64)
        e["grid"] = np.ones((n, n))
    ds = make_dataset(examples, 5, target_keys=("tags", "pairs", "grid", "score"), pad_values={"tags": -1})
    inputs, targets = next(iter(ds))
    longest = max(len(e["token_ids"]) for e in examples)
    assert set(targets) == {"tags", "pairs", "grid", "score"}
    assert targets["pairs"].shape == (5, longest, 3, 2) and targets["pairs"].dtype == tf.int32
    assert targets["grid"].shape == (5, longest, longest) and targets["grid"].dtype == tf.float32
    assert targets["score"].dtype == tf.float32
    for row, grid, e in zip(targets["tags"].numpy(), targets["grid"].numpy(), examples):
        n = len(e["token_ids"])
        assert (row[:n] == 2).all() and (row[n:] == -1).all()
        assert grid[:n, :n].all() and not grid[n:].any() and not grid[:, n:].any()


def test_no_targets_gives_inputs_only():
    element = next(iter(make_dataset(_examples(), 3, input_keys=("token_ids", "id"), target_keys=())))
    assert isinstance(element, dict) and set(element) == {"token_ids", "id"}


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
    examples = _examples(30)

    def epochs(seed, n=2):
        ds = make_dataset(examples, 30, input_keys=("id",), target_keys=(), shuffle=True, seed=seed).repeat(n)
        return [batch["id"].numpy().tolist() for batch in ds]

    first = epochs(1)
    assert sorted(first[0]) == list(range(30)) and sorted(first[1]) == list(range(30))
    assert first[0] != first[1] and first[0] != list(range(30))  # reshuffled every epoch
    assert epochs(1) == first  # same seed, same order (in any process)
    assert epochs(2) != first


def test_grouping_by_length_pads_little_and_leaves_one_partial_batch():
    """Groups of batches_per_group(200, 16) = 3 batches, each group sorted by length: every batch but the pass's last
    is full, and the padded tokens come close to the real ones (far below plain shuffled batches')."""
    examples = _examples(200)
    real = sum(len(e["token_ids"]) for e in examples)
    padded_plain = padded_grouped = 0
    sizes = []
    for inputs, _ in make_dataset(examples, 16, bucket_by_length=True, shuffle=True, seed=3):
        ids = inputs["token_ids"].numpy()
        padded_grouped += ids.size
        sizes.append(ids.shape[0])
    for inputs, _ in make_dataset(examples, 16, shuffle=True, seed=3):
        padded_plain += inputs["token_ids"].numpy().size
    assert batches_per_group(200, 16) == 3 and batches_per_group(2000, 32) == 15 and batches_per_group(10**6, 8) == 50
    assert sizes == [16] * 12 + [8]
    assert padded_grouped < 0.8 * padded_plain and padded_grouped < 1.25 * real, (padded_grouped, padded_plain, real)


def test_bad_features():
    with pytest.raises(ConfigError, match="example 1: missing feature"):
        make_dataset([{"token_ids": [1], "segment_ids": [0], "label": 0}, {"token_ids": [1]}], 2)
    with pytest.raises(ConfigError, match="pad_values for unknown"):
        make_dataset(_examples(), 2, pad_values={"tag": -1})
    with pytest.raises(ConfigError, match="no examples"):
        make_dataset([], 2)


@pytest.mark.parametrize("shuffle, bucket", [(True, True), (False, False)])
def test_datasets_run_without_the_autotuning_model(shuffle, bucket):
    """Training (shuffled, grouped by length) and prediction pipelines alike: tf.data's autotuning model is off
    (its thread made destroying an iterator wait, bertkit.batching.without_autotune_model), and the batches are
    the same as with it on."""
    dataset = make_dataset(_examples(10), 4, shuffle=shuffle, bucket_by_length=bucket)
    assert dataset.options().autotune.enabled is False
    assert make_training_data(_examples(10), 4).dataset.options().autotune.enabled is False
    options = tf.data.Options()
    options.autotune.enabled = True
    tuned = make_dataset(_examples(10), 4, shuffle=shuffle, bucket_by_length=bucket).with_options(options)
    for (x, y), (tx, ty) in zip(dataset, tuned):
        np.testing.assert_array_equal(x["token_ids"].numpy(), tx["token_ids"].numpy())
        np.testing.assert_array_equal(y.numpy(), ty.numpy())


def test_sample_examples():
    examples = list(range(100))
    sample = sample_examples(examples, 10, seed=0)
    assert len(sample) == 10 and sample == sorted(sample) and len(set(sample)) == 10
    assert sample_examples(examples, 10, seed=0) == sample
    assert sample_examples(examples, 10, seed=1) != sample
    assert sample_examples(examples, None, seed=0) == examples
    assert sample_examples(examples, 500, seed=0) == examples


def test_sixty_thousand_examples_build_quickly():
    import time

    rng = np.random.default_rng(0)
    examples = [{"token_ids": rng.integers(1, 1000, int(n)), "segment_ids": np.zeros(int(n), np.int32),
                 "label": int(n) % 2} for n in rng.integers(5, 64, 60_000)]
    start = time.perf_counter()
    ds = make_dataset(examples, 32, shuffle=True, seed=0)
    n = sum(1 for _ in ds)
    assert n == batches_per_epoch(examples, 32) == 1875
    assert time.perf_counter() - start < 60  # generous bound for the shared 2-core box; typically a few seconds


def _ids_seen(dataset, steps):
    """Example ids (the ``label`` target holds each example's index) of the next ``steps`` batches."""
    seen = []
    for _, ids in dataset.take(steps):
        seen.extend(int(i) for i in np.asarray(ids))
    return seen


@pytest.mark.parametrize("n,batch,bucket", [(64, 16, True), (2000, 32, True), (37, 5, True), (37, 5, False),
                                            (3, 8, True)])
def test_every_epoch_sees_every_example_exactly_once(n, batch, bucket):
    """An epoch of ``steps_per_epoch`` steps over the repeated data (what Trainer.fit runs) covers the training set
    exactly once, epoch after epoch, grouped by length and dynamically padded (the old bug: ceil(n / batch) steps
    while length buckets each left a partial batch; the groups are whole batches, so ceil(n / batch) is exact)."""
    rng = np.random.default_rng(n)
    lengths = rng.integers(3, 120, n)
    lengths[min(2, n - 1)] = 400  # one very long text, as in the reported case
    examples = [{"token_ids": np.arange(1, int(length) + 1), "segment_ids": np.zeros(int(length), np.int32),
                 "label": i} for i, length in enumerate(lengths)]
    data = make_training_data(examples, batch, seed=7, bucket_by_length=bucket)
    assert data.examples == n
    assert data.steps_per_epoch == -(-n // batch)
    repeated = data.dataset.repeat()
    stream = _ids_seen(repeated, 3 * data.steps_per_epoch)
    assert len(stream) == 3 * n
    epochs = [stream[k * n:(k + 1) * n] for k in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(n))
    if n > 8:
        assert epochs[0] != epochs[1]  # reshuffled every pass
    # the same count by iterating one pass
    assert sum(1 for _ in data.dataset) == data.steps_per_epoch


def test_batches_per_epoch_matches_iteration_with_drop_remainder():
    rng = np.random.default_rng(1)
    examples = [{"token_ids": np.ones(int(k), np.int32), "segment_ids": np.zeros(int(k), np.int32), "label": 0}
                for k in rng.integers(2, 50, 301)]
    for bucket, drop in ((True, True), (True, False), (False, True), (False, False)):
        for shuffle in (True, False):
            dataset = make_dataset(examples, 8, shuffle=shuffle, seed=0, bucket_by_length=bucket, drop_remainder=drop)
            assert sum(1 for _ in dataset) == batches_per_epoch(examples, 8, drop_remainder=drop) == (
                37 if drop else 38), (bucket, drop, shuffle)


class _CountingEmbedding(tf.keras.layers.Embedding):
    """Counts its calls: inside a tf.function a layer is called once per trace."""
    calls = 0

    def call(self, inputs):
        type(self).calls += 1
        return super().call(inputs)


def _toy_model(inputs_as: str):
    token_ids = tf.keras.Input((None,), dtype=tf.int32, name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype=tf.int32, name="segment_ids")
    hidden = _CountingEmbedding(50, 4, mask_zero=True)(token_ids) + tf.keras.layers.Embedding(2, 4)(segment_ids)
    outputs = {"pooled": tf.keras.layers.GlobalAveragePooling1D()(hidden),
               "per_token": tf.keras.layers.Dense(3)(hidden)}
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids} if inputs_as == "dict" else [token_ids, segment_ids]
    return tf.keras.Model(inputs, outputs)


@pytest.mark.parametrize("inputs_as", ["dict", "list"])
def test_batch_predictor_traces_once_for_every_shape_and_equals_predict_on_batch(inputs_as):
    model = _toy_model(inputs_as)
    features = [{"token_ids": list(range(1, n + 1)), "segment_ids": [0] * (n - 1) + [1], "text_mask": [1] * n}
                for n in (3, 9, 4, 17, 2, 12, 6)]
    _CountingEmbedding.calls = 0
    predictor = batch_predictor(model)
    got = predict_in_length_order(predictor, features, 2, input_keys=("token_ids", "segment_ids", "text_mask"))
    assert _CountingEmbedding.calls == 1  # four batch shapes, one trace (Keras's predict_on_batch: two)
    assert batch_predictor(model) is predictor  # kept for the model's life: the next evaluation traces nothing
    predict_in_length_order(predictor, features, 3, input_keys=("token_ids", "segment_ids"))
    assert _CountingEmbedding.calls == 1

    def keras_predict(batch):  # the same padded batches through Keras's own predict_on_batch
        return model.predict_on_batch(batch if inputs_as == "dict" else [batch["token_ids"], batch["segment_ids"]])

    want = predict_in_length_order(keras_predict, features, 2)
    for row, expected in zip(got, want):
        for key in ("pooled", "per_token"):
            np.testing.assert_allclose(row[key], expected[key], rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="lacks the model's input.*segment_ids"):
        predictor({"token_ids": np.ones((1, 3), np.int32)})


def test_batch_predictor_does_not_keep_the_model_alive_and_leaves_other_models_to_keras():
    model = _toy_model("dict")
    batch_predictor(model)({"token_ids": np.ones((2, 3), np.int32), "segment_ids": np.zeros((2, 3), np.int32)})
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None

    class Subclassed(tf.keras.Model):
        def call(self, inputs):
            return tf.reduce_sum(inputs["x"], axis=-1)

    subclassed = Subclassed()
    assert batch_predictor(subclassed) == subclassed.predict_on_batch
