"""Tag raw text (or token lists) with a finished run and write entities as JSONL.

    python recipes/sequence_labeling/predict.py --run-dir runs/sequence_labeling/RUN --input texts.txt \
        --output entities.jsonl
    echo "Peter Blackburn visited the U.S." | python recipes/sequence_labeling/predict.py --run-dir RUN
    python recipes/sequence_labeling/predict.py --run-dir runs/sequence_labeling/RUN --export RUN/export

Input: one text per line (English is split into words first, --per-char runs use one word per character), or JSONL
{"id"?, "tokens": [...]} or {"id"?, "text": "..."} per line (gold "tags" are checked, not used).
Output lines: {"id"?, "text", "entities": [{"type", "start", "end", "text"}], "tags"} with character offsets into
"text" (end exclusive, text[start:end] == entity text; for token input the text is the tokens joined by single
spaces) and one tag per word.
"""

from bertkit.cli import exit_process
from bertkit.recipe import predict_main

if __name__ == "__main__":
    exit_process(predict_main(__file__))
