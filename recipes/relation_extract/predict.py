"""Extract (subject, predicate, object) triples from raw text with a trained run; write JSONL.

    python recipes/relation_extract/predict.py --run-dir runs/relation_extract/RUN --input texts.txt \\
        --output triples.jsonl [--subject-threshold 0.5] [--object-threshold 0.5]

Input: a UTF-8 text file (or stdin), one text per line (blank lines skipped). Output lines (the recipe's own input form, so a
prediction file can be read back as data): {"text": ..., "spo_list": [{"subject", "predicate", "object",
"subject_start", "subject_end", "object_start", "object_end"}]} with character offsets into "text" (end exclusive;
text[subject_start:subject_end] == subject). Thresholds default to the ones the run was evaluated with.
Prediction is batched (sentences, then all their subjects).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bertkit.cli import build_predict_parser, check_options, run_main
from bertkit.fileio import read_input, write_jsonl_output

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.relation_extract import task  # noqa: E402


def _progress(done: int, total: int) -> None:
    print(f"\r{done}/{total} texts", end="" if done < total else "\n", file=sys.stderr, flush=True)


def predict(args) -> None:
    check_options(args, "batch_size")
    texts = [line for line in read_input(args.input)[0].split("\n") if line.strip()]
    extractor, config = task.load_run(args.run_dir, checkpoint=args.checkpoint, batch_size=args.batch_size)
    run_thresholds = config.get("thresholds", {})
    st = args.subject_threshold if args.subject_threshold is not None else run_thresholds.get("subject", 0.5)
    ot = args.object_threshold if args.object_threshold is not None else run_thresholds.get("object", 0.5)
    triples = extractor.extract(texts, (st,), (ot,), progress=_progress if len(texts) > 256 else None)[(st, ot)]
    written = write_jsonl_output(args.output, ({"text": text, "spo_list": [t.to_json() for t in found]}
                                               for text, found in zip(texts, triples)))
    if args.output != "-":
        print(f"{written} texts, {sum(map(len, triples))} triples -> {args.output}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_predict_parser(__doc__, input_help="text file, one text per line", batch_size=64)
    parser.add_argument("--subject-threshold", type=float, default=None, help="default: the run's")
    parser.add_argument("--object-threshold", type=float, default=None, help="default: the run's")
    return run_main(predict, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
