"""Text classification (sentiment) and text-pair classification (paraphrase, question matching) with BERT.

The whole story, in the steps of the recipe contract (``bertkit.recipe``):
1. ``read_examples``: labelled or unlabelled texts, JSONL ``{"id"?, "text", ["text_b",] "label"?}`` or TSV/CSV
   with a header; the label set comes from the training data (``build_head``) and a dev/test label never seen in
   training is an error (``check_examples``);
2. ``encode``: each text, or pair packed as one input ``[CLS] a [SEP] b [SEP]``, becomes token and segment ids;
3. ``build_model``: the [CLS] vector (the last block computed for [CLS] alone) or the mean over real tokens ->
   dropout -> Dense softmax;
4. ``predict`` in batches of similar length, ``score`` it (accuracy, macro-F1, per class, confusion) and describe it
   for report.md (``report_sections``: per-class table, confusion matrix, the most confident mistakes);
5. ``serving``: signatures that classify raw strings (tokenization in the graph), which ``export`` writes as a
   SavedModel.
``train.py`` / ``predict.py`` run these steps through ``bertkit.recipe``. Importing this module builds nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.batching import batch_predictor, make_training_data, predict_in_length_order
from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl, read_table, require
from bertkit.metrics import classification_metrics
from bertkit.reports import md_table, per_class_table, plot_confusion

TASK = "sentiment"
DEFAULTS = {"dataset": "sst2", "epochs": 1, "batch_size": 32, "max_len": 64, "lr": 1e-4}
HEADLINE = "accuracy"
TABLE_SUFFIXES = (".tsv", ".csv")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("sentiment")
    group.add_argument("--text-column", default="text", help="field/column of the text")
    group.add_argument("--text-b-column", default=None,
                       help="field/column of the second text of a pair (default: 'text_b' when the training file "
                            "has it)")
    group.add_argument("--label-column", default="label", help="field/column of the label")
    group.add_argument("--pooling", choices=("cls", "mean"), default="cls", help="sentence vector: [CLS] or mean")
    group.add_argument("--dropout", type=float, default=0.1, help="dropout before the classifier")


def check_arguments(args) -> None:
    from bertkit.cli import DROPOUT, check_ranges

    check_ranges(args, ("dropout", *DROPOUT))


# ------------------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Example:
    text: str
    text_b: str | None = None  # second text of a pair
    label: str | None = None  # None when unlabelled (prediction input, competition test set)
    line: int = 0  # 1-based line in its file, for error messages
    id: str | int | None = None


def _columns(args) -> dict:
    return {"text_column": getattr(args, "text_column", "text"),
            "text_b_column": getattr(args, "text_b_column", None) or "text_b",
            "label_column": getattr(args, "label_column", "label"),
            "pair": True if getattr(args, "text_b_column", None) else None}


def read_examples(path, args=None) -> list[Example]:
    """Examples of one JSONL or TSV/CSV file (``.tsv``/``.csv``: a table with a header line); see ``to_examples``."""
    columns = _columns(args)
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        records = iter_jsonl(path)
    else:  # check the text column against the header first: one error for the file, not one per row
        records = read_table(path)
        first = next(records, None)
        if first is not None:
            for column in [columns["text_column"], *([columns["text_b_column"]] if columns["pair"] else [])]:
                if column not in first[1]:
                    raise DataError(path, 1, column, f"no such column; columns are {', '.join(map(repr, first[1]))}")
            records = itertools.chain([first], records)
    return to_examples(records, path, args)


def to_examples(records, path, args=None) -> list[Example]:
    """Examples of ``(line, record)`` pairs read from ``path``.

    Pairs when the first record has the ``text_b`` field (or ``--text-b-column`` is given): then every record needs
    it. Labelled when the first record has a label: then every record needs one (all or none). Labels are read as
    strings (1 and "1" are one label). A missing or empty text is a DataError naming file, line and field.
    """
    columns = _columns(args)
    text_column, text_b_column, label_column = (columns["text_column"], columns["text_b_column"],
                                                columns["label_column"])
    pair, labelled, examples = columns["pair"], None, []
    for line, record in records:
        if pair is None:
            pair = record.get(text_b_column) is not None
        if labelled is None:
            labelled = record.get(label_column) is not None
        text = require(record, text_column, path, line)
        text_b = require(record, text_b_column, path, line) if pair else None
        if not pair and record.get(text_b_column) is not None:
            raise DataError(path, line, text_b_column, "a second text here but not on the first line: every line "
                                                       "of a pair file needs one")
        if labelled:
            label = str(require(record, label_column, path, line, kind=(str, int))).strip()
        elif record.get(label_column) is not None:
            raise DataError(path, line, label_column, "a label here but not on the first line: label every line "
                                                      "or none")
        else:
            label = None
        examples.append(Example(text, text_b, label, line, record.get("id")))
    if not examples:
        raise DataError(path, None, None, "no examples in the file")
    return examples


def is_labelled(examples) -> bool:
    return all(e.label is not None for e in examples)


def label_vocab(train_examples, train_path) -> list[str]:
    """The sorted label set of the training data (at least two labels; two differing only in case is an error)."""
    labels = sorted({e.label for e in train_examples})
    if len(labels) < 2:
        raise DataError(train_path, None, "label", f"the training data has only the label {labels}; need two or more")
    by_case = {}
    for label in labels:
        by_case.setdefault(label.casefold(), []).append(label)
    clash = next((group for group in by_case.values() if len(group) > 1), None)
    if clash:
        first = next(e.line for e in train_examples if e.label == clash[1])
        raise DataError(train_path, first, "label", f"labels {' and '.join(map(repr, clash))} differ only in case: "
                                                    f"fix the data (they would be two classes)")
    return labels


def build_head(train_examples, args, tokenizer) -> dict:
    """Label set, pair or single texts, the columns read, pooling and dropout of the classifier."""
    columns = _columns(args)
    return {"labels": label_vocab(train_examples, args.train_file), "pair": train_examples[0].text_b is not None,
            "max_len": args.max_len, "pooling": args.pooling, "dropout": args.dropout,
            "text_column": columns["text_column"], "text_b_column": columns["text_b_column"],
            "label_column": columns["label_column"]}


def record_from_line(line: str, head: dict) -> dict:
    """A plain-text input line: the text, or ``text<TAB>text_b`` for a pair model."""
    if not head["pair"]:
        return {"text": line}
    text, tab, text_b = line.partition("\t")
    return {"text": text, "text_b": text_b} if tab else {"text": text}


def check_examples(examples, head, path) -> None:
    """Dev/test must have the shape of the training data, and a label the model never saw cannot be predicted."""
    if (examples[0].text_b is not None) != head["pair"]:
        raise DataError(path, examples[0].line, head["text_b_column"],
                        "pairs here but single texts in training" if head["pair"] is False
                        else "single texts here but pairs in training")
    known = set(head["labels"])
    for e in examples:
        if e.label is not None and e.label not in known:
            raise DataError(path, e.line, head["label_column"],
                            f"label {e.label!r} never seen in training; training labels are "
                            f"{', '.join(head['labels'])}")


# --------------------------------------------------------------------------------------------------------- features
def encode(examples, tokenizer, head) -> list[dict]:
    """Model features of each example: token/segment ids (pairs packed into one input) and the label id if known."""
    label_ids = {label: i for i, label in enumerate(head["labels"])}
    features = []
    for e in examples:
        encoding = tokenizer.encode(e.text, e.text_b, max_len=head["max_len"])
        feature = {"token_ids": np.asarray(encoding.token_ids, np.int32),
                   "segment_ids": np.asarray(encoding.segment_ids, np.int32)}
        if e.label is not None:
            feature["label"] = np.int32(label_ids[e.label])
        features.append(feature)
    return features


def training_data(features, head, *, batch_size, seed):
    return make_training_data(features, batch_size, seed=seed)


# ------------------------------------------------------------------------------------------------------------ model
def build_model(bert_dir, head, *, trainable_layers=None, encoder=None):
    """Encoder -> pooled vector -> dropout -> Dense softmax (float32, also under mixed precision).

    With [CLS] pooling the encoder's last block runs for [CLS] alone (``bertkit.encoder.first_token_encoder``: the
    same weights and probabilities, 14% fewer matrix products at 128 tokens). ``encoder``: an encoder already loaded
    (``bertkit.encoder.load_encoder``), used instead of loading ``bert_dir``'s, so several task models can share
    one; its ``trainable_layers`` are then the caller's business."""
    import tensorflow as tf

    from bertkit.encoder import first_token_encoder, load_encoder
    from bertkit.layers import Pooler

    if encoder is None:
        encoder = load_encoder(bert_dir, trainable_layers=trainable_layers)
    if head["pooling"] == "cls":
        encoder = first_token_encoder(encoder)
    token_ids = tf.keras.Input(shape=(None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input(shape=(None,), dtype="int32", name="segment_ids")
    hidden = encoder([token_ids, segment_ids])
    pooled = Pooler(head["pooling"], name="pooler")([hidden, token_ids])
    pooled = tf.keras.layers.Dropout(head["dropout"], name="dropout")(pooled)
    probabilities = tf.keras.layers.Dense(len(head["labels"]), activation="softmax", dtype="float32",
                                          name="probabilities")(pooled)
    return tf.keras.Model({"token_ids": token_ids, "segment_ids": segment_ids}, probabilities, name=TASK)


def loss(head):
    return "sparse_categorical_crossentropy"


# --------------------------------------------------------------------------------------------------- predict, score
def predict_probabilities(model, tokenizer, examples, head, *, batch_size=64) -> np.ndarray:
    """Class probabilities ``(n, num_labels)`` in input order."""
    features = encode([Example(e.text, e.text_b) for e in examples], tokenizer, head)
    rows = predict_in_length_order(batch_predictor(model), features, batch_size)
    return np.stack(rows).astype(np.float32)


def decode(probabilities, labels, examples=None) -> list[dict]:
    """One ``{"id"?, "label", "probabilities": {label: p}}`` per row."""
    out = []
    for i, row in enumerate(probabilities):
        prediction = {"label": labels[int(row.argmax())],
                      "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row)}}
        if examples is not None and examples[i].id is not None:
            prediction = {"id": examples[i].id, **prediction}
        out.append(prediction)
    return out


def predict(model, tokenizer, examples, head, *, batch_size=64) -> list[dict]:
    return decode(predict_probabilities(model, tokenizer, examples, head, batch_size=batch_size), head["labels"],
                  examples)


def score(examples, predictions, head) -> dict:
    """Classification metrics: accuracy, macro_f1, per_class, confusion."""
    labels = head["labels"]
    gold = [labels.index(e.label) for e in examples]
    return classification_metrics(gold, [labels.index(p["label"]) for p in predictions], labels)


def confident_mistakes(examples, predictions, k=10) -> list[tuple]:
    """The k wrong predictions the model was surest of: (confidence, gold, predicted, text)."""
    rows = [(p["probabilities"][p["label"]], e.label, p["label"],
             e.text if e.text_b is None else f"{e.text} ||| {e.text_b}")
            for e, p in zip(examples, predictions) if p["label"] != e.label]
    return sorted(rows, key=lambda row: -row[0])[:k]


def report_sections(metrics, examples, predictions, head, out_dir) -> tuple[list, dict]:
    """report.md sections (per-class table, confusion matrix, most confident mistakes) and the figure they use."""
    labels = head["labels"]
    confusion = md_table(["gold \\ predicted", *labels],
                         [[label, *row] for label, row in zip(labels, metrics["confusion"])])
    mistakes = md_table(["confidence", "gold", "predicted", "text"],
                        [[f"{confidence:.3f}", gold, predicted, text[:300]]
                         for confidence, gold, predicted, text in confident_mistakes(examples, predictions)])
    figure = plot_confusion(metrics["confusion"], labels, Path(out_dir) / "confusion.png")
    sections = [("Per class", per_class_table(metrics["per_class"], name="label")),
                ("Confusion matrix (rows: gold)", confusion),
                ("Most confident mistakes", mistakes)]
    return sections, {"confusion matrix": figure}


# ----------------------------------------------------------------------------------------------------------- export
def serving(model, tokenizer, head):
    """The raw-string signatures (a ``bertkit.export.Serving``): ``serving_default(texts[, texts_b])`` -> ``label``
    (string) and ``probabilities`` (n, num_labels, in the order of the ``labels()`` signature), and ``labels()``.
    Tokenization runs in the graph (the in-graph tokenizer is the trackable)."""
    import tensorflow as tf

    from bertkit.export import InGraphTokenizer, Serving  # tensorflow-text is only needed here

    in_graph = InGraphTokenizer.from_tokenizer(tokenizer, max_len=head["max_len"])
    label_names = tf.constant(head["labels"])

    def classify(texts, texts_b=None):
        encoded = in_graph.encode(texts, texts_b)
        probabilities = model({"token_ids": encoded["token_ids"], "segment_ids": encoded["segment_ids"]},
                              training=False)
        return {"label": tf.gather(label_names, tf.argmax(probabilities, axis=-1)), "probabilities": probabilities}

    texts = tf.TensorSpec([None], tf.string, name="texts")
    if head["pair"]:
        serve = tf.function(lambda texts, texts_b: classify(texts, texts_b),
                            input_signature=[texts, tf.TensorSpec([None], tf.string, name="texts_b")])
    else:
        serve = tf.function(lambda texts: classify(texts), input_signature=[texts])
    labels = tf.function(lambda: {"labels": label_names}, input_signature=[])
    return Serving({"serving_default": serve, "labels": labels}, {"tokenizer": in_graph})


def export(model, tokenizer, head, path) -> Path:
    """A SavedModel of :func:`serving`'s signatures that classifies raw strings; loading it needs only TensorFlow and
    ``import tensorflow_text``."""
    from bertkit.export import export_serving

    return export_serving(path, model, serving(model, tokenizer, head))
