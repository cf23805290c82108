"""Classify texts (or pairs) with a trained run; writes JSONL with the label and the class probabilities.

    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --input texts.txt --output predictions.jsonl
    echo "a gorgeous , witty , seductive movie ." | python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN
    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --export runs/sentiment/RUN/export

Input: JSONL records with the run's text field(s) (other fields are copied to the output; a gold "label" is kept as
"gold_label"), or plain text with one text per line (`text<TAB>text_b` for a pair model); blank lines are skipped.
`--format auto` takes JSONL for a `.jsonl` file or when the first non-blank line starts with "{".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bertkit.errors import BertkitError, DataError
from bertkit.fileio import atomic_write_text, read_text

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.sentiment import task  # noqa: E402


def parse_records(text: str, source: str, fmt: str, pair: bool) -> list[tuple[int, dict]]:
    """`(line, record)` for each non-blank line of JSONL or plain text (`text<TAB>text_b` for pairs)."""
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if fmt == "auto":
        fmt = "jsonl" if source.endswith(".jsonl") or (lines and lines[0][1].lstrip().startswith("{")) else "text"
    records = []
    for n, line in lines:
        if fmt == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(source, n, None, f"malformed JSON at column {e.colno}: {e.msg}") from None
            if not isinstance(record, dict):
                raise DataError(source, n, None, f"expected a JSON object, got {type(record).__name__}")
        elif pair:
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(source, n, None, f"a pair model needs 'text<TAB>text_b' lines, got {len(fields)} "
                                                 "tab-separated fields")
            record = {"text": fields[0], "text_b": fields[1]}
        else:
            record = {"text": line}
        records.append((n, record))
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory written by train.py")
    parser.add_argument("--input", default="-", help="input file, '-' for stdin (default)")
    parser.add_argument("--output", default="-", help="output JSONL file, '-' for stdout (default)")
    parser.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto", help="input format")
    parser.add_argument("--batch-size", type=int, default=128, help="texts per prediction batch")
    parser.add_argument("--export", type=Path, help="write a raw-string SavedModel of the run here and exit")
    args = parser.parse_args(argv)
    try:
        model, tokenizer, config = task.load_run(args.run_dir)
        if args.export:
            task.export(model, config, args.export)
            print(f"exported {args.export}", file=sys.stderr)
            return 0
        source = "<stdin>" if args.input == "-" else args.input
        text = sys.stdin.read() if args.input == "-" else read_text(args.input)
        text_column = config["text_column"] if args.format != "text" else "text"
        text_b_column = config["text_b_column"] if args.format != "text" else "text_b"
        records = parse_records(text, source, args.format, config["pair"])
        examples = task.to_examples(records, source, text_column=text_column, text_b_column=text_b_column,
                                    pair=config["pair"], with_labels=False)
        features = task.encode_examples(tokenizer, examples, max_len=config["max_len"])
        predictions = task.decode(task.predict_probabilities(model, features, batch_size=args.batch_size),
                                  config["labels"])
        lines = []
        for (_, record), prediction in zip(records, predictions):
            if "label" in record:
                record["gold_label"] = record.pop("label")
            lines.append(json.dumps({**record, **prediction}, ensure_ascii=False) + "\n")
        if args.output == "-":
            sys.stdout.writelines(lines)
        else:
            atomic_write_text(args.output, "".join(lines))
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
