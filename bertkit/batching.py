"""tf.data pipelines from Python examples: dynamic padding, batches of similar length, seeded shuffling.

Every feature is stacked once into one tensor per key (ragged along the dimensions whose length varies between
examples), so a 60k-example set costs a few vectorised NumPy copies, not a Python generator per step. Each batch is
padded only to its own longest sequence, which is most of the speed of training on short sentences.
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from bertkit.errors import ConfigError


def sample_examples(examples: Sequence, n: int | None, seed: int) -> list:
    """A seeded random subset of ``n`` examples (all of them when ``n`` is None or not smaller), in input order."""
    examples = list(examples)
    if n is None or n >= len(examples):
        return examples
    if n < 1:
        raise ConfigError(f"--max-train-examples must be at least 1, got {n}")
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def _stack_key(key: str, values: list):
    """One tensor holding ``values`` of every example: dense when their shapes agree, else ragged along the
    leading dimensions that vary (trailing dimensions must agree, e.g. ``(seq, P, 2)`` relation targets)."""
    import tensorflow as tf

    arrays = [np.asarray(v) for v in values]
    kinds = {a.dtype.kind for a in arrays}
    if kinds - set("biuf"):
        bad = next(i for i, a in enumerate(arrays) if a.dtype.kind not in "biuf")
        raise ConfigError(f"feature {key!r} of example {bad}: expected numbers, got dtype {arrays[bad].dtype}")
    dtype = np.float32 if "f" in kinds else np.int32
    ndims = {a.ndim for a in arrays}
    if len(ndims) != 1:
        raise ConfigError(f"feature {key!r}: examples disagree on the number of dimensions {sorted(ndims)}")
    ndim = ndims.pop()
    shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(len(arrays), ndim)
    varying = [d for d in range(ndim) if len(np.unique(shapes[:, d])) > 1]
    if not varying:
        return tf.constant(np.stack(arrays).astype(dtype, copy=False)), ndim
    ragged_rank = max(varying) + 1
    # Flatten each example's leading ``ragged_rank`` dims; the nested row lengths describe them level by level.
    flat = np.concatenate([a.reshape((-1,) + a.shape[ragged_rank:]).astype(dtype, copy=False) for a in arrays])
    row_lengths = [shapes[:, 0]]
    for level in range(1, ragged_rank):
        repeats = np.prod(shapes[:, :level], axis=1)
        row_lengths.append(np.repeat(shapes[:, level], repeats))
    return tf.RaggedTensor.from_nested_row_lengths(flat, row_lengths, validate=False), ndim


def batches_per_group(examples: int, batch_size: int) -> int:
    """How many batches one length group of :func:`make_dataset` holds: 50, fewer for a small set (at least four
    groups per pass, so the batches' order stays random over the epoch), at least 1: the rule of transformers'
    ``LengthGroupedSampler`` (``Trainer(group_by_length=True)``)."""
    return max(1, min(50, examples // (4 * batch_size)))


def make_dataset(features: Sequence[Mapping], batch_size: int, *,
                 input_keys: Iterable[str] = ("token_ids", "segment_ids"),
                 target_keys: Iterable[str] = ("label",), shuffle: bool = False, seed: int = 0,
                 bucket_by_length: bool = False, pad_values: Mapping[str, float] | None = None,
                 drop_remainder: bool = False, length_key: str | None = None):
    """A ``tf.data.Dataset`` of ``(inputs_dict, targets)`` batches padded per batch to their longest example.

    ``features`` is a list of dicts of NumPy arrays / lists / scalars. Integer features become int32 and float ones
    float32. ``targets`` is the single tensor for one target key, a dict for several, and absent (elements are the
    inputs dict alone) for ``target_keys=()``. ``pad_values`` maps a key to its padding value (default 0; e.g. -1 for
    ignored tag positions). ``shuffle`` reshuffles every epoch, deterministically given ``seed``.
    ``bucket_by_length`` puts examples of similar length (of ``length_key``, default the first input key) in the same
    batches: the (shuffled) examples are cut into groups of :func:`batches_per_group` batches, each group sorted by
    length, then batched in that order. One pass still yields ``ceil(n / batch_size)`` batches (only the last one
    partial) and visits every example once; batches are padded about as little as when the whole set is sorted.
    tf.data's autotuning model is off (:func:`without_autotune_model`).
    """
    import tensorflow as tf

    input_keys, target_keys = tuple(input_keys), tuple(target_keys)
    if not features:
        raise ConfigError("make_dataset: no examples")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    keys = input_keys + tuple(k for k in target_keys if k not in input_keys)
    for i, example in enumerate(features):
        missing = [k for k in keys if k not in example]
        if missing:
            raise ConfigError(f"example {i}: missing feature(s) {', '.join(map(repr, missing))}")
    pad_values = dict(pad_values or {})
    unknown = set(pad_values) - set(keys)
    if unknown:
        raise ConfigError(f"pad_values for unknown key(s) {sorted(unknown)}; keys are {list(keys)}")

    tensors, ndims = {}, {}
    for key in keys:
        tensors[key], ndims[key] = _stack_key(key, [example[key] for example in features])
    if bucket_by_length:
        length_key = length_key or input_keys[0]
        if ndims[length_key] < 1:
            raise ConfigError(f"cannot group by length of scalar feature {length_key!r}")
        dataset = _length_grouped_order(_lengths(features, length_key), batch_size, shuffle=shuffle, seed=seed)
        dataset = dataset.map(lambda i: {key: tensor[i] for key, tensor in tensors.items()},
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(tensors)
        if shuffle:
            # Explicit seed: the same permutation sequence in every process (what --resume relies on).
            dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    if any(isinstance(t, tf.RaggedTensor) for t in tensors.values()):
        dataset = dataset.map(_densify, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    padding = {key: tf.constant(pad_values.get(key, 0), dtype=tensors[key].dtype) for key in keys}
    dataset = dataset.padded_batch(batch_size, padding_values=padding, drop_remainder=drop_remainder)

    def split(batch):
        inputs = {k: batch[k] for k in input_keys}
        if not target_keys:
            return inputs
        if len(target_keys) == 1:
            return inputs, batch[target_keys[0]]
        return inputs, {k: batch[k] for k in target_keys}

    dataset = dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    return without_autotune_model(dataset)


def without_autotune_model(dataset):
    """``dataset`` with tf.data's autotuning model switched off (``Options.autotune.enabled = False``).

    With it on, each iterator runs a thread that re-optimizes the pipeline at doubling intervals (up to a minute),
    and destroying the iterator waits for that thread's current interval to run out: TensorFlow 2.15's
    ``RootDataset::Iterator`` destructor joins it, and the thread is not woken (caught by gdb in a stalled recipe
    run: the main thread in the destructor, the thread in ``Model::OptimizeLoop``'s timed wait). A run stalled for
    0 to 14 s at the end of ``fit``, by where it fell in that thread's schedule, and a dev evaluation took up to
    2.4 s longer (benchmarks/README.md, 2026-12-06). bertkit's pipelines are a gather, a padded batch and a split
    per batch, microseconds against a step: ``AUTOTUNE`` maps then run on as many threads as tf.data's thread pool
    has (the cores) and ``prefetch(AUTOTUNE)`` keeps its own buffer tuning, which needs no model."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _length_grouped_order(lengths: np.ndarray, batch_size: int, *, shuffle: bool, seed: int):
    """A dataset of example indices, one pass: shuffled (seeded, reshuffled every pass) when ``shuffle``, cut into
    groups of :func:`batches_per_group` batches, each group sorted by length (stably) so that consecutive
    ``batch_size`` indices have similar lengths."""
    import tensorflow as tf

    n = len(lengths)
    lengths = tf.constant(lengths, dtype=tf.int32)
    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def by_length(group):
        return tf.gather(group, tf.argsort(tf.gather(lengths, group), stable=True))

    return order.batch(batches_per_group(n, batch_size) * batch_size).map(by_length).unbatch()


def _lengths(features, length_key: str) -> np.ndarray:
    return np.array([np.shape(example[length_key])[0] for example in features])


def batches_per_epoch(features: Sequence[Mapping], batch_size: int, *, drop_remainder: bool = False) -> int:
    """The number of batches :func:`make_dataset` yields in one pass over ``features``: ``ceil(n / batch_size)``
    (``n // batch_size`` with ``drop_remainder``), grouped by length or not (its groups are whole batches: only
    the pass's last batch is partial). An epoch of fewer steps would skip examples."""
    n = len(features)
    return n // batch_size if drop_remainder else -(-n // batch_size)


@dataclass(frozen=True)
class TrainingData:
    """Training batches and the one definition of an epoch every recipe and trainer uses: one full pass.

    ``dataset`` yields exactly ``steps_per_epoch`` batches per pass, covering each of the ``examples`` examples
    exactly once (reshuffled every pass); :meth:`bertkit.training.Trainer.fit` repeats it and runs
    ``steps_per_epoch`` steps per epoch, so epoch k is pass k. ``example_lengths``: every example's length, sorted;
    each batch is padded to its longest example, so the distinct ones are the lengths a batch can have (what an XLA
    train step compiles for, one compilation each: ``--train-step auto`` weighs them).
    """

    dataset: Any
    steps_per_epoch: int
    examples: int
    example_lengths: tuple = field(default=(), repr=False)

    def map(self, function) -> "TrainingData":
        """The same epoch over ``dataset.map(function)`` (e.g. per-batch sampling of targets)."""
        import tensorflow as tf

        dataset = self.dataset.map(function, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return TrainingData(dataset, self.steps_per_epoch, self.examples, self.example_lengths)


def make_training_data(features: Sequence[Mapping], batch_size: int, *, seed: int = 0,
                       input_keys: Iterable[str] = ("token_ids", "segment_ids"),
                       target_keys: Iterable[str] = ("label",), pad_values: Mapping[str, float] | None = None,
                       bucket_by_length: bool = True, length_key: str | None = None,
                       drop_remainder: bool = False) -> TrainingData:
    """Shuffled (seeded, reshuffled every pass), grouped by length, dynamically padded training batches with the
    exact number of steps of one epoch. Every training set in bertkit goes through here."""
    input_keys, target_keys = tuple(input_keys), tuple(target_keys)
    dataset = make_dataset(features, batch_size, input_keys=input_keys, target_keys=target_keys, shuffle=True,
                           seed=seed, bucket_by_length=bucket_by_length, pad_values=pad_values,
                           drop_remainder=drop_remainder, length_key=length_key)
    steps = batches_per_epoch(features, batch_size, drop_remainder=drop_remainder)
    if steps < 1:
        raise ConfigError(f"{len(features)} training example(s) make no batch of {batch_size} (drop_remainder)")
    lengths = tuple(int(n) for n in np.sort(_lengths(features, length_key or input_keys[0])))
    return TrainingData(dataset, steps, len(features), lengths)


def _densify(element):
    import tensorflow as tf

    return {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v for k, v in element.items()}


_PER_MODEL: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def per_model(model, name: str, build: Callable[[], Any]):
    """``build()``, made once per ``model`` and ``name`` and kept while the model lives (the cache holds the model
    weakly: what ``build`` returns must not hold the model itself, only its layers or a ``weakref``). For what a
    recipe derives from a trained model to predict with (a traced function, a sub-model of some of its layers), so
    every evaluation of a run reuses what the first one traced."""
    entries = _PER_MODEL.setdefault(model, {})
    if name not in entries:
        entries[name] = build()
    return entries[name]


def batch_predictor(model) -> Callable[[Mapping], Any]:
    """``model.predict_on_batch`` for a functional Keras model, traced ONCE for every batch size and length.

    Keras's predict function is traced for the first batch's exact shape and traced again, with the shape relaxed,
    on the first batch of another length (about 1.5 s per trace for a MiniLM-L6 model on 2 cores, paid again by
    every sub-model a recipe builds per evaluation). This one has an input signature with unknown batch and
    sequence dimensions: one trace, made on the first call and kept for the model's life (:func:`per_model`).
    It takes a dict holding at least the model's inputs by name (its dict keys, or its input layers' names; other
    keys are ignored), runs the model with ``training=False`` and returns its outputs' structure as NumPy arrays.
    A model without Keras functional inputs (a subclassed model, or a stand-in such as
    ``bertkit.quantize.TFLiteModel``) keeps its own ``predict_on_batch``.
    """
    try:
        structure = model.input  # a functional model's inputs: a dict, a list or one tensor
    except (AttributeError, ValueError):  # not functional (never called on Keras inputs), or not Keras at all
        return model.predict_on_batch
    if isinstance(structure, Mapping):
        inputs = dict(structure)
    else:
        tensors = list(structure) if isinstance(structure, (list, tuple)) else [structure]
        if len(tensors) != len(model.input_names):
            return model.predict_on_batch
        inputs = dict(zip(model.input_names, tensors))
    return per_model(model, "batch_predictor", lambda: _traced_predictor(model, structure, inputs))


def _traced_predictor(model, structure, inputs: dict):
    import tensorflow as tf

    specs = {name: tf.TensorSpec([None] * len(x.shape), x.dtype, name=name) for name, x in inputs.items()}
    model_ref = weakref.ref(model)  # the traced function holds the variables, never the model (see per_model)

    @tf.function(input_signature=[specs], autograph=False)
    def predict(batch):
        if isinstance(structure, Mapping):
            args = batch
        elif isinstance(structure, (list, tuple)):
            args = [batch[name] for name in inputs]
        else:
            args = next(iter(batch.values()))
        return model_ref()(args, training=False)

    def predict_on_batch(batch: Mapping):
        missing = [name for name in inputs if name not in batch]
        if missing:
            raise ConfigError(f"predict: the batch lacks the model's input(s) {', '.join(missing)}")
        outputs = predict({name: tf.cast(batch[name], spec.dtype) for name, spec in specs.items()})
        return tf.nest.map_structure(lambda t: t.numpy(), outputs)

    return predict_on_batch


def predict_in_length_order(predict_batch, features: Sequence[Mapping], batch_size: int, *,
                            input_keys: Iterable[str] = ("token_ids", "segment_ids"),
                            length_key: str | None = None, pad_values: Mapping[str, float] | None = None) -> list:
    """Run ``predict_batch`` (e.g. ``batch_predictor(model)``) over ``features`` in batches of similar length (little
    padding) and return its per-example outputs in input order.

    ``predict_batch`` receives a dict of padded int32 inputs and returns an array, a tuple/list of arrays or a dict
    of arrays, each with the batch as leading dimension; each example gets the same structure sliced to its row (still
    padded to its batch's longest: the recipe trims with its own lengths).
    """
    input_keys = tuple(input_keys)
    if not features:
        return []
    length_key = length_key or input_keys[0]
    order = np.argsort([len(f[length_key]) for f in features], kind="stable")
    dataset = make_dataset([{k: features[i][k] for k in input_keys} for i in order], batch_size,
                           input_keys=input_keys, target_keys=(), pad_values=pad_values)
    outputs: list = [None] * len(features)
    position = 0
    for batch in dataset:
        result = predict_batch(batch)
        size = int(batch[input_keys[0]].shape[0])
        for row in range(size):
            outputs[order[position + row]] = _row(result, row)
        position += size
    return outputs


def _row(result, row: int):
    if isinstance(result, Mapping):
        return {k: np.asarray(v)[row] for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        return type(result)(np.asarray(v)[row] for v in result)
    return np.asarray(result)[row]
