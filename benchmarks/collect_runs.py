"""Collect finished runs' reports into one results file (a leaderboard of runs that were not made by the suite
runner, e.g. the Chinese runs with m3e-small), the source of a column of README.md's results table.

    python benchmarks/collect_runs.py runs/zh/chnsenticorp runs/zh/cmrc2018 ... --out results/chinese.json \
        --title "Chinese, m3e-small (non-commercial weights)"

Each run directory contributes its ``report.json`` (or, where it has one, ``eval_report.json``: an ``--eval-only``
evaluation of the run's best weights on its test set, written after an interrupted training), with the options it
ran with, so that each figure keeps the command that reproduces it. Nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import atomic_write_json

# Options that describe what a run did (its command); the rest (output dir, backups, ...) do not change the figure.
COMMAND_OPTIONS = ("train_file", "dev_file", "test_file", "bert_dir", "per_char", "epochs", "lr", "max_len",
                   "batch_size", "max_train_examples", "doc_stride", "seed")


def read_report(run_dir: Path) -> tuple[Path, dict]:
    """The run's evaluation report: ``eval_report.json`` when present, else ``report.json``."""
    for name in ("eval_report.json", "report.json"):
        path = run_dir / name
        if path.is_file():
            try:
                return path, json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise DataError(path, None, None, f"not JSON: {error}") from None
    raise DataError(run_dir, None, None, "no report.json or eval_report.json: not a finished run")


def row_from_run(run_dir: Path) -> dict:
    path, report = read_report(run_dir)
    for field in ("task", "dataset", "split", "headline", "metrics"):
        if field not in report:
            raise DataError(path, None, field, "missing")
    args = report.get("args", {})
    encoder = report.get("encoder", {})
    training_report = run_dir / "report.json"
    train = report.get("train") or {}
    if path.name == "eval_report.json" and training_report.is_file():  # the training's own figures
        train = json.loads(training_report.read_text(encoding="utf-8")).get("train", train)
    return {
        "task": report["task"], "dataset": report["dataset"], "split": report["split"],
        "headline": report["headline"],
        "metrics": {k: v for k, v in report["metrics"].items() if isinstance(v, (int, float))
                    and not isinstance(v, bool)},
        "options": {k: args[k] for k in COMMAND_OPTIONS if args.get(k) not in (None, False)},
        "train_seconds": train.get("seconds"), "train_epochs": train.get("epochs"),
        "best_epoch": train.get("best_epoch"),
        "encoder": {"bert_dir": encoder.get("bert_dir"), "layers": encoder.get("num_hidden_layers"),
                    "hidden": encoder.get("hidden_size")},
        "report": str(path),
    }


def run(args) -> None:
    rows = [row_from_run(Path(run_dir)) for run_dir in args.run_dirs]
    board = {"title": args.title, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
             "machine": f"{platform.machine()}, Python {platform.python_version()}", "rows": rows}
    atomic_write_json(args.out, board)
    for row in rows:
        print(f"{row['task']:<18} {row['dataset']:<16} {row['split']:<6} {row['headline']['metric']} "
              f"{row['headline']['value']:.4f}")
    print(f"wrote {args.out}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--out", type=Path, required=True, help="results file to write (JSON)")
    parser.add_argument("--title", default="runs", help="what these runs are (shown as the column's heading)")
    return run_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
