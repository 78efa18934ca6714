"""Evaluation of LSM predictions (method spec 8; 000:498-507, 001:6198-6213).

F1 (= Dice) of the target area only; the auxiliary classes (background, white matter, other cortex)
are not scored. Scoring is restricted to the region around the area (the prediction ROI) when one is
given.
"""

from __future__ import annotations

import numpy as np


def area_f1(
    pred: np.ndarray, truth: np.ndarray, area_class: int = 3, roi: np.ndarray | None = None
) -> float:
    """F1 score of ``area_class``: ``2 TP / (2 TP + FP + FN)``.

    Parameters
    ----------
    pred, truth : label images of the same shape (LSM classes; area = 3).
    area_class : the label of the target area.
    roi : optional bool mask; only pixels inside it are scored.

    Returns
    -------
    F1 in [0, 1]; 1.0 when the area is absent from both prediction and truth (nothing to find, nothing
    found), 0.0 when it is present in exactly one of them.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    p = pred == area_class
    t = truth == area_class
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        p, t = p & roi, t & roi
    tp = np.count_nonzero(p & t)
    fp = np.count_nonzero(p & ~t)
    fn = np.count_nonzero(~p & t)
    if tp + fp + fn == 0:
        return 1.0
    return 2.0 * tp / (2.0 * tp + fp + fn)
