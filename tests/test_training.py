"""Trainer: fit with dev evaluation, best weights, early stopping, CSV/TensorBoard, exact mid-epoch resume,
restore with clear errors, models computing their own loss, run config. Tiny Keras models: seconds per test."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bertkit.batching import make_dataset
from bertkit.cli import build_parser, parse_args
from bertkit.errors import CheckpointError, ConfigError
from bertkit.training import Trainer, load_weights, read_metrics_csv, read_run_config, resume_position

STEPS = 5
BATCH = 4


def _args(tmp_path, *extra):
    parser = build_parser("toy", train_file=None, dev_file=None, test_file=None, epochs=3, batch_size=BATCH,
                          max_len=16, lr=1e-2, warmup_ratio=0.2, weight_decay=0.01)
    return parse_args(parser, ["--bert-dir", str(tmp_path / "no-bert"), "--output-dir", str(tmp_path / "run"),
                               "--seed", "7", *extra])


def _features(n=STEPS * BATCH, seed=0, length=None):
    """``n`` random examples of 3-9 tokens (or all of ``length``), labelled by the parity of their ids' sum."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens = length or int(rng.integers(3, 10))
        ids = rng.integers(1, 20, tokens)
        out.append({"token_ids": ids, "segment_ids": np.zeros(tokens, np.int32), "label": int(ids.sum() % 2)})
    return out


def _build_model(hidden=8, classes=2):
    token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
    embedded = tf.keras.layers.Embedding(20, hidden)(token_ids) + tf.keras.layers.Embedding(2, hidden)(segment_ids)
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedded)
    normed = tf.keras.layers.LayerNormalization(name="pool-Norm")(pooled)
    logits = tf.keras.layers.Dense(classes, name="classifier")(normed)
    return tf.keras.Model([token_ids, segment_ids], logits)


def _loss():
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _dataset(features=None):
    return make_dataset(features or _features(), BATCH, shuffle=True, seed=7)


class Scripted:
    """An evaluate() returning a fixed headline sequence, remembering the weights it saw each epoch."""

    def __init__(self, values):
        self.values, self.weights = list(values), []

    def __call__(self, model):
        self.weights.append([w.copy() for w in model.get_weights()])
        return {"acc": self.values[len(self.weights) - 1], "per_class": {"a": {"f1": 1.0}}}


def test_fit_keeps_and_restores_the_best_weights(tmp_path):
    trainer = Trainer(_args(tmp_path, "--early-stopping-patience", "0"), "toy", verbose=0)
    model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss(), metrics=["accuracy"])
    evaluate = Scripted([0.5, 0.9, 0.7])
    history = trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=evaluate, headline="acc")

    assert history["epoch"] == [1, 2, 3] and history["dev_acc"] == [0.5, 0.9, 0.7]
    for got, best in zip(model.get_weights(), evaluate.weights[1]):
        np.testing.assert_array_equal(got, best)
    assert not np.array_equal(evaluate.weights[1][-1], evaluate.weights[2][-1])
    out = trainer.output_dir
    assert json.loads((out / "best" / "info.json").read_text()) == {"epoch": 2, "metric": "acc", "value": 0.9}
    rows = read_metrics_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and {"loss", "accuracy", "lr", "dev_acc"} <= set(rows[0])
    assert rows[-1]["lr"] == pytest.approx(0.0)  # linear decay reached 0 after epochs * steps
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert not (out / "backup").exists()  # a finished run deletes its backup
    assert int(model.optimizer.iterations.numpy()) == 3 * STEPS
    assert trainer.train_stats["epochs"] == 3 and trainer.train_stats["steps"] == 3 * STEPS
    assert trainer.train_stats["best_epoch"] == 2 and trainer.train_stats["examples_per_second"] > 0


def test_early_stopping_and_lower_is_better(tmp_path):
    trainer = Trainer(_args(tmp_path, "--epochs", "6", "--early-stopping-patience", "2"), "toy", verbose=0)
    model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())
    evaluate = Scripted([3.0, 1.0, 2.0, 1.5, 0.5, 0.1])  # a loss-like metric: lower is better
    history = trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=evaluate, headline="acc",
                          higher_is_better=False)
    assert history["epoch"] == [1, 2, 3, 4]  # no better than 1.0 for 2 epochs
    assert trainer.train_stats["best_epoch"] == 2


def test_keep_last_weights_ignores_the_dev_metric_and_early_stopping(tmp_path):
    trainer = Trainer(_args(tmp_path, "--keep-weights", "last", "--early-stopping-patience", "1"), "toy", verbose=0)
    model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())
    evaluate = Scripted([0.9, 0.5, 0.4])  # worse every epoch: "best" would keep epoch 1 and stop after epoch 2
    history = trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=evaluate, headline="acc")
    assert history["epoch"] == [1, 2, 3] and trainer.train_stats["best_epoch"] == 3
    for got, last in zip(model.get_weights(), evaluate.weights[2]):
        np.testing.assert_array_equal(got, last)
    assert json.loads((trainer.output_dir / "best" / "info.json").read_text())["epoch"] == 3


def test_evaluate_must_return_the_headline(tmp_path):
    trainer = Trainer(_args(tmp_path, "--epochs", "1"), "toy", verbose=0)
    model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())
    with pytest.raises(ConfigError, match="returned no number 'f1'"):
        trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=lambda m: {"acc": 1.0}, headline="f1")


class Crash(tf.keras.callbacks.Callback):
    """Stops training after ``at_step`` steps: KeyboardInterrupt is Ctrl-C / SIGTERM (the Trainer backs up the
    current step), any other exception a hard crash (only the periodic backups stand)."""

    def __init__(self, at_step, error=KeyboardInterrupt):
        super().__init__()
        self.at_step, self.seen, self.error = at_step, 0, error

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_step:
            raise self.error("simulated stop")


def _run(tmp_path, name, *extra, callbacks=(), before_evaluate=None, dataset=None):
    args = _args(tmp_path, "--output-dir", str(tmp_path / name), "--backup-every-steps", "2",
                 "--early-stopping-patience", "0", *extra)
    trainer = Trainer(args, "toy", verbose=0)
    model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())

    def evaluate(m):  # deterministic
        if before_evaluate is not None:
            before_evaluate()
        return {"acc": float(np.abs(m.get_weights()[-2]).sum())}

    trainer.fit(model, _dataset() if dataset is None else dataset, steps_per_epoch=STEPS, evaluate=evaluate,
                headline="acc", callbacks=callbacks)
    return trainer, model


@pytest.mark.parametrize("stop_after_epoch", [None, 1])
def test_no_backup_is_written_at_the_epoch_that_ends_training(tmp_path, monkeypatch, stop_after_epoch):
    """Backups after batches 1 and 3 of each epoch and after each epoch's evaluation, except the epoch training
    ends with (the last, or one after which a callback stops training): Keras deletes the backup as fit returns,
    so that one would guard nothing. The run's result is unchanged, and nothing is left in backup/."""
    saved = []
    real_backup = tf.keras.callbacks.BackupAndRestore._backup

    def counted(self, epoch, batch=0):
        saved.append((epoch, batch))
        return real_backup(self, epoch, batch)

    monkeypatch.setattr(tf.keras.callbacks.BackupAndRestore, "_backup", counted)

    class StopAfter(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == stop_after_epoch:
                self.model.stop_training = True

    trainer, _ = _run(tmp_path, "run", callbacks=[StopAfter()])
    epochs = 3 if stop_after_epoch is None else stop_after_epoch + 1
    assert trainer.train_stats["epochs"] == epochs
    periodic = [(epoch, batch) for epoch in range(epochs) for batch in (1, 3)]
    epoch_ends = [(epoch, STEPS - 1) for epoch in range(epochs - 1)]
    assert sorted(saved) == sorted(periodic + epoch_ends)
    assert not (tmp_path / "run" / "backup").exists()


def test_fit_trains_on_a_dataset_without_the_autotuning_model(tmp_path, monkeypatch):
    """Whatever dataset the caller passes (here one with autotuning set on), Keras's fit gets it with tf.data's
    autotuning model off: destroying a fit-consumed iterator that runs the model's thread waited for that thread's
    timed sleep, up to 14 s at the end of a run (bertkit.batching.without_autotune_model)."""
    seen = []
    real_fit = tf.keras.Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        seen.append(x.options().autotune.enabled)
        return real_fit(self, x, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "fit", recording_fit)
    options = tf.data.Options()
    options.autotune.enabled = True
    _run(tmp_path, "run", dataset=_dataset().with_options(options))
    assert seen == [False]


# Backups every 2 steps, counted from each epoch's start, plus one after each epoch's evaluation. A hard crash after
# global step 8 (epoch 2, batch 2): last backup after batch 1 -> resume at (epoch index 1, batch 2); an interrupt
# there backs up step 8 itself -> (1, 3). Interrupt after step 10 (epoch 2's last batch, before its evaluation):
# the last periodic backup (after batch 3) stands -> resume at (1, 4), and epoch 2 is still evaluated.
@pytest.mark.parametrize("crash_at, error, position", [(8, RuntimeError, (1, 2)), (8, KeyboardInterrupt, (1, 3)),
                                                       (10, KeyboardInterrupt, (1, 4))])
def test_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path, crash_at, error, position):
    from bertkit.errors import Interrupted

    reference, reference_model = _run(tmp_path, "whole")

    with pytest.raises(Interrupted if error is KeyboardInterrupt else error):
        _run(tmp_path, "crashed", callbacks=[Crash(crash_at, error)])
    backup = tmp_path / "crashed" / "backup"
    assert backup.is_dir()
    assert resume_position(backup, STEPS) == position
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "crashed" / "metrics.csv")] == [1]

    with pytest.raises(ConfigError, match="pass --resume"):
        _run(tmp_path, "crashed")
    with pytest.raises(ConfigError, match=r"options differ from the interrupted run \(lr: 0.01 then, 0.02 now"):
        _run(tmp_path, "crashed", "--resume", "--lr", "0.02")
    resumed, resumed_model = _run(tmp_path, "crashed", "--resume")

    assert int(resumed_model.optimizer.iterations.numpy()) == 3 * STEPS
    # Same data order, same schedule position: the same final (best) weights and per-epoch numbers.
    for got, want in zip(resumed_model.get_weights(), reference_model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.history["dev_acc"], reference.history["dev_acc"], rtol=1e-5)
    np.testing.assert_allclose(resumed.history["lr"], reference.history["lr"], rtol=1e-6)
    assert resumed.train_stats["resumed"] and resumed.history["epoch"] == [1, 2, 3]
    assert not backup.exists()


def test_resume_without_backup_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no backup to resume"):
        _run(tmp_path, "fresh", "--resume")


def test_restore_and_mismatched_checkpoint(tmp_path):
    trainer, model = _run(tmp_path, "run", "--epochs", "1")
    best = trainer.output_dir / "best"
    fresh = _build_model()
    load_weights(fresh, best)
    for got, want in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)

    other = Trainer(_args(tmp_path, "--output-dir", str(tmp_path / "eval")), "toy", verbose=0)
    wider = other.compile(lambda: _build_model(hidden=16), steps_per_epoch=STEPS, loss=_loss())
    with pytest.raises(CheckpointError, match="does not fit this model"):
        other.restore(wider, best)
    more_classes = _build_model(classes=3)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_weights(more_classes, best / "weights.h5")
    with pytest.raises(CheckpointError, match="no weights here"):
        load_weights(fresh, tmp_path)
    with pytest.raises(CheckpointError, match="no such weights"):
        load_weights(fresh, tmp_path / "missing")


class OwnLoss(tf.keras.Model):
    """A model with its own train_step (like a CRF head): compiled with loss=None."""

    def train_step(self, data):
        inputs, labels = data
        with tf.GradientTape() as tape:
            logits = self(inputs, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {"loss": loss}


def test_models_computing_their_own_loss(tmp_path):
    def build():
        base = _build_model()
        return OwnLoss(base.inputs, base.outputs)

    trainer = Trainer(_args(tmp_path, "--epochs", "2", "--lr", "0.05", "--warmup-ratio", "0"), "toy", verbose=0)
    model = trainer.compile(build, steps_per_epoch=STEPS, loss=None)
    history = trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=lambda m: {"acc": 0.5},
                          headline="acc")
    assert history["loss"][1] < history["loss"][0]


def test_a_two_output_model_is_traced_once_and_logs_each_outputs_loss(tmp_path):
    """Keras creates a multi-output model's per-output loss means inside the first train step, and a tf.function
    whose first call creates variables is traced twice (a span or relation model's first epoch paid that twice);
    the Trainer creates them at compile. The per-output losses are still logged and still fall."""
    def build():
        base = _build_model()
        twice = tf.keras.layers.Dense(2, name="second")(base.layers[-2].output)
        return tf.keras.Model(base.inputs, {"classifier": base.outputs[0], "second": twice})

    features = _features()
    dataset = make_dataset(features, BATCH, shuffle=True, seed=7).map(lambda x, y: (x, {"classifier": y, "second": y}))
    trainer = Trainer(_args(tmp_path, "--epochs", "2", "--lr", "0.05", "--warmup-ratio", "0"), "toy", verbose=0)
    model = trainer.compile(build, steps_per_epoch=STEPS, loss={"classifier": _loss(), "second": _loss()})
    history = trainer.fit(model, dataset, steps_per_epoch=STEPS, evaluate=lambda m: {"acc": 0.5}, headline="acc")
    assert model.train_function.experimental_get_tracing_count() == 1
    for key in ("loss", "classifier_loss", "second_loss"):
        assert history[key][1] < history[key][0], (key, history[key])


def test_run_config_round_trip(tmp_path):
    trainer = Trainer(_args(tmp_path), "toy", verbose=0)
    trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())
    path = trainer.write_run_config({"labels": ["neg", "pos"]})
    config = read_run_config(path.parent)
    assert config["task"] == "toy" and config["labels"] == ["neg", "pos"]
    assert config["args"]["lr"] == 1e-2 and config["args"]["seed"] == 7
    assert config["optimizer"]["schedule"] == {"class": "WarmupLinearDecay", "peak_lr": 1e-2,
                                               "total_steps": 15, "warmup_steps": 3, "name": None}
    with pytest.raises(ConfigError, match="written by the Trainer"):
        trainer.write_run_config({"args": {}})
    with pytest.raises(CheckpointError, match="not a trained run"):
        read_run_config(tmp_path)


def test_seeds_make_runs_repeatable(tmp_path):
    weights = []
    for name in ("a", "b"):
        trainer = Trainer(_args(tmp_path, "--output-dir", str(tmp_path / name)), "toy", verbose=0)
        weights.append(trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss()).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def float32_after():
    yield
    tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mixed", [False, True])
def test_tiny_bert_classifier(tmp_path, tiny_bert_dir, float32_after, mixed):
    """The real encoder path: keras-bert layers, AdamW exclusions on their variables, optional mixed precision."""
    from bertkit.encoder import load_encoder
    from bertkit.optim import is_decayed

    def build():
        token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
        segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
        hidden = load_encoder(tiny_bert_dir)([token_ids, segment_ids])
        logits = tf.keras.layers.Dense(2, dtype="float32", name="classifier")(hidden[:, 0])
        return tf.keras.Model([token_ids, segment_ids], logits)

    extra = ["--mixed-precision"] if mixed else []
    trainer = Trainer(_args(tmp_path, "--epochs", "2", "--lr", "1e-3", "--bert-dir", str(tiny_bert_dir), *extra),
                      "toy", verbose=0)
    model = trainer.compile(build, steps_per_epoch=STEPS, loss=_loss())
    assert trainer.policy == ("mixed_float16" if mixed else "float32")
    names = {v.name: is_decayed(model.optimizer, v) for v in model.trainable_variables}
    assert any("-Norm/gamma" in n for n in names) and any(n.endswith("_bq:0") for n in names)
    assert all(not decayed for n, decayed in names.items() if "-Norm/" in n or n.endswith(("_bq:0", "_b1:0")))
    assert all(decayed for n, decayed in names.items() if n.endswith(("_Wq:0", "_W1:0", "kernel:0")))

    features = _features(seed=1)
    inputs = make_dataset(features, 8, target_keys=())

    def evaluate(m):
        predicted = np.concatenate([m.predict_on_batch(batch).argmax(-1) for batch in inputs])
        return {"accuracy": float(np.mean(predicted == [f["label"] for f in features]))}

    before = [w.copy() for w in model.get_weights()]
    history = trainer.fit(model, _dataset(features), steps_per_epoch=STEPS, evaluate=evaluate, headline="accuracy")
    assert np.isfinite(history["loss"]).all() and int(model.optimizer.iterations.numpy()) == 2 * STEPS
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer) == mixed
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)  # float16 compute, float32 weights
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(changed) > 0.9 * len(changed)  # (frozen nothing: nearly every weight moved)
    report = json.loads(trainer.write_report(dataset="toy", split="dev", headline="accuracy",
                                             metrics=evaluate(model)).read_text())
    assert report["encoder"]["num_hidden_layers"] == 2 and report["encoder"]["hidden_size"] == 32
    assert (tmp_path / "run" / "best" / "weights.h5").is_file()


def test_deterministic_flag_in_a_fresh_process(tmp_path):
    """--deterministic turns on TF op determinism (process-wide, hence a subprocess) and training still runs."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from tensorflow.python.framework import config
        from test_training import _args, _build_model, _dataset, _loss, STEPS
        from bertkit.training import Trainer
        import pathlib
        tmp = pathlib.Path({str(tmp_path)!r})
        assert not config.is_op_determinism_enabled()
        trainer = Trainer(_args(tmp, "--deterministic", "--epochs", "1"), "toy", verbose=0)
        assert config.is_op_determinism_enabled()
        model = trainer.compile(_build_model, steps_per_epoch=STEPS, loss=_loss())
        trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=lambda m: {{"acc": 1.0}}, headline="acc")
        print("OK", int(model.optimizer.iterations.numpy()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"OK {STEPS}"


def test_mirrored_two_cpu_replicas_with_dynamic_padding_and_resume(tmp_path):
    """Two logical CPUs (a fresh process: devices are fixed at TF start-up). Dynamic padding gives each replica
    its own sequence length; the dense-gradient AdamW keeps the all-reduce working; resume stays exact."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import pathlib, sys
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_training import _run, Crash
        tmp = pathlib.Path({str(tmp_path)!r})
        whole, whole_model = _run(tmp, "whole", "--strategy", "mirrored")
        assert whole.strategy.num_replicas_in_sync == 2
        from bertkit.errors import Interrupted
        try:
            _run(tmp, "crashed", "--strategy", "mirrored", callbacks=[Crash(8)])
        except Interrupted:
            pass
        resumed, resumed_model = _run(tmp, "crashed", "--strategy", "mirrored", "--resume")
        diff = max(float(np.abs(a - b).max()) for a, b in zip(whole_model.get_weights(), resumed_model.get_weights()))
        print("OK", int(resumed_model.optimizer.iterations.numpy()), diff)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ok, steps, diff = done.stdout.strip().splitlines()[-1].split()
    assert ok == "OK" and int(steps) == 3 * STEPS and float(diff) < 1e-6


# ------------------------------------------------------------------------------------------- run directories
def test_a_finished_run_is_never_overwritten_without_a_word(tmp_path, capsys):
    _run(tmp_path, "done")
    best = (tmp_path / "done" / "best" / "weights.h5").read_bytes()
    with pytest.raises(ConfigError, match=r"done: holds a run already .*pass --overwrite to replace it, --resume"):
        _run(tmp_path, "done")
    assert (tmp_path / "done" / "best" / "weights.h5").read_bytes() == best  # untouched
    _run(tmp_path, "done", "--overwrite")
    assert "--overwrite: replacing the run in" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--overwrite starts a new run"):
        _args(tmp_path, "--overwrite", "--resume")


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_output_dir_that_is_a_file_or_unwritable_is_a_clear_error(tmp_path, kind):
    import os

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("x")
        with pytest.raises(ConfigError, match=r"--output-dir .*out: is a file, not a directory"):
            Trainer(_args(tmp_path, "--output-dir", str(target)), "toy")
    else:
        target.mkdir()
        target.chmod(0o500)
        try:
            if os.access(target, os.W_OK):
                pytest.skip("running as a user that can write anywhere (root ignores permissions)")
            with pytest.raises(ConfigError, match=r"not writable"):
                Trainer(_args(tmp_path, "--output-dir", str(target)), "toy")
        finally:
            target.chmod(0o700)


def test_run_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path, capsys):
    import os
    import socket
    import subprocess
    import sys

    from bertkit.training import LOCK_FILE, RunLock

    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                 "started": "then"}))
        with pytest.raises(ConfigError, match=rf"another run \(pid {sleeper.pid}, started then\) is writing here"):
            RunLock(run).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = RunLock(run)
    lock.acquire()  # the holder is dead now
    assert f"taking over the stale lock of a dead run (pid {sleeper.pid})" in capsys.readouterr().err
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / LOCK_FILE).exists()


def test_resume_keeps_the_interrupted_runs_backup_settings(tmp_path):
    from bertkit.errors import Interrupted

    with pytest.raises(Interrupted):
        _run(tmp_path, "crashed", callbacks=[Crash(3)])  # _run backs up every 2 steps
    state = json.loads((tmp_path / "crashed" / "backup" / "run_state.json").read_text())
    assert state["backup_every_steps"] == 2
    trainer = Trainer(_args(tmp_path, "--output-dir", str(tmp_path / "crashed"), "--resume"), "toy", verbose=0)
    position, resumed_state = trainer.check_start(STEPS)  # typed default 200, but the run's own 2 is kept
    assert position == (0, 3) and resumed_state["backup_every_steps"] == 2


def test_ctrl_c_backs_up_and_exits_promptly_then_resume_finishes(tmp_path, capsys):
    """A real SIGINT to a training process: exit status 130 within seconds (the rest of the run would take over a
    minute: from the second step on, each sleeps 5 s), one 'interrupted:' line saying how to resume, no traceback;
    --resume then finishes the run (in this process: no second TensorFlow start-up)."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from bertkit.cli import run_main

    script = textwrap.dedent(f"""
        import pathlib, sys, time
        import tensorflow as tf
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from bertkit.cli import run_main
        import test_training as t

        class Slow(tf.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 1:
                    print("STEPPING", flush=True)
                if batch >= 1:
                    time.sleep(5)

        tmp = pathlib.Path({str(tmp_path)!r})
        sys.exit(run_main(lambda: t._run(tmp, "run", callbacks=[Slow()])))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "STEPPING"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and time.monotonic() - sent < 30
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: backed up after") and "--resume --output-dir" in last
    assert run_main(lambda: _run(tmp_path, "run", "--resume")) == 0
    assert "resuming" in capsys.readouterr().err and not (tmp_path / "run" / "backup").exists()


def test_a_signal_never_breaks_into_a_deferred_write_and_is_raised_when_it_ends():
    """A checkpoint write inside ``InterruptGuard.deferred`` runs to its end when SIGINT comes in the middle; the
    KeyboardInterrupt comes right after the block, where the trainer backs up once (not over a half-written one).
    Outside such a block the signal interrupts at once."""
    import os
    import signal

    from bertkit.training import InterruptGuard

    def busy():  # the handler runs between bytecodes: give it many chances to break in
        for _ in range(1000):
            sum(range(100))

    before = signal.getsignal(signal.SIGINT)
    steps = []
    with InterruptGuard(grace_seconds=10.0, message="test") as guard:
        with pytest.raises(KeyboardInterrupt):
            with guard.deferred():
                steps.append("write started")
                os.kill(os.getpid(), signal.SIGINT)
                busy()
                steps.append("write finished")
            steps.append("after the block")  # never reached: the interrupt is raised as the block ends
        guard.acknowledge()  # (the watchdog would end the process after grace_seconds, or at a second signal)
    assert steps == ["write started", "write finished"]
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back
    with InterruptGuard(grace_seconds=10.0, message="test") as guard:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            busy()
        guard.acknowledge()
    with guard.deferred():  # an inactive guard defers nothing and raises nothing
        pass


def _signal_while_traced(body):
    """A tf.function whose trace sends this process SIGINT, then goes on tracing ``body`` (Python work in the trace,
    where the signal handler runs)."""
    import os
    import signal

    @tf.function
    def traced(x):
        os.kill(os.getpid(), signal.SIGINT)
        return body(x)
    return traced


def test_a_signal_during_a_trace_is_raised_after_the_traced_call():
    """A KeyboardInterrupt raised inside TensorFlow's tracing breaks its trace contexts (seen on TF 2.21:
    ``AssertionError: Concurrent access?``, so the run died without its backup). While a function is traced the
    guard holds the signal back; ``raise_pending`` raises it once the call is done, and only then."""
    from bertkit.training import InterruptGuard

    def body(x):
        for _ in range(200):  # Python work inside the trace: the handler runs here
            x = x + 1.0
        return x

    with InterruptGuard(grace_seconds=10.0, message="test") as guard:
        traced = _signal_while_traced(body)
        assert float(traced(tf.constant(0.0))) == 200.0  # the trace and the call ran to their end
        with pytest.raises(KeyboardInterrupt):
            guard.raise_pending()
        guard.acknowledge()
        guard.raise_pending()  # raised once only
    with pytest.raises(KeyboardInterrupt):  # never dropped: still pending when the guarded block ends, raised there
        with InterruptGuard(grace_seconds=10.0, message="test") as guard:
            _signal_while_traced(body)(tf.constant(0.0))
            guard.acknowledge()


class _SignalOnFirstTrainTrace(tf.keras.layers.Layer):
    """Sends SIGINT while the train step is first traced (armed when training begins, so the model's own build
    does not fire it)."""
    armed = False

    def call(self, inputs):
        import os
        import signal

        if type(self).armed and tf.inside_function():
            type(self).armed = False
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))  # more Python inside the trace
        return inputs


class _Arm(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        _SignalOnFirstTrainTrace.armed = True


def test_ctrl_c_during_the_train_steps_first_trace_still_backs_up(tmp_path):
    """Ctrl-C while the train step is being traced (the first seconds of every run): the step runs to its end,
    then the trainer backs it up and stops, as at any other step."""
    from bertkit.errors import Interrupted

    def build():
        token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
        segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
        embedded = _SignalOnFirstTrainTrace()(tf.keras.layers.Embedding(20, 8)(token_ids))
        embedded = embedded + tf.keras.layers.Embedding(2, 8)(segment_ids)
        pooled = tf.keras.layers.GlobalAveragePooling1D()(embedded)
        return tf.keras.Model([token_ids, segment_ids], tf.keras.layers.Dense(2)(pooled))

    args = _args(tmp_path, "--output-dir", str(tmp_path / "run"), "--backup-every-steps", "2",
                 "--train-step", "graph")
    trainer = Trainer(args, "toy", verbose=0)
    model = trainer.compile(build, steps_per_epoch=STEPS, loss=_loss())
    with pytest.raises(Interrupted, match="backed up after 1 steps"):
        trainer.fit(model, _dataset(), steps_per_epoch=STEPS, evaluate=lambda m: {"acc": 0.0}, headline="acc",
                    callbacks=[_Arm()])
    assert resume_position(tmp_path / "run" / "backup", STEPS) == (0, 1)


# ------------------------------------------------------------------------------------- SIGKILL, then --resume
_KILL_SCRIPT = """
import os, pathlib, signal, sys
import tensorflow as tf
sys.path.insert(0, {tests!r})
import test_training as t
from bertkit.cli import run_main

tmp, kill = pathlib.Path({tmp!r}), sys.argv[1]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

callbacks, before_evaluate = [], None
if kill.startswith("step:"):
    class KillAt(tf.keras.callbacks.Callback):
        seen = 0
        def on_train_batch_end(self, batch, logs=None):
            KillAt.seen += 1
            if KillAt.seen == int(kill[5:]):
                die()
    callbacks.append(KillAt())
elif kill.startswith("eval:"):
    calls = [0]
    def before_evaluate():
        calls[0] += 1
        if calls[0] == int(kill[5:]):
            die()
elif kill.startswith("backup:"):
    saves = [0]
    real_save = tf.train.CheckpointManager.save
    def torn_save(self, *args, **kwargs):
        saves[0] += 1
        if saves[0] == int(kill[7:]):
            self._checkpoint.write(str(tmp / "crashed" / "backup" / "torn"))  # data written, index never updated
            die()
        return real_save(self, *args, **kwargs)
    tf.train.CheckpointManager.save = torn_save

sys.exit(run_main(lambda: t._run(tmp, "crashed", callbacks=callbacks, before_evaluate=before_evaluate)))
"""


def _outcome(trainer, model) -> dict:
    return {"weights": model.get_weights(), "steps": int(model.optimizer.iterations.numpy()),
            "dev": np.array(trainer.history["dev_acc"])}


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The reference for the SIGKILL cases: the same seed trained without interruption (once for all three, in
    this process)."""
    return _outcome(*_run(tmp_path_factory.mktemp("uninterrupted"), "whole"))


@pytest.mark.parametrize("kill", ["step:7", "eval:2", "backup:4"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, kill, uninterrupted_run, capsys):
    """SIGKILL mid-epoch (after step 7), during epoch 2's dev evaluation, and in the middle of writing a backup
    (checkpoint data written, index not): --resume from the last complete backup gives the same final weights,
    step count and per-epoch dev numbers as an uninterrupted run of the same seed, to float equality (the toy model
    has no dropout; tf.data order is seeded and replayed). The killed run is a process of its own; the resumed one
    runs in this process."""
    import subprocess
    import sys
    from pathlib import Path

    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    killed = subprocess.run([sys.executable, "-c", script, kill], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    capsys.readouterr()
    resumed = _outcome(*_run(tmp_path, "crashed", "--resume"))
    assert "resuming" in capsys.readouterr().err
    a, b = uninterrupted_run, resumed
    assert a["steps"] == b["steps"] == 3 * STEPS
    np.testing.assert_allclose(b["dev"], a["dev"], rtol=1e-6)
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(wb, wa, rtol=1e-6, atol=1e-7)


def test_progress_lines_report_step_loss_and_time_left_without_a_terminal(capsys):
    """In a log file (no progress bar) the Trainer adds ProgressLines: one stderr line per interval, naming the epoch,
    the step of the epoch, the loss and the time left."""
    from bertkit.training import _make_callbacks_module

    _, _, ProgressLines = _make_callbacks_module()
    quiet = ProgressLines(steps_per_epoch=10, every_seconds=3600.0)
    quiet.on_epoch_begin(0)
    quiet.on_train_batch_end(0, {"loss": 1.0})
    assert capsys.readouterr().err == ""  # within the interval: nothing
    chatty = ProgressLines(steps_per_epoch=10, every_seconds=0.0)
    chatty.on_epoch_begin(1)
    chatty.on_train_batch_end(3, {"loss": 0.25})
    err = capsys.readouterr().err
    assert "epoch 2: step 4/10, loss 0.2500" in err and "min left in the epoch" in err


def test_train_step_graph_runs_a_plain_graph_and_xla_compiles_the_whole_step(tmp_path, tiny_bert_dir):
    """--train-step graph runs Keras's train step as a plain graph; xla compiles the whole step (the tiny BERT trains
    under it: finite loss, weights moved, the same number of steps). One padded length: one compilation. (auto, the
    default, chooses between the two: tests/test_train_step.py.)"""
    from bertkit.encoder import load_encoder

    def build():
        token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
        segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
        hidden = load_encoder(tiny_bert_dir)([token_ids, segment_ids])
        return tf.keras.Model([token_ids, segment_ids], tf.keras.layers.Dense(2, name="classifier")(hidden[:, 0]))

    for choice in ("graph", "xla"):
        trainer = Trainer(_args(tmp_path / choice, "--epochs", "1", "--train-step", choice), "toy", verbose=0)
        model = trainer.compile(build, steps_per_epoch=STEPS, loss=_loss())
        assert bool(model.jit_compile) == (choice == "xla")
        before = [w.copy() for w in model.get_weights()]
        history = trainer.fit(model, _dataset(_features(length=8)), steps_per_epoch=STEPS,
                              evaluate=lambda m: {"accuracy": 0.5}, headline="accuracy")
        assert np.isfinite(history["loss"]).all() and int(model.optimizer.iterations.numpy()) == STEPS
        assert sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())) > len(before) // 2
        trainer.close()


def test_train_step_xla_is_refused_where_it_would_change_the_run(tmp_path):
    """With --deterministic (XLA ignores the dropout masks' seeds) before the run directory is touched; with a layer
    that cannot compile (tensorflow-addons' CRF), naming the layer and what to do."""
    from bertkit.crf import CRF, tfa_available

    with pytest.raises(ConfigError, match="--deterministic"):
        Trainer(_args(tmp_path, "--train-step", "xla", "--deterministic"), "toy", verbose=0)
    assert not (tmp_path / "run").exists()

    class Tagger(tf.keras.Model):  # a CRF tagger's parts (its loss and decoding do not matter here)
        def __init__(self, backend):
            super().__init__()
            self.emissions = tf.keras.layers.Embedding(20, 3)
            self.crf = CRF(3, backend=backend, name="crf")

        def call(self, inputs):
            return self.emissions(inputs[0])

    def tagger(backend):
        return lambda: Tagger(backend)

    trainer = Trainer(_args(tmp_path / "pure", "--train-step", "xla"), "toy", verbose=0)
    assert trainer.compile(tagger("pure"), steps_per_epoch=STEPS, loss=_loss()).jit_compile
    trainer.close()
    if not tfa_available():
        pytest.skip("tensorflow-addons is not installed on this stack: its CRF cannot be chosen")
    trainer = Trainer(_args(tmp_path / "tfa", "--train-step", "xla"), "toy", verbose=0)
    with pytest.raises(ConfigError, match=r"crf \(CRF: tensorflow-addons.*BERTKIT_CRF=pure.*--train-step graph"):
        trainer.compile(tagger("tfa"), steps_per_epoch=STEPS, loss=_loss())
    trainer.close()
