"""Training and inference speed of the default encoder (a [CLS] classifier head on ``load_encoder(default_bert_dir())``,
its last block run for [CLS] alone as in the sentiment recipe; ``--full-last-block``: for every position).

Prints sequences/s and tokens/s at fixed shapes (train: batch 32 x 128 tokens with bertkit's AdamW; inference:
batch 64 x 128) and on real SST-2 sentences with dynamic padding (each batch padded to its own longest sentence)
versus fixed length 128, plus the process's peak resident memory. Run it alone on the machine:

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_speed.py                # everything, float32
    flock /tmp/bertkit_cpu.lock python benchmarks/bench_speed.py --only infer --precision bfloat16

Inputs are tokenized before timing (tokenization is not part of the figures). Each figure is the mean over
``--steps`` timed calls after ``--warmup`` untimed ones (the first call traces/compiles). ``tokens/s`` counts
every position fed to the model (padding included); ``real tokens/s`` counts non-padding tokens only, which is what
dynamic padding improves. Optimised variants (``--precision bfloat16``, ``--jit``) are checked against the plain
float32 model on the same weights and inputs, and the maximum differences are printed with the speeds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bert-dir", help="encoder directory (default: the converted default encoder)")
    parser.add_argument("--data", help="SST-2 sentences: a JSONL file with 'text' or a TSV with 'sentence' "
                                       "(default: dev.jsonl of the SST-2 copy shipped with bertkit)")
    parser.add_argument("--only", choices=("all", "train", "infer"), default="all")
    parser.add_argument("--skip-sst2", action="store_true", help="fixed shapes only")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed calls per measurement")
    parser.add_argument("--sst2-batches", type=int, default=8,
                        help="SST-2 batches timed per measurement (after one warm-up pass over them)")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: Keras mixed_bfloat16 policy (bf16 matmuls, float32 weights and logits)")
    parser.add_argument("--jit", choices=("none", "infer", "train", "both"), default="none",
                        help="XLA-compile the inference function and/or the whole Keras train step (none: as the "
                             "recipes run by default, a TensorFlow graph; train: as --train-step xla)")
    parser.add_argument("--pad-multiple", type=int, default=None,
                        help="round dynamic batch lengths up to a multiple of this (fewer XLA recompilations; "
                             "default 16 with --jit, else 1)")
    parser.add_argument("--full-last-block", action="store_true",
                        help="run the encoder's last block for every position (the whole encoder, as the peer's "
                             "BertModel), not for [CLS] alone as the sentiment recipe's [CLS] classifier does")
    parser.add_argument("--intra-threads", type=int, default=0, help="TF intra-op threads (0: TF default)")
    parser.add_argument("--inter-threads", type=int, default=0, help="TF inter-op threads (0: TF default)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def read_sentences(path: Path) -> list[str]:
    from bertkit.fileio import iter_jsonl, read_table, require

    if path.suffix == ".jsonl":
        return [require(rec, "text", path, line) for line, rec in iter_jsonl(path)]
    return [require(row, "sentence", path, line) for line, row in read_table(path, ["sentence"])]


def build_classifier(bert_dir, num_labels: int = 2, *, full_last_block: bool = False, encoder=None):
    """``(classifier, hidden)``: [CLS] -> Dense logits on the encoder, and a model giving the encoder's hidden states
    (same layers), used to check optimised variants. As the sentiment recipe builds it, the encoder's last block
    runs for [CLS] alone (``bertkit.encoder.first_token_encoder``); ``full_last_block``: for every position, as
    the whole encoder does (and the peer's ``BertModel``). ``encoder``: a layer to use in place of ``bert_dir``'s
    Keras encoder (``bertkit.quantize.tflite_encoder``'s; with ``full_last_block`` only)."""
    import tensorflow as tf

    from bertkit.encoder import first_token_encoder, load_encoder
    from bertkit.layers import Pooler

    if encoder is not None and not full_last_block:
        raise ValueError("build_classifier: a given encoder runs its last block for every position (full_last_block)")
    encoder = encoder if encoder is not None else load_encoder(bert_dir)
    token_ids = tf.keras.Input((None,), dtype=tf.int32, name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype=tf.int32, name="segment_ids")
    hidden = encoder([token_ids, segment_ids])  # every position: what optimised variants are checked on
    first = hidden if full_last_block else first_token_encoder(encoder)([token_ids, segment_ids])
    pooled = Pooler("cls")([first, token_ids])
    logits = tf.keras.layers.Dense(num_labels, dtype="float32", name="logits",
                                   kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0))(pooled)
    return (tf.keras.Model([token_ids, segment_ids], logits, name="classifier"),
            tf.keras.Model([token_ids, segment_ids], hidden, name="hidden"))


def time_calls(call, batches, warmup: int, steps: int) -> float:
    """Seconds per call: ``warmup`` untimed calls, then ``steps`` timed ones, cycling through ``batches``."""
    for i in range(warmup):
        call(batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(steps):
        call(batches[i % len(batches)])
    return (time.perf_counter() - start) / steps


def pad_batches(encoded, batch_size: int, *, fixed_len: int | None, multiple: int = 1):
    """Batches of ``(token_ids, segment_ids)`` int32 arrays: padded to ``fixed_len``, or to each batch's longest
    rounded up to ``multiple``. Returns the batches and the count of real (non-padding) tokens in each."""
    import numpy as np

    batches, real = [], []
    for start in range(0, len(encoded) - batch_size + 1, batch_size):
        rows = encoded[start:start + batch_size]
        longest = max(len(r) for r in rows)
        length = fixed_len or -(-longest // multiple) * multiple
        ids = np.zeros((batch_size, length), np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row[:length]
        batches.append((ids, np.zeros_like(ids)))
        real.append(int(sum(min(len(r), length) for r in rows)))
    return batches, real


def report(name: str, seconds_per_batch: float, batch_size: int, positions: float, real_tokens: float, **extra):
    figures = {"name": name, "seq_per_s": batch_size / seconds_per_batch, "tokens_per_s": positions / seconds_per_batch,
               "real_tokens_per_s": real_tokens / seconds_per_batch, "seconds_per_batch": seconds_per_batch,
               "peak_rss_mb": peak_rss_mb(), **extra}
    print(f"{name:<44} {figures['seq_per_s']:8.1f} seq/s {figures['tokens_per_s']:9.0f} tok/s "
          f"{figures['real_tokens_per_s']:9.0f} real tok/s   peak RSS {figures['peak_rss_mb']:6.0f} MB"
          + "".join(f"  {k}={v:.2e}" if isinstance(v, float) else f"  {k}={v}" for k, v in extra.items()),
          flush=True)
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.intra_threads or args.inter_threads:
        import tensorflow as tf

        if args.intra_threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
        if args.inter_threads:
            tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    import numpy as np
    import tensorflow as tf

    from bertkit import datasets
    from bertkit.distribute import set_mixed_precision
    from bertkit.encoder import default_bert_dir
    from bertkit.errors import BertkitError
    from bertkit.optim import build_optimizer
    from bertkit.tokenization import Tokenizer
    from bertkit.train_step import fit_step

    try:
        bert_dir = Path(args.bert_dir) if args.bert_dir else default_bert_dir()
        data = Path(args.data) if args.data else datasets.file("sst2", "dev")
        sentences = [] if args.skip_sst2 else read_sentences(data)
        tokenizer = Tokenizer.from_bert_dir(bert_dir)
    except BertkitError as exc:
        print(exc, file=sys.stderr)
        return 2
    jit_infer = args.jit in ("infer", "both")
    jit_train = args.jit in ("train", "both")
    multiple = args.pad_multiple or (16 if args.jit != "none" else 1)
    print(f"encoder {bert_dir} | last block {'every position' if args.full_last_block else '[CLS] only'} | "
          f"precision {args.precision} | jit {args.jit} | TF {tf.__version__} | "
          f"intra/inter threads {tf.config.threading.get_intra_op_parallelism_threads()}/"
          f"{tf.config.threading.get_inter_op_parallelism_threads()} | cpus {os.cpu_count()} | "
          f"oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}", flush=True)

    rng = np.random.default_rng(0)
    seq = args.seq_len
    vocab_size = len(tokenizer.vocab)

    def synthetic(batch_size, n):
        # Random word ids (no padding) between [CLS] and [SEP]: the same work as any full-length batch.
        out = []
        for _ in range(n):
            ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(batch_size, seq), dtype=np.int32)
            ids[:, 0], ids[:, -1] = tokenizer.cls_id, tokenizer.sep_id
            out.append((ids, np.zeros_like(ids)))
        return out

    needed = args.sst2_batches * max(args.train_batch, args.infer_batch)
    encoded = [tokenizer.encode(s, max_len=seq).token_ids for s in sentences[:needed]]
    results = {"config": {k: v for k, v in vars(args).items()}, "figures": []}
    if encoded:
        lengths = np.array([len(e) for e in encoded])
        print(f"SST-2: first {len(encoded)} sentences of {data}, tokens per sentence mean {lengths.mean():.1f}, "
              f"max {lengths.max()}", flush=True)

    # A float32 reference on the same weights checks that an optimised variant computes the same function.
    reference = None
    policy = set_mixed_precision("mixed_bfloat16" if args.precision == "bfloat16" else False)
    try:
        model, model_hidden = build_classifier(bert_dir, full_last_block=args.full_last_block)
    finally:
        set_mixed_precision(False)
    if args.precision != "float32" or jit_infer:
        reference, reference_hidden = build_classifier(bert_dir, full_last_block=args.full_last_block)
        reference.set_weights(model.get_weights())

    if args.only in ("all", "infer"):
        predict = tf.function(lambda ids, seg: model([ids, seg], training=False), jit_compile=jit_infer)

        def infer(batch):
            return predict(tf.constant(batch[0]), tf.constant(batch[1])).numpy()

        check = {}
        if reference is not None:
            probe = synthetic(8, 1)[0]
            fast_hidden = tf.function(lambda ids, seg: model_hidden([ids, seg], training=False),
                                      jit_compile=jit_infer)(*map(tf.constant, probe))
            ref_hidden = reference_hidden.predict(list(probe), verbose=0)
            check = {"max_abs_diff_hidden": float(np.abs(np.asarray(fast_hidden, np.float32) - ref_hidden).max()),
                     "max_abs_diff_logits": float(np.abs(infer(probe) - reference.predict(list(probe), verbose=0)).max())}
        batches = synthetic(args.infer_batch, 2)
        sec = time_calls(infer, batches, args.warmup, args.steps)
        results["figures"].append(report(f"infer fixed {args.infer_batch}x{seq}", sec, args.infer_batch,
                                         args.infer_batch * seq, args.infer_batch * seq, **check))
        if encoded:
            for label, fixed in (("dynamic", None), (f"fixed {seq}", seq)):
                sst_batches, real = pad_batches(encoded, args.infer_batch, fixed_len=fixed, multiple=multiple)
                sst_batches, real = sst_batches[:args.sst2_batches], real[:args.sst2_batches]
                for b in sst_batches:  # warm-up: one call per distinct shape
                    infer(b)
                start = time.perf_counter()
                for b in sst_batches:
                    infer(b)
                sec = (time.perf_counter() - start) / len(sst_batches)
                positions = float(np.mean([b[0].size for b in sst_batches]))
                results["figures"].append(report(f"infer SST-2 {label} b{args.infer_batch}", sec, args.infer_batch,
                                                 positions, float(np.mean(real))))

    if args.only in ("all", "train"):
        reference = reference_hidden = None
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=build_optimizer(2e-5, 0.01), loss=loss, jit_compile=jit_train)

        def labelled(batches):
            return [(list(batch), np.arange(len(batch[0]), dtype=np.int32) % 2) for batch in batches]

        def fit_steps(batches):
            # as model.fit runs its steps (see bertkit.train_step.fit_step): one iterator over the batches, in the
            # order time_calls and the loops below pass them
            step = fit_step(model, labelled(batches))
            return lambda batch: step()

        batches = synthetic(args.train_batch, 2)
        sec = time_calls(fit_steps(batches), batches, args.warmup, args.steps)
        results["figures"].append(report(f"train fixed {args.train_batch}x{seq} AdamW", sec, args.train_batch,
                                         args.train_batch * seq, args.train_batch * seq))
        if encoded:
            for label, fixed in (("dynamic", None), (f"fixed {seq}", seq)):
                sst_batches, real = pad_batches(encoded, args.train_batch, fixed_len=fixed, multiple=multiple)
                sst_batches, real = sst_batches[:args.sst2_batches], real[:args.sst2_batches]
                train = fit_steps(sst_batches)
                for b in sst_batches:
                    train(b)
                start = time.perf_counter()
                for b in sst_batches:
                    train(b)
                sec = (time.perf_counter() - start) / len(sst_batches)
                positions = float(np.mean([b[0].size for b in sst_batches]))
                results["figures"].append(report(f"train SST-2 {label} b{args.train_batch}", sec, args.train_batch,
                                                 positions, float(np.mean(real))))

    results["peak_rss_mb"] = peak_rss_mb()
    results["policy"] = policy
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        from bertkit.fileio import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
