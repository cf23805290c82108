"""Convert CoNLL-2003 English NER (CoNLL columns) into the sequence-labeling recipe's JSONL.

    python -m data_scripts.convert_conll2003 [--src ../shared/data/ner/conll2003] [--out bertkit/datasets/conll2003]

Run it from the repository root: it checks the tags with the recipe's reader (``recipes.sequence_labeling``).

Source: `token POS chunk NER` lines, blank lines between sentences, `-DOCSTART-` lines between documents, tags IOB2.
Output: train/dev/test.jsonl with lines `{"tokens": [...], "tags": [...]}` (POS and chunk columns dropped) plus
SOURCE.md. Every sentence is kept; the tags are checked with the recipe's own reader (BIO, no I- starting an entity).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertkit import datasets
from bertkit.cli import run_main
from bertkit.fileio import write_splits
from recipes.sequence_labeling.task import read_corpus

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "ner" / "conll2003"
SPLITS = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}


def source_md(src: Path, counts: dict[str, tuple[int, int]]) -> str:
    upstream = (src / "SOURCE.md").read_text(encoding="utf-8") if (src / "SOURCE.md").exists() else "(missing)\n"
    rows = "\n".join(f"| {split}.jsonl | {SPLITS[split]} | {n:,} | {t:,} |" for split, (n, t) in counts.items())
    return f"""# CoNLL-2003 English NER for recipes/sequence_labeling

Converted by `python -m data_scripts.convert_conll2003` (deterministic; rerun it to regenerate) from the public copy
described below. Every sentence is kept in order; `-DOCSTART-` lines are dropped, and so are the POS and chunk
columns. Lines are `{{"tokens": [...], "tags": [...]}}` with IOB2 tags for PER, ORG, LOC, MISC.
The recipe also reads the original `.txt` column files directly.

| file | source file | sentences | tokens |
|---|---|---|---|
{rows}

Licence: the CoNLL-2003 annotations are distributed for research; the underlying Reuters RCV1 text is under the
Reuters corpus agreement (see upstream notes below).

## Upstream source (copied from its SOURCE.md)

{upstream}"""


def run(args) -> None:
    """Convert the three splits (checked by the recipe's reader) and write them, with SOURCE.md, to ``args.out``."""
    splits, counts = {}, {}
    for split, name in SPLITS.items():
        corpus = read_corpus(args.src / name, scheme="bio")
        splits[split] = [{"tokens": s.tokens, "tags": s.tags} for s in corpus.sentences]
        counts[split] = (len(corpus.sentences), sum(len(s.tokens) for s in corpus.sentences))
        print(f"{split}: {counts[split][0]:,} sentences, {counts[split][1]:,} tokens", file=sys.stderr)
    write_splits(args.out, splits, source_md(args.src, counts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with train/valid/test.txt")
    parser.add_argument("--out", type=Path, default=datasets.path("conll2003"),
                        help="output folder (default: the shipped copy, %(default)s)")
    return run_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
