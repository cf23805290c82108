"""Sequence labeling (NER) with a CRF on the shared BERT encoder: the story, in the steps of the recipe contract
(``bertkit.recipe``).

1. ``read_examples``: sentences from JSONL ``{"id"?, "tokens": [...], "tags"?: [...]}`` (or unlabelled raw text
   ``{"id"?, "text": "..."}``, split into words with their character offsets) or CoNLL columns (token first, tag
   last, blank line between sentences, ``-DOCSTART-`` ignored). Tags are BIO/IOB2 or BIOES; bad input is one
   ``DataError``. ``build_head`` takes the tag set and scheme of the training data; a dev/test tag never seen in
   training is an error (``check_examples``).
2. ``encode``: each word becomes its word pieces; the FIRST piece of a word carries the word's tag, the other pieces
   only give context (they are never scored). Sentences longer than ``max_len`` pieces are cut into overlapping
   windows (``bertkit.windows.split_windows``) and each word is predicted by the window that gives it the most
   context on both sides, so nothing is truncated.
3. ``build_model``: encoder -> gather the first piece of each word (so the head runs over words, not pieces) ->
   Dense(num_tags) -> CRF (``bertkit.crf.CRF``: trained transition matrix, Viterbi decoding), or a softmax with
   ``--no-crf``. The model computes its own loss (CRF negative log-likelihood over real words).
4. ``predict`` in batches of similar length, re-join windows, read entities off the tags with character offsets into
   the input text; ``score`` with seqeval (entity level) and describe it for report.md (per type, type confusion).
5. ``serving``: a signature that tags raw strings (word splitting, tokenization and Viterbi in the graph), which
   ``export`` writes as a SavedModel.

The readers, the tag-scheme checks and the raw-text word splitting live in ``data.py``; the serving signature in
``export.py``. ``train.py`` / ``predict.py`` run these steps through ``bertkit.recipe``. Importing this module builds
nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np

from bertkit.batching import make_training_data, predict_in_length_order, sample_examples
from bertkit.errors import DataError
from bertkit.reports import md_table

from .data import Sentence, check_tags, corpus_from_records, read_corpus, split_tag

TASK = "sequence_labeling"
DEFAULTS = {"dataset": "conll2003", "epochs": 3, "batch_size": 32, "max_len": 128, "lr": 5e-5}
HEADLINE = "f1"
MODEL_KEYS = ("token_ids", "segment_ids", "word_index")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("sequence labeling")
    group.add_argument("--no-crf", dest="crf", action="store_false",
                       help="softmax over tags per word instead of the CRF (independent decisions)")
    group.add_argument("--crf-lr-multiplier", type=float, default=200.0,
                       help="the CRF transition matrix learns this many times faster than the encoder")
    group.add_argument("--dropout", type=float, default=0.1, help="dropout before the tag scores")
    group.add_argument("--tag-scheme", choices=("auto", "bio", "bioes"), default="auto",
                       help="tag scheme of the data (auto: BIOES if E-/S- tags occur, else BIO/IOB2)")
    group.add_argument("--repair-tags", action="store_true",
                       help="rewrite an entity that starts with I- (or E-) as B- (or S-) instead of failing; "
                            "the count is printed and reported")
    group.add_argument("--max-dev-examples", type=int, default=None, metavar="N",
                       help="read a seeded subset of N sentences of --dev-file (each epoch's evaluation costs less "
                            "CPU; the test file stays whole unless it is the dev file)")


def check_arguments(args) -> None:
    from bertkit.cli import AT_LEAST_1, DROPOUT, POSITIVE, check_ranges

    check_ranges(args, ("max_len", lambda v: v >= 4, "at least 4 ([CLS], two pieces, [SEP])"),
                 ("dropout", *DROPOUT), ("crf_lr_multiplier", *POSITIVE), ("max_dev_examples", *AT_LEAST_1))


# ------------------------------------------------------------------------------------------------------------- data
def _reading(args) -> dict:
    """How ``--tag-scheme``, ``--repair-tags`` and ``--per-char`` read sentences (defaults without ``args``)."""
    return {"scheme": getattr(args, "tag_scheme", "auto"), "repair": getattr(args, "repair_tags", False),
            "per_char": bool(getattr(args, "per_char", False))}


def read_examples(path, args=None) -> list[Sentence]:
    """Sentences of one JSONL or CoNLL file (``data.read_corpus``), labelled or not (all or none), tags checked with
    ``--tag-scheme`` / ``--repair-tags``; the dev file is cut to ``--max-dev-examples`` sentences (seeded)."""
    corpus = read_corpus(path, labeled=None, **_reading(args))
    if corpus.repaired:
        print(f"{path}: repaired {corpus.repaired} tags (--repair-tags)", file=sys.stderr)
    if getattr(args, "max_dev_examples", None) and str(path) == str(args.dev_file):
        return sample_examples(corpus.sentences, args.max_dev_examples, args.seed)
    return corpus.sentences


def to_examples(records, source, args=None) -> list[Sentence]:
    """Sentences of ``(line, record)`` pairs (``data.sentences_from_records``): token lists, or raw texts."""
    return corpus_from_records(records, source, labeled=None, **_reading(args)).sentences


def is_labelled(examples) -> bool:
    return all(s.tags is not None for s in examples)


def tag_vocab(sentences: list[Sentence]) -> list[str]:
    """Tags of the training sentences, ``"O"`` first (id 0), then by type and prefix."""
    tags = {tag for s in sentences for tag in s.tags} - {"O"}
    order = {p: i for i, p in enumerate("BIES")}
    return ["O"] + sorted(tags, key=lambda t: (split_tag(t)[1], order[split_tag(t)[0]]))


def build_head(train_examples, args, tokenizer) -> dict:
    """Tag set and scheme of the training data, window length and the head's options."""
    scheme, _ = check_tags(train_examples, args.train_file, scheme=args.tag_scheme)
    tags = tag_vocab(train_examples)
    if len(tags) < 2:
        raise DataError(args.train_file, None, "tags", "every tag is O: there is no entity to learn (is this the "
                                                       "labelled training file?)")
    return {"tags": tags, "scheme": scheme, "max_len": args.max_len, "use_crf": args.crf,
            "dropout": args.dropout, "crf_lr_multiplier": args.crf_lr_multiplier}


def check_examples(examples, head, path) -> None:
    """Gold tags must follow the training scheme, and a tag the model never saw cannot be predicted."""
    if not is_labelled(examples):
        return
    check_tags(examples, path, scheme=head["scheme"])
    known = set(head["tags"])
    for s in examples:
        for tag, line in zip(s.tags, s.lines):
            if tag not in known:
                raise DataError(path, line, "tags", f"tag {tag!r} does not occur in the training data")


# --------------------------------------------------------------------------------------------------------- features
@dataclass
class Window:
    """Where a model row comes from: sentence ``sentence``, its words ``words`` (consecutive word indices), and for
    each of them whether this row is the one whose prediction counts (the window with the most context)."""
    sentence: int
    words: list[int]
    owned: list[bool]


def make_features(tokenizer, sentences: list[list[str]], max_len: int, tags: list[list[int]] | None = None):
    """Model rows ``{"token_ids", "segment_ids", "word_index"[, "tags"]}`` and their ``Window`` s.

    ``word_index[j]`` is the position of word ``j``'s first piece (>= 1, after ``[CLS]``); the model reads each word
    there. A word that tokenises to nothing (e.g. only control characters) gets one ``[UNK]`` piece, and a word with
    more than ``(max_len - 2) // 2`` pieces keeps only that many (only its first piece is scored). Sentences over
    ``max_len - 2`` pieces become overlapping windows with stride ``(max_len - 2) // 2``, so every word lies whole in
    some window; each word is owned by the window where it has the most context on both sides. A sentence of no
    words has no row.
    """
    from bertkit.windows import split_windows

    span, stride = max_len - 2, (max_len - 2) // 2
    rows, windows = [], []
    for index, words in enumerate(sentences):
        encoding = tokenizer.encode_words(list(words))
        pieces = [[] for _ in words]
        for token_id, word in zip(encoding.token_ids, encoding.word_ids):
            if word is not None:
                pieces[word].append(token_id)
        pieces = [p[:stride] or [tokenizer.unk_id] for p in pieces]
        flat = [t for p in pieces for t in p]
        starts = np.cumsum([0] + [len(p) for p in pieces])   # starts[w]..starts[w+1]: pieces of word w
        spans = split_windows(len(flat), span, stride)
        best, context = [None] * len(words), [-1] * len(words)
        members = []
        for k, (lo, hi) in enumerate(spans):   # the words lying whole in pieces [lo, hi)
            inside = list(range(int(np.searchsorted(starts[:-1], lo, "left")),
                                int(np.searchsorted(starts[1:], hi, "right"))))
            members.append(inside)
            for w in inside:
                room = min(starts[w] - lo, hi - starts[w + 1])
                if room > context[w]:
                    best[w], context[w] = k, room
        assert all(b is not None for b in best), "split_windows left a word uncovered"
        for k, inside in enumerate(members):
            if not inside:
                continue
            first, last = inside[0], inside[-1]
            token_ids = [tokenizer.cls_id] + flat[starts[first]:starts[last + 1]] + [tokenizer.sep_id]
            row = {"token_ids": np.asarray(token_ids, np.int32),
                   "segment_ids": np.zeros(len(token_ids), np.int32),
                   "word_index": np.asarray([1 + starts[w] - starts[first] for w in inside], np.int32)}
            if tags is not None:
                row["tags"] = np.asarray([tags[index][w] for w in inside], np.int32)
            rows.append(row)
            windows.append(Window(index, inside, [best[w] == k for w in inside]))
    return rows, windows


def join_windows(windows: list[Window], window_tags, sentence_lengths: list[int]) -> list[list]:
    """Per-sentence predictions from per-window ones, each word taken from the window that owns it."""
    out = [[None] * n for n in sentence_lengths]
    for window, predicted in zip(windows, window_tags):
        for word, owned, value in zip(window.words, window.owned, predicted):
            if owned:
                out[window.sentence][word] = value
    return out


def encode(examples, tokenizer, head) -> list[dict]:
    """Model rows (windows) of the sentences, with the tag id of each word when they are labelled."""
    index = {tag: i for i, tag in enumerate(head["tags"])}
    tags = [[index[t] for t in s.tags] for s in examples] if is_labelled(examples) else None
    rows, _ = make_features(tokenizer, [s.tokens for s in examples], head["max_len"], tags)
    return rows


def training_data(features, head, *, batch_size, seed):
    """Shuffled batches of similar length (less padding: CPU time is the budget); an epoch is one pass."""
    return make_training_data(features, batch_size, seed=seed, input_keys=MODEL_KEYS, target_keys=("tags",),
                              length_key="token_ids")


# ------------------------------------------------------------------------------------------------------------ model
def build_model(bert_dir, head, *, trainable_layers=None, encoder=None):
    """encoder -> first piece of each word -> dropout -> Dense(num_tags) -> CRF or softmax (built, ready to load).

    ``encoder``: an encoder already loaded (``bertkit.encoder.load_encoder``), used as it is instead of loading
    ``bert_dir``'s, so several task models can share one; its ``trainable_layers`` are then the caller's business."""
    import tensorflow as tf

    from bertkit.crf import CRF
    from bertkit.encoder import load_encoder

    num_tags = len(head["tags"])

    class Tagger(tf.keras.Model):
        """Word-level tagger. ``call`` returns tag scores ``(batch, words, num_tags)``; ``compute_loss`` is the CRF
        negative log-likelihood (or softmax cross-entropy) over real words only; ``decode`` returns tag ids."""

        def __init__(self):
            super().__init__(name="tagger")
            self.encoder = (encoder if encoder is not None
                            else load_encoder(bert_dir, trainable_layers=trainable_layers))
            self.dropout = tf.keras.layers.Dropout(head["dropout"])
            self.scores = tf.keras.layers.Dense(num_tags, dtype="float32", name="tag_scores")
            self.crf = (CRF(num_tags, lr_multiplier=head["crf_lr_multiplier"], name="crf") if head["use_crf"]
                        else None)
            self.loss_tracker = tf.keras.metrics.Mean(name="loss")

        def call(self, inputs, training=False):
            hidden = self.encoder([inputs["token_ids"], inputs["segment_ids"]], training=training)
            words = tf.gather(hidden, inputs["word_index"], batch_dims=1)   # (batch, words, hidden)
            return self.scores(self.dropout(words, training=training))

        @staticmethod
        def word_lengths(inputs):
            return tf.reduce_sum(tf.cast(inputs["word_index"] > 0, tf.int32), axis=1)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
            lengths = self.word_lengths(x)
            if self.crf is not None:
                loss = -tf.reduce_mean(self.crf.log_likelihood(y_pred, y, lengths))
            else:
                mask = tf.sequence_mask(lengths, tf.shape(y)[1], dtype=tf.float32)
                per_word = tf.keras.losses.sparse_categorical_crossentropy(y, y_pred, from_logits=True)
                loss = tf.reduce_sum(per_word * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
            if self.losses:
                loss += tf.add_n(self.losses)
            self.loss_tracker.update_state(loss)
            return loss

        @property
        def metrics(self):
            return [self.loss_tracker]

        # autograph=False: plain Python control flow only, and no re-reading of this file's source at trace time.
        @tf.function(input_signature=[{k: tf.TensorSpec([None, None], tf.int32, name=k) for k in MODEL_KEYS}],
                     autograph=False)
        def decode_batch(self, inputs):
            return self.decode(inputs)

        def decode(self, inputs):
            """Best tag ids ``(batch, words)`` (0 on padding): Viterbi with the CRF, argmax without."""
            scores, lengths = self(inputs, training=False), self.word_lengths(inputs)
            if self.crf is not None:
                return self.crf(scores, lengths)
            mask = tf.sequence_mask(lengths, tf.shape(scores)[1])
            return tf.where(mask, tf.argmax(scores, axis=-1, output_type=tf.int32), 0)

    model = Tagger()
    dummy = {"token_ids": tf.constant([[1, 5, 2]]), "segment_ids": tf.zeros((1, 3), tf.int32),
             "word_index": tf.constant([[1]])}
    model(dummy)
    if model.crf is not None:
        model.crf.build(None)
    return model


# --------------------------------------------------------------------------------------------------- predict, score
def predict(model, tokenizer, examples, head, *, batch_size=64) -> list[dict]:
    """One ``{"id"?, "text", "entities": [{"type", "start", "end", "text"}], "tags"}`` per sentence: character
    offsets into ``text`` (the raw input text, or the tokens joined by single spaces), one tag per word."""
    rows, windows = make_features(tokenizer, [s.tokens for s in examples], head["max_len"])
    decoded = predict_in_length_order(model.decode_batch, rows, batch_size, input_keys=MODEL_KEYS)
    window_tags = [tags[:len(row["word_index"])] for tags, row in zip(decoded, rows)]
    predictions = []
    for s, tag_ids in zip(examples, join_windows(windows, window_tags, [len(s.tokens) for s in examples])):
        tags = [head["tags"][i] for i in tag_ids]
        prediction = {"text": s.text, "entities": char_entities(s.text, s.spans, tags), "tags": tags}
        predictions.append(prediction if s.id is None else {"id": s.id, **prediction})
    return predictions


def entities_from_tags(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, first_word, end_word)`` (end exclusive) from BIO or BIOES tags, as seqeval reads them."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def char_entities(text: str, spans: list[tuple[int, int]], tags: list[str]) -> list[dict]:
    """Entities with exact character offsets: ``spans[i]`` is word ``i``'s ``(start, end)`` in ``text``."""
    out = []
    for kind, first, end in entities_from_tags(tags):
        start, stop = spans[first][0], spans[end - 1][1]
        out.append({"type": kind, "start": start, "end": stop, "text": text[start:stop]})
    return out


def score(examples, predictions, head) -> dict:
    """Entity-level scores (``evaluate_tags``) and ``repaired_tags``: gold tags ``--repair-tags`` rewrote."""
    metrics = evaluate_tags([s.tags for s in examples], [p["tags"] for p in predictions])
    metrics["repaired_tags"] = sum(s.repaired for s in examples)
    return metrics


def evaluate_tags(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Entity-level scores (seqeval, conlleval rules): micro precision/recall/f1, per-type and the type confusion.

    ``confusion[gold_type][pred_type]`` counts gold entities by the type predicted for the SAME span; a gold entity
    with no prediction on exactly its span counts under ``"(missed)"``, and a predicted span that is no gold entity
    is counted as ``confusion["(spurious)"][pred_type]``.
    """
    from seqeval.metrics import classification_report

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {kind: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                       "support": int(v["support"])}
                for kind, v in report.items() if not kind.endswith(" avg")}
    confusion: dict[str, Counter] = {}
    for g_tags, p_tags in zip(gold, pred):
        g = {(s, e): t for t, s, e in entities_from_tags(g_tags)}
        p = {(s, e): t for t, s, e in entities_from_tags(p_tags)}
        for span, kind in g.items():
            confusion.setdefault(kind, Counter())[p.get(span, "(missed)")] += 1
        for span, kind in p.items():
            if span not in g:
                confusion.setdefault("(spurious)", Counter())[kind] += 1
    return {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
            "recall": float(micro["recall"]), "support": int(micro["support"]),
            "macro_f1": float(report.get("macro avg", {}).get("f1-score", 0.0)),
            "per_type": per_type, "confusion": {k: dict(v) for k, v in confusion.items()}}


def markdown_sections(metrics: dict) -> list[tuple[str, str]]:
    """Report sections: the per-type table and the entity-type confusion."""
    per_type = md_table(["type", "precision", "recall", "f1", "support"],
                        [[k, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", v["support"]]
                         for k, v in sorted(metrics["per_type"].items())])
    kinds = sorted(metrics["per_type"])
    rows_gold = kinds + ["(spurious)"]
    cols = kinds + ["(missed)"]

    def cell(gold, predicted):
        if gold == "(spurious)" and predicted == "(missed)":
            return ""
        return metrics["confusion"].get(gold, {}).get(predicted, 0)

    confusion = md_table(["gold (rows) / predicted"] + cols, [[g] + [cell(g, c) for c in cols] for g in rows_gold])
    note = ("Rows: gold entity type; columns: type predicted for exactly the same span. (missed): no entity predicted"
            " on that span (nothing, or wrong boundaries); (spurious): predicted span that is not a gold entity.")
    return [("Per entity type (seqeval, entity level)", per_type), ("Entity-type confusion", note + "\n\n" + confusion)]


def report_sections(metrics, examples, predictions, head, out_dir) -> tuple[list, dict]:
    return markdown_sections(metrics), {}


# ----------------------------------------------------------------------------------------------------------- export
def serving(model, tokenizer, head):
    """The raw-string signature ``serving_default(texts)`` (``export.tagger_serving``: word splitting, tokenization
    and Viterbi in the graph; up to 510 pieces per text, no windows) as a ``bertkit.export.Serving``."""
    from .export import tagger_serving

    return tagger_serving(model, tokenizer, head["tags"])


def export(model, tokenizer, head, path):
    """A SavedModel of :func:`serving`'s signature that tags raw strings (loads without bertkit)."""
    from bertkit.export import export_serving

    return export_serving(path, model, serving(model, tokenizer, head))
