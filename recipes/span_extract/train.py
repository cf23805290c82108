"""Fine-tune a BERT encoder for extractive QA / event-subject extraction (two pointers) and write the report.

    python recipes/span_extract/train.py          # SubjQA (shipped with bertkit) with the default encoder
    python recipes/span_extract/train.py --train-file runs/data/cmrc2018/train.jsonl \
        --dev-file runs/data/cmrc2018/dev.jsonl --test-file runs/data/cmrc2018/dev.jsonl     # CMRC 2018 (zh)
    python recipes/span_extract/train.py --train-file bertkit/datasets/event_subject/train.jsonl \
        --dev-file bertkit/datasets/event_subject/dev.jsonl --test-file bertkit/datasets/event_subject/dev.jsonl
    python recipes/span_extract/train.py --help   # every option with its default

Files: SQuAD JSON (``.json``) or JSONL ``{"id", "question", "context", "answers": [{"text", "start"}]}`` (or the
event-subject form ``{"id", "event_type", "text", "subject"}``). The steps are in task.py; bertkit.recipe runs
them. An unlabelled --test-file (no answers) gets OUTPUT_DIR/predictions.jsonl.
"""

from bertkit.cli import exit_process
from bertkit.recipe import train_main

if __name__ == "__main__":
    exit_process(train_main(__file__))
