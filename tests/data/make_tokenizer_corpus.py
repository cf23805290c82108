"""Regenerate tests/data/tokenizer_corpus.jsonl: a small seeded sample of real text from the shared datasets, so the
tokenizer tests compare against the reference tokenizer on real text without needing ../shared/data (not run by CI).

    python tests/data/make_tokenizer_corpus.py [--shared ../shared/data]

Each line: {"source": dataset, "text": str} (conll2003 lines also carry "words", the sentence's tokens).
Sources and licences: see tests/data/tokenizer_corpus.SOURCE.md.
"""

import argparse
import csv
import json
import random
import sys
from pathlib import Path

csv.field_size_limit(sys.maxsize)
HERE = Path(__file__).resolve().parent


def sample(items, n, rng):
    items = list(items)
    return items if len(items) <= n else rng.sample(items, n)


def sst2(root, rng):
    with open(root / "classification/sst2/train.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [{"source": "sst2", "text": r[0]} for r in sample(rows, 200, rng)]


def mrpc(root, rng):
    with open(root / "classification/mrpc/msr_paraphrase_train.txt", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    out = []
    for r in sample(rows, 80, rng):
        out += [{"source": "mrpc", "text": r[3]}, {"source": "mrpc", "text": r[4]}]
    return out


def conll2003(root, rng):
    sentences, words = [], []
    for line in (root / "ner/conll2003/train.txt").read_text(encoding="utf-8").split("\n"):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(words)
            words = []
        else:
            words.append(line.split(" ")[0])
    return [{"source": "conll2003", "text": " ".join(w), "words": w} for w in sample(sentences, 120, rng)]


def subjqa(root, rng):
    rows = []
    for domain in ("books", "electronics", "grocery", "movies", "restaurants", "tripadvisor"):
        with open(root / f"span_extraction/subjqa/{domain}/dev.csv", encoding="utf-8", newline="") as f:
            rows += [(domain, r) for r in csv.DictReader(f)]
    out = []
    for domain, r in sample(rows, 48, rng):
        out += [{"source": f"subjqa/{domain}", "text": r["question"]}, {"source": f"subjqa/{domain}", "text": r["review"]}]
    return out


def chnsenticorp(root, rng):
    with open(root / "classification/chnsenticorp/train.tsv", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [{"source": "chnsenticorp", "text": r[0]} for r in sample(rows, 120, rng)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "tokenizer_corpus.jsonl")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    records = []
    for reader in (sst2, mrpc, conll2003, subjqa, chnsenticorp):
        records += reader(args.shared, rng)
    with open(args.out, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} lines to {args.out}")


if __name__ == "__main__":
    main()
