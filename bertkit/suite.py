"""The suite runner: every given recipe folder trained through the recipe contract, one leaderboard.

    python -m bertkit.suite                                   # ./recipes/*/ on their default data, --profile full
    python -m bertkit.suite --profile quick                   # a pipeline check of the whole suite (minutes)
    python -m bertkit.suite recipes/sentiment ~/comp/my_ner   # any recipe folders, by path
    python -m bertkit.suite --config suite.json --compare runs/suite/20261201-120000

Each recipe runs its own ``train.py`` in a child process (the same command a user types; a crash in one recipe
does not take the others down), into ``OUTPUT_DIR/<task>/``. The suite then writes ``leaderboard.json``,
``leaderboard.md`` and ``leaderboard.png``: per task the headline metric on test, the other scalar metrics, wall
time, training examples/s and the encoder, beside the reference figures the recipe folder ships in
``REFERENCES.json`` (published scores with their sources) and the baseline leaderboard (``--baseline``, by default
``results/leaderboard.json`` when it exists: the last full run committed to the repository).

Profiles: ``full`` runs each recipe with its own defaults (the figures in the recipe READMEs); ``quick`` trains one
epoch on the first ``QUICK_SPLITS`` examples of each split (JSONL files; other formats get
``--max-train-examples``): a pipeline check of every recipe, not a result.

A suite config (``--config``) is a JSON object ``{"recipes": [{"folder": "recipes/sentiment", "train_file": ...,
"dev_file": ..., "test_file": ..., "args": ["--lr", "5e-5"]}, ...]}``; relative paths are relative to the config.
``--compare OLD_RUN`` marks every headline that moved by more than the recipe's noise band (``REFERENCES.json``
``noise_band``; default 1 point on a 0-100 scale, 0.01 on a 0-1 scale).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bertkit.cli import say
from bertkit.errors import ConfigError, DataError

PROFILES = ("quick", "full")
QUICK_SPLITS = {"train": 320, "dev": 64, "test": 128}
QUICK_ARGS = ["--epochs", "1", "--early-stopping-patience", "0"]
REFERENCES_FILE = "REFERENCES.json"
DEFAULT_BASELINE = Path("results") / "leaderboard.json"
SPLITS = ("train", "dev", "test")



# -------------------------------------------------------------------------------------------------- configuration
def read_suite_config(path) -> list[dict]:
    """The recipe entries of a suite config file, paths made absolute against the config's folder."""
    return read_recipe_entries(path, key="recipes")


def read_recipe_entries(path, *, key: str, extra_keys: dict | None = None) -> list[dict]:
    """The entries ``{"folder", "dataset"?, "train_file"?, "dev_file"?, "test_file"?, "args"?}`` under ``key`` of a
    JSON config (the suite's ``recipes``, the multi-task trainer's ``tasks``), paths made absolute against the
    config's folder; ``dataset`` names a dataset shipped in ``bertkit.datasets`` for the splits not given as files;
    ``extra_keys`` maps further allowed keys to their type (kept as given)."""
    from bertkit import datasets
    from bertkit.fileio import read_json

    path = Path(path)
    config = read_json(path)
    extra_keys = dict(extra_keys or {})
    known = ["folder", "dataset", "train_file", "dev_file", "test_file", "args", *extra_keys]
    if not isinstance(config, dict) or not isinstance(config.get(key), list) or not config[key]:
        raise DataError(path, None, key, f"expected {{\"{key}\": [{{\"folder\": ...}}, ...]}}")
    entries = []
    for i, entry in enumerate(config[key]):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
            raise DataError(path, None, f"{where}.folder", "each entry needs a \"folder\" (a path)")
        unknown = set(entry) - set(known)
        if unknown:
            raise DataError(path, None, where, f"unknown key(s) {sorted(unknown)}; known: {', '.join(known)}")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise DataError(path, None, f"{where}.args", "must be a list of strings (command-line flags)")
        resolved = {"folder": (path.parent / entry["folder"]).resolve(), "args": args}
        shipped = entry.get("dataset")
        if shipped is not None and shipped not in datasets.names():
            raise DataError(path, None, f"{where}.dataset", f"no shipped dataset {shipped!r}; shipped: "
                                                            f"{', '.join(datasets.names())}")
        for split in SPLITS:
            value = entry.get(f"{split}_file")
            if value is None and shipped is not None:
                resolved[f"{split}_file"] = datasets.file(shipped, split)
                continue
            if value is not None and not isinstance(value, str):
                raise DataError(path, None, f"{where}.{split}_file", "must be a path (a string)")
            resolved[f"{split}_file"] = None if value is None else (path.parent / value).resolve()
        for name, kind in extra_keys.items():
            if name in entry:
                if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
                    raise DataError(path, None, f"{where}.{name}", f"wrong type: {entry[name]!r}")
                resolved[name] = entry[name]
        entries.append(resolved)
    return entries


def default_entries() -> list[dict]:
    """Every recipe folder under ./recipes (the shipped four, run from the repository root)."""
    folders = sorted(p.parent for p in Path("recipes").glob("*/task.py"))
    if not folders:
        raise ConfigError("no recipe folders given and none under ./recipes; name recipe folders or --config")
    return [{"folder": folder.resolve(), "args": [], **{f"{s}_file": None for s in SPLITS}} for folder in folders]


def read_references(folder: Path) -> dict:
    """A recipe's ``REFERENCES.json``: ``{"noise_band": x, "references": [{"name", "metric", "value", "split",
    "source"}]}`` (empty when the folder ships none)."""
    path = Path(folder) / REFERENCES_FILE
    if not path.is_file():
        return {"references": []}
    from bertkit.fileio import read_json

    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("references", []), list):
        raise DataError(path, None, "references", "expected {\"references\": [...]}")
    return data


# ------------------------------------------------------------------------------------------------------- running
def _slice_jsonl(source: Path, target: Path, n: int) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    with open(source, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line if line.endswith("\n") else line + "\n")
                if len(lines) >= n:
                    break
    from bertkit.fileio import atomic_write_text

    atomic_write_text(target, "".join(lines))
    return target


def recipe_command(entry: dict, recipe, profile: str, out_dir: Path, extra: list[str]) -> list[str]:
    """The ``train.py`` command line of one recipe under a profile."""
    from bertkit import datasets

    files = {}
    for split in SPLITS:
        path = entry.get(f"{split}_file")
        if path is None and entry.get("train_file") is None:
            path = datasets.file(recipe.DEFAULTS["dataset"], split)
        files[split] = path
    args = list(extra)
    if profile == "quick":
        for split in SPLITS:
            path = files[split]
            if path is not None and Path(path).suffix == ".jsonl":
                files[split] = _slice_jsonl(Path(path), out_dir / "data" / f"{split}.jsonl", QUICK_SPLITS[split])
            elif path is not None and split == "train":
                args += ["--max-train-examples", str(QUICK_SPLITS["train"])]
        args = QUICK_ARGS + args
    command = [sys.executable, str(Path(entry["folder"]) / "train.py"), "--output-dir", str(out_dir / "run")]
    for split in SPLITS:
        if files[split] is not None:
            command += [f"--{split}-file", str(files[split])]
    return command + args + list(entry.get("args", []))


def run_recipe(entry: dict, profile: str, suite_dir: Path, extra: list[str]) -> dict:
    """Train one recipe in a child process; its leaderboard row (``status`` says whether it worked)."""
    from bertkit.recipe import load_recipe

    recipe = load_recipe(entry["folder"])
    out_dir = suite_dir / recipe.name
    if out_dir.exists():
        out_dir = suite_dir / f"{recipe.name}-{Path(entry['folder']).name}"
    out_dir.mkdir(parents=True)
    command = recipe_command(entry, recipe, profile, out_dir, extra)
    log_path = out_dir / "train.log"
    say(f"[{recipe.name}] {' '.join(command[1:])}")
    say(f"[{recipe.name}] log: {log_path}")
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    row = {"task": recipe.name, "folder": str(entry["folder"]), "command": command[1:],
           "wall_seconds": round(wall, 1), "log": str(log_path.relative_to(suite_dir))}
    report_path = out_dir / "run" / "report.json"
    if process.returncode != 0 or not report_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        row["status"] = f"failed (exit {process.returncode}): {tail[0][:300]}"
        say(f"[{recipe.name}] FAILED after {wall:.0f}s: {tail[0][:300]}")
        return row
    report = json.loads(report_path.read_text(encoding="utf-8"))
    encoder = report.get("encoder", {})
    row.update({
        "status": "ok", "dataset": report.get("dataset"), "split": report.get("split"),
        "headline": report["headline"],
        "metrics": {k: v for k, v in report.get("metrics", {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "train_examples_per_second": report.get("train", {}).get("examples_per_second"),
        "train_seconds": report.get("train", {}).get("seconds"),
        "encoder": {"bert_dir": encoder.get("bert_dir"), "layers": encoder.get("num_hidden_layers"),
                    "hidden": encoder.get("hidden_size")},
        "report": str(report_path.relative_to(suite_dir)),
    })
    say(f"[{recipe.name}] {row['headline']['metric']} {row['headline']['value']:.4f} on "
         f"{row['dataset']} {row['split']} in {wall:.0f}s")
    return row


# --------------------------------------------------------------------------------------------------- leaderboard
def _noise_band(references: dict, value: float) -> float:
    band = references.get("noise_band")
    if isinstance(band, (int, float)):
        return float(band)
    return 1.0 if abs(value) > 1.5 else 0.01  # 1 point on 0-100 scales, 0.01 on 0-1 scales


def _rows_by_task(leaderboard: dict | None) -> dict:
    return {row["task"]: row for row in (leaderboard or {}).get("rows", []) if row.get("status") == "ok"}


def attach_references(rows: list[dict], baseline: dict | None, compare: dict | None) -> None:
    """Each row gets its recipe's published references, the baseline leaderboard's figure, and with ``compare``
    whether its headline moved beyond the noise band."""
    baseline_rows, compare_rows = _rows_by_task(baseline), _rows_by_task(compare)
    for row in rows:
        references = read_references(Path(row["folder"]))
        row["references"] = references.get("references", [])
        if row.get("status") != "ok":
            continue
        value = row["headline"]["value"]
        row["noise_band"] = _noise_band(references, value)
        old = baseline_rows.get(row["task"])
        if old is not None and old["headline"]["metric"] == row["headline"]["metric"]:
            row["baseline"] = {"value": old["headline"]["value"], "source": baseline.get("source", "baseline")}
        previous = compare_rows.get(row["task"])
        if previous is not None and previous["headline"]["metric"] == row["headline"]["metric"]:
            delta = value - previous["headline"]["value"]
            row["compare"] = {"previous": previous["headline"]["value"], "delta": round(delta, 6),
                              "moved": abs(delta) > row["noise_band"]}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1.5 else f"{value:.2f}"
    return str(value)


def leaderboard_markdown(board: dict) -> str:
    from bertkit.reports import md_table

    lines = [f"# bertkit suite leaderboard ({board['profile']} profile)\n",
             f"Run {board['created']} on {board['machine']}; {len(board['rows'])} recipe(s), "
             f"{board['wall_seconds']:.0f} s in all." +
             (" **Quick profile: a pipeline check on small slices, not a result.**" if board["profile"] == "quick"
              else "") + "\n"]
    header = ["task", "data (split)", "headline", "value", "baseline", "published", "other metrics", "wall",
              "train ex/s", "encoder"]
    table = []
    for row in board["rows"]:
        if row.get("status") != "ok":
            table.append([row["task"], "–", "–", row["status"], "–", "–", "–", f"{row['wall_seconds']:.0f}s", "–",
                          "–"])
            continue
        value = _fmt(row["headline"]["value"])
        moved = row.get("compare", {})
        if moved.get("moved"):
            value = f"**{value}** ({'+' if moved['delta'] > 0 else ''}{_fmt(moved['delta'])} vs --compare)"
        published = "; ".join(f"{r['name']} {_fmt(r['value'])}" for r in row.get("references", [])) or "–"
        others = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(row.get("metrics", {}).items())
                           if k != row["headline"]["metric"])[:200]
        encoder = row.get("encoder", {})
        table.append([row["task"], f"{row.get('dataset')} ({row.get('split')})", row["headline"]["metric"], value,
                      _fmt(row.get("baseline", {}).get("value")), published, others or "–",
                      f"{row.get('wall_seconds', 0):.0f}s", _fmt(row.get("train_examples_per_second")),
                      f"{Path(str(encoder.get('bert_dir'))).name} ({encoder.get('layers')}L/{encoder.get('hidden')})"])
    lines.append(md_table(header, table))
    sources = [f"- {row['task']}: {r['name']} {_fmt(r['value'])} ({r.get('metric', '')}, {r.get('split', '')}): "
               f"{r.get('source', '')}" for row in board["rows"] for r in row.get("references", [])]
    if sources:
        lines += ["\n## Published reference figures\n", *sources]
    if board.get("compare"):
        lines.append(f"\nCompared with {board['compare']}: a headline in bold moved by more than its noise band.")
    lines.append("\n![headline per task](leaderboard.png)\n")
    return "\n".join(lines) + "\n"


def plot_leaderboard(board: dict, path: Path) -> Path | None:
    """Bars: each task's headline as a share of its best published reference (or of 1 / 100), baseline ticks."""
    rows = [row for row in board["rows"] if row.get("status") == "ok"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def scale(value):
        return value / 100.0 if value > 1.5 else value

    fig, ax = plt.subplots(figsize=(1.8 * len(rows) + 2, 4))
    xs = range(len(rows))
    ax.bar(xs, [scale(r["headline"]["value"]) for r in rows], color="#4c72b0", label="this run")
    for x, row in zip(xs, rows):
        for ref in row.get("references", []):
            ax.plot([x - 0.4, x + 0.4], [scale(ref["value"])] * 2, color="#dd8452", lw=2)
        if "baseline" in row:
            ax.plot([x - 0.4, x + 0.4], [scale(row["baseline"]["value"])] * 2, color="#55a868", lw=2, ls="--")
        ax.text(x, scale(row["headline"]["value"]) + 0.01, _fmt(row["headline"]["value"]), ha="center", fontsize=8)
    ax.set_xticks(list(xs), [f"{r['task']}\n{r['headline']['metric']}" for r in rows], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("headline (0-1 scale)")
    ax.plot([], [], color="#dd8452", lw=2, label="published")
    ax.plot([], [], color="#55a868", lw=2, ls="--", label="baseline leaderboard")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"bertkit suite, {board['profile']} profile")
    fig.tight_layout()
    from bertkit.fileio import atomic_write_bytes
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _machine() -> str:
    import platform

    return f"{platform.machine()} {os.cpu_count()} CPU(s), Python {platform.python_version()}"


def run_suite(entries: list[dict], *, profile: str, output_dir: Path, extra: list[str], baseline_path=None,
              compare_path=None) -> dict:
    from bertkit.fileio import atomic_write_json, atomic_write_text, read_json

    if output_dir.exists() and any(output_dir.iterdir()):
        raise ConfigError(f"--output-dir {output_dir}: not empty; choose another (an earlier suite run is never "
                          f"overwritten)")
    compare = None
    if compare_path is not None:
        compare_file = Path(compare_path) / "leaderboard.json" if Path(compare_path).is_dir() else Path(compare_path)
        if not compare_file.is_file():
            raise ConfigError(f"--compare {compare_path}: no leaderboard.json there")
        compare = read_json(compare_file)
    baseline = None
    baseline_file = Path(baseline_path) if baseline_path else (DEFAULT_BASELINE if DEFAULT_BASELINE.is_file()
                                                               else None)
    if baseline_file is not None:
        if not baseline_file.is_file():
            raise ConfigError(f"--baseline {baseline_file}: no such leaderboard.json")
        baseline = read_json(baseline_file)
        baseline.setdefault("source", str(baseline_file))
    output_dir.mkdir(parents=True, exist_ok=True)
    say(f"suite: {len(entries)} recipe(s), profile {profile}, output {output_dir}")
    started = time.perf_counter()
    rows = [run_recipe(entry, profile, output_dir, extra) for entry in entries]
    attach_references(rows, baseline, compare)
    board = {"profile": profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(),
             "wall_seconds": round(time.perf_counter() - started, 1), "rows": rows,
             "baseline": None if baseline_file is None else str(baseline_file),
             "compare": None if compare_path is None else str(compare_path)}
    atomic_write_json(output_dir / "leaderboard.json", board)
    plot_leaderboard(board, output_dir / "leaderboard.png")
    atomic_write_text(output_dir / "leaderboard.md", leaderboard_markdown(board))
    failed = [row["task"] for row in rows if row.get("status") != "ok"]
    say(f"suite: leaderboard in {output_dir / 'leaderboard.md'} ({board['wall_seconds']:.0f}s"
         + (f"; FAILED: {', '.join(failed)}" if failed else "") + ")")
    return board


def main(argv=None) -> int:
    from bertkit.cli import run_main

    parser = argparse.ArgumentParser(prog="python -m bertkit.suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", type=Path, help="recipe folders (default: ./recipes/*/)")
    parser.add_argument("--config", type=Path, help="suite config JSON (recipes with their files and flags)")
    parser.add_argument("--profile", choices=PROFILES, default="full", help="budget profile (default: full)")
    parser.add_argument("--output-dir", type=Path, help="default: runs/suite/<YYYYmmdd-HHMMSS>")
    parser.add_argument("--baseline", type=Path, help=f"leaderboard.json shown beside each figure (default: "
                                                      f"{DEFAULT_BASELINE} when it exists)")
    parser.add_argument("--compare", type=Path, help="an earlier suite run (directory or leaderboard.json): mark "
                                                     "headlines that moved beyond the noise band")
    parser.add_argument("--bert-dir", help="encoder for every recipe (default: each recipe's default)")

    def body(args):
        if args.recipes and args.config:
            raise ConfigError("give recipe folders or --config, not both")
        entries = (read_suite_config(args.config) if args.config else
                   [{"folder": Path(f).resolve(), "args": [], **{f"{s}_file": None for s in SPLITS}}
                    for f in args.recipes] or default_entries())
        for entry in entries:
            if not (Path(entry["folder"]) / "train.py").is_file():
                raise ConfigError(f"{entry['folder']}: not a recipe folder (no train.py)")
        extra = ["--bert-dir", args.bert_dir] if args.bert_dir else []
        output_dir = args.output_dir or Path("runs") / "suite" / time.strftime("%Y%m%d-%H%M%S")
        board = run_suite(entries, profile=args.profile, output_dir=output_dir, extra=extra,
                          baseline_path=args.baseline, compare_path=args.compare)
        if any(row.get("status") != "ok" for row in board["rows"]):
            raise ConfigError(f"some recipes failed: see {output_dir / 'leaderboard.md'} and their train.log")

    return run_main(lambda: body(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
