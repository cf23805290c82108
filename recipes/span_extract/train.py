"""Fine-tune a BERT encoder for extractive QA / event-subject extraction (two pointers) and write the report.

    python recipes/span_extract/train.py          # SubjQA (shipped in data/subjqa) with the default encoder
    python recipes/span_extract/train.py --train-file runs/data/cmrc2018/train.jsonl \
        --dev-file runs/data/cmrc2018/dev.jsonl --test-file runs/data/cmrc2018/dev.jsonl     # CMRC 2018 (zh)
    python recipes/span_extract/train.py --train-file data/event_subject/train.jsonl \
        --dev-file data/event_subject/dev.jsonl --test-file data/event_subject/dev.jsonl    # event subjects
    python recipes/span_extract/train.py --help   # every option with its default

Files: SQuAD JSON (``.json``) or JSONL ``{"id", "question", "context", "answers": [{"text", "start"}]}`` (or the
event-subject form ``{"id", "event_type", "text", "subject"}``). The run directory gets run_config.json, best/
(weights), report.json, report.md, plots, and export/ (a raw-string SavedModel) with --export.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from bertkit.batching import make_dataset, sample_examples
from bertkit.cli import build_parser, parse_args, run_main
from bertkit.errors import ConfigError
from bertkit.tokenization import Tokenizer
from bertkit.training import Trainer

if __package__ in (None, ""):  # run as a script: make `recipes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recipes.span_extract import scoring, task  # noqa: E402
from recipes.span_extract.export import export  # noqa: E402


def make_parser():
    data = task.DEFAULT_DATA_DIR
    parser = build_parser(task.TASK, train_file=data / "train.jsonl", dev_file=data / "dev.jsonl",
                          test_file=data / "test.jsonl", epochs=2, batch_size=16, max_len=384, lr=1e-4,
                          description=__doc__)
    group = parser.add_argument_group("span extraction")
    group.add_argument("--doc-stride", type=int, default=128,
                       help="passage tokens between the starts of consecutive windows of a long passage")
    group.add_argument("--max-query-len", type=int, default=64, help="question tokens kept (the rest is cut)")
    group.add_argument("--max-answer-len", type=int, default=30,
                       help="longest answer in tokens when decoding (covers 98%% of SubjQA train answers)")
    group.add_argument("--top-k", type=int, default=20, help="start and end candidates searched per window")
    group.add_argument("--no-answer", action="store_true",
                       help="SQuAD 2.0 style: questions with no answer are kept and [CLS] means 'no answer'; "
                            "the threshold is tuned on dev")
    group.add_argument("--fix-answers", action="store_true",
                       help="an answer not found at its start offset is searched for in the context (warning) "
                            "instead of being an error")
    group.add_argument("--metric", choices=("auto", "squad", "cmrc"), default="auto",
                       help="EM/F1 flavour: SQuAD (English tokens) or CMRC 2018 (characters); auto: cmrc when the "
                            "contexts are mostly Chinese")
    group.add_argument("--per-char", action="store_true", help="one token per character (Chinese)")
    group.add_argument("--dropout", type=float, default=None, help="encoder dropout (default: the checkpoint's)")
    group.add_argument("--eval-batch-size", type=int, default=64, help="windows per prediction batch")
    group.add_argument("--max-eval-examples", type=int, default=None, metavar="N",
                       help="evaluate on a seeded sample of N dev and N test questions (default: all)")
    group.add_argument("--export", action="store_true", help="also write a raw-string SavedModel to OUTPUT_DIR/export")
    return parser


def check_args(args) -> None:
    if args.max_len < 16:
        raise ConfigError(f"--max-len must be at least 16, got {args.max_len}")
    window = args.max_len - 3 - min(args.max_query_len, args.max_len // 2)
    if not 1 <= args.doc_stride <= window:
        raise ConfigError(f"--doc-stride must be in 1..{window} (the passage tokens of a window with a "
                          f"{args.max_query_len}-token question at --max-len {args.max_len}), got {args.doc_stride}")
    for name in ("max_query_len", "max_answer_len", "top_k", "eval_batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def run(args) -> dict:
    check_args(args)
    read_stats = {}

    def read(path, name):
        stats = task.ReadStats()
        examples = task.read_examples(path, fix_answers=args.fix_answers, allow_unanswerable=args.no_answer,
                                      stats=stats)
        read_stats[name] = {"file": str(path), "questions": len(examples), **vars(stats)}
        return examples

    train, dev, test = read(args.train_file, "train"), read(args.dev_file, "dev"), read(args.test_file, "test")
    train = sample_examples(train, args.max_train_examples, args.seed)
    dev = sample_examples(dev, args.max_eval_examples, args.seed)
    test = sample_examples(test, args.max_eval_examples, args.seed)
    metric = scoring.choose_metric(train, args.metric)

    trainer = Trainer(args, task.TASK)
    tokenizer = Tokenizer.from_bert_dir(args.bert_dir, per_char=args.per_char)
    settings = {"max_len": args.max_len, "doc_stride": args.doc_stride, "max_query_len": args.max_query_len,
                "max_answer_len": args.max_answer_len, "top_k": args.top_k, "no_answer": args.no_answer,
                "null_threshold": None}
    feature_stats = task.FeatureStats()
    train_features = task.make_features(train, tokenizer, max_len=args.max_len, doc_stride=args.doc_stride,
                                        max_query_len=args.max_query_len, training=True, no_answer=args.no_answer,
                                        stats=feature_stats)
    if not train_features:
        raise ConfigError(f"{args.train_file}: no training window holds an answer (see the warnings)")
    print(f"train: {len(train)} questions -> {len(train_features)} windows; "
          f"{feature_stats.no_answer_in_any_window} questions with no answer inside any window (skipped)",
          file=sys.stderr)
    dev_eval = task.SetEvaluator(dev, tokenizer, settings, metric=metric, batch_size=args.eval_batch_size, tune=True)
    test_eval = task.SetEvaluator(test, tokenizer, settings, metric=metric, batch_size=args.eval_batch_size)

    train_dataset = make_dataset(train_features, args.batch_size, input_keys=task.INPUT_KEYS,
                                 target_keys=("start", "end"), shuffle=True, seed=args.seed, bucket_by_length=True)
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)
    run_config = {**settings, "per_char": args.per_char, "lowercase": tokenizer.lowercase, "metric": metric,
                  "bert_dir": str(args.bert_dir)}
    trainer.write_run_config(run_config)  # rewritten below with the tuned no-answer threshold
    model = trainer.compile(lambda: task.build_model(args.bert_dir, trainable_layers=args.trainable_layers,
                                                     dropout=args.dropout),
                            steps_per_epoch=steps_per_epoch, loss=task.span_loss())

    if args.eval_only:
        if not args.checkpoint:
            raise ConfigError("--eval-only needs --checkpoint DIR (e.g. runs/span_extract/<run>/best)")
        trainer.restore(model, args.checkpoint)
    else:
        trainer.fit(model, train_dataset, steps_per_epoch=steps_per_epoch,
                    evaluate=lambda m: scoring.scalar_metrics(dev_eval(m)), headline="f1",
                    train_examples=len(train_features))
    if args.no_answer:  # tune the threshold on dev with the final (best) weights, then apply it to test
        dev_metrics = dev_eval(model)
        settings["null_threshold"] = run_config["null_threshold"] = dev_eval.null_threshold
        print(f"dev F1 {dev_metrics['f1']:.2f} with no-answer threshold {dev_eval.null_threshold:.3f}",
              file=sys.stderr)
    trainer.write_run_config(run_config)

    metrics = test_eval(model)
    metrics["data"] = {**read_stats, "train_windows": len(train_features),
                       "train_questions_used": len(train),
                       "train_questions_with_no_answer_in_any_window": feature_stats.no_answer_in_any_window,
                       "dev_windows": len(dev_eval.features), "test_windows": len(test_eval.features)}
    sections = scoring.report_sections(metrics)
    trainer.write_report(dataset=Path(args.test_file).parent.name, split=Path(args.test_file).stem,
                         headline="f1", metrics=metrics, markdown_sections=sections)
    if args.export:
        export(model, run_config, Path(args.output_dir) / "export")
    print(f"test EM {metrics['exact_match']:.2f}  F1 {metrics['f1']:.2f}  ({len(test)} questions)  -> "
          f"{args.output_dir}")
    return metrics


def main(argv=None) -> int:
    return run_main(lambda: run(parse_args(make_parser(), argv)))


if __name__ == "__main__":
    sys.exit(main())
