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

import sys
from pathlib import Path

from bertkit.cli import build_predict_parser, check_options, run_main
from bertkit.fileio import parse_jsonl, read_input, write_jsonl_output

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.span_extract import task  # noqa: E402
from recipes.span_extract.export import export  # noqa: E402


def predict(args) -> None:
    check_options(args, "batch_size")
    model, tokenizer, config = task.load_run(args.run_dir, args.checkpoint)
    if args.export:
        export(model, config, args.export)
        print(f"exported {args.export}", file=sys.stderr)
        return
    text, source = read_input(args.input)
    records = parse_jsonl(text, source)
    examples = task.predict_inputs(records, source)
    predictions = task.predict(model, examples, tokenizer, config, batch_size=args.batch_size)
    outputs = [{**record, "answer": prediction.text, "answer_start": prediction.start,
                "answer_end": prediction.end, "score": round(prediction.score, 4)}
               for (_, record), prediction in zip(records, predictions)]
    written = write_jsonl_output(args.output, outputs)
    if args.output != "-":
        print(f"wrote {written} answers to {args.output}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_predict_parser(__doc__, input_help="JSONL file of questions", batch_size=64)
    parser.add_argument("--export", type=Path, help="write the raw-string SavedModel of the run here and exit")
    return run_main(predict, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
