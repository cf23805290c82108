"""Train the cascade (subject -> objects per predicate) relation extractor and write the report.

    python recipes/relation_extract/train.py                  # CoNLL04 (shipped with bertkit), default encoder
    python data_scripts/convert_webnlg.py && python recipes/relation_extract/train.py \\
        --train-file runs/data/webnlg/train.jsonl --dev-file runs/data/webnlg/dev.jsonl \\
        --test-file runs/data/webnlg/test.jsonl --max-len 128
    python data_scripts/convert_cmeie.py && python recipes/relation_extract/train.py --per-char \\
        --train-file runs/data/cmeie/train.jsonl --dev-file runs/data/cmeie/dev.jsonl \\
        --test-file runs/data/cmeie/test.jsonl --max-len 256        # Chinese
    python recipes/relation_extract/train.py --help           # every option with its default

Reads JSONL {"text", "spo_list": [{"subject", "predicate", "object"}]}; evaluates the dev set each epoch (triple
F1), sweeps the decoding thresholds on dev, evaluates the test set and writes run_config.json, best/, report.json,
report.md (and export/ with --export). The steps are in task.py; bertkit.recipe runs them. An unlabelled
--test-file (no spo_list) gets OUTPUT_DIR/predictions.jsonl.
"""

from bertkit.cli import exit_process
from bertkit.recipe import train_main

if __name__ == "__main__":
    exit_process(train_main(__file__))
