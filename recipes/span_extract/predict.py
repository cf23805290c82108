"""Answer questions with a trained span_extract run: JSONL in, JSONL out (answer text, character offsets, score).

    python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN --input questions.jsonl --output answers.jsonl
    echo '{"question": "How is the parking?", "context": "Parking was $35 per night."}' | \
        python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN
    python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN --export runs/span_extract/RUN/export

Input records: ``{"question", "context"}`` (``id`` optional; the event-subject form ``{"event_type", "text"}`` too;
other fields are copied). Output adds ``answer`` (exactly ``context[answer_start:answer_end]``), ``answer_start``,
``answer_end`` (character offsets, end exclusive; -1 and "" when a ``--no-answer`` run abstains) and ``score``
(start logit + end logit of the span). Long contexts are windowed like in training; the best window wins.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bertkit.errors import BertkitError, ConfigError
from bertkit.fileio import atomic_write_text

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.span_extract import task  # noqa: E402


def read_records(path) -> list[tuple[int, dict]]:
    """``(line, record)`` pairs of a JSONL file, or of stdin for ``-``."""
    from bertkit.fileio import read_text

    if path == "-":
        return task.parse_jsonl_text(sys.stdin.read(), "<stdin>")
    return task.parse_jsonl_text(read_text(path), path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory written by train.py")
    parser.add_argument("--input", default="-", help="input JSONL file, '-' for stdin (default)")
    parser.add_argument("--output", default="-", help="output JSONL file, '-' for stdout (default)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per prediction batch")
    parser.add_argument("--export", type=Path, help="write the raw-string SavedModel of the run here and exit")
    args = parser.parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
        model, tokenizer, config = task.load_run(args.run_dir)
        if args.export:
            task.export(model, config, args.export)
            print(f"exported {args.export}", file=sys.stderr)
            return 0
        records = read_records(args.input)
        examples = task.predict_inputs(records, "<stdin>" if args.input == "-" else args.input)
        predictions = task.predict(model, examples, tokenizer, config, batch_size=args.batch_size)
        lines = []
        for (_, record), prediction in zip(records, predictions):
            out = {**record, "answer": prediction.text, "answer_start": prediction.start,
                   "answer_end": prediction.end, "score": round(prediction.score, 4)}
            lines.append(json.dumps(out, ensure_ascii=False) + "\n")
        if args.output == "-":
            sys.stdout.write("".join(lines))
        else:
            atomic_write_text(args.output, "".join(lines))
            print(f"wrote {len(lines)} answers to {args.output}", file=sys.stderr)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
