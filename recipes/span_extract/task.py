"""Pointer span extraction: extractive QA and event-subject extraction with one BERT encoder and two pointers.

The whole story, in the steps of the recipe contract (``bertkit.recipe``):
1. ``read_examples``: questions from SQuAD JSON (``data[].paragraphs[].qas[]``) or JSONL ``{"id", "question",
   "context", "answers": [{"text", "start"}]}``; the event-subject form ``{"id", "event_type", "text", "subject"}``
   is the same task with the event type as the question; gold answers on every record or on none (data.py);
2. ``encode``: ``[CLS] question [SEP] passage-window [SEP]``, long passages cut into overlapping windows
   (``make_features``); training keeps the windows that hold the first gold answer whole;
3. ``build_model``: two ``Dense(1)`` pointers over the encoder's hidden states give start and end logits; positions
   outside the passage are masked to ``NEG_INF``; ``loss`` = cross-entropy(start) + cross-entropy(end);
4. ``predict``: windows in batches of similar length, each batch decoded at once: per window the best
   ``start <= end`` pair within ``max_answer_len`` among the top-k starts and ends (``best_spans``), per question the
   best span over its windows (``merge_windows``); the answer is ``context[a:b]`` from the token offsets, never joined
   word pieces. With ``--no-answer`` a question is unanswerable when its null margin exceeds the threshold ``tune``
   picks on dev;
5. ``score``: exact match and token F1 with the SQuAD normalisation, or the CMRC 2018 character-level variant, max
   over the gold answers, with breakdowns and wrong answers (scoring.py, also ``report_sections``);
6. ``serving``: a signature answering raw (question, context) strings (export.py), which ``export`` writes as a
   SavedModel.
``train.py`` / ``predict.py`` run these steps through ``bertkit.recipe``. Importing this module builds nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertkit.batching import batch_predictor, make_training_data, predict_in_length_order, sample_examples
from bertkit.errors import ConfigError, DataError
from bertkit.fileio import iter_jsonl
from bertkit.windows import split_windows

from .data import Example, ReadStats, _warn, examples_from_records, iter_squad
from .export import serving  # the contract's serving step
from .scoring import (apply_null_threshold, choose_metric, evaluate_predictions, report_sections as metric_sections,
                      tune_null_threshold)

TASK = "span_extract"
DEFAULTS = {"dataset": "subjqa", "epochs": 2, "batch_size": 16, "max_len": 384, "lr": 1e-4}
HEADLINE = "f1"
HEADLINE_SCALE = 100.0  # SQuAD-style EM / F1 are percentages (a joint run averages headlines on a 0-1 scale)
INPUT_KEYS = ("token_ids", "segment_ids", "passage_mask")
TARGET_KEYS = ("start", "end")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("span extraction")
    group.add_argument("--doc-stride", type=int, default=128,
                       help="passage tokens between the starts of consecutive windows of a long passage")
    group.add_argument("--max-query-len", type=int, default=64, help="question tokens kept (the rest is cut)")
    group.add_argument("--max-answer-len", type=int, default=30,
                       help="longest answer in tokens when decoding (covers 98%% of SubjQA train answers)")
    group.add_argument("--top-k", type=int, default=20, help="start and end candidates searched per window")
    group.add_argument("--no-answer", action="store_true",
                       help="SQuAD 2.0 style: questions with no answer are kept and [CLS] means 'no answer'; "
                            "the threshold is tuned on dev")
    group.add_argument("--fix-answers", action="store_true",
                       help="an answer not found at its start offset is searched for in the context (warning) "
                            "instead of being an error")
    group.add_argument("--metric", choices=("auto", "squad", "cmrc"), default="auto",
                       help="EM/F1 flavour: SQuAD (English tokens) or CMRC 2018 (characters); auto: cmrc when the "
                            "contexts are mostly Chinese")
    group.add_argument("--dropout", type=float, default=None, help="encoder dropout (default: the checkpoint's)")
    group.add_argument("--max-eval-examples", type=int, default=None, metavar="N",
                       help="evaluate on a seeded sample of N dev and N test questions (default: all; a file that "
                            "is also the training file is not sampled)")


def check_arguments(args) -> None:
    from bertkit.cli import AT_LEAST_1, DROPOUT, check_ranges

    check_ranges(args, ("max_len", lambda v: v >= 16, "at least 16"))
    window = args.max_len - 3 - min(args.max_query_len, args.max_len // 2)
    if not 1 <= args.doc_stride <= window:
        raise ConfigError(f"--doc-stride must be in 1..{window} (the passage tokens of a window with a "
                          f"{args.max_query_len}-token question at --max-len {args.max_len}), got {args.doc_stride}")
    check_ranges(args, *((name, *AT_LEAST_1) for name in ("max_query_len", "max_answer_len", "top_k",
                                                          "max_eval_examples")), ("dropout", *DROPOUT))


# ------------------------------------------------------------------------------------------------------------ data
def read_examples(path, args=None, *, stats: ReadStats | None = None, warn=_warn) -> list[Example]:
    """Questions of a training / evaluation file: SQuAD JSON (``.json``) or JSONL (anything else), checked.

    Bad input raises one ``DataError`` naming file, line (JSONL) or id, and field: empty question or context, an
    answer whose text is not at its ``start`` (``--fix-answers`` searches for it instead, with a warning), questions
    with no answers unless ``--no-answer``. With ``--max-eval-examples N`` a dev or test file (not the training file)
    is cut to a seeded sample of N questions.
    """
    path = Path(path)
    items = iter_squad(path) if path.suffix.lower() == ".json" else iter_jsonl(path)
    examples = examples_from_records(items, path, fix_answers=getattr(args, "fix_answers", False),
                                     allow_unanswerable=getattr(args, "no_answer", False), stats=stats, warn=warn)
    sample = getattr(args, "max_eval_examples", None)
    if sample and path.resolve() != Path(args.train_file).resolve():
        examples = sample_examples(examples, sample, args.seed)
    return examples


def to_examples(records, source, args=None) -> list[Example]:
    """Prediction inputs from ``(line, record)`` pairs: ``{"question", "context"}`` or ``{"event_type", "text"}``
    (``id`` optional; gold answers, when given, are checked like in training, and may be empty)."""
    return examples_from_records(records, source, fix_answers=getattr(args, "fix_answers", False),
                                 allow_unanswerable=True)


def is_labelled(examples) -> bool:
    return all(e.answers is not None for e in examples)


def record_from_line(line: str, head: dict) -> dict:
    """A plain-text input line: ``question<TAB>context``."""
    question, tab, context = line.partition("\t")
    return {"question": question, "context": context} if tab else {"context": line}


def build_head(train_examples, args, tokenizer) -> dict:
    """Windowing and decoding settings, the metric flavour, and the no-answer threshold (``tune`` sets it)."""
    return {"max_len": args.max_len, "doc_stride": args.doc_stride, "max_query_len": args.max_query_len,
            "max_answer_len": args.max_answer_len, "top_k": args.top_k, "no_answer": args.no_answer,
            "null_threshold": None, "metric": choose_metric(train_examples, args.metric), "dropout": args.dropout}


# -------------------------------------------------------------------------------------------------------- features
def answer_tokens(passage, answer, boundary) -> tuple[int, int] | None:
    """Context token positions ``(first, last)`` (inclusive) of an answer: the tokens of ``passage`` (the context
    encoded as ``[CLS] context [SEP]``) overlapping its characters, trimmed to tokens that may be span boundaries."""
    span = passage.token_span(answer.start, answer.end)
    if span is None:
        return None
    first, last = span[0] - 1, span[1] - 2  # passage position p is context token p - 1
    while first <= last and not boundary[first]:
        first += 1
    while last >= first and not boundary[last]:
        last -= 1
    return (first, last) if first <= last else None


@dataclass
class FeatureStats:
    windows: int = 0
    examples: int = 0
    no_answer_in_any_window: int = 0  # training: the answer fits in no window (skipped; counted for the report)
    skipped_ids: list = field(default_factory=list)


def make_features(examples, tokenizer, head: dict, *, training: bool = False, stats: FeatureStats | None = None,
                  warn=_warn) -> list[dict]:
    """One feature per passage window (``head``: ``max_len``, ``doc_stride``, ``max_query_len``, ``no_answer``):
    ``token_ids``, ``segment_ids``, ``passage_mask`` (1 on passage tokens that may begin or end an answer -- not
    whitespace tokens -- and on ``[CLS]`` with ``no_answer``), ``offsets`` ((seq, 2) character offsets into the
    context, -1 off the passage), ``example_index``; for training also ``start`` and ``end`` token positions.

    Training uses the first gold answer that has a position (the SQuAD convention). A window that does not contain
    it whole is dropped, or with ``no_answer`` trained to point at ``[CLS]``; a question whose answer fits in no
    window is skipped, counted in ``stats`` and warned about (file, id, field).
    """
    stats = stats if stats is not None else FeatureStats()
    max_len, no_answer = head["max_len"], head["no_answer"]
    budget = max_len - 3  # [CLS] q [SEP] passage [SEP]
    features = []
    for index, example in enumerate(examples):
        _, q_ids, _ = tokenizer.tokenize_with_ids(example.question)
        q_ids = q_ids[:min(head["max_query_len"], budget - 1)]
        passage = tokenizer.encode(example.context, max_len=None)
        c_ids = np.asarray(passage.token_ids[1:-1], dtype=np.int32)
        if not len(c_ids):
            raise DataError(example.where, None, "context", f"id {example.id}: no tokens in the context")
        c_offsets = np.asarray(passage.offsets[1:-1], dtype=np.int32).reshape(-1, 2)
        window_len = budget - len(q_ids)
        stride = min(head["doc_stride"], window_len)
        # per-char mode has whitespace tokens ([unused1]); an answer never starts or ends on one
        c_boundary = np.array([not example.context[a:b].isspace() for a, b in c_offsets], dtype=np.int32)
        target = None
        placed = [a for a in example.answers or () if a.start is not None]
        if training and placed:
            target = answer_tokens(passage, placed[0], c_boundary)
        stats.examples += 1
        prefix = len(q_ids) + 2
        kept = 0
        for w_start, w_end in split_windows(len(c_ids), window_len, stride):
            n = w_end - w_start
            token_ids = np.concatenate([[tokenizer.cls_id], q_ids, [tokenizer.sep_id], c_ids[w_start:w_end],
                                        [tokenizer.sep_id]]).astype(np.int32)
            segment_ids = np.zeros(len(token_ids), np.int32)
            segment_ids[prefix:] = 1
            passage_mask = np.zeros(len(token_ids), np.int32)
            passage_mask[prefix:prefix + n] = c_boundary[w_start:w_end]
            if no_answer:
                passage_mask[0] = 1
            offsets = np.full((len(token_ids), 2), -1, np.int32)
            offsets[prefix:prefix + n] = c_offsets[w_start:w_end]
            feature = {"token_ids": token_ids, "segment_ids": segment_ids, "passage_mask": passage_mask,
                       "offsets": offsets, "example_index": index}
            if training:
                if target is not None and w_start <= target[0] and target[1] < w_end:
                    feature["start"], feature["end"] = target[0] - w_start + prefix, target[1] - w_start + prefix
                elif no_answer:
                    feature["start"] = feature["end"] = 0
                else:
                    continue
            features.append(feature)
            kept += 1
        if training and example.answers and (target is None or not any(
                f["start"] > 0 for f in features[len(features) - kept:])):
            stats.no_answer_in_any_window += 1
            stats.skipped_ids.append(example.id)
            why = (f"the answer ({len(placed[0].text)} chars) lies in no single window of {window_len} passage tokens"
                   if placed else "no answer has a position in the context")
            warn(f"{example.where}: id {example.id}: field 'answers': {why}; not trained on"
                 + (" as an answer" if no_answer else ""))
            if not no_answer:
                del features[len(features) - kept:]
    stats.windows += len(features)
    return features


def encode(examples, tokenizer, head) -> list[dict]:
    """Training windows with their ``start``/``end`` targets (a question whose answer fits in no window is warned
    about and skipped)."""
    stats = FeatureStats()
    features = make_features(examples, tokenizer, head, training=True, stats=stats)
    if not features:
        raise ConfigError(f"no training window holds an answer ({len(examples)} questions; see the warnings)")
    print(f"train: {stats.examples} questions -> {len(features)} windows; {stats.no_answer_in_any_window} questions "
          f"with no answer inside any window (skipped)", file=sys.stderr)
    return features


def training_data(features, head, *, batch_size, seed):
    return make_training_data(features, batch_size, seed=seed, input_keys=INPUT_KEYS, target_keys=TARGET_KEYS)


# ------------------------------------------------------------------------------------------------------------ model
def build_model(bert_dir, head, *, trainable_layers=None, encoder=None):
    """Encoder + two pointer heads: ``{token_ids, segment_ids, passage_mask}`` -> ``{"start", "end"}`` logits
    ``(batch, seq)``, float32, ``NEG_INF`` outside the passage.

    ``encoder``: an encoder already loaded (``bertkit.encoder.load_encoder``), used as it is instead of loading
    ``bert_dir``'s, so several task models can share one; its ``trainable_layers`` and dropout (``head["dropout"]``
    here) are then the caller's business."""
    import tensorflow as tf

    from bertkit.encoder import load_encoder
    from bertkit.layers import MaskedLogits

    if encoder is None:
        encoder = load_encoder(bert_dir, trainable_layers=trainable_layers, dropout=head["dropout"])
    inputs = {name: tf.keras.Input((None,), dtype="int32", name=name) for name in INPUT_KEYS}
    hidden = encoder([inputs["token_ids"], inputs["segment_ids"]])
    outputs = {}
    for name in TARGET_KEYS:
        logits = tf.keras.layers.Dense(1, name=f"{name}_pointer")(hidden)
        logits = tf.keras.layers.Reshape((-1,), dtype="float32", name=f"{name}_squeeze")(logits)  # float32 logits
        outputs[name] = MaskedLogits(name=name, dtype="float32")([logits, inputs["passage_mask"]])
    return tf.keras.Model(inputs, outputs, name="span_extractor")


def loss(head):
    """Per-pointer loss; Keras sums the start and end losses."""
    import tensorflow as tf

    return {name: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in TARGET_KEYS}


# --------------------------------------------------------------------------------------------------------- decoding
def best_spans(start_logits, end_logits, passage_mask, *, max_answer_len: int = 30, top_k: int = 20):
    """Best ``(start, end)`` per row with ``start <= end < start + max_answer_len``, both on the passage, among the
    ``top_k`` start and ``top_k`` end positions; vectorised over the batch.

    Returns ``starts, ends, scores`` (score = start logit + end logit; ``-inf`` and positions -1 for a row with no
    passage token).
    """
    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    on_passage = np.asarray(passage_mask).astype(bool)
    on_passage[:, 0] = False  # [CLS] is the no-answer position, never a span boundary
    start_logits = np.where(on_passage, start_logits, -np.inf)
    end_logits = np.where(on_passage, end_logits, -np.inf)
    k = min(top_k, start_logits.shape[1])
    top_starts = np.argpartition(-start_logits, k - 1, axis=1)[:, :k]  # (rows, k), unordered
    top_ends = np.argpartition(-end_logits, k - 1, axis=1)[:, :k]
    rows = np.arange(len(start_logits))[:, None]
    s_scores = start_logits[rows, top_starts]  # (rows, k)
    e_scores = end_logits[rows, top_ends]
    scores = s_scores[:, :, None] + e_scores[:, None, :]  # (rows, k_start, k_end)
    length = top_ends[:, None, :] - top_starts[:, :, None]
    scores = np.where((length >= 0) & (length < max_answer_len), scores, -np.inf)
    flat = scores.reshape(len(scores), -1).argmax(axis=1)
    best = scores.reshape(len(scores), -1)[np.arange(len(scores)), flat]
    starts = np.where(np.isfinite(best), top_starts[np.arange(len(scores)), flat // k], -1)
    ends = np.where(np.isfinite(best), top_ends[np.arange(len(scores)), flat % k], -1)
    return starts, ends, best


def merge_windows(examples, features, starts, ends, scores, null_scores, *, no_answer: bool = False,
                  null_threshold: float | None = None) -> list[dict]:
    """Best span per question over its windows, as an exact substring of the context from the token offsets:
    ``{"id"?, "answer", "answer_start", "answer_end", "score"}`` (character offsets, end exclusive; "" at -1 for no
    answer; score = start logit + end logit).

    With ``no_answer`` each also has ``null_margin``: the lowest ``[CLS]`` score over its windows minus the best span
    score, and the question is unanswerable when that exceeds ``null_threshold`` (SQuAD 2.0 rule; None: never, the
    predictions ``tune`` needs).
    """
    best: dict[int, tuple] = {}
    null: dict[int, float] = {}
    for f, feature in enumerate(features):
        i = feature["example_index"]
        if starts[f] >= 0 and (i not in best or scores[f] > best[i][0]):
            offsets = feature["offsets"]
            best[i] = (float(scores[f]), int(offsets[starts[f]][0]), int(offsets[ends[f]][1]))
        null[i] = min(null.get(i, np.inf), float(null_scores[f]))
    predictions = []
    for i, example in enumerate(examples):
        score, a, b = best.get(i, (-np.inf, -1, -1))
        prediction = {} if example.record_id is None else {"id": example.record_id}
        prediction.update(answer=example.context[a:b] if a >= 0 else "", answer_start=a, answer_end=b,
                          score=round(score, 4))
        if no_answer:
            prediction["null_margin"] = null.get(i, np.inf) - score
        predictions.append(prediction)
    if no_answer and null_threshold is not None:
        predictions = apply_null_threshold(predictions, null_threshold)
    return predictions


def predict(model, tokenizer, examples, head, *, batch_size=64) -> list[dict]:
    """Answers for ``examples``: windows -> the model in batches of similar length, each batch decoded at once ->
    the best span per question (``merge_windows``), "no answer" by the head's threshold in ``--no-answer`` runs."""
    features = make_features(examples, tokenizer, head)
    predict_logits = batch_predictor(model)

    def decode(batch) -> dict:
        logits = predict_logits(batch)
        starts, ends, scores = best_spans(logits["start"], logits["end"], batch["passage_mask"],
                                          max_answer_len=head["max_answer_len"], top_k=head["top_k"])
        return {"start": starts, "end": ends, "score": scores,
                "null_score": logits["start"][:, 0] + logits["end"][:, 0]}

    rows = predict_in_length_order(decode, features, batch_size, input_keys=INPUT_KEYS)
    arrays = [np.array([row[key] for row in rows]) for key in ("start", "end", "score", "null_score")]
    return merge_windows(examples, features, *arrays, no_answer=head["no_answer"],
                         null_threshold=head["null_threshold"])


# ------------------------------------------------------------------------------------------------ score, tune, report
def score(examples, predictions, head) -> dict:
    """EM/F1 (in %) overall and per domain / event type / question type (``scoring.evaluate_predictions``). In a
    ``--no-answer`` run not tuned yet (dev during training), with the no-answer threshold best on these
    predictions (reported as ``null_threshold``)."""
    threshold = None
    if head["no_answer"] and head["null_threshold"] is None:
        threshold = tune_null_threshold(examples, predictions, metric=head["metric"])
        predictions = apply_null_threshold(predictions, threshold)
    metrics = evaluate_predictions(examples, predictions, metric=head["metric"])
    if threshold is not None:
        metrics["null_threshold"] = threshold
    return metrics


def needs_tuning(head) -> bool:
    return bool(head["no_answer"])


def tune(examples, predictions, head) -> dict:
    """The head with the no-answer threshold that maximises F1 on these dev predictions (made by the untuned head,
    which never abstains); unchanged without ``--no-answer``."""
    if not head["no_answer"]:
        return head
    threshold = tune_null_threshold(examples, predictions, metric=head["metric"])
    print(f"no-answer threshold {threshold:.3f} (tuned on {len(examples)} dev questions)", file=sys.stderr)
    return {**head, "null_threshold": threshold}


def report_sections(metrics, examples, predictions, head, out_dir) -> tuple[list, dict]:
    """Breakdown tables (per domain / event type / question type, answerable or not) and wrong answers."""
    return metric_sections(metrics), {}


def export(model, tokenizer, head, path) -> Path:
    """A SavedModel of :func:`serving`'s ``serving_default(question, context)`` over raw strings (export.py lists the
    outputs)."""
    from bertkit.export import export_serving

    return export_serving(path, model, serving(model, tokenizer, head))
