"""Convert a Chinese binary sentiment set (ChnSentiCorp or bojone's bert4keras set) into the recipe's JSONL.

    python data_scripts/convert_chinese_sentiment.py --dataset chnsenticorp [--out runs/data/chnsenticorp]
    python data_scripts/convert_chinese_sentiment.py --dataset bojone [--out runs/data/bojone_sentiment]

Output: train/dev/test.jsonl with `{"text": ..., "label": "positive"|"negative"}` plus SOURCE.md, one folder per
dataset. The two sets share about half their texts (1,012 of bojone's 2,111 test texts are in ChnSentiCorp's train),
so never train on one and evaluate on the other: each conversion yields its own self-contained split.
- chnsenticorp: its test.tsv is unlabelled, so its labelled dev.tsv becomes test, and dev is a seeded sample of
  1,200 texts held out of train.tsv.
- bojone: sentiment.{train,valid,test}.data as they are (labels 1/0 renamed positive/negative).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import write_splits

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "classification"
DATASETS = {
    "chnsenticorp": {"src": SHARED / "chnsenticorp", "labels": {"positive": "positive", "negative": "negative"}},
    "bojone": {"src": SHARED / "bojone_sentiment", "labels": {"1": "positive", "0": "negative"}},
}


def read_text_label_lines(path: Path, label_names: dict[str, str]) -> list[dict]:
    """`text<TAB>label` lines without header; a malformed line is a DataError naming its line and field."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2:
                raise DataError(path, line_no, None, f"expected 'text<TAB>label', got {len(fields)} fields")
            text, label = fields[0].strip(), fields[1].strip()
            if not text:
                raise DataError(path, line_no, "text", "empty text")
            if label not in label_names:
                raise DataError(path, line_no, "label", f"expected one of {sorted(label_names)}, got {label!r}")
            records.append({"text": text, "label": label_names[label]})
    return records


def convert(dataset: str, src: Path, dev_size: int, seed: int) -> tuple[dict[str, list[dict]], str]:
    """The dataset's train/dev/test records and a sentence saying where each split came from."""
    labels = DATASETS[dataset]["labels"]
    if dataset == "bojone":
        splits = {s: read_text_label_lines(src / f"sentiment.{name}.data", labels)
                  for s, name in (("train", "train"), ("dev", "valid"), ("test", "test"))}
        return splits, "train/dev/test = sentiment.train/valid/test.data, unchanged."
    train = read_text_label_lines(src / "train.tsv", labels)
    dev_rows = set(random.Random(seed).sample(range(len(train)), dev_size))
    splits = {
        "train": [r for i, r in enumerate(train) if i not in dev_rows],
        "dev": [r for i, r in enumerate(train) if i in dev_rows],
        "test": read_text_label_lines(src / "dev.tsv", labels),
    }
    return splits, (f"test = dev.tsv (the labelled evaluation set; test.tsv has no labels); dev = a seeded "
                    f"(seed {seed}) sample of {dev_size} texts of train.tsv; train = the rest of train.tsv.")


def run(args) -> None:
    """Convert ``args.dataset`` and write its splits, with SOURCE.md, to ``args.out`` (or its default folder)."""
    src = args.src or DATASETS[args.dataset]["src"]
    out = args.out or REPO / "runs" / "data" / args.dataset
    splits, provenance = convert(args.dataset, src, args.dev_size, args.seed)
    counts = ", ".join(f"{split} {len(records):,}" for split, records in splits.items())
    upstream = (src / "SOURCE.md").read_text(encoding="utf-8")
    write_splits(out, splits, f"""# {args.dataset} for recipes/sentiment (Chinese, use --per-char)

Converted by `python data_scripts/convert_chinese_sentiment.py --dataset {args.dataset}` (deterministic). Sizes:
{counts}. {provenance} Labels are `positive`/`negative`. ChnSentiCorp and bojone's set overlap heavily: never train
on one and evaluate on the other.

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--src", type=Path, help="source folder (default: the shared copy of --dataset)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/data/<dataset>)")
    parser.add_argument("--dev-size", type=int, default=1200, help="chnsenticorp: texts of train.tsv held out as dev")
    parser.add_argument("--seed", type=int, default=0, help="chnsenticorp: seed of the train/dev split")
    args = parser.parse_args(argv)
    # a missing or non-UTF-8 source, an unwritable --out, too big a --dev-size
    return run_main(run, args, also=(OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
