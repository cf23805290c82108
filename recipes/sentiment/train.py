"""Fine-tune a BERT encoder for text or text-pair classification and write the evaluation report.

    python recipes/sentiment/train.py                # SST-2 (shipped with bertkit) and the default encoder
    python recipes/sentiment/train.py --train-file bertkit/datasets/mrpc/train.jsonl \
        --dev-file bertkit/datasets/mrpc/dev.jsonl --test-file bertkit/datasets/mrpc/test.jsonl --max-len 128
    python recipes/sentiment/train.py --help         # every option with its default

The steps are in task.py; bertkit.recipe runs them. An unlabelled --test-file gets OUTPUT_DIR/predictions.jsonl.
"""

from bertkit.cli import exit_process
from bertkit.recipe import train_main

if __name__ == "__main__":
    exit_process(train_main(__file__))
