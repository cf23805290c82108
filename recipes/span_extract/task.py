"""Pointer span extraction: extractive QA and event-subject extraction with one BERT encoder and two pointers.

The story:
1. read questions: SQuAD JSON (``data[].paragraphs[].qas[]``) or JSONL ``{"id", "question", "context", "answers":
   [{"text", "start"}]}``; the event-subject form ``{"id", "event_type", "text", "subject"}`` is the same task with
   the event type as the question (``read_examples``);
2. features: ``[CLS] question [SEP] passage-window [SEP]``, long passages cut into overlapping windows
   (``make_features``);
3. head: two ``Dense(1)`` pointers over the encoder's hidden states give start and end logits; positions outside the
   passage are masked to ``NEG_INF``; loss = cross-entropy(start) + cross-entropy(end) (``build_model``);
4. decoding: per window the best ``start <= end`` pair within ``max_answer_len`` among the top-k starts and ends,
   vectorised over the batch; per question the best span over its windows; the answer is ``context[a:b]`` from the
   token offsets, never joined word pieces (``best_spans``, ``predict``);
5. evaluation: exact match and token F1 with the SQuAD normalisation, or the CMRC 2018 character-level variant, max
   over the gold answers (``SetEvaluator``).

The secondary parts live beside this file: ``data.py`` (the ``Example`` record, the readers and their checks,
``ReadStats``), ``scoring.py`` (the metrics, the no-answer threshold tuning, the report sections) and ``export.py``
(the raw-string SavedModel). Importing any of them builds nothing and reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl
from bertkit.windows import split_windows
from recipes.span_extract.data import Example, ReadStats, _warn, examples_from_records, iter_squad
from recipes.span_extract.scoring import evaluate_predictions, tune_null_threshold

INPUT_KEYS = ("token_ids", "segment_ids", "passage_mask")


# ------------------------------------------------------------------------------------------------------------ data
def read_examples(path, *, fix_answers: bool = False, allow_unanswerable: bool = False, require_answers: bool = True,
                  stats: ReadStats | None = None, warn=_warn) -> list[Example]:
    """Questions from SQuAD JSON (``.json``) or JSONL (anything else), checked.

    Bad input raises one ``DataError`` naming file, line (JSONL) or id, and field: empty question or context, an
    answer whose text is not at its ``start`` (``fix_answers`` searches for it instead, with a warning), no answers
    unless ``allow_unanswerable``. ``require_answers=False`` reads prediction inputs (answers optional).
    """
    path = Path(path)
    items = iter_squad(path) if path.suffix.lower() == ".json" else iter_jsonl(path)
    return examples_from_records(items, path, fix_answers=fix_answers, allow_unanswerable=allow_unanswerable,
                                 require_answers=require_answers, stats=stats, warn=warn)


def predict_inputs(records, source, *, warn=_warn) -> list[Example]:
    """Prediction inputs from ``(line, record)`` pairs: ``{"question", "context"}`` (``id`` optional; answers, when
    given, are checked)."""
    return examples_from_records(records, source, require_answers=False, warn=warn)


# -------------------------------------------------------------------------------------------------------- features
def char_to_token_span(offsets, start: int, end: int, boundary=None) -> tuple[int, int] | None:
    """Token indices ``(first, last)`` (inclusive) of the tokens overlapping characters ``[start, end)``, among the
    tokens allowed as span boundaries (``boundary[i]``; default all)."""
    first = last = None
    for i, (a, b) in enumerate(offsets):
        if b > start and a < end and b > a and (boundary is None or boundary[i]):
            if first is None:
                first = i
            last = i
    return None if first is None else (first, last)


@dataclass
class FeatureStats:
    windows: int = 0
    examples: int = 0
    no_answer_in_any_window: int = 0  # training: the answer fits in no window (skipped; counted for the report)
    skipped_ids: list = field(default_factory=list)


def make_features(examples, tokenizer, *, max_len: int, doc_stride: int, max_query_len: int = 64,
                  training: bool = False, no_answer: bool = False, stats: FeatureStats | None = None,
                  warn=_warn) -> list[dict]:
    """One feature per passage window: ``token_ids``, ``segment_ids``, ``passage_mask`` (1 on passage tokens that may
    begin or end an answer -- not whitespace tokens -- and on ``[CLS]`` when ``no_answer``), ``offsets`` ((seq, 2) character offsets into the context, -1 off the passage),
    ``example_index``; for training also ``start`` and ``end`` token positions.

    Training uses the first gold answer that has a position (the SQuAD convention). A window that does not contain it whole is dropped,
    or with ``no_answer`` trained to point at ``[CLS]``; a question whose answer fits in no window is skipped,
    counted in ``stats`` and warned about (file, id, field).
    """
    stats = stats if stats is not None else FeatureStats()
    vocab, unk = tokenizer.vocab, tokenizer.unk_id
    budget = max_len - 3  # [CLS] q [SEP] passage [SEP]
    features = []
    for index, example in enumerate(examples):
        q_tokens, _ = tokenizer.tokenize_with_offsets(example.question)
        q_tokens = q_tokens[:min(max_query_len, budget - 1)]
        c_tokens, c_offsets = tokenizer.tokenize_with_offsets(example.context)
        if not c_tokens:
            raise DataError(example.where, None, "context", f"id {example.id}: no tokens in the context")
        window_len = budget - len(q_tokens)
        stride = min(doc_stride, window_len)
        q_ids = [vocab.get(t, unk) for t in q_tokens]
        c_ids = np.array([vocab.get(t, unk) for t in c_tokens], dtype=np.int32)
        c_offsets = np.asarray(c_offsets, dtype=np.int32).reshape(-1, 2)
        # per-char mode has whitespace tokens ([unused1]); an answer never starts or ends on one
        c_boundary = np.array([not example.context[a:b].isspace() for a, b in c_offsets], dtype=np.int32)
        target = None
        placed = [a for a in example.answers if a.start is not None]
        if training and placed:
            target = char_to_token_span(c_offsets, placed[0].start, placed[0].end, c_boundary)
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


# ------------------------------------------------------------------------------------------------------------ model
def build_model(bert_dir, *, trainable_layers=None, dropout=None):
    """Encoder + two pointer heads: ``{token_ids, segment_ids, passage_mask}`` -> ``{"start", "end"}`` logits
    ``(batch, seq)``, float32, ``NEG_INF`` outside the passage."""
    import tensorflow as tf

    from bertkit.encoder import load_encoder
    from bertkit.layers import MaskedLogits

    token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
    passage_mask = tf.keras.Input((None,), dtype="int32", name="passage_mask")
    hidden = load_encoder(bert_dir, trainable_layers=trainable_layers, dropout=dropout)([token_ids, segment_ids])
    outputs = {}
    for name in ("start", "end"):
        logits = tf.keras.layers.Dense(1, name=f"{name}_pointer")(hidden)
        logits = tf.keras.layers.Reshape((-1,), dtype="float32", name=f"{name}_squeeze")(logits)  # float32 logits
        outputs[name] = MaskedLogits(name=name, dtype="float32")([logits, passage_mask])
    return tf.keras.Model([token_ids, segment_ids, passage_mask], outputs, name="span_extractor")


def span_loss():
    """Per-pointer loss; Keras sums the start and end losses."""
    import tensorflow as tf

    return {name: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in ("start", "end")}


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


@dataclass
class Prediction:
    id: str
    text: str
    start: int  # character offsets into the context; -1 for "no answer"
    end: int
    score: float  # start logit + end logit of the chosen span
    null_margin: float  # no-answer score minus the best span's score (higher = more likely unanswerable)


def predict_windows(model, features, *, batch_size: int, max_answer_len: int, top_k: int, progress=None):
    """Run the model over all windows in batches, decoding each batch at once; returns per-window arrays
    ``starts, ends, scores, null_scores`` (window token positions)."""
    from bertkit.batching import make_dataset

    dataset = make_dataset([{k: f[k] for k in INPUT_KEYS} for f in features], batch_size,
                           input_keys=INPUT_KEYS, target_keys=())
    parts = []
    done = 0
    for inputs in dataset:
        logits = model(inputs, training=False)
        start_logits, end_logits = logits["start"].numpy(), logits["end"].numpy()
        starts, ends, scores = best_spans(start_logits, end_logits, inputs["passage_mask"].numpy(),
                                          max_answer_len=max_answer_len, top_k=top_k)
        parts.append((starts, ends, scores, start_logits[:, 0] + end_logits[:, 0]))
        done += len(starts)
        if progress:
            progress(done, len(features))
    return tuple(np.concatenate(p) for p in zip(*parts))


def merge_windows(examples, features, starts, ends, scores, null_scores, *, no_answer: bool = False,
                  null_threshold: float = 0.0) -> list[Prediction]:
    """Best span per question over its windows, as an exact substring of the context from the token offsets.

    With ``no_answer``, the question is unanswerable (text "") when the lowest ``[CLS]`` score over its windows
    exceeds the best span score by more than ``null_threshold`` (SQuAD 2.0 rule; the threshold is tuned on dev).
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
        margin = null.get(i, np.inf) - score if no_answer else -np.inf
        if no_answer and margin > null_threshold or a < 0:
            predictions.append(Prediction(example.id, "", -1, -1, float(score), float(margin)))
        else:
            predictions.append(Prediction(example.id, example.context[a:b], a, b, float(score), float(margin)))
    return predictions


# ------------------------------------------------------------------------------ whole-set prediction and evaluation
TASK = "span_extract"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "subjqa"
DECODE_KEYS = ("max_len", "doc_stride", "max_query_len", "max_answer_len", "top_k", "no_answer", "null_threshold")


def predict(model, examples, tokenizer, settings: dict, *, batch_size: int = 64, features=None,
            null_threshold: float | None = None, progress=None) -> list[Prediction]:
    """Predictions for ``examples``: windows -> batched model + vectorised decoding -> best span per question.

    ``settings`` holds :data:`DECODE_KEYS` (a run's ``run_config.json`` has them); ``features`` may be given to
    reuse the windows of a set evaluated every epoch."""
    if features is None:
        features = make_features(examples, tokenizer, max_len=settings["max_len"], doc_stride=settings["doc_stride"],
                                 max_query_len=settings["max_query_len"], no_answer=settings["no_answer"])
    arrays = predict_windows(model, features, batch_size=batch_size, max_answer_len=settings["max_answer_len"],
                             top_k=settings["top_k"], progress=progress)
    threshold = settings.get("null_threshold") if null_threshold is None else null_threshold
    return merge_windows(examples, features, *arrays, no_answer=settings["no_answer"],
                         null_threshold=0.0 if threshold is None else threshold)


class SetEvaluator:
    """``evaluator(model) -> metrics`` on one evaluation set (its windows built once), for the Trainer's per-epoch
    dev evaluation and the final test evaluation. With no-answer, the threshold is tuned on this set's predictions
    when ``tune`` (dev) or taken from ``settings`` (test)."""

    def __init__(self, examples, tokenizer, settings: dict, *, metric: str, batch_size: int, tune: bool = False):
        self.examples, self.settings, self.metric = examples, settings, metric
        self.batch_size, self.tune = batch_size, tune
        self.features = make_features(examples, tokenizer, max_len=settings["max_len"],
                                      doc_stride=settings["doc_stride"], max_query_len=settings["max_query_len"],
                                      no_answer=settings["no_answer"])
        self.null_threshold = settings.get("null_threshold")
        self.predictions: list[Prediction] = []

    def __call__(self, model) -> dict:
        threshold = None
        if self.settings["no_answer"] and self.tune:
            spans = predict(model, self.examples, None, self.settings, batch_size=self.batch_size,
                            features=self.features, null_threshold=np.inf)
            self.null_threshold = threshold = tune_null_threshold(self.examples, spans, metric=self.metric)
            self.predictions = [p if p.null_margin <= threshold else Prediction(p.id, "", -1, -1, p.score,
                                                                                 p.null_margin) for p in spans]
        else:
            self.predictions = predict(model, self.examples, None, self.settings, batch_size=self.batch_size,
                                       features=self.features)
        metrics = evaluate_predictions(self.examples, self.predictions, metric=self.metric)
        if threshold is not None:
            metrics["null_threshold"] = threshold
        return metrics


# ------------------------------------------------------------------------------------------------------------- runs
def load_run(run_dir, checkpoint=None):
    """``(model, tokenizer, config)`` of a trained run: the model rebuilt from ``run_config.json``, ``best/``
    weights (or ``checkpoint``) loaded."""
    from bertkit.tokenization import Tokenizer
    from bertkit.training import BEST_DIR, load_weights, read_run_config

    config = read_run_config(run_dir, TASK)
    model = build_model(config["bert_dir"], dropout=0.0)
    load_weights(model, checkpoint or Path(run_dir) / BEST_DIR)
    tokenizer = Tokenizer.from_bert_dir(config["bert_dir"], per_char=config["per_char"],
                                        lowercase=config["lowercase"])
    return model, tokenizer, config

