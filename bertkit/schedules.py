"""Learning-rate schedules (Keras ``LearningRateSchedule``s, serialisable by ``get_config``).

- :class:`WarmupLinearDecay`: linear warmup from 0 to the peak, then linear decay to 0 at ``total_steps`` (the BERT
  fine-tuning recipe of the TF Model Garden and of Hugging Face's ``get_linear_schedule_with_warmup``).
- :class:`PiecewiseLinear`: straight lines through ``(boundary, value)`` points, e.g. 0 -> 5e-5 over epoch 1 and
  -> 1e-5 over epoch 2 as in the classic keras-bert relation-extraction recipe.
"""

from __future__ import annotations

import tensorflow as tf

from bertkit.errors import ConfigError


@tf.keras.utils.register_keras_serializable(package="bertkit")
class WarmupLinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """``peak_lr * step / warmup_steps`` while warming up, then ``peak_lr * (total - step) / (total - warmup)``,
    0 from ``total_steps`` on. ``step`` is the optimizer's iteration count (0 for the first update)."""

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0, name: str | None = None):
        super().__init__()
        peak_lr, total_steps, warmup_steps = float(peak_lr), int(total_steps), int(warmup_steps)
        if not peak_lr > 0:
            raise ConfigError(f"WarmupLinearDecay: peak_lr must be positive, got {peak_lr}")
        if total_steps < 1:
            raise ConfigError(f"WarmupLinearDecay: total_steps must be at least 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ConfigError(f"WarmupLinearDecay: warmup_steps must be in [0, {total_steps}], got {warmup_steps}")
        self.peak_lr, self.total_steps, self.warmup_steps, self.name = peak_lr, total_steps, warmup_steps, name

    def __call__(self, step):
        with tf.name_scope(self.name or "WarmupLinearDecay"):
            step = tf.cast(step, tf.float32)
            warmup = tf.constant(float(max(self.warmup_steps, 1)), tf.float32)
            decay = tf.constant(float(max(self.total_steps - self.warmup_steps, 1)), tf.float32)
            rising = step / warmup
            falling = (float(self.total_steps) - step) / decay
            fraction = tf.where(step < float(self.warmup_steps), rising, falling)
            return self.peak_lr * tf.clip_by_value(fraction, 0.0, 1.0)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "name": self.name}


@tf.keras.utils.register_keras_serializable(package="bertkit")
class PiecewiseLinear(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear interpolation through ``(boundaries[i], values[i])``; constant before the first boundary and after
    the last. ``PiecewiseLinear([0, 1000, 2000], [0.0, 5e-5, 1e-5])``."""

    def __init__(self, boundaries, values, name: str | None = None):
        super().__init__()
        boundaries, values = [int(b) for b in boundaries], [float(v) for v in values]
        if not boundaries or len(boundaries) != len(values):
            raise ConfigError(f"PiecewiseLinear: need as many boundaries as values (at least one), "
                              f"got {len(boundaries)} and {len(values)}")
        if any(b1 <= b0 for b0, b1 in zip(boundaries, boundaries[1:])):
            raise ConfigError(f"PiecewiseLinear: boundaries must increase strictly, got {boundaries}")
        if any(v < 0 for v in values):
            raise ConfigError(f"PiecewiseLinear: values must not be negative, got {values}")
        self.boundaries, self.values, self.name = boundaries, values, name

    def __call__(self, step):
        with tf.name_scope(self.name or "PiecewiseLinear"):
            step = tf.cast(step, tf.float32)
            lr = tf.constant(self.values[0], tf.float32)
            # Sum of clipped ramps: each segment contributes its full rise once the step has passed it.
            for (b0, v0), (b1, v1) in zip(zip(self.boundaries, self.values),
                                          zip(self.boundaries[1:], self.values[1:])):
                progress = tf.clip_by_value((step - float(b0)) / float(b1 - b0), 0.0, 1.0)
                lr = lr + progress * (v1 - v0)
            return lr

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


SCHEDULES = {cls.__name__: cls for cls in (WarmupLinearDecay, PiecewiseLinear)}


def schedule_to_config(schedule) -> dict:
    """``{"class": name, **get_config()}``, the form :func:`schedule_from_config` reads."""
    name = type(schedule).__name__
    if name not in SCHEDULES:
        raise ConfigError(f"cannot serialise schedule {name}; known: {', '.join(SCHEDULES)}")
    return {"class": name, **schedule.get_config()}


def schedule_from_config(config: dict):
    """Build a schedule from ``{"class": "WarmupLinearDecay", "peak_lr": ..., ...}`` (a float is a constant rate)."""
    if isinstance(config, (int, float)) and not isinstance(config, bool):
        return float(config)
    if not isinstance(config, dict) or "class" not in config:
        raise ConfigError(f"learning-rate schedule must be a number or an object with a 'class', got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("class")
    cls = SCHEDULES.get(name)
    if cls is None:
        raise ConfigError(f"unknown learning-rate schedule {name!r}; known: {', '.join(SCHEDULES)}")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"schedule {name}: {error}") from None


def schedule_values(schedule, total_steps: int):
    """The learning rate at steps ``0 .. total_steps`` as a NumPy array."""
    steps = tf.range(int(total_steps) + 1)
    if callable(schedule):
        return schedule(steps).numpy()
    return tf.fill([int(total_steps) + 1], float(schedule)).numpy()


def plot_schedule(schedule, total_steps: int, path):
    """Write the schedule over ``total_steps`` as a PNG (atomically); returns the path."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    from bertkit.fileio import atomic_write_bytes

    values = schedule_values(schedule, total_steps)
    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.plot(range(len(values)), values)
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title(type(schedule).__name__)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
