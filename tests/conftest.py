"""Shared fixtures: a tiny random BERT (fast tests) and the converted default encoder (equivalence / slow tests)."""

from __future__ import annotations

import pytest


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


def pytest_collection_modifyitems(config, items):
    """Test files holding a slow (real-encoder) test run first, each file's own order kept: under ``-n 2 --dist
    loadfile`` the two workers start on the long files, and the run ends on short ones instead of one worker
    finishing a minutes-long test while the other waits."""
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: the order within a file is unchanged
