"""Tag raw text (or token lists) with a trained run and write entities as JSONL.

    python recipes/sequence_labeling/predict.py --run-dir runs/sequence_labeling/RUN --input texts.txt \\
        --output entities.jsonl

Input: a text file (or stdin) with one text per line, one output line each (English is split into words first, Chinese
runs use one token per character), or a .jsonl file with {"tokens": [...]} per line (the text is then the
tokens joined by single spaces).
Output lines: {"text": ..., "entities": [{"type", "start", "end", "text"}]} with character offsets into "text"
(end exclusive, text[start:end] == entity text). Decoding is batched.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bertkit.cli import build_predict_parser, check_options, run_main
from bertkit.fileio import read_input, write_jsonl_output

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.sequence_labeling import task  # noqa: E402


def read_inputs(path) -> tuple[list[str], list[list[str]] | None]:
    """Texts, plus the token lists when the input is JSONL (whose texts are the tokens joined by spaces)."""
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        corpus = task.read_corpus(path, labeled=False)
        tokens = [s.tokens for s in corpus.sentences]
        return [" ".join(t) for t in tokens], tokens
    lines = read_input(path)[0].split("\n")
    if lines and lines[-1] == "":
        lines.pop()          # the input's final newline; every other line (even blank) gets an output line
    return lines, None


def tag(predictor: task.Predictor, texts: list[str], tokens: list[list[str]] | None) -> list[dict]:
    if tokens is None:
        return predictor.predict_texts(texts)
    out = []
    for text, words, tags in zip(texts, tokens, predictor.predict_tokens(tokens)):
        spans, pos = [], 0
        for word in words:             # offsets of each token in the space-joined text
            spans.append((pos, pos + len(word)))
            pos += len(word) + 1
        out.append({"text": text, "entities": task.char_entities(text, spans, tags)})
    return out


def predict(args) -> None:
    check_options(args, "batch_size")
    texts, tokens = read_inputs(args.input)
    predictor = task.Predictor.from_run_dir(args.run_dir, checkpoint=args.checkpoint, batch_size=args.batch_size)
    results = tag(predictor, texts, tokens)
    write_jsonl_output(args.output, results)
    if args.output != "-":
        print(f"{len(results)} texts, {sum(len(r['entities']) for r in results)} entities -> {args.output}",
              file=sys.stderr)


def main(argv=None) -> int:
    parser = build_predict_parser(__doc__, input_help="text file (one text per line) or JSONL with tokens",
                                  batch_size=64)
    return run_main(predict, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
