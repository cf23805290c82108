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
5. metrics: exact match and token F1 with the SQuAD normalisation, or the CMRC 2018 character-level variant, max over
   the gold answers (``evaluate``).

Importing this module builds nothing and reads nothing.
"""

from __future__ import annotations

import collections
import json
import re
import string
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertkit.errors import ConfigError, DataError
from bertkit.fileio import iter_jsonl, read_text
from bertkit.windows import split_windows

INPUT_KEYS = ("token_ids", "segment_ids", "passage_mask")


# ------------------------------------------------------------------------------------------------------------ data
@dataclass
class Answer:
    text: str
    start: int | None  # None: a reference text that is not a span of the context (scored, never trained on)

    @property
    def end(self) -> int | None:
        return None if self.start is None else self.start + len(self.text)


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[Answer]
    meta: dict = field(default_factory=dict)  # e.g. {"domain": "grocery"} for per-domain breakdowns
    where: str = ""  # "path:line" (JSONL) or "path" (SQuAD JSON), for messages


@dataclass
class ReadStats:
    """What the reader fixed or skipped, for the report."""
    answers_moved: int = 0  # --fix-answers found the text elsewhere in the context
    answers_unplaced: int = 0  # --fix-answers could not find the text: kept for scoring only
    unanswerable: int = 0


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _where(path, line) -> str:
    return f"{path}:{line}" if line else str(path)


def _check_answer(context: str, text: str, start, *, path, line, qid, field_name, fix: bool, stats: ReadStats,
                  warn, locate: bool = False) -> Answer | None:
    """The answer if ``context[start:start+len(text)] == text``; else an error, or with ``fix`` the occurrence of
    ``text`` nearest to ``start`` (a warning) or, when the text is nowhere in the context, the text for scoring only
    (``start=None``, a warning). ``start=None`` given: a reference text for scoring only, unless ``locate`` (the
    event-subject form gives no offsets): then the first occurrence is the answer."""
    if start is not None and context[start:start + len(text)] == text:
        return Answer(text, start)
    found = [m.start() for m in re.finditer(re.escape(text), context)]
    if start is None and found and locate:
        return Answer(text, found[0])
    if start is None and not locate:
        return Answer(text, None)
    if not fix:
        at = "no start offset" if start is None else f"context[{start}:{start + len(text)}] is " \
                                                        f"{context[start:start + len(text)]!r}"
        hint = f"; it occurs at {found[:5]}" if found else "; it does not occur in the context"
        raise DataError(path, line, field_name, f"id {qid}: answer {text!r} does not match the context ({at})"
                                                f"{hint}. Fix the data, or pass --fix-answers to search for it")
    if not found:
        stats.answers_unplaced += 1
        warn(f"{_where(path, line)}: id {qid}: field {field_name!r}: answer {text!r:.60} is not in the context; "
             "kept for scoring only")
        return Answer(text, None)
    best = min(found, key=lambda s: abs(s - (start or 0)))
    stats.answers_moved += 1
    warn(f"{_where(path, line)}: id {qid}: field {field_name!r}: answer {text!r:.60} moved from {start} to {best}")
    return Answer(text, best)


def _make_example(record: dict, *, path, line, index, fix_answers, allow_unanswerable, require_answers, stats,
                  warn) -> Example | None:
    """One question record (JSONL or a SQuAD ``qas`` item merged with its context) -> Example, checked."""
    qid = str(record.get("id", index))
    question_field = "question" if "question" in record or "event_type" not in record else "event_type"
    context_field = "context" if "context" in record or "text" not in record else "text"
    for name in (question_field, context_field):
        value = record.get(name)
        if not isinstance(value, str):
            raise DataError(path, line, name, f"id {qid}: " + ("missing" if value is None else
                                                             f"expected a string, got {type(value).__name__}"))
        if not value.strip():
            raise DataError(path, line, name, f"id {qid}: empty")
    question, context = record[question_field], record[context_field]
    answers: list[Answer] = []
    if "subject" in record:  # event-subject form: the subject text, located in the text
        raw = [{"text": record["subject"], "start": record.get("subject_start")}]
        answer_field = "subject"
    else:
        raw = record.get("answers")
        answer_field = "answers"
        if raw is None and require_answers:
            raise DataError(path, line, "answers", f"id {qid}: missing")
        raw = raw or []
        if not isinstance(raw, list):
            raise DataError(path, line, "answers", f"id {qid}: expected a list, got {type(raw).__name__}")
    for i, item in enumerate(raw):
        name = answer_field if answer_field == "subject" else f"answers[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(path, line, name, f"id {qid}: expected {{\"text\": str, \"start\": int}}, got {item!r:.80}")
        start = item.get("start", item.get("answer_start"))
        if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0):
            raise DataError(path, line, f"{name}.start", f"id {qid}: expected a non-negative integer, got {start!r}")
        if not item["text"].strip():
            raise DataError(path, line, f"{name}.text", f"id {qid}: empty answer text")
        answer = _check_answer(context, item["text"], start, path=path, line=line, qid=qid,
                               field_name=f"{name}.start" if name != "subject" else name, fix=fix_answers,
                               stats=stats, warn=warn, locate=name == "subject")
        if answer not in answers:
            answers.append(answer)
    if require_answers and not answers:
        if not allow_unanswerable:
            raise DataError(path, line, answer_field, f"id {qid}: no answers; pass --no-answer to train and evaluate "
                                                      "SQuAD 2.0 style unanswerable questions")
        stats.unanswerable += 1
    meta = {k: record[k] for k in ("domain", "title") if isinstance(record.get(k), str)}
    if question_field == "event_type":
        meta["event_type"] = question
    return Example(qid, question, context, answers, meta, _where(path, line))


def read_examples(path, *, fix_answers: bool = False, allow_unanswerable: bool = False, require_answers: bool = True,
                  stats: ReadStats | None = None, warn=_warn) -> list[Example]:
    """Questions from SQuAD JSON (``.json``) or JSONL (anything else), checked.

    Bad input raises one ``DataError`` naming file, line (JSONL) or id, and field: empty question or context, an
    answer whose text is not at its ``start`` (``fix_answers`` searches for it instead, with a warning), no answers
    unless ``allow_unanswerable``. ``require_answers=False`` reads prediction inputs (answers optional).
    """
    path = Path(path)
    items = _iter_squad(path) if path.suffix.lower() == ".json" else iter_jsonl(path)
    return examples_from_records(items, path, fix_answers=fix_answers, allow_unanswerable=allow_unanswerable,
                                 require_answers=require_answers, stats=stats, warn=warn)


def examples_from_records(items, path, *, fix_answers: bool = False, allow_unanswerable: bool = False,
                          require_answers: bool = True, stats: ReadStats | None = None, warn=_warn) -> list[Example]:
    """Examples from ``(line, record)`` pairs read from ``path`` (used in messages), checked as in
    :func:`read_examples`."""
    stats = stats if stats is not None else ReadStats()
    ids = {}
    examples = []
    opts = dict(fix_answers=fix_answers, allow_unanswerable=allow_unanswerable, require_answers=require_answers,
                stats=stats, warn=warn)
    for index, (line, record) in enumerate(items):
        example = _make_example(record, path=path, line=line, index=index, **opts)
        if example.id in ids:
            raise DataError(path, line, "id", f"duplicate id {example.id!r} (first at {ids[example.id]})")
        ids[example.id] = example.where
        examples.append(example)
    if not examples:
        raise DataError(path, None, None, "no questions in the file")
    return examples


def _iter_squad(path):
    """``(None, record)`` per question of a SQuAD JSON file, the record carrying its paragraph's context/title."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"malformed JSON at column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, None, "data", 'expected SQuAD JSON {"data": [{"paragraphs": [...]}]}')
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(path, None, f"data[{a}].paragraphs", "missing or not a list")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataError(path, None, f"{where}.qas", "missing or not a list")
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict):
                    raise DataError(path, None, f"{where}.qas[{q}]", "expected an object")
                record = {"id": qa.get("id", f"{a}-{p}-{q}"), "question": qa.get("question"),
                          "context": paragraph.get("context"), "title": article.get("title"),
                          "answers": [] if qa.get("is_impossible") else qa.get("answers")}
                yield None, record


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


# ---------------------------------------------------------------------------------------------------------- metrics
def normalize_squad(text: str) -> str:
    """The official SQuAD v1.1/v2.0 normalisation: lowercase, drop punctuation and articles, squash whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = set(string.punctuation)


def squad_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """``(exact match, token F1)`` of one prediction, max over the gold answers (``[""]`` = unanswerable)."""
    golds = golds or [""]
    pred_tokens = normalize_squad(prediction).split()
    em = f1 = 0.0
    for gold in golds:
        gold_tokens = normalize_squad(gold).split()
        em = max(em, float(pred_tokens == gold_tokens))
        if not pred_tokens or not gold_tokens:
            f1 = max(f1, float(pred_tokens == gold_tokens))
            continue
        common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
        if common:
            precision, recall = common / len(pred_tokens), common / len(gold_tokens)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return em, f1


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"  # the range the CMRC 2018 evaluation script splits into single characters


def _is_cmrc_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in "-:_*^/\\~`+=…·"


def cmrc_segments(text: str) -> list[str]:
    """CMRC 2018 mixed segmentation: each CJK character is a token, other runs split into words; punctuation
    removed (the official script uses NLTK's word tokenizer for non-CJK runs; here words are ``\\w+`` runs)."""
    out, run = [], []
    for ch in text.lower().strip():
        if _is_cmrc_punct(ch) or _is_cjk(ch) or ch.isspace():
            if run:
                out.extend(re.findall(r"\w+|[^\w\s]", "".join(run)))
                run = []
            if _is_cjk(ch):
                out.append(ch)
        else:
            run.append(ch)
    if run:
        out.extend(re.findall(r"\w+|[^\w\s]", "".join(run)))
    return out


def _longest_common_substring(a: list[str], b: list[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def cmrc_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """``(exact match, F1)`` as the CMRC 2018 evaluation: EM on punctuation-stripped lowercase text; F1 from the
    longest common substring of the mixed segmentations; max over the gold answers."""
    golds = golds or [""]
    strip = lambda s: "".join(ch for ch in s.lower().strip() if not _is_cmrc_punct(ch))  # noqa: E731
    em = float(any(strip(prediction) == strip(g) for g in golds))
    pred = cmrc_segments(prediction)
    f1 = 0.0
    for gold in golds:
        gold_segs = cmrc_segments(gold)
        if not pred or not gold_segs:
            f1 = max(f1, float(pred == gold_segs))
            continue
        common = _longest_common_substring(gold_segs, pred)
        if common:
            precision, recall = common / len(pred), common / len(gold_segs)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return em, f1


def choose_metric(examples, metric: str = "auto") -> str:
    """``squad`` or ``cmrc``; ``auto`` picks ``cmrc`` when most context characters are CJK."""
    if metric != "auto":
        if metric not in ("squad", "cmrc"):
            raise ConfigError(f"--metric must be auto, squad or cmrc, got {metric!r}")
        return metric
    sample = "".join(e.context[:200] for e in examples[:200])
    letters = [ch for ch in sample if ch.isalpha()]
    cjk = sum(_is_cjk(ch) for ch in letters)
    return "cmrc" if letters and cjk / len(letters) > 0.3 else "squad"


def question_type(question: str) -> str:
    """First interrogative word of an English question (for the breakdown), else ``other``."""
    for word in re.findall(r"[a-z]+", question.lower()):
        if word in ("what", "how", "which", "who", "whom", "whose", "why", "when", "where", "is", "are", "does",
                    "do", "did", "was", "were", "can", "could", "would", "will", "should", "has", "have"):
            return word if word in ("what", "how", "which", "who", "why", "when", "where") else "yes/no-form"
    return "other"


def evaluate_predictions(examples, predictions, *, metric: str = "squad", n_wrong: int = 8) -> dict:
    """EM/F1 (in %) overall, per domain (or title/event type) and per question type, and a few wrong answers."""
    score = cmrc_scores if metric == "cmrc" else squad_scores
    rows = []
    for example, prediction in zip(examples, predictions):
        golds = [a.text for a in example.answers]
        em, f1 = score(prediction.text, golds)
        rows.append((example, prediction, em, f1))

    def summary(subset):
        n = len(subset)
        return {"exact_match": 100.0 * sum(r[2] for r in subset) / max(n, 1),
                "f1": 100.0 * sum(r[3] for r in subset) / max(n, 1), "count": n}

    metrics = summary(rows)
    metrics["metric"] = metric
    for key in ("domain", "event_type"):
        groups = collections.defaultdict(list)
        for r in rows:
            if key in r[0].meta:
                groups[r[0].meta[key]].append(r)
        if groups:
            metrics[f"per_{key}"] = {k: summary(v) for k, v in sorted(groups.items())}
    if metric == "squad":
        groups = collections.defaultdict(list)
        for r in rows:
            groups[question_type(r[0].question)].append(r)
        metrics["per_question_type"] = {k: summary(v) for k, v in sorted(groups.items())}
    if any(not e.answers for e in examples):
        metrics["has_answer"] = summary([r for r in rows if r[0].answers])
        metrics["no_answer"] = summary([r for r in rows if not r[0].answers])
    wrong = [r for r in rows if r[2] == 0]
    # a deterministic, varied sample: spread over the list rather than the first few
    step = max(1, len(wrong) // max(n_wrong, 1))
    metrics["wrong_examples"] = [
        {"id": e.id, "question": e.question, "prediction": p.text, "gold": [a.text for a in e.answers],
         "f1": round(100 * f1, 1)} for e, p, _, f1 in wrong[::step][:n_wrong]]
    return metrics


def tune_null_threshold(examples, predictions, *, metric: str = "squad") -> float:
    """The no-answer threshold on ``null_margin`` that maximises F1 on these (dev) predictions.

    Needs predictions made with ``null_threshold=+inf`` (always a span): each candidate threshold turns the
    questions whose margin exceeds it into "no answer"."""
    score = cmrc_scores if metric == "cmrc" else squad_scores
    span_f1 = np.array([score(p.text, [a.text for a in e.answers])[1] for e, p in zip(examples, predictions)])
    null_f1 = np.array([0.0 if e.answers else 1.0 for e in examples])
    margins = np.array([p.null_margin for p in predictions])
    order = np.argsort(-margins, kind="stable")
    # abstaining on the j questions with the largest margins: total F1 for every j at once
    totals = span_f1.sum() + np.concatenate([[0.0], np.cumsum(null_f1[order] - span_f1[order])])
    j = int(np.argmax(totals))
    # "no answer" iff margin > threshold: margins[order[j]] keeps exactly the top j abstaining (ties aside)
    return float(margins[order[j]]) if j < len(order) else float(margins[order[-1]] - 1.0)


def predict_inputs(records, source, *, warn=_warn) -> list[Example]:
    """Prediction inputs from ``(line, record)`` pairs: ``{"question", "context"}`` (``id`` optional; answers, when
    given, are checked)."""
    return examples_from_records(records, source, require_answers=False, warn=warn)


# ---------------------------------------------------------------------------------------------- whole-set prediction
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


def scalar_metrics(metrics: dict) -> dict:
    """The per-epoch numbers (the Keras logs take scalars only)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def report_sections(metrics: dict) -> list[tuple[str, str]]:
    """Markdown for report.md: breakdown tables and wrong answers beside the gold ones."""
    from bertkit.reports import md_table

    sections = []
    for key, title in (("per_domain", "Per domain"), ("per_event_type", "Per event type"),
                       ("per_question_type", "Per question type (first interrogative word)")):
        if key in metrics:
            rows = [[name, m["count"], m["exact_match"], m["f1"]] for name, m in metrics[key].items()]
            sections.append((title, md_table(["group", "questions", "EM", "F1"], rows)))
    for key in ("has_answer", "no_answer"):
        if key in metrics:
            m = metrics[key]
            sections.append((key.replace("_", " ").capitalize(),
                             md_table(["questions", "EM", "F1"], [[m["count"], m["exact_match"], m["f1"]]])))
    wrong = metrics.get("wrong_examples") or []
    if wrong:
        cut = lambda s, n=160: s if len(s) <= n else s[:n - 1] + "…"  # noqa: E731
        rows = [[w["id"][:12], cut(w["question"], 80), cut(w["prediction"]) or "(no answer)",
                 " / ".join(cut(g) for g in w["gold"]) or "(no answer)", w["f1"]] for w in wrong]
        sections.append(("Wrong answers (exact match 0) beside the gold ones",
                         md_table(["id", "question", "predicted", "gold", "F1"], rows, align="llllr")))
    return sections


# ------------------------------------------------------------------------------------------------ runs and export
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


def make_serving_fn(model, config: dict):
    """A ``tf.function`` ``(question, context)`` (string vectors) -> start/end logits, per-token character offsets
    into the context, and the decoded best span (character start/end, text, score).

    One window per pair: the in-graph tokenizer truncates the passage to ``max_len`` (longest first); long passages
    need ``predict.py``, which windows them."""
    import tensorflow as tf

    from bertkit.export import InGraphTokenizer

    tokenizer = InGraphTokenizer(Path(config["bert_dir"]) / "vocab.txt", lowercase=config["lowercase"],
                                 max_len=config["max_len"], per_char=config["per_char"])
    max_answer_len = int(config["max_answer_len"])
    spec = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[spec, spec])
    def serve(question, context):
        encoded = tokenizer.encode(question, context)
        token_ids, segment_ids = encoded["token_ids"], encoded["segment_ids"]
        passage = (segment_ids == 1) & (token_ids != tokenizer.sep_id) & (token_ids != tokenizer.pad_id)
        logits = model({"token_ids": token_ids, "segment_ids": segment_ids,
                        "passage_mask": tf.cast(passage, tf.int32)}, training=False)
        start_logits, end_logits = logits["start"], logits["end"]
        # best start <= end < start + max_answer_len on the passage: a banded (seq x seq) score per pair
        scores = start_logits[:, :, None] + end_logits[:, None, :]
        seq = tf.shape(scores)[1]
        band = tf.linalg.band_part(tf.ones([seq, seq], tf.bool), 0, max_answer_len - 1)
        both = passage[:, :, None] & passage[:, None, :] & band[None]
        scores = tf.where(both, scores, tf.constant(-np.inf, scores.dtype))
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=1, output_type=tf.int32)
        start, end = best // seq, best % seq
        offsets = tf.where(passage[:, :, None], encoded["offsets"], -1)
        char_start = tf.gather(offsets[:, :, 0], start, batch_dims=1)
        char_end = tf.gather(offsets[:, :, 1], end, batch_dims=1)
        text = tf.strings.substr(context, char_start, char_end - char_start, unit="UTF8_CHAR")
        return {"start_logits": start_logits, "end_logits": end_logits, "offsets": offsets,
                "answer_start": char_start, "answer_end": char_end, "answer": text,
                "score": tf.reduce_max(flat, axis=1)}

    return serve


def export(model, config: dict, path) -> Path:
    """Write the raw-string SavedModel (signature ``serving_default(question, context)``) to ``path``."""
    from bertkit.export import export_saved_model

    return export_saved_model(path, model, make_serving_fn(model, config))
