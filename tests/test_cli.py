"""The shared train.py command line: defaults, --config merging and its errors, derived paths."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.cli import args_to_dict, build_parser, build_predict_parser, check_options, parse_args, run_main
from bertkit.errors import ConfigError, DataError


def _parser():
    parser = build_parser("sentiment", train_file="corpus/train.tsv", dev_file="corpus/dev.tsv",
                          test_file=None, epochs=3, batch_size=32, max_len=128, lr=5e-5)
    parser.add_argument("--pooling", choices=["cls", "mean"], default="cls", help="sentence vector")
    return parser


def _parse(argv, tmp_path):
    return parse_args(_parser(), ["--bert-dir", str(tmp_path / "bert")] + argv)


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _parse([], tmp_path)
    assert (args.epochs, args.batch_size, args.max_len, args.lr) == (3, 32, 128, 5e-5)
    assert (args.warmup_ratio, args.weight_decay, args.seed) == (0.1, 0.01, 42)
    assert args.train_file == "corpus/train.tsv" and args.test_file is None
    assert args.strategy == "default" and not args.mixed_precision and not args.resume
    assert args.trainable_layers is None and args.max_train_examples is None
    assert args.task == "sentiment" and args.pooling == "cls"
    output = Path(args.output_dir)
    assert output.parent == Path("runs/sentiment") and len(output.name) == len("20260101-120000")


def test_help_lists_every_shared_flag_with_defaults(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--bert-dir", "--train-file", "--dev-file", "--test-file", "--output-dir", "--epochs",
                 "--batch-size", "--max-len", "--lr", "--warmup-ratio", "--weight-decay", "--seed",
                 "--trainable-layers", "--max-train-examples", "--config", "--resume", "--eval-only",
                 "--checkpoint", "--strategy", "--mixed-precision", "--deterministic",
                 "--early-stopping-patience", "--backup-every-steps"):
        assert flag in text, flag
    assert "(default: 3)" in text and "(default: 5e-05)" in text and "(default: corpus/train.tsv)" in text
    squeezed = "".join(text.split())  # argparse wraps lines at hyphens too
    assert "all-MiniLM-L6-v2(thedefault)" in squeezed and "runs/sentiment/<YYYYmmdd-HHMMSS>" in squeezed
    assert "m3e-small(Chinese" in squeezed and "non-commercial" in squeezed


def test_config_merges_and_command_line_wins(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": 5, "batch-size": 8, "lr": "3e-5", "mixed_precision": True,
                                  "pooling": "mean", "max_train_examples": 100.0}))
    args = _parse(["--config", str(config), "--epochs", "2", "--output-dir", str(tmp_path / "run")], tmp_path)
    assert args.epochs == 2  # typed flag wins
    assert args.batch_size == 8 and args.lr == 3e-5 and args.mixed_precision is True
    assert args.pooling == "mean" and args.max_train_examples == 100
    assert args.output_dir == str(tmp_path / "run")


def test_config_equals_form_also_wins(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": 5}))
    assert _parse(["--config", str(config), "--epochs=4"], tmp_path).epochs == 4


@pytest.mark.parametrize("config, words", [
    ({"epoch": 5}, "unknown key 'epoch'"),
    ({"epochs": "many"}, "--epochs must be a int, got 'many'"),
    ({"epochs": 2.5}, "--epochs must be a int"),
    ({"epochs": True}, "--epochs must be a int"),
    ({"resume": "yes"}, "--resume must be true or false"),
    ({"strategy": "gpu"}, "--strategy must be one of default, mirrored"),
    ({"lr": [1, 2]}, "--lr must be a single value"),
    ({"warmup_ratio": 1.5}, "--warmup-ratio must be between 0 and 1"),
    ({"config": "other.json"}, "cannot include another"),
])
def test_bad_config_names_the_key(tmp_path, config, words):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as info:
        _parse(["--config", str(path)], tmp_path)
    assert str(path) in str(info.value) or words.startswith("--")


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        _parse(["--config", str(tmp_path / "missing.json")], tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 3,\n oops}')
    with pytest.raises(ConfigError, match=r"bad.json:2: invalid JSON"):
        _parse(["--config", str(bad)], tmp_path)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        _parse(["--config", str(bad)], tmp_path)


@pytest.mark.parametrize("argv, words", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--max-len", "1000"], "--max-len must be between 2 and 512"),
    (["--eval-only"], "--eval-only needs --checkpoint DIR .* or the --output-dir"),
    (["--checkpoint", "x"], "only used with --eval-only"),
])
def test_bad_values_from_command_line(tmp_path, argv, words):
    with pytest.raises(ConfigError, match=words):
        _parse(argv, tmp_path)


def test_eval_only_defaults_to_the_runs_best_weights(tmp_path):
    args = _parse(["--eval-only", "--output-dir", str(tmp_path / "run")], tmp_path)
    assert args.checkpoint == str(tmp_path / "run" / "best")
    assert _parse(["--eval-only", "--checkpoint", "w"], tmp_path).checkpoint == "w"


def test_bert_dir_default_is_resolved_lazily(tmp_path, monkeypatch):
    import bertkit.encoder

    calls = []
    monkeypatch.setattr(bertkit.encoder, "default_bert_dir", lambda: calls.append(1) or tmp_path / "default")
    assert parse_args(_parser(), ["--output-dir", str(tmp_path)]).bert_dir == str(tmp_path / "default")
    assert parse_args(_parser(), ["--output-dir", str(tmp_path), "--bert-dir", "mine"]).bert_dir == "mine"
    assert calls == [1]


def test_resume_finds_latest_run_with_backup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no run of 'sentiment' with a backup"):
        _parse(["--resume"], tmp_path)
    for name in ("20260101-000000", "20260102-000000", "20260103-000000"):
        (tmp_path / "runs/sentiment" / name).mkdir(parents=True)
    (tmp_path / "runs/sentiment/20260102-000000/backup/chief").mkdir(parents=True)
    (tmp_path / "runs/sentiment/20260103-000000/backup").mkdir()  # a finished run's leftover: not resumable
    assert _parse(["--resume"], tmp_path).output_dir == str(Path("runs/sentiment/20260102-000000"))


def test_args_to_dict_is_json(tmp_path):
    args = _parse(["--output-dir", str(tmp_path)], tmp_path)
    args.extra_path = tmp_path
    data = json.loads(json.dumps(args_to_dict(args)))
    assert data["epochs"] == 3 and data["extra_path"] == str(tmp_path)


def test_run_main_turns_bertkit_errors_into_one_line_and_status_2(capsys):
    def bad(path):
        raise DataError(path, 3, "label", "missing")

    assert run_main(bad, "x.jsonl") == 2
    assert capsys.readouterr().err == "error: x.jsonl:3: field 'label': missing\n"
    assert run_main(lambda: None) == 0
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: keep its traceback
        run_main(lambda: 1 / 0)

    def unreadable():
        raise PermissionError(13, "Permission denied", "out/train.jsonl")

    assert run_main(unreadable, also=(OSError,)) == 2  # a converter's paths are the user's to fix
    assert capsys.readouterr().err == "error: [Errno 13] Permission denied: 'out/train.jsonl'\n"
    with pytest.raises(PermissionError):
        run_main(unreadable)


def test_predict_parser_shared_options(tmp_path):
    parser = build_predict_parser("doc", input_help="text file", batch_size=16)
    args = parser.parse_args(["--run-dir", str(tmp_path)])
    assert (args.input, args.output, args.batch_size, args.checkpoint) == ("-", "-", 16, None)
    assert args.run_dir == tmp_path
    args = parser.parse_args(["--run-dir", "r", "--batch-size", "0"])
    with pytest.raises(ConfigError, match="--batch-size must be at least 1, got 0"):
        check_options(args, "batch_size")


@pytest.mark.parametrize("status, code", [("3", 3), ("None", 0), ("0", 0)])
def test_exit_process_runs_exit_handlers_and_delivers_output(status, code):
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('handler ran', flush=True))\n"
              "from bertkit.cli import exit_process\n"
              "print('buffered line')\n"  # a pipe: block-buffered, still in the buffer when exit_process is called
              "sys.stderr.write('error line')\n"
              f"exit_process({status})\n"
              "print('never printed')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == code
    assert done.stdout.splitlines() == ["buffered line", "handler ran"]
    assert done.stderr.endswith("error line")


def test_exit_process_with_a_message_exits_as_sys_exit_does():
    script = "from bertkit.cli import exit_process\nexit_process('error: no such file')\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (1, "error: no such file")


def test_exit_process_under_a_profiler_exits_normally_so_the_profile_is_written(tmp_path):
    script = tmp_path / "command.py"
    script.write_text("from bertkit.cli import exit_process\nexit_process(4)\n", encoding="utf-8")
    profile = tmp_path / "out.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), str(script)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # cProfile's command line swallows SystemExit's status
    assert profile.is_file() and profile.stat().st_size > 0  # os._exit would have ended it before the profile
