"""CRF train-step speed: tensorflow-addons' CRF vs bertkit's pure-TensorFlow CRF, plain graph and XLA.

An encoder-free toy tagger (random features -> Dense(num_tags) -> CRF) trained with Adam on fixed random data, so
the time is the CRF's (forward algorithm + gradient) plus a small Dense. Each variant starts from the same weights;
a step is ``tf.function`` (``jit_compile=True`` for XLA) of: forward, ``-mean(log_likelihood)``, gradient, Adam
update. Tracing and XLA compilation happen in one warm-up step, not timed. Also times Viterbi decoding of a batch.

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_crf.py            # batch 32, 40 steps, 30 tags, length 64
    python benchmarks/bench_crf.py --help
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40, help="timed train steps per variant")
    parser.add_argument("--num-tags", type=int, default=30)
    parser.add_argument("--length", type=int, default=64, help="padded sequence length")
    parser.add_argument("--features", type=int, default=128, help="input width of the Dense layer")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def make_data(args):
    import numpy as np
    rng = np.random.default_rng(args.seed)
    shape = (args.steps, args.batch_size, args.length)
    features = rng.normal(size=shape + (args.features,)).astype(np.float32)
    tags = rng.integers(0, args.num_tags, size=shape).astype(np.int32)
    lengths = rng.integers(1, args.length + 1, size=shape[:2]).astype(np.int32)
    lengths[:, 0] = args.length   # every batch has a full-length row (and so the padded length)
    return features, tags, lengths


def run_variant(args, backend: str, jit: bool, data) -> dict:
    import tensorflow as tf

    from bertkit.crf import CRF
    features, tags, lengths = data
    tf.keras.utils.set_random_seed(args.seed)
    dense = tf.keras.layers.Dense(args.num_tags)
    dense.build((None, None, args.features))
    crf = CRF(args.num_tags, lr_multiplier=200.0, backend=backend)
    crf.build(None)
    variables = dense.trainable_variables + [crf.scaled_transitions]
    optimizer = tf.keras.optimizers.Adam(1e-3)
    optimizer.build(variables)

    @tf.function(jit_compile=jit)
    def train_step(x, y, n):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(crf.log_likelihood(dense(x), y, n))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(jit_compile=jit)
    def decode(x, n):
        return crf(dense(x), n)

    batches = [(tf.constant(features[i]), tf.constant(tags[i]), tf.constant(lengths[i])) for i in range(args.steps)]
    start = time.perf_counter()
    train_step(*batches[0]).numpy()   # trace (+ compile), not timed
    warmup = time.perf_counter() - start
    step_times, losses = [], []
    total_start = time.perf_counter()
    for x, y, n in batches:
        start = time.perf_counter()
        losses.append(float(train_step(x, y, n).numpy()))
        step_times.append(time.perf_counter() - start)
    total = time.perf_counter() - total_start
    decode(batches[0][0], batches[0][2]).numpy()
    decode_times = []
    for x, _, n in batches[:10]:
        start = time.perf_counter()
        decode(x, n).numpy()
        decode_times.append(time.perf_counter() - start)
    return {"warmup_s": warmup, "total_s": total, "median_ms": 1000 * statistics.median(step_times),
            "decode_ms": 1000 * statistics.median(decode_times), "first_loss": losses[0], "last_loss": losses[-1]}


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    from bertkit.crf import tfa_available
    data = make_data(args)
    variants = [("pure", False, "pure, graph"), ("pure", True, "pure, XLA")]
    if tfa_available():
        variants.insert(0, ("tfa", False, "tfa, graph"))
    print(f"TF {tf.__version__}; batch {args.batch_size}, {args.steps} steps, {args.num_tags} tags, length "
          f"{args.length}, Dense {args.features}->{args.num_tags} -> CRF, Adam", flush=True)
    results = {}
    for backend, jit, label in variants:
        try:
            results[label] = run_variant(args, backend, jit, data)
        except Exception as error:   # e.g. an op XLA cannot compile
            print(f"{label}: FAILED {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
    baseline = results.get("tfa, graph") or results.get("pure, graph")
    print(f"| variant | {args.steps} steps (s) | median step (ms) | speed-up | decode batch (ms) | warm-up (s) | "
          f"loss first -> last |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['total_s']:.2f} | {r['median_ms']:.1f} | {baseline['total_s'] / r['total_s']:.2f}x | "
              f"{r['decode_ms']:.1f} | {r['warmup_s']:.1f} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} |")
    if "tfa, graph" in results:
        print("(tfa, XLA: not measured: tfa's CRF does not compile under XLA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
