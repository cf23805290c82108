"""Shared fixtures: a tiny random BERT (fast tests) and the converted default encoder (equivalence / slow tests)."""

from __future__ import annotations

import importlib

import pytest

# bertkit first: on TensorFlow >= 2.16 importing it makes tf.keras Keras 2 before any test module imports TensorFlow.
importlib.import_module("bertkit")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random Google-format BERT (2 layers, hidden 32, small English WordPiece vocab), written once per
    session. Tests must not modify it."""
    from bertkit.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny_bert") / "bert")


@pytest.fixture(scope="session")
def default_bert_dir():
    """The real default encoder (all-MiniLM-L6-v2) in Google format, converted into the bertkit cache on first use."""
    from bertkit.encoder import default_bert_dir as convert_default

    return convert_default()
