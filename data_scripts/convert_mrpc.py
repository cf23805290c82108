"""Convert MRPC (Microsoft Research Paraphrase Corpus, English sentence pairs) into the sentiment recipe's JSONL.

    python data_scripts/convert_mrpc.py [--src ../shared/data/classification/mrpc] [--out DIR] [--dev-size 408]

--out defaults to the copy shipped with bertkit, bertkit/datasets/mrpc.

Source: the original MSR release, TSV with header `Quality #1 ID #2 ID #1 String #2 String` (Quality 1 = paraphrase).
Output: `{"text": ..., "text_b": ..., "label": "equivalent"|"not_equivalent"}` lines in train/dev/test.jsonl plus
SOURCE.md. GLUE's official dev id list is not available here, so dev is a seeded random 408 pairs of the MSR train
file (same size as GLUE dev) and train is the rest; test is the MSR test file (= GLUE MRPC test, labelled).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

from bertkit import datasets
from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import write_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "classification" / "mrpc"
HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
LABEL_NAMES = {"0": "not_equivalent", "1": "equivalent"}


def read_msr_tsv(path: Path) -> list[dict]:
    """Pairs of one MSR paraphrase file; a malformed row is a DataError naming its line and field."""
    records = []
    # utf-8-sig: the first line carries a BOM. QUOTE_NONE: some sentences hold a lone quote character.
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if line_no == 1:
                if row != HEADER:
                    raise DataError(path, 1, None, f"expected header {HEADER!r}, got {row!r}")
                continue
            if len(row) != len(HEADER):
                raise DataError(path, line_no, None, f"expected {len(HEADER)} tab-separated fields, got {len(row)}")
            label, text, text_b = row[0].strip(), row[3].strip(), row[4].strip()
            for field, value in (("#1 String", text), ("#2 String", text_b)):
                if not value:
                    raise DataError(path, line_no, field, "empty text")
            if label not in LABEL_NAMES:
                raise DataError(path, line_no, "Quality", f"expected 0 or 1, got {label!r}")
            records.append({"text": text, "text_b": text_b, "label": LABEL_NAMES[label]})
    return records


def run(args) -> None:
    """Convert MRPC, hold dev out of the MSR train file and write the splits, with SOURCE.md, to ``args.out``."""
    train = read_msr_tsv(args.src / "msr_paraphrase_train.txt")
    test = read_msr_tsv(args.src / "msr_paraphrase_test.txt")
    dev_rows = set(random.Random(args.seed).sample(range(len(train)), args.dev_size))
    splits = {
        "train": [r for i, r in enumerate(train) if i not in dev_rows],
        "dev": [r for i, r in enumerate(train) if i in dev_rows],
        "test": test,
    }
    upstream = (args.src / "SOURCE.md").read_text(encoding="utf-8")
    counts = ", ".join(f"{split} {len(records):,}" for split, records in splits.items())
    write_splits(args.out, splits, f"""# MRPC for recipes/sentiment (text pairs)

Converted by `python data_scripts/convert_mrpc.py --dev-size {args.dev_size} --seed {args.seed}` (deterministic;
rerun to regenerate) from the public copy described below. Sizes: {counts}. Lines are
`{{"text": sentence 1, "text_b": sentence 2, "label": "equivalent"|"not_equivalent"}}`.

- train + dev = `msr_paraphrase_train.txt` ({len(train):,} pairs); dev is a seeded random sample of {args.dev_size}
  pairs (GLUE's official dev id list is not available here, so dev differs from GLUE MRPC dev).
- test = `msr_paraphrase_test.txt` = GLUE MRPC test with labels; the usual MRPC F1 is the F1 of `equivalent`.

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {args.out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with msr_paraphrase_{train,test}.txt")
    parser.add_argument("--out", type=Path, default=datasets.path("mrpc"),
                        help="output folder (default: the shipped copy, %(default)s)")
    parser.add_argument("--dev-size", type=int, default=408, help="pairs of the MSR train file held out as dev")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/dev split")
    args = parser.parse_args(argv)
    # a missing or non-UTF-8 source, an unwritable --out, too big a --dev-size
    return run_main(run, args, also=(OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
