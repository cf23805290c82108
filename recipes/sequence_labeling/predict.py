"""Tag raw text (or token lists) with a trained run and write entities as JSONL.

    python recipes/sequence_labeling/predict.py --run-dir runs/sequence_labeling/RUN --input texts.txt \\
        --output entities.jsonl

Input: a text file with one text per line, one output line each (English is split into words first, Chinese
runs use one token per character), or a .jsonl file with {"tokens": [...]} per line (the text is then the
tokens joined by single spaces).
Output lines: {"text": ..., "entities": [{"type", "start", "end", "text"}]} with character offsets into "text"
(end exclusive, text[start:end] == entity text). Decoding is batched.
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
from recipes.sequence_labeling import task  # noqa: E402


def read_inputs(path) -> tuple[list[str], list[list[str]] | None]:
    """Texts, plus the token lists when the input is JSONL (whose texts are the tokens joined by spaces)."""
    from bertkit.fileio import iter_jsonl, read_text
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        corpus = task.read_corpus(path, labeled=False)
        tokens = [s.tokens for s in corpus.sentences]
        return [" ".join(t) for t in tokens], tokens
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()          # the file's final newline; every other line (even blank) gets an output line
    return [line.rstrip("\r") for line in lines], None


def predict(predictor: task.Predictor, texts: list[str], tokens: list[list[str]] | None) -> list[dict]:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a trained run directory (run_config.json, best/)")
    parser.add_argument("--input", required=True, help="text file (one text per line) or JSONL with tokens")
    parser.add_argument("--output", default="-", help="output JSONL (default: stdout)")
    parser.add_argument("--checkpoint", default=None, help="weights to load instead of RUN_DIR/best")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        from bertkit.fileio import atomic_write_text
        texts, tokens = read_inputs(args.input)
        predictor = task.Predictor.from_run_dir(args.run_dir, checkpoint=args.checkpoint,
                                                batch_size=args.batch_size)
        results = predict(predictor, texts, tokens)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
        if args.output == "-":
            sys.stdout.write(lines)
        else:
            atomic_write_text(args.output, lines)
            print(f"{len(results)} texts, {sum(len(r['entities']) for r in results)} entities -> {args.output}",
                  file=sys.stderr)
    except BertkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
