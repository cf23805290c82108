"""int8 serving against float32: each run's test set through its recipe's ``predict``, once with the run's float32
Keras model (``bertkit.recipe.load_run``) and once with its dynamic-range int8 TensorFlow Lite encoder
(``bertkit.quantize.load_int8_run``; written first when the run has no ``export_int8/``), or with ``--precision
float32`` its float32 TensorFlow Lite encoder (``load_tflite_run(..., precision="float32")``, ``export_float32/``)
on the same interpreter. Run it alone on the machine:

    flock /tmp/bertkit_cpu.lock python benchmarks/bench_int8.py --run-dir runs/int8/sentiment \\
        --run-dir runs/int8/sequence_labeling --json runs/int8/bench.json

One table line per run: recipe, test examples, float32 Keras and TensorFlow Lite (int8, or float32 on LiteRT)
sequences/s, the speed-up, the recipe's headline metric with each (its ``score``) and the difference in points
(percentage points: headline / HEADLINE_SCALE x 100). Both predict the same examples with the same batch size after
an untimed warm-up (three batches); the time is the whole ``predict`` (tokenization, the model, decoding: what a
caller waits for), the best of ``--repeats`` passes. A second table times the encoder alone on random token ids of a
fixed shape (no tokenization, no head), which isolates the TensorFlow Lite kernels from the Python work both paths
share.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--precision", choices=("int8", "float32"), default="int8",
                        help="the TensorFlow Lite export measured against the float32 Keras model")
    parser.add_argument("--run-dir", action="append", required=True, type=Path,
                        help="a finished run with a labelled test file (repeat for several runs)")
    parser.add_argument("--max-examples", type=int, default=None, metavar="N",
                        help="only the first N test examples")
    parser.add_argument("--batch-size", type=int, default=32, help="prediction batch size (both models)")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="TensorFlow Lite threads (default: every CPU this process may use)")
    parser.add_argument("--tokens-per-invoke", type=int, default=None, metavar="N",
                        help="tokens per interpreter call of the TensorFlow Lite encoder (default: "
                             "bertkit.quantize.TOKENS_PER_INVOKE)")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per model; the fastest counts")
    parser.add_argument("--encoder-shape", default="32x128", metavar="BxS",
                        help="batch x tokens of the encoder-only timing ('none' skips it)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or any(
            n is not None and n < 1 for n in (args.max_examples, args.tokens_per_invoke)):
        parser.error("--batch-size, --repeats, --max-examples and --tokens-per-invoke must be at least 1")
    return args


def cpu_description() -> str:
    """``AMD EPYC, AVX2, 2 CPUs``: the CPU model and its widest vector extension, from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    vector = next((name.upper().replace("_", "-") for name in ("avx512_vnni", "avx512f", "avx_vnni", "avx2", "avx")
                   if name in flags), "no AVX")
    return f"{model}, {vector}, {len(os.sched_getaffinity(0))} CPUs"


def timed_predict(predictor, examples, batch_size: int, repeats: int):
    """``(best seconds, predictions)`` of ``repeats`` passes after an untimed warm-up: three batches of examples
    spread over the test set (``predict`` sorts by length, so three lengths), enough for Keras to trace its predict
    function for variable shapes instead of once per new shape inside the timed pass."""
    spread = examples[::max(1, len(examples) // (3 * batch_size))][:3 * batch_size]
    predictor.predict_examples(spread, batch_size=batch_size)
    best, predictions = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        predictions = predictor.predict_examples(examples, batch_size=batch_size)
        best = min(best, time.perf_counter() - started)
    return best, predictions


def encoder_timing(fp32_encoder, lite_encoder, lite: str, shape: tuple[int, int], vocab_size: int, repeats: int
                   ) -> dict:
    """Milliseconds per batch of the float32 Keras encoder and the TFLite one (``bertkit.quantize.tflite_encoder``,
    named ``lite``: in calls of at most its ``tokens_per_invoke`` tokens, as ``predict`` runs it) on the same random
    ids (past the special tokens, within the vocabulary)."""
    import numpy as np

    batch, length = shape
    rng = np.random.default_rng(0)
    token_ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(batch, length)).astype(np.int32)
    segment_ids = np.zeros_like(token_ids)
    runs = {"fp32": lambda: fp32_encoder.predict_on_batch([token_ids, segment_ids]),
            lite: lambda: lite_encoder.hidden_states(token_ids, segment_ids)}
    out = {}
    for name, run in runs.items():
        run()  # warm-up (tracing, allocation)
        times = []
        for _ in range(max(repeats, 3)):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        out[f"{name}_ms"] = round(min(times) * 1000, 1)
    out["speedup"] = round(out["fp32_ms"] / out[f"{lite}_ms"], 2)
    return out


def bench_run(run_dir: Path, args) -> dict:
    from bertkit.errors import ConfigError, DataError
    from bertkit.quantize import DEFAULT_EXPORTS, TOKENS_PER_INVOKE, export_tflite_run, load_tflite_run
    from bertkit.recipe import load_run

    fp32 = load_run(run_dir, batch_size=args.batch_size)
    recipe = fp32.recipe
    test_file = getattr(fp32.args, "test_file", None)
    if not test_file:
        raise ConfigError(f"{run_dir}: the run has no test file (run_config.json args.test_file)")
    examples = recipe.read_examples(test_file, fp32.args)
    if not recipe.is_labelled(examples):
        raise DataError(test_file, None, None, "no gold answers: the benchmark scores both models on it")
    examples = examples[:args.max_examples] if args.max_examples else examples
    export, lite = run_dir / DEFAULT_EXPORTS[args.precision], lite_name(args.precision)
    if not export.is_file():
        print(f"{run_dir}: no {args.precision} export yet, writing {export}", file=sys.stderr, flush=True)
        export_tflite_run(run_dir, precision=args.precision)
    tokens_per_invoke = args.tokens_per_invoke or TOKENS_PER_INVOKE
    lite_run = load_tflite_run(run_dir, precision=args.precision, num_threads=args.num_threads,
                               batch_size=args.batch_size, tokens_per_invoke=tokens_per_invoke)
    lite_model = lite_run.model.get_layer("encoder").model

    figures = {"recipe": recipe.name, "run_dir": str(run_dir), "test_file": str(test_file),
               "examples": len(examples), "headline": recipe.HEADLINE, "threads": lite_model.num_threads,
               "precision": args.precision, "lite": lite, "tokens_per_invoke": tokens_per_invoke,
               "fully_connected_weights": lite_model.metadata.get("fully_connected_weights"),
               "delegate_nodes": lite_model.delegate_nodes(),
               f"{lite}_mb": round(export.stat().st_size / 2**20, 1)}
    for name, predictor in (("fp32", fp32), (lite, lite_run)):
        seconds, predictions = timed_predict(predictor, examples, args.batch_size, args.repeats)
        metrics = recipe.score(examples, predictions, predictor.head)
        figures[f"{name}_seq_per_s"] = round(len(examples) / seconds, 2)
        figures[f"{name}_headline"] = float(metrics[recipe.HEADLINE])
    figures["speedup"] = round(figures[f"{lite}_seq_per_s"] / figures["fp32_seq_per_s"], 2)
    figures["difference_points"] = round(
        (figures[f"{lite}_headline"] - figures["fp32_headline"]) / recipe.headline_scale * 100, 2)
    if args.encoder_shape != "none":
        batch, length = (int(x) for x in args.encoder_shape.lower().split("x"))
        figures["encoder_only"] = {"shape": [batch, length], **encoder_timing(
            fp32.model.get_layer("encoder"), lite_run.model.get_layer("encoder"), lite, (batch, length),
            len(fp32.tokenizer.vocab), args.repeats)}
    return figures


def lite_name(precision: str) -> str:
    """The figures' name of the TensorFlow Lite side: ``int8``, or ``litert_fp32`` (``fp32`` is the Keras model)."""
    return "int8" if precision == "int8" else "litert_fp32"


def table(results: list[dict], precision: str) -> str:
    lite = lite_name(precision)
    lines = [f"| recipe | examples | fp32 seq/s | {lite} seq/s | speed-up | fp32 headline | {lite} headline | "
             f"difference (points) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['recipe']} | {r['examples']} | {r['fp32_seq_per_s']:.1f} | {r[f'{lite}_seq_per_s']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['headline']} {r['fp32_headline']:.4f} | "
                     f"{r['headline']} {r[f'{lite}_headline']:.4f} | {r['difference_points']:+.2f} |")
    encoder = [r for r in results if "encoder_only" in r]
    if encoder:
        lines += ["", f"| recipe | encoder alone, batch | fp32 ms | {lite} ms | speed-up |", "|---|---|---|---|---|"]
        for r in encoder:
            e = r["encoder_only"]
            lines.append(f"| {r['recipe']} | {e['shape'][0]} x {e['shape'][1]} tokens | {e['fp32_ms']} | "
                         f"{e[f'{lite}_ms']} | {e['speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from bertkit.cli import run_main

    args = parse_args(argv)

    def body():
        import tensorflow as tf

        results = [bench_run(run_dir, args) for run_dir in args.run_dir]
        interpreter, cpu = f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}", cpu_description()
        print(f"TensorFlow {tf.__version__}, {args.precision} TensorFlow Lite on {interpreter}; {cpu}")
        print(table(results, args.precision))
        if args.json:
            from bertkit.fileio import atomic_write_json

            atomic_write_json(args.json, {
                "date": datetime.date.today().isoformat(), "cpu": cpu,
                "tensorflow": tf.__version__, "python": platform.python_version(),
                "interpreter": interpreter, "precision": args.precision,
                "batch_size": args.batch_size, "repeats": args.repeats, "runs": results})

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
