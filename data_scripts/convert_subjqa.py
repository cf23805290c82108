"""Convert SubjQA (megagonlabs, per-domain CSV splits) into the span-extraction JSONL format.

    python data_scripts/convert_subjqa.py                       # -> bertkit/datasets/subjqa/*.jsonl (shipped)
    python data_scripts/convert_subjqa.py --keep-unanswerable --out-dir runs/data/subjqa_v2

One output record per (question, review) pair; SubjQA repeats a pair once per annotated answer, so those rows are merged
into one question with several gold answers (metrics take the max over them)::

    {"id": "<q_review_id>", "domain": "grocery", "question": "...", "context": "<review>",
     "answers": [{"text": "...", "start": 123}]}

Answers come from ``human_ans_indices`` (character offsets into ``review``): ``text = review[start:end]``; the
``human_ans_spans`` column is PTB-tokenised ("$ 35") and often not a substring of the review, so it is not used.
Every review ends with the literal marker `` ANSWERNOTFOUND``; it is removed from the context (it is not review text;
answers end before it, so offsets are unchanged). Rows whose answer is ``ANSWERNOTFOUND`` are unanswerable: dropped by
default (SQuAD 1.1 form), kept with ``"answers": []`` under ``--keep-unanswerable`` (SQuAD 2.0 form).

Cleaning, each counted in the summary and warned about (file, line, id, field): leading/trailing whitespace inside an
answer span is trimmed (offsets moved accordingly); an answer span that runs into the ``ANSWERNOTFOUND`` marker (an
annotation defect: the span was closed at the end of the review) is dropped, and a question left with no answer is
dropped.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

from bertkit import datasets
from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import atomic_write_json, read_table, write_jsonl

MARKER = "ANSWERNOTFOUND"
SPLITS = ("train", "dev", "test")
DEFAULT_SRC = Path("/work/shared/data/span_extraction/subjqa")
COLUMNS = ("q_review_id", "domain", "question", "review", "human_ans_spans", "human_ans_indices")


def parse_indices(value: str, path, line: int) -> tuple[int, int]:
    """``"(164, 189)"`` -> ``(164, 189)``, or a DataError naming the field."""
    try:
        start, end = ast.literal_eval(value)
        start, end = int(start), int(end)
    except (ValueError, SyntaxError, TypeError):
        raise DataError(path, line, "human_ans_indices", f"expected '(start, end)', got {value!r:.40}") from None
    if not 0 <= start <= end:
        raise DataError(path, line, "human_ans_indices", f"bad offsets ({start}, {end})")
    return start, end


def convert_file(path: Path, *, keep_unanswerable: bool, stats: Counter, warn, seen_ids: set) -> list[dict]:
    """Read one ``<domain>/<split>.csv`` and return merged question records in file order."""
    records: dict[tuple[str, str], dict] = {}
    for line, row in read_table(path, COLUMNS):
        review = row["review"]
        if not review.endswith(" " + MARKER):
            raise DataError(path, line, "review", f"expected the review to end with ' {MARKER}'")
        context = review[: -len(MARKER) - 1]
        question = row["question"].strip()
        if not question or not context.strip():
            raise DataError(path, line, "question" if not question else "review", "empty")
        key = (question, context)
        record = records.get(key)
        if record is None:
            record = records[key] = {"id": row["q_review_id"], "domain": row["domain"], "question": question,
                                     "context": context, "answers": [], "_answerable": False}
        stats["rows"] += 1
        if row["human_ans_spans"] == MARKER:
            stats["unanswerable_rows"] += 1
            continue
        record["_answerable"] = True
        start, end = parse_indices(row["human_ans_indices"], path, line)
        if end > len(context):
            stats["answers_dropped_run_into_marker"] += 1
            warn(f"{path}:{line}: id {row['q_review_id']}: field 'human_ans_indices': span ({start}, {end}) runs "
                 f"into the trailing {MARKER} marker (annotation defect); answer dropped")
            continue
        text = context[start:end]
        stripped = text.strip()
        if not stripped:
            stats["answers_dropped_empty"] += 1
            warn(f"{path}:{line}: id {row['q_review_id']}: field 'human_ans_indices': empty span; answer dropped")
            continue
        if stripped != text:
            stats["answers_trimmed"] += 1
            start += len(text) - len(text.lstrip())
            text = stripped
        answer = {"text": text, "start": start}
        if answer not in record["answers"]:
            record["answers"].append(answer)
        stats["answers"] += 1
    out = []
    for record in records.values():
        answerable = record.pop("_answerable")
        if answerable and not record["answers"]:
            stats["questions_dropped_no_valid_answer"] += 1
            continue
        if not answerable and not keep_unanswerable:
            stats["questions_dropped_unanswerable"] += 1
            continue
        # ids repeat when SubjQA reuses a q_review_id for a reworded question: keep ids unique per split
        base, n = record["id"], 1
        while record["id"] in seen_ids:
            n += 1
            record["id"] = f"{base}-{n}"
        seen_ids.add(record["id"])
        stats["questions"] += 1
        stats["questions_unanswerable_kept"] += not record["answers"]
        out.append(record)
    return out


def convert(src: Path, out_dir: Path, *, keep_unanswerable: bool = False, domains=None, warn=None) -> dict:
    """Convert every ``<domain>/<split>.csv`` under ``src``; write ``out_dir/<split>.jsonl``; return the summary."""
    warn = warn or (lambda message: print("warning:", message, file=sys.stderr))
    if not src.is_dir():
        raise DataError(src, None, None, "no such directory (expected SubjQA <domain>/<split>.csv files)")
    all_domains = sorted(p.name for p in src.iterdir() if p.is_dir())
    domains = list(domains) if domains else all_domains
    for domain in domains:
        if domain not in all_domains:
            raise DataError(src / domain, None, None, f"no such domain; domains are {', '.join(all_domains)}")
    summary = {"source": str(src), "keep_unanswerable": keep_unanswerable, "splits": {}}
    for split in SPLITS:
        stats = Counter()
        per_domain = {}
        records = []
        seen_ids: set[str] = set()
        for domain in domains:
            path = src / domain / f"{split}.csv"
            if not path.exists():
                continue  # books and movies have no train split
            converted = convert_file(path, keep_unanswerable=keep_unanswerable, stats=stats, warn=warn,
                                     seen_ids=seen_ids)
            per_domain[domain] = len(converted)
            records.extend(converted)
        if not records:
            continue
        path = out_dir / f"{split}.jsonl"
        write_jsonl(path, records)
        summary["splits"][split] = {**dict(sorted(stats.items())), "questions_per_domain": per_domain,
                                    "bytes": path.stat().st_size}
    atomic_write_json(out_dir / "conversion_summary.json", summary)
    return summary


def run(args) -> None:
    """Convert ``args.src`` to ``args.out_dir`` and print the summary."""
    warn = (lambda message: None) if args.quiet else None
    summary = convert(args.src, args.out_dir, keep_unanswerable=args.keep_unanswerable, domains=args.domains,
                      warn=warn)
    print(json.dumps(summary, indent=2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="SubjQA dir with <domain>/<split>.csv")
    parser.add_argument("--out-dir", type=Path, default=datasets.path("subjqa"),
                        help="output folder (default: the shipped copy, %(default)s)")
    parser.add_argument("--keep-unanswerable", action="store_true",
                        help="keep ANSWERNOTFOUND questions with an empty answer list (SQuAD 2.0 form)")
    parser.add_argument("--domains", nargs="+", help="only these domains (default: all)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not each cleaned row")
    return run_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
