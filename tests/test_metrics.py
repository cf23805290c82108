"""Metrics against hand-computed values (and scikit-learn where it has the same definition)."""

import numpy as np
import pytest

from bertkit.metrics import classification_metrics, prf, set_prf


def test_prf_counts():
    assert prf(3, 1, 2) == pytest.approx({"precision": 0.75, "recall": 0.6, "f1": 2 * 0.75 * 0.6 / 1.35})
    assert prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(0, 5, 0)["precision"] == 0.0
    with pytest.raises(ValueError):
        prf(-1, 0, 0)


def test_set_prf_is_micro_over_examples():
    gold = [{("PER", 0, 2), ("LOC", 5, 7)}, set(), {("ORG", 1, 3)}]
    pred = [{("PER", 0, 2)}, {("LOC", 1, 2)}, {("ORG", 1, 3), ("ORG", 1, 3)}]
    result = set_prf(gold, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 1, 1)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="gold has 3"):
        set_prf(gold, pred[:2])


def test_classification_metrics_by_hand():
    labels = ["neg", "neu", "pos"]
    y_true = ["neg", "neg", "pos", "pos", "pos", "neu"]
    y_pred = ["neg", "pos", "pos", "pos", "neg", "pos"]
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["confusion"] == [[1, 0, 1], [0, 0, 1], [1, 0, 2]]
    assert m["per_class"]["neg"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["neu"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["pos"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["pos"]["recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0 + 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) / 3)


def test_indices_and_sklearn_agreement():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y_true, y_pred).tolist()


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match=r"y_pred\[1\] = 'x'"):
        classification_metrics(["a", "b"], ["a", "x"], ["a", "b"])
    with pytest.raises(ValueError, match="y_true has 2 items"):
        classification_metrics(["a", "b"], ["a"], ["a", "b"])
