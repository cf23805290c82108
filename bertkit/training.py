"""The training loop every recipe shares: Keras ``fit`` plus dev evaluation, best weights, early stopping, resume.

A recipe builds its model and datasets and gives :class:`Trainer` a function ``evaluate(model) -> dict`` that
predicts the dev set in batches; the Trainer does the rest:

- seeds (Python, NumPy, TensorFlow; op determinism with ``--deterministic``), the ``tf.distribute`` strategy and
  the mixed-precision policy;
- AdamW with linear warmup/decay over ``epochs * steps_per_epoch`` steps;
- after every epoch: ``evaluate`` on dev, its numbers in the Keras logs as ``dev_<name>`` (so in the CSV and
  TensorBoard), the best weights by the headline metric saved atomically to ``output_dir/best/weights.h5``, early
  stopping, and the best weights restored at the end;
- ``output_dir/backup``: the whole training state (weights, optimizer, step) every ``--backup-every-steps`` steps
  and at each epoch end, from which ``--resume`` continues mid-epoch at the same data and schedule position.

Data position on resume: the training dataset is repeated and the batches already trained are skipped, so the
order is the one an uninterrupted run sees (``make_dataset`` shuffles with an explicit seed). Dropout masks are not
replayed: a resumed run with dropout matches an uninterrupted one in schedule and data, not bit for bit.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bertkit.batching import without_autotune_model
from bertkit.cli import TRAIN_STEPS, say
from bertkit.errors import CheckpointError, ConfigError

log = logging.getLogger("bertkit.training")

BEST_DIR = "best"
WEIGHTS_FILE = "weights.h5"
METRICS_CSV = "metrics.csv"
RUN_CONFIG = "run_config.json"
RESUME_STATE = "run_state.json"
LOCK_FILE = ".lock"
# What a run leaves in its directory: a directory holding any of these is a run that is never overwritten silently.
RUN_FILES = (RUN_CONFIG, "report.json", "report.md", BEST_DIR, "backup", METRICS_CSV, "predictions.jsonl",
             "eval_report.json", "eval_report.md", "tensorboard", "export", "lr_schedule.png", "loss.png")
# Options that fix the data order and the schedule: --resume refuses to continue a run with other values.
_RESUME_KEYS = ("epochs", "batch_size", "max_len", "lr", "warmup_ratio", "weight_decay", "seed", "train_file",
                "max_train_examples", "trainable_layers", "bert_dir")
_RESERVED_RUN_CONFIG_KEYS = ("task", "args", "encoder", "optimizer")



# ------------------------------------------------------------------------------------------------------ weights I/O
def save_weights(model, directory, *, info: dict | None = None) -> Path:
    """Write ``model``'s weights (no optimizer state) to ``directory/weights.h5`` atomically, with ``info.json``."""
    from bertkit.fileio import atomic_dir, atomic_write_json

    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_weights(str(tmp / WEIGHTS_FILE))
        if info is not None:
            atomic_write_json(tmp / "info.json", info)
    return directory / WEIGHTS_FILE


def weights_path(checkpoint) -> tuple[str, str]:
    """(path to load, format) for a weights directory, an .h5 file, or a TF checkpoint directory/prefix."""
    import tensorflow as tf

    path = Path(checkpoint)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return str(path / WEIGHTS_FILE), "h5"
        h5 = sorted(path.glob("*.h5"))
        if h5:
            return str(h5[0]), "h5"
        prefix = tf.train.latest_checkpoint(str(path))
        if prefix:
            return prefix, "tf"
        raise CheckpointError(path, f"no weights here (expected {WEIGHTS_FILE} or a TF checkpoint)")
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        return str(path), "h5"
    if Path(str(path) + ".index").is_file():
        return str(path), "tf"
    raise CheckpointError(path, "no such weights directory or file")


def load_weights(model, checkpoint) -> Path:
    """Load weights written by :func:`save_weights` (or a TF checkpoint) into ``model``; a checkpoint of another
    model shape raises :class:`CheckpointError` saying so, instead of a TensorFlow stack trace."""
    import tensorflow as tf

    path, kind = weights_path(checkpoint)
    try:
        if kind == "h5":
            model.load_weights(path)
        else:
            model.load_weights(path).expect_partial().assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError, KeyError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if len(first) > 300:
            first = first[:300] + "..."
        raise CheckpointError(path, f"does not fit this model (another architecture, label set or encoder "
                                    f"size?): {first}") from None
    return Path(path)


def read_run_config(run_dir, task: str | None = None) -> dict:
    """``run_dir/run_config.json`` as a dict, or a ``CheckpointError`` when the directory is not a run (or, with
    ``task``, a run of another task)."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(run_dir, f"no {RUN_CONFIG}: not a trained run directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(path, f"unreadable run config: {error}") from None
    if task is not None and config.get("task") != task:
        raise CheckpointError(run_dir, f"a run of task {config.get('task')!r}, not {task!r}")
    return config


# ----------------------------------------------------------------------------------------------------- metrics CSV
def read_metrics_csv(path) -> list[dict]:
    """Rows of ``metrics.csv`` (numbers as floats, ``epoch`` as int); empty when there is no file."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                if value in ("", None):
                    continue
                try:
                    parsed[key] = float(value)
                except ValueError:
                    parsed[key] = value
            parsed["epoch"] = int(parsed["epoch"])
            rows.append(parsed)
    return rows


def write_metrics_csv(path, rows: list[dict]) -> Path:
    """All epochs' rows rewritten atomically (an interrupted write leaves the previous complete file)."""
    from bertkit.fileio import atomic_write_text

    keys = ["epoch"] + sorted({k for row in rows for k in row} - {"epoch"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["epoch"]):
        writer.writerow({k: row.get(k, "") for k in keys})
    return atomic_write_text(path, buffer.getvalue())


def history_from_rows(rows: list[dict]) -> dict[str, list]:
    keys = sorted({k for row in rows for k in row})
    return {k: [row.get(k, math.nan) for row in rows] for k in keys}


# -------------------------------------------------------------------------------------------------------- callbacks
def scalar_metrics(result: dict) -> dict[str, float]:
    """The plain numbers of an ``evaluate`` result (nested per-class tables and lists stay out of the logs)."""
    out = {}
    for key, value in result.items():
        if isinstance(value, (bool, np.bool_)):
            continue
        if isinstance(value, (int, float, np.integer, np.floating)):
            out[str(key)] = float(value)
    return out


def _make_callbacks_module():
    """Callback classes are defined lazily so importing this module does not import TensorFlow."""
    import tensorflow as tf

    class EvaluateEachEpoch(tf.keras.callbacks.Callback):
        """After each epoch: dev evaluation into the logs, best weights kept, early stopping, CSV row."""

        def __init__(self, trainer, evaluate, headline, higher_is_better, patience, rows, examples_per_epoch,
                     interrupts, keep_last=False):
            super().__init__()
            self.trainer, self.evaluate, self.headline = trainer, evaluate, headline
            self.interrupts = interrupts  # the InterruptGuard: saving the best weights is not broken into
            self.higher_is_better, self.patience, self.rows = higher_is_better, patience, rows
            self.keep_last = keep_last  # every epoch replaces the kept weights; no early stopping
            self.examples_per_epoch = examples_per_epoch
            self.best, self.best_epoch, self.wait = None, None, 0
            for row in sorted(rows, key=lambda r: r["epoch"]):  # resumed: replay the finished epochs
                self._update_best(row.get(f"dev_{headline}"), row["epoch"])
            self._epoch_start = None

        def _better(self, value) -> bool:
            if self.keep_last:
                return True
            if value is None or not math.isfinite(value):
                return False
            if self.best is None:
                return True
            return value > self.best if self.higher_is_better else value < self.best

        def _update_best(self, value, epoch) -> bool:
            if self._better(value):
                self.best, self.best_epoch, self.wait = value, epoch, 0
                return True
            self.wait += 1
            return False

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            train_seconds = time.perf_counter() - (self._epoch_start or time.perf_counter())
            logs["lr"] = _current_lr(self.model.optimizer)
            start = time.perf_counter()
            self.trainer.evaluated_epoch = epoch + 1
            result = self.evaluate(self.model)
            self.interrupts.raise_pending()  # a signal held back while the prediction step was traced
            eval_seconds = time.perf_counter() - start
            if not isinstance(result, dict):
                raise ConfigError(f"evaluate(model) must return a dict of metrics, got {type(result).__name__}")
            scalars = scalar_metrics(result)
            if self.headline not in scalars:
                raise ConfigError(f"evaluate(model) returned no number {self.headline!r} (the metric that picks "
                                  f"the best epoch: the headline, or --select-metric); it returned {sorted(result)}")
            for key, value in scalars.items():
                logs[f"dev_{key}"] = value
            logs["train_seconds"], logs["eval_seconds"] = train_seconds, eval_seconds
            logs["examples"] = float(self.examples_per_epoch)
            value, number = scalars[self.headline], epoch + 1
            improved = self._update_best(value, number)
            if improved and self.trainer.is_chief:
                with self.interrupts.deferred():
                    save_weights(self.model, self.trainer.output_dir / BEST_DIR,
                                 info={"epoch": number, "metric": self.headline, "value": value})
            row = {"epoch": number, **{k: float(v) for k, v in logs.items() if _is_number(v)}}
            self.rows[:] = [r for r in self.rows if r["epoch"] != number] + [row]
            if self.trainer.is_chief:
                write_metrics_csv(self.trainer.output_dir / METRICS_CSV, self.rows)
            kept = "saved (--keep-weights last)" if self.keep_last else "new best, saved"
            say(f"epoch {number}: loss {logs.get('loss', math.nan):.4f}  dev {self.headline} {value:.4f}  "
                 f"({kept if improved else f'best {self.best:.4f} at epoch {self.best_epoch}'}; "
                 f"train {train_seconds:.0f}s, eval {eval_seconds:.0f}s)")
            if self.patience and self.wait >= self.patience:
                say(f"early stopping: dev {self.headline} has not improved for {self.wait} epoch(s)")
                self.model.stop_training = True

    class Backup(tf.keras.callbacks.BackupAndRestore):
        """BackupAndRestore that also backs up at each epoch end, after the dev evaluation (so a resumed run
        never skips an epoch's evaluation), instead of at the epoch's last batch."""

        def __init__(self, backup_dir, save_every_steps, steps_per_epoch, interrupts, save_every_seconds=None):
            super().__init__(str(backup_dir), save_freq=int(save_every_steps), delete_checkpoint=True)
            self.steps_per_epoch, self.interrupts = steps_per_epoch, interrupts
            self.save_every_seconds = save_every_seconds
            self._last_save = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            self.interrupts.raise_pending()  # a signal held back while the train step was traced: stop here
            if batch >= self.steps_per_epoch - 1:
                return  # the epoch-end backup covers the last batch
            due = self.save_every_seconds and time.monotonic() - self._last_save >= self.save_every_seconds
            if due and self._batches_count + 1 < self.save_freq:  # time-based: never lose more than a few minutes
                self._batches_count = 0
                self._training_state._ckpt_saved_batch.assign(batch)
                self._backup(epoch=self._current_epoch, batch=batch)
                return
            super().on_train_batch_end(batch, logs)

        def _backup(self, epoch, batch=0):
            with self.interrupts.deferred():
                super()._backup(epoch, batch)
            self._last_save = time.monotonic()

        def backup_now(self, steps_done: int) -> tuple[int, int] | None:
            """Back up the state after ``steps_done`` optimizer steps (an interrupt); returns (epoch, batch) saved,
            or None when no step was done yet (nothing to save)."""
            if steps_done <= 0 or not hasattr(self, "_training_state"):
                return None
            epoch, batch = divmod(steps_done - 1, self.steps_per_epoch)
            if batch == self.steps_per_epoch - 1:
                # The epoch's last step is done but its dev evaluation may not be: the last backup stands (resuming
                # from it redoes at most this epoch's last steps, exactly, then evaluates).
                return None
            self._training_state._ckpt_saved_epoch.assign(epoch)
            self._training_state._ckpt_saved_batch.assign(batch)
            self._backup(epoch=epoch, batch=batch)
            return epoch, batch

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= self.params.get("epochs", epoch + 2) or self.model.stop_training:
                # Training ends with this epoch (the last one, or early stopping): Keras deletes the backup when
                # fit returns, moments from now, so writing it (the weights and both Adam slots: 270 MB for
                # MiniLM-L6, 0.8-1.0 s with the deletion, benchmarks/README.md) would guard nothing. The best
                # weights are saved apart, already; an interrupt from here on finds the previous backup.
                self._batches_count = 0
                return
            self._training_state._ckpt_saved_batch.assign(self.steps_per_epoch - 1)
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)
            self._batches_count = 0

    class ProgressLines(tf.keras.callbacks.Callback):
        """Without a terminal (a log file: no progress bar) one line on stderr at most every ``every_seconds``:
        epoch, step of the epoch, training loss so far, steps/s and the time left in the epoch."""

        def __init__(self, steps_per_epoch: int, every_seconds: float = 60.0):
            super().__init__()
            self.steps_per_epoch, self.every_seconds = int(steps_per_epoch), float(every_seconds)
            self.epoch, self.started, self.last = 0, 0.0, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.started = epoch, time.perf_counter()
            self.last = self.started

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if now - self.last < self.every_seconds:
                return
            self.last = now
            done = batch + 1
            rate = done / max(now - self.started, 1e-9)
            loss = (logs or {}).get("loss")
            loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
            say(f"  epoch {self.epoch + 1}: step {done}/{self.steps_per_epoch}{loss_text}, {rate:.2f} steps/s, "
                f"~{(self.steps_per_epoch - done) / rate / 60:.1f} min left in the epoch")

    return EvaluateEachEpoch, Backup, ProgressLines


def build_loss_metrics(model) -> None:
    """Create a compiled multi-output model's per-output loss means (``<output>_loss``) now, not in the first train
    step. Keras creates them when its compiled loss first sees the outputs, inside the train step's first call, and
    a ``tf.function`` whose first call creates variables is traced twice: for a span or relation model on MiniLM-L6
    that second trace was about 6.5 s of every run's first epoch. Only what would create them is built here: a
    functional model (its nested outputs give the structure) with several outputs and compiled losses. A model
    compiled with ``loss=None`` (its own train step) is left alone: a built container would log its own, never
    updated, ``loss``."""
    import tensorflow as tf

    compiled_loss = getattr(model, "compiled_loss", None)
    outputs = getattr(model, "_nested_outputs", None)
    if (compiled_loss is None or compiled_loss.built or getattr(compiled_loss, "_user_losses", None) is None
            or outputs is None or len(tf.nest.flatten(outputs)) < 2):
        return
    compiled_loss.build(outputs)


def _current_lr(optimizer) -> float:
    """The learning rate of the next update (schedules evaluated at the optimizer's step)."""
    import tensorflow as tf

    inner = getattr(optimizer, "inner_optimizer", optimizer)  # mixed precision: LossScaleOptimizer
    lr = getattr(inner, "_learning_rate", None)
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(inner.iterations))
    return float(tf.keras.backend.get_value(inner.learning_rate))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def resume_position(backup_dir, steps_per_epoch: int) -> tuple[int, int] | None:
    """``(epoch, step)`` a run backed up in ``backup_dir`` continues at (Keras's own rule), or None."""
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(Path(backup_dir) / "chief"))
    if prefix is None:
        return None
    reader = tf.train.load_checkpoint(prefix)
    epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    if batch >= 0:
        return (epoch + 1, 0) if batch >= steps_per_epoch - 1 else (epoch, batch + 1)
    return (epoch + 1, 0) if epoch >= 0 else (0, 0)


# ---------------------------------------------------------------------------------------------- run lock, interrupts
def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``<run dir>/.lock``: at most one live run writes a run directory. A lock left by a dead process of this host
    is taken over with a word; a live one is a ``ConfigError`` naming its pid. Released by ``release()`` or at exit."""

    def __init__(self, directory):
        self.path = Path(directory) / LOCK_FILE
        self.held = False

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        from bertkit.fileio import atomic_write_json

        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder.get("host") == me["host"] and holder["pid"] == me["pid"]:
                    break  # this process ran here before (a notebook, a test): it is ours
                if holder is not None and holder.get("host") != me["host"]:
                    raise ConfigError(f"--output-dir {self.path.parent}: locked by pid {holder['pid']} on host "
                                      f"{holder.get('host')} ({self.path}); if that run is dead, delete the lock")
                if holder is not None and _process_alive(holder["pid"]):
                    raise ConfigError(f"--output-dir {self.path.parent}: another run (pid {holder['pid']}, started "
                                      f"{holder.get('started')}) is writing here; wait for it or choose another "
                                      f"--output-dir")
                who = f"pid {holder['pid']}" if holder else "an unreadable lock"
                say(f"taking over the stale lock of a dead run ({who}) in {self.path.parent}")
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            break
        else:
            raise ConfigError(f"--output-dir {self.path.parent}: could not take its lock {self.path}")
        atomic_write_json(self.path, me)
        if not self.held:
            atexit.register(self.release)
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        holder = self._holder()
        if holder is not None and holder["pid"] == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.held = False


def _tracing() -> bool:
    """Whether this thread is inside TensorFlow's tracing of a function (a train or predict step's first call)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and tf.inside_function()


class InterruptGuard:
    """While training: Ctrl-C (SIGINT) and SIGTERM raise ``KeyboardInterrupt`` in the main thread as soon as it
    runs Python again (between two steps, in a callback, in the dev evaluation), where the trainer backs up and
    stops; inside a :meth:`deferred` block (a backup or the best weights being written) the signal waits for the
    block's end, so no file write is torn half-way. While TensorFlow traces a function (a step's first call: its
    Python runs then) the signal waits too, for :meth:`raise_pending` after the call, which the training loops
    call after every step and evaluation (one still pending when the guarded block ends is raised there): a
    ``KeyboardInterrupt`` raised inside a trace unwinds through TensorFlow's trace contexts, which can then fail
    in their own way (``AssertionError: Concurrent access?`` seen on TF 2.21) and end the run without its backup.
    A watchdog thread woken by the signal itself ends the process after ``grace_seconds`` when the main thread is
    stuck in one long operation (an XLA compilation) and at once on a second signal; the last backup then stands.
    Does nothing outside the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, grace_seconds: float, message: str):
        self.grace_seconds, self.message = grace_seconds, message
        self.acknowledged = threading.Event()
        self.active = False
        self._deferring, self._pending = 0, False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        self.active = True
        threading.Thread(target=self._watch, name="bertkit-interrupt-watchdog", daemon=True).start()
        return self

    def _handle(self, signum, frame):
        if self._deferring or _tracing():
            self._pending = True
            return
        raise KeyboardInterrupt

    def raise_pending(self) -> None:
        """Raise the ``KeyboardInterrupt`` of a signal held back (in a trace or a deferred block), once, unless a
        deferred block is still open or the guard is not active."""
        if self._pending and not self._deferring and self.active:
            self._pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        """A block the signal does not break into: writing a checkpoint or the kept weights (a TensorFlow save
        broken half-way, then started again by the interrupt's own backup, is the suspected cause of a rare crash
        seen on Ctrl-C). A signal that came meanwhile raises ``KeyboardInterrupt`` when the block ends. Also usable
        when the guard is not active (it then defers nothing)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        self.raise_pending()

    def _watch(self):
        signals_seen = 0
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data or not self.active:
                return
            signals_seen += sum(1 for b in data if b in {int(s) for s in self.SIGNALS})
            if signals_seen == 1 and self.acknowledged.wait(self.grace_seconds):
                continue  # the main thread is backing up; a second signal still ends it at once
            if signals_seen >= 1 and self.active:
                os.write(2, (f"interrupted: {self.message}\n").encode())
                os._exit(130)

    def acknowledge(self):
        self.acknowledged.set()

    def __exit__(self, exc_type, *exc):
        if not self.active:
            return False
        self.active = False
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()
        self._reader.close()
        if exc_type is None and self._pending:  # a signal held back is never dropped: it stops the run here
            self._pending = False
            raise KeyboardInterrupt
        return False


def check_output_dir(out: Path, args) -> None:
    """The run directory must be a writable directory, and one holding a run is only reused on purpose:
    ``--resume`` (continue it), ``--eval-only`` (writes eval_report.*) or ``--overwrite`` (said in the log)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output-dir {out}: is a file, not a directory; choose another --output-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--output-dir {out}: cannot create it ({error.strerror or error}); choose another "
                          f"--output-dir") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--output-dir {out}: not writable; choose another --output-dir")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present or getattr(args, "resume", False) or getattr(args, "eval_only", False):
        return
    if getattr(args, "overwrite", False):
        say(f"--overwrite: replacing the run in {out} ({', '.join(present)})")
        for name in present:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return
    if "backup" in present:
        raise ConfigError(f"--output-dir {out}: holds the backup of an unfinished run: pass --resume to continue "
                          f"it, --overwrite to replace it, or choose another --output-dir")
    raise ConfigError(f"--output-dir {out}: holds a run already ({', '.join(present[:4])}); pass --overwrite to "
                      f"replace it, --resume to continue an interrupted one, or choose another --output-dir")


def encoder_summary(bert_dir) -> dict:
    """The encoder's config summary for run_config.json and reports (``{"bert_dir"}`` alone when it cannot be read:
    a report must not fail on it; ``{}`` without an encoder)."""
    if not bert_dir:
        return {}
    try:
        from bertkit.encoder import validate_bert_dir

        return validate_bert_dir(bert_dir).to_dict()
    except Exception:
        return {"bert_dir": str(bert_dir)}


# ---------------------------------------------------------------------------------------------------------- Trainer
class Trainer:
    """Seeds, strategy, mixed precision and the output directory of one run; then compile, fit, report."""

    def __init__(self, args, task: str, *, verbose="auto"):
        if verbose == "auto":  # a progress bar on a terminal; one line per epoch in a log file
            verbose = 1 if sys.stdout.isatty() else 2
        self.args, self.task, self.verbose = args, task, verbose
        if getattr(args, "train_step", "graph") == "xla" and getattr(args, "deterministic", False):
            raise ConfigError("--train-step xla with --deterministic: XLA ignores the seeds of the dropout masks, so "
                              "the run would not be reproducible; use --train-step graph")
        if not getattr(args, "output_dir", None):
            from bertkit.cli import default_output_dir

            args.output_dir = str(default_output_dir(task))
        self.output_dir = Path(args.output_dir)
        self._check_output_dir()
        self.strategy = self._make_strategy()  # first: multi-worker needs it before any other TF op
        if self.is_chief:
            self._lock = RunLock(self.output_dir)
            self._lock.acquire()
        self.seed = int(getattr(args, "seed", 0) or 0)
        self._seed_everything()
        self.policy = self._set_precision()
        self.schedule = None
        self.steps_per_epoch = None
        self.history: dict[str, list] = {}
        self.train_stats = {"epochs": 0, "steps": 0, "seconds": 0.0, "examples_per_second": None}
        self.extra: dict = {}
        # the epoch (from 1) whose weights the dev evaluation running now, or the latest one of this process, saw:
        # with train_stats["best_epoch"] after fit it tells whether that evaluation's outputs are the restored model's
        self.evaluated_epoch: int | None = None

    # -- setup -------------------------------------------------------------------------------------------------
    def _check_output_dir(self) -> None:
        check_output_dir(self.output_dir, self.args)

    def close(self) -> None:
        """Release the run directory's lock (also done at process exit)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def _make_strategy(self):
        name = getattr(self.args, "strategy", "default") or "default"
        try:
            from bertkit.distribute import make_strategy
        except ImportError:  # pragma: no cover - distribute.py is part of bertkit
            import tensorflow as tf

            if name != "default":
                raise ConfigError(f"--strategy {name}: bertkit.distribute is not available") from None
            return tf.distribute.get_strategy()
        return make_strategy(name)

    def _seed_everything(self):
        import tensorflow as tf

        random.seed(self.seed)
        np.random.seed(self.seed)
        tf.keras.utils.set_random_seed(self.seed)
        if getattr(self.args, "deterministic", False):
            tf.config.experimental.enable_op_determinism()

    def _set_precision(self) -> str:
        from bertkit.distribute import set_mixed_precision

        return set_mixed_precision(bool(getattr(self.args, "mixed_precision", False)))

    # -- compile -----------------------------------------------------------------------------------------------
    def make_schedule(self, steps_per_epoch: int):
        from bertkit.schedules import WarmupLinearDecay

        total = max(1, int(self.args.epochs) * int(steps_per_epoch))
        warmup = int(round(float(getattr(self.args, "warmup_ratio", 0.0)) * total))
        return WarmupLinearDecay(float(self.args.lr), total, min(warmup, total))

    def compile(self, build_model: Callable, *, steps_per_epoch: int, loss=None, metrics=None, lr_schedule=None,
                example_lengths=None, **compile_kwargs):
        """``build_model()`` inside the strategy scope, compiled with AdamW and ``lr_schedule`` (default: linear
        warmup over ``--warmup-ratio`` of ``epochs * steps_per_epoch`` steps, then linear decay to 0).
        ``loss=None`` suits models that compute their own loss (custom ``train_step`` or ``add_loss``).
        ``example_lengths``: the training examples' lengths (``TrainingData.example_lengths``), from which
        ``--train-step auto`` takes the padded lengths XLA compiles for and the length it probes at; without them
        auto keeps the graph step."""
        from bertkit.optim import build_optimizer, xla_updates_choice

        if steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = lr_schedule if lr_schedule is not None else self.make_schedule(steps_per_epoch)
        steps = int(self.args.epochs) * self.steps_per_epoch
        # AdamW's updates as XLA kernels repay their compilation only over a run of some length
        updates = xla_updates_choice(steps)
        with self.strategy.scope():
            model = build_model()
            optimizer = build_optimizer(self.schedule, float(getattr(self.args, "weight_decay", 0.0)),
                                        dense_gradients=self.strategy.num_replicas_in_sync > 1,
                                        jit_compile=updates["xla"])
            self.extra["optimizer_updates"] = updates
            if not updates["xla"] and not getattr(self.args, "eval_only", False):
                say(f"optimizer: AdamW updates as plain graph ops ({updates['reason']})")
            xla = self._xla_train_step(model, steps=steps, example_lengths=example_lengths)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=xla, **compile_kwargs)
            # The optimizer's slots now, not inside the first train step: a tf.function whose first call creates
            # variables is traced twice, and tracing the train step is most of a short run's start-up.
            model.optimizer.build(model.trainable_variables)
            build_loss_metrics(model)
        return model

    def _xla_train_step(self, model, *, steps: int, example_lengths=None) -> bool:
        """``--train-step``: ``graph`` runs Keras's train step as a TensorFlow graph, its matmuls on oneDNN (each
        weight's AdamW update one small XLA kernel on runs of ``XLA_UPDATES_MIN_STEPS`` steps or more: see
        ``bertkit.optim``); ``xla`` compiles the whole step with XLA, once per padded batch length; ``auto`` (the
        default) takes the faster of the two for this run on this machine (``bertkit.train_step``: a probe measured
        once per machine and workload, cached; graph for short runs and wherever xla is refused). Which is faster
        depends on the CPU (benchmarks/README.md: on a Zen 4 box the graph step trains MiniLM-L6 at 13.6 seq/s
        against 10-11 with XLA; on a Zen 5 box XLA gave 27 against 16).
        ``xla`` is refused where XLA would change what the run means: with ``--deterministic`` (XLA ignores the
        seeds of the dropout masks; refused in ``__init__``, before the run directory is touched) and with a layer
        that gives an ``xla_refusal`` (tensorflow-addons' CRF). The decision goes to ``run_config.json``."""
        choice = getattr(self.args, "train_step", "graph") or "graph"
        if choice not in TRAIN_STEPS:
            raise ConfigError(f"--train-step {choice}: expected one of {', '.join(TRAIN_STEPS)}")
        layers = model.submodules  # every layer, nested ones included (a walk of the model: taken once)
        refusing = sorted({f"{layer.name} ({type(layer).__name__}: {layer.xla_refusal})"
                           for layer in layers if getattr(layer, "xla_refusal", None)})
        if choice == "auto":
            from bertkit.layers import FirstPosition
            from bertkit.train_step import choose

            # a model on bertkit.encoder.first_token_encoder's view runs its last block for [CLS] alone: the probe
            # times that, not the whole encoder
            first_token_only = any(isinstance(layer, FirstPosition) for layer in layers)
            decision = choose(bert_dir=getattr(self.args, "bert_dir", None),
                              batch_size=int(getattr(self.args, "batch_size", 1) or 1), steps=steps,
                              example_lengths=example_lengths,
                              mixed_precision=bool(getattr(self.args, "mixed_precision", False)),
                              refusals=refusing, deterministic=bool(getattr(self.args, "deterministic", False)),
                              replicas=self.strategy.num_replicas_in_sync, encoder=self._encoder_shape(),
                              eval_only=bool(getattr(self.args, "eval_only", False)),
                              first_token_only=first_token_only)
            self.extra["train_step"] = dict(decision)
            say(f"train step: {decision['chosen']} (--train-step auto: {decision['reason']})")
            return decision.xla
        self.extra["train_step"] = {"requested": choice, "chosen": choice, "reason": "--train-step " + choice}
        if choice == "graph":
            return False
        if refusing:
            raise ConfigError(f"--train-step xla: {', '.join(refusing)}; use --train-step graph")
        say("train step: XLA-compiled (--train-step xla), compiled again for each new padded batch length")
        return True

    # -- run config --------------------------------------------------------------------------------------------
    def run_config(self, extra: dict | None = None) -> dict:
        from bertkit.cli import args_to_dict

        extra = {**self.extra, **(extra or {})}
        clash = sorted(set(extra) & set(_RESERVED_RUN_CONFIG_KEYS))
        if clash:
            raise ConfigError(f"run config: keys {clash} are written by the Trainer")
        config = {"task": self.task, "args": args_to_dict(self.args), "encoder": self._encoder_summary()}
        if self.schedule is not None:
            from bertkit.schedules import schedule_to_config

            try:
                config["optimizer"] = {"weight_decay": float(getattr(self.args, "weight_decay", 0.0)),
                                       "schedule": schedule_to_config(self.schedule)}
            except ConfigError:
                pass
        config.update(extra)
        return config

    def write_run_config(self, extra: dict | None = None) -> Path:
        """``output_dir/run_config.json`` (atomic): task, args, encoder summary, schedule, plus ``extra`` (label
        vocabularies and whatever else ``predict.py`` needs to rebuild the model)."""
        from bertkit.fileio import atomic_write_json

        config = self.run_config(extra)
        if not self.is_chief:
            return self.output_dir / RUN_CONFIG
        return atomic_write_json(self.output_dir / RUN_CONFIG, config)

    def _encoder_summary(self) -> dict:
        return encoder_summary(getattr(self.args, "bert_dir", None))

    def _encoder_shape(self) -> dict | None:
        """The encoder's config without its path (layers, sizes, activation): what its step times depend on."""
        shape = {k: v for k, v in self._encoder_summary().items() if k != "bert_dir"}
        return shape or None

    # -- fit ---------------------------------------------------------------------------------------------------
    def fit(self, model, train_data, *, evaluate: Callable, headline: str, steps_per_epoch: int | None = None,
            higher_is_better: bool = True, train_examples: int | None = None, callbacks=()) -> dict:
        """Train for ``--epochs`` epochs; returns the history (one list per metric, every epoch of the run including
        those before a resume).

        ``train_data`` is a :class:`bertkit.batching.TrainingData` (from ``make_training_data``): an epoch is then
        exactly one pass over the training set. A plain ``tf.data.Dataset`` needs ``steps_per_epoch`` (and
        ``train_examples`` for the examples/s figure) from the caller, who answers for them being one pass."""
        import tensorflow as tf

        from bertkit.batching import TrainingData

        if isinstance(train_data, TrainingData):
            if steps_per_epoch not in (None, train_data.steps_per_epoch):
                raise ConfigError(f"fit: steps_per_epoch {steps_per_epoch} but one pass over the training data is "
                                  f"{train_data.steps_per_epoch} steps")
            train_dataset, steps_per_epoch = train_data.dataset, train_data.steps_per_epoch
            train_examples = train_data.examples if train_examples is None else train_examples
        elif steps_per_epoch is None:
            raise ConfigError("fit: steps_per_epoch is needed with a plain dataset (or pass a TrainingData)")
        else:
            train_dataset = train_data
        EvaluateEachEpoch, Backup, ProgressLines = _make_callbacks_module()
        args, out = self.args, self.output_dir
        if steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        if self.steps_per_epoch is not None and steps_per_epoch != self.steps_per_epoch:
            log.warning("fit steps_per_epoch %d differs from compile's %d (the schedule uses compile's)",
                        steps_per_epoch, self.steps_per_epoch)
        backup_dir = out / "backup"
        position, state = self.check_start(steps_per_epoch)
        resume = position is not None
        if not resume and self.is_chief:
            from bertkit.fileio import atomic_write_json

            atomic_write_json(backup_dir / RESUME_STATE, state)
        if not resume and self.is_chief and (out / BEST_DIR).exists():
            shutil.rmtree(out / BEST_DIR)  # a new run in a reused directory must never restore an old run's weights
        rows = read_metrics_csv(out / METRICS_CSV) if resume else []
        skip = 0
        if position is not None:
            rows = [r for r in rows if r["epoch"] <= position[0]]
            skip = position[0] * steps_per_epoch + position[1]
            say(f"resuming {out} at epoch {position[0] + 1}, step {position[1]} ({skip} steps done)")
        if self.is_chief and self.schedule is not None and callable(self.schedule):
            from bertkit.schedules import plot_schedule

            plot_schedule(self.schedule, int(args.epochs) * steps_per_epoch, out / "lr_schedule.png")
        data = without_autotune_model(train_dataset.repeat())  # a user's own dataset too: no stall at fit's end
        if skip:
            data = data.skip(skip)  # replay the data order of an uninterrupted run

        batch_size = int(getattr(args, "batch_size", 1) or 1)
        examples_per_epoch = train_examples if train_examples is not None else steps_per_epoch * batch_size
        keep_last = getattr(args, "keep_weights", "best") == "last"
        patience = 0 if keep_last else int(getattr(args, "early_stopping_patience", 0) or 0)
        hint = f"resume with the same command plus --resume --output-dir {out}"
        guard = InterruptGuard(grace_seconds=10.0, message=f"stopped inside a long operation; the last backup in "
                                                          f"{backup_dir} stands; {hint}")
        evaluator = EvaluateEachEpoch(self, evaluate, headline, higher_is_better, patience, rows, examples_per_epoch,
                                      guard, keep_last)
        backup = Backup(backup_dir, int(state["backup_every_steps"]), steps_per_epoch, guard,
                        save_every_seconds=60.0 * float(state["backup_every_minutes"]))
        tensorboard = tf.keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False, profile_batch=0)
        # Order matters: evaluation adds dev_* to the logs before TensorBoard sees them and before the backup.
        all_callbacks = [evaluator, tensorboard, *callbacks, backup]
        if self.verbose != 1:  # no progress bar (a log file): progress lines instead
            all_callbacks.insert(0, ProgressLines(steps_per_epoch))
        epochs = int(args.epochs)
        say(f"training {epochs} epoch(s) x {steps_per_epoch} steps, batch {batch_size}, "
             f"{self.strategy.num_replicas_in_sync} replica(s), {self.policy}; dev {headline} after each epoch "
             f"(early stopping {'off' if not patience else f'after {patience} epochs without gain'}); "
             f"backup every {backup.save_freq} steps; output {out}")
        fit_start = time.perf_counter()
        with guard:
            try:
                model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=all_callbacks,
                          verbose=self.verbose)
            except KeyboardInterrupt:
                guard.acknowledge()
                steps_done = int(model.optimizer.iterations.numpy())
                # backup_now writes through Backup._backup, itself deferred: a second signal here is the watchdog's
                saved = backup.backup_now(steps_done) if self.is_chief else None
                from bertkit.errors import Interrupted

                if saved is None and resume_position(backup_dir, steps_per_epoch) is None:
                    raise Interrupted("before the first backup; nothing to resume (start the run again with "
                                      "--overwrite)") from None
                if saved is None:
                    raise Interrupted(f"after {steps_done} steps; the last backup in {backup_dir} stands; "
                                      f"{hint}") from None
                raise Interrupted(f"backed up after {steps_done} steps (epoch {saved[0] + 1}, step {saved[1] + 1} "
                                  f"of {steps_per_epoch}) in {backup_dir}; {hint}") from None
        wall = time.perf_counter() - fit_start
        shutil.rmtree(backup_dir, ignore_errors=True)  # Keras removes backup/chief only

        best = out / BEST_DIR / WEIGHTS_FILE
        if best.is_file():
            load_weights(model, best)
            which = "the last epoch's" if keep_last else "the best"
            say(f"restored {which} weights: dev {headline} {evaluator.best:.4f} at epoch {evaluator.best_epoch}")
        rows = sorted(evaluator.rows, key=lambda r: r["epoch"])
        self.history = history_from_rows(rows)
        seconds = sum(r.get("train_seconds", 0.0) for r in rows)
        examples = sum(r.get("examples", 0.0) for r in rows)
        self.train_stats = {
            "epochs": len(rows), "steps": int(model.optimizer.iterations.numpy()), "seconds": round(seconds, 2),
            "examples_per_second": round(examples / seconds, 2) if seconds > 0 else None,
            "wall_seconds_this_process": round(wall, 2), "best_epoch": evaluator.best_epoch,
            "best_dev": {"metric": headline, "value": evaluator.best}, "resumed": position is not None,
        }
        return self.history

    def check_start(self, steps_per_epoch: int) -> tuple[tuple[int, int] | None, dict]:
        """Before anything in the run directory is written: whether this run resumes (its ``(epoch, step)``) and
        the state saved beside its backup. ``--resume`` without a backup, a backup without ``--resume``, or
        ``--resume`` with options that change the data order or the schedule is a ``ConfigError``; a resumed run
        takes its backup settings from the interrupted one."""
        out, args = self.output_dir, self.args
        backup_dir = out / "backup"
        resume = bool(getattr(args, "resume", False))
        position = resume_position(backup_dir, steps_per_epoch) if backup_dir.exists() else None
        if resume and position is None:
            raise ConfigError(f"--resume: {backup_dir} holds no backup to resume from (the run finished, or it was "
                              f"stopped before its first backup)")
        if not resume and position is not None:
            raise ConfigError(f"{out} holds the backup of an unfinished run: pass --resume to continue it, "
                              f"or choose another --output-dir")
        state = self._resume_state(steps_per_epoch)
        if position is not None:
            saved = self._check_resume_state(backup_dir / RESUME_STATE, state)
            for key in ("backup_every_steps", "backup_every_minutes"):
                if saved.get(key) is not None:
                    state[key] = saved[key]
        return position, state

    def _resume_state(self, steps_per_epoch: int) -> dict:
        """What must not change between a run and its --resume (else data order or schedule would differ), and
        the backup settings a resumed run keeps."""
        state = {"steps_per_epoch": int(steps_per_epoch)}
        for key in _RESUME_KEYS:
            value = getattr(self.args, key, None)
            state[key] = str(value) if isinstance(value, Path) else value
        schedule = self.schedule if self.schedule is not None else self.make_schedule(steps_per_epoch)
        from bertkit.schedules import schedule_to_config

        try:
            state["schedule"] = schedule_to_config(schedule)
        except ConfigError:
            pass
        state["backup_every_steps"] = int(getattr(self.args, "backup_every_steps", 200) or 200)
        state["backup_every_minutes"] = float(getattr(self.args, "backup_every_minutes", 5.0) or 5.0)
        return json.loads(json.dumps(state, default=str))

    @staticmethod
    def _check_resume_state(path: Path, state: dict) -> dict:
        if not path.is_file():
            return {}  # a backup written by plain Keras: nothing to compare
        saved = json.loads(path.read_text(encoding="utf-8"))
        settings = ("backup_every_steps", "backup_every_minutes")
        changed = [key for key in sorted(set(saved) | set(state))
                   if key not in settings and saved.get(key) != state.get(key)]
        if changed:
            details = "; ".join(f"{k}: {saved.get(k)!r} then, {state.get(k)!r} now" for k in changed)
            raise ConfigError(f"--resume: options differ from the interrupted run ({details}); resume with the "
                              f"same options or start a new --output-dir")
        return saved

    @property
    def is_chief(self) -> bool:
        """Whether this process writes files (always, except the non-chief workers of multi-worker training)."""
        return bool(getattr(self.strategy.extended, "should_checkpoint", True))

    # -- eval-only ---------------------------------------------------------------------------------------------
    def restore(self, model, checkpoint_dir) -> Path:
        """Load weights for ``--eval-only --checkpoint DIR`` (a run's ``best/``, a weights file or a TF
        checkpoint); another model shape raises :class:`CheckpointError`."""
        path = load_weights(model, checkpoint_dir)
        self.train_stats = {**self.train_stats, "checkpoint": str(path)}
        say(f"loaded weights from {path}")
        return path

    # -- report ------------------------------------------------------------------------------------------------
    def write_report(self, *, dataset, split, headline, metrics: dict, markdown_sections=(), figures=None) -> Path:
        """``report.json``, ``report.md`` and per-epoch plots in the output dir; returns the report.json path.

        ``headline`` is the metric name (its value is ``metrics[headline]``) or a ``(name, value)`` pair.
        With ``--eval-only`` the files are ``eval_report.json`` / ``eval_report.md`` beside the training report.
        ``markdown_sections`` is a sequence of ``(title, markdown)`` pairs (or ready markdown strings) the recipe
        adds: per-class tables, wrong predictions. ``figures`` maps a caption to a PNG the recipe wrote."""
        from bertkit.reports import write_run_report

        name = "eval_report" if getattr(self.args, "eval_only", False) else "report"
        if not self.is_chief:  # multi-worker: the chief writes the one report
            return self.output_dir / f"{name}.json"
        return write_run_report(self, dataset=dataset, split=split, headline=headline, metrics=metrics,
                                markdown_sections=markdown_sections, figures=figures, file_stem=name)
