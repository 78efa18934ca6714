"""Pixel scores of projected label images against full true label images (the phantom's
``ground_truth/<brain>/labels/sNNNN.h5``).

**Pixel F1** (:func:`pixel_counts`, :class:`PixelCounts`): against a full label image (the phantom's
``ground_truth/<brain>/labels/sNNNN.h5``), scored on the pixels whose true label is an area (> 0). A
pixel left unlabelled (0) is a miss of its true area. Per area ``F1 = 2 TP / (n_true + n_pred)``;
macro F1 = mean over the areas present in the truth or predicted on scored pixels (the convention of
:mod:`cortexgraph.training.metrics`); counts are summed over all sections of the brain first. Also
reported: accuracy, coverage (share of true-area pixels that got any label) and the pixels labelled
where the truth has no area (non-cortical gray matter; not in the F1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PixelCounts", "pixel_counts", "pixel_f1", "PIXEL_F1_COLUMNS", "pixel_f1_rows"]


@dataclass
class PixelCounts:
    """Pixel counts per area id (arrays indexed by id; index 0 unused), summable over sections."""

    tp: np.ndarray
    n_true: np.ndarray
    n_pred: np.ndarray
    unlabelled: int = 0  # scored pixels left with label 0
    outside: int = 0  # pixels labelled where the truth has no area (not scored)

    def __add__(self, other: PixelCounts) -> PixelCounts:
        size = max(len(self.tp), len(other.tp))

        def pad(a: np.ndarray) -> np.ndarray:
            return np.pad(a, (0, size - len(a)))

        return PixelCounts(
            pad(self.tp) + pad(other.tp),
            pad(self.n_true) + pad(other.n_true),
            pad(self.n_pred) + pad(other.n_pred),
            self.unlabelled + other.unlabelled,
            self.outside + other.outside,
        )

    @classmethod
    def empty(cls) -> PixelCounts:
        return cls(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64))

    @property
    def scored(self) -> int:
        """Pixels scored (true label > 0)."""
        return int(self.n_true.sum())

    def per_area_f1(self) -> tuple[np.ndarray, np.ndarray]:
        """(area ids present in truth or prediction, their F1 = 2 TP / (n_true + n_pred))."""
        denom = self.n_true + self.n_pred
        ids = np.nonzero(denom > 0)[0]
        ids = ids[ids > 0]
        return ids, 2.0 * self.tp[ids] / denom[ids]

    def macro_f1(self) -> float:
        """Mean F1 over the areas present in truth or prediction; NaN when nothing was scored."""
        _, f1 = self.per_area_f1()
        return float(f1.mean()) if len(f1) else float("nan")

    def summary(self) -> dict:
        scored = self.scored
        return {
            "macro_f1": self.macro_f1(),
            "accuracy": float(self.tp.sum() / scored) if scored else float("nan"),
            "coverage": float((scored - self.unlabelled) / scored) if scored else float("nan"),
            "pixels_scored": scored,
            "pixels_unlabelled": int(self.unlabelled),
            "pixels_outside_truth": int(self.outside),
            "areas": int(len(self.per_area_f1()[0])),
        }


def pixel_counts(pred: np.ndarray, truth: np.ndarray) -> PixelCounts:
    """Per-area pixel counts of a predicted label image against a true one (area ids, 0 = none).

    Scored pixels: ``truth > 0``. ``tp[a]``: scored pixels with ``pred == truth == a``;
    ``n_true[a]``: scored pixels of true area ``a``; ``n_pred[a]``: scored pixels predicted ``a``
    (``a > 0``).
    """
    pred = np.asarray(pred).astype(np.int64)
    truth = np.asarray(truth).astype(np.int64)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    scored = truth > 0
    t, p = truth[scored], pred[scored]
    size = int(max(t.max(initial=0), p.max(initial=0))) + 1
    predicted = p[p > 0]
    return PixelCounts(
        tp=np.bincount(t[t == p], minlength=size),
        n_true=np.bincount(t, minlength=size),
        n_pred=np.bincount(predicted, minlength=size),
        unlabelled=int((p == 0).sum()),
        outside=int(((pred > 0) & ~scored).sum()),
    )


def pixel_f1(pred: np.ndarray, truth: np.ndarray) -> tuple[float, dict[int, float]]:
    """Macro F1 and per-area F1 ``{area_id: f1}`` of one predicted label image (see module doc)."""
    counts = pixel_counts(pred, truth)
    ids, f1 = counts.per_area_f1()
    return counts.macro_f1(), {int(i): float(v) for i, v in zip(ids, f1, strict=True)}


PIXEL_F1_COLUMNS = ("area_id", "name", "n_true", "n_pred", "tp", "f1")
"""Columns of ``pixel_f1.tsv``: one row per area present in truth or prediction."""


def pixel_f1_rows(counts: PixelCounts, names: dict[int, str]) -> list[tuple]:
    """Rows of ``pixel_f1.tsv`` (:data:`PIXEL_F1_COLUMNS`) from summed counts; ``names``: area id ->
    name (missing ids get an empty name); F1 with six decimals."""
    ids, f1 = counts.per_area_f1()
    return [
        (int(i), names.get(int(i), ""), int(counts.n_true[i]), int(counts.n_pred[i]))
        + (int(counts.tp[i]), f"{v:.6f}")
        for i, v in zip(ids, f1, strict=True)
    ]
