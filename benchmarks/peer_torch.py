"""The Hugging Face transformers + torch side of ``bench_peer.py``: the same encoder folder, shapes, head, optimizer
settings, token ids and threads as bertkit's side, in float32. Runs in the peer venv (``requirements-bench.txt``),
started by ``bench_peer.py`` once per round; prints one JSON line.

    .venv-bench/bin/python benchmarks/peer_torch.py --model-dir DIR [--attention-dropout 0] [workload options]
    .venv-bench/bin/python benchmarks/peer_torch.py --model-dir DIR --gemm      # torch's float32 GEMM peak
    .venv-bench/bin/python benchmarks/peer_torch.py --model-dir DIR --profile   # its op times (profile_step.py's peer)

The model is ``BertModel`` (no pooler: the head reads the [CLS] hidden state, as bertkit's ``Pooler("cls")``) under
one ``Linear(hidden, 2)`` (Glorot-uniform, zero bias, as bench_speed.py's Dense). ``--attention-dropout`` overrides
the config's ``attention_probs_dropout_prob`` (0.1, which bertkit's encoder applies too). Training:
``torch.optim.AdamW`` with the driver's settings, no weight decay on LayerNorm and bias weights (bertkit's rule),
``clip_grad_norm_`` to 1.0, cross-entropy on the logits. Inference: ``eval()`` mode
under ``torch.inference_mode()``. Both get an all-ones attention mask and zero token types, as a real batch would.

``--profile`` runs the same inference call and training step under ``torch.profiler`` (after ``--warmup`` untimed
calls, ``--infer-steps`` / ``--train-steps`` timed calls without the profiler, then as many under it) and prints each
aten op's self time per call, grouped as profile_step.py groups TensorFlow's: the matrix products (with their
GFLOP/s, from the profiler's FLOP count), torch's fused attention kernel (``scaled_dot_product_attention``'s CPU
flash kernel: the two per-head products, mask, softmax and, in training, the attention dropout in one op, so apart
from both) and the rest. torch runs one op at a time, each on every core, so its op times add up to the wall time
(less Python's own time between ops), like profile_step.py's ``--inter-op-threads 1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_peer import (ADAM_EPSILON, CLIP_GLOBAL_NORM, LEARNING_RATE, NUM_LABELS, WEIGHT_DECAY, BenchError,
                        add_workload_args, best_gemm_gflops, check_workload, emit, measure, note, random_batches,
                        training_labels)

NO_DECAY = ("LayerNorm", "bias")  # Hugging Face parameter names; bertkit.optim.NO_DECAY_PATTERNS in torch's naming
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")  # --profile: the matrix products
FUSED_ATTENTION_PREFIX = "aten::_scaled_dot_product_flash_attention"  # its forward and "..._backward" ops


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="the Hugging Face BERT folder (config.json, weights)")
    parser.add_argument("--attention-dropout", type=float, default=None,
                        help="attention_probs_dropout_prob (default: the config's)")
    parser.add_argument("--gemm", action="store_true", help="measure torch's float32 GEMM peak instead")
    parser.add_argument("--profile", action="store_true",
                        help="print where the inference call and the training step spend their time instead")
    parser.add_argument("--top", type=int, default=12, help="--profile: ops listed per call (default: %(default)s)")
    short = parser.add_argument_group("--short-run (bench_short_run.py): a whole fine-tuning run on text files")
    short.add_argument("--short-run", action="store_true")
    short.add_argument("--task", choices=("sentiment", "sequence_labeling"), default="sentiment",
                       help="sentiment: a [CLS] classifier on 'text'/'label' records; sequence_labeling: a softmax "
                            "tagger on the first piece of each word of 'tokens'/'tags' records")
    short.add_argument("--dropout", type=float, default=0.1, help="dropout before the tag scores (sequence_labeling)")
    short.add_argument("--group-by-length", action="store_true",
                       help="batches of similar length, as transformers' Trainer(group_by_length=True) forms them "
                            "(its own get_length_grouped_indices: shuffled groups of min(50, n // (4 x batch)) "
                            "batches, each sorted by length), and the dev set predicted in length order; default: a "
                            "plain shuffled pass")
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


def build_tagger(torch, model_dir: str, num_tags: int, dropout: float):
    """``tagger(ids, mask, token_types, word_index)`` -> tag scores ``(batch, words, num_tags)``: the hidden state of
    each word's first piece (``word_index``: its position) -> dropout -> Linear, as the sequence_labeling recipe's
    softmax head (``--no-crf``)."""
    import transformers
    from transformers import BertModel

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    encoder = BertModel.from_pretrained(model_dir, add_pooling_layer=False, dtype=torch.float32)

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.scores = torch.nn.Linear(encoder.config.hidden_size, num_tags)
            torch.nn.init.xavier_uniform_(self.scores.weight, generator=torch.Generator().manual_seed(0))
            torch.nn.init.zeros_(self.scores.bias)

        def forward(self, ids, mask, token_types, word_index):
            hidden = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=token_types).last_hidden_state
            words = torch.gather(hidden, 1, word_index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
            return self.scores(self.dropout(words))

    return Tagger()


def build_optimizer(torch, model, lr: float = LEARNING_RATE):
    decay = [p for n, p in model.named_parameters() if not any(part in n for part in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(part in n for part in NO_DECAY)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=ADAM_EPSILON)


def peer_workload(args, torch):
    """``(figures, infer, prepare_training)``: the loaded classifier's description, ``infer(ids)`` (inference mode)
    and ``prepare_training()``, which switches the model to training and returns ``train(ids)``, one AdamW step."""
    import transformers

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
    return figures, infer, prepare_training


def peer_side(args) -> dict:
    """Inference then training (the order of bertkit's side); sequences/s of each and the process's peak RSS."""
    torch = import_torch(args.threads)
    figures, infer, prepare_training = peer_workload(args, torch)
    return {**figures, **measure(args, Path(args.model_dir) / "vocab.txt", infer, prepare_training)}


def op_group(name: str) -> str:
    if name in MATMUL_OPS:
        return "matmul"
    return "fused attention" if name.startswith(FUSED_ATTENTION_PREFIX) else "the rest"


def profile_calls(call, batches, warmup: int, steps: int) -> dict:
    """``call(ids)``'s wall time per call, the cores it kept busy and its aten ops' self time per call."""
    from torch.profiler import ProfilerActivity, profile

    for index in range(warmup):
        call(batches[index % len(batches)])
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(steps):
        call(batches[index % len(batches)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as profiler:
        for index in range(steps):
            call(batches[index % len(batches)])
    ops = {event.key: {"seconds_per_call": event.self_cpu_time_total / 1e6 / steps,
                       "calls_per_call": event.count / steps, "gflop_per_call": event.flops / 1e9 / steps}
           for event in profiler.key_averages() if event.self_cpu_time_total > 0}
    groups = {}
    for name, op in ops.items():
        groups[op_group(name)] = groups.get(op_group(name), 0.0) + op["seconds_per_call"]
    matmul_gflop = sum(op["gflop_per_call"] for name, op in ops.items() if name in MATMUL_OPS)
    return {"seconds_per_call": wall / steps, "busy_cores": cpu / wall,
            "op_seconds_per_call": sum(groups.values()), "group_seconds_per_call": groups,
            "matmul_gflop_per_call": matmul_gflop,
            "matmul_gflops_of_op_time": matmul_gflop / groups["matmul"] if groups.get("matmul") else None,
            "ops": dict(sorted(ops.items(), key=lambda item: -item[1]["seconds_per_call"]))}


def print_profile(name: str, batch: int, figures: dict, top: int) -> None:
    """profile_calls' figures in profile_step.py's layout, on stderr (stdout carries the JSON line)."""
    def say(line=""):
        print(line, file=sys.stderr)

    seconds = figures["seconds_per_call"]
    say(f"\n{name}: {seconds:.3f} s per call ({batch / seconds:.1f} seq/s), {figures['busy_cores']:.2f} cores busy; "
        f"op self time {figures['op_seconds_per_call']:.3f} s per call")
    for group, group_seconds in sorted(figures["group_seconds_per_call"].items(), key=lambda item: -item[1]):
        say(f"  {group:<16}{group_seconds:7.3f} s per call {group_seconds / figures['op_seconds_per_call']:7.1%}")
    if figures["matmul_gflops_of_op_time"]:
        say(f"  matrix products: {figures['matmul_gflop_per_call']:.1f} GFLOP per call, "
            f"{figures['matmul_gflops_of_op_time']:.0f} GFLOP/s of their op time")
    say(f"  top {top} ops (self time per call, share, calls per call):")
    for op_name, op in list(figures["ops"].items())[:top]:
        share = op["seconds_per_call"] / figures["op_seconds_per_call"]
        say(f"    {op_name:<52}{op['seconds_per_call']:7.3f} s {share:6.1%} {op['calls_per_call']:7.1f}  "
            f"{op_group(op_name)}")


def peer_profile(args) -> dict:
    """The inference call then the training step under torch's profiler (``--profile``)."""
    torch = import_torch(args.threads)
    figures, infer, prepare_training = peer_workload(args, torch)
    vocab_file = Path(args.model_dir) / "vocab.txt"
    note(f"profiling inference {args.infer_batch}x{args.seq_len}")
    figures["infer"] = profile_calls(infer, random_batches(vocab_file, args.infer_batch, args.seq_len),
                                     args.warmup, args.infer_steps)
    print_profile(f"inference {args.infer_batch} x {args.seq_len}", args.infer_batch, figures["infer"], args.top)
    note(f"profiling training {args.train_batch}x{args.seq_len}")
    figures["train"] = profile_calls(prepare_training(),
                                     random_batches(vocab_file, args.train_batch, args.seq_len),
                                     args.warmup, args.train_steps)
    print_profile(f"training {args.train_batch} x {args.seq_len}", args.train_batch, figures["train"], args.top)
    return figures


def read_records(path: str, fields: tuple[str, str]) -> list[dict]:
    """The JSONL records of ``path``, each with both ``fields`` (the shipped SST-2 and CoNLL-2003 formats)."""
    import json

    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                if any(field not in record for field in fields):
                    raise BenchError(f"{path}:{number}: needs {' and '.join(repr(f) for f in fields)}")
                records.append(record)
    return records


class SentimentTask:
    """The sentiment recipe's work: a [CLS] classifier, one label per text; scored by accuracy."""

    def __init__(self, torch, args):
        self.torch, self.args = torch, args
        train = read_records(args.train_file, ("text", "label"))
        self.dev = read_records(args.dev_file, ("text", "label"))
        self.names = sorted({str(r["label"]) for r in train})
        unknown = sorted({str(r["label"]) for r in self.dev} - set(self.names))
        if unknown:
            raise BenchError(f"{args.dev_file}: labels not in the training file: {unknown}")
        self.tokenizer = tokenizer(args.model_dir)
        self.model, _ = build_classifier(torch, args.model_dir, None, num_labels=len(self.names))
        index = {name: i for i, name in enumerate(self.names)}
        self.train_rows = [(ids, index[str(r["label"])]) for ids, r in zip(self.encoded(train), train)]
        self.dev_rows = self.encoded(self.dev)

    def encoded(self, records):
        return self.tokenizer([str(r["text"]) for r in records], truncation=True,
                              max_length=self.args.max_len)["input_ids"]

    @staticmethod
    def pieces(row) -> int:
        """Pieces of a training row ``(ids, label)`` or a dev row (the ids alone)."""
        return len(row if isinstance(row[0], int) else row[0])

    def loss(self, rows):
        logits = self.model(*pad(self.torch, [ids for ids, _ in rows]))
        return self.torch.nn.functional.cross_entropy(logits, self.torch.tensor([label for _, label in rows]))

    def predict(self, rows) -> list:
        return [self.names[i] for i in self.model(*pad(self.torch, rows)).argmax(-1).tolist()]

    def score(self, predicted) -> dict:
        gold = [str(r["label"]) for r in self.dev]
        return {"dev_metric": sum(p == g for p, g in zip(predicted, gold)) / len(gold), "metric": "accuracy"}


class TaggingTask:
    """The sequence_labeling recipe's work with its softmax head (``--no-crf``): a tag per word from its first
    piece, cross-entropy over real words; the predicted tags are returned for the driver to score (entity F1)."""

    def __init__(self, torch, args):
        self.torch, self.args = torch, args
        train = read_records(args.train_file, ("tokens", "tags"))
        self.dev = read_records(args.dev_file, ("tokens", "tags"))
        self.names = sorted({tag for r in train for tag in r["tags"]})
        unknown = sorted({tag for r in self.dev for tag in r["tags"]} - set(self.names))
        if unknown:
            raise BenchError(f"{args.dev_file}: tags not in the training file: {unknown}")
        self.tokenizer = tokenizer(args.model_dir)
        self.model = build_tagger(torch, args.model_dir, len(self.names), args.dropout)
        index = {name: i for i, name in enumerate(self.names)}
        self.train_rows = [(ids, first, [index[tag] for tag in r["tags"][:len(first)]])
                           for (ids, first), r in zip(self.encoded(train), train)]
        self.dev_rows = self.encoded(self.dev)

    def encoded(self, records):
        """Per record ``(piece ids, position of each word's first piece)``, truncated to ``--max-len`` pieces: the
        words cut off (and any word with no piece) are left out and predicted ``O``."""
        batch = self.tokenizer([r["tokens"] for r in records], is_split_into_words=True, truncation=True,
                               max_length=self.args.max_len)
        rows = []
        for i, ids in enumerate(batch["input_ids"]):
            first = {}
            for position, word in enumerate(batch.word_ids(i)):
                if word is not None and word not in first:
                    first[word] = position
            kept = []
            for word in range(len(records[i]["tokens"])):  # the leading words that have a piece
                if word not in first:
                    break
                kept.append(first[word])
            rows.append((ids, kept))
        return rows

    @staticmethod
    def pieces(row) -> int:
        """Pieces of a training row ``(ids, first pieces, tags)`` or a dev row ``(ids, first pieces)``."""
        return len(row[0])

    def word_index(self, rows):
        width = max(1, max(len(first) for _, first in rows))
        index = self.torch.zeros((len(rows), width), dtype=self.torch.long)
        for i, (_, first) in enumerate(rows):
            index[i, :len(first)] = self.torch.tensor(first, dtype=self.torch.long)
        return index

    def loss(self, rows):
        scores = self.model(*pad(self.torch, [ids for ids, _, _ in rows]),
                            self.word_index([(ids, first) for ids, first, _ in rows]))
        labels = self.torch.full(scores.shape[:2], -100, dtype=self.torch.long)
        for i, (_, _, tags) in enumerate(rows):
            labels[i, :len(tags)] = self.torch.tensor(tags, dtype=self.torch.long)
        return self.torch.nn.functional.cross_entropy(scores.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def predict(self, rows) -> list:
        best = self.model(*pad(self.torch, [ids for ids, _ in rows]), self.word_index(rows)).argmax(-1).tolist()
        return [[self.names[t] for t in tags[:len(first)]] for tags, (_, first) in zip(best, rows)]

    def score(self, predicted) -> dict:
        """The tags per word of every dev record (``O`` for words cut off); the driver computes the F1."""
        return {"dev_predictions": [tags + ["O"] * (len(r["tokens"]) - len(tags))
                                    for tags, r in zip(predicted, self.dev)], "metric": "entity F1"}


def tokenizer(model_dir: str):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(model_dir)


def pad(torch, rows):
    """``(ids, mask, token types)`` of piece-id lists, padded to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids, (ids != 0).long(), torch.zeros_like(ids)


def peer_short_run(args) -> dict:
    """A plain Hugging Face + torch fine-tuning loop doing what the ``--task`` recipe does by default on the same
    files: tokenize (the folder's fast tokenizer, truncation to ``--max-len``), one shuffled pass in batches of
    ``--batch-size`` padded to each batch's longest, AdamW with the recipe's defaults (lr, weight decay except
    LayerNorm/bias, epsilon 1e-6, global-norm clipping 1.0) under linear warm-up (``--warmup-ratio``) and linear
    decay to 0, cross-entropy; then the dev set predicted in batches of ``--eval-batch-size``. Times each part."""
    import time

    started = time.perf_counter()
    torch = import_torch(args.threads)
    torch.manual_seed(args.seed)
    task = (SentimentTask if args.task == "sentiment" else TaggingTask)(torch, args)
    model = task.model
    setup_seconds = time.perf_counter() - started

    start = time.perf_counter()
    model.train()
    optimizer = build_optimizer(torch, model, lr=args.lr)
    steps = -(-len(task.train_rows) // args.batch_size)
    warmup = int(args.warmup_ratio * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / (steps - warmup)))
    generator = torch.Generator().manual_seed(args.seed)
    if args.group_by_length:
        # the order transformers' Trainer(group_by_length=True) trains in (its LengthGroupedSampler): shuffled groups
        # of min(50, n // (4 x batch)) batches, each sorted longest first, the longest batch first (bertkit's
        # recipes group by the same rule). Until 2026-12-06 this loop took groups of 50 batches whatever the set's
        # size: for the 2,000-sentence tagging run 1,600 sentences sorted together instead of 480, and 42,864
        # padded tokens where transformers' own sampler gives 46,464 (bertkit 45,568).
        from transformers.trainer_pt_utils import get_length_grouped_indices

        order = get_length_grouped_indices([task.pieces(row) for row in task.train_rows], args.batch_size,
                                           generator=generator)
    else:
        order = torch.randperm(len(task.train_rows), generator=generator).tolist()
    batches = [order[first:first + args.batch_size] for first in range(0, len(order), args.batch_size)]
    padded_tokens = sum(len(rows) * max(task.pieces(task.train_rows[i]) for i in rows) for rows in batches)
    real_tokens = sum(task.pieces(row) for row in task.train_rows)
    losses = []
    for rows in batches:
        loss = task.loss([task.train_rows[i] for i in rows])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_GLOBAL_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    model.eval()
    dev_order = list(range(len(task.dev_rows)))
    if args.group_by_length:
        dev_order.sort(key=lambda i: task.pieces(task.dev_rows[i]))
    predicted = [None] * len(dev_order)
    with torch.inference_mode():
        for first in range(0, len(dev_order), args.eval_batch_size):
            chunk = dev_order[first:first + args.eval_batch_size]
            for i, prediction in zip(chunk, task.predict([task.dev_rows[i] for i in chunk])):
                predicted[i] = prediction
    eval_seconds = time.perf_counter() - start
    return {"side": "peer", "task": args.task, "torch": torch.__version__, "train_examples": len(task.train_rows),
            "steps": steps, "group_by_length": args.group_by_length, "train_real_tokens": real_tokens,
            "train_padded_tokens": padded_tokens, "dev_examples": len(task.dev_rows), **task.score(predicted),
            "first_loss": losses[0], "last_loss": losses[-1], "setup_seconds": setup_seconds,
            "train_seconds": train_seconds, "eval_seconds": eval_seconds}


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
        if args.gemm + args.profile + args.short_run > 1:
            raise BenchError("--gemm, --profile and --short-run each choose what to run: give one")
        if args.top < 1:
            raise BenchError(f"--top must be at least 1, got {args.top}")
        if args.attention_dropout is not None and not 0.0 <= args.attention_dropout < 1.0:
            raise BenchError(f"--attention-dropout must be in [0, 1), got {args.attention_dropout}")
        if args.short_run:
            if not (args.train_file and args.dev_file):
                raise BenchError("--short-run needs --train-file and --dev-file")
            emit(peer_short_run(args))
        else:
            emit(torch_gemm(args) if args.gemm else peer_profile(args) if args.profile else peer_side(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
