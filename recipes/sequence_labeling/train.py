"""Train the CRF tagger (NER) and write the report.

    python recipes/sequence_labeling/train.py                       # CoNLL-2003 (shipped with bertkit), CRF
    python recipes/sequence_labeling/train.py --no-crf              # softmax head instead of the CRF
    python recipes/sequence_labeling/train.py --max-train-examples 5000 --epochs 2 --lr 1e-4 --max-dev-examples 1000
    python recipes/sequence_labeling/train.py --train-file runs/data/resume_ner/train.jsonl \
        --dev-file runs/data/resume_ner/dev.jsonl --test-file runs/data/resume_ner/test.jsonl --per-char  # Chinese
    python recipes/sequence_labeling/train.py --help                # every option with its default

Reads JSONL {"tokens", "tags"} or CoNLL column files; evaluates on the dev set each epoch (entity F1, seqeval) and on
the test set at the end. The steps are in task.py; bertkit.recipe runs them. An unlabelled --test-file (tokens or
raw "text" without tags) gets OUTPUT_DIR/predictions.jsonl.
"""

from bertkit.cli import exit_process
from bertkit.recipe import train_main

if __name__ == "__main__":
    exit_process(train_main(__file__))
