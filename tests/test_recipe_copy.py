"""A recipe folder lifts cleanly into someone else's project: copied outside the repository under a new name, its
head edited, it runs (--help, a tiny training, predict.py) in a process where only the installed bertkit is
importable, runs its own edited code, and still finds its default data. Also: the recipe contract as the suite and
the multi-task trainer use it (load_recipe by path, two copies side by side)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit import datasets
from bertkit.recipe import REQUIRED, load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.parent.name for p in (REPO / "recipes").glob("*/task.py"))
MARKER = "EDITED-COPY-MARKER"
# Options a tiny random checkpoint (max 128 positions) needs beyond the shared ones.
TINY_OPTIONS = {"span_extract": ["--doc-stride", "32"]}

EDIT = f'''

# --- a competitor's edit of the head -------------------------------------------------------------------------
_build_model_before_the_edit = build_model


def build_model(bert_dir, head, **options):
    import sys
    print("{MARKER}", file=sys.stderr)
    return _build_model_before_the_edit(bert_dir, head, **options)
'''


def _clean_env() -> dict:
    """The environment of a user's shell: no PYTHONPATH (pytest's own path setting stays in this process)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST")}


def _slice(source: Path, target: Path, n: int) -> Path:
    with open(source, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f)]
    target.write_text("".join(lines), encoding="utf-8")
    return target


def _run(args, cwd, timeout=600, **env):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env={**_clean_env(), **env},
                          capture_output=True, text=True, timeout=timeout)


def test_the_repository_root_is_not_importable_from_elsewhere(tmp_path):
    """What the copy test relies on: outside the repository, `recipes` is not importable (the wheel and the
    editable install ship `bertkit` only), while bertkit is."""
    done = _run(["-c", "import bertkit, importlib.util as u; print(u.find_spec('recipes') is None)"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("name", RECIPES)
def test_a_copied_renamed_and_edited_recipe_runs_its_own_code(name, tmp_path, tiny_bert_dir):
    copy = tmp_path / "my_competition" / f"{name}_v2"
    shutil.copytree(REPO / "recipes" / name, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "task.py", "a", encoding="utf-8") as f:
        f.write(EDIT)
    work = tmp_path / "work"
    work.mkdir()

    # --help: the default data resolves to the data shipped inside the installed bertkit, and the path stays whole
    # (copyable) in a narrow terminal
    helped = _run([copy / "train.py", "--help"], work, COLUMNS="60")
    assert helped.returncode == 0, helped.stderr[-3000:]
    recipe = load_recipe(REPO / "recipes" / name)
    default_train = datasets.file(recipe.DEFAULTS["dataset"], "train")
    assert default_train.is_file() and str(default_train) in " ".join(helped.stdout.split())

    # a tiny training on slices of the default data
    files = {split: _slice(datasets.file(recipe.DEFAULTS["dataset"], split), work / f"{split}.jsonl", n)
             for split, n in (("train", 64), ("dev", 8), ("test", 8))}
    out = work / "run"
    trained = _run([copy / "train.py", "--bert-dir", tiny_bert_dir, "--output-dir", out, "--epochs", "1",
                    "--batch-size", "8", "--max-len", "128", *TINY_OPTIONS.get(name, []),
                    *[arg for split, path in files.items() for arg in (f"--{split}-file", path)]], work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert MARKER in trained.stderr  # the edited copy ran, not an installed or repository recipe
    config = json.loads((out / "run_config.json").read_text())
    assert config["recipe"]["folder"] == str(copy.resolve())
    assert json.loads((out / "report.json").read_text())["headline"]["value"] is not None

    # predict.py of the copy on the finished run
    predicted = _run([copy / "predict.py", "--run-dir", out, "--input", files["test"], "--output",
                      work / "predictions.jsonl"], work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert MARKER in predicted.stderr
    lines = (work / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(files["test"].read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_fills_in_the_contract(name):
    recipe = load_recipe(REPO / "recipes" / name)
    assert all(hasattr(recipe.module, attr) for attr in REQUIRED)
    assert recipe.name == name and datasets.file(recipe.DEFAULTS["dataset"], "train") is not None
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "recipes" / name).glob("*.py"))
    assert "sys.path" not in source and "parents[" not in source and "from recipes" not in source


def test_two_copies_of_one_recipe_live_side_by_side(tmp_path):
    """The suite and the multi-task trainer load recipes by path: two copies are two modules, each its own."""
    first, second = tmp_path / "a" / "sentiment", tmp_path / "b" / "sentiment"
    for folder in (first, second):
        shutil.copytree(REPO / "recipes" / "sentiment", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (second / "task.py").write_text((second / "task.py").read_text().replace('HEADLINE = "accuracy"',
                                                                              'HEADLINE = "macro_f1"'))
    a, b = load_recipe(first), load_recipe(second)
    assert a.module is not b.module and (a.HEADLINE, b.HEADLINE) == ("accuracy", "macro_f1")
    assert load_recipe(first / "train.py").module is a.module  # a recipe's own file names its folder


def test_a_folder_that_is_not_a_recipe_is_a_clear_error(tmp_path):
    from bertkit.errors import ConfigError

    with pytest.raises(ConfigError, match="not a recipe folder"):
        load_recipe(tmp_path)
    (tmp_path / "task.py").write_text("TASK = 'x'\n")
    with pytest.raises(ConfigError, match=r"task.py: not a recipe: it lacks DEFAULTS, HEADLINE"):
        load_recipe(tmp_path)
