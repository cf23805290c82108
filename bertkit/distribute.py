"""Where training runs: tf.distribute strategies by name, and the Keras mixed-precision policy.

``make_strategy("default" | "mirrored" | "multiworker" | "tpu")`` returns a ``tf.distribute.Strategy``; build and
compile the model inside ``strategy.scope()``. Nothing here runs at import time.

Notes on the strategies:
- ``mirrored`` replicates on every local GPU; with no GPU it uses every logical CPU device (one unless the process
  split the CPU with ``tf.config.set_logical_device_configuration`` before TensorFlow initialised).
- ``multiworker`` reads the cluster from the ``TF_CONFIG`` environment variable (``{"cluster": {"worker": [...]},
  "task": {"type": "worker", "index": i}}``). TensorFlow requires the strategy to be created before any other op
  runs in the process, so call ``make_strategy`` first thing in ``main``.
- ``tpu`` resolves the TPU from ``--tpu``/``TPU_NAME`` (or the local TPU VM) and fails with a clear
  :class:`~bertkit.errors.ConfigError` where there is none.
"""

from __future__ import annotations

import json
import os

from bertkit.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")

# What ``set_mixed_precision(True)`` means: float16 compute with float32 variables (the issue's ``--mixed-precision``).
# On CPUs with AVX512-BF16/AMX, ``"mixed_bfloat16"`` is the faster choice; pass it by name.
DEFAULT_MIXED_POLICY = "mixed_float16"
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name: str = "default", *, devices=None, tpu: str | None = None):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`).

    ``devices`` overrides the replica devices of ``mirrored``; ``tpu`` is the TPU name/address for ``tpu``
    (default: ``$TPU_NAME``, else the local TPU).
    """
    import tensorflow as tf

    name = (name or "default").lower()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else _local_replica_devices())
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu if tpu is not None else os.environ.get("TPU_NAME", ""))
    raise ConfigError(f"--strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _local_replica_devices() -> list[str]:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _check_tf_config() -> dict:
    """TF_CONFIG parsed, or a ConfigError that says what is wrong with it (TF's own errors are cryptic)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "--strategy multiworker: TF_CONFIG is not set; set it to "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": I}}')
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--strategy multiworker: TF_CONFIG is not valid JSON: {exc}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker"):
        raise ConfigError("--strategy multiworker: TF_CONFIG has no cluster.worker list")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError("--strategy multiworker: TF_CONFIG has no task {type, index}")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise ConfigError(
            f"--strategy multiworker: TF_CONFIG task {task['type']}:{task['index']} is not in the cluster")
    return config


def _tpu_strategy(tpu: str):
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        where = f"TPU {tpu!r}" if tpu else "a local TPU (set TPU_NAME or pass the TPU name)"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--strategy tpu: could not connect to {where}: {first_line}") from None
    return tf.distribute.TPUStrategy(resolver)


def set_mixed_precision(enabled=True) -> str:
    """Set the global Keras dtype policy and return its name.

    ``enabled``: ``True`` -> :data:`DEFAULT_MIXED_POLICY`, ``False``/``None`` -> ``"float32"``, or a policy name from
    :data:`POLICIES`. Call before building the model. Heads should keep their final logits in float32
    (``dtype="float32"`` on the last layer) so losses and softmax stay stable.
    """
    import tensorflow as tf

    if enabled is True:
        policy = DEFAULT_MIXED_POLICY
    elif enabled is False or enabled is None:
        policy = "float32"
    elif isinstance(enabled, str) and enabled in POLICIES:
        policy = enabled
    else:
        raise ConfigError(f"--mixed-precision: unknown policy {enabled!r}; choose one of {', '.join(POLICIES)}")
    tf.keras.mixed_precision.set_global_policy(policy)
    return policy
