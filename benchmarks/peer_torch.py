"""The Hugging Face transformers + torch side of ``bench_peer.py``: the same encoder folder, shapes, head, optimizer
settings, token ids and threads as bertkit's side, in float32. Runs in the peer venv (``requirements-bench.txt``),
started by ``bench_peer.py`` once per round; prints one JSON line.

    .venv-bench/bin/python benchmarks/peer_torch.py --model-dir DIR [--attention-dropout 0] [workload options]
    .venv-bench/bin/python benchmarks/peer_torch.py --model-dir DIR --gemm      # torch's float32 GEMM peak

The model is ``BertModel`` (no pooler: the head reads the [CLS] hidden state, as bertkit's ``Pooler("cls")``) under
one ``Linear(hidden, 2)`` (Glorot-uniform, zero bias, as bench_speed.py's Dense). ``--attention-dropout`` overrides
the config's ``attention_probs_dropout_prob`` (0.1, which bertkit's encoder applies too). Training:
``torch.optim.AdamW`` with the driver's settings, no weight decay on LayerNorm and bias weights (bertkit's rule),
``clip_grad_norm_`` to 1.0, cross-entropy on the logits. Inference: ``eval()`` mode
under ``torch.inference_mode()``. Both get an all-ones attention mask and zero token types, as a real batch would.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench_peer import (ADAM_EPSILON, CLIP_GLOBAL_NORM, LEARNING_RATE, NUM_LABELS, WEIGHT_DECAY, BenchError,
                        add_workload_args, best_gemm_gflops, check_workload, emit, measure, note, training_labels)

NO_DECAY = ("LayerNorm", "bias")  # Hugging Face parameter names; bertkit.optim.NO_DECAY_PATTERNS in torch's naming


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="the Hugging Face BERT folder (config.json, weights)")
    parser.add_argument("--attention-dropout", type=float, default=None,
                        help="attention_probs_dropout_prob (default: the config's)")
    parser.add_argument("--gemm", action="store_true", help="measure torch's float32 GEMM peak instead")
    short = parser.add_argument_group("--short-run (bench_short_run.py): a whole fine-tuning run on text files")
    short.add_argument("--short-run", action="store_true")
    short.add_argument("--train-file")
    short.add_argument("--dev-file")
    short.add_argument("--max-len", type=int, default=64)
    short.add_argument("--batch-size", type=int, default=32)
    short.add_argument("--eval-batch-size", type=int, default=64)
    short.add_argument("--lr", type=float, default=1e-4)
    short.add_argument("--warmup-ratio", type=float, default=0.1)
    short.add_argument("--seed", type=int, default=42)
    add_workload_args(parser)
    return parser.parse_args(argv)


def import_torch(threads: int):
    """torch with ``threads`` intra-op and inter-op threads, set before it runs anything."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    return torch


def build_classifier(torch, model_dir: str, attention_dropout: float | None, num_labels: int = NUM_LABELS):
    """``(classifier, config)``: ``classifier(ids, mask, token_types)`` -> logits from the [CLS] hidden state."""
    import transformers
    from transformers import BertConfig, BertModel

    transformers.logging.set_verbosity_error()  # the load report lists the unused pooler weights
    transformers.logging.disable_progress_bar()
    overrides = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    config = BertConfig.from_pretrained(model_dir, **overrides)
    encoder = BertModel.from_pretrained(model_dir, config=config, add_pooling_layer=False, dtype=torch.float32)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.logits = torch.nn.Linear(config.hidden_size, num_labels)
            torch.nn.init.xavier_uniform_(self.logits.weight, generator=torch.Generator().manual_seed(0))
            torch.nn.init.zeros_(self.logits.bias)

        def forward(self, ids, mask, token_types):
            hidden = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=token_types).last_hidden_state
            return self.logits(hidden[:, 0])

    return Classifier(), encoder.config  # the loaded config: it records the attention implementation chosen


def build_optimizer(torch, model, lr: float = LEARNING_RATE):
    decay = [p for n, p in model.named_parameters() if not any(part in n for part in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(part in n for part in NO_DECAY)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=ADAM_EPSILON)


def peer_side(args) -> dict:
    """Inference then training (the order of bertkit's side); sequences/s of each and the process's peak RSS."""
    import transformers

    torch = import_torch(args.threads)
    note("loading the encoder")
    model, config = build_classifier(torch, args.model_dir, args.attention_dropout)
    figures = {"side": "peer", "torch": torch.__version__, "transformers": transformers.__version__,
               "attn_implementation": config._attn_implementation,
               "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
               "hidden_dropout_prob": config.hidden_dropout_prob,
               "threads": [torch.get_num_threads(), torch.get_num_interop_threads()]}

    def tensors(ids):
        ids = torch.from_numpy(ids).long()
        return ids, torch.ones_like(ids), torch.zeros_like(ids)

    def infer(ids):
        with torch.inference_mode():
            return model(*tensors(ids)).numpy()

    def prepare_training():
        model.train()
        optimizer = build_optimizer(torch, model)
        labels = torch.from_numpy(training_labels(args.train_batch)).long()

        def train(ids):
            loss = torch.nn.functional.cross_entropy(model(*tensors(ids)), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_GLOBAL_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.item()

        return train

    model.eval()
    return {**figures, **measure(args, Path(args.model_dir) / "vocab.txt", infer, prepare_training)}


def read_labelled(path: str) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a JSONL file with ``text`` and ``label`` (the shipped SST-2 format)."""
    import json

    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                if "text" not in record or "label" not in record:
                    raise BenchError(f"{path}:{number}: needs 'text' and 'label'")
                texts.append(str(record["text"]))
                labels.append(str(record["label"]))
    return texts, labels


def peer_short_run(args) -> dict:
    """A plain Hugging Face + torch fine-tuning loop doing what ``recipes/sentiment/train.py`` does by default on
    the same files: tokenize (the folder's fast tokenizer, truncation to ``--max-len``), one shuffled pass in batches
    of ``--batch-size`` padded to each batch's longest, AdamW with the recipe's defaults (lr, weight decay except
    LayerNorm/bias, epsilon 1e-6, global-norm clipping 1.0) under linear warm-up (``--warmup-ratio``) and linear
    decay to 0, cross-entropy; then dev accuracy in batches of ``--eval-batch-size``. Times each part."""
    import time

    from transformers import BertTokenizerFast

    started = time.perf_counter()
    torch = import_torch(args.threads)
    torch.manual_seed(args.seed)
    train_texts, train_labels = read_labelled(args.train_file)
    dev_texts, dev_labels = read_labelled(args.dev_file)
    names = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(dev_labels) - set(names))
    if unknown:
        raise BenchError(f"{args.dev_file}: labels not in the training file: {unknown}")
    tokenizer = BertTokenizerFast.from_pretrained(args.model_dir)
    model, _ = build_classifier(torch, args.model_dir, None, num_labels=len(names))

    def encoded(texts):
        return tokenizer(texts, truncation=True, max_length=args.max_len)["input_ids"]

    def batch_tensors(rows):
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
        return ids, (ids != 0).long(), torch.zeros_like(ids)

    train_ids, dev_ids = encoded(train_texts), encoded(dev_texts)
    y = torch.tensor([index[label] for label in train_labels])
    setup_seconds = time.perf_counter() - started

    start = time.perf_counter()
    model.train()
    optimizer = build_optimizer(torch, model, lr=args.lr)
    steps = -(-len(train_ids) // args.batch_size)
    warmup = int(args.warmup_ratio * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / (steps - warmup)))
    order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(args.seed)).tolist()
    losses = []
    for first in range(0, len(order), args.batch_size):
        rows = order[first:first + args.batch_size]
        loss = torch.nn.functional.cross_entropy(model(*batch_tensors([train_ids[i] for i in rows])), y[rows])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_GLOBAL_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    model.eval()
    predicted = []
    with torch.inference_mode():
        for first in range(0, len(dev_ids), args.eval_batch_size):
            predicted += model(*batch_tensors(dev_ids[first:first + args.eval_batch_size])).argmax(-1).tolist()
    eval_seconds = time.perf_counter() - start
    accuracy = sum(names[p] == label for p, label in zip(predicted, dev_labels)) / len(dev_labels)
    return {"side": "peer", "torch": torch.__version__, "train_examples": len(train_ids), "steps": steps,
            "dev_examples": len(dev_ids), "dev_accuracy": accuracy, "first_loss": losses[0], "last_loss": losses[-1],
            "setup_seconds": setup_seconds, "train_seconds": train_seconds, "eval_seconds": eval_seconds}


def torch_gemm(args) -> dict:
    """torch's float32 GEMM peak with the benchmark's threads."""
    import numpy as np

    torch = import_torch(args.threads)
    n = args.gemm_size
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator, dtype=torch.float32) for _ in range(2))
    return {"torch": best_gemm_gflops(lambda: torch.mm(a, b), n, args.gemm_repeats),
            "torch_version": torch.__version__, "numpy_version": np.__version__,
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never look anything up on the Hub
    try:
        check_workload(args)
        if args.attention_dropout is not None and not 0.0 <= args.attention_dropout < 1.0:
            raise BenchError(f"--attention-dropout must be in [0, 1), got {args.attention_dropout}")
        if args.short_run:
            if not (args.train_file and args.dev_file):
                raise BenchError("--short-run needs --train-file and --dev-file")
            emit(peer_short_run(args))
        else:
            emit(torch_gemm(args) if args.gemm else peer_side(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
