"""Classification metrics in numpy: confusion matrix, per-class F1 and macro F1.

Method: Schiffer, PhD thesis, Sect. 2.2.1 (eqs. 2.15-2.20). ``CM[i, j]`` counts samples of
true class ``labels[i]`` predicted as ``labels[j]``; ``F1_k = 2 P_k R_k / (P_k + R_k)``, taken as 0
when ``P_k + R_k = 0``; macro F1 is the mean of ``F1_k`` over the classes that occur in ``y_true`` or
``y_pred``. Classes listed in ``labels`` but absent from both arrays (e.g. an area missing in the
transfer brain and never predicted) are excluded from the mean; their per-class F1 is NaN. With
``labels=None`` this equals ``sklearn.metrics.f1_score(average="macro")``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "per_class_f1", "macro_f1"]


def _resolve_labels(y_true: np.ndarray, y_pred: np.ndarray, labels) -> np.ndarray:
    if labels is None:
        return np.union1d(y_true, y_pred)
    labels = np.asarray(labels).reshape(-1)
    if np.unique(labels).size != labels.size:
        raise ValueError("labels must be unique")
    return labels


def _as_1d(y, name: str) -> np.ndarray:
    arr = np.asarray(y).reshape(-1)
    if arr.dtype.kind not in "iub" and arr.size:
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _index_of(labels: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position of each value of ``y`` in ``labels``; -1 where absent."""
    if labels.size == 0:
        return np.full(y.shape, -1, dtype=np.int64)
    order = np.argsort(labels)
    sorted_labels = labels[order]
    pos = np.clip(np.searchsorted(sorted_labels, y), 0, labels.size - 1)
    return np.where(sorted_labels[pos] == y, order[pos], -1).astype(np.int64)


def _class_indices(y_true, y_pred, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, ti, pi)``: the class ids (:func:`_resolve_labels`) and each sample's position in
    them for the true and the predicted class (int64, -1 for a class not in ``labels``); checks that
    both arrays hold integer class ids for the same number of samples."""
    y_true = _as_1d(y_true, "y_true")
    y_pred = _as_1d(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} samples, y_pred {y_pred.size}")
    labels = _resolve_labels(y_true, y_pred, labels)
    return labels, _index_of(labels, y_true), _index_of(labels, y_pred)


def confusion_matrix(y_true, y_pred, labels=None) -> np.ndarray:
    """Confusion matrix ``CM[i, j]`` = number of samples of class ``labels[i]`` predicted ``labels[j]``.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (n,)
    labels : array_like of int, optional
        Class ids giving the row/column order; default: sorted union of ``y_true`` and ``y_pred``.
        Samples whose true or predicted class is not in ``labels`` are ignored.

    Returns
    -------
    numpy.ndarray of int64, shape (C, C)
    """
    labels, ti, pi = _class_indices(y_true, y_pred, labels)
    c = labels.size
    keep = (ti >= 0) & (pi >= 0)
    flat = ti[keep] * c + pi[keep]
    return np.bincount(flat, minlength=c * c).reshape(c, c).astype(np.int64)


def per_class_f1(y_true, y_pred, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """F1 score per class.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (C,)
    f1 : numpy.ndarray of float64, shape (C,)
        0 for a class that occurs but is never correctly predicted; NaN for a class absent from both
        ``y_true`` and ``y_pred``.
    """
    labels, ti, pi = _class_indices(y_true, y_pred, labels)
    c = labels.size
    # counted over all samples, so a prediction of class k for a sample whose true class is not in
    # ``labels`` is still a false positive of k (as in scikit-learn)
    n_true = np.bincount(ti[ti >= 0], minlength=c).astype(np.float64)
    n_pred = np.bincount(pi[pi >= 0], minlength=c).astype(np.float64)
    hit = (ti >= 0) & (ti == pi)
    tp = np.bincount(ti[hit], minlength=c).astype(np.float64)
    denom = n_true + n_pred  # 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / denom, np.nan)
    return labels.astype(np.int64), f1


def macro_f1(y_true, y_pred, labels=None) -> float:
    """Macro F1: mean per-class F1 over classes present in ``y_true`` or ``y_pred`` (eq. 2.20).

    Returns NaN when no sample belongs to any of ``labels``.
    """
    _, f1 = per_class_f1(y_true, y_pred, labels)
    present = ~np.isnan(f1)
    if not present.any():
        return float("nan")
    return float(f1[present].mean())
