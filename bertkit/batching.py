"""tf.data pipelines from Python examples: dynamic padding, length bucketing, seeded shuffling.

Every feature is stacked once into one tensor per key (ragged along the dimensions whose length varies between
examples), so a 60k-example set costs a few vectorised NumPy copies, not a Python generator per step. Each batch is
padded only to its own longest sequence, which is most of the speed of training on short sentences.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

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


def _auto_bucket_boundaries(lengths: np.ndarray, buckets: int = 8) -> list[int]:
    """Boundaries at length quantiles, so buckets hold similar numbers of examples."""
    quantiles = np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:-1])
    return sorted({int(q) + 1 for q in quantiles if int(q) + 1 > int(lengths.min())})


def make_dataset(features: Sequence[Mapping], batch_size: int, *,
                 input_keys: Iterable[str] = ("token_ids", "segment_ids"),
                 target_keys: Iterable[str] = ("label",), shuffle: bool = False, seed: int = 0,
                 bucket_by_length: bool = False, pad_values: Mapping[str, float] | None = None,
                 drop_remainder: bool = False, length_key: str | None = None, bucket_boundaries=None):
    """A ``tf.data.Dataset`` of ``(inputs_dict, targets)`` batches padded per batch to their longest example.

    ``features`` is a list of dicts of NumPy arrays / lists / scalars. Integer features become int32 and float ones
    float32. ``targets`` is the single tensor for one target key, a dict for several, and absent (elements are the
    inputs dict alone) for ``target_keys=()``. ``pad_values`` maps a key to its padding value (default 0; e.g. -1 for
    ignored tag positions). ``shuffle`` reshuffles every epoch, deterministically given ``seed``.
    ``bucket_by_length`` groups examples of similar length (length of ``length_key``, default the first input key)
    into the same batches; ``bucket_boundaries`` overrides the automatic length-quantile boundaries.
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
    dataset = tf.data.Dataset.from_tensor_slices(tensors)
    if any(isinstance(t, tf.RaggedTensor) for t in tensors.values()):
        dataset = dataset.map(_densify, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        # Explicit seed: the same permutation sequence in every process (what --resume relies on).
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)

    padding = {key: tf.constant(pad_values.get(key, 0), dtype=tensors[key].dtype) for key in keys}
    if bucket_by_length:
        length_key = length_key or input_keys[0]
        if ndims[length_key] < 1:
            raise ConfigError(f"cannot bucket by length of scalar feature {length_key!r}")
        lengths = np.array([np.shape(example[length_key])[0] for example in features])
        boundaries = list(bucket_boundaries) if bucket_boundaries is not None else _auto_bucket_boundaries(lengths)
        dataset = dataset.bucket_by_sequence_length(
            lambda element: tf.shape(element[length_key])[0], boundaries, [batch_size] * (len(boundaries) + 1),
            padding_values=padding, drop_remainder=drop_remainder)
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding, drop_remainder=drop_remainder)

    def split(batch):
        inputs = {k: batch[k] for k in input_keys}
        if not target_keys:
            return inputs
        if len(target_keys) == 1:
            return inputs, batch[target_keys[0]]
        return inputs, {k: batch[k] for k in target_keys}

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _densify(element):
    import tensorflow as tf

    return {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v for k, v in element.items()}


def steps_per_epoch(n_examples: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    """Batches in one pass over ``n_examples`` (without bucketing)."""
    return n_examples // batch_size if drop_remainder else -(-n_examples // batch_size)
