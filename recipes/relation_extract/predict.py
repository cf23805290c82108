"""Extract (subject, predicate, object) triples from raw text with a trained run; write JSONL.

    python recipes/relation_extract/predict.py --run-dir runs/relation_extract/RUN --input texts.txt \\
        --output triples.jsonl [--subject-threshold 0.5] [--object-threshold 0.5]

Input: a UTF-8 text file, one text per line (blank lines skipped). Output lines (the recipe's own input form, so a
prediction file can be read back as data): {"text": ..., "spo_list": [{"subject", "predicate", "object",
"subject_start", "subject_end", "object_start", "object_end"}]} with character offsets into "text" (end exclusive;
text[subject_start:subject_end] == subject). Thresholds default to the ones the run was evaluated with.
Prediction is batched (sentences, then all their subjects).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bertkit.errors import BertkitError  # noqa: E402
from recipes.relation_extract import task  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a trained run directory (run_config.json, best/)")
    parser.add_argument("--input", required=True, help="text file, one text per line")
    parser.add_argument("--output", default="-", help="output JSONL (default: stdout)")
    parser.add_argument("--checkpoint", default=None, help="weights to load instead of RUN_DIR/best")
    parser.add_argument("--subject-threshold", type=float, default=None, help="default: the run's")
    parser.add_argument("--object-threshold", type=float, default=None, help="default: the run's")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    args = parser.parse_args(argv)
    try:
        from bertkit.fileio import atomic_write_text

        texts = task.read_texts(args.input)
        extractor, config = task.load_run(args.run_dir, checkpoint=args.checkpoint, batch_size=args.batch_size)
        run_thresholds = config.get("thresholds", {})
        st = args.subject_threshold if args.subject_threshold is not None else run_thresholds.get("subject", 0.5)
        ot = args.object_threshold if args.object_threshold is not None else run_thresholds.get("object", 0.5)

        def progress(done, total):
            print(f"\r{done}/{total} texts", end="" if done < total else "\n", file=sys.stderr, flush=True)

        triples = extractor.extract(texts, (st,), (ot,), progress=progress if len(texts) > 256 else None)[(st, ot)]
        lines = "".join(json.dumps({"text": text, "spo_list": [t.to_json() for t in found]}, ensure_ascii=False)
                        + "\n" for text, found in zip(texts, triples))
        if args.output == "-":
            sys.stdout.write(lines)
        else:
            atomic_write_text(args.output, lines)
            print(f"{len(texts)} texts, {sum(map(len, triples))} triples -> {args.output}", file=sys.stderr)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
