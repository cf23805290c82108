"""Joint multi-task fine-tuning: ONE shared encoder trained with the heads of several recipes.

    python -m bertkit.multitask recipes/sentiment recipes/sequence_labeling          # default data of each
    python -m bertkit.multitask --config joint.json --sampler temperature --temperature 2
    python -m bertkit.multitask --config joint.json --resume --output-dir runs/multitask/20261202-140000

Every task comes in through the recipe contract (``bertkit.recipe``), by folder, so a recipe copied into a user's
project can join: its ``read_examples`` / ``build_head`` / ``encode`` / ``training_data`` give the batches, its
``build_model(bert_dir, head, encoder=shared)`` puts its head (with its own masked logits and loss) on the one shared
encoder instance, its ``predict`` / ``score`` evaluate it, its ``serving`` step exports it. This module knows no task.

Training. A batch holds one task (shapes differ between tasks). One joint epoch is ``S = sum of the tasks' batches
per pass`` steps; the sampler fixes each task's share of them (``epoch_quotas``) and a seeded order
(``epoch_order``):

- ``proportional``: ``p_i = n_i / sum n`` (``n``: training examples);
- ``temperature``: ``p_i ∝ n_i^(1/T)`` (``--temperature T``; T=1 is proportional, large T tends to uniform);
- ``round_robin``: every task in turn, ``p_i = 1/k``.

Task ``i`` gets ``round(S * p_i)`` batches per epoch (largest remainders, so they sum to ``S``), drawn in a random
order without replacement (the frequencies are the formula's exactly, with less variance than drawing each step);
a task whose share exceeds one pass of its data simply starts its next pass. Each task's loss is multiplied by its
loss weight (``--loss-weights name=w``, or ``"weight"`` in the config); one AdamW and one warmup/linear-decay schedule
run over the total step count ``epochs * S``.

After every epoch every task is evaluated on its dev set; the kept checkpoint is the epoch with the highest MEAN of
the tasks' normalised dev headlines (``value / HEADLINE_SCALE``, or ``1 - value / HEADLINE_SCALE`` for a metric where
lower is better; the scale is 1 for 0-1 metrics and 100 for SQuAD-style percentages); a task whose ``args`` name
``--select-metric M`` counts its dev ``M`` instead (a score: higher is better). The rule is stated in the
report. ``--resume`` continues an interrupted run at the same step, task order, data position and schedule.

Comparison. ``--baselines train`` (default) then trains each task alone through the same loop on the same per-task
budget (the same number of batches of that task, so the same examples seen in the same order, the same seed and
schedule shape), and the report puts joint and alone side by side.

Output (``--output-dir``, default ``runs/multitask/<time>``): ``report.md`` / ``report.json`` / ``metrics.csv``
of the joint run; ``<task>/`` per task (``run_config.json``, ``best/weights.h5``, ``report.md``) that
``bertkit.recipe.load_run`` and each recipe's ``predict.py`` read like a single-task run; ``baselines/<task>/`` the
same for the runs alone; with ``--export``, ``export/``: ONE SavedModel holding the shared encoder once, with the
signatures ``<task>`` (each task's ``serving_default``: raw strings in) and ``<task>_<name>`` for its others.

A config (``--config``) is ``{"tasks": [{"folder": "recipes/sentiment", "name": "mrpc", "train_file": ...,
"dev_file": ..., "test_file": ..., "args": ["--max-len", "128"], "weight": 1.0}, ...]}``; paths relative to the
config file. ``args`` are the recipe's own flags and its data flags (``--batch-size``, ``--max-len``,
``--max-train-examples``, the recipe's options); the flags of the joint run (encoder, epochs, learning rate, seed,
output) are given once, on the command line.
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertkit.cli import say
from bertkit.errors import ConfigError
from bertkit.recipe import EpochPredictions

SAMPLERS = ("proportional", "temperature", "round_robin")
TASK_KEY = "multitask"
STATE_FILE = "multitask_state.json"
# Flags that belong to the joint run: a task's own args may not set them (one encoder, one schedule, one output).
JOINT_FLAGS = ("--bert-dir", "--output-dir", "--epochs", "--lr", "--warmup-ratio", "--weight-decay", "--seed",
               "--resume", "--overwrite", "--eval-only", "--checkpoint", "--strategy", "--mixed-precision",
               "--per-char", "--export", "--backup-every-steps", "--backup-every-minutes", "--early-stopping-patience",
               "--keep-weights", "--deterministic", "--trainable-layers", "--config", "--eval-batch-size",
               "--train-step")
CONFIG_KEYS = ("folder", "name", "train_file", "dev_file", "test_file", "args", "weight")


# ------------------------------------------------------------------------------------------------------- samplers
def sampling_probabilities(sampler: str, sizes, temperature: float = 1.0) -> np.ndarray:
    """The probability of each task under ``sampler``: ``sizes`` are the tasks' training examples."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim != 1 or len(sizes) == 0 or (sizes <= 0).any():
        raise ConfigError(f"sampler: every task needs training examples, got sizes {sizes.tolist()}")
    if sampler == "proportional":
        weights = sizes
    elif sampler == "temperature":
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"--temperature must be a positive number, got {temperature}")
        weights = sizes ** (1.0 / temperature)
    elif sampler == "round_robin":
        weights = np.ones_like(sizes)
    else:
        raise ConfigError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    return weights / weights.sum()


def epoch_quotas(probabilities, steps: int) -> list[int]:
    """Batches of each task in an epoch of ``steps``: ``steps * p`` rounded by largest remainders (sum = ``steps``),
    and at least one batch per task (taken from the largest share) so that no task goes untrained."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if steps < len(probabilities):
        raise ConfigError(f"an epoch of {steps} steps cannot hold a batch of each of {len(probabilities)} tasks")
    exact = probabilities * steps
    quotas = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quotas), kind="stable")[:steps - int(quotas.sum())]:
        quotas[i] += 1
    for i in np.flatnonzero(quotas == 0):
        quotas[int(np.argmax(quotas))] -= 1
        quotas[i] = 1
    return quotas.tolist()


def epoch_order(sampler: str, quotas, seed: int, epoch: int) -> np.ndarray:
    """The task index of every step of one epoch: the tasks in turn for ``round_robin`` (a task whose quota is spent
    drops out), else the quotas in a random order seeded by ``(seed, epoch)`` (a resumed run replays it)."""
    quotas = [int(q) for q in quotas]
    if sampler == "round_robin":
        left, order = list(quotas), []
        while any(left):
            for i, n in enumerate(left):
                if n:
                    order.append(i)
                    left[i] -= 1
        return np.asarray(order, dtype=np.int64)
    order = np.repeat(np.arange(len(quotas)), quotas)
    np.random.default_rng([int(seed), int(epoch)]).shuffle(order)
    return order


# ---------------------------------------------------------------------------------------------------------- tasks
@dataclass
class TaskData:
    """One task of a joint run, everything but its model: the recipe, its options, its splits, head and features."""

    name: str
    recipe: object
    args: argparse.Namespace
    weight: float
    train: list
    dev: list
    test: list | None
    head: dict
    features: list
    batch_size: int
    data: object = None  # its bertkit.batching.TrainingData (made once, reused by the joint run and the run alone)

    @property
    def steps_per_pass(self) -> int:
        return self.data.steps_per_epoch

    @property
    def test_labelled(self) -> bool:
        return self.test is not None and self.recipe.is_labelled(self.test)

    @property
    def dev_metric(self) -> str:
        """The task's dev metric in the checkpoint rule: its ``--select-metric``, else the recipe's headline."""
        return self.recipe.selection(self.args)[0]

    def normalised(self, value: float) -> float:
        """The dev metric on a 0-1 scale where higher is better (the checkpoint rule averages these); a recipe's
        metrics share its ``headline_scale``."""
        scale = self.recipe.headline_scale
        higher = self.recipe.selection(self.args)[1]
        return value / scale if higher else 1.0 - value / scale


def read_task_config(path) -> list[dict]:
    """The task entries of a multi-task config file (see the module docstring), paths made absolute."""
    from bertkit.suite import read_recipe_entries

    return read_recipe_entries(path, key="tasks", extra_keys={"name": str, "weight": (int, float)})


def _task_names(entries, recipes) -> list[str]:
    """``name`` from the config, else the recipe's TASK, else ``<TASK>_<dataset>`` when two tasks share a recipe."""
    def dataset(entry, recipe):
        train = entry.get("train_file")
        return Path(train).parent.name if train else recipe.DEFAULTS["dataset"]

    names = [entry.get("name") or recipe.TASK for entry, recipe in zip(entries, recipes)]
    for i, (entry, recipe) in enumerate(zip(entries, recipes)):
        if not entry.get("name") and names.count(names[i]) > 1:
            names[i] = f"{recipe.TASK}_{dataset(entry, recipe)}"
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two tasks are both called {name!r}: give each a \"name\" in the config")
        if not name.replace("_", "").replace("-", "").isalnum() or not name[0].isalpha():
            raise ConfigError(f"task name {name!r}: use letters, digits, '_' or '-', starting with a letter "
                              f"(it names a folder and a serving signature)")
    return [name.replace("-", "_") for name in names]


def _task_argv(entry: dict, joint, name: str, out: Path) -> list[str]:
    for token in entry["args"]:
        if token.split("=", 1)[0] in JOINT_FLAGS:
            raise ConfigError(f"task {name}: {token.split('=', 1)[0]} is an option of the joint run; give it once on "
                              f"the multitask command line, not in the task's args")
    argv = list(entry["args"])
    for split in ("train", "dev", "test"):
        if entry.get(f"{split}_file") is not None:
            argv += [f"--{split}-file", str(entry[f"{split}_file"])]
    argv += ["--bert-dir", str(joint.bert_dir), "--output-dir", str(out / name), "--epochs", str(joint.epochs),
             "--lr", str(joint.lr), "--warmup-ratio", str(joint.warmup_ratio), "--weight-decay",
             str(joint.weight_decay), "--seed", str(joint.seed), "--eval-batch-size", str(joint.eval_batch_size)]
    if joint.per_char:
        argv.append("--per-char")
    return argv


def prepare_tasks(entries: list[dict], joint, tokenizer, out: Path) -> list[TaskData]:
    """Read, check and encode every task's data through its recipe (no TensorFlow model is built here)."""
    from bertkit.batching import sample_examples
    from bertkit.recipe import load_recipe, parse_train_args, read_split

    recipes = [load_recipe(entry["folder"]) for entry in entries]
    names = _task_names(entries, recipes)
    weights = _loss_weights(joint.loss_weights, names, entries)
    tasks = []
    for entry, recipe, name in zip(entries, recipes, names):
        args = parse_train_args(recipe, _task_argv(entry, joint, name, out))
        train = read_split(recipe, args.train_file, args, labelled=True)
        dev = read_split(recipe, args.dev_file, args, labelled=True)
        test = read_split(recipe, args.test_file, args, labelled=None) if args.test_file else None
        head = recipe.build_head(train, args, tokenizer)
        recipe.check_examples(dev, head, args.dev_file)
        if test is not None:
            recipe.check_examples(test, head, args.test_file)
        train = sample_examples(train, args.max_train_examples, args.seed)
        say(f"{name} ({recipe.folder}): {len(train):,} train / {len(dev):,} dev / "
            f"{'no' if test is None else f'{len(test):,}'} test; batch {args.batch_size}, loss weight "
            f"{weights[name]:g}")
        features = recipe.encode(train, tokenizer, head)
        tasks.append(TaskData(name, recipe, args, weights[name], train, dev, test, head, features,
                              int(args.batch_size)))
    return tasks


def _loss_weights(flag: str | None, names: list[str], entries: list[dict]) -> dict[str, float]:
    weights = {name: float(entry.get("weight", 1.0)) for name, entry in zip(names, entries)}
    for item in filter(None, (flag or "").split(",")):
        name, equals, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or name not in weights:
            raise ConfigError(f"--loss-weights {flag!r}: expected name=weight pairs for the tasks "
                              f"{', '.join(names)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--loss-weights: {value!r} is not a number (task {name})") from None
    for name, weight in weights.items():
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"loss weight of task {name} must be a positive number, got {weight}")
    return weights


# ---------------------------------------------------------------------------------------------------- joint run
@dataclass
class RunResult:
    """What one (joint or single-task) run leaves: per task the test (or dev) metrics, and the run's figures."""

    out_dir: Path
    metrics: dict = field(default_factory=dict)      # task -> metrics of its report split
    split: dict = field(default_factory=dict)        # task -> "test" or "dev"
    rows: list = field(default_factory=list)         # one per epoch
    best_epoch: int | None = None
    best_mean: float | None = None
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    steps: int = 0
    batches: dict = field(default_factory=dict)      # task -> batches trained


class JointRun:
    """Train ``tasks`` on one shared encoder for ``epochs`` epochs of ``sum(quotas)`` steps, task ``i`` taking
    ``quotas[i]`` of them in each epoch's order; evaluate, keep the best mean, report into ``out_dir``."""

    def __init__(self, tasks: list[TaskData], quotas: list[int], joint, out_dir: Path, *, sampler: str,
                 tokenizer, title: str, resume_dir: Path):
        from bertkit.optim import xla_updates_choice  # imports TensorFlow: not at the module's import

        self.tasks, self.quotas, self.joint, self.out = tasks, [int(q) for q in quotas], joint, Path(out_dir)
        self.sampler, self.tokenizer, self.title = sampler, tokenizer, title
        self.resume_dir = Path(resume_dir)  # what --resume --output-dir names (the joint run's directory)
        self.steps_per_epoch = sum(self.quotas)
        self.total_steps = int(joint.epochs) * self.steps_per_epoch
        self.optimizer_updates = xla_updates_choice(self.total_steps)  # AdamW's XLA updates or not, and why
        self._partial = None  # the current epoch's per-task loss sums and counts (saved with a mid-epoch backup)
        self._best = None  # the best epoch so far (saved with an interrupt's backup)

    # -- setup -------------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """What a --resume must find unchanged (else data order or schedule would differ)."""
        return {"tasks": [{"name": t.name, "folder": str(t.recipe.folder), "train_file": str(t.args.train_file),
                           "examples": len(t.features), "batch_size": t.batch_size, "max_len": t.args.max_len,
                           "weight": t.weight, "quota": q} for t, q in zip(self.tasks, self.quotas)],
                "sampler": self.sampler, "temperature": self.joint.temperature, "epochs": int(self.joint.epochs),
                "lr": float(self.joint.lr), "warmup_ratio": float(self.joint.warmup_ratio),
                "weight_decay": float(self.joint.weight_decay), "seed": int(self.joint.seed),
                "bert_dir": str(self.joint.bert_dir)}

    def _build(self):
        import tensorflow as tf

        from bertkit.encoder import load_encoder
        from bertkit.optim import build_optimizer
        from bertkit.schedules import WarmupLinearDecay
        from bertkit.training import build_loss_metrics

        tf.keras.utils.set_random_seed(int(self.joint.seed))
        encoder = load_encoder(self.joint.bert_dir, trainable_layers=self.joint.trainable_layers)
        models = [t.recipe.build_model(self.joint.bert_dir, t.head, trainable_layers=self.joint.trainable_layers,
                                       encoder=encoder) for t in self.tasks]
        warmup = int(round(float(self.joint.warmup_ratio) * self.total_steps))
        self.schedule = WarmupLinearDecay(float(self.joint.lr), self.total_steps, min(warmup, self.total_steps))
        if not self.optimizer_updates["xla"]:
            say(f"optimizer: AdamW updates as plain graph ops ({self.optimizer_updates['reason']})")
        optimizer = build_optimizer(self.schedule, float(self.joint.weight_decay),
                                    jit_compile=self.optimizer_updates["xla"])
        for task, model in zip(self.tasks, models):
            model.compile(optimizer=optimizer, loss=task.recipe.loss(task.head))
            build_loss_metrics(model)  # else a span or relation task's step is traced twice
        # One optimizer for every task: its slots are built once for the union of the trainable weights (the
        # shared encoder's once), and its iteration count is the joint step that drives the one schedule.
        union = {id(v): v for model in models for v in model.trainable_variables}
        optimizer.build(list(union.values()))
        self.encoder, self.models, self.optimizer = encoder, models, optimizer
        # Each task's dev predictions, kept with the epoch that made them: the report and the tuning after training
        # reuse the kept epoch's when it was the last one evaluated.
        self.dev_predictions = [EpochPredictions(functools.partial(self._predict, task, model))
                                for task, model in zip(self.tasks, models)]
        return models

    def _train_step(self, model, weight: float):
        import tensorflow as tf

        optimizer = self.optimizer

        @tf.function
        def step(iterator):
            x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(next(iterator))
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x, y, y_pred, sample_weight)
                weighted = loss * weight
            variables = model.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(weighted, variables), variables))
            return loss

        return step

    # -- evaluation --------------------------------------------------------------------------------------------
    def _predict(self, task: TaskData, model, examples, head):
        return task.recipe.predict(model, self.tokenizer, examples, head, batch_size=self.joint.eval_batch_size)

    def _evaluate_dev(self, epoch: int) -> dict:
        """Every task's dev metrics after ``epoch``, in one row: each headline (and --select-metric), each
        normalised, and their mean (what picks the kept epoch)."""
        from bertkit.training import scalar_metrics

        row = {}
        for task, dev_predictions in zip(self.tasks, self.dev_predictions):
            metrics = task.recipe.score(task.dev, dev_predictions.evaluate(task.dev, task.head, epoch), task.head)
            numbers = scalar_metrics(metrics)
            value = numbers.get(task.dev_metric)
            if value is None:
                raise ConfigError(f"task {task.name}: the dev metrics have no number {task.dev_metric!r} (the metric "
                                  f"that picks the kept epoch: the headline, or the task's --select-metric); they "
                                  f"are {sorted(numbers)}")
            for name in dict.fromkeys((task.recipe.HEADLINE, task.dev_metric)):  # the headline is always shown
                row[f"{task.name}_dev_{name}"] = float(metrics[name])
            row[f"{task.name}_dev_normalised"] = task.normalised(value)
        row["mean_dev"] = float(np.mean([row[f"{t.name}_dev_normalised"] for t in self.tasks]))
        return row

    # -- backup / resume ---------------------------------------------------------------------------------------
    def _checkpoint(self):
        import tensorflow as tf

        return tf.train.Checkpoint(optimizer=self.optimizer,
                                   **{f"task_{i}": model for i, model in enumerate(self.models)})

    def _backup(self, checkpoint, state: dict, interrupts) -> None:
        """The training state (weights, optimizer, step) and where the loop stands, the state file last; inside
        ``interrupts.deferred()`` (an :class:`InterruptGuard`), so a signal never lands between the two."""
        from bertkit.fileio import atomic_write_json

        with interrupts.deferred():
            backup = self.out / "backup"
            prefix = checkpoint.write(str(backup / f"ckpt-{state['step']}"))
            atomic_write_json(backup / STATE_FILE, {**state, "checkpoint": Path(prefix).name,
                                                    "settings": self.settings()})
            for old in backup.glob("ckpt-*"):
                if not old.name.startswith(Path(prefix).name + "."):
                    old.unlink(missing_ok=True)

    def _read_backup(self) -> dict | None:
        from bertkit.fileio import read_json

        path = self.out / "backup" / STATE_FILE
        if not path.is_file():
            return None
        state = read_json(path)
        if state.get("settings") != self.settings():
            saved, now = state.get("settings", {}), self.settings()
            changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
            raise ConfigError(f"--resume: the interrupted run in {self.out} had other settings ({', '.join(changed)})"
                              f"; resume with the same command or start a new --output-dir")
        return state

    # -- training ----------------------------------------------------------------------------------------------
    def run_or_reuse(self) -> RunResult:
        """``fit``; under ``--resume`` a run that already finished (``result.json``, no backup) is read back instead
        (its models rebuilt with the kept weights), and one without a backup yet starts afresh."""
        from bertkit.fileio import read_json
        from bertkit.training import BEST_DIR, load_weights

        has_backup = (self.out / "backup" / STATE_FILE).is_file()
        if self.joint.resume and not has_backup and (self.out / "result.json").is_file():
            data = read_json(self.out / "result.json")
            say(f"{self.title}: finished before the interruption; reading {self.out / 'result.json'}")
            for task, model in zip(self.tasks, self._build()):
                load_weights(model, self.out / task.name / BEST_DIR)
            return RunResult(self.out, metrics=data["metrics"], split=data["split"], rows=data["rows"],
                             best_epoch=data["best_epoch"], best_mean=data["best_mean_dev"],
                             train_seconds=data["train_seconds"], wall_seconds=data["wall_seconds"],
                             steps=data["steps"], batches=data["batches"])
        return self.fit(resume=self.joint.resume and has_backup,
                        overwrite=self.joint.overwrite or (self.joint.resume and self.out != self.resume_dir))

    def fit(self, *, resume: bool, overwrite: bool) -> RunResult:
        """Train, keep the best mean-dev epoch's weights in each task's ``best/``, then evaluate and report."""
        from bertkit.errors import Interrupted
        from bertkit.fileio import atomic_write_json
        from bertkit.schedules import plot_schedule
        from bertkit.training import (BEST_DIR, InterruptGuard, RunLock, check_output_dir, load_weights,
                                      write_metrics_csv)

        result = RunResult(self.out)
        started = time.perf_counter()
        check_output_dir(self.out, argparse.Namespace(resume=resume, overwrite=overwrite))
        lock = RunLock(self.out)
        lock.acquire()
        try:
            state = self._read_backup()
            if resume and state is None:
                raise ConfigError(f"--resume: {self.out / 'backup'} holds no backup to resume from")
            if state is not None and not resume:
                raise ConfigError(f"{self.out} holds the backup of an unfinished run: pass --resume to continue it, "
                                  f"or choose another --output-dir")
            if state is None:  # a new run never keeps an old run's task folders, baselines or export
                for stale in [*(self.out / t.name for t in self.tasks), self.out / "baselines", self.out / "export"]:
                    shutil.rmtree(stale, ignore_errors=True)
            self._write_run_configs()
            models = self._build()
            checkpoint = self._checkpoint()
            rows, best, partial = [], {"epoch": None, "mean": None}, None
            step = 0
            if state is not None:
                checkpoint.read(str(self.out / "backup" / state["checkpoint"])).assert_consumed()
                rows, best, step, partial = state["rows"], state["best"], int(state["step"]), state.get("partial")
                say(f"resuming {self.out} at step {step} of {self.total_steps}")
            consumed = self._batches_before(step)
            iterators = [iter(task.data.dataset.repeat().skip(done)) for task, done in zip(self.tasks, consumed)]
            steps = [self._train_step(model, task.weight) for task, model in zip(self.tasks, models)]
            plot_schedule(self.schedule, self.total_steps, self.out / "lr_schedule.png")
            say(f"{self.title}: {len(self.tasks)} task(s) on one encoder, {self.joint.epochs} epoch(s) x "
                f"{self.steps_per_epoch} steps ({', '.join(f'{t.name} {q}' for t, q in zip(self.tasks, self.quotas))}"
                f" per epoch, {self.sampler}); output {self.out}")
            hint = f"resume with the same command plus --resume --output-dir {self.resume_dir}"
            interval = 60.0 * float(self.joint.backup_every_minutes)
            self._best = best  # what an interrupt's backup records, kept current by _loop
            with InterruptGuard(grace_seconds=10.0, message=f"stopped inside a long operation; the last backup "
                                                           f"stands; {hint}") as guard:
                try:
                    step, rows, best = self._loop(steps, iterators, checkpoint, step, rows, best, interval, guard,
                                                  partial)
                    guard.raise_pending()
                except KeyboardInterrupt:
                    guard.acknowledge()
                    # deferred: a second signal meanwhile is the watchdog's, which ends the process, the last
                    # backup standing
                    self._backup(checkpoint, {"step": self._step_now(), "rows": rows, "best": self._best,
                                              "partial": self._partial}, guard)
                    raise Interrupted(f"backed up after {self._step_now()} steps in {self.out / 'backup'}; "
                                      f"{hint}") from None
            shutil.rmtree(self.out / "backup", ignore_errors=True)
            write_metrics_csv(self.out / "metrics.csv", rows)
            for task, model in zip(self.tasks, models):
                load_weights(model, self.out / task.name / BEST_DIR)
            say(f"{self.title}: restored the weights of epoch {best['epoch']} (mean normalised dev headline "
                f"{best['mean']:.4f})")
            result.rows, result.best_epoch, result.best_mean = rows, best["epoch"], best["mean"]
            result.train_seconds = float(sum(r["train_seconds"] for r in rows))
            result.steps = self.total_steps
            result.batches = {t.name: q * int(self.joint.epochs) for t, q in zip(self.tasks, self.quotas)}
            self._finish(result)
            result.wall_seconds = time.perf_counter() - started
            atomic_write_json(self.out / "result.json", {
                "tasks": [t.name for t in self.tasks], "metrics": result.metrics, "split": result.split,
                "rows": result.rows, "best_epoch": result.best_epoch, "best_mean_dev": result.best_mean,
                "steps": result.steps,
                "batches": result.batches, "train_seconds": round(result.train_seconds, 1),
                "wall_seconds": round(result.wall_seconds, 1)})
            return result
        finally:
            lock.release()

    def _step_now(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def _batches_before(self, step: int) -> list[int]:
        """How many batches of each task the first ``step`` steps trained (the epochs' orders replayed)."""
        consumed = [0] * len(self.tasks)
        epoch, position = divmod(step, self.steps_per_epoch)
        for i, quota in enumerate(self.quotas):
            consumed[i] = epoch * quota
        if position:
            order = epoch_order(self.sampler, self.quotas, self.joint.seed, epoch)[:position]
            for i, n in enumerate(np.bincount(order, minlength=len(self.tasks))):
                consumed[i] += int(n)
        return consumed

    def _loop(self, steps, iterators, checkpoint, step, rows, best, interval, interrupts, partial=None):
        """Train from ``step`` to the end: per epoch its task order, progress every 30 s, a backup every
        ``interval`` seconds and at each epoch end, dev evaluation and the best weights by the mean rule.
        ``interrupts``: the InterruptGuard (no file write is broken into); ``partial``: the per-task loss sums and
        counts of the epoch a resumed run stopped in. ``rows`` grows in place and ``self._best`` follows ``best``,
        so an interrupt's backup holds both as they stand."""
        from bertkit.training import BEST_DIR, save_weights

        epochs, per_epoch = int(self.joint.epochs), self.steps_per_epoch
        last_backup = time.monotonic()
        while step < self.total_steps:
            epoch, position = divmod(step, per_epoch)
            order = epoch_order(self.sampler, self.quotas, self.joint.seed, epoch)
            sums, counts = np.zeros(len(self.tasks)), np.zeros(len(self.tasks))
            if position and partial:  # a resumed epoch: its losses so far
                sums, counts = np.asarray(partial["sums"], float), np.asarray(partial["counts"], float)
            self._partial = {"sums": sums.tolist(), "counts": counts.tolist()}
            epoch_start, last_said = time.perf_counter(), time.monotonic()
            for position in range(position, per_epoch):
                i = int(order[position])
                loss = float(steps[i](iterators[i]))
                interrupts.raise_pending()  # a signal held back while this task's step was traced
                if not math.isfinite(loss):
                    raise ConfigError(f"task {self.tasks[i].name}: the loss is {loss} at step {step + 1}; lower --lr "
                                      f"or this task's loss weight")
                sums[i] += loss
                counts[i] += 1
                step += 1
                self._partial = {"sums": sums.tolist(), "counts": counts.tolist()}
                now = time.monotonic()
                if now - last_said >= 30.0 and position + 1 < per_epoch:
                    elapsed = time.perf_counter() - epoch_start
                    done = counts.sum()
                    say(f"  epoch {epoch + 1}/{epochs} step {position + 1}/{per_epoch}: "
                        + ", ".join(f"{t.name} loss {s / c:.4f}" for t, s, c in zip(self.tasks, sums, counts) if c)
                        + f"; {done / elapsed:.2f} steps/s, "
                          f"epoch ETA {(per_epoch - position - 1) * elapsed / done:.0f}s")
                    last_said = now
                if interval > 0 and now - last_backup >= interval and step < self.total_steps:
                    self._backup(checkpoint, {"step": step, "rows": rows, "best": best, "partial": self._partial},
                                 interrupts)
                    last_backup = now
            train_seconds = time.perf_counter() - epoch_start
            row = {"epoch": epoch + 1, "train_seconds": round(train_seconds, 2),
                   "lr": float(self.schedule(step - 1))}
            for task, s, c in zip(self.tasks, sums, counts):
                row[f"{task.name}_loss"] = float(s / c) if c else float("nan")
            row.update(self._evaluate_dev(epoch + 1))
            interrupts.raise_pending()
            with interrupts.deferred():  # the kept weights, the rows and the best epoch change together
                if best["mean"] is None or row["mean_dev"] > best["mean"]:
                    best = self._best = {"epoch": epoch + 1, "mean": row["mean_dev"]}
                    for task, model in zip(self.tasks, self.models):
                        save_weights(model, self.out / task.name / BEST_DIR, info={
                            "epoch": epoch + 1, "mean_dev": row["mean_dev"], "joint_run": str(self.out)})
                rows.append(row)
            say(f"epoch {epoch + 1}/{epochs} ({train_seconds:.0f}s): "
                + ", ".join(f"{t.name} loss {row[f'{t.name}_loss']:.4f} dev {t.dev_metric} "
                            f"{row[f'{t.name}_dev_{t.dev_metric}']:.4f}" for t in self.tasks)
                + f"; mean normalised dev {row['mean_dev']:.4f} (best {best['mean']:.4f}, epoch {best['epoch']})")
            if step < self.total_steps:
                self._backup(checkpoint, {"step": step, "rows": rows, "best": best}, interrupts)
                last_backup = time.monotonic()
        return step, rows, best

    # -- after training ----------------------------------------------------------------------------------------
    def _task_run_config(self, task: TaskData) -> dict:
        from bertkit.cli import args_to_dict
        from bertkit.training import encoder_summary

        return {"task": task.recipe.TASK, "args": args_to_dict(task.args),
                "encoder": encoder_summary(self.joint.bert_dir),
                "recipe": {"name": task.recipe.TASK, "folder": str(task.recipe.folder)}, "head": task.head,
                "tokenizer": {"lowercase": self.tokenizer.lowercase, "per_char": bool(self.joint.per_char)},
                "multitask": {"run": str(self.out), "tasks": [t.name for t in self.tasks], "sampler": self.sampler,
                              "loss_weight": task.weight}}

    def _write_run_configs(self) -> None:
        from bertkit.fileio import atomic_write_json

        atomic_write_json(self.out / "run_config.json", {"task": TASK_KEY, "settings": self.settings(),
                                                         "tasks": [t.name for t in self.tasks],
                                                         "optimizer_updates": self.optimizer_updates})
        for task in self.tasks:
            atomic_write_json(self.out / task.name / "run_config.json", self._task_run_config(task))

    def _finish(self, result: RunResult) -> None:
        """Per task: thresholds tuned on dev (when the recipe tunes), test (or dev) metrics, its own report."""
        from bertkit.fileio import atomic_write_json, write_jsonl
        from bertkit.recipe import PREDICTIONS_FILE
        from bertkit.reports import write_run_report

        for task, model, dev_predictions in zip(self.tasks, self.models, self.dev_predictions):
            out = self.out / task.name
            if task.recipe.needs_tuning(task.head):
                tuned = task.recipe.tune(task.dev, dev_predictions.current(task.dev, task.head, result.best_epoch),
                                         task.head)
                if tuned != task.head:
                    task.head = tuned
                    atomic_write_json(out / "run_config.json", self._task_run_config(task))
            if task.test_labelled:
                split, examples, path = "test", task.test, task.args.test_file
            else:
                split, examples, path = "dev", task.dev, task.args.dev_file
            predictions = dev_predictions.current(examples, task.head, result.best_epoch)
            metrics = task.recipe.score(examples, predictions, task.head)
            if task.test is not None and not task.test_labelled:
                write_jsonl(out / PREDICTIONS_FILE, self._predict(task, model, task.test, task.head))
                metrics["predictions"] = {"file": PREDICTIONS_FILE, "inputs": len(task.test)}
            sections, figures = task.recipe.report_sections(metrics, examples, predictions, task.head, out)
            history = {"epoch": [r["epoch"] for r in result.rows],
                       "loss": [r[f"{task.name}_loss"] for r in result.rows],
                       **{f"dev_{name}": [r[f"{task.name}_dev_{name}"] for r in result.rows]
                          for name in dict.fromkeys((task.recipe.HEADLINE, task.dev_metric))}}
            batches = self.quotas[self.tasks.index(task)] * int(self.joint.epochs)
            seconds = sum(r["train_seconds"] for r in result.rows)
            report_run = argparse.Namespace(
                output_dir=out, task=task.recipe.TASK, args=task.args, history=history,
                _encoder_summary=lambda: self._task_run_config(task)["encoder"],
                train_stats={"epochs": len(result.rows), "steps": batches, "batches_of_this_task": batches,
                             "passes": round(batches / task.steps_per_pass, 2),
                             "seconds": round(seconds, 2), "best_epoch": result.best_epoch,
                             "joint_run": str(self.out), "joint_steps": self.total_steps})
            others = ", ".join(t.name for t in self.tasks if t is not task)
            sections = [("Joint training", f"Trained jointly with {others}"
                                           f" on one encoder ({self.sampler} sampler); the kept epoch maximises the "
                                           f"mean normalised dev headline of all tasks: see {self.out / 'report.md'}.")
                        if len(self.tasks) > 1 else ("Training", f"Trained alone through the multi-task loop "
                                                                 f"({batches} batches), as the baseline of "
                                                                 f"{self.out.parent.parent / 'report.md'}."),
                        *sections]
            write_run_report(report_run, dataset=Path(path).parent.name, split=Path(path).stem,
                             headline=task.recipe.HEADLINE, metrics=metrics, markdown_sections=sections,
                             figures=figures)
            result.metrics[task.name] = _json_metrics(metrics)
            result.split[task.name] = split
            say(f"{task.name}: {split} {task.recipe.HEADLINE} {metrics[task.recipe.HEADLINE]:.4f}")


def _json_metrics(metrics: dict) -> dict:
    """The scalar metrics (the per-class tables stay in the task's own report)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# -------------------------------------------------------------------------------------------------------- export
def export_joint(path, tasks: list[TaskData], models, tokenizer) -> Path:
    """ONE SavedModel for every task: the shared encoder's variables once, each task's ``serving_default`` as the
    signature ``<task>`` and its other signatures as ``<task>_<name>``, plus ``tasks()`` listing the task names.
    Load with ``import tensorflow_text`` then ``tf.saved_model.load(path).signatures["<task>"](texts=...)``."""
    import tensorflow as tf

    from bertkit.export import trace_signature
    from bertkit.fileio import atomic_dir

    module = tf.Module()
    variables = {}
    for model in models:
        for variable in model.variables:
            variables.setdefault(id(variable), variable)
    module.model_variables = list(variables.values())
    signatures = {}
    for task, model in zip(tasks, models):
        serving = task.recipe.serving(model, tokenizer, task.head)
        for name, function in serving.signatures.items():
            key = task.name if name == "serving_default" else f"{task.name}_{name}"
            signatures[key] = trace_signature(function, f"task {task.name} signature {name!r}")
            setattr(module, f"signature_{key}", signatures[key])
        for name, trackable in serving.trackables.items():
            setattr(module, f"{task.name}_{name}", trackable)
    names = tf.constant([t.name for t in tasks])
    signatures["tasks"] = tf.function(lambda: {"tasks": names}, input_signature=[]).get_concrete_function()
    module.list_tasks = signatures["tasks"]
    path = Path(path)
    with atomic_dir(path) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
    say(f"exported one SavedModel for {', '.join(t.name for t in tasks)} ({len(module.model_variables)} variables, "
        f"the encoder's once): {path}")
    return path


# -------------------------------------------------------------------------------------------------------- report
def write_joint_report(out: Path, tasks: list[TaskData], joint_result: RunResult, baselines: dict, *, sampler,
                       quotas, joint) -> Path:
    """``report.md`` / ``report.json`` of the joint run: settings, the checkpoint rule, per-epoch figures and per
    task the joint result beside the same task trained alone on the same per-task budget."""
    from bertkit.fileio import atomic_write_json, atomic_write_text
    from bertkit.reports import md_table, plot_history

    epochs = int(joint.epochs)
    rows = []
    for task, quota in zip(tasks, quotas):
        headline = task.recipe.HEADLINE
        joint_value = joint_result.metrics[task.name][headline]
        alone = baselines.get(task.name)
        alone_value = alone.metrics[task.name][headline] if alone else None
        scale = task.recipe.headline_scale
        delta = None if alone_value is None else joint_value - alone_value
        rows.append([task.name, f"{joint_result.split[task.name]} {headline}", f"{joint_value:.4f}",
                     "–" if alone_value is None else f"{alone_value:.4f}",
                     "–" if delta is None else f"{delta:+.4f} ({100 * delta / scale:+.1f} pt)",
                     quota * epochs, f"{quota * epochs / task.steps_per_pass:.2f}", f"{task.weight:g}"])
    table = md_table(["task", "metric", "joint", "alone", "joint − alone", "batches", "passes", "loss weight"], rows)
    settings = md_table(["", "value"], [
        ["encoder", str(joint.bert_dir)], ["sampler", sampler + (f" (T={joint.temperature:g})"
                                                                 if sampler == "temperature" else "")],
        ["epochs x steps", f"{epochs} x {sum(quotas)} = {epochs * sum(quotas)}"],
        ["batches per epoch", ", ".join(f"{t.name} {q}" for t, q in zip(tasks, quotas))],
        ["lr / warmup / weight decay", f"{joint.lr:g} / {joint.warmup_ratio:g} / {joint.weight_decay:g}"],
        ["seed", joint.seed], ["kept epoch", f"{joint_result.best_epoch} (mean normalised dev "
                                             f"{joint_result.best_mean:.4f})"],
        ["joint wall time", f"{joint_result.wall_seconds:.0f} s (training {joint_result.train_seconds:.0f} s)"],
        ["single runs' wall time", f"{sum(b.wall_seconds for b in baselines.values()):.0f} s in all"
         if baselines else "not run (--baselines none)"]], align=["l", "l"])
    rule = ("The kept checkpoint is the epoch with the highest mean over the tasks of the normalised dev headline "
            "(value / HEADLINE_SCALE, or 1 − value / HEADLINE_SCALE where lower is better; a task's --select-metric "
            "replaces its headline here); each single-task run "
            "keeps its own best dev epoch. Alone = the same recipe, data, batch size, seed and schedule shape, "
            "trained through the same loop on the same number of that task's batches (the same examples in the "
            "same order). One seed: differences under the recipe's noise band are not results.")
    keys = [k for k in joint_result.rows[0] if k != "epoch"] if joint_result.rows else []
    per_epoch = md_table(["epoch", *keys], [[r["epoch"], *[r[k] for k in keys]] for r in joint_result.rows])
    history = {k: [r[k] for r in joint_result.rows] for k in ["epoch", *keys]}
    plot_history(history, [f"{t.name}_loss" for t in tasks], out / "loss.png", title="training loss per task")
    plot_history(history, ["mean_dev", *[f"{t.name}_dev_normalised" for t in tasks]], out / "dev.png",
                 title="normalised dev headline per epoch")
    lines = [f"# Joint multi-task run: {' + '.join(t.name for t in tasks)}\n", "## Joint vs alone\n", table,
             rule + "\n", "## Settings\n", settings, "## Per epoch (joint run)\n", per_epoch,
             "## Figures\n", "![loss per task](loss.png)\n", "![dev per epoch](dev.png)\n",
             "![learning rate](lr_schedule.png)\n",
             "Each task's own report (per-class tables, errors) is in its folder: "
             + ", ".join(f"[{t.name}]({t.name}/report.md)" for t in tasks) + ".\n"]
    report = {"tasks": [t.name for t in tasks], "sampler": sampler, "temperature": joint.temperature,
              "quotas": dict(zip([t.name for t in tasks], quotas)), "epochs": epochs,
              "joint": {"metrics": joint_result.metrics, "split": joint_result.split,
                        "best_epoch": joint_result.best_epoch, "best_mean_dev": joint_result.best_mean,
                        "wall_seconds": round(joint_result.wall_seconds, 1), "rows": joint_result.rows},
              "alone": {name: {"metrics": b.metrics[name], "wall_seconds": round(b.wall_seconds, 1),
                               "best_epoch": b.best_epoch} for name, b in baselines.items()},
              "rule": rule}
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"


# ------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    from bertkit.cli import _HelpFormatter, _Parser

    parser = _Parser(prog="python -m bertkit.multitask", description=__doc__, formatter_class=_HelpFormatter,
                     allow_abbrev=False)
    parser.add_argument("folders", nargs="*", type=Path, help="recipe folders, each on its default data "
                        "(default: every recipe folder under ./recipes; recipes/multitask/train.py: those beside it)")
    parser.add_argument("--config", type=Path, help="JSON {\"tasks\": [...]}: folders with their files and args")
    parser.add_argument("--bert-dir", help="the shared encoder (default: the converted all-MiniLM-L6-v2)")
    parser.add_argument("--output-dir", help="run directory (default: runs/multitask/<YYYYmmdd-HHMMSS>)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="proportional", help="which task the next batch is of")
    parser.add_argument("--temperature", type=float, default=2.0, help="T of the temperature sampler")
    parser.add_argument("--loss-weights", metavar="NAME=W,...", help="per-task loss weights (default 1)")
    parser.add_argument("--epochs", type=int, default=3, help="joint epochs (each: the tasks' batches of one pass in "
                                                               "all, shared out by the sampler)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the one AdamW schedule")
    parser.add_argument("--warmup-ratio", type=float, default=0.1, help="warmup share of the total steps")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="decoupled weight decay")
    parser.add_argument("--seed", type=int, default=42, help="seed of weights, data order and task order")
    parser.add_argument("--trainable-layers", type=int, default=None, metavar="K",
                        help="fine-tune only the top K encoder blocks (default: all)")
    parser.add_argument("--per-char", action="store_true", help="one token per character (Chinese)")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="inputs per prediction batch")
    parser.add_argument("--baselines", default="train", metavar="train|none|NAME,...",
                        help="train each task (or the named ones) alone on the same per-task budget for the "
                             "report's comparison")
    parser.add_argument("--export", action="store_true", help="write ONE SavedModel serving every task to "
                                                              "OUTPUT_DIR/export")
    parser.add_argument("--backup-every-minutes", type=float, default=5.0, metavar="MINUTES",
                        help="back up the training state for --resume this often (and at every epoch end)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --output-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --output-dir")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from bertkit.cli import AT_LEAST_1, POSITIVE, check_ranges
    from bertkit.encoder import resolve_bert_dir, validate_bert_dir

    args = build_parser().parse_args(argv)
    check_ranges(args, ("epochs", *AT_LEAST_1), ("lr", *POSITIVE), ("temperature", *POSITIVE),
                 ("eval_batch_size", *AT_LEAST_1), ("backup_every_minutes", *POSITIVE),
                 ("warmup_ratio", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
                 ("weight_decay", lambda v: v >= 0.0, "zero or positive"))
    if args.resume and not args.output_dir:
        raise ConfigError("--resume needs --output-dir (the interrupted run)")
    if args.folders and args.config:
        raise ConfigError("give recipe folders or --config, not both")
    args.bert_dir = str(resolve_bert_dir(args.bert_dir))
    validate_bert_dir(args.bert_dir)
    if args.output_dir is None:
        from bertkit.cli import default_output_dir

        args.output_dir = str(default_output_dir(TASK_KEY))
    return args


def _entries(args, default_folders=None) -> list[dict]:
    from bertkit.suite import default_entries

    if args.config:
        return read_task_config(args.config)
    folders = args.folders or default_folders
    if not folders:
        return default_entries()
    return [{"folder": Path(folder).resolve(), "args": [], "train_file": None, "dev_file": None, "test_file": None}
            for folder in folders]


def run(argv=None, *, default_folders=None) -> dict:
    """The joint run, then (``--baselines train``) each task alone; returns the joint report as a dict."""
    from bertkit.fileio import read_json
    from bertkit.tokenization import Tokenizer

    args = parse_args(argv)
    out = Path(args.output_dir)
    entries = _entries(args, default_folders)
    if not entries:
        raise ConfigError("no tasks: name recipe folders or give --config")
    tokenizer = Tokenizer.from_bert_dir(args.bert_dir, per_char=args.per_char)
    tasks = prepare_tasks(entries, args, tokenizer, out)
    alone = _baseline_tasks(args.baselines, tasks)  # checked before any training
    if len(tasks) == 1:
        alone = []  # a single task trained "jointly" is its own baseline
    probabilities = sampling_probabilities(args.sampler, [len(t.features) for t in tasks], args.temperature)
    for task in tasks:
        task.data = task.recipe.training_data(task.features, task.head, batch_size=task.batch_size, seed=args.seed)
    quotas = epoch_quotas(probabilities, sum(t.steps_per_pass for t in tasks))
    joint_run = JointRun(tasks, quotas, args, out, sampler=args.sampler, tokenizer=tokenizer, title=TASK_KEY,
                         resume_dir=out)
    joint_result = joint_run.run_or_reuse()
    if args.export:
        export_joint(out / "export", tasks, joint_run.models, tokenizer)
    del joint_run
    baselines = {}
    if alone:
        import tensorflow as tf

        for task, quota in zip(tasks, quotas):
            if task.name not in alone:
                continue
            tf.keras.backend.clear_session()  # the joint models go; each run alone builds its own encoder
            single = JointRun([task], [quota], args, out / "baselines" / task.name, sampler=args.sampler,
                              tokenizer=tokenizer, title=f"{task.name} alone", resume_dir=out)
            baselines[task.name] = single.run_or_reuse()
    path = write_joint_report(out, tasks, joint_result, baselines, sampler=args.sampler, quotas=quotas, joint=args)
    report = read_json(out / "report.json")
    for task in tasks:
        alone = report["alone"].get(task.name, {}).get("metrics", {}).get(task.recipe.HEADLINE)
        joint_value = report["joint"]["metrics"][task.name][task.recipe.HEADLINE]
        print(f"{task.name}: {report['joint']['split'][task.name]} {task.recipe.HEADLINE} joint {joint_value:.4f}"
              + ("" if alone is None else f", alone {alone:.4f} ({joint_value - alone:+.4f})"))
    say(f"report: {path}")
    return report


def _baseline_tasks(option: str, tasks: list[TaskData]) -> list[str]:
    """The task names ``--baselines`` asks to train alone (``train``: all, ``none``: none, else a list)."""
    names = [t.name for t in tasks]
    if option == "train":
        return names
    if option == "none":
        return []
    chosen = [name.strip().replace("-", "_") for name in option.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise ConfigError(f"--baselines: no task {', '.join(unknown)}; the tasks are {', '.join(names)} (or give "
                          f"train / none)")
    return chosen


def main(argv=None, *, default_folders=None) -> int:
    """The command line (``recipes/multitask/train.py`` passes the recipe folders beside it as the default)."""
    from bertkit.cli import run_main

    return run_main(lambda: run(argv, default_folders=default_folders))


if __name__ == "__main__":
    from bertkit.cli import exit_process

    exit_process(main())  # without the interpreter's teardown of TensorFlow (see there)
