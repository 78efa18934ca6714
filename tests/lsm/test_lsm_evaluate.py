"""Area F1."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.lsm.evaluate import area_f1


def test_area_f1_known_values():
    truth = np.zeros((10, 10), int)
    truth[:, :5] = 3  # 50 area pixels
    pred = np.zeros((10, 10), int)
    pred[:, :4] = 3  # 40 TP, 0 FP, 10 FN
    pred[0, 9] = 3  # 1 FP
    assert area_f1(pred, truth) == pytest.approx(80 / 91)
    assert area_f1(truth, truth) == 1.0
    assert area_f1(np.zeros_like(truth), truth) == 0.0
    assert area_f1(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    # other classes do not count
    assert area_f1(np.where(truth == 3, 3, 2), np.where(truth == 3, 3, 1)) == 1.0
    roi = np.zeros((10, 10), bool)
    roi[:, 3:] = True  # inside: TP 10 (col 3), FN 10 (col 4), FP 1
    assert area_f1(pred, truth, roi=roi) == pytest.approx(20 / 31)
    assert area_f1(pred == 3, truth == 3, area_class=True) == pytest.approx(80 / 91)
    with pytest.raises(ValueError):
        area_f1(pred, truth[:5])
