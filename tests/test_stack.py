"""The two supported stacks: ``import bertkit`` arranges Keras 2 under TensorFlow >= 2.16 (TF_USE_LEGACY_KERAS=1)
and leaves TensorFlow 2.15 alone; a Keras 3 ``tf.keras`` is one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

import bertkit


@pytest.mark.parametrize("installed, expected", [("2.21.0", "1"), ("2.16.1", "1"), ("2.15.1", None)])
def test_legacy_keras_is_set_only_for_tensorflow_2_16_and_newer(monkeypatch, installed, expected):
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    monkeypatch.setattr(metadata, "version", lambda name: installed if name == "tensorflow" else "0")
    bertkit._use_keras_2()
    assert os.environ.get("TF_USE_LEGACY_KERAS") == expected


def test_a_users_own_setting_is_kept(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "0")
    monkeypatch.setattr(metadata, "version", lambda name: "2.21.0")
    bertkit._use_keras_2()
    assert os.environ["TF_USE_LEGACY_KERAS"] == "0"


def test_tf_keras_is_keras_2_after_importing_bertkit():
    assert bertkit.check_keras() in ("keras", "tf_keras")


def test_keras_3_is_one_clear_error_where_tensorflow_has_it():
    """On TensorFlow >= 2.16 a user who turns the variable off gets Keras 3: loading an encoder says what to do."""
    import tensorflow as tf

    if tuple(int(p) for p in tf.__version__.split(".")[:2]) < (2, 16):
        pytest.skip("TensorFlow 2.15: tf.keras is always Keras 2")
    code = ("import bertkit\nfrom bertkit.errors import ConfigError\ntry:\n    bertkit.check_keras()\n"
            "except ConfigError as e:\n    print('CLEAR', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "0"})
    assert "CLEAR tf.keras is Keras 3" in done.stdout and "TF_USE_LEGACY_KERAS" in done.stdout, done.stderr[-2000:]
