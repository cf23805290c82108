"""The recipes' default datasets, shipped inside bertkit as package data (each folder has its SOURCE.md: origin,
licence, conversion), so that a recipe folder copied anywhere still trains on its default data with no flags.

    >>> from bertkit import datasets
    >>> datasets.path("sst2")                 # .../bertkit/datasets/sst2
    >>> datasets.file("sst2", "train")        # .../bertkit/datasets/sst2/train.jsonl
    >>> datasets.names()                      # ['conll04', 'conll2003', 'event_subject', 'mrpc', 'sst2', 'subjqa']
"""

from __future__ import annotations

from pathlib import Path

from bertkit.errors import ConfigError

_ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the shipped datasets (folders holding a SOURCE.md)."""
    return sorted(p.name for p in _ROOT.iterdir() if (p / "SOURCE.md").is_file())


def path(name: str) -> Path:
    """The folder of the shipped dataset ``name``; an unknown name is a ConfigError listing the known ones."""
    folder = _ROOT / name
    if not (folder / "SOURCE.md").is_file():
        raise ConfigError(f"no shipped dataset {name!r}; shipped datasets are {', '.join(names())}")
    return folder


def file(name: str, split: str) -> Path | None:
    """``<dataset>/<split>.jsonl`` of a shipped dataset, or None when the dataset has no such split."""
    candidate = path(name) / f"{split}.jsonl"
    return candidate if candidate.is_file() else None
