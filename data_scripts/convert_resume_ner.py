"""Convert Resume NER (Chinese, Zhang & Yang 2018) into the sequence-labeling recipe's JSONL.

    python -m data_scripts.convert_resume_ner [--src ../shared/data/ner/resume_ner] [--out runs/data/resume_ner]

Run it from the repository root: it checks the tags with the recipe's reader (``recipes.sequence_labeling``). The
output is not shipped with bertkit; pass its files to the recipe with --train-file/--dev-file/--test-file.

Source: the `.json` files, lines `{"text": [chars], "label": [tags]}` (not the `.char.bmes` files: seqeval cannot
read their M- prefix). Their tags are BIO except for a few single-character entities tagged `S-X`; those become
`B-X` (a one-token entity in BIO), and two entities that start with `I-X` (cut by a sentence split) get `B-X`;
both counts are printed. Output: train/dev/test.jsonl with lines
`{"tokens": [chars], "tags": [BIO tags]}` plus SOURCE.md, checked with the recipe's reader. Train with
`--per-char` so every character is one token and keeps its tag.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import atomic_write_text, iter_jsonl, require, write_jsonl
from recipes.sequence_labeling.data import Sentence, check_tags
from recipes.sequence_labeling.task import read_corpus

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "ner" / "resume_ner"
SPLITS = {"train": "train.json", "dev": "dev.json", "test": "test.json"}


def convert(path: Path) -> tuple[list[dict], int, int]:
    """Records of one source file with S-X mapped to B-X and entities starting with I-X repaired to B-X (an entity
    split across source lines); returns (records, S- tags mapped, I- tags repaired)."""
    records, mapped = [], 0
    for line, record in iter_jsonl(path):
        chars = require(record, "text", path, line, kind=list)
        labels = require(record, "label", path, line, kind=list)
        if len(chars) != len(labels):
            raise DataError(path, line, "label", f"{len(labels)} labels for {len(chars)} characters")
        tags = []
        for label in labels:
            if isinstance(label, str) and label.startswith("S-"):
                label, mapped = "B-" + label[2:], mapped + 1
            tags.append(label)
        records.append({"tokens": chars, "tags": tags, "line": line})
    sentences = [Sentence(r["tokens"], r["tags"], [r.pop("line")] * len(r["tokens"])) for r in records]
    _, repaired = check_tags(sentences, path, scheme="bio", repair=True)  # rewrites the tags lists in place
    return records, mapped, repaired


def run(args) -> None:
    """Convert the three splits, check each with the recipe's reader and write SOURCE.md, all to ``args.out``."""
    rows = []
    for split, name in SPLITS.items():
        records, mapped, repaired = convert(args.src / name)
        out = args.out / f"{split}.jsonl"
        write_jsonl(out, records)
        read_corpus(out, scheme="bio")  # the recipe must accept what we wrote
        rows.append(f"| {split}.jsonl | {name} | {len(records):,} | {mapped} | {repaired} |")
        print(f"{split}: {len(records):,} sentences, {mapped} S- tags mapped to B-, {repaired} entity-starting "
              f"I- tags repaired to B-", file=sys.stderr)
    upstream = (args.src / "SOURCE.md").read_text(encoding="utf-8") if (args.src / "SOURCE.md").exists() else ""
    atomic_write_text(args.out / "SOURCE.md", f"""# Resume NER (Chinese) for recipes/sequence_labeling

Converted by `python -m data_scripts.convert_resume_ner` (deterministic) from the `.json` (BIO) files described
below. Every sentence is kept; fields renamed `text`->`tokens` (one Chinese character or other symbol per token),
`label`->`tags`; the source's few `S-X` tags (single-character entities) become `B-X` so the tags are pure BIO, and
an entity that starts with `I-X` (the source's sentence split cut an entity: it continues from the previous line)
is repaired to start with `B-X` (the recipe's `--repair-tags` rule).

| file | source file | sentences | S- tags mapped | I- tags repaired |
|---|---|---|---|---|
{chr(10).join(rows)}

## Upstream source (copied from its SOURCE.md)

{upstream}""")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with train/dev/test.json")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "data" / "resume_ner", help="output folder")
    return run_main(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
