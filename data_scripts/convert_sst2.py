"""Convert GLUE SST-2 (English binary sentiment) into the sentiment recipe's JSONL.

    python data_scripts/convert_sst2.py [--src ../shared/data/classification/sst2] [--out bertkit/datasets/sst2]

Source: TSV with header `sentence<TAB>label`, label 1 = positive, 0 = negative. Output: train/dev/test.jsonl with
lines `{"text": ..., "label": "positive"|"negative"}` plus SOURCE.md. The source's test.tsv is the labelled GLUE dev
set (872 sentences), so "test" accuracy here is comparable to published SST-2 dev accuracy.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from bertkit import datasets
from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import write_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "classification" / "sst2"
LABEL_NAMES = {"0": "negative", "1": "positive"}
SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}


def read_sst2_tsv(path: Path) -> list[dict]:
    """Rows of one SST-2 TSV as recipe records; any malformed row is a DataError naming its line."""
    records = []
    with open(path, encoding="utf-8", newline="") as f:
        # QUOTE_NONE: the text is PTB-tokenised and may hold stray quote characters.
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if line_no == 1:
                if row != ["sentence", "label"]:
                    raise DataError(path, 1, None, f"expected header 'sentence<TAB>label', got {row!r}")
                continue
            if len(row) != 2:
                raise DataError(path, line_no, None, f"expected 2 tab-separated fields, got {len(row)}")
            text, label = row[0].strip(), row[1].strip()
            if not text:
                raise DataError(path, line_no, "sentence", "empty text")
            if label not in LABEL_NAMES:
                raise DataError(path, line_no, "label", f"expected 0 or 1, got {label!r}")
            records.append({"text": text, "label": LABEL_NAMES[label]})
    return records


def source_md(src: Path, counts: dict[str, int]) -> str:
    upstream = (src / "SOURCE.md").read_text(encoding="utf-8") if (src / "SOURCE.md").exists() else "(missing)\n"
    rows = "\n".join(f"| {split}.jsonl | {SPLITS[split]} | {n:,} |" for split, n in counts.items())
    return f"""# SST-2 for recipes/sentiment

Converted by `python data_scripts/convert_sst2.py` (rerun it to regenerate; it is deterministic) from the public copy
described below. Nothing was subset or filtered: every row is kept, texts are stripped of surrounding whitespace and
labels 0/1 are renamed `negative`/`positive`. Lines are `{{"text": ..., "label": ...}}`.

| file | source file | examples |
|---|---|---|
{rows}

`test.jsonl` is the labelled GLUE SST-2 **dev** set (872 sentences): published "SST-2 dev accuracy" figures are
comparable to accuracy on it. train + dev here together are the GLUE SST-2 train set (67,349 phrases).

## Upstream source (copied from its SOURCE.md)

{upstream}"""


def run(args) -> None:
    """Convert the three splits and write them, with SOURCE.md, to ``args.out``."""
    splits = {split: read_sst2_tsv(args.src / name) for split, name in SPLITS.items()}
    counts = {split: len(records) for split, records in splits.items()}
    write_splits(args.out, splits, source_md(args.src, counts))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with train/dev/test.tsv")
    parser.add_argument("--out", type=Path, default=datasets.path("sst2"),
                        help="output folder (default: the shipped copy, %(default)s)")
    args = parser.parse_args(argv)
    # a source that cannot be read or an output that cannot be written: the user's to fix
    return run_main(run, args, also=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
