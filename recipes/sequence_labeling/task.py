"""Sequence labeling (NER) with a CRF on the shared BERT encoder: the story in one file.

1. Read sentences: JSONL ``{"tokens": [...], "tags": [...]}`` or CoNLL columns (token first, tag last, blank line
   between sentences, ``-DOCSTART-`` ignored). Tags are BIO/IOB2 or BIOES; bad input is one ``DataError``.
2. Features: each word becomes its word pieces; the FIRST piece of a word carries the word's tag, the other pieces
   only give context (they are never scored). Sentences longer than ``max_len`` pieces are cut into overlapping
   windows (``bertkit.windows.split_windows``) and each word is predicted by the window that gives it the most
   context on both sides, so nothing is truncated.
3. Head: encoder -> gather the first piece of each word (so the head runs over words, not pieces) -> Dense(num_tags)
   -> CRF (``bertkit.crf.CRF``: trained transition matrix, Viterbi decoding), or a softmax with ``use_crf=False``.
4. Decode in batches, re-join windows, read entities off the tags; evaluate with seqeval (entity level).

The readers, the tag-scheme checks and the raw-text word splitting live in ``data.py``; the SavedModel export (word
splitting, tokenization and decoding in the graph) in ``export.py``. Importing this module builds nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.errors import DataError
from recipes.sequence_labeling.data import Corpus, check_tags, read_conll, read_jsonl, split_tag, split_words

TASK = "sequence_labeling"
MODEL_KEYS = ("token_ids", "segment_ids", "word_index")


# ------------------------------------------------------------------------------------------------------------- data
def read_corpus(path, *, scheme: str = "auto", repair: bool = False, labeled: bool = True) -> Corpus:
    """Read JSONL (``.jsonl``/``.json``) or CoNLL columns (anything else), then check the tags (``check_tags``)."""
    path = str(path)
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        sentences = list(read_jsonl(path, labeled))
    else:
        sentences = list(read_conll(path, labeled))
    if not sentences:
        raise DataError(path, None, None, "no sentences in file")
    if not labeled:
        return Corpus(path, sentences, scheme if scheme != "auto" else "bio")
    scheme, repaired = check_tags(sentences, path, scheme=scheme, repair=repair)
    return Corpus(path, sentences, scheme, repaired)


def tag_vocab(corpus: Corpus) -> list[str]:
    """Tags of the training corpus, ``"O"`` first (id 0), then by type and prefix."""
    tags = {tag for s in corpus.sentences for tag in s.tags} - {"O"}
    order = {p: i for i, p in enumerate("BIES")}
    return ["O"] + sorted(tags, key=lambda t: (split_tag(t)[1], order[split_tag(t)[0]]))


def tag_ids(corpus: Corpus, tags: list[str]) -> list[list[int]]:
    """Tag ids per sentence; a tag not in ``tags`` (unseen in training) is a ``DataError``."""
    index = {tag: i for i, tag in enumerate(tags)}
    ids = []
    for s in corpus.sentences:
        for tag, line in zip(s.tags, s.lines):
            if tag not in index:
                raise DataError(corpus.path, line, "tags", f"tag {tag!r} does not occur in the training data")
        ids.append([index[tag] for tag in s.tags])
    return ids


@dataclass
class Splits:
    train: Corpus
    dev: Corpus
    test: Corpus
    tags: list[str]
    scheme: str
    repaired: int


def load_splits(args) -> Splits:
    """Train/dev/test corpora (one scheme, tag vocab from the full train file, then the seeded train subset)."""
    import sys

    from bertkit.batching import sample_examples
    read = {}
    for split in ("train", "dev", "test"):
        path = getattr(args, f"{split}_file")
        scheme = args.tag_scheme if split == "train" else read["train"].scheme
        read[split] = read_corpus(path, scheme=scheme, repair=args.repair_tags)
        if read[split].repaired:
            print(f"{path}: repaired {read[split].repaired} tags (--repair-tags)", file=sys.stderr)
    tags = tag_vocab(read["train"])
    for split in ("dev", "test"):
        tag_ids(read[split], tags)   # fail early on a tag the model cannot output
    if args.max_train_examples:
        read["train"].sentences = sample_examples(read["train"].sentences, args.max_train_examples, args.seed)
    if getattr(args, "max_dev_examples", None):
        read["dev"].sentences = sample_examples(read["dev"].sentences, args.max_dev_examples, args.seed)
    return Splits(read["train"], read["dev"], read["test"], tags, read["train"].scheme,
                  sum(c.repaired for c in read.values()))


# --------------------------------------------------------------------------------------------------------- features
def make_tokenizer(bert_dir, *, per_char: bool = False):
    from bertkit.tokenization import Tokenizer
    return Tokenizer.from_bert_dir(bert_dir, per_char=per_char)


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
    some window; each word is owned by the window where it has the most context on both sides.
    """
    from bertkit.errors import ConfigError
    from bertkit.windows import split_windows
    if max_len < 4:
        raise ConfigError(f"--max-len must be at least 4 ([CLS], two pieces, [SEP]), got {max_len}")
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


def train_dataset(rows: list[dict], batch_size: int, seed: int):
    """Shuffled batches of similar length (less padding: CPU time is the budget); returns (dataset, batches)."""
    from bertkit.batching import make_dataset
    dataset = make_dataset(rows, batch_size, input_keys=MODEL_KEYS, target_keys=("tags",), shuffle=True, seed=seed,
                           bucket_by_length=True, length_key="token_ids")
    steps = sum(1 for _ in dataset)   # bucketing leaves one partial batch per bucket: count them
    return dataset, steps


# ------------------------------------------------------------------------------------------------------------ model
def build_model(bert_dir, num_tags: int, *, use_crf: bool = True, dropout: float = 0.1,
                trainable_layers: int | None = None, crf_lr_multiplier: float = 200.0):
    """encoder -> first piece of each word -> dropout -> Dense(num_tags) -> CRF or softmax (built, ready to load)."""
    import tensorflow as tf

    from bertkit.crf import CRF
    from bertkit.encoder import load_encoder

    class Tagger(tf.keras.Model):
        """Word-level tagger. ``call`` returns tag scores ``(batch, words, num_tags)``; ``compute_loss`` is the CRF
        negative log-likelihood (or softmax cross-entropy) over real words only; ``decode`` returns tag ids."""

        def __init__(self):
            super().__init__(name="tagger")
            self.encoder = load_encoder(bert_dir, trainable_layers=trainable_layers)
            self.dropout = tf.keras.layers.Dropout(dropout)
            self.scores = tf.keras.layers.Dense(num_tags, dtype="float32", name="tag_scores")
            self.crf = CRF(num_tags, lr_multiplier=crf_lr_multiplier, name="crf") if use_crf else None
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


# --------------------------------------------------------------------------------------------------------- decoding
def predict_tags(model, rows: list[dict], batch_size: int = 64) -> list[np.ndarray]:
    """Decoded tag ids per row, in batches of rows of similar length (little padding), returned in input order.
    No XLA: tfa's CRF ops do not compile."""
    from bertkit.batching import make_dataset
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["token_ids"]))
    dataset = make_dataset([{k: rows[i][k] for k in MODEL_KEYS} for i in order], batch_size,
                           input_keys=MODEL_KEYS, target_keys=())
    decoded = [row for inputs in dataset for row in model.decode_batch(inputs).numpy()]
    out = [None] * len(rows)
    for i, tags in zip(order, decoded):
        out[i] = tags[:len(rows[i]["word_index"])]
    return out


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


# ------------------------------------------------------------------------------------------------------- evaluation
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
    from bertkit.reports import md_table
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


class Evaluation:
    """``evaluation(model) -> metrics`` on one labeled corpus: features built once, decoding in batches."""

    def __init__(self, tokenizer, corpus: Corpus, tags: list[str], max_len: int, batch_size: int = 64):
        self.corpus, self.tags, self.batch_size = corpus, tags, batch_size
        self.rows, self.windows = make_features(tokenizer, [s.tokens for s in corpus.sentences], max_len)
        self.gold = [s.tags for s in corpus.sentences]

    def predictions(self, model) -> list[list[str]]:
        window_tags = predict_tags(model, self.rows, self.batch_size)
        joined = join_windows(self.windows, window_tags, [len(g) for g in self.gold])
        return [[self.tags[i] for i in sentence] for sentence in joined]

    def __call__(self, model) -> dict:
        return evaluate_tags(self.gold, self.predictions(model))


# ------------------------------------------------------------------------------------------------------- predicting
def write_run_config(trainer, args, tags: list[str], scheme: str) -> Path:
    """``run_config.json`` (via the Trainer): what ``Predictor.from_run_dir`` needs to rebuild the model."""
    return trainer.write_run_config({"tags": tags, "scheme": scheme, "model": {
        "bert_dir": str(args.bert_dir), "use_crf": args.crf, "per_char": args.per_char, "max_len": args.max_len,
        "dropout": args.dropout, "crf_lr_multiplier": args.crf_lr_multiplier}})


class Predictor:
    """A trained tagger: ``predict_tokens(list of token lists)`` -> tags, ``predict_texts(raw texts)`` -> entities."""

    def __init__(self, model, tokenizer, tags: list[str], *, max_len: int, per_char: bool, batch_size: int = 64):
        self.model, self.tokenizer, self.tags = model, tokenizer, tags
        self.max_len, self.per_char, self.batch_size = max_len, per_char, batch_size

    @classmethod
    def from_run_dir(cls, run_dir, *, checkpoint=None, batch_size: int = 64, bert_dir=None) -> "Predictor":
        """Rebuild the model from ``run_config.json`` and load ``best/`` (or ``checkpoint``)."""
        from bertkit.training import load_weights, read_run_config
        config = read_run_config(run_dir, TASK)
        model_config = config["model"]
        bert_dir = bert_dir or model_config["bert_dir"]
        model = build_model(bert_dir, len(config["tags"]), use_crf=model_config["use_crf"],
                            dropout=model_config["dropout"], crf_lr_multiplier=model_config["crf_lr_multiplier"])
        load_weights(model, checkpoint or Path(run_dir) / "best")
        return cls(model, make_tokenizer(bert_dir, per_char=model_config["per_char"]), config["tags"],
                   max_len=model_config["max_len"], per_char=model_config["per_char"], batch_size=batch_size)

    def predict_tokens(self, sentences: list[list[str]]) -> list[list[str]]:
        rows, windows = make_features(self.tokenizer, sentences, self.max_len)
        window_tags = predict_tags(self.model, rows, self.batch_size) if rows else []
        joined = join_windows(windows, window_tags, [len(s) for s in sentences])
        return [[self.tags[i] for i in sentence] for sentence in joined]

    def predict_texts(self, texts: list[str]) -> list[dict]:
        """``{"text", "entities": [{"type", "start", "end", "text"}]}`` with character offsets into each text."""
        words = [split_words(text, per_char=self.per_char) for text in texts]
        nonempty = [i for i, w in enumerate(words) if w]
        tagged = dict(zip(nonempty, self.predict_tokens([[w for w, _, _ in words[i]] for i in nonempty])))
        return [{"text": text, "entities": char_entities(text, [(s, e) for _, s, e in words[i]], tagged[i])
                 if i in tagged else []} for i, text in enumerate(texts)]
