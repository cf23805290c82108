"""Fine-tune a BERT encoder for text or text-pair classification and write the evaluation report.

    python recipes/sentiment/train.py                       # SST-2 (shipped in data/sst2) with the default encoder
    python recipes/sentiment/train.py --train-file data/mrpc/train.jsonl --dev-file data/mrpc/dev.jsonl \
        --test-file data/mrpc/test.jsonl --max-len 128      # pairs: the files have "text_b"
    python recipes/sentiment/train.py --help                # every option with its default

The run directory gets run_config.json, best/ (weights), report.json, report.md, plots, and export/ with --export.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from bertkit.batching import make_dataset, sample_examples
from bertkit.cli import build_parser, parse_args, run_main
from bertkit.tokenization import Tokenizer
from bertkit.training import Trainer

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.sentiment import task  # noqa: E402

def make_parser():
    parser = build_parser(task.TASK, train_file=task.DEFAULT_DATA_DIR / "train.jsonl",
                          dev_file=task.DEFAULT_DATA_DIR / "dev.jsonl", test_file=task.DEFAULT_DATA_DIR / "test.jsonl",
                          epochs=1, batch_size=32, max_len=64, lr=1e-4, description=__doc__)
    group = parser.add_argument_group("sentiment")
    group.add_argument("--text-column", default="text", help="field/column of the text")
    group.add_argument("--text-b-column", default=None,
                       help="field/column of the second text of a pair (default: 'text_b' when the training file has it)")
    group.add_argument("--label-column", default="label", help="field/column of the label")
    group.add_argument("--pooling", choices=("cls", "mean"), default="cls", help="sentence vector: [CLS] or mean")
    group.add_argument("--dropout", type=float, default=0.1, help="dropout before the classifier")
    group.add_argument("--per-char", action="store_true", help="one token per character (Chinese)")
    group.add_argument("--eval-batch-size", type=int, default=128, help="batch size of prediction")
    group.add_argument("--export", action="store_true", help="also write a raw-string SavedModel to OUTPUT_DIR/export")
    return parser

def run(args) -> dict:
    columns = {"text_column": args.text_column, "text_b_column": args.text_b_column or "text_b",
               "label_column": args.label_column}
    train = task.read_examples(args.train_file, pair=True if args.text_b_column else None, **columns)
    pair = train[0].text_b is not None
    labels = task.label_vocab(train, args.train_file)
    dev = task.read_examples(args.dev_file, pair=pair, **columns)
    test = task.read_examples(args.test_file, pair=pair, **columns)
    task.check_labels(dev, labels, args.dev_file, args.label_column)
    task.check_labels(test, labels, args.test_file, args.label_column)
    train = sample_examples(train, args.max_train_examples, args.seed)

    print(f"{len(train):,} train / {len(dev):,} dev / {len(test):,} test {'pairs' if pair else 'texts'}; "
          f"labels: {', '.join(labels)}", file=sys.stderr)
    trainer = Trainer(args, task.TASK)
    tokenizer = Tokenizer.from_bert_dir(args.bert_dir, per_char=args.per_char)

    train_features, dev_features, test_features = (
        task.encode_examples(tokenizer, examples, max_len=args.max_len, labels=labels) for examples in (train, dev, test))
    train_dataset = make_dataset(train_features, args.batch_size, shuffle=True, seed=args.seed, bucket_by_length=True)
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)

    run_config = {"labels": labels, "pair": pair, "per_char": args.per_char,
                  "lowercase": tokenizer.lowercase, "max_len": args.max_len, "pooling": args.pooling,
                  "dropout": args.dropout, "bert_dir": str(args.bert_dir), **columns}
    trainer.write_run_config(run_config)  # what predict.py needs to rebuild the model
    model = trainer.compile(
        lambda: task.build_model(args.bert_dir, len(labels), pooling=args.pooling, dropout=args.dropout,
                                 trainable_layers=args.trainable_layers),
        steps_per_epoch=steps_per_epoch, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def evaluate_dev(model):  # scalars only: they go into the Keras logs per epoch
        metrics, _ = task.evaluate(model, dev, dev_features, labels, batch_size=args.eval_batch_size)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}

    if args.eval_only:
        trainer.restore(model, args.checkpoint)
    else:
        trainer.fit(model, train_dataset, steps_per_epoch=steps_per_epoch, evaluate=evaluate_dev, headline="accuracy",
                    train_examples=len(train_features))

    metrics, probabilities = task.evaluate(model, test, test_features, labels, batch_size=args.eval_batch_size)
    sections, figures = task.report_sections(metrics, test, probabilities, labels, args.output_dir)
    trainer.write_report(dataset=Path(args.test_file).parent.name, split=Path(args.test_file).stem,
                         headline="accuracy", metrics=metrics, markdown_sections=sections, figures=figures)
    if args.export:
        task.export(model, run_config, Path(args.output_dir) / "export")
    print(f"test accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  -> {args.output_dir}")
    return metrics

def main(argv=None) -> int:
    return run_main(lambda: run(parse_args(make_parser(), argv)))

if __name__ == "__main__":
    sys.exit(main())
