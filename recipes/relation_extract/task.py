"""Joint (subject, predicate, object) extraction with the cascade ("CasRel") design.

The story, top to bottom:
1. Data: JSONL lines ``{"text": ..., "spo_list": [{"subject", "predicate", "object"}]}`` (the Baidu DuIE form),
   optionally with ``subject_start`` / ``object_start`` character offsets pinning the annotated mention. Without
   offsets every occurrence of the entity string is labelled (counted in the report).
2. Targets: per sentence, 0/1 tags for subject starts and ends; per (sentence, subject), 0/1 tags per predicate for
   object starts and ends. Training draws one random subject per sentence each time the sentence is batched
   (``subjects="sample"``, CasRel's choice) or shows every subject as its own example (``subjects="all"``).
3. Model: encoder -> two sigmoid Dense(1) heads (subject start/end). The subject's vector, the mean of the encoder
   vectors at its start and end tokens, is added to every position, then two sigmoid Dense(num_predicates) heads tag
   object starts/ends per predicate. Padding is masked out of every loss.
4. Decoding, batched over sentences and then over (sentence, subject) pairs: each start above the threshold is paired
   with the nearest end at or after it that is above the threshold. Token spans are mapped back to exact substrings
   of the original text by character offsets.
5. Metrics: triple precision/recall/F1 (exact match of subject string, predicate, object string), micro and per
   predicate; subject-only and (subject, object)-pair scores as diagnostics.
The input reader and its checks live in data.py, the scores and report sections in scoring.py, the raw-string
SavedModel in export.py. Importing this module builds nothing.
"""

from __future__ import annotations

import bisect
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipes.relation_extract.data import (  # noqa: F401 (the story's data step; also used as task.X)
    DataNotes, Example, Triple, check_predicates, parse_example, predicate_vocab, read_examples,
)
from recipes.relation_extract.scoring import score_triples

TASK = "relation_extract"
SUBJECT_MODES = ("sample", "all")
# Threshold grid of the dev sweep run after training (the report shows the whole table).
THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
TARGET_KEYS = ("subject_start", "subject_end", "object_start", "object_end")


# ---------------------------------------------------------------------------------------------------- alignment
def occurrences(text: str, value: str) -> list[int]:
    """Start offsets of every (possibly overlapping) occurrence of ``value`` in ``text``."""
    starts, i = [], text.find(value)
    while i >= 0:
        starts.append(i)
        i = text.find(value, i + 1)
    return starts


def token_span_to_chars(offsets, span: tuple[int, int]) -> tuple[int, int]:
    return offsets[span[0]][0], offsets[span[1]][1]


def _whole_words(encoding, span: tuple[int, int]) -> bool:
    """The span neither starts nor ends inside a word (no ``##`` piece at its start or right after its end)."""
    tokens = encoding.tokens
    after = span[1] + 1
    return not tokens[span[0]].startswith("##") and not (after < len(tokens) and tokens[after].startswith("##"))


def _mention_spans(example: Example, value: str, pinned: int | None, encoding, notes: DataNotes | None):
    """Token spans of the mentions of an entity: the pinned one, else every occurrence of the string.

    Without offsets, occurrences inside a longer word ("Paris" in "Parisian") are skipped when at least one
    occurrence is whole words; otherwise the covering tokens are used and counted as misaligned.
    """
    starts = [pinned] if pinned is not None else occurrences(example.text, value)
    if pinned is None and notes is not None:
        notes.without_offsets += 1
    spans, exact, whole = [], [], []
    for s in starts:
        covering = encoding.token_span(s, s + len(value))  # (first, stop); None when truncated away
        if covering is None:
            continue
        span = (covering[0], covering[1] - 1)  # inclusive, like the start/end tags
        spans.append(span)
        if token_span_to_chars(encoding.offsets, span) == (s, s + len(value)):
            exact.append(span)
            if _whole_words(encoding, span):
                whole.append(span)
    if spans and not exact and notes is not None:
        notes.misaligned += 1  # the decoded span will be wider than the entity
    return whole if whole and pinned is None else spans


def sentence_targets(example: Example, encoding, predicate_ids: dict[str, int], notes: DataNotes | None = None):
    """``{subject token span: [(predicate id, object token span), ...]}`` for one sentence."""
    subjects: dict[tuple[int, int], set] = defaultdict(set)
    for t in example.triples:
        if t.predicate not in predicate_ids:
            continue
        subject_spans = _mention_spans(example, t.subject, t.subject_start, encoding, notes)
        object_spans = _mention_spans(example, t.object, t.object_start, encoding, notes)
        if (not subject_spans or not object_spans) and notes is not None:
            notes.truncated += 1
        for s in subject_spans:
            for o in object_spans:
                subjects[s].add((predicate_ids[t.predicate], o))
    return {s: sorted(objs) for s, objs in subjects.items()}


def object_tags(length: int, num_predicates: int, objects):
    """Dense 0/1 object start/end tags ``(length, P)`` of one subject (the graph builds the same per batch)."""
    start = np.zeros((length, num_predicates), np.float32)
    end = np.zeros((length, num_predicates), np.float32)
    for p, (s, e) in objects:
        start[s, p] = 1.0
        end[e, p] = 1.0
    return start, end


@dataclass
class SentenceFeatures:
    """Encoded sentence + its subject tags + the objects of each subject (token spans)."""
    token_ids: list[int]
    segment_ids: list[int]
    subject_start: np.ndarray
    subject_end: np.ndarray
    subjects: dict  # {(start, end): [(predicate id, (start, end)), ...]}


def encode_sentences(examples: list[Example], tokenizer, predicates: list[str], max_len: int,
                     notes: DataNotes | None = None) -> list[SentenceFeatures]:
    predicate_ids = {p: i for i, p in enumerate(predicates)}
    out = []
    for example in examples:
        encoding = tokenizer.encode(example.text, max_len=max_len)
        subjects = sentence_targets(example, encoding, predicate_ids, notes)
        n = len(encoding.token_ids)
        start, end = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for s, e in subjects:
            start[s], end[e] = 1.0, 1.0
        out.append(SentenceFeatures(encoding.token_ids, encoding.segment_ids, start, end, subjects))
    if notes is not None:
        notes.sentences = len(examples)
        notes.triples = sum(len(e.triples) for e in examples)
    return out


def training_features(sentences: list[SentenceFeatures], *, subjects: str = "sample") -> list[dict]:
    """Model examples with SPARSE object targets (dense per-predicate tags are built per batch, in the graph).

    ``subject_spans`` (n, 2) lists the sentence's subjects and ``objects`` (m, 4) rows ``[subject index, predicate,
    start, end]``. With ``subjects="sample"`` there is one example per sentence and :func:`make_train_dataset`
    draws one of its subjects at random every time the batch is drawn (so every epoch sees a fresh choice); with
    ``"all"`` there is one example per subject. A sentence without subjects still trains the subject head (all-zero
    tags); its object example uses the [CLS] position as a dummy subject without objects ("no objects here").
    """
    if subjects not in SUBJECT_MODES:
        raise ValueError(f"subjects must be one of {SUBJECT_MODES}, got {subjects!r}")
    features = []
    for sent in sentences:
        spans = sorted(sent.subjects) or [(0, 0)]
        groups = [spans] if subjects == "sample" else [[span] for span in spans]
        for group in groups:
            objects = [[k, p, s, e] for k, span in enumerate(group) for p, (s, e) in sent.subjects.get(span, [])]
            features.append({
                "token_ids": sent.token_ids, "segment_ids": sent.segment_ids,
                "subject_spans": np.array(group, np.int32).reshape(-1, 2),
                "objects": np.array(objects or [[-1, -1, -1, -1]], np.int32).reshape(-1, 4),
                "subject_start": sent.subject_start, "subject_end": sent.subject_end,
            })
    return features


def choose_subject(inputs: dict, targets: dict, num_predicates: int, random_seed):
    """One batch: pick one subject per sentence at random and build its dense object tags ``(b, seq, P)``.

    ``random_seed`` is a shape-(2,) int seed for the stateless draw. Padding positions get the target -1 so
    :func:`masked_binary_crossentropy` ignores them.
    """
    import tensorflow as tf

    spans, objects = inputs["subject_spans"], inputs["objects"]          # padded with -1
    count = tf.reduce_sum(tf.cast(spans[..., 0] >= 0, tf.int32), axis=1)  # subjects per sentence (>= 1)
    draw = tf.random.stateless_uniform(tf.shape(count), seed=random_seed)
    chosen = tf.minimum(tf.cast(draw * tf.cast(count, tf.float32), tf.int32), count - 1)
    span = tf.gather(spans, chosen, batch_dims=1)                          # (b, 2)
    keep = tf.where(tf.equal(objects[..., 0], chosen[:, None]))            # (k, 2): [row, object index]
    rows = tf.gather_nd(objects, keep)                                     # (k, 4)
    token_ids = inputs["token_ids"]
    shape = tf.stack([tf.shape(token_ids)[0], tf.shape(token_ids)[1], num_predicates])
    real = tf.not_equal(token_ids, 0)[..., None]

    def tags(position):
        index = tf.stack([tf.cast(keep[:, 0], tf.int32), rows[:, position], rows[:, 1]], axis=1)
        dense = tf.minimum(tf.scatter_nd(index, tf.ones(tf.shape(index)[:1]), shape), 1.0)
        return tf.where(real, dense, -1.0)

    model_inputs = {"token_ids": token_ids, "segment_ids": inputs["segment_ids"], "subject_span": span}
    return model_inputs, {**targets, "object_start": tags(2), "object_end": tags(3)}


def make_train_dataset(features: list[dict], batch_size: int, num_predicates: int, *, seed: int = 0,
                       shuffle: bool = True):
    """Batches of (inputs, targets) for the training model, padded per batch, a subject drawn per sentence.

    The draws come from a seeded random stream that is re-randomized on every pass over the data, so each epoch
    samples afresh and a run is reproducible given ``seed``.
    """
    import tensorflow as tf

    from bertkit.batching import make_dataset

    dataset = make_dataset(
        features, batch_size, input_keys=("token_ids", "segment_ids", "subject_spans", "objects"),
        target_keys=("subject_start", "subject_end"), shuffle=shuffle, seed=seed, bucket_by_length=shuffle,
        pad_values={"subject_spans": -1, "objects": -1, "subject_start": -1.0, "subject_end": -1.0})
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((dataset, seeds)).map(
        lambda batch, random_seed: choose_subject(*batch, num_predicates, random_seed),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------------- decoding
def decode_spans(start_probs: np.ndarray, end_probs: np.ndarray, valid: np.ndarray, threshold: float):
    """Spans from start/end probabilities of one sequence: ``(seq,)`` -> [(s, e)], or ``(seq, P)`` -> [(p, (s, e))].

    Each position whose start probability exceeds ``threshold`` is paired with the nearest position at or after it
    whose end probability exceeds ``threshold``; only ``valid`` (text) positions count.
    """
    if start_probs.ndim == 1:
        return [span for _, span in decode_spans(start_probs[:, None], end_probs[:, None], valid, threshold)]
    valid = np.asarray(valid, bool)[:, None]
    starts = np.argwhere((start_probs > threshold) & valid)
    ends = np.argwhere((end_probs > threshold) & valid)
    ends_by_label = defaultdict(list)
    for e, p in ends:  # argwhere is row-major, so each label's ends come out sorted
        ends_by_label[p].append(e)
    spans = []
    for s, p in starts:
        label_ends = ends_by_label.get(p, [])
        k = bisect.bisect_left(label_ends, s)
        if k < len(label_ends):
            spans.append((int(p), (int(s), int(label_ends[k]))))
    return sorted(spans, key=lambda x: (x[1], x[0]))


@dataclass(frozen=True)
class PredictedTriple:
    subject: str
    predicate: str
    object: str
    subject_start: int
    subject_end: int
    object_start: int
    object_end: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subject, self.predicate, self.object)

    def to_json(self) -> dict:
        return {"subject": self.subject, "predicate": self.predicate, "object": self.object,
                "subject_start": self.subject_start, "subject_end": self.subject_end,
                "object_start": self.object_start, "object_end": self.object_end}


def spans_to_triples(text: str, offsets, subject: tuple[int, int], objects, predicates) -> list[PredictedTriple]:
    """Token spans -> triples of exact substrings of ``text`` (via the tokens' character offsets)."""
    ss, se = token_span_to_chars(offsets, subject)
    out = []
    for p, span in objects:
        os_, oe = token_span_to_chars(offsets, span)
        out.append(PredictedTriple(text[ss:se], predicates[p], text[os_:oe], ss, se, os_, oe))
    return out


# ---------------------------------------------------------------------------------------------------------- model
def masked_binary_crossentropy(y_true, y_pred):
    """Mean binary cross-entropy over real positions; padded positions carry the target -1 and are ignored.

    For ``(batch, seq, P)`` object tags the per-position loss is summed over predicates (as in CasRel) so the
    loss does not shrink with the number of predicates.
    """
    import tensorflow as tf

    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    mask = tf.cast(y_true >= 0.0, tf.float32)
    eps = tf.keras.backend.epsilon()
    y_pred = tf.clip_by_value(y_pred, eps, 1.0 - eps)
    target = tf.clip_by_value(y_true, 0.0, 1.0)
    bce = -(target * tf.math.log(y_pred) + (1.0 - target) * tf.math.log(1.0 - y_pred)) * mask
    if len(bce.shape) == 3:
        bce, mask = tf.reduce_sum(bce, axis=-1), mask[..., 0]
    return tf.reduce_sum(bce) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _object_head_class():
    import tensorflow as tf

    class ObjectHead(tf.keras.layers.Layer):
        """``[hidden (b, seq, H), subject_span (b, 2)]`` -> object start/end probabilities ``(b, seq, P)`` each.

        The subject vector (mean of the hidden states at its start and end tokens) is added to every position.
        """

        def __init__(self, num_predicates: int, **kwargs):
            super().__init__(**kwargs)
            self.num_predicates = num_predicates
            self.start = tf.keras.layers.Dense(num_predicates, activation="sigmoid", dtype="float32",
                                               name="object_start")
            self.end = tf.keras.layers.Dense(num_predicates, activation="sigmoid", dtype="float32",
                                             name="object_end")

        def call(self, inputs):
            hidden, span = inputs
            hidden = tf.cast(hidden, tf.float32)
            ends = tf.gather(hidden, tf.cast(span, tf.int32), batch_dims=1)  # (b, 2, H)
            conditioned = hidden + tf.reduce_mean(ends, axis=1, keepdims=True)
            return self.start(conditioned), self.end(conditioned)

        def get_config(self):
            return {**super().get_config(), "num_predicates": self.num_predicates}

    return ObjectHead


@dataclass
class RelationModels:
    """The training model and the two inference halves sharing its layers."""
    train: object     # [token_ids, segment_ids, subject_span] -> {subject_start, subject_end, object_start, object_end}
    subjects: object  # [token_ids, segment_ids] -> (hidden, subject_start, subject_end)
    objects: object   # [hidden, subject_span] -> (object_start, object_end)


def build_models(bert_dir, num_predicates: int, *, trainable_layers=None, dropout=None) -> RelationModels:
    import tensorflow as tf

    from bertkit.encoder import load_encoder

    token_ids = tf.keras.Input((None,), dtype=tf.int32, name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype=tf.int32, name="segment_ids")
    subject_span = tf.keras.Input((2,), dtype=tf.int32, name="subject_span")
    hidden = load_encoder(bert_dir, trainable_layers=trainable_layers, dropout=dropout)([token_ids, segment_ids])
    subject_start, subject_end = (
        tf.keras.layers.Reshape((-1,), name=key)(
            tf.keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=f"{key}_dense")(hidden))
        for key in ("subject_start", "subject_end"))
    object_head = _object_head_class()(num_predicates, name="object_head")
    # Identity layers only give the outputs the names the losses, logs and metrics.csv use.
    outputs = {"subject_start": subject_start, "subject_end": subject_end,
               **{key: tf.keras.layers.Activation("linear", dtype="float32", name=key)(tensor)
                  for key, tensor in zip(("object_start", "object_end"), object_head([hidden, subject_span]))}}
    train = tf.keras.Model([token_ids, segment_ids, subject_span], outputs, name="relation_extract")
    subjects = tf.keras.Model([token_ids, segment_ids], [hidden, subject_start, subject_end], name="subjects")
    hidden_in = tf.keras.Input((None, hidden.shape[-1]), name="hidden")
    objects = tf.keras.Model([hidden_in, subject_span], list(object_head([hidden_in, subject_span])), name="objects")
    return RelationModels(train, subjects, objects)


def losses() -> dict:
    return {key: masked_binary_crossentropy for key in TARGET_KEYS}


# -------------------------------------------------------------------------------------------------- batched inference
def _pad(rows: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class Extractor:
    """Batched prediction: subjects for a batch of sentences, then objects for all (sentence, subject) pairs.

    ``extract(texts, subject_thresholds, object_thresholds)`` returns ``{(st, ot): [[PredictedTriple], ...]}``:
    the probabilities are computed once and decoded at every threshold pair (the dev sweep costs no extra model
    calls beyond the extra candidate subjects of lower thresholds).
    """

    def __init__(self, models: RelationModels, tokenizer, predicates: list[str], *, max_len: int,
                 batch_size: int = 32):
        self.models, self.tokenizer, self.predicates = models, tokenizer, predicates
        self.max_len, self.batch_size = max_len, batch_size

    def extract(self, texts: list[str], subject_thresholds=(0.5,), object_thresholds=(0.5,), progress=None):
        results = {(st, ot): [None] * len(texts) for st in subject_thresholds for ot in object_thresholds}
        encodings = [self.tokenizer.encode(t, max_len=self.max_len) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].token_ids))  # similar lengths per batch
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            batch = [encodings[i] for i in idx]
            token_ids, segment_ids = _pad([e.token_ids for e in batch]), _pad([e.segment_ids for e in batch])
            hidden, s_start, s_end = self.models.subjects.predict_on_batch(
                {"token_ids": token_ids, "segment_ids": segment_ids})
            hidden, s_start, s_end = np.asarray(hidden, np.float32), np.asarray(s_start), np.asarray(s_end)
            valid = [np.array([seq == 0 for seq in e.sequence_ids] + [False] * (token_ids.shape[1] - len(e.token_ids)))
                     for e in batch]
            # Candidate subjects at every subject threshold; each distinct (row, span) is run once.
            subjects_at = {st: [decode_spans(s_start[r], s_end[r], valid[r], st) for r in range(len(idx))]
                           for st in subject_thresholds}
            pairs = sorted({(r, span) for per_row in subjects_at.values() for r, spans in enumerate(per_row)
                            for span in spans})
            objects_of = {}
            for c in range(0, len(pairs), self.batch_size * 4):
                chunk = pairs[c:c + self.batch_size * 4]
                rows = np.array([r for r, _ in chunk])
                o_start, o_end = self.models.objects.predict_on_batch(
                    {"hidden": hidden[rows], "subject_span": np.array([span for _, span in chunk], np.int32)})
                o_start, o_end = np.asarray(o_start), np.asarray(o_end)
                for k, (r, span) in enumerate(chunk):
                    for ot in object_thresholds:
                        objects_of[(r, span, ot)] = decode_spans(o_start[k], o_end[k], valid[r], ot)
            for r, i in enumerate(idx):
                for st in subject_thresholds:
                    for ot in object_thresholds:
                        triples = []
                        for span in subjects_at[st][r]:
                            triples += spans_to_triples(texts[i], encodings[i].offsets, span,
                                                        objects_of[(r, span, ot)], self.predicates)
                        results[(st, ot)][i] = triples
            if progress is not None:
                progress(min(b + self.batch_size, len(order)), len(order))
        return results


def evaluate_examples(extractor: Extractor, examples: list[Example], *, subject_threshold: float,
                      object_threshold: float, sweep: bool = False) -> dict:
    """Scores at the given thresholds; with ``sweep`` also the triple F1 over THRESHOLD_GRID x THRESHOLD_GRID.

    Returns ``{"metrics": ..., "predictions": [set], "triples": [[PredictedTriple]], "sweep": [...]}``.
    """
    st_grid = sorted(set(THRESHOLD_GRID) | {subject_threshold}) if sweep else [subject_threshold]
    ot_grid = sorted(set(THRESHOLD_GRID) | {object_threshold}) if sweep else [object_threshold]
    results = extractor.extract([e.text for e in examples], st_grid, ot_grid)
    gold = [{t.key for t in e.triples} for e in examples]
    table = []
    for (st, ot), triples in sorted(results.items()):
        m = score_triples(gold, [{t.key for t in ts} for ts in triples])
        table.append({"subject_threshold": st, "object_threshold": ot, "triple_f1": m["triple_f1"],
                      "triple_precision": m["triple_precision"], "triple_recall": m["triple_recall"]})
    chosen = results[(subject_threshold, object_threshold)]
    predictions = [{t.key for t in ts} for ts in chosen]
    return {"metrics": score_triples(gold, predictions, extractor.predicates), "predictions": predictions,
            "triples": chosen, "sweep": table}


def best_thresholds(sweep: list[dict]) -> tuple[float, float]:
    best = max(sweep, key=lambda row: (row["triple_f1"], -abs(row["subject_threshold"] - 0.5)
                                       - abs(row["object_threshold"] - 0.5)))
    return best["subject_threshold"], best["object_threshold"]


# ------------------------------------------------------------------------------------------------------ predicting
def load_run(run_dir, *, checkpoint=None, batch_size: int = 64):
    """``(Extractor, run_config)`` rebuilt from a trained run directory (``run_config.json`` + ``best/``)."""
    from bertkit.tokenization import Tokenizer
    from bertkit.training import load_weights, read_run_config

    config = read_run_config(run_dir, TASK)
    args = config["args"]
    models = build_models(args["bert_dir"], len(config["predicates"]), trainable_layers=args.get("trainable_layers"))
    load_weights(models.train, checkpoint or Path(run_dir) / "best")
    tokenizer = Tokenizer.from_bert_dir(args["bert_dir"], per_char=args.get("per_char", False))
    extractor = Extractor(models, tokenizer, config["predicates"], max_len=args["max_len"], batch_size=batch_size)
    return extractor, config
