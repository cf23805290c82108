"""The suite runner: recipes by path through the contract, a leaderboard with references, --compare, bad configs;
the four shipped recipes' quick-profile commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bertkit.errors import DataError
from bertkit.suite import attach_references, leaderboard_markdown, main, read_suite_config

REPO = Path(__file__).resolve().parents[1]


def test_quick_suite_on_a_tiny_checkpoint_writes_the_leaderboard(tmp_path, tiny_bert_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no results/leaderboard.json here: no baseline
    copy = tmp_path / "elsewhere" / "my_sentiment"  # a recipe copied into a user's project joins by path
    shutil.copytree(REPO / "recipes" / "sentiment", copy, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "suite"
    assert main([str(copy), str(REPO / "recipes" / "sequence_labeling"), "--profile", "quick", "--bert-dir",
                 str(tiny_bert_dir), "--output-dir", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert [row["task"] for row in board["rows"]] == ["sentiment", "sequence_labeling"]
    for row in board["rows"]:
        assert row["status"] == "ok" and isinstance(row["headline"]["value"], float)
        assert row["wall_seconds"] > 0 and row["train_examples_per_second"] > 0
        assert row["encoder"]["layers"] == 2 and row["references"]  # REFERENCES.json of the folder
    assert board["rows"][0]["folder"] == str(copy.resolve())
    markdown = (out / "leaderboard.md").read_text()
    assert "Quick profile: a pipeline check" in markdown and "| sentiment |" in markdown
    assert "MiniLM-L12-H384 0.9300" in markdown
    assert (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    # quick profile: the train split was cut to 320 examples, one epoch
    report = json.loads((out / "sentiment" / "run" / "report.json").read_text())
    assert report["train"]["epochs"] == 1 and report["args"]["max_train_examples"] is None
    assert sum(1 for _ in open(out / "sentiment" / "data" / "train.jsonl")) == 320

    # an earlier suite run is never overwritten
    assert main([str(copy), "--profile", "quick", "--output-dir", str(out)]) == 2


def test_compare_marks_moves_beyond_the_noise_band(tmp_path):
    folder = str(REPO / "recipes" / "sentiment")
    row = {"task": "sentiment", "folder": folder, "status": "ok", "headline": {"metric": "accuracy", "value": 0.90}}
    old = {"rows": [{**row, "headline": {"metric": "accuracy", "value": 0.85}}], "source": "old"}
    rows = [dict(row)]
    attach_references(rows, baseline=old, compare=old)
    assert rows[0]["compare"]["moved"] and rows[0]["baseline"]["value"] == 0.85 and rows[0]["noise_band"] == 0.01
    rows = [dict(row)]
    attach_references(rows, baseline=None, compare={"rows": [{**row, "headline": {"metric": "accuracy",
                                                                                    "value": 0.895}}]})
    assert not rows[0]["compare"]["moved"]
    board = {"profile": "full", "created": "now", "machine": "m", "wall_seconds": 1.0, "rows": rows,
             "compare": "old"}
    assert "| 0.9000 |" in leaderboard_markdown(board)


def test_suite_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "suite.json"
    bad.write_text(json.dumps({"recipes": [{"folder": "x", "lr": 1}]}))
    with pytest.raises(DataError, match=r"suite.json: field 'recipes\[0\]': unknown key\(s\) \['lr'\]"):
        read_suite_config(bad)
    bad.write_text(json.dumps({"recipes": [{"folder": "x", "args": "--lr 1"}]}))
    with pytest.raises(DataError, match=r"recipes\[0\].args"):
        read_suite_config(bad)
    good = tmp_path / "sub" / "suite.json"
    good.parent.mkdir()
    good.write_text(json.dumps({"recipes": [{"folder": "../r", "train_file": "t.jsonl"}]}))
    entry = read_suite_config(good)[0]
    assert entry["folder"] == (tmp_path / "r").resolve() and entry["train_file"] == (tmp_path / "sub" / "t.jsonl")
    assert main([str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2  # not a recipe folder


def test_quick_profile_commands_of_the_four_shipped_recipes_parse_and_read_their_data(tmp_path, monkeypatch,
                                                                                      default_bert_dir):
    """What ``python -m bertkit.suite --profile quick`` (no recipe named) gives each shipped recipe: its default data
    sliced to the quick sizes and a command line its own parser accepts, every split readable and labelled. Training
    through the suite is the tiny-checkpoint test above; each recipe's learning with the real encoder is its own slow
    test."""
    from bertkit.recipe import load_recipe, parse_train_args, read_split
    from bertkit.suite import QUICK_SPLITS, default_entries, recipe_command

    monkeypatch.chdir(REPO)
    entries = default_entries()
    recipes = [load_recipe(entry["folder"]) for entry in entries]
    assert sorted(r.name for r in recipes) == ["relation_extract", "sentiment", "sequence_labeling", "span_extract"]
    for entry, recipe in zip(entries, recipes):
        command = recipe_command(entry, recipe, "quick", tmp_path / recipe.name, [])
        assert command[1] == str(Path(entry["folder"]) / "train.py")
        args = parse_train_args(entry["folder"], command[2:])
        assert args.epochs == 1 and args.early_stopping_patience == 0
        for split in ("train", "dev", "test"):
            path = getattr(args, f"{split}_file")
            assert Path(path).parent == tmp_path / recipe.name / "data", (recipe.name, split, path)
            examples = read_split(recipe, path, args, labelled=True)
            assert 0 < len(examples) <= QUICK_SPLITS[split], (recipe.name, split, len(examples))
