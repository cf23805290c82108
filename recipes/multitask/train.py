"""Joint multi-task fine-tuning: the recipes beside this folder (or those a config names) on ONE shared encoder.

    python recipes/multitask/train.py                                   # every recipe folder beside this one
    python recipes/multitask/train.py --config recipes/multitask/sst2_mrpc.json --epochs 3 --lr 5e-5

See README.md here and ``python recipes/multitask/train.py --help``; the trainer itself is ``bertkit.multitask``.
"""

from pathlib import Path

from bertkit.cli import exit_process
from bertkit.multitask import main

if __name__ == "__main__":
    beside = sorted(p.parent for p in Path(__file__).resolve().parent.parent.glob("*/task.py"))
    exit_process(main(default_folders=beside))
