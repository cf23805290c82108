"""Shared fixtures: a tiny random BERT (fast tests), one tiny trained run per recipe, and the converted default
encoder (equivalence / slow tests).

Under pytest-xdist the tiny BERT and the tiny runs are made once for the whole test session, by whichever worker
asks first, under a file lock in the session's shared temporary folder (``made_once``); tests treat them as
read-only (copy a run before writing into it)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

# bertkit first: on TensorFlow >= 2.16 importing it makes tf.keras Keras 2 before any test module imports TensorFlow.
importlib.import_module("bertkit")

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# recipe -> (shipped dataset whose first training lines make the tiny run's train, dev and test files, flags)
TINY_RUNS = {
    "sentiment": ("sst2", 16, []),
    "sequence_labeling": ("conll2003", 16, ["--max-len", "32"]),
    "span_extract": ("subjqa", 4, ["--max-len", "64", "--doc-stride", "16"]),
    # low thresholds so the barely trained model emits triples whose offsets can be checked
    "relation_extract": ("conll04", 8, ["--max-len", "32", "--subject-threshold", "0.1", "--object-threshold", "0.1"]),
}


class TinyRun:
    """A finished one-epoch run of a recipe on a tiny random BERT: ``run_dir`` and ``data`` (its train = dev = test
    file)."""

    def __init__(self, name: str, run_dir: Path, data: Path):
        self.name, self.run_dir, self.data = name, run_dir, data


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session sees (the base temporary folder itself without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(root: Path, name: str, make) -> Path:
    """``root / name``, a folder filled by ``make(path)`` in the first process to ask; the others wait on the lock
    and reuse it."""
    from filelock import FileLock

    target, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            make(target)
            done.write_text("")
    return target


@pytest.fixture(scope="session")
def tiny_bert_dir(shared_tmp):
    """A tiny random Google-format BERT (2 layers, hidden 32, small English WordPiece vocab), written once per
    session. Tests must not modify it."""
    from bertkit.testing import write_random_checkpoint

    return made_once(shared_tmp, "tiny_bert", lambda path: write_random_checkpoint(path / "bert")) / "bert"


@pytest.fixture(scope="session")
def tiny_recipe_run(shared_tmp, tiny_bert_dir):
    """``tiny_recipe_run(recipe) -> TinyRun``: a one-epoch run of the recipe on the tiny BERT (batch 4, the slice
    and flags of TINY_RUNS), trained once per session through ``train_main``. Read-only: copy it to change it."""
    from bertkit import datasets
    from bertkit.recipe import train_main

    def make(name: str, work: Path) -> None:
        dataset, lines, flags = TINY_RUNS[name]
        data = work / "data.jsonl"
        with open(datasets.file(dataset, "train"), encoding="utf-8") as f:
            data.write_text("".join(line for _, line in zip(range(lines), f)), encoding="utf-8")
        argv = ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(work / "run"), "--epochs", "1",
                "--batch-size", "4", "--train-file", str(data), "--dev-file", str(data), "--test-file", str(data),
                *flags]
        assert train_main(RECIPES / name, argv) == 0, f"the tiny {name} run did not train"

    def run_of(name: str) -> TinyRun:
        work = made_once(shared_tmp, f"tiny_run_{name}", lambda path: make(name, path))
        return TinyRun(name, work / "run", work / "data.jsonl")

    return run_of


@pytest.fixture(scope="session")
def default_bert_dir():
    """The real default encoder (all-MiniLM-L6-v2) in Google format, converted into the bertkit cache on first use."""
    from bertkit.encoder import default_bert_dir as convert_default

    return convert_default()


@pytest.fixture
def counted_dev_predictions(monkeypatch):
    """``counted_dev_predictions(recipe_folder, best_epoch) -> calls``: the recipe's ``predict`` records the number
    of examples of each call in ``calls``, and its ``score`` picks the kept epoch: of the first two evaluations,
    number ``best_epoch`` scores accuracy 0.9 and the other 0.1; any later prediction (a report's) scores 0.5. So a
    test sees how often dev was predicted and which predictions a report used."""
    from bertkit.recipe import load_recipe

    def patch(folder, best_epoch: int) -> list:
        module = load_recipe(folder).module
        calls, real_predict, real_score = [], module.predict, module.score

        def predict(model, tokenizer, examples, head, **kwargs):
            calls.append(len(examples))
            return real_predict(model, tokenizer, examples, head, **kwargs)

        def score(examples, predictions, head):
            metrics = real_score(examples, predictions, head)
            evaluation = len(calls)
            return {**metrics, "accuracy": (0.9 if evaluation == best_epoch else 0.1) if evaluation <= 2 else 0.5}

        monkeypatch.setattr(module, "predict", predict)
        monkeypatch.setattr(module, "score", score)
        return calls
    return patch
