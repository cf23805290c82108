"""Text classification (sentiment) and text-pair classification (paraphrase, question matching) with BERT.

The whole story:
1. read labelled texts, JSONL `{"text", ["text_b",] "label"}` or TSV/CSV with a header (`read_examples`);
2. the label set comes from the training data; a dev/test label never seen in training is an error (`label_vocab`);
3. each text, or pair packed as one input `[CLS] a [SEP] b [SEP]`, becomes token and segment ids (`encode_examples`);
4. head: the [CLS] vector (or the mean over real tokens) -> dropout -> Dense softmax (`build_model`);
5. predict in batches sorted by length (`predict_probabilities`), score it (`evaluate`) and describe it for
   report.md: per-class table, confusion matrix, the most confident mistakes (`report_sections`);
6. ship it: rebuild a trained run (`load_run`), or export a SavedModel that classifies raw strings (`export`).
Importing this module builds nothing and reads nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from bertkit.batching import make_dataset
from bertkit.encoder import load_encoder
from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl, read_table, require
from bertkit.layers import Pooler
from bertkit.metrics import classification_metrics
from bertkit.reports import md_table, per_class_table, plot_confusion
from bertkit.tokenization import Tokenizer
from bertkit.training import BEST_DIR, load_weights, read_run_config

TASK = "sentiment"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "sst2"
TABLE_SUFFIXES = (".tsv", ".csv")


@dataclass(frozen=True)
class Example:
    text: str
    text_b: str | None = None  # second text of a pair
    label: str | None = None  # None when unlabelled (prediction input)
    line: int = 0  # 1-based line in its file, for error messages


def read_examples(path, *, text_column="text", text_b_column="text_b", label_column="label", pair=None,
                  with_labels=True) -> list[Example]:
    """Examples of one JSONL or TSV/CSV file (`.tsv`/`.csv`: a table with a header line); see `to_examples`."""
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        records = iter_jsonl(path)
    else:  # check the named columns against the header first: one error for the file, not one per row
        records = read_table(path)
        first = next(records, None)
        if first is not None:
            needed = [text_column, *([label_column] if with_labels else []), *([text_b_column] if pair else [])]
            for column in needed:
                if column not in first[1]:
                    raise DataError(path, 1, column, f"no such column; columns are {', '.join(map(repr, first[1]))}")
            records = itertools.chain([first], records)
    return to_examples(records, path, text_column=text_column, text_b_column=text_b_column,
                       label_column=label_column, pair=pair, with_labels=with_labels)


def to_examples(records, path, *, text_column="text", text_b_column="text_b", label_column="label", pair=None,
                with_labels=True) -> list[Example]:
    """Examples of `(line, record)` pairs read from `path`.

    `pair=None` decides from the data: pairs when the first record has `text_b_column`; True/False force it, so
    dev/test must have the shape of the training data. Labels are read as strings (1 and "1" are one label). A
    missing or empty text, or a missing label when `with_labels`, is a DataError naming file, line and field.
    """
    examples = []
    for line, record in records:
        if pair is None:
            pair = record.get(text_b_column) is not None
        text = require(record, text_column, path, line)
        text_b = require(record, text_b_column, path, line) if pair else None
        label = str(require(record, label_column, path, line, kind=(str, int))).strip() if with_labels else None
        examples.append(Example(text, text_b, label, line))
    if not examples:
        raise DataError(path, None, None, "no examples in the file")
    return examples


def label_vocab(train_examples, train_path) -> list[str]:
    """The sorted label set of the training data (at least two labels)."""
    labels = sorted({e.label for e in train_examples})
    if len(labels) < 2:
        raise DataError(train_path, None, "label", f"the training data has only the label {labels}; need two or more")
    return labels


def check_labels(examples, labels, path, label_column="label") -> None:
    """A dev/test label the model never saw in training cannot be predicted: say so rather than score it as wrong."""
    known = set(labels)
    for e in examples:
        if e.label not in known:
            raise DataError(path, e.line, label_column,
                            f"label {e.label!r} never seen in training; training labels are {', '.join(labels)}")


def encode_examples(tokenizer, examples, *, max_len, labels=None) -> list[dict]:
    """Model features of each example: token/segment ids (pairs packed into one input) and the label id if asked."""
    label_ids = {label: i for i, label in enumerate(labels or [])}
    features = []
    for e in examples:
        encoding = tokenizer.encode(e.text, e.text_b, max_len=max_len)
        feature = {"token_ids": np.asarray(encoding.token_ids, np.int32),
                   "segment_ids": np.asarray(encoding.segment_ids, np.int32)}
        if labels is not None:
            feature["label"] = np.int32(label_ids[e.label])
        features.append(feature)
    return features


def build_model(bert_dir, num_labels, *, pooling="cls", dropout=0.1, trainable_layers=None) -> tf.keras.Model:
    """Encoder -> pooled vector -> dropout -> Dense softmax (float32, also under mixed precision)."""
    token_ids = tf.keras.Input(shape=(None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input(shape=(None,), dtype="int32", name="segment_ids")
    hidden = load_encoder(bert_dir, trainable_layers=trainable_layers)([token_ids, segment_ids])
    pooled = Pooler(pooling, name="pooler")([hidden, token_ids])
    pooled = tf.keras.layers.Dropout(dropout, name="dropout")(pooled)
    probabilities = tf.keras.layers.Dense(num_labels, activation="softmax", dtype="float32",
                                          name="probabilities")(pooled)
    return tf.keras.Model({"token_ids": token_ids, "segment_ids": segment_ids}, probabilities, name=TASK)


def predict_probabilities(model, features, *, batch_size=64) -> np.ndarray:
    """Class probabilities `(n, num_labels)` in input order; batches hold texts of similar length (less padding)."""
    order = np.argsort([len(f["token_ids"]) for f in features], kind="stable")
    dataset = make_dataset([features[i] for i in order], batch_size, target_keys=())
    probabilities = np.empty((len(features), model.output_shape[-1]), np.float32)
    probabilities[order] = model.predict(dataset, verbose=0)
    return probabilities


def decode(probabilities, labels) -> list[dict]:
    """One `{"label", "probabilities": {label: p}}` per row."""
    return [{"label": labels[int(row.argmax())],
             "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row)}}
            for row in probabilities]


def evaluate(model, examples, features, labels, *, batch_size=64) -> tuple[dict, np.ndarray]:
    """Classification metrics (accuracy, macro_f1, per_class, confusion) and the probabilities behind them."""
    probabilities = predict_probabilities(model, features, batch_size=batch_size)
    gold = [labels.index(e.label) for e in examples]
    metrics = classification_metrics(gold, probabilities.argmax(-1).tolist(), labels)
    return metrics, probabilities


def confident_mistakes(examples, probabilities, labels, k=10) -> list[tuple]:
    """The k wrong predictions the model was surest of: (confidence, gold, predicted, text)."""
    predicted = probabilities.argmax(-1)
    rows = [(float(probabilities[i, p]), examples[i].label, labels[p],
             examples[i].text if examples[i].text_b is None else f"{examples[i].text} ||| {examples[i].text_b}")
            for i, p in enumerate(predicted) if labels[p] != examples[i].label]
    return sorted(rows, key=lambda row: -row[0])[:k]


def report_sections(metrics, examples, probabilities, labels, figure_dir) -> tuple[list, dict]:
    """report.md sections (per-class table, confusion matrix, most confident mistakes) and the figure they use."""
    confusion = md_table(["gold \\ predicted", *labels],
                         [[label, *row] for label, row in zip(labels, metrics["confusion"])])
    mistakes = md_table(["confidence", "gold", "predicted", "text"],
                        [[f"{confidence:.3f}", gold, predicted, text[:300]]
                         for confidence, gold, predicted, text in confident_mistakes(examples, probabilities, labels)])
    figure = plot_confusion(metrics["confusion"], labels, Path(figure_dir) / "confusion.png")
    sections = [("Per class", per_class_table(metrics["per_class"], name="label")),
                ("Confusion matrix (rows: gold)", confusion),
                ("Most confident mistakes", mistakes)]
    return sections, {"confusion matrix": figure}


def load_run(run_dir, checkpoint=None):
    """(model, tokenizer, run config) rebuilt from a run directory written by train.py, with its best weights (or
    those of `checkpoint`)."""
    config = read_run_config(run_dir, TASK)
    model = build_model(config["bert_dir"], len(config["labels"]), pooling=config["pooling"],
                        dropout=config["dropout"])
    load_weights(model, checkpoint or Path(run_dir) / BEST_DIR)
    tokenizer = Tokenizer.from_bert_dir(config["bert_dir"], per_char=config["per_char"],
                                        lowercase=config["lowercase"])
    return model, tokenizer, config


def export(model, config, path) -> Path:
    """A SavedModel that classifies raw strings: `serving_default(texts[, texts_b])` -> `label` (string) and
    `probabilities` (n, num_labels, in the order of the `labels()` signature). Tokenization runs in the graph, so
    loading needs only TensorFlow and `import tensorflow_text`."""
    from bertkit.export import InGraphTokenizer, export_saved_model  # tensorflow-text is only needed here

    tokenizer = InGraphTokenizer(Path(config["bert_dir"]) / "vocab.txt", lowercase=config["lowercase"],
                                 max_len=config["max_len"], per_char=config["per_char"])
    label_names = tf.constant(config["labels"])

    def classify(texts, texts_b=None):
        encoded = tokenizer.encode(texts, texts_b)
        probabilities = model({"token_ids": encoded["token_ids"], "segment_ids": encoded["segment_ids"]},
                              training=False)
        return {"label": tf.gather(label_names, tf.argmax(probabilities, axis=-1)), "probabilities": probabilities}

    texts = tf.TensorSpec([None], tf.string, name="texts")
    if config["pair"]:
        serve = tf.function(lambda texts, texts_b: classify(texts, texts_b),
                            input_signature=[texts, tf.TensorSpec([None], tf.string, name="texts_b")])
    else:
        serve = tf.function(lambda texts: classify(texts), input_signature=[texts])
    labels = tf.function(lambda: {"labels": label_names}, input_signature=[])
    return export_saved_model(path, model, serve, signatures={"labels": labels})
