"""Convert CoNLL04 (token-span JSON) into the relation_extract recipe's JSONL (DuIE form with character offsets).

    python data_scripts/convert_conll04.py [--src ../shared/data/relation_extraction/conll04] [--out DIR]

--out defaults to the copy shipped with bertkit, bertkit/datasets/conll04.

Source items: {"tokens": [...], "entities": [[start, end, type]], "relations": [[h_start, h_end, t_start, t_end, type]]}
(token spans, end exclusive). Output lines:
{"text": tokens joined by single spaces, "spo_list": [{"subject", "predicate", "object", "subject_start",
"object_start", "subject_type", "object_type"}]} where *_start are character offsets into "text", so repeated
mentions are pinned to the annotated one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bertkit import datasets
from bertkit.cli import run_main
from bertkit.errors import DataError
from bertkit.fileio import read_json, read_text, write_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "relation_extraction" / "conll04"
SPLITS = {"train": "train.CoNLL04.json", "dev": "valid.CoNLL04.json", "test": "test.CoNLL04.json"}


def _token_span(tokens: list[str], starts: list[int], start, end, path, item: int, field: str) -> tuple[int, int]:
    """Character span [start, end) in the space-joined text of the token span [start, end)."""
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(tokens)):
        raise DataError(path, item, field, f"bad token span [{start}, {end}) for {len(tokens)} tokens")
    return starts[start], starts[end - 1] + len(tokens[end - 1])


def convert_item(item: dict, path, index: int) -> dict:
    """One CoNLL04 sentence -> one DuIE-form record. ``index`` (1-based item number) stands in for the line."""
    tokens = item.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise DataError(path, index, "tokens", "expected a non-empty list of non-empty strings")
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    text = " ".join(tokens)
    entity_types = {}
    for e_no, entity in enumerate(item.get("entities", [])):
        if not (isinstance(entity, list) and len(entity) == 3):
            raise DataError(path, index, f"entities[{e_no}]", "expected [start, end, type]")
        entity_types[(entity[0], entity[1])] = entity[2]
    spo_list = []
    for r_no, relation in enumerate(item.get("relations", [])):
        field = f"relations[{r_no}]"
        if not (isinstance(relation, list) and len(relation) == 5 and isinstance(relation[4], str)):
            raise DataError(path, index, field, "expected [h_start, h_end, t_start, t_end, type]")
        hs, he = _token_span(tokens, starts, relation[0], relation[1], path, index, field)
        ts, te = _token_span(tokens, starts, relation[2], relation[3], path, index, field)
        spo_list.append({
            "subject": text[hs:he], "predicate": relation[4], "object": text[ts:te],
            "subject_start": hs, "object_start": ts,
            "subject_type": entity_types.get((relation[0], relation[1])),
            "object_type": entity_types.get((relation[2], relation[3])),
        })
    return {"text": text, "spo_list": spo_list}


def convert_file(path: Path) -> list[dict]:
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(path, 1, None, "expected a JSON list of sentences")
    return [convert_item(item if isinstance(item, dict) else {}, path, i) for i, item in enumerate(items, start=1)]


def run(args) -> None:
    """Convert the three splits and write them, with SOURCE.md, to ``args.out``."""
    splits = {split: convert_file(args.src / name) for split, name in SPLITS.items()}
    counts = ", ".join(f"{split} {len(r):,} sentences / {sum(len(x['spo_list']) for x in r):,} triples"
                       for split, r in splits.items())
    upstream = read_text(args.src / "SOURCE.md")
    write_splits(args.out, splits, f"""# CoNLL04 for recipes/relation_extract

Converted by `python data_scripts/convert_conll04.py` (deterministic; rerun to regenerate) from the public copy
described below. Sizes: {counts}.

- `text` is the sentence's tokens joined by single spaces (the corpus is pre-tokenised: "U.S. ." not "U.S.").
- Each relation `[h_start, h_end, t_start, t_end, type]` becomes `{{"subject", "predicate", "object"}}` with
  `subject_start` / `object_start` = character offsets of the annotated mentions in `text` (so a repeated name is
  labelled only where annotated), plus `subject_type` / `object_type` (entity types; informational, the recipe
  does not predict them, so our strict triple score ignores types, unlike SpERT's strict mode).
- Splits are unchanged: train = train.CoNLL04.json, dev = valid.CoNLL04.json, test = test.CoNLL04.json.

## Upstream source (copied from its SOURCE.md)

{upstream}""")
    print(f"wrote {args.out}: {counts}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with {train,valid,test}.CoNLL04.json")
    parser.add_argument("--out", type=Path, default=datasets.path("conll04"),
                        help="output folder (default: the shipped copy, %(default)s)")
    args = parser.parse_args(argv)
    # a source that cannot be read or an output that cannot be written: the user's to fix
    return run_main(run, args, also=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
