"""Evaluation numbers the recipes share: classification accuracy/F1/confusion, P/R/F1 from counts, set P/R/F1.

Pure Python/NumPy, no TensorFlow: metrics are computed on decoded predictions, not inside the graph.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 from counts; 0 (not NaN) where a denominator is 0."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must not be negative, got tp={tp} fp={fp} fn={fn}")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def set_prf(gold: Sequence[Iterable[Hashable]], pred: Sequence[Iterable[Hashable]]) -> dict:
    """Micro P/R/F1 over examples whose answers are sets (entities, triples, spans); also the counts."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} examples, predictions {len(pred)}")
    tp = fp = fn = 0
    for gold_items, pred_items in zip(gold, pred):
        gold_set, pred_set = set(gold_items), set(pred_items)
        hit = len(gold_set & pred_set)
        tp += hit
        fp += len(pred_set) - hit
        fn += len(gold_set) - hit
    return {**prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> dict:
    """Accuracy, macro F1 (over ``labels``), per-class precision/recall/F1/support and the confusion matrix.

    ``y_true``/``y_pred`` hold label names or indices into ``labels``; ``confusion[i][j]`` counts examples of
    true ``labels[i]`` predicted as ``labels[j]``.
    """
    labels = list(labels)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items, y_pred {len(y_pred)}")
    index = {label: i for i, label in enumerate(labels)}

    def to_index(values, name):
        out = np.empty(len(values), dtype=np.int64)
        for k, value in enumerate(values):
            value = value.item() if isinstance(value, np.generic) else value
            if value in index:
                out[k] = index[value]
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(labels):
                out[k] = int(value)
            else:
                raise ValueError(f"{name}[{k}] = {value!r} is not one of the labels {labels}")
        return out

    true, pred = to_index(y_true, "y_true"), to_index(y_pred, "y_pred")
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(confusion[i, i])
        scores = prf(tp, int(confusion[:, i].sum()) - tp, int(confusion[i, :].sum()) - tp)
        per_class[str(label)] = {**scores, "support": int(confusion[i, :].sum())}
    total = len(true)
    return {
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if per_class else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "labels": [str(label) for label in labels],
        "n": total,
    }
