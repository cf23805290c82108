"""``--train-step auto``: the faster train step for this run on this machine, measured once and cached.

bertkit trains with one of two train steps (``Trainer.compile``): ``graph``, Keras's step as a TensorFlow graph on
oneDNN's kernels (the AdamW update of each weight one small XLA kernel), and ``xla``, the whole step XLA-compiled once
per padded batch length. Which is faster depends on the CPU: MiniLM-L6 at 32 x 128 trained at 27 against 16
sequences/s with the XLA step on a 2-core Zen 5, at 10-11 against 13.6 on a 2-core Zen 4 (benchmarks/README.md).
``auto`` (the default) decides per run:

1. ``graph`` without measuring when nothing trains (``--eval-only``); when XLA would change what the run means or
   cannot be measured like for like: with ``--deterministic`` (XLA ignores the dropout masks' seeds), a layer that
   refuses XLA (tensorflow-addons' CRF), several replicas, or no known example lengths (a plain dataset given to
   ``Trainer.compile``); and for a run of fewer than :data:`PROBE_MIN_STEPS` steps, or of fewer than
   :data:`MIN_STEPS_PER_LENGTH` steps per padded length, which cannot repay what XLA costs up front (see there).
2. Otherwise the probe's measurements for this machine and workload, from the cache
   (``$BERTKIT_CACHE/train_step_probes.json``, default ``~/.cache/bertkit``), or, the first time, from the probe:
   ``python -m bertkit.train_step`` in a child process (so the run's own model, optimizer and random state are
   untouched) trains the run's encoder under a two-class head on random token ids at the run's batch size and its
   median example length (rounded up to 16), the encoder's last block for ``[CLS]`` alone where the run's model
   holds ``bertkit.encoder.first_token_encoder``'s view (as the sentiment recipe's ``[CLS]`` classifier does), with
   each step: ``graph`` and ``xla`` step times (median of :data:`TIMED_STEPS` after warm-up) and the XLA step's first
   call less one step (tracing plus compilation, paid once per padded length).
3. The estimate over the whole run: ``steps x graph_step`` against ``steps x xla_step + lengths x xla_compile``
   (``lengths``: the distinct example lengths, each a padded batch length XLA compiles for); ``xla`` only when its
   estimate is below :data:`XLA_MARGIN` of the graph's.

The cache key is the machine (CPU model and its vector extensions, usable CPUs, TensorFlow's version, oneDNN and XLA
settings) and the workload (encoder shape, batch size, padded length rounded up to 16, precision, and ``last_block``:
``"first_token"`` for the view); delete the file to measure again. The decision, the reason and the figures go to
``run_config.json`` (``train_step``) and the log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from bertkit.errors import BertkitError, ConfigError

__all__ = ["MIN_STEPS_PER_LENGTH", "PROBE_MIN_STEPS", "XLA_MARGIN", "Decision", "cache_path", "choose", "decide",
           "fit_step", "machine", "main", "measure", "probe"]

# A run must have at least this many steps before auto measures anything. XLA's gain is per step, its cost up front:
# one tracing + compilation per padded batch length (about 5 steps' time for MiniLM-L6 on the Zen 5 box where XLA
# won; a run grouped by length feeds 10 or more lengths) and, the first time on a machine, the probe (about 25 steps'
# time: a child process's start-up, 2 x (WARMUP_STEPS + TIMED_STEPS) steps and one compilation). At the best gain
# measured (the Zen 5 box: 41% of each step) 300 steps save about 123 steps' time against 75 or more spent: shorter
# runs keep the graph step, unmeasured.
PROBE_MIN_STEPS = 300
# Nor when the run has fewer than this many steps per padded length: by the same figures (41% of a step saved at
# best, at least about 5 steps' time per compilation) XLA needs 5 / 0.41, about 12 steps per length it compiles for,
# just to repay its compilations. (span_extract's no-flag run: 420 steps over 358 lengths.)
MIN_STEPS_PER_LENGTH = 12
# XLA only when the run's estimate with it is under 90% of the graph step's: the same probe run twice on one box
# gave step times within a few per cent, but boxes swing by up to 25% from hour to hour (benchmarks/README.md), and
# with XLA the dropout masks no longer follow the run's seed; a gain under 10% is not worth that.
XLA_MARGIN = 0.9
WARMUP_STEPS = 2
TIMED_STEPS = 5
LENGTH_GRANULARITY = 16  # probe lengths (and cache keys) are rounded up to this
CACHE_FILE = "train_step_probes.json"
# In the cache key: how the probe times steps. 2 (2026-12-04): as fit runs them (see fit_step); entries measured
# before, with train_on_batch, are measured again. 3 (2026-12-04, later): the graph step's AdamW updates
# XLA-compiled on CPU too (bertkit.optim.build_optimizer), a faster graph step: older entries are measured again.
# 4 (2026-12-05): the global-norm clipping and the weight decay joined the XLA updates (bertkit.optim.AdamW).
PROBE_METHOD = 4
PROBE_TIMEOUT_S = 1800  # an XLA compilation took about 80 s on one core of a Zen 3 (issue 15): far inside this


class Decision(dict):
    """``{"requested", "chosen", "reason"}`` plus the probe's figures and the estimates where measured; what
    ``run_config.json`` records under ``train_step``."""

    @property
    def xla(self) -> bool:
        return self["chosen"] == "xla"


# --------------------------------------------------------------------------------------------------- the machine
def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.split()
    except OSError:  # not Linux: the processor string alone
        pass
    vector = sorted(f for f in set(flags) if f.startswith(("avx", "amx", "fma", "sse4")))
    return model, vector


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict:
    """What the step times depend on besides the workload: CPU model and vector extensions, usable CPUs, TensorFlow's
    version and the settings that pick its kernels."""
    import tensorflow as tf

    model, flags = _cpu_model_and_flags()
    return {"cpu": model, "vector_flags": flags, "cpus": _usable_cpus(), "tensorflow": tf.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def _key(machine_info: dict, workload: dict) -> str:
    text = json.dumps({"machine": machine_info, "workload": workload}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def cache_path() -> Path:
    from bertkit.encoder import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:  # unreadable or damaged: measured again, and rewritten
        say_warning(f"{path}: not a readable probe cache ({error}); measuring again")
        return {}
    return data if isinstance(data, dict) else {}


def say_warning(message: str) -> None:
    from bertkit.cli import say

    say(f"warning: {message}")


# ----------------------------------------------------------------------------------------------------- the probe
def probe_length(example_lengths: Sequence[int]) -> int:
    """The length the probe measures: the median example length, rounded up to :data:`LENGTH_GRANULARITY`."""
    median = statistics.median_low(sorted(int(n) for n in example_lengths))
    return max(LENGTH_GRANULARITY, -(-int(median) // LENGTH_GRANULARITY) * LENGTH_GRANULARITY)


def fit_step(model, batches):
    """A callable running one training step of the compiled ``model`` per call, as ``model.fit`` runs its steps:
    Keras's train function on one iterator, here over ``batches`` (``(inputs, labels)`` pairs, ``inputs`` an array
    or a list of arrays, one per model input) cycled; it returns the loss as fit logs it (the mean over the calls
    so far). For timing steps. (``train_on_batch`` builds a data handler and an iterator per call and drops them
    after it: on a 2-core Zen 4, MiniLM-L6 at 32 x 128, the Python thread then spent 0.6 s deleting tensor handles
    after about half the calls, a cost ``fit`` does not pay per step; benchmarks/README.md, "Profile".)"""
    import tensorflow as tf

    dataset = None
    for inputs, labels in batches:
        one = tf.data.Dataset.from_tensors((tuple(inputs) if isinstance(inputs, list) else inputs, labels))
        dataset = one if dataset is None else dataset.concatenate(one)
    if dataset is None:
        raise ConfigError("fit_step needs at least one batch")
    from bertkit.batching import without_autotune_model

    iterator = iter(without_autotune_model(dataset.repeat()))  # as fit's: no wait for a tuning thread when dropped
    train_function = model.make_train_function(force=True)
    return lambda: float(train_function(iterator)["loss"])


def measure(bert_dir, batch_size: int, length: int, *, mixed_precision: bool = False, first_token_only: bool = False,
            warmup: int = WARMUP_STEPS, steps: int = TIMED_STEPS) -> dict:
    """Train the encoder in ``bert_dir`` under a two-class head on random token ids (``batch_size`` x ``length``),
    first with the graph step, then with the XLA step; the step times (median of ``steps`` after ``warmup`` calls)
    and the XLA step's first call less one step (its tracing and compilation). ``first_token_only``: the head reads
    ``bertkit.encoder.first_token_encoder``'s view (the last block for ``[CLS]`` alone), as a ``[CLS]`` classifier
    built on it trains. Runs in this process: the probe's child (:func:`probe`) calls it."""
    import numpy as np
    import tensorflow as tf

    from bertkit.distribute import set_mixed_precision
    from bertkit.encoder import first_token_encoder, load_encoder, validate_bert_dir
    from bertkit.optim import build_optimizer

    set_mixed_precision(mixed_precision)
    tf.keras.utils.set_random_seed(0)
    vocab = validate_bert_dir(bert_dir).vocab_size
    encoder = load_encoder(bert_dir)
    if first_token_only:
        encoder = first_token_encoder(encoder)  # hidden states (batch, 1, hidden): position 0 alone
    token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
    hidden = encoder([token_ids, segment_ids])
    logits = tf.keras.layers.Dense(2, dtype="float32", name="classifier")(hidden[:, 0])
    model = tf.keras.Model([token_ids, segment_ids], logits)
    rng = np.random.default_rng(0)
    ids = rng.integers(min(1000, vocab - 1), vocab, size=(batch_size, length)).astype(np.int32)
    inputs, labels = [ids, np.zeros_like(ids)], rng.integers(0, 2, size=(batch_size,)).astype(np.int32)
    figures = {}
    for kind in ("graph", "xla"):
        model.compile(optimizer=build_optimizer(1e-5, 0.01), jit_compile=kind == "xla",
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        train_step = fit_step(model, [(inputs, labels)])
        start = time.perf_counter()
        train_step()
        first = time.perf_counter() - start
        for _ in range(max(0, warmup - 1)):
            train_step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            train_step()
            times.append(time.perf_counter() - start)
        figures[f"{kind}_step_s"] = round(statistics.median(times), 4)
        figures[f"{kind}_first_call_s"] = round(first, 3)
    figures["xla_compile_s"] = round(max(0.0, figures["xla_first_call_s"] - figures["xla_step_s"]), 3)
    return figures


def probe(bert_dir, batch_size: int, length: int, *, mixed_precision: bool = False,
          first_token_only: bool = False) -> dict:
    """:func:`measure` in a child process (``python -m bertkit.train_step``): the caller's TensorFlow state, model and
    random generators are untouched. A failed probe is a ``BertkitError`` quoting the child's last output lines."""
    command = [sys.executable, "-m", "bertkit.train_step", "--bert-dir", str(bert_dir),
               "--batch-size", str(batch_size), "--length", str(length)]
    if mixed_precision:
        command.append("--mixed-precision")
    if first_token_only:
        command.append("--first-token-only")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BertkitError(f"--train-step auto: the probe ran past {PROBE_TIMEOUT_S} s ({' '.join(command)}); "
                           f"choose --train-step graph or xla") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise BertkitError(f"--train-step auto: the probe failed (exit {done.returncode}; {' '.join(command)}):\n"
                           f"{tail}\nchoose --train-step graph or xla")
    return json.loads(lines[-1])


# -------------------------------------------------------------------------------------------------- the decision
def decide(figures: dict, steps: int, lengths: int) -> tuple[str, dict]:
    """``("graph" | "xla", estimates)`` for a run of ``steps`` steps over ``lengths`` padded batch lengths, from
    the probe's ``graph_step_s``, ``xla_step_s`` and ``xla_compile_s``."""
    graph = steps * float(figures["graph_step_s"])
    xla = steps * float(figures["xla_step_s"]) + lengths * float(figures["xla_compile_s"])
    estimates = {"graph_estimate_s": round(graph, 1), "xla_estimate_s": round(xla, 1), "steps": int(steps),
                 "padded_lengths": int(lengths)}
    return ("xla" if xla < XLA_MARGIN * graph else "graph"), estimates


def choose(*, bert_dir, batch_size: int, steps: int, example_lengths: Sequence[int] | None,
           mixed_precision: bool = False, refusals: Sequence[str] = (), deterministic: bool = False,
           replicas: int = 1, encoder: dict | None = None, eval_only: bool = False,
           first_token_only: bool = False) -> Decision:
    """The ``auto`` decision for one run (see the module's docstring); probes and caches where it must.
    ``first_token_only``: the run's model holds ``bertkit.encoder.first_token_encoder``'s view, and the probe
    times that (a workload of its own in the cache)."""
    from bertkit.cli import say
    from bertkit.fileio import atomic_write_json

    def graph(reason: str, **more) -> Decision:
        return Decision(requested="auto", chosen="graph", reason=reason, **more)

    if eval_only:
        return graph("--eval-only: no training")
    if deterministic:
        return graph("--deterministic: XLA ignores the dropout masks' seeds")
    if refusals:
        return graph(f"a layer refuses XLA: {', '.join(refusals)}")
    if replicas > 1:
        return graph(f"{replicas} replicas: the probe measures one device")
    if not example_lengths:
        return graph("no example lengths known (Trainer.compile got no example_lengths)")
    if steps < PROBE_MIN_STEPS:
        return graph(f"a short run ({steps} steps < {PROBE_MIN_STEPS}): XLA's compilations cannot pay off")
    lengths = len(set(example_lengths))  # each batch is padded to its longest example
    if steps < MIN_STEPS_PER_LENGTH * lengths:
        return graph(f"{steps} steps over {lengths} padded lengths: under {MIN_STEPS_PER_LENGTH} steps per length, "
                     f"XLA's compilations cannot pay off")
    if not bert_dir:
        return graph("no encoder directory to probe")
    length = probe_length(example_lengths)
    workload = {"encoder": encoder or {"bert_dir": str(bert_dir)}, "batch_size": int(batch_size), "length": length,
                "precision": "mixed" if mixed_precision else "float32", "probe": PROBE_METHOD}
    if first_token_only:  # only then: the whole encoder's entries keep the keys they were cached under
        workload["last_block"] = "first_token"
    machine_info = machine()
    key, path = _key(machine_info, workload), cache_path()
    cache = _read_cache(path)
    entry = cache.get(key)
    if isinstance(entry, dict) and {"graph_step_s", "xla_step_s", "xla_compile_s"} <= set(entry):
        figures, source = entry, f"measured {entry.get('measured', '?')}, cached in {path}"
    else:
        say(f"train step: measuring the graph and XLA steps at {batch_size} x {length} on this machine (once: "
            f"cached in {path})")
        start = time.perf_counter()
        figures = probe(bert_dir, batch_size, length, mixed_precision=mixed_precision,
                        first_token_only=first_token_only)
        figures = {**figures, "probe_s": round(time.perf_counter() - start, 1),
                   "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info, "workload": workload}
        try:
            atomic_write_json(path, {**_read_cache(path), key: figures})
        except OSError as error:
            say_warning(f"{path}: cannot cache the probe ({error.strerror or error}); it will run again next time")
        source = f"measured now in {figures['probe_s']} s"
    chosen, estimates = decide(figures, steps, lengths)
    probe_figures = {k: figures[k] for k in ("graph_step_s", "xla_step_s", "xla_compile_s") if k in figures}
    reason = (f"{'XLA' if chosen == 'xla' else 'graph'} faster over this run: estimate {estimates['xla_estimate_s']} s "
              f"with XLA ({estimates['padded_lengths']} compilations) against {estimates['graph_estimate_s']} s "
              f"(steps at {batch_size} x {length}: graph {probe_figures['graph_step_s']} s, XLA "
              f"{probe_figures['xla_step_s']} s; {source})")
    return Decision(requested="auto", chosen=chosen, reason=reason, probe=probe_figures, probe_length=length,
                    **estimates)


# ------------------------------------------------------------------------------------------------ the probe's CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bertkit.train_step",
        description="Time the graph and the XLA train step of an encoder under a two-class head on random token ids; "
                    "prints one JSON line (what --train-step auto runs once per machine and workload).")
    parser.add_argument("--bert-dir", required=True, help="the encoder (as --bert-dir of a recipe)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128, help="padded sequence length")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--first-token-only", action="store_true",
                        help="the encoder's last block for [CLS] alone (bertkit.encoder.first_token_encoder)")
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS)
    parser.add_argument("--steps", type=int, default=TIMED_STEPS)
    args = parser.parse_args(argv)
    if min(args.batch_size, args.length, args.steps) < 1 or args.warmup < 1:
        raise SystemExit("--batch-size, --length, --steps and --warmup must be at least 1")
    from bertkit.encoder import resolve_bert_dir

    try:
        figures = measure(resolve_bert_dir(args.bert_dir), args.batch_size, args.length,
                          mixed_precision=args.mixed_precision, first_token_only=args.first_token_only,
                          warmup=args.warmup, steps=args.steps)
    except (BertkitError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    from bertkit.cli import exit_process

    exit_process(main())  # without the interpreter's teardown of TensorFlow (see there)
