"""Convert the CMeIE dev set (Chinese medical SPO, DuIE-2.0-like JSONL) into the relation_extract recipe's JSONL.

    python data_scripts/convert_cmeie.py [--src ../shared/data/relation_extraction/cmeie_dev] [--out runs/data/cmeie]
                                         [--dev-fraction 0.1] [--test-fraction 0.1] [--seed 0]

Only CMeIE's dev set (3,585 sentences) is available here, so it is split (seeded) into train/dev/test: scores on
it are a pipeline check, not comparable to published CMeIE results. Source lines carry
`"object": {"@value": str}`; output lines are {"text", "spo_list": [{"subject", "predicate", "object",
"subject_type", "object_type"}]} without offsets (every occurrence is labelled). Output goes under runs/ (git-ignored).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl, read_text, write_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "relation_extraction" / "cmeie_dev"


def _value(x):
    """CMeIE wraps objects as {"@value": str}; subjects are plain strings."""
    return x.get("@value") if isinstance(x, dict) else x


def convert_record(record: dict, path, line: int) -> dict:
    text, spos = record.get("text"), record.get("spo_list")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "text", "expected a non-empty string")
    if not isinstance(spos, list):
        raise DataError(path, line, "spo_list", "expected a list")
    spo_list = []
    for i, spo in enumerate(spos):
        if not isinstance(spo, dict):
            raise DataError(path, line, f"spo_list[{i}]", "expected an object")
        triple = {}
        for field in ("subject", "predicate", "object"):
            value = _value(spo.get(field))
            if not isinstance(value, str) or not value:
                raise DataError(path, line, f"spo_list[{i}].{field}", "expected a non-empty string")
            triple[field] = value
        triple["subject_type"] = _value(spo.get("subject_type"))
        triple["object_type"] = _value(spo.get("object_type"))
        spo_list.append(triple)
    return {"text": text, "spo_list": spo_list}


def run(args) -> None:
    """Convert CMeIE's dev set, split it at random and write the splits, with SOURCE.md, to ``args.out``."""
    src = args.src / "val_triples.json"
    records = [convert_record(r, src, line) for line, r in iter_jsonl(src)]
    order = list(range(len(records)))
    random.Random(args.seed).shuffle(order)
    n_dev, n_test = round(args.dev_fraction * len(order)), round(args.test_fraction * len(order))
    parts = {"dev": order[:n_dev], "test": order[n_dev:n_dev + n_test], "train": order[n_dev + n_test:]}
    splits = {split: [records[i] for i in sorted(parts[split])] for split in ("train", "dev", "test")}
    counts = ", ".join(f"{split} {len(r):,} sentences / {sum(len(x['spo_list']) for x in r):,} triples"
                       for split, r in splits.items())
    upstream = read_text(args.src / "SOURCE.md")
    write_splits(args.out, splits, f"""# CMeIE (dev set only, re-split) for recipes/relation_extract

Converted by `python data_scripts/convert_cmeie.py --dev-fraction {args.dev_fraction} --test-fraction
{args.test_fraction} --seed {args.seed}` from the public copy described below. Only CMeIE's dev set is available,
so it is split at random into {counts}. Scores are a pipeline check, not comparable to published CMeIE results.
No character offsets: every occurrence of an entity string is labelled.

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {args.out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with val_triples.json (JSON lines)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "data" / "cmeie", help="output folder")
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    # a source that cannot be read or an output that cannot be written: the user's to fix
    return run_main(run, args, also=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
