"""bertkit: BERT fine-tuning recipes for Keras/TensorFlow.

Importing the package is cheap on purpose: no TensorFlow, none of your files read. Import the submodules you need
(``bertkit.tokenization``, ``bertkit.encoder``, ...).

The one thing importing it does is arrange TensorFlow's environment before TensorFlow itself is imported:

- :func:`_use_keras_2`: bertkit (and keras-bert under it) is written against the Keras 2 API of ``tf.keras``. On
  TensorFlow 2.15 (the default stack) that is what ``tf.keras`` is. On TensorFlow >= 2.16 (the second stack, Python
  3.12/3.13, ``requirements-py312.txt``) ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set when
  ``tf.keras`` is first touched, and then it is the ``tf-keras`` package (Keras 2). bertkit sets it (unless the
  user set it), so nobody has to; :func:`check_keras` says clearly when ``tf.keras`` is Keras 3 anyway.
- :func:`_quiet_tensorflow`: TensorFlow's C++ start-up log (CUDA/cuDNN/TensorRT lines on a CPU machine) is silenced
  unless the user set ``TF_CPP_MIN_LOG_LEVEL`` or ``BERTKIT_TF_LOGS=1``.
"""

import os as _os

__version__ = "0.1.0"


def _quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up noise by default; an explicit ``TF_CPP_MIN_LOG_LEVEL`` (any value) or
    ``BERTKIT_TF_LOGS=1`` keeps TensorFlow's own logging."""
    if _os.environ.get("BERTKIT_TF_LOGS", "").strip() not in ("", "0"):
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _use_keras_2() -> None:
    """``TF_USE_LEGACY_KERAS=1`` where the installed TensorFlow is 2.16 or newer and the user did not set it (read
    from the package metadata: TensorFlow itself is not imported). Not on TensorFlow 2.15, whose ``tf.keras`` is
    Keras 2 already and where the variable would switch ``tf.keras`` to the separate tf-keras package."""
    if "TF_USE_LEGACY_KERAS" in _os.environ:
        return
    from importlib import metadata

    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        try:
            major, minor = (int(part) for part in version.split(".")[:2])
        except ValueError:
            return
        if (major, minor) >= (2, 16):
            _os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return


def check_keras() -> str:
    """Where ``tf.keras`` comes from when it is Keras 2 (``keras`` 2.15 on TensorFlow 2.15, ``tf_keras`` on
    TensorFlow >= 2.16); a ``ConfigError`` saying what to do when it is Keras 3 or cannot be loaded. TensorFlow
    >= 2.16 needs the tf-keras package and ``TF_USE_LEGACY_KERAS=1`` before ``tf.keras`` is first used: bertkit
    sets it on import, so only a program that touched ``tf.keras`` before importing bertkit, or set the variable to
    0, gets Keras 3."""
    import tensorflow as tf

    from bertkit.errors import ConfigError

    try:
        layer_module = tf.keras.layers.Layer.__module__  # Keras 2: <pkg>.src.engine.base_layer
    except Exception as error:  # tf-keras missing on TensorFlow >= 2.16: the lazy loader fails on first use
        raise ConfigError(f"tf.keras cannot be loaded ({type(error).__name__}: {error}); on TensorFlow "
                          f"{tf.__version__} bertkit needs the tf-keras package (pip install -r "
                          f"requirements-py312.txt)") from None
    if "engine" not in layer_module.split("."):
        raise ConfigError(
            f"tf.keras is Keras 3 ({layer_module}) on TensorFlow {tf.__version__}; bertkit needs the Keras 2 API: "
            f"install tf-keras and set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (importing bertkit first "
            f"does it; TF_USE_LEGACY_KERAS is {_os.environ.get('TF_USE_LEGACY_KERAS')!r} here)")
    return layer_module.split(".")[0]


_use_keras_2()
_quiet_tensorflow()
