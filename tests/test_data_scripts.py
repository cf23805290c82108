"""Data scripts and the generated README results table: the CMRC 2018 article split keeps dev, train and test
articles apart; README.md's results table is what the committed results files give (never typed by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _write_readme_results():
    """benchmarks/write_readme_results.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("write_readme_results", REPO / "benchmarks" /
                                                  "write_readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(articles: int, per_article: int) -> list[dict]:
    return [{"id": f"{a}-{q}", "title": f"article {a}", "context": "上下文", "question": "问", "answers": []}
            for a in range(articles) for q in range(per_article)]


def test_cmrc_article_split_keeps_articles_apart_and_is_seeded():
    from data_scripts.convert_cmrc2018 import split_by_article

    records = _records(articles=20, per_article=3)
    dev, moved, test = split_by_article(records, [0.1, 0.5], seed=0)
    titles = [{r["title"] for r in part} for part in (dev, moved, test)]
    assert [len(t) for t in titles] == [2, 10, 8]  # 10% and 50% of 20 articles, the rest
    assert not (titles[0] & titles[1] or titles[0] & titles[2] or titles[1] & titles[2])
    assert len(dev) + len(moved) + len(test) == len(records)
    assert split_by_article(records, [0.1, 0.5], seed=0) == [dev, moved, test]
    assert split_by_article(records, [0.1, 0.5], seed=1)[0] != dev
    # the dev part alone is the same with or without a train part after it (--split-dev keeps its meaning)
    assert split_by_article(records, [0.1], seed=0)[0] == dev
    assert split_by_article(records, [0.1, 0.0], seed=0)[1] == []


def test_readme_results_table_is_generated_from_the_committed_results(monkeypatch):
    write_readme_results = _write_readme_results()
    monkeypatch.chdir(REPO)
    assert write_readme_results.main(["--check"]) == 0, "run python benchmarks/write_readme_results.py"


def test_readme_results_check_fails_on_a_hand_edited_table(tmp_path, monkeypatch):
    write_readme_results = _write_readme_results()
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text(encoding="utf-8").replace("**0.", "**1.", 1), encoding="utf-8")
    monkeypatch.chdir(REPO)
    assert write_readme_results.main(["--check", "--readme", str(readme)]) == 1
    with pytest.raises(SystemExit):
        write_readme_results.main(["--no-such-flag"])
