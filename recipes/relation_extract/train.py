"""Train the cascade (subject -> objects per predicate) relation extractor and write the report.

    python recipes/relation_extract/train.py                  # CoNLL04 (shipped in data/conll04), default encoder
    python data_scripts/convert_webnlg.py && python recipes/relation_extract/train.py \\
        --train-file runs/data/webnlg/train.jsonl --dev-file runs/data/webnlg/dev.jsonl \\
        --test-file runs/data/webnlg/test.jsonl
    python data_scripts/convert_cmeie.py && python recipes/relation_extract/train.py --per-char \\
        --train-file runs/data/cmeie/train.jsonl --dev-file runs/data/cmeie/dev.jsonl \\
        --test-file runs/data/cmeie/test.jsonl --max-len 256        # Chinese

Reads JSONL {"text", "spo_list": [{"subject", "predicate", "object"}]}; evaluates the dev set each epoch (triple
F1), sweeps the decoding thresholds on dev, evaluates the test set and writes run_config.json, best/, report.json,
report.md (and export/ with --export).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # allow `python recipes/relation_extract/train.py` from anywhere
    sys.path.insert(0, str(REPO))

from recipes.relation_extract import scoring, task  # noqa: E402

DATA = REPO / "data" / "conll04"


def build_parser():
    from bertkit.cli import build_parser as shared_parser

    parser = shared_parser(task.TASK, train_file=DATA / "train.jsonl", dev_file=DATA / "dev.jsonl",
                           test_file=DATA / "test.jsonl", epochs=30, batch_size=16, max_len=160, lr=2e-4,
                           description=__doc__)
    # Dev F1 is noisy from epoch to epoch (one sampled subject per sentence): wait longer before stopping.
    parser.set_defaults(early_stopping_patience=6)
    group = parser.add_argument_group("relation extraction")
    group.add_argument("--subjects", choices=task.SUBJECT_MODES, default="sample",
                       help="sample: one random subject per sentence each time it is batched (CasRel); "
                            "all: every subject of a sentence as its own training example")
    group.add_argument("--subject-threshold", type=float, default=0.5,
                       help="a token starts/ends a subject when its probability exceeds this "
                            "(0.5 is the best or within 0.01 of the best on the CoNLL04 dev sweep, README)")
    group.add_argument("--object-threshold", type=float, default=0.5,
                       help="same for object starts/ends per predicate")
    group.add_argument("--tune-thresholds", action="store_true",
                       help="decode test with the best thresholds of the dev sweep instead of the two above")
    group.add_argument("--dropout", type=float, default=None, help="encoder dropout (default: the checkpoint's)")
    group.add_argument("--per-char", action="store_true", help="one token per character (Chinese)")
    group.add_argument("--eval-batch-size", type=int, default=64, help="sentences per prediction batch")
    group.add_argument("--export", action="store_true",
                       help="also write a SavedModel serving raw strings to OUTPUT_DIR/export")
    return parser


def main(argv=None) -> int:
    from bertkit.cli import run_main

    return run_main(run, argv)


def _check_thresholds(args) -> None:
    from bertkit.errors import ConfigError

    for name in ("subject_threshold", "object_threshold"):
        value = getattr(args, name)
        if not 0.0 < value < 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")


def run(argv=None) -> dict:
    from bertkit.batching import sample_examples, steps_per_epoch
    from bertkit.cli import parse_args
    from bertkit.errors import ConfigError
    from bertkit.tokenization import Tokenizer
    from bertkit.training import Trainer

    args = parse_args(build_parser(), argv)
    _check_thresholds(args)
    train = sample_examples(task.read_examples(args.train_file), args.max_train_examples, args.seed)
    dev, test = task.read_examples(args.dev_file), task.read_examples(args.test_file)
    predicates = task.predicate_vocab(train)
    if not predicates:
        raise ConfigError(f"{args.train_file}: no triples to learn from")
    tokenizer = Tokenizer.from_bert_dir(args.bert_dir, per_char=args.per_char)
    notes = {name: task.DataNotes(str(path)) for name, path in
             (("train", args.train_file), ("dev", args.dev_file), ("test", args.test_file))}
    for name, examples in (("dev", dev), ("test", test)):
        task.encode_sentences(examples, tokenizer, predicates, args.max_len, notes[name])  # counts only
        task.check_predicates(examples, predicates, notes[name])
    sentences = task.encode_sentences(train, tokenizer, predicates, args.max_len, notes["train"])
    features = task.training_features(sentences, subjects=args.subjects)
    steps = steps_per_epoch(len(features), args.batch_size)
    for n in notes.values():
        print(n.summary(), file=sys.stderr)
        for warning in n.warnings:
            print(f"warning: {warning}", file=sys.stderr)

    trainer = Trainer(args, task.TASK)
    trainer.write_run_config({"predicates": predicates, "lowercase": tokenizer.lowercase})
    train_dataset = task.make_train_dataset(features, args.batch_size, len(predicates), seed=args.seed)
    print(f"train: {len(train):,} sentences -> {len(features):,} examples ({args.subjects} subjects), "
          f"{steps} steps/epoch; {len(predicates)} predicates", file=sys.stderr)
    built = {}

    def build():
        built["models"] = task.build_models(args.bert_dir, len(predicates), trainable_layers=args.trainable_layers,
                                            dropout=args.dropout)
        return built["models"].train

    model = trainer.compile(build, steps_per_epoch=steps, loss=task.losses())
    extractor = task.Extractor(built["models"], tokenizer, predicates, max_len=args.max_len,
                               batch_size=args.eval_batch_size)
    thresholds = (args.subject_threshold, args.object_threshold)

    def evaluate_dev(_model) -> dict:
        result = task.evaluate_examples(extractor, dev, subject_threshold=thresholds[0],
                                        object_threshold=thresholds[1])
        return {k: v for k, v in result["metrics"].items() if k != "per_predicate"}

    if args.eval_only:
        trainer.restore(model, args.checkpoint or Path(args.output_dir) / "best")
    else:
        trainer.fit(model, train_dataset, steps_per_epoch=steps, evaluate=evaluate_dev, headline="triple_f1",
                    train_examples=len(features))
    sweep = task.evaluate_examples(extractor, dev, subject_threshold=thresholds[0],
                                   object_threshold=thresholds[1], sweep=True)["sweep"]
    source = "--subject-threshold / --object-threshold"
    if args.tune_thresholds:
        thresholds, source = task.best_thresholds(sweep), "best of the dev sweep (--tune-thresholds)"
    result = task.evaluate_examples(extractor, test, subject_threshold=thresholds[0], object_threshold=thresholds[1])
    metrics = dict(result["metrics"])
    metrics["subject_threshold"], metrics["object_threshold"] = thresholds
    metrics["dev_sweep"] = sweep
    metrics["data"] = {name: {k: v for k, v in vars(n).items() if k != "warnings"} for name, n in notes.items()}
    trainer.write_run_config({"predicates": predicates, "lowercase": tokenizer.lowercase,
                              "thresholds": {"subject": thresholds[0], "object": thresholds[1]}})
    sections = scoring.report_sections(metrics, sweep, thresholds, list(notes.values()),
                                       scoring.error_examples(test, result["predictions"]), threshold_source=source)
    report = trainer.write_report(dataset=Path(args.test_file).parent.name, split="test", headline="triple_f1",
                                  metrics=metrics, markdown_sections=sections)
    print(f"test triple F1 {metrics['triple_f1']:.4f} (P {metrics['triple_precision']:.4f} "
          f"R {metrics['triple_recall']:.4f}); subject F1 {metrics['subject_f1']:.4f}; report: {report}",
          file=sys.stderr)
    if args.export:
        from recipes.relation_extract.export import export_extractor

        path = export_extractor(built["models"], args.bert_dir, predicates, Path(trainer.output_dir) / "export",
                                max_len=args.max_len, per_char=args.per_char, lowercase=tokenizer.lowercase,
                                thresholds=thresholds)
        print(f"exported SavedModel: {path}", file=sys.stderr)
    return metrics


if __name__ == "__main__":
    sys.exit(main())
