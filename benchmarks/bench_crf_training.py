"""CoNLL-2003 CRF tagger training speed: tensorflow-addons' CRF vs bertkit's pure-TensorFlow CRF, plain graph vs
the XLA train step (``model.compile(jit_compile=True)``), on the real sequence_labeling recipe.

Each variant runs in a fresh process (the CRF backend is chosen once per process, ``BERTKIT_CRF``) and does the same
work through the recipe contract: the default encoder, a seeded sample of the shipped CoNLL-2003 training set,
length-bucketed batches (``recipe.training_data``), bertkit's AdamW with the warmup/decay schedule, ``--epochs``
passes, then entity F1 on the first ``--dev`` dev sentences. Printed per variant: seconds per epoch (epoch 1 includes
tracing and, with XLA, one compilation per distinct padded batch shape), training sentences/s of the last epoch,
the number of distinct batch shapes, the final training loss and dev F1 (equal within noise when the backends agree).

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_crf_training.py               # 2,000 sentences, 2 epochs
    python benchmarks/bench_crf_training.py --variants pure,pure-xla --sentences 500 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"tfa": ("tfa", False), "pure": ("pure", False), "pure-xla": ("pure", True)}
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sequence_labeling"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="tfa,pure,pure-xla", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--sentences", type=int, default=2000, help="training sentences (seeded sample)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dev", type=int, default=500, help="dev sentences scored after training")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_variant(args) -> dict:
    """One variant in this process: train, time each epoch, score dev; returns the figures."""
    from bertkit.batching import sample_examples  # bertkit first: it sets TensorFlow's environment
    from bertkit.optim import build_optimizer
    from bertkit.recipe import load_recipe, parse_train_args, read_split
    from bertkit.schedules import WarmupLinearDecay
    from bertkit.tokenization import Tokenizer
    import numpy as np
    import tensorflow as tf

    backend, xla = VARIANTS[args.worker]
    recipe = load_recipe(RECIPE)
    with tempfile.TemporaryDirectory() as out:
        train_args = parse_train_args(recipe, ["--output-dir", out, "--batch-size", str(args.batch_size)])
    train = read_split(recipe, train_args.train_file, train_args, labelled=True)
    dev = read_split(recipe, train_args.dev_file, train_args, labelled=True)[:args.dev]
    tokenizer = Tokenizer.from_bert_dir(train_args.bert_dir)
    head = recipe.build_head(train, train_args, tokenizer)
    train = sample_examples(train, args.sentences, 42)
    data = recipe.training_data(recipe.encode(train, tokenizer, head), head, batch_size=args.batch_size, seed=42)
    tf.keras.utils.set_random_seed(42)
    model = recipe.build_model(train_args.bert_dir, head)
    assert model.crf is not None and model.crf.backend == backend, (model.crf, backend)
    total = args.epochs * data.steps_per_epoch
    optimizer = build_optimizer(WarmupLinearDecay(args.lr, total, total // 10), 0.01)
    model.compile(optimizer=optimizer, loss=recipe.loss(head), jit_compile=xla)
    shapes = {tuple(batch[0]["token_ids"].shape) for batch in data.dataset.take(data.steps_per_epoch)}
    seconds, loss = [], None
    for epoch in range(args.epochs):
        start = time.perf_counter()
        history = model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch, epochs=1, verbose=0)
        seconds.append(time.perf_counter() - start)
        loss = float(history.history["loss"][-1])
        print(f"  {args.worker}: epoch {epoch + 1} {seconds[-1]:.1f} s, loss {loss:.4f}", file=sys.stderr, flush=True)
    metrics = recipe.score(dev, recipe.predict(model, tokenizer, dev, head, batch_size=64), head)
    return {"variant": args.worker, "backend": backend, "xla": xla, "sentences": len(train),
            "steps_per_epoch": data.steps_per_epoch, "batch_shapes": len(shapes), "epoch_seconds": seconds,
            "last_epoch_sentences_per_s": len(train) / seconds[-1], "final_loss": loss,
            "dev_sentences": len(dev), "dev_f1": float(metrics["f1"]), "numpy": np.__version__, "tf": tf.__version__}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_variant(args)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: --variants: unknown {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    results = []
    for variant in variants:
        print(f"{variant}: training {args.sentences} sentences x {args.epochs} epoch(s) ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--worker", variant, "--sentences", str(args.sentences), "--epochs",
                   str(args.epochs), "--dev", str(args.dev), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
        environment = {**os.environ, "BERTKIT_CRF": VARIANTS[variant][0]}
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=environment)
        if done.returncode != 0:
            print(f"error: variant {variant} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<10} {'epoch s':<22} {'sent/s (last)':>13} {'shapes':>6} {'loss':>8} {'dev F1':>7}")
    for r in results:
        epochs = " / ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        print(f"{r['variant']:<10} {epochs:<22} {r['last_epoch_sentences_per_s']:>13.1f} {r['batch_shapes']:>6} "
              f"{r['final_loss']:>8.4f} {r['dev_f1']:>7.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
