"""Convert AFQMC (CLUE Ant Financial question matching, Chinese pairs) into the sentiment recipe's JSONL.

    python data_scripts/convert_afqmc.py [--src ../shared/data/classification/afqmc] [--out runs/data/afqmc]

Source: `sentence1<TAB>sentence2<TAB>label` lines without header (label 1 = same meaning). The CLUE test file has no
labels, so the labelled dev.txt becomes test, and dev is a seeded sample of 4,316 pairs (the size of CLUE dev) held
out of train.txt. Output: `{"text": ..., "text_b": ..., "label": "same"|"different"}` lines plus SOURCE.md.
Train with `--per-char` (Chinese).
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
DEFAULT_SRC = REPO.parent / "shared" / "data" / "classification" / "afqmc"
LABEL_NAMES = {"0": "different", "1": "same"}


def read_afqmc(path: Path) -> list[dict]:
    """Pairs of one labelled AFQMC file; a malformed line is a DataError naming its line and field."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise DataError(path, line_no, None, f"expected 'sentence1<TAB>sentence2<TAB>label', "
                                                     f"got {len(fields)} fields")
            text, text_b, label = (x.strip() for x in fields)
            for field, value in (("sentence1", text), ("sentence2", text_b)):
                if not value:
                    raise DataError(path, line_no, field, "empty text")
            if label not in LABEL_NAMES:
                raise DataError(path, line_no, "label", f"expected 0 or 1, got {label!r}")
            records.append({"text": text, "text_b": text_b, "label": LABEL_NAMES[label]})
    return records


def run(args) -> None:
    """Convert AFQMC, hold dev out of train.txt and write the splits, with SOURCE.md, to ``args.out``."""
    train = read_afqmc(args.src / "train.txt")
    dev_rows = set(random.Random(args.seed).sample(range(len(train)), args.dev_size))
    splits = {
        "train": [r for i, r in enumerate(train) if i not in dev_rows],
        "dev": [r for i, r in enumerate(train) if i in dev_rows],
        "test": read_afqmc(args.src / "dev.txt"),
    }
    counts = ", ".join(f"{split} {len(records):,}" for split, records in splits.items())
    upstream = (args.src / "SOURCE.md").read_text(encoding="utf-8")
    write_splits(args.out, splits, f"""# AFQMC for recipes/sentiment (Chinese pairs, use --per-char)

Converted by `python data_scripts/convert_afqmc.py --dev-size {args.dev_size} --seed {args.seed}` (deterministic).
Sizes: {counts}. test = CLUE dev.txt (labelled; CLUE test has no labels); dev = a seeded sample of train.txt;
train = the rest. Labels: 1 -> `same`, 0 -> `different`.

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {args.out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with train.txt and dev.txt")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "data" / "afqmc", help="output folder")
    parser.add_argument("--dev-size", type=int, default=4316, help="pairs of train.txt held out as dev")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/dev split")
    args = parser.parse_args(argv)
    # a missing or non-UTF-8 source, an unwritable --out, too big a --dev-size
    return run_main(run, args, also=(OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
