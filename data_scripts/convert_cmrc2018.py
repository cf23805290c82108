"""Convert CMRC 2018 (SQuAD-style JSON) into the span-extraction JSONL format, repairing what the raw files get wrong.

    python -m data_scripts.convert_cmrc2018      # -> runs/data/cmrc2018/{train,dev}.jsonl (not shipped; ~4 MB)

Run it from the repository root: it checks the answers with the recipe's reader (``recipes.span_extract``).

Only ``cmrc2018_trial.json`` (1,002 questions) and ``cmrc2018_dev.json`` (3,219) are on this machine (the official
train file is not), so ``trial`` becomes ``train.jsonl`` and ``dev`` stays ``dev.jsonl``: train on trial, evaluate on
dev. Published CMRC 2018 scores train on the 10k train set, so they are not comparable. With ``--split-dev F`` the
dev file is split by article (title) into ``dev.jsonl`` (a seeded fraction F of the articles: model selection) and
``test.jsonl`` (the rest: reported once), so no context is both selected on and reported. ``--train-from-dev G``
moves a further seeded fraction G of the dev articles into ``train.jsonl`` (after the trial questions), for a model
trained on more than trial's 1,002 questions; dev, train and test articles stay disjoint.

    python -m data_scripts.convert_cmrc2018 --split-dev 0.1 --train-from-dev 0.5 --out-dir runs/data/cmrc2018_split

``recipes/span_extract/train.py`` also reads the raw SQuAD JSON directly, but strictly: the raw trial/dev files have
answers whose ``answer_start`` is off by a few characters and a question that is empty, which the reader reports as
errors. This script repairs them, each with a warning naming file, id and field, and counts in the summary:
an answer not found at ``answer_start`` is moved to the nearest occurrence of its text; an answer text that is
nowhere in the context (dev has ~190: annotators' second/third references written in their own words) is kept with
``"start": null`` -- scored against like the official evaluation does, never trained on; duplicate answers are
merged; a question with an empty question/context is dropped.

Output records: ``{"id", "title", "question", "context", "answers": [{"text", "start"}]}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import atomic_write_json, write_jsonl
from recipes.span_extract.data import ReadStats, check_answer, iter_squad

DEFAULT_SRC = Path("/work/shared/data/span_extraction/cmrc2018")
SPLITS = {"train": "cmrc2018_trial.json", "dev": "cmrc2018_dev.json"}


def convert_file(path: Path, *, stats: Counter, warn) -> list[dict]:
    out = []
    read_stats = ReadStats()
    for _, record in iter_squad(path):
        qid = str(record["id"])
        stats["questions_in"] += 1
        empty = [name for name in ("question", "context")
                 if not isinstance(record.get(name), str) or not record[name].strip()]
        if empty:
            stats["questions_dropped_empty"] += 1
            warn(f"{path}: id {qid}: field {empty[0]!r}: empty; question dropped")
            continue
        answers = []
        for i, item in enumerate(record.get("answers") or []):
            stats["answers_in"] += 1
            text, start = item.get("text"), item.get("answer_start")
            if not isinstance(text, str) or not text.strip():
                stats["answers_dropped_empty"] += 1
                warn(f"{path}: id {qid}: field 'answers[{i}].text': empty; answer dropped")
                continue
            answer = check_answer(record["context"], text, start if isinstance(start, int) else None, path=path,
                                   line=None, qid=qid, field_name=f"answers[{i}].answer_start", fix=True,
                                   stats=read_stats, warn=warn)
            if {"text": answer.text, "start": answer.start} not in answers:
                answers.append({"text": answer.text, "start": answer.start})
        if not answers:
            stats["questions_dropped_no_answer"] += 1
            warn(f"{path}: id {qid}: field 'answers': no answer; question dropped")
            continue
        out.append({"id": qid, "title": record.get("title") or "", "question": record["question"].strip(),
                    "context": record["context"], "answers": answers})
    stats["answers_moved"] += read_stats.answers_moved
    stats["answers_scoring_only"] += read_stats.answers_unplaced
    stats["questions_out"] += len(out)
    return out


def split_by_article(records: list[dict], fractions: list[float], seed: int) -> list[list[dict]]:
    """Records grouped by article (title, else context), articles shuffled with ``seed`` and cut into consecutive
    parts of the given ``fractions`` (a non-zero fraction gets at least one article), plus a last part with the rest."""
    articles = sorted({r["title"] or r["context"] for r in records})
    random.Random(seed).shuffle(articles)
    part_of, start = {}, 0
    for index, fraction in enumerate(fractions):
        size = max(1, round(fraction * len(articles))) if fraction > 0 else 0
        part_of.update((article, index) for article in articles[start:start + size])
        start += size
    parts = [[] for _ in range(len(fractions) + 1)]
    for record in records:
        parts[part_of.get(record["title"] or record["context"], len(fractions))].append(record)
    return parts


def convert(src: Path, out_dir: Path, *, warn=None, split_dev: float = 0.0, train_from_dev: float = 0.0,
            seed: int = 0) -> dict:
    warn = warn or (lambda message: print("warning:", message, file=sys.stderr))
    summary = {"source": str(src), "splits": {}}
    outputs = {}
    for split, name in SPLITS.items():
        path = src / name
        if not path.is_file():
            raise DataError(path, None, None, "no such file")
        stats = Counter()
        outputs[split] = convert_file(path, stats=stats, warn=warn)
        summary["splits"][split] = {"from": name, **dict(sorted(stats.items()))}
    if split_dev:
        name = SPLITS["dev"]
        dev, moved, outputs["test"] = split_by_article(outputs["dev"], [split_dev, train_from_dev], seed)
        summary["splits"]["dev_file"] = summary["splits"].pop("dev")
        summary["splits"]["dev"] = {"from": f"{name}, {split_dev:g} of its articles (seed {seed})",
                                    "questions_out": len(dev)}
        summary["splits"]["test"] = {"from": f"{name}, the other articles", "questions_out": len(outputs["test"])}
        if moved:
            summary["splits"]["train"]["questions_out"] += len(moved)
            summary["splits"]["train"]["from"] += (f" + {len(moved)} questions of {train_from_dev:g} of "
                                                   f"{name}'s articles (seed {seed})")
        outputs["train"], outputs["dev"] = outputs["train"] + moved, dev
    for split, records in outputs.items():
        write_jsonl(out_dir / f"{split}.jsonl", records)
    atomic_write_json(out_dir / "conversion_summary.json", summary)
    return summary


def run(args) -> None:
    """Convert both files to ``args.out_dir`` and print the summary."""
    if not 0.0 <= args.split_dev < 1.0:
        raise SystemExit(f"--split-dev: {args.split_dev} is not in [0, 1)")
    if args.train_from_dev and not args.split_dev:
        raise SystemExit("--train-from-dev needs --split-dev (the dev articles kept for model selection)")
    if not 0.0 <= args.train_from_dev < 1.0 or args.split_dev + args.train_from_dev >= 1.0:
        raise SystemExit(f"--train-from-dev: {args.train_from_dev} is not in [0, 1) or leaves no test articles "
                         f"beside --split-dev {args.split_dev}")
    summary = convert(args.src, args.out_dir, warn=(lambda m: None) if args.quiet else None,
                      split_dev=args.split_dev, train_from_dev=args.train_from_dev, seed=args.seed)
    print(json.dumps(summary, indent=2, ensure_ascii=False))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="dir with cmrc2018_trial.json, cmrc2018_dev.json")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/data/cmrc2018"))
    parser.add_argument("--split-dev", type=float, default=0.0, metavar="F",
                        help="split cmrc2018_dev.json by article: a fraction F into dev.jsonl, the rest into "
                             "test.jsonl (default 0: all of it is dev.jsonl)")
    parser.add_argument("--train-from-dev", type=float, default=0.0, metavar="G",
                        help="also move a fraction G of cmrc2018_dev.json's articles (not those of --split-dev) "
                             "into train.jsonl; the rest stays test.jsonl (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --split-dev/--train-from-dev article split")
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not each repair")
    return run_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
