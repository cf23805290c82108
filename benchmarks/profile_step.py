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
``getrusage``; at most the CPU count), the time the Python thread spent between calls (input conversion, tensor
deletion), and the op time per part of the model (attention, feed-forward, layer norms, residual dropout,
embeddings, optimizer, head) in the forward and the backward pass, matrix products apart, from the ops' names.

Op time is summed over TensorFlow's threads, so with ops running side by side (inter-op parallelism) it exceeds the
wall time and a part's share stretches with what ran beside it. ``--inter-op-threads 1`` runs one op at a time (each
still on every core): the op times then add up to the wall time, less the executor's gaps between ops, and the
matrix products' GFLOP/s (the model's FLOPs over their op time) says how near the GEMM peak they run.

With ``--train-step xla`` the step is one XLA cluster, which TensorFlow's trace shows as one op; the script then
sets ``--xla_cpu_enable_xprof_traceme`` (appended to ``XLA_FLAGS`` before TensorFlow loads) so that XLA's CPU runtime
traces each HLO instruction it runs, and prints their time per opcode (``dot``: the matrix products, on Eigen's
kernels; ``call``: fusions split across threads; ``reduce-window``: reductions XLA splits for accuracy; ...).

Run it alone on the machine:

    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py                 # train 32 x 128, infer 64 x 128
    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py --max-isa avx2  # kernels capped at AVX2
    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py --full-last-block --inter-op-threads 1
    flock /tmp/bertkit_cpu.lock python benchmarks/profile_step.py --full-last-block --train-step xla --only train
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# beside this script (its folder is on sys.path)
from bench_peer import ISA_CAPS, forward_flops_per_sequence, random_batches, training_labels

# A TensorFlow op event in the trace is named "<op name>:<op type>".
MATMUL_TYPES = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul", "_MklBatchMatMulV2",
                "_MklFusedMatMul", "_MklNativeFusedMatMul", "_FusedMatMul", "Einsum", "_MklEinsum",
                "_MklFusedBatchMatMulV2")
XLA_TYPES = ("_XlaRun", "XlaLaunch", "_XlaCompile", "XlaLaunchV2")
CALL_MARK = "bertkit_profiled_call"  # a trace annotation around each profiled call
XLA_TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
# The model's parts, from the op names Keras gives (keras-bert's layer names; the first match wins).
PARTS = (("attention layer norm", r"Encoder-\d+-MultiHeadSelfAttention-Norm"),
         ("feed-forward layer norm", r"Encoder-\d+-FeedForward-Norm"),
         ("residual dropout and add", r"Encoder-\d+-(MultiHeadSelfAttention|FeedForward)-(Dropout|Add)"),
         ("attention", r"Encoder-\d+-MultiHeadSelfAttention"),
         ("feed-forward", r"Encoder-\d+-FeedForward"),
         ("embeddings", r"Embedding"),
         ("optimizer", r"(^|/)AdamW?(/|$)"),
         ("head and loss", r"logits|loss|crossentropy|Pooler|pooler|FirstPosition|first_position"))
# An HLO instruction's trace event is named "<opcode>.<number>" ("dot.8245", "reduce-window.158").
HLO_EVENT = re.compile(r"^([a-z][a-z0-9-]*)\.[0-9]+(\.clone)?$")


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
    parser.add_argument("--optimizer-updates", choices=("xla", "plain"), default="xla",
                        help="AdamW's updates: xla, as a run of at least bertkit.optim.XLA_UPDATES_MIN_STEPS steps "
                             "takes them; plain: Keras's graph ops, as a shorter run does")
    parser.add_argument("--full-last-block", action="store_true",
                        help="the encoder's last block for every position (as bench_speed.py --full-last-block), "
                             "not for [CLS] alone as the sentiment recipe's classifier")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow's inter-op threads (0: its default, as the recipes run; 1: one op at a time, "
                             "so that op times add up to the wall time)")
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


def op_part(op_name: str) -> tuple[str, str]:
    """``(part, pass)`` of a TensorFlow op from its name: the model part (:data:`PARTS`, else ``other``: the
    executor's own events, inputs) and ``forward`` or ``backward`` (a gradient op: ``gradient_tape/`` in the name);
    the optimizer's ops are ``update``."""
    part = next((label for label, pattern in PARTS if re.search(pattern, op_name)), "other")
    if part == "optimizer":
        return part, "update"
    return part, "backward" if "gradient_tape/" in op_name else "forward"


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
    between, parts = collections.Counter(), collections.Counter()
    hlo_seconds, hlo_calls = collections.Counter(), collections.Counter()
    for line in host.lines:
        if line.name == "python":
            spans = [(e.offset_ps, e.offset_ps + e.duration_ps) for e in line.events
                     if names[e.metadata_id].name == CALL_MARK]
            for event in line.events:
                inside = any(start <= event.offset_ps < end for start, end in spans)
                if not inside and event.duration_ps > 1e9:  # over 1 ms
                    between[names[event.metadata_id].name] += event.duration_ps / 1e12
            continue
        for event, own in _self_times(line.events):
            name = names[event.metadata_id].name
            hlo = HLO_EVENT.match(name)
            if hlo:  # XLA's CPU runtime, with XLA_TRACE_FLAG: on its own threads, nested in the cluster's op
                hlo_seconds[hlo.group(1)] += own / 1e12
                hlo_calls[hlo.group(1)] += 1
            elif line.name.startswith("tf_") and ":" in name:
                op_name, op_type = name.rsplit(":", 1)
                seconds[op_type] += own / 1e12
                calls[op_type] += 1
                parts[(*op_part(op_name), "matmul" if op_kind(op_type) == "matmul" else "other")] += own / 1e12
    return {"seconds": seconds, "calls": calls, "between": between, "parts": parts,
            "hlo_seconds": hlo_seconds, "hlo_calls": hlo_calls}


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


def summary(name: str, figures: dict, steps: int, batch: int, top: int, matmul_flops: float) -> dict:
    """Print and return one profile's figures; ``matmul_flops``: the matrix products' FLOPs per call."""
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
    matmul_gflops = matmul_flops / 1e9 / (kinds["matmul"] / steps) if kinds["matmul"] else None
    if matmul_gflops:
        print(f"  matrix products: {matmul_flops / 1e9:.1f} GFLOP per call, {matmul_gflops:.0f} GFLOP/s of their op "
              f"time (near the truth with --inter-op-threads 1; lower when they share the cores)")
    print(f"  top {top} op types (self time per call, share, calls per call):")
    for op_type, value in seconds.most_common(top):
        print(f"    {op_type:<28} {value / steps:7.3f} s {100 * value / total:5.1f}% {calls[op_type] / steps:7.1f}"
              f"  {op_kind(op_type)}")
    parts = collections.defaultdict(dict)
    for (part, direction, kind), value in figures["parts"].items():
        parts[part][f"{direction} {kind}"] = value / steps
    if parts:
        columns = [c for c in ("forward matmul", "forward other", "backward matmul", "backward other", "update other")
                   if any(c in row for row in parts.values())]
        print("  op time per part of the model, s per call (matmul: matrix products; other: the rest):")
        print("    " + f"{'part':<26}" + "".join(f"{c:>17}" for c in columns))
        for part, row in sorted(parts.items(), key=lambda item: -sum(item[1].values())):
            print("    " + f"{part:<26}" + "".join(f"{row.get(c, 0.0):17.3f}" for c in columns))
    hlo_total = sum(figures["hlo_seconds"].values())
    hlo = {}
    if hlo_total:
        print(f"  inside the XLA cluster: {hlo_total / steps:.3f} s per call of traced HLO instructions, per opcode "
              "(self time per call, share, calls per call):")
        for opcode, value in figures["hlo_seconds"].most_common(top):
            hlo[opcode] = {"seconds_per_call": value / steps, "calls_per_call": figures["hlo_calls"][opcode] / steps}
            print(f"    {opcode:<28} {value / steps:7.3f} s {100 * value / hlo_total:5.1f}% "
                  f"{figures['hlo_calls'][opcode] / steps:7.1f}")
        if figures["hlo_seconds"]["dot"]:
            print(f"  XLA's dot instructions: {matmul_flops / 1e9 / (figures['hlo_seconds']['dot'] / steps):.0f} "
                  "GFLOP/s of their time")
    between = {k: v / steps for k, v in figures["between"].most_common(5)}
    if between:
        print("  Python thread between calls, per call: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in between.items()))
    return {"seconds_per_call": figures["seconds_per_call"], "seq_per_s": batch / figures["seconds_per_call"],
            "busy_cores": figures["busy_cores"], "op_seconds_per_call": total / steps,
            "kind_share": {k: v / total for k, v in kinds.items()},
            "matmul_gflop_per_call": matmul_flops / 1e9, "matmul_gflops_of_op_time": matmul_gflops,
            "op_types": {k: {"seconds_per_call": v / steps, "calls_per_call": calls[k] / steps}
                         for k, v in seconds.most_common()},
            "parts": dict(parts), "xla_hlo_opcodes": hlo,
            "python_between_calls": between}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("error: --steps and --warmup must be at least 1")
    if args.inter_op_threads < 0:
        raise SystemExit("error: --inter-op-threads must be 0 (TensorFlow's default) or more")
    env = dict(ISA_CAPS[args.max_isa])
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if args.train_step == "xla" and args.only != "infer" and XLA_TRACE_FLAG not in xla_flags.split():
        env["XLA_FLAGS"] = f"{xla_flags} {XLA_TRACE_FLAG}".strip()
    if any(os.environ.get(k) != v for k, v in env.items()):  # both must be set before TensorFlow loads
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])],
                               env={**os.environ, **env})
    import tensorflow as tf
    from bench_speed import build_classifier  # beside this script, on sys.path as the script's folder

    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    import bertkit
    from bertkit.encoder import default_bert_dir
    from bertkit.optim import build_optimizer
    from bertkit.train_step import fit_step

    print(f"bertkit {bertkit.__version__}, TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, "
          f"max ISA {args.max_isa}, train step {args.train_step}, {args.optimizer_updates} AdamW updates, last block "
          f"{'every position' if args.full_last_block else '[CLS] only'}, inter-op threads "
          f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'}", flush=True)
    bert_dir = default_bert_dir()
    config = json.loads((bert_dir / "bert_config.json").read_text(encoding="utf-8"))
    forward_flops = forward_flops_per_sequence(config, args.seq_len, full_last_block=args.full_last_block)
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
                                       args.infer_batch, args.top, args.infer_batch * forward_flops)
        if args.only in ("both", "train"):
            model.compile(optimizer=build_optimizer(2e-5, 0.01, jit_compile=args.optimizer_updates == "xla"),
                          loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=args.train_step == "xla")
            ids, seg = token_ids(args.train_batch)
            labels = tf.constant(training_labels(args.train_batch))
            figures = profile(fit_step(model, [((ids, seg), labels)]), args.steps, args.warmup, Path(tmp) / "train")
            results["train"] = summary(f"training {args.train_batch} x {args.seq_len} ({args.train_step} step)",
                                       figures, args.steps, args.train_batch, args.top,
                                       3 * args.train_batch * forward_flops)
    if args.json:
        from bertkit.fileio import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
