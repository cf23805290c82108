"""Classify texts (or pairs) with a finished run: JSONL in ({"id"?, "text", "text_b"?}) or one text per line,
JSONL out ({"id"?, "label", "probabilities"}).

    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --input texts.txt --output predictions.jsonl
    echo "a gorgeous , witty , seductive movie ." | python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN
    python recipes/sentiment/predict.py --run-dir runs/sentiment/RUN --export runs/sentiment/RUN/export
"""

from bertkit.cli import exit_process
from bertkit.recipe import predict_main

if __name__ == "__main__":
    exit_process(predict_main(__file__))
