"""Pixel F1 of projected label images against true ones (cortexgraph.mapping.pixel_metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.mapping.pixel_metrics import (
    PIXEL_F1_COLUMNS,
    PixelCounts,
    pixel_counts,
    pixel_f1,
    pixel_f1_rows,
)
from cortexgraph.training.metrics import per_class_f1

# -- scores ----------------------------------------------------------------------------------------
TRUTH = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [0, 0, 3, 3]])
PRED = np.array([[1, 2, 2, 2], [1, 0, 2, 2], [1, 1, 3, 2], [0, 0, 3, 3]])


def test_pixel_f1_by_hand():
    # scored: the 12 pixels with truth > 0
    # area 1: n_true 4, predicted 1 on scored pixels: 2 (both hits) -> F1 = 2*2 / (4 + 2) = 2/3
    # area 2: n_true 4, predicted 2: 1 (row 0 col 1) + 4 + 1 (row 2 col 3) = 6, hits 4 -> 8/10
    # area 3: n_true 4, predicted 3: 3, hits 3 -> 6/7
    macro, per_area = pixel_f1(PRED, TRUTH)
    assert per_area == pytest.approx({1: 2 / 3, 2: 0.8, 3: 6 / 7}, abs=1e-12)
    assert macro == pytest.approx((2 / 3 + 0.8 + 6 / 7) / 3, abs=1e-12)
    counts = pixel_counts(PRED, TRUTH)
    summary = counts.summary()
    assert summary["pixels_scored"] == 12
    assert summary["pixels_unlabelled"] == 1  # row 1 col 1
    assert summary["pixels_outside_truth"] == 2  # the two 1s at row 2 cols 0, 1
    assert summary["accuracy"] == pytest.approx(9 / 12)
    assert summary["coverage"] == pytest.approx(11 / 12)


def test_pixel_f1_agrees_with_training_metrics_and_sums_over_sections():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, (2, 40, 50))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 6, truth.shape))
    total = pixel_counts(pred[0], truth[0]) + pixel_counts(pred[1], truth[1])
    scored = truth > 0
    ids, f1 = per_class_f1(truth[scored], pred[scored], labels=np.arange(1, 6))
    ours_ids, ours = total.per_area_f1()
    np.testing.assert_array_equal(ours_ids, ids)
    np.testing.assert_allclose(ours, f1, atol=1e-12)
    assert total.macro_f1() == pytest.approx(pixel_f1(pred, truth)[0], abs=1e-12)
    assert np.isnan(PixelCounts.empty().macro_f1())


def test_pixel_f1_rows():
    rows = pixel_f1_rows(pixel_counts(PRED, TRUTH), {1: "A", 3: "C"})
    assert len(PIXEL_F1_COLUMNS) == len(rows[0])
    assert rows == [
        (1, "A", 4, 2, 2, "0.666667"),
        (2, "", 4, 6, 4, "0.800000"),
        (3, "C", 4, 3, 3, "0.857143"),
    ]
