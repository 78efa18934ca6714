"""Macro F1, per-class F1 and confusion matrix against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cortexgraph.training.metrics import confusion_matrix, macro_f1, per_class_f1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 9, 300))
    expected = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    labels, f1 = per_class_f1(y_true, y_pred)
    np.testing.assert_allclose(
        f1, skm.f1_score(y_true, y_pred, average=None, labels=labels, zero_division=0), atol=1e-12
    )
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred)
    )


def test_classes_absent_from_both_are_excluded():
    y_true = np.array([1, 1, 2, 2, 5])
    y_pred = np.array([1, 2, 2, 2, 1])
    labels, f1 = per_class_f1(y_true, y_pred, labels=[1, 2, 3, 5])
    assert np.isnan(f1[2])
    # F1_1 = 2*1/(2+2) = 0.5, F1_2 = 2*2/(2+3) = 0.8, F1_5 = 0
    np.testing.assert_allclose(f1[[0, 1, 3]], [0.5, 0.8, 0.0])
    assert macro_f1(y_true, y_pred, labels=[1, 2, 3, 5]) == pytest.approx(1.3 / 3)
    assert macro_f1(y_true, y_pred, labels=[1, 2, 3, 5]) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def test_subset_of_labels_matches_sklearn():
    y_true = np.array([0, 1, 2, 2, 3, 3, 3])
    y_pred = np.array([0, 2, 2, 1, 3, 0, 2])
    got = macro_f1(y_true, y_pred, labels=[0, 2])
    assert got == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=[0, 2], average="macro", zero_division=0)
    )


def test_confusion_matrix_label_order_and_validation():
    cm = confusion_matrix([0, 1, 1], [1, 1, 0], labels=[1, 0])
    np.testing.assert_array_equal(cm, [[1, 1], [1, 0]])
    with pytest.raises(ValueError):
        confusion_matrix([0.5], [1])
    assert np.isnan(macro_f1([], []))
