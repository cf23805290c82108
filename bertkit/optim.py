"""AdamW for fine-tuning BERT: decoupled weight decay that skips LayerNorm and bias weights.

Built on ``tf.keras.optimizers.AdamW`` (Keras 2.15); keras-bert's own ``AdamWarmup`` does not work on TF 2.15.
Keras matches the exclusion patterns with ``re.search`` against ``variable.name`` but forgets them in
``get_config``, so :func:`optimizer_to_config` / :func:`optimizer_from_config` carry them explicitly.
"""

from __future__ import annotations

import platform

import tensorflow as tf
from tensorflow.python.ops import control_flow_util  # whether a graph is traced for XLA (Keras asks it too)

from bertkit.errors import ConfigError
from bertkit.schedules import schedule_from_config, schedule_to_config
from bertkit.train_step import PROBE_MIN_STEPS

# Regexes searched in variable names. keras-bert names its LayerNorm weights '<block>-Norm/gamma:0' and
# '<block>-Norm/beta:0' and its biases '<layer>_bq:0' ... '_bo:0', '_b1:0', '_b2:0'; Keras layers use 'bias',
# 'gamma', 'beta'; Hugging Face style names use 'LayerNorm'.
NO_DECAY_PATTERNS = (
    r"LayerNorm", r"layer_norm", r"-Norm/", r"/gamma:", r"/beta:", r"bias", r"_b[qkvo12]?:\d+$",
)

# Both trainers (the Trainer, the multi-task JointRun) keep Keras's plain-op updates
# (``build_optimizer(jit_compile=False)``) for a run of fewer steps than this: see xla_updates_choice. The XLA
# kernels are compiled at the first step, about 2.5 s for MiniLM-L6 on a 2-core Zen 4 (the first step at 16 x 32:
# 9.0-9.2 s with them against 6.6 s with plain ops; 1.5 s for the 103 update kernels, 1.1 s more since the clipping
# and decay joined them), and save 0.01-0.1 s per step (16 x 32 to 32 x 128): they repay their compilation after
# roughly 26-260 steps. The 63-step short run of benchmarks/bench_short_run.py trained 1-3 s slower with them
# (benchmarks/README.md). The bound --train-step auto already uses for the whole XLA step.
XLA_UPDATES_MIN_STEPS = PROBE_MIN_STEPS

# The fewest rows an embedding's gradient is padded to for the XLA updates (see AdamW._row_gradients_in_row_buckets):
# batches with fewer distinct tokens than this share one compiled update.
ROW_BUCKET_MIN = 64

_DEFAULTS = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-6, "global_clipnorm": 1.0, "clipnorm": None,
             "dense_gradients": False}


@tf.keras.utils.register_keras_serializable(package="bertkit")
class AdamW(tf.keras.optimizers.AdamW):
    """``tf.keras.optimizers.AdamW`` that can densify sparse (embedding) gradients before the cross-replica sum.

    Why: with dynamic padding every replica's batch has its own length, so the embedding gradients
    (``IndexedSlices``) differ in size across replicas, and TF 2.15's collective all-gather of such slices fails
    ("Shape mismatch in the collective instance"). Dense gradients all-reduce fine. Off on a single replica.

    With ``jit_compile`` (bertkit's default, see :func:`build_optimizer`) the global-norm clipping and the decoupled
    weight decay run as XLA work too, with Keras's arithmetic in Keras's order. Without it (plain-op updates) every
    float32 weight's Adam step is TensorFlow's fused kernel, an embedding's too: its sparse gradient is densified
    after Keras's clipping and deduplication, which ``dense_gradients`` (before the cross-replica sum) precedes.
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

    # With XLA updates (``jit_compile``, bertkit's default) the global-norm clipping and the weight decay join the
    # XLA work too; Keras runs both as plain ops per weight (an ``L2Loss`` and a ``Mul`` per gradient, two ``Mul``
    # and an ``AssignSub`` per decayed weight; the ``L2Loss`` alone took 4.6% of a MiniLM-L6 train step's op time
    # on 2 cores; see benchmarks/README.md "What helped"). Same arithmetic, same order; the weights agree to float
    # rounding (tests/test_schedules.py).

    def _clip_gradients(self, grads):
        if not (self.jit_compile and self.global_clipnorm and self.global_clipnorm > 0 and not self.clipnorm):
            return super()._clip_gradients(grads)
        # tf.clip_by_global_norm, with the dense gradients in one XLA kernel. Sparse (embedding) gradients stay
        # plain ops: their row count changes with every padded length, and each new shape would compile again.
        dense = [i for i, g in enumerate(grads) if not isinstance(g, tf.IndexedSlices)]
        sparse = [i for i, g in enumerate(grads) if isinstance(g, tf.IndexedSlices)]
        sparse_sum_of_squares = tf.add_n(
            [tf.reduce_sum(tf.square(tf.cast(grads[i].values, tf.float32))) for i in sparse] + [tf.zeros([])])
        scaled, scale = self._clip_dense_by_global_norm(
            [grads[i] for i in dense], sparse_sum_of_squares, tf.constant(self.global_clipnorm, tf.float32))
        clipped = list(grads)
        for i, g in zip(dense, scaled):
            clipped[i] = g
        for i in sparse:
            g = grads[i]
            clipped[i] = tf.IndexedSlices(g.values * tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
        return clipped

    @tf.function(jit_compile=True)
    def _clip_dense_by_global_norm(self, dense_grads, sparse_sum_of_squares, clip_norm):
        total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in dense_grads]
                         + [sparse_sum_of_squares])
        norm = tf.sqrt(total)
        # As tf.clip_by_global_norm: an infinite or NaN norm makes every gradient NaN (never a silent zero step).
        norm = tf.where(tf.math.is_finite(norm), norm, tf.constant(float("nan")))
        scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm)
        return [g * tf.cast(scale, g.dtype) for g in dense_grads], scale

    def _apply_weight_decay(self, variables):
        if not self.jit_compile:
            super()._apply_weight_decay(variables)
        # else: done inside each weight's XLA update (update_step), before the Adam step, as Keras orders them

    # Plain-op updates (short runs: see xla_updates_choice): Keras's dense Adam step is about 20 graph ops per
    # weight (the step's powers of beta and its alpha, then m, v and the weight, each its own pass over memory);
    # TensorFlow's fused ``ResourceApplyAdam`` kernel does the same arithmetic in Keras's order (alpha =
    # lr * sqrt(1 - beta_2^t) / (1 - beta_1^t); m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2);
    # w -= m alpha / (sqrt(v) + epsilon)) as one op and one pass, with the powers of beta computed once per step.
    # A short run's first step traces and optimises about 2,000 fewer ops (benchmarks/README.md "What helped").

    def _internal_apply_gradients(self, grads_and_vars):
        self._applying, self._step_scalars = True, None  # the step's scalars: made by its first fused update
        try:
            if not self.jit_compile:
                grads_and_vars = self._densified_row_gradients(grads_and_vars)
            elif not control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
                grads_and_vars = self._row_gradients_in_row_buckets(grads_and_vars)
            return super()._internal_apply_gradients(grads_and_vars)
        finally:
            self._applying, self._step_scalars = False, None

    # XLA updates of an embedding: Keras's XLA kernel for a weight's update (``_update_step_xla``) is compiled for
    # the shapes of its inputs, and an embedding's gradient has one row per distinct token of the batch (Keras
    # deduplicated them), a count that changes from batch to batch: every new count compiled the word embeddings'
    # update again (about 0.05 s for MiniLM's; the MiniLM train step at 32 x 24 over new counts took 0.32 s
    # against 0.275 once compiled: benchmarks/README.md "What helped"). The rows are padded up to the next power of
    # two (at least ROW_BUCKET_MIN) with zero rows at index 0: a dozen shapes at most, each compiled once. A zero
    # row added to m and v leaves them as they were (x + 0 == x): the weights are those of the unpadded update, to
    # the bit (tests/test_schedules.py; MiniLM after six steps, all 103 weights). A table of at most ROW_BUCKET_MIN
    # rows (the segment embeddings) has few counts to meet and is left as it is: XLA rounds a scatter of one row
    # otherwise than one of 64 (with the segments' single row padded, MiniLM's weights equalled the unpadded
    # update's after one step and differed in their last bits after six: the classifier's kernel by 5e-6 relative).
    # Inside a train step XLA-compiled as a whole (--train-step xla) the rows are left as they are: there the row
    # count is a dynamic dimension of the one step XLA compiles per padded batch length, not a compilation of its own.

    def _row_gradients_in_row_buckets(self, grads_and_vars):
        """``grads_and_vars`` with each ``IndexedSlices`` gradient's rows padded to a power of two (see above)."""
        bucketed = []
        for gradient, variable in grads_and_vars:
            if isinstance(gradient, tf.IndexedSlices) and variable.shape[0] is not None \
                    and variable.shape[0] > ROW_BUCKET_MIN:
                rows = tf.shape(gradient.indices, out_type=tf.int32)[0]
                padding = _next_power_of_two(tf.maximum(rows, ROW_BUCKET_MIN)) - rows
                values = tf.concat([gradient.values, tf.zeros(tf.concat(
                    [[padding], tf.shape(gradient.values, out_type=tf.int32)[1:]], 0), gradient.values.dtype)], 0)
                indices = tf.concat([gradient.indices, tf.zeros([padding], gradient.indices.dtype)], 0)
                gradient = tf.IndexedSlices(values, indices, gradient.dense_shape)
            bucketed.append((gradient, variable))
        return bucketed

    # Plain-op updates of an embedding: its gradient is ``IndexedSlices`` (the rows the batch looked up, clipped
    # and deduplicated by Keras before this point), and Keras's sparse Adam step adds them to m and v with
    # ``scatter_add`` after decaying every row, then moves every row of the weight. A scatter (as the forward pass's
    # gather) leaves a variable in TensorFlow's copy-on-read mode, where each later dense read or update copies the
    # whole tensor (MiniLM's 30,522 x 384 word embeddings: a read 0.26 ms before, 3.98 ms after), about ten copies
    # a step, beside a dozen passes of Keras's ops over the three tensors. Placed in a dense tensor of the weight's
    # shape (zero outside the looked-up rows), the gradient takes the fused update below: one pass, no scatter; the
    # MiniLM train step at 32 x 24 took 0.29-0.30 s instead of 0.32-0.34 (benchmarks/README.md "What helped").
    # Same arithmetic up to float rounding: rows not looked up get bitwise Keras's values (m + (0 - m)(1 - beta_1)
    # is m + (-m)(1 - beta_1)); a looked-up row's m is m + (g - m)(1 - beta_1) where Keras rounds
    # (m - m(1 - beta_1)) + g(1 - beta_1), likewise v. The clipping norm is Keras's (taken before this point).

    def _densified_row_gradients(self, grads_and_vars):
        """``grads_and_vars`` with each float32 ``IndexedSlices`` gradient placed in a dense tensor of its variable's
        shape, for the fused plain-op update (the XLA updates keep Keras's sparse ops: see
        :meth:`_row_gradients_in_row_buckets`)."""
        if self.amsgrad:
            return grads_and_vars
        densified = []
        for gradient, variable in grads_and_vars:
            if (isinstance(gradient, tf.IndexedSlices) and variable.dtype == tf.float32
                    and gradient.values.dtype == tf.float32 and variable.shape.is_fully_defined()):
                # the indices are unique (Keras deduplicated them): each row is placed, nothing summed
                gradient = tf.math.unsorted_segment_sum(gradient.values, gradient.indices, variable.shape[0])
            densified.append((gradient, variable))
        return densified

    def _fused_dense_update(self, gradient, variable) -> bool:
        """``ResourceApplyAdam`` for a dense float32 gradient; False (nothing done) where Keras's ops must run."""
        if (isinstance(gradient, tf.IndexedSlices) or self.amsgrad or variable.dtype != tf.float32
                or not hasattr(variable, "handle") or not getattr(self, "_applying", False)):
            return False
        index = self._index_dict[self._var_key(variable)]
        if self._step_scalars is None:  # the step's scalars, made once for every weight's update (not 4 ops each)
            local_step = tf.cast(self.iterations + 1, tf.float32)
            beta_1, beta_2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
            self._step_scalars = {
                "beta1_power": tf.pow(beta_1, local_step), "beta2_power": tf.pow(beta_2, local_step),
                "lr": tf.cast(self.learning_rate, tf.float32),  # this step's rate: Keras set it before the updates
                "beta1": beta_1, "beta2": beta_2, "epsilon": tf.constant(self.epsilon, tf.float32)}
        tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=self._momentums[index].handle,
                                     v=self._velocities[index].handle, grad=gradient, **self._step_scalars)
        return True

    def update_step(self, gradient, variable):
        if self.jit_compile and self.weight_decay and self._use_weight_decay(variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            wd = tf.cast(self.weight_decay, variable.dtype)
            variable.assign_sub(variable * wd * lr)
        if self.jit_compile or not self._fused_dense_update(gradient, variable):
            super().update_step(gradient, variable)


def _next_power_of_two(n):
    """The least power of two >= ``n`` (an int32 tensor, 1 <= n <= 2**30), exactly: the bits below n - 1's highest
    bit set, plus one."""
    n = n - 1
    for shift in (1, 2, 4, 8, 16):
        n = tf.bitwise.bitwise_or(n, tf.bitwise.right_shift(n, shift))
    return n + 1


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
    outright (Apple silicon) the plain updates stay. ``jit_compile=False`` gives the plain ops. With the XLA updates
    the global-norm clipping (one XLA kernel over the dense gradients) and the weight decay (inside each weight's
    update kernel) leave Keras's plain ops too: see :class:`AdamW`. The trainers ask for the plain ops on a run
    shorter than :data:`XLA_UPDATES_MIN_STEPS`, which would not repay the kernels' compilation
    (:func:`xla_updates_choice`).
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


def xla_updates_choice(steps: int) -> dict:
    """Whether a training run of ``steps`` optimizer steps gets AdamW's XLA updates (``build_optimizer``'s
    ``jit_compile``), and why, as run_config.json records it: ``{"xla": bool, "reason": str}``. Plain ops for a run
    shorter than :data:`XLA_UPDATES_MIN_STEPS` (the kernels would not repay their compilation) and where XLA is
    unavailable. The Trainer and the multi-task trainer both ask here."""
    steps = int(steps)
    if steps < XLA_UPDATES_MIN_STEPS:
        return {"xla": False, "reason": f"a short run ({steps} steps < {XLA_UPDATES_MIN_STEPS}): XLA kernels would "
                                        f"not repay their compilation"}
    if not _xla_updates_supported():
        return {"xla": False, "reason": "XLA is unavailable on this platform"}
    return {"xla": True, "reason": f"{steps} steps >= {XLA_UPDATES_MIN_STEPS}"}


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
