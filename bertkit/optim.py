"""AdamW for fine-tuning BERT: decoupled weight decay that skips LayerNorm and bias weights.

Built on ``tf.keras.optimizers.AdamW`` (Keras 2.15); keras-bert's own ``AdamWarmup`` does not work on TF 2.15.
Keras matches the exclusion patterns with ``re.search`` against ``variable.name`` but forgets them in
``get_config``, so :func:`optimizer_to_config` / :func:`optimizer_from_config` carry them explicitly.
"""

from __future__ import annotations

import platform

import tensorflow as tf

from bertkit.errors import ConfigError
from bertkit.schedules import schedule_from_config, schedule_to_config

# Regexes searched in variable names. keras-bert names its LayerNorm weights '<block>-Norm/gamma:0' and
# '<block>-Norm/beta:0' and its biases '<layer>_bq:0' ... '_bo:0', '_b1:0', '_b2:0'; Keras layers use 'bias',
# 'gamma', 'beta'; Hugging Face style names use 'LayerNorm'.
NO_DECAY_PATTERNS = (
    r"LayerNorm", r"layer_norm", r"-Norm/", r"/gamma:", r"/beta:", r"bias", r"_b[qkvo12]?:\d+$",
)

_DEFAULTS = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-6, "global_clipnorm": 1.0, "clipnorm": None,
             "dense_gradients": False}


@tf.keras.utils.register_keras_serializable(package="bertkit")
class AdamW(tf.keras.optimizers.AdamW):
    """``tf.keras.optimizers.AdamW`` that can densify sparse (embedding) gradients before the cross-replica sum.

    Why: with dynamic padding every replica's batch has its own length, so the embedding gradients
    (``IndexedSlices``) differ in size across replicas, and TF 2.15's collective all-gather of such slices fails
    ("Shape mismatch in the collective instance"). Dense gradients all-reduce fine. Off on a single replica.
    """

    def __init__(self, *args, dense_gradients: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.dense_gradients = bool(dense_gradients)

    def aggregate_gradients(self, grads_and_vars):
        if self.dense_gradients:
            grads_and_vars = [(tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g, v)
                              for g, v in grads_and_vars]
        return super().aggregate_gradients(grads_and_vars)

    def get_config(self):
        return {**super().get_config(), "dense_gradients": self.dense_gradients}


def build_optimizer(lr_schedule, weight_decay: float, *, beta_1: float = 0.9, beta_2: float = 0.999,
                    epsilon: float = 1e-6, global_clipnorm: float | None = 1.0, clipnorm: float | None = None,
                    exclude_from_weight_decay=NO_DECAY_PATTERNS, jit_compile: bool = True,
                    dense_gradients: bool = False):
    """``tf.keras.optimizers.AdamW`` with ``lr_schedule`` (a schedule or a float) and decay skipping the weights
    whose names match ``exclude_from_weight_decay``. Gradients are clipped to global norm 1 as in BERT.
    ``jit_compile`` (default True) runs the update of every weight as one XLA kernel (its few element-wise ops
    fused), on every device. Keras 2.15 turns this off where TensorFlow sees no GPU ("Optimizer only benefits from
    XLA when training on GPU"), which leaves each update a chain of small plain graph ops. Measured on CPU, that
    reason does not hold: the graph train step of MiniLM-L6 at 32 x 128 took 1.88 s per step with XLA updates
    against 1.94-2.00 s without (Zen 4, 2 cores, 2026-12-04; benchmarks/README.md "What helped"), for about 1.5 s
    of compilation at the first step (one kernel per weight), so bertkit sets it back on. Where Keras refuses XLA
    outright (Apple silicon) the plain updates stay. ``jit_compile=False`` gives the plain ops.
    ``dense_gradients``: see :class:`AdamW` (the Trainer sets it for several replicas)."""
    if weight_decay is None or weight_decay < 0:
        raise ConfigError(f"weight decay must be zero or positive, got {weight_decay!r}")
    optimizer = AdamW(
        learning_rate=lr_schedule, weight_decay=float(weight_decay), beta_1=beta_1, beta_2=beta_2,
        epsilon=epsilon, global_clipnorm=global_clipnorm, clipnorm=clipnorm, jit_compile=jit_compile,
        dense_gradients=dense_gradients)
    optimizer.exclude_from_weight_decay(var_names=list(exclude_from_weight_decay or ()))
    if jit_compile and not optimizer.jit_compile and _xla_updates_supported():
        optimizer.jit_compile = True  # undo Keras's no-GPU switch-off (see the docstring)
    return optimizer


def _xla_updates_supported() -> bool:
    """Whether Keras would compile optimizer updates with XLA here but for the missing GPU: its own check
    (``tf_utils.can_jit_compile``, private) refuses only macOS on Apple silicon, where XLA is unavailable."""
    return not (platform.system() == "Darwin" and platform.processor() == "arm")


def is_decayed(optimizer, variable) -> bool:
    """Whether ``optimizer`` applies weight decay to ``variable`` (Keras's own rule, for checks and tests)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # mixed precision wraps it in a LossScaleOptimizer
    return bool(inner.weight_decay) and inner._use_weight_decay(variable)


def optimizer_to_config(optimizer) -> dict:
    """``{"class": "AdamW", "learning_rate": <schedule config or float>, "weight_decay": ..., ...}``."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(inner, tf.keras.optimizers.AdamW):
        raise ConfigError(f"cannot serialise optimizer {type(inner).__name__}; only AdamW")
    lr = inner._learning_rate
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        lr_config = schedule_to_config(lr)
    else:
        lr_config = float(tf.keras.backend.get_value(lr))
    return {
        "class": "AdamW", "learning_rate": lr_config, "weight_decay": float(inner.weight_decay),
        "beta_1": float(inner.beta_1), "beta_2": float(inner.beta_2), "epsilon": float(inner.epsilon),
        "global_clipnorm": inner.global_clipnorm, "clipnorm": inner.clipnorm,
        "exclude_from_weight_decay": list(getattr(inner, "_exclude_from_weight_decay_names", [])),
        "dense_gradients": bool(getattr(inner, "dense_gradients", False)),
    }


def optimizer_from_config(config: dict):
    """Inverse of :func:`optimizer_to_config`; unknown keys or a class other than AdamW raise ``ConfigError``."""
    if not isinstance(config, dict):
        raise ConfigError(f"optimizer config must be an object, got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("class", "AdamW")
    if name != "AdamW":
        raise ConfigError(f"unknown optimizer {name!r}; only AdamW")
    if "learning_rate" not in kwargs or "weight_decay" not in kwargs:
        raise ConfigError("optimizer config needs 'learning_rate' and 'weight_decay'")
    known = set(_DEFAULTS) | {"learning_rate", "weight_decay", "exclude_from_weight_decay"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"optimizer config: unknown key(s) {unknown}; known: {sorted(known)}")
    lr = schedule_from_config(kwargs.pop("learning_rate"))
    weight_decay = kwargs.pop("weight_decay")
    exclude = kwargs.pop("exclude_from_weight_decay", NO_DECAY_PATTERNS)
    return build_optimizer(lr, weight_decay, exclude_from_weight_decay=exclude, **{**_DEFAULTS, **kwargs})
