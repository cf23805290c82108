"""Classify texts (or pairs) with a trained run; writes JSONL with the label and the class probabilities.

    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --input texts.txt --output predictions.jsonl
    echo "a gorgeous , witty , seductive movie ." | python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN
    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --export runs/sentiment/RUN/export

Input: JSONL records with the run's text field(s) (other fields are copied to the output; a gold "label" is kept as
"gold_label"), or plain text with one text per line (`text<TAB>text_b` for a pair model); blank lines are skipped.
`--format auto` takes JSONL for a `.jsonl` file or when the first non-blank line starts with "{".
"""

from __future__ import annotations

import sys
from pathlib import Path

from bertkit.cli import build_predict_parser, check_options, run_main
from bertkit.errors import DataError
from bertkit.fileio import parse_jsonl, read_input, write_jsonl_output

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.sentiment import task  # noqa: E402


def parse_records(text: str, source: str, fmt: str, pair: bool) -> list[tuple[int, dict]]:
    """`(line, record)` for each non-blank line of JSONL or plain text (`text<TAB>text_b` for pairs)."""
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if fmt == "auto":
        fmt = "jsonl" if source.endswith(".jsonl") or (lines and lines[0][1].lstrip().startswith("{")) else "text"
    if fmt == "jsonl":
        return parse_jsonl(text, source)
    records = []
    for n, line in lines:
        if pair:
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(source, n, None, f"a pair model needs 'text<TAB>text_b' lines, got {len(fields)} "
                                                 "tab-separated fields")
            record = {"text": fields[0], "text_b": fields[1]}
        else:
            record = {"text": line}
        records.append((n, record))
    return records


def predict(args) -> None:
    check_options(args, "batch_size")
    model, tokenizer, config = task.load_run(args.run_dir, args.checkpoint)
    if args.export:
        task.export(model, config, args.export)
        print(f"exported {args.export}", file=sys.stderr)
        return
    text, source = read_input(args.input)
    plain = args.format == "text"
    records = parse_records(text, source, args.format, config["pair"])
    examples = task.to_examples(records, source, text_column="text" if plain else config["text_column"],
                                text_b_column="text_b" if plain else config["text_b_column"],
                                pair=config["pair"], with_labels=False)
    features = task.encode_examples(tokenizer, examples, max_len=config["max_len"])
    predictions = task.decode(task.predict_probabilities(model, features, batch_size=args.batch_size),
                              config["labels"])
    outputs = []
    for (_, record), prediction in zip(records, predictions):
        if "label" in record:
            record["gold_label"] = record.pop("label")
        outputs.append({**record, **prediction})
    write_jsonl_output(args.output, outputs)


def main(argv=None) -> int:
    parser = build_predict_parser(__doc__, input_help="JSONL or text file", batch_size=128)
    parser.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto", help="input format")
    parser.add_argument("--export", type=Path, help="write a raw-string SavedModel of the run here and exit")
    return run_main(predict, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
