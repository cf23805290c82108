"""Where a training step and an inference call of the default encoder spend their time, from TensorFlow's profiler.

The model is bench_speed.py's ([CLS] -> Dense(2) on all-MiniLM-L6-v2, bertkit's AdamW) and the train step is the one
the recipes run: Keras's train function fed from a ``tf.data`` iterator, as ``model.fit`` does
(``bertkit.train_step.fit_step``; ``--train-step xla``: the whole step XLA-compiled). After ``--warmup`` untimed
calls, ``--steps`` calls run under ``tf.profiler.experimental``; the trace (an XSpace protobuf) is read here and
each TensorFlow op's self time on TensorFlow's compute threads is summed per op type and per kind:

- ``matmul``: the matrix products (``MatMul``, ``BatchMatMul``, their oneDNN forms, ``Einsum``);
- ``XLA``: XLA-compiled clusters (the whole step with ``--train-step xla``). The graph step's AdamW updates are
  XLA kernels too since 2026-12-04 (``bertkit.optim.build_optimizer``), but TensorFlow 2.15's trace shows no
  launch op for them, only ``Start`` / ``Done`` events, one pair per weight, which land under element-wise;
- ``element-wise``: everything else (GELU, layer norms, softmax, dropout masks, bias gradients, reductions, ...).

Also printed: the wall time per call, the CPU time the process used per wall second (the cores kept busy, from
``getrusage``; at most the CPU count), and the time the Python thread spent between calls (input conversion, tensor
deletion). Run it alone on the machine:

    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py                 # train 32 x 128, infer 64 x 128
    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py --max-isa avx2  # kernels capped at AVX2
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_peer import ISA_CAPS, random_batches, training_labels  # beside this script (its folder is on sys.path)

# A TensorFlow op event in the trace is named "<op name>:<op type>".
MATMUL_TYPES = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul", "_MklBatchMatMulV2",
                "_MklFusedMatMul", "_MklNativeFusedMatMul", "_FusedMatMul", "Einsum", "_MklEinsum",
                "_MklFusedBatchMatMulV2")
XLA_TYPES = ("_XlaRun", "XlaLaunch", "_XlaCompile", "XlaLaunchV2")
CALL_MARK = "bertkit_profiled_call"  # a trace annotation around each profiled call


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", choices=("both", "train", "infer"), default="both")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (tracing, compilation)")
    parser.add_argument("--steps", type=int, default=5, help="profiled calls")
    parser.add_argument("--train-step", choices=("graph", "xla"), default="graph",
                        help="graph: the recipes' default path on this box kind; xla: the whole step compiled")
    parser.add_argument("--full-last-block", action="store_true",
                        help="the encoder's last block for every position (as bench_speed.py --full-last-block), "
                             "not for [CLS] alone as the sentiment recipe's classifier")
    parser.add_argument("--top", type=int, default=12, help="op types listed")
    parser.add_argument("--max-isa", choices=sorted(ISA_CAPS), default="native",
                        help="avx2: kernels capped at AVX2 + FMA as bench_peer.py caps them (for TensorFlow: "
                             "oneDNN's, ONEDNN_MAX_CPU_ISA; an emulation of the instruction set only; Eigen's and "
                             "XLA's kernels are not capped)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def op_kind(op_type: str) -> str:
    if op_type in MATMUL_TYPES:
        return "matmul"
    if op_type in XLA_TYPES or "xla" in op_type.lower():
        return "XLA"
    return "element-wise"


def _self_times(events):
    """``(event, self time in ps)`` for the events of one thread: each event's duration less that of the events
    nested in it."""
    events = sorted(events, key=lambda e: (e.offset_ps, -e.duration_ps))
    own = [e.duration_ps for e in events]
    stack = []
    for i, event in enumerate(events):
        while stack and events[stack[-1]].offset_ps + events[stack[-1]].duration_ps <= event.offset_ps:
            stack.pop()
        if stack:
            own[stack[-1]] -= event.duration_ps
        stack.append(i)
    return zip(events, own)


def read_trace(log_dir: Path) -> dict:
    """Per op type: self seconds and calls on TensorFlow's threads; and the Python thread's events outside the
    profiled calls (``between``: seconds by event name, events over 1 ms)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(log_dir.rglob("*.xplane.pb"))
    if not paths:
        raise SystemExit(f"error: the profiler wrote no trace under {log_dir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(paths[-1].read_bytes())
    host = next((plane for plane in space.planes if plane.name == "/host:CPU"), None)
    if host is None:
        raise SystemExit(f"error: no host CPU plane in {paths[-1]}")
    names = host.event_metadata
    seconds, calls = collections.Counter(), collections.Counter()
    between = collections.Counter()
    for line in host.lines:
        if line.name == "python":
            spans = [(e.offset_ps, e.offset_ps + e.duration_ps) for e in line.events
                     if names[e.metadata_id].name == CALL_MARK]
            for event in line.events:
                inside = any(start <= event.offset_ps < end for start, end in spans)
                if not inside and event.duration_ps > 1e9:  # over 1 ms
                    between[names[event.metadata_id].name] += event.duration_ps / 1e12
            continue
        if not line.name.startswith("tf_"):
            continue
        for event, own in _self_times(line.events):
            name = names[event.metadata_id].name
            if ":" in name:
                op_type = name.rsplit(":", 1)[1]
                seconds[op_type] += own / 1e12
                calls[op_type] += 1
    return {"seconds": seconds, "calls": calls, "between": between}


def profile(call, steps: int, warmup: int, log_dir: Path) -> dict:
    import tensorflow as tf

    for _ in range(warmup):
        call()
    # unprofiled first: wall time and busy cores without the profiler's own cost
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    tf.profiler.experimental.start(str(log_dir))
    try:
        for _ in range(steps):
            with tf.profiler.experimental.Trace(CALL_MARK):
                call()
    finally:
        tf.profiler.experimental.stop()
    trace = read_trace(log_dir)
    return {"seconds_per_call": wall / steps, "busy_cores": cpu / wall, **trace}


def summary(name: str, figures: dict, steps: int, batch: int, top: int) -> dict:
    seconds, calls = figures["seconds"], figures["calls"]
    total = sum(seconds.values()) or 1.0
    kinds = collections.Counter()
    for op_type, value in seconds.items():
        kinds[op_kind(op_type)] += value
    print(f"\n{name}: {figures['seconds_per_call']:.3f} s per call ({batch / figures['seconds_per_call']:.1f} seq/s), "
          f"{figures['busy_cores']:.2f} of {os.cpu_count()} cores busy; op time on TensorFlow's threads "
          f"{total / steps:.3f} s per call", flush=True)
    for kind in ("matmul", "element-wise", "XLA"):
        print(f"  {kind:<13} {kinds[kind] / steps:7.3f} s per call  {100 * kinds[kind] / total:5.1f}%")
    print(f"  top {top} op types (self time per call, share, calls per call):")
    for op_type, value in seconds.most_common(top):
        print(f"    {op_type:<28} {value / steps:7.3f} s {100 * value / total:5.1f}% {calls[op_type] / steps:7.1f}"
              f"  {op_kind(op_type)}")
    between = {k: v / steps for k, v in figures["between"].most_common(5)}
    if between:
        print("  Python thread between calls, per call: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in between.items()))
    return {"seconds_per_call": figures["seconds_per_call"], "seq_per_s": batch / figures["seconds_per_call"],
            "busy_cores": figures["busy_cores"], "op_seconds_per_call": total / steps,
            "kind_share": {k: v / total for k, v in kinds.items()},
            "op_types": {k: {"seconds_per_call": v / steps, "calls_per_call": calls[k] / steps}
                         for k, v in seconds.most_common()},
            "python_between_calls": between}


def main(argv=None) -> int:
    args = parse_args(argv)
    caps = ISA_CAPS[args.max_isa]
    if any(os.environ.get(k) != v for k, v in caps.items()):  # the cap must be set before TensorFlow loads
        env = {**os.environ, **caps}
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])], env=env)
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("error: --steps and --warmup must be at least 1")
    import tensorflow as tf
    from bench_speed import build_classifier  # beside this script, on sys.path as the script's folder

    import bertkit
    from bertkit.encoder import default_bert_dir
    from bertkit.optim import build_optimizer
    from bertkit.train_step import fit_step

    print(f"bertkit {bertkit.__version__}, TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, "
          f"max ISA {args.max_isa}, train step {args.train_step}, last block "
          f"{'every position' if args.full_last_block else '[CLS] only'}", flush=True)
    bert_dir = default_bert_dir()
    model, _ = build_classifier(bert_dir, full_last_block=args.full_last_block)

    def token_ids(batch):
        ids = tf.constant(random_batches(bert_dir / "vocab.txt", batch, args.seq_len, count=1)[0])
        return ids, tf.zeros_like(ids)

    results = {"config": vars(args), "tensorflow": tf.__version__}
    with tempfile.TemporaryDirectory(prefix="bertkit-profile-") as tmp:
        if args.only in ("both", "infer"):
            predict = tf.function(lambda ids, seg: model([ids, seg], training=False))
            ids, seg = token_ids(args.infer_batch)
            figures = profile(lambda: predict(ids, seg).numpy(), args.steps, args.warmup, Path(tmp) / "infer")
            results["infer"] = summary(f"inference {args.infer_batch} x {args.seq_len}", figures, args.steps,
                                       args.infer_batch, args.top)
        if args.only in ("both", "train"):
            model.compile(optimizer=build_optimizer(2e-5, 0.01),
                          loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=args.train_step == "xla")
            ids, seg = token_ids(args.train_batch)
            labels = tf.constant(training_labels(args.train_batch))
            figures = profile(fit_step(model, [((ids, seg), labels)]), args.steps, args.warmup, Path(tmp) / "train")
            results["train"] = summary(f"training {args.train_batch} x {args.seq_len} ({args.train_step} step)",
                                       figures, args.steps, args.train_batch, args.top)
    if args.json:
        from bertkit.fileio import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
