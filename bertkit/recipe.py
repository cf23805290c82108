"""The recipe contract: what a recipe folder fills in, and the one train / predict / load_run flow that drives it.

A recipe is a folder (``recipes/sentiment/``, or a copy of it anywhere under any name) whose ``task.py`` defines the
steps below with plain functions; everything around those steps (command line, reading the splits, the Trainer,
dev evaluation each epoch, reports, unlabelled test files, ``predict.py``, ``load_run``) lives here once, so a suite
runner, a multi-task trainer and a competitor's edited copy drive every recipe the same way.

``task.py`` (siblings are imported relatively: ``from . import data``):

=================================================  ==================================================================
``TASK``                                           task name (run_config.json ``task``, ``runs/<TASK>/``)
``DEFAULTS``                                       ``{"dataset": <bertkit.datasets name>, "epochs", "batch_size",
                                                   "max_len", "lr"}`` (+ optional ``warmup_ratio``, ``weight_decay``)
``HEADLINE``                                       the metric that picks the best epoch and heads the report
``HIGHER_IS_BETTER`` (optional, default True)
``HEADLINE_SCALE`` (optional, default 1.0)           the headline's full scale (100 for percentages): a joint
                                                   run averages ``HEADLINE / HEADLINE_SCALE`` over its tasks
``add_arguments(parser)``                          the recipe's own flags (an argparse group)
``check_arguments(args)`` (optional)               range checks of those flags -> ``ConfigError``
``read_examples(path, args)``                      a file -> examples, labelled or not (all or none), ``DataError``
                                                   naming file, line and field for bad input
``to_examples(records, source, args)``             ``(line, dict)`` records -> examples (``predict`` input)
``is_labelled(examples)``                          whether the examples carry gold answers
``build_head(train_examples, args, tokenizer)``    the head config: vocabularies (labels / tags / predicates), head
                                                   options, decoding thresholds; JSON, saved as run_config ``head``
``check_examples(examples, head, path)`` (opt.)    a dev/test example the head cannot score (unseen label) -> error
``encode(examples, tokenizer, head)``              training features (dicts of arrays)
``training_data(features, head, *, batch_size,     ``bertkit.batching.TrainingData``: the batches and the one
seed)``                                            definition of an epoch (``make_training_data``)
``build_model(bert_dir, head, *,                   the Keras model that trains (encoder + minimal head, masked
trainable_layers=None, encoder=None)``             logits); also what ``predict`` runs; ``encoder``: a loaded
                                                   ``load_encoder`` model used as it is (shared by several tasks)
``loss(head)`` (optional, default None)            the compile loss (None: the model computes its own)
``predict(model, tokenizer, examples, head, *,     decoded outputs, one dict per example in order, with character
batch_size)``                                      offsets into the input text and the input's ``id`` when it has one
``score(examples, predictions, head)``             metrics dict holding ``HEADLINE`` (plus nested tables)
``tune(examples, predictions, head)`` (optional)   a head with decoding thresholds tuned on dev (after training)
``needs_tuning(head)`` (optional)                  whether ``tune`` has work for this head (saves a dev pass)
``record_from_line(line, head)`` (optional)        a plain-text input line -> record (default ``{"text": line}``)
``report_sections(metrics, examples,               report.md sections ``[(title, markdown)]`` and figures
predictions, head, out_dir)``                      ``{caption: png}``
``serving(model, tokenizer, head)``                ``bertkit.export.Serving``: the raw-string ``tf.function``s
                                                   (``serving_default`` + named ones) and the trackables they capture
``export(model, tokenizer, head, path)``           a SavedModel that serves raw strings:
                                                   ``export_serving(path, model, serving(model, tokenizer, head))``
=================================================  ==================================================================

``train.py`` and ``predict.py`` of every recipe are the same few lines: ``train_main(folder, argv)`` and
``predict_main(folder, argv)``. A finished run is used with ``load_run(run_dir).predict(records)``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.machinery
import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Callable

from bertkit.cli import say
from bertkit.errors import CheckpointError, ConfigError, DataError

REQUIRED = ("TASK", "DEFAULTS", "HEADLINE", "add_arguments", "read_examples", "to_examples", "is_labelled",
            "build_head", "encode", "training_data", "build_model", "predict", "score", "report_sections", "serving",
            "export")
PREDICTIONS_FILE = "predictions.jsonl"



# ------------------------------------------------------------------------------------------------- loading a recipe
class Recipe:
    """A recipe folder's ``task`` module with the optional steps filled in by their defaults."""

    def __init__(self, task_module, folder: Path):
        missing = [name for name in REQUIRED if not hasattr(task_module, name)]
        if missing:
            raise ConfigError(f"{folder / 'task.py'}: not a recipe: it lacks {', '.join(missing)} "
                              f"(see bertkit.recipe)")
        self.module, self.folder = task_module, Path(folder)

    def __getattr__(self, name):
        return getattr(self.module, name)

    @property
    def name(self) -> str:
        return self.module.TASK

    @property
    def headline_scale(self) -> float:
        return float(getattr(self.module, "HEADLINE_SCALE", 1.0))

    @property
    def higher_is_better(self) -> bool:
        return bool(getattr(self.module, "HIGHER_IS_BETTER", True))

    def selection(self, args) -> tuple[str, bool]:
        """``(metric, higher_is_better)``: the dev metric that picks the kept epoch. ``--select-metric`` if given (a
        user-chosen metric is a score: higher is better, unless it is the headline itself), else the headline."""
        selected = getattr(args, "select_metric", None) or self.module.HEADLINE
        return selected, (self.higher_is_better if selected == self.module.HEADLINE else True)

    def loss(self, head):
        return self.module.loss(head) if hasattr(self.module, "loss") else None

    def check_arguments(self, args) -> None:
        if hasattr(self.module, "check_arguments"):
            self.module.check_arguments(args)

    def check_examples(self, examples, head, path) -> None:
        if hasattr(self.module, "check_examples"):
            self.module.check_examples(examples, head, path)

    def record_from_line(self, line: str, head: dict) -> dict:
        """A plain-text input line as a record (default ``{"text": line}``; a pair recipe may split on a tab)."""
        if hasattr(self.module, "record_from_line"):
            return self.module.record_from_line(line, head)
        return {"text": line}

    def needs_tuning(self, head) -> bool:
        """Whether ``tune`` has anything to tune for this head (``needs_tuning(head)``, default: it has a tune)."""
        if not hasattr(self.module, "tune"):
            return False
        return bool(self.module.needs_tuning(head)) if hasattr(self.module, "needs_tuning") else True

    def tune(self, examples, predictions, head) -> dict:
        return self.module.tune(examples, predictions, head) if hasattr(self.module, "tune") else head

    def __repr__(self) -> str:
        return f"Recipe({self.name!r}, {str(self.folder)!r})"


def _package_name(folder: Path) -> str:
    """A module name unique to the folder, so two recipes (or two copies of one) never share ``sys.modules``."""
    stem = re.sub(r"\W", "_", folder.name) or "recipe"
    return f"bertkit_recipe_{stem}_{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}"


def load_recipe(folder) -> Recipe:
    """Import the recipe in ``folder`` (a package: its ``task.py`` imports its siblings relatively) under a name of
    its own, wherever the folder is and whatever it is called; importing builds nothing."""
    if isinstance(folder, Recipe):
        return folder
    folder = Path(folder).resolve()
    if folder.is_file():  # a recipe's own train.py / predict.py passes its __file__
        folder = folder.parent
    if not (folder / "task.py").is_file():
        raise ConfigError(f"{folder}: not a recipe folder (no task.py)")
    name = _package_name(folder)
    if name not in sys.modules:
        init = folder / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
        else:  # a folder without __init__.py is a package all the same
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        try:
            if init.is_file():
                spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[name]
            raise
    return Recipe(importlib.import_module(f"{name}.task"), folder)


# -------------------------------------------------------------------------------------------------- command line
def _dataset_help(recipe: Recipe, split: str) -> str:
    from bertkit import datasets

    path = datasets.file(recipe.DEFAULTS["dataset"], split)
    return f"the shipped {recipe.DEFAULTS['dataset']} {split} split ({path})" if path else "none"


def make_train_parser(recipe) -> argparse.ArgumentParser:
    """The shared flags (``bertkit.cli.build_parser``) with the recipe's defaults, then the recipe's own flags."""
    from bertkit.cli import build_parser

    recipe = load_recipe(recipe)
    defaults = recipe.DEFAULTS
    optional = {k: defaults[k] for k in ("warmup_ratio", "weight_decay") if k in defaults}
    parser = build_parser(recipe.name, train_file=None, dev_file=None, test_file=None, epochs=defaults["epochs"],
                          batch_size=defaults["batch_size"], max_len=defaults["max_len"], lr=defaults["lr"],
                          description=getattr(recipe.module, "__doc__", None), **optional)
    parser.prog = f"python {recipe.folder.name}/train.py"
    for action in parser._actions:
        split = {"train_file": "train", "dev_file": "dev", "test_file": "test"}.get(action.dest)
        if split:
            action.help = f"{action.help} (default: {_dataset_help(recipe, split)}" + (
                "; with --train-file: none" if split == "test" else "") + ")"
    recipe.add_arguments(parser)
    return parser


def resolve_data_files(args, recipe: Recipe) -> None:
    """Without ``--train-file`` the shipped dataset gives every split not named; with it, ``--dev-file`` is needed
    and ``--test-file`` is optional (no test file: the report is on dev)."""
    from bertkit import datasets

    if args.train_file is None:
        name = recipe.DEFAULTS["dataset"]
        for split in ("train", "dev", "test"):
            if getattr(args, f"{split}_file") is None:
                path = datasets.file(name, split)
                setattr(args, f"{split}_file", None if path is None else str(path))
    elif args.dev_file is None:
        raise ConfigError("--train-file needs --dev-file too (the dev set picks the best epoch)")


def parse_train_args(recipe, argv=None) -> argparse.Namespace:
    from bertkit.cli import parse_args

    recipe = load_recipe(recipe)
    args = parse_args(make_train_parser(recipe), argv)
    resolve_data_files(args, recipe)
    recipe.check_arguments(args)
    return args


# ------------------------------------------------------------------------------------------------------- training
def read_split(recipe: Recipe, path, args, *, labelled: bool | None):
    """Examples of one split; ``labelled=True`` requires gold answers, None accepts both (a competition test set)."""
    examples = recipe.read_examples(path, args)
    if labelled and not recipe.is_labelled(examples):
        raise DataError(path, None, None, "these examples have no gold answers; training and dev data need them")
    return examples


class EpochPredictions:
    """One split's latest predictions, kept with the epoch whose weights made them and the head that decoded them;
    what both training loops (``train`` here and :mod:`bertkit.multitask`) use so that dev is not predicted twice.

    After each epoch a loop predicts dev through :meth:`evaluate`; once training restores the kept epoch's weights,
    :meth:`current` returns that epoch's predictions when it was the latest evaluated (the same weights, head and
    batches give the same outputs) and predicts again otherwise (an earlier epoch kept, a tuned head, a run
    resumed after its kept epoch, ``--eval-only``). ``predict(examples, head)`` is the recipe's batched prediction
    with the model."""

    def __init__(self, predict: Callable):
        self._predict = predict
        self._latest = None  # (examples, head, epoch, predictions)

    def evaluate(self, examples, head, epoch: int | None) -> list:
        """Predict ``examples`` with the model as it is after ``epoch`` and remember the outputs."""
        predictions = self._predict(examples, head)
        self._latest = (examples, head, epoch, predictions)
        return predictions

    def current(self, examples, head, restored_epoch: int | None) -> list:
        """The predictions of ``examples`` (any split) by the model holding ``restored_epoch``'s weights: the
        remembered ones when they are that evaluation's, else made now."""
        if self._latest is not None:
            seen_examples, seen_head, epoch, predictions = self._latest
            if seen_examples is examples and seen_head is head and epoch is not None and epoch == restored_epoch:
                return predictions
        return self._predict(examples, head)


def train(recipe, argv=None, *, args=None) -> dict:
    """Train ``recipe`` as its ``train.py`` does and return the test metrics (or dev metrics when the test file is
    absent or unlabelled; its predictions then go to ``OUTPUT_DIR/predictions.jsonl``)."""
    from bertkit.batching import sample_examples
    from bertkit.fileio import write_jsonl
    from bertkit.tokenization import Tokenizer
    from bertkit.training import Trainer

    recipe = load_recipe(recipe)
    args = args if args is not None else parse_train_args(recipe, argv)
    train_examples = read_split(recipe, args.train_file, args, labelled=True)
    dev = read_split(recipe, args.dev_file, args, labelled=True)
    test = read_split(recipe, args.test_file, args, labelled=None) if args.test_file else None
    tokenizer = Tokenizer.from_bert_dir(args.bert_dir, per_char=args.per_char)
    head = recipe.build_head(train_examples, args, tokenizer)
    recipe.check_examples(dev, head, args.dev_file)
    test_labelled = test is not None and recipe.is_labelled(test)
    if test is not None:
        recipe.check_examples(test, head, args.test_file)
    train_examples = sample_examples(train_examples, args.max_train_examples, args.seed)
    if args.eval_only:
        from bertkit.training import weights_path

        weights_path(args.checkpoint)  # no weights there: say so before anything starts

    trainer = Trainer(args, recipe.name)
    test_words = ("no test file" if test is None else
                  f"{len(test):,} test ({'labelled' if test_labelled else 'unlabelled: predictions only'})")
    say(f"{recipe.name}: encoder {args.bert_dir}; {len(train_examples):,} train / {len(dev):,} dev / {test_words}; "
         f"output {trainer.output_dir}")
    features = recipe.encode(train_examples, tokenizer, head)
    data = recipe.training_data(features, head, batch_size=args.batch_size, seed=args.seed)
    run_config = {"recipe": {"name": recipe.name, "folder": str(recipe.folder)}, "head": head,
                  "tokenizer": {"lowercase": tokenizer.lowercase, "per_char": bool(args.per_char)}}
    if not args.eval_only:
        trainer.check_start(data.steps_per_epoch)  # --resume options are checked before anything is written
    model = trainer.compile(lambda: recipe.build_model(args.bert_dir, head, trainable_layers=args.trainable_layers),
                            steps_per_epoch=data.steps_per_epoch, loss=recipe.loss(head),
                            example_lengths=data.example_lengths)
    if not args.eval_only:  # after compile, which refuses a --train-step the model cannot take
        trainer.write_run_config(run_config)

    def predict(examples, head):
        return recipe.predict(model, tokenizer, examples, head, batch_size=args.eval_batch_size)

    dev_predictions = EpochPredictions(predict)

    def evaluate_dev(_model) -> dict:
        return recipe.score(dev, dev_predictions.evaluate(dev, head, trainer.evaluated_epoch), head)

    if args.eval_only:
        trainer.restore(model, args.checkpoint)
    else:
        selected, higher_is_better = recipe.selection(args)
        trainer.fit(model, data, evaluate=evaluate_dev, headline=selected, higher_is_better=higher_is_better)
    restored_epoch = trainer.train_stats.get("best_epoch")
    if recipe.needs_tuning(head):
        tuned = recipe.tune(dev, dev_predictions.current(dev, head, restored_epoch), head)
        if tuned != head:
            head = run_config["head"] = tuned
            if not args.eval_only:
                trainer.write_run_config(run_config)

    out = Path(trainer.output_dir)
    if test_labelled:
        split_name, examples, split_path = "test", test, args.test_file
    else:
        split_name, examples, split_path = "dev", dev, args.dev_file
    predictions = dev_predictions.current(examples, head, restored_epoch)
    metrics = recipe.score(examples, predictions, head)
    if test is not None and not test_labelled:
        write_jsonl(out / PREDICTIONS_FILE, predict(test, head))
        metrics["predictions"] = {"file": PREDICTIONS_FILE, "inputs": len(test), "source": str(args.test_file)}
        say(f"{len(test):,} unlabelled test inputs: predictions in {out / PREDICTIONS_FILE}")
    sections, figures = recipe.report_sections(metrics, examples, predictions, head, out)
    trainer.write_report(dataset=Path(split_path).parent.name, split=Path(split_path).stem,
                         headline=recipe.HEADLINE, metrics=metrics, markdown_sections=sections, figures=figures)
    if args.export:
        path = recipe.export(model, tokenizer, head, out / "export")
        say(f"exported a SavedModel: {path}")
    value = metrics[recipe.HEADLINE]
    print(f"{split_name} {recipe.HEADLINE} {value:.4f}  -> {out}")
    return metrics


def train_main(folder, argv=None) -> int:
    """What every recipe's ``train.py`` runs (``folder``: the recipe folder or a file in it): ``train``, with one
    ``error:`` line and exit status 2 for user faults."""
    from bertkit.cli import run_main

    return run_main(lambda: train(load_recipe(folder), argv))


# ------------------------------------------------------------------------------------------------- finished runs
class Predictor:
    """A finished run: the recipe, its model with the kept weights, the tokenizer and the head config.

    ``predict(records)`` takes raw inputs (dicts with the fields the recipe reads, or plain strings as
    ``{"text": s}``) and returns the recipe's decoded outputs (character offsets into the inputs).

    ``model`` is the Keras model, or None with ``build_model`` a function of no arguments that builds it and loads
    its weights on first use (``load_run(..., lazy=True)``: inputs are read and checked before that)."""

    def __init__(self, recipe: Recipe, model, tokenizer, head: dict, args: argparse.Namespace, run_dir: Path,
                 batch_size: int = 64, *, build_model=None):
        if (model is None) == (build_model is None):
            raise TypeError("Predictor: give either model or build_model")
        self.recipe, self._model, self._build_model = recipe, model, build_model
        self.tokenizer, self.head = tokenizer, head
        self.args, self.run_dir, self.batch_size = args, Path(run_dir), batch_size

    @property
    def model(self):
        if self._model is None:
            self._model = self._build_model()
        return self._model

    def examples(self, records, source: str = "<records>"):
        numbered = [(line, self.recipe.record_from_line(r, self.head) if isinstance(r, str) else r)
                    for line, r in enumerate(records, start=1)]
        return self.to_examples(numbered, source)

    def to_examples(self, records, source: str):
        """Examples of ``(line, record)`` pairs, checked against the run's head (e.g. pairs for a pair model)."""
        examples = self.recipe.to_examples(records, source, self.args)
        self.recipe.check_examples(examples, self.head, source)
        return examples

    def predict(self, records, *, batch_size: int | None = None) -> list[dict]:
        records = list(records)
        if not records:
            return []
        return self.predict_examples(self.examples(records), batch_size=batch_size)

    def predict_examples(self, examples, *, batch_size: int | None = None) -> list[dict]:
        return self.recipe.predict(self.model, self.tokenizer, examples, self.head,
                                   batch_size=batch_size or self.batch_size)

    def export(self, path) -> Path:
        return self.recipe.export(self.model, self.tokenizer, self.head, Path(path))


def read_run(run_dir, recipe=None) -> tuple[Recipe, dict, argparse.Namespace, object]:
    """``(recipe, run_config, args, tokenizer)`` of a run directory written by ``train``, without building its
    model. ``recipe`` defaults to the recipe folder recorded in the run; a run of another task is a
    ``CheckpointError``."""
    from bertkit.tokenization import Tokenizer
    from bertkit.training import read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    for key in ("recipe", "head", "tokenizer", "args"):
        if key not in config:
            raise CheckpointError(run_dir, f"run_config.json has no {key!r}: written by an older bertkit; "
                                           f"train the run again")
    recipe = load_recipe(recipe if recipe is not None else config["recipe"]["folder"])
    if config.get("task") != recipe.name:
        raise CheckpointError(run_dir, f"a run of task {config.get('task')!r}, not {recipe.name!r}")
    tokenizer = Tokenizer.from_bert_dir(config["args"]["bert_dir"], per_char=config["tokenizer"]["per_char"],
                                        lowercase=config["tokenizer"]["lowercase"])
    return recipe, config, argparse.Namespace(**config["args"]), tokenizer


def load_run(run_dir, recipe=None, *, checkpoint=None, batch_size: int = 64, lazy: bool = False) -> Predictor:
    """A :class:`Predictor` for a run directory written by ``train`` (its kept weights, or ``checkpoint``).
    ``recipe`` defaults to the recipe folder recorded in the run; a run of another task is a ``CheckpointError``.
    ``lazy``: the model is built and its weights loaded on first use, not here (the run's files and the
    checkpoint's presence are still checked here; weights that do not fit the model are an error on first use)."""
    from bertkit.training import BEST_DIR, load_weights, weights_path

    run_dir = Path(run_dir)
    recipe, config, args, tokenizer = read_run(run_dir, recipe)
    bert_dir = args.bert_dir
    weights = checkpoint or run_dir / BEST_DIR
    weights_path(weights)  # a missing checkpoint is an error now, lazy or not

    def build():
        model = recipe.build_model(bert_dir, config["head"])
        load_weights(model, weights)
        return model

    if lazy:
        return Predictor(recipe, None, tokenizer, config["head"], args, run_dir, batch_size, build_model=build)
    return Predictor(recipe, build(), tokenizer, config["head"], args, run_dir, batch_size)


# ------------------------------------------------------------------------------------------------------ predict.py
def parse_records(text: str, source: str, fmt: str = "auto", record_from_line=None) -> list[tuple[int, dict]]:
    """``(line, record)`` of JSONL, or of plain text with one record per non-blank line (``record_from_line(line)``,
    default ``{"text": line}``). ``auto``: JSONL for a ``.jsonl`` file or when the first non-blank line starts with
    ``{``."""
    from bertkit.fileio import parse_jsonl

    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if fmt == "auto":
        fmt = "jsonl" if source.endswith(".jsonl") or (lines and lines[0][1].lstrip().startswith("{")) else "text"
    if fmt == "jsonl":
        return parse_jsonl(text, source)
    record_from_line = record_from_line or (lambda line: {"text": line})
    return [(n, record_from_line(line)) for n, line in lines]


def predict_main(folder, argv=None) -> int:
    """What every recipe's ``predict.py`` runs: a finished run on JSONL or plain-text input -> JSONL predictions."""
    from bertkit.cli import build_predict_parser, check_options, run_main

    recipe = load_recipe(folder)
    parser = build_predict_parser(f"Predict with a finished {recipe.name} run: JSONL records (the fields its "
                                  f"train.py reads; gold answers are ignored) or plain text, one input per line.",
                                  input_help="JSONL or text file", batch_size=64)
    parser.prog = f"python {recipe.folder.name}/predict.py"
    parser.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto",
                        help="input format (auto: JSONL for .jsonl files or lines starting with '{')")
    parser.add_argument("--export", type=Path, help="write a raw-string SavedModel of the run here and exit")
    parser.add_argument("--tflite", type=Path,
                        help="serve the run through this TensorFlow Lite export of its encoder (int8 or float32, as "
                             "written by: python -m bertkit.quantize RUN_DIR [--precision float32]) instead of its "
                             "Keras model")

    def body(args):
        from bertkit.fileio import check_destination, read_input, write_jsonl_output

        check_options(args, "batch_size")
        if args.tflite and (args.export or args.checkpoint):
            raise ConfigError("--tflite: serves the export's own weights; it does not go with --export or "
                              "--checkpoint")
        if args.export:  # where the results go is checked before any work
            check_destination(args.export, directory=True)
        elif str(args.output) != "-":
            check_destination(args.output)
        if args.tflite:  # the encoder is the export's (no weights to load); the head is built in a second
            from bertkit.quantize import load_tflite_run

            predictor = load_tflite_run(args.run_dir, args.tflite, recipe=recipe, batch_size=args.batch_size)
        else:  # lazy: the input is read and checked before the model is built and its weights loaded (seconds)
            predictor = load_run(args.run_dir, recipe, checkpoint=args.checkpoint, batch_size=args.batch_size,
                                 lazy=True)
        if args.export:
            say(f"exported {predictor.export(args.export)}")
            return
        text, source = read_input(args.input)
        records = parse_records(text, source, args.format,
                                lambda line: predictor.recipe.record_from_line(line, predictor.head))
        if not records:
            raise DataError(source, None, None, "no input records (empty input)")
        started = time.perf_counter()
        predictions = predictor.predict_examples(predictor.to_examples(records, source))
        write_jsonl_output(args.output, predictions)
        say(f"{len(predictions):,} predictions in {time.perf_counter() - started:.1f}s")

    return run_main(lambda: body(parser.parse_args(argv)))
