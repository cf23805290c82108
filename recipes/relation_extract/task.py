"""Joint (subject, predicate, object) extraction with the cascade ("CasRel") design.

The story, in the steps of the recipe contract (``bertkit.recipe``):
1. ``read_examples`` (data.py): JSONL lines ``{"id"?, "text", "spo_list": [{"subject", "predicate", "object"}]}``
   (the Baidu DuIE form), optionally with ``subject_start`` / ``object_start`` character offsets pinning the
   annotated mention; without ``spo_list`` on every line a file is prediction input. Without offsets every
   occurrence of an entity string is labelled (counted in the report). ``build_head`` collects the predicates.
2. ``encode``: per sentence, 0/1 tags for subject starts and ends and the sparse (subject, predicate, object)
   token spans. ``training_data`` draws one random subject per sentence each time the sentence is batched
   (``--subjects sample``, CasRel's choice) and builds its dense per-predicate object tags in the input pipeline;
   ``--subjects all`` shows every subject as its own example.
3. ``build_model``: encoder -> two sigmoid Dense(1) heads (subject start/end). The subject's vector, the mean of the
   encoder vectors at its start and end tokens, is added to every position, then two sigmoid Dense(num_predicates)
   heads tag object starts/ends per predicate. Padding is masked out of every ``loss``.
4. ``predict``, batched over sentences of similar length and then over all their (sentence, subject) pairs: each
   start above the threshold is paired with the nearest end at or after it that is above the threshold. Token
   spans are mapped back to exact substrings of the original text by character offsets.
5. ``score``: triple precision/recall/F1 (exact match of subject string, predicate, object string), micro and per
   predicate; subject-only and (subject, object)-pair scores as diagnostics. ``tune`` sweeps the two thresholds on
   dev after training (the report shows the table; ``--tune-thresholds`` keeps the best pair).
The reader lives in data.py, the scores and report sections in scoring.py, the raw-string serving signatures
(``serving``, which ``export`` writes as a SavedModel) in export.py. Importing this module builds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from bertkit.batching import batch_predictor, make_training_data, per_model, predict_in_length_order
from bertkit.cli import say
from bertkit.errors import DataError

from .data import (  # noqa: F401 (read_examples / to_examples are the contract's read steps)
    DataNotes, Example, Triple, check_predicates, parse_example, predicate_vocab, read_examples, to_examples,
)
from .export import serving  # the contract's serving step
from .scoring import best_thresholds, data_notes, error_examples, report_markdown, score_triples, threshold_sweep

TASK = "relation_extract"
DEFAULTS = {"dataset": "conll04", "epochs": 30, "batch_size": 16, "max_len": 160, "lr": 2e-4}
HEADLINE = "triple_f1"
SUBJECT_MODES = ("sample", "all")
# Threshold grid of the dev sweep run after training (the report shows the whole table).
THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
TARGET_KEYS = ("subject_start", "subject_end", "object_start", "object_end")



def add_arguments(parser) -> None:
    # Dev F1 is noisy from epoch to epoch (one sampled subject per sentence): wait longer before stopping.
    parser.set_defaults(early_stopping_patience=6)
    group = parser.add_argument_group("relation extraction")
    group.add_argument("--subjects", choices=SUBJECT_MODES, default="sample",
                       help="sample: one random subject per sentence each time it is batched (CasRel); "
                            "all: every subject of a sentence as its own training example")
    group.add_argument("--subject-threshold", type=float, default=0.5,
                       help="a token starts/ends a subject when its probability exceeds this "
                            "(0.5 is the best or within 0.01 of the best on the CoNLL04 dev sweep, README)")
    group.add_argument("--object-threshold", type=float, default=0.5,
                       help="same for object starts/ends per predicate")
    group.add_argument("--tune-thresholds", action="store_true",
                       help="decode test (and keep in the run) the best thresholds of the dev sweep instead of the "
                            "two above")
    group.add_argument("--dropout", type=float, default=None, help="encoder dropout (default: the checkpoint's)")


def check_arguments(args) -> None:
    from bertkit.cli import DROPOUT, OPEN_UNIT, check_ranges

    check_ranges(args, ("subject_threshold", *OPEN_UNIT), ("object_threshold", *OPEN_UNIT), ("dropout", *DROPOUT))


# ------------------------------------------------------------------------------------------------------------- data
def is_labelled(examples) -> bool:
    return all(e.triples is not None for e in examples)


def build_head(train_examples, args, tokenizer) -> dict:
    """The predicates of the training data, the training subject mode, encoder dropout and the decoding
    thresholds (``tune`` adds the dev sweep and, with ``--tune-thresholds``, replaces them by its best pair)."""
    predicates = predicate_vocab(train_examples)
    if not predicates:
        raise DataError(args.train_file, None, "spo_list", "no triples to learn from (every spo_list is empty)")
    return {"predicates": predicates, "max_len": args.max_len, "subjects": args.subjects, "dropout": args.dropout,
            "thresholds": {"subject": args.subject_threshold, "object": args.object_threshold},
            "tune_thresholds": bool(args.tune_thresholds)}


def check_examples(examples, head, path) -> None:
    """A dev/test predicate never seen in training is a counted warning, not an error: the triple stays gold (a
    guaranteed miss); the report counts them too."""
    notes = DataNotes(str(path))
    check_predicates(examples, head["predicates"], notes)
    if notes.unknown_predicates:
        say(f"warning: {path}: {notes.unknown_predicates} triple(s) with a predicate unseen in training")
        for warning in notes.warnings:
            say(f"warning: {warning}")


# ------------------------------------------------------------------------------------------------------ alignment
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


# --------------------------------------------------------------------------------------------------------- features
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
    start, end]``. With ``subjects="sample"`` there is one example per sentence and :func:`training_data` draws one
    of its subjects at random every time the batch is drawn (so every epoch sees a fresh choice); with ``"all"``
    there is one example per subject. A sentence without subjects still trains the subject head (all-zero tags);
    its object example uses the [CLS] position as a dummy subject without objects ("no objects here").
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


def encode(examples, tokenizer, head) -> list[dict]:
    """Training features (see :func:`training_features`); what the targets lost (mentions cut off by max_len or
    not on token boundaries, strings without offsets) is printed."""
    notes = DataNotes(examples[0].path)
    sentences = encode_sentences(examples, tokenizer, head["predicates"], head["max_len"], notes)
    features = training_features(sentences, subjects=head["subjects"])
    say(notes.summary())
    say(f"train: {len(examples):,} sentences -> {len(features):,} examples ({head['subjects']} subjects); "
         f"{len(head['predicates'])} predicates")
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


def training_data(features, head, *, batch_size, seed):
    """Shuffled batches grouped by length (one pass = one epoch) with a subject drawn per sentence per batch.

    The draws come from a seeded random stream that rides along with the batches and is re-randomized on every
    pass, so each epoch samples afresh and a run is reproducible given ``seed``.
    """
    import tensorflow as tf

    data = make_training_data(
        features, batch_size, seed=seed, input_keys=("token_ids", "segment_ids", "subject_spans", "objects"),
        target_keys=("subject_start", "subject_end"),
        pad_values={"subject_spans": -1, "objects": -1, "subject_start": -1.0, "subject_end": -1.0})
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    num_predicates = len(head["predicates"])
    return replace(data, dataset=tf.data.Dataset.zip((data.dataset, seeds))).map(
        lambda batch, random_seed: choose_subject(*batch, num_predicates, random_seed))


# ------------------------------------------------------------------------------------------------------------ model
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


def build_model(bert_dir, head, *, trainable_layers=None, encoder=None):
    """``{token_ids, segment_ids, subject_span}`` -> ``{subject_start, subject_end, object_start, object_end}``
    probabilities; :func:`inference_stages` splits it into the two stages predict and serving run.

    ``encoder``: an encoder already loaded (``bertkit.encoder.load_encoder``), used as it is instead of loading
    ``bert_dir``'s, so several task models can share one; its ``trainable_layers`` and dropout (``head["dropout"]``
    here) are then the caller's business."""
    import tensorflow as tf

    from bertkit.encoder import load_encoder

    token_ids = tf.keras.Input((None,), dtype=tf.int32, name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype=tf.int32, name="segment_ids")
    subject_span = tf.keras.Input((2,), dtype=tf.int32, name="subject_span")
    if encoder is None:
        encoder = load_encoder(bert_dir, trainable_layers=trainable_layers, dropout=head.get("dropout"))
    hidden = encoder([token_ids, segment_ids])
    subject_start, subject_end = (
        tf.keras.layers.Reshape((-1,), name=key)(
            tf.keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=f"{key}_dense")(hidden))
        for key in ("subject_start", "subject_end"))
    object_head = _object_head_class()(len(head["predicates"]), name="object_head")
    # Identity layers only give the outputs the names the losses, logs and metrics.csv use.
    outputs = {"subject_start": subject_start, "subject_end": subject_end,
               **{key: tf.keras.layers.Activation("linear", dtype="float32", name=key)(tensor)
                  for key, tensor in zip(("object_start", "object_end"), object_head([hidden, subject_span]))}}
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "subject_span": subject_span}
    return tf.keras.Model(inputs, outputs, name=TASK)


def loss(head) -> dict:
    return {key: masked_binary_crossentropy for key in TARGET_KEYS}


def inference_stages(model):
    """The cascade's two stages, sharing the trained model's layers: ``subjects``, a Keras model
    ``{token_ids, segment_ids}`` -> ``[hidden, subject start, subject end]``, and the ``object_head`` layer
    ``[hidden, subject_span]`` -> ``(object start, object end)`` (one encoder pass per sentence, then only the
    head per subject)."""
    import tensorflow as tf

    object_head = model.get_layer("object_head")
    hidden = object_head.get_input_at(0)[0]
    inputs = {name: model.get_layer(name).output for name in ("token_ids", "segment_ids")}
    subjects = tf.keras.Model(inputs, [hidden, model.get_layer("subject_start").output,
                                       model.get_layer("subject_end").output], name="subjects")
    return subjects, object_head


# --------------------------------------------------------------------------------------------------------- decoding
def decode_spans(start_probs: np.ndarray, end_probs: np.ndarray, valid: np.ndarray, threshold: float):
    """Spans from start/end probabilities of one sequence: ``(seq,)`` -> [(s, e)], or ``(seq, P)`` -> [(p, (s, e))].

    Each position whose start probability exceeds ``threshold`` is paired with the nearest position at or after it
    whose end probability exceeds ``threshold``; only ``valid`` (text) positions count.
    """
    if start_probs.ndim == 1:
        return [span for _, span in decode_spans(start_probs[:, None], end_probs[:, None], valid, threshold)]
    seq = start_probs.shape[0]
    valid = np.asarray(valid, bool)[:, None]
    # For every position and label, the nearest end at or after it (seq where there is none): a reversed running
    # minimum, so an untrained model's thousands of candidate starts cost no Python loop.
    end_at = np.where((end_probs > threshold) & valid, np.arange(seq)[:, None], seq)
    next_end = np.minimum.accumulate(end_at[::-1], axis=0)[::-1]
    starts, labels = np.nonzero((start_probs > threshold) & valid)
    ends = next_end[starts, labels]
    found = ends < seq
    starts, labels, ends = starts[found], labels[found], ends[found]
    order = np.lexsort((labels, ends, starts))  # by span, then label
    return list(zip(labels[order].tolist(), zip(starts[order].tolist(), ends[order].tolist())))


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


def _traced_stages(model):
    """``(subjects model, its batch predictor, the object head's tf.function)``: traced on first use and kept for the
    model's life (``per_model``), so each dev evaluation of a run reuses the first one's traces."""
    import tensorflow as tf

    subjects, object_head = inference_stages(model)
    objects = tf.function(lambda hidden, span: object_head([hidden, span], training=False), input_signature=[
        tf.TensorSpec((None, None, subjects.outputs[0].shape[-1]), tf.float32), tf.TensorSpec((None, 2), tf.int32)])
    return subjects, batch_predictor(subjects), objects


def cascade_decoder(model, subject_thresholds, object_thresholds, *, pairs_per_call: int):
    """A ``predict_batch`` for ``predict_in_length_order``: one encoder pass over a batch of sentences, then the
    object head over all their candidate (sentence, subject) pairs, ``pairs_per_call`` at a time. Each sentence
    gets ``{(subject threshold, object threshold): [(subject span, [(predicate id, object span)])]}`` for every
    threshold pair: the probabilities are computed once and decoded at every pair (a sweep costs no model calls
    beyond those of the extra candidate subjects of lower thresholds)."""
    _, subjects, objects = per_model(model, "cascade_stages", lambda: _traced_stages(model))

    def predict_batch(batch):
        hidden, s_start, s_end = subjects(batch)
        hidden, valid = np.asarray(hidden, np.float32), np.asarray(batch["text_mask"], bool)
        rows = range(len(valid))
        # Candidate subjects at every subject threshold; each distinct (row, span) goes through the head once.
        subjects_at = {st: [decode_spans(s_start[r], s_end[r], valid[r], st) for r in rows]
                       for st in subject_thresholds}
        pairs = sorted({(r, span) for per_row in subjects_at.values() for r, spans in enumerate(per_row)
                        for span in spans})
        objects_of = {}
        for c in range(0, len(pairs), pairs_per_call):
            chunk = pairs[c:c + pairs_per_call]
            o_start, o_end = (np.asarray(x) for x in objects(hidden[[r for r, _ in chunk]],
                                                             np.array([span for _, span in chunk], np.int32)))
            for k, (r, span) in enumerate(chunk):
                for ot in object_thresholds:
                    objects_of[(r, span, ot)] = decode_spans(o_start[k], o_end[k], valid[r], ot)
        found = np.empty(len(valid), dtype=object)  # one entry per sentence: predict_in_length_order slices rows
        for r in rows:
            found[r] = {(st, ot): [(span, objects_of[(r, span, ot)]) for span in subjects_at[st][r]]
                        for st in subject_thresholds for ot in object_thresholds}
        return found

    return predict_batch


class Prediction(dict):
    """One sentence's output, ``{"id"?, "text", "spo_list": [...]}`` (what predict.py writes: the recipe's own
    input form, with ``subject_end`` / ``object_end`` too). For a sentence with gold triples (dev, a labelled test
    file) it also keeps attributes that are never written out: ``decoded``, its token spans at every threshold pair
    of the dev sweep, with the tokens' ``offsets`` (``tune`` reads them through :meth:`sweep`), and ``notes``, how
    its gold triples align with the tokens (``score`` counts them for the report)."""

    decoded: dict | None = None  # {(subject threshold, object threshold): [(subject span, [(predicate, span)])]}
    offsets: list | None = None
    notes: DataNotes | None = None

    def sweep(self, predicates: list[str]) -> dict:
        """``{threshold pair: {(subject, predicate, object)}}`` over the sweep grid: the keys of
        ``decoded_triples`` at each pair, each token span's substring cut once (an untrained model's spans recur
        at every pair, thousands of them)."""
        text, offsets, substrings = self["text"], self.offsets, {}

        def substring(span):
            if span not in substrings:
                start, end = token_span_to_chars(offsets, span)
                substrings[span] = text[start:end]
            return substrings[span]

        return {pair: {(substring(subject), predicates[p], substring(span)) for subject, objects in decoded
                       for p, span in objects}
                for pair, decoded in self.decoded.items()}


def decoded_triples(text: str, offsets, decoded, predicates) -> list[PredictedTriple]:
    """The triples of one sentence's decoded ``[(subject span, [(predicate id, object span)])]``."""
    return [t for subject, objects in decoded for t in spans_to_triples(text, offsets, subject, objects, predicates)]


def predict(model, tokenizer, examples, head, *, batch_size=64) -> list[Prediction]:
    """Triples of each example at the head's thresholds, with character offsets into its text (end exclusive:
    ``text[subject_start:subject_end] == subject``); labelled examples are also decoded over the sweep grid."""
    thresholds = (head["thresholds"]["subject"], head["thresholds"]["object"])
    labelled = is_labelled(examples)
    grid = ([sorted(set(THRESHOLD_GRID) | {t}) for t in thresholds] if labelled
            else [[thresholds[0]], [thresholds[1]]])
    encodings = [tokenizer.encode(e.text, max_len=head["max_len"]) for e in examples]
    features = [{"token_ids": enc.token_ids, "segment_ids": enc.segment_ids,
                 "text_mask": [s == 0 for s in enc.sequence_ids]} for enc in encodings]
    found = predict_in_length_order(cascade_decoder(model, *grid, pairs_per_call=4 * batch_size), features,
                                    batch_size, input_keys=("token_ids", "segment_ids", "text_mask"))
    predicate_ids = {p: i for i, p in enumerate(head["predicates"])}
    predictions = []
    for example, encoding, decoded in zip(examples, encodings, found):
        triples = decoded_triples(example.text, encoding.offsets, decoded[thresholds], head["predicates"])
        prediction = Prediction({} if example.id is None else {"id": example.id})
        prediction.update(text=example.text, spo_list=[t.to_json() for t in triples])
        if labelled:
            prediction.decoded, prediction.offsets = decoded, encoding.offsets
            prediction.notes = DataNotes(example.path)
            sentence_targets(example, encoding, predicate_ids, prediction.notes)
        predictions.append(prediction)
    return predictions


# ------------------------------------------------------------------------------------------------ score, tune, report
def _gold(examples) -> list[set]:
    return [{t.key for t in e.triples} for e in examples]


def _predicted(predictions) -> list[set]:
    return [{(t["subject"], t["predicate"], t["object"]) for t in p["spo_list"]} for p in predictions]


def score(examples, predictions, head) -> dict:
    """Triple, (subject, object) pair and subject scores, per predicate, the thresholds used, the dev sweep (once
    ``tune`` ran) and the data notes of these examples."""
    metrics = score_triples(_gold(examples), _predicted(predictions), head["predicates"])
    metrics["thresholds"] = dict(head["thresholds"])
    if "dev_sweep" in head:
        metrics["dev_sweep"] = head["dev_sweep"]
    metrics["data"] = data_notes(examples, predictions, head["predicates"]).counts()
    return metrics


def tune(examples, predictions, head) -> dict:
    """The dev sweep: triple F1 at every pair of THRESHOLD_GRID (plus the run's own pair), kept in the head for the
    report; with ``--tune-thresholds`` the best pair becomes the run's thresholds."""
    sweep = threshold_sweep(_gold(examples), [p.sweep(head["predicates"]) for p in predictions])
    thresholds = head["thresholds"]
    if head["tune_thresholds"]:
        subject, object_ = best_thresholds(sweep)
        thresholds = {"subject": subject, "object": object_}
    return {**head, "thresholds": thresholds, "dev_sweep": sweep}


def report_sections(metrics, examples, predictions, head, out_dir) -> tuple[list, dict]:
    """Scores by stage, per predicate, the dev threshold sweep, data notes and the missing / spurious triples of
    the first sentences with errors (no figures)."""
    source = ("best of the dev sweep (--tune-thresholds)" if head["tune_thresholds"]
              else "--subject-threshold / --object-threshold")
    notes = data_notes(examples, predictions, head["predicates"])
    errors = error_examples(examples, _predicted(predictions))
    return report_markdown(metrics, head, notes, errors, threshold_source=source), {}


# ----------------------------------------------------------------------------------------------------------- export
def export(model, tokenizer, head, path):
    """A SavedModel of :func:`serving`'s signatures (export.py describes them) over raw strings."""
    from bertkit.export import export_serving

    return export_serving(path, model, serving(model, tokenizer, head))
