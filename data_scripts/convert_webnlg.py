"""Convert WebNLG (CasRel's `triple_list` JSON) into the relation_extract recipe's JSONL (DuIE form).

    python data_scripts/convert_webnlg.py [--src ../shared/data/relation_extraction/webnlg] [--out runs/data/webnlg]

Source items: {"text": str, "triple_list": [[subject, predicate, object], ...]}. Output lines:
{"text", "spo_list": [{"subject", "predicate", "object"}]} without character offsets, so the recipe labels every
occurrence of each entity string. The output goes under runs/ (git-ignored): WebNLG is not shipped with the repo.

Scoring note: CasRel/CopyRE score WebNLG "partial match" (last word of each entity); the recipe scores the exact full
entity strings, which is stricter, so its numbers are not directly comparable with CasRel's 91.8.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import read_json, read_text, write_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "relation_extraction" / "webnlg"
SPLITS = {"train": "train_triples.json", "dev": "val_triples.json", "test": "test_triples.json"}


def convert_item(item, path, index: int) -> dict:
    """One CasRel item -> one DuIE-form record. ``index`` (1-based item number) stands in for the line."""
    if not isinstance(item, dict):
        raise DataError(path, index, None, "expected a JSON object")
    text, triples = item.get("text"), item.get("triple_list")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, index, "text", "expected a non-empty string")
    if not isinstance(triples, list):
        raise DataError(path, index, "triple_list", "expected a list of [subject, predicate, object]")
    spo_list = []
    for t_no, triple in enumerate(triples):
        if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(x, str) and x for x in triple)):
            raise DataError(path, index, f"triple_list[{t_no}]", "expected [subject, predicate, object] strings")
        spo_list.append({"subject": triple[0], "predicate": triple[1], "object": triple[2]})
    return {"text": text, "spo_list": spo_list}


def convert_file(path: Path) -> list[dict]:
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(path, 1, None, "expected a JSON list of sentences")
    return [convert_item(item, path, i) for i, item in enumerate(items, start=1)]


def run(args) -> None:
    """Convert the three splits and write them, with SOURCE.md, to ``args.out``."""
    splits = {split: convert_file(args.src / name) for split, name in SPLITS.items()}
    counts = ", ".join(f"{split} {len(r):,} sentences / {sum(len(x['spo_list']) for x in r):,} triples"
                       for split, r in splits.items())
    upstream = read_text(args.src / "SOURCE.md")
    write_splits(args.out, splits, f"""# WebNLG for recipes/relation_extract

Converted by `python data_scripts/convert_webnlg.py` (deterministic) from the public copy described below.
Sizes: {counts}. Splits unchanged (train / val -> dev / test). No character offsets: every occurrence of an
entity string is labelled. The recipe scores exact full entity strings (CasRel scores the last word only).

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {args.out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with {train,val,test}_triples.json")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "data" / "webnlg", help="output folder")
    args = parser.parse_args(argv)
    # a source that cannot be read or an output that cannot be written: the user's to fix
    return run_main(run, args, also=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
