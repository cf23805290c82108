"""bertkit: BERT fine-tuning recipes for Keras/TensorFlow.

Importing the package is cheap on purpose: no TensorFlow, no files read. Import the submodules you need
(``bertkit.tokenization``, ``bertkit.encoder``, ...).

The one thing importing it does is arrange TensorFlow's environment before TensorFlow itself is imported (see
:func:`_quiet_tensorflow`): its C++ start-up log (CUDA/cuDNN/TensorRT lines on a CPU machine) is silenced unless the
user set ``TF_CPP_MIN_LOG_LEVEL`` or ``BERTKIT_TF_LOGS=1``.
"""

import os as _os

__version__ = "0.1.0"


def _quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up noise by default; an explicit ``TF_CPP_MIN_LOG_LEVEL`` (any value) or
    ``BERTKIT_TF_LOGS=1`` keeps TensorFlow's own logging."""
    if _os.environ.get("BERTKIT_TF_LOGS", "").strip() not in ("", "0"):
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


_quiet_tensorflow()
