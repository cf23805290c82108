"""Train the CRF tagger (NER) and write the report.

    python recipes/sequence_labeling/train.py                       # CoNLL-2003 English, default encoder, CRF
    python recipes/sequence_labeling/train.py --no-crf              # softmax head instead of the CRF
    python recipes/sequence_labeling/train.py --train-file data/resume_ner/train.jsonl \\
        --dev-file data/resume_ner/dev.jsonl --test-file data/resume_ner/test.jsonl --per-char   # Chinese

Reads JSONL {"tokens", "tags"} or CoNLL column files; evaluates on the dev set each epoch (entity F1, seqeval) and on
the test set at the end; writes run_config.json, best/, report.json, report.md (and export/ with --export).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # allow `python recipes/sequence_labeling/train.py` from anywhere
    sys.path.insert(0, str(REPO))

from recipes.sequence_labeling import task  # noqa: E402

DATA = REPO / "data" / "conll2003"


def build_parser():
    from bertkit.cli import build_parser as shared_parser

    parser = shared_parser(task.TASK, train_file=DATA / "train.jsonl", dev_file=DATA / "dev.jsonl",
                           test_file=DATA / "test.jsonl", epochs=3, batch_size=32, max_len=128, lr=5e-5,
                           description=__doc__)
    head = parser.add_argument_group("sequence labeling")
    head.add_argument("--no-crf", dest="crf", action="store_false",
                      help="softmax over tags per word instead of the CRF (independent decisions)")
    head.add_argument("--crf-lr-multiplier", type=float, default=200.0,
                      help="the CRF transition matrix learns this many times faster than the encoder")
    head.add_argument("--dropout", type=float, default=0.1, help="dropout before the tag scores")
    head.add_argument("--per-char", action="store_true",
                      help="one token per character (Chinese): every character keeps its own tag")
    head.add_argument("--tag-scheme", choices=("auto", "bio", "bioes"), default="auto",
                      help="tag scheme of the data (auto: BIOES if E-/S- tags occur, else BIO/IOB2)")
    head.add_argument("--repair-tags", action="store_true",
                      help="rewrite an entity that starts with I- (or E-) as B- (or S-) instead of failing; "
                           "the count is printed and reported")
    head.add_argument("--max-dev-examples", type=int, default=None, metavar="N",
                      help="evaluate each epoch on a seeded subset of N dev sentences (saves CPU; test stays full)")
    head.add_argument("--eval-batch-size", type=int, default=64, help="sentences (windows) per decoding batch")
    head.add_argument("--export", action="store_true",
                      help="also write a SavedModel (raw text in, tags and entity offsets out) to OUTPUT_DIR/export")
    parser.set_defaults(task=task.TASK)
    return parser


def main(argv=None) -> int:
    from bertkit.cli import run_main

    return run_main(run, argv)


def run(argv=None) -> dict:
    from bertkit.cli import parse_args
    from bertkit.training import Trainer

    args = parse_args(build_parser(), argv)
    trainer = Trainer(args, task.TASK)
    data = task.load_splits(args)
    tokenizer = task.make_tokenizer(args.bert_dir, per_char=args.per_char)
    task.write_run_config(trainer, args, data.tags, data.scheme)
    train_rows, _ = task.make_features(tokenizer, [s.tokens for s in data.train.sentences], args.max_len,
                                       task.tag_ids(data.train, data.tags))
    dev_eval = task.Evaluation(tokenizer, data.dev, data.tags, args.max_len, args.eval_batch_size)
    train_dataset, steps = task.train_dataset(train_rows, args.batch_size, args.seed)
    print(f"train: {len(data.train.sentences):,} sentences -> {len(train_rows):,} windows, {steps} steps/epoch; "
          f"dev: {len(data.dev.sentences):,}; tags: {len(data.tags)} ({data.scheme.upper()}); "
          f"{'CRF' if args.crf else 'softmax'} head", file=sys.stderr)

    model = trainer.compile(lambda: task.build_model(args.bert_dir, len(data.tags), use_crf=args.crf,
                                                     dropout=args.dropout, trainable_layers=args.trainable_layers,
                                                     crf_lr_multiplier=args.crf_lr_multiplier),
                            steps_per_epoch=steps, loss=None)
    if args.eval_only:
        trainer.restore(model, args.checkpoint or Path(args.output_dir) / "best")
    else:
        trainer.fit(model, train_dataset, steps_per_epoch=steps, evaluate=dev_eval, headline="f1")
    test_eval = task.Evaluation(tokenizer, data.test, data.tags, args.max_len, args.eval_batch_size)
    metrics = test_eval(model)
    metrics["repaired_tags"] = data.repaired
    report = trainer.write_report(dataset=Path(args.test_file).parent.name, split="test", headline="f1",
                                  metrics=metrics, markdown_sections=task.markdown_sections(metrics))
    print(f"test entity F1 {metrics['f1']:.4f} (P {metrics['precision']:.4f} R {metrics['recall']:.4f}); "
          f"report: {report}", file=sys.stderr)
    if args.export:
        from recipes.sequence_labeling.export import export_tagger

        path = export_tagger(model, args.bert_dir, data.tags, Path(args.output_dir) / "export",
                             per_char=args.per_char, lowercase=tokenizer.lowercase)
        print(f"exported SavedModel: {path}", file=sys.stderr)
    return metrics


if __name__ == "__main__":
    sys.exit(main())
