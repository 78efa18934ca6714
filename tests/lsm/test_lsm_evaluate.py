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


def test_evaluate_prediction_and_summaries():
    from cortexgraph.lsm.evaluate import evaluate_prediction, summarize

    pred = np.full((4, 6), 255, np.uint8)  # outside the ROI
    pred[:, :4] = 2
    pred[0:2, 0:3] = 3  # 6 area pixels predicted, all inside the ROI
    annotation = np.zeros((4, 6), int)
    annotation[0:2, 0:2] = 9  # 4 annotated: TP 4, FP 2 -> F1 8/10
    truth = annotation.copy()
    truth[:, 5] = 9  # 4 more truth pixels outside the ROI
    scores = evaluate_prediction(pred, 9, annotation, truth)
    assert scores["f1_annotation"] == pytest.approx(0.8)
    assert scores["f1_truth_roi"] == pytest.approx(0.8)
    assert scores["f1_truth_section"] == pytest.approx(8 / 14)  # FN 4 outside the ROI
    assert (scores["roi_px"], scores["pred_area_px"], scores["truth_area_px"]) == (16, 6, 4)
    assert np.isnan(evaluate_prediction(pred, 9)["f1_annotation"])
    stats = summarize([0.2, 0.4, float("nan"), 0.9])
    assert stats["n"] == 3 and stats["median"] == pytest.approx(0.4)
    assert stats["mean"] == pytest.approx(0.5) and stats["std"] == pytest.approx(
        np.std([0.2, 0.4, 0.9], ddof=1)
    )
    assert summarize([])["n"] == 0


def test_comparison_table_pools_areas_in_the_seeds_order():
    from cortexgraph.lsm.evaluate import comparison_table, format_table

    summaries = [
        {"area": "a", "source": "lsm-ms", "test_f1": [0.8, 0.6], "truth_f1": [0.7]},
        {"area": "b", "source": "lsm-ms", "test_f1": [1.0], "truth_f1": [0.9, 0.5]},
        {"area": "a", "source": "gsm-hr", "test_f1": [0.3], "truth_f1": []},
    ]
    rows = comparison_table(summaries)
    assert [r["model"] for r in rows] == ["GSM (HR)", "LSM (MS)"]
    ms = rows[1]
    assert ms["n"] == 3 and ms["median"] == pytest.approx(0.8) and ms["mean"] == pytest.approx(0.8)
    assert ms["truth_n"] == 3 and ms["truth_median"] == pytest.approx(0.7)
    assert ms["areas"] == "a,b"
    text = format_table(rows)
    assert text.splitlines()[2].startswith("| GSM (HR) | 1 | 0.300 | 0.300 | 0.000 | 0 | nan")


def test_area_summary_and_tsv():
    from cortexgraph.lsm.evaluate import METRICS_COLUMNS, area_summary, format_tsv

    def row(section, role, f1_annotation, f1_truth_roi):
        return {
            "area": "hOc1",
            "section": section,
            "role": role,
            "interval": "422-842",
            "f1_annotation": f1_annotation,
            "f1_truth_roi": f1_truth_roi,
            "f1_truth_section": f1_truth_roi / 2,
            "roi_px": 10,
            "pred_area_px": 4,
            "truth_area_px": float("nan"),
        }

    rows = [row(422, "train", 0.9, 0.95), row(602, "test", 0.6, 0.7), row(722, "test", 0.8, 0.9)]
    rows.append(row(700, "between", float("nan"), 0.5))
    summary = area_summary(rows)
    assert summary["sections"] == 4 and summary["test_sections"] == [602, 722]
    assert summary["test"]["n"] == 2 and summary["test"]["mean"] == pytest.approx(0.7)
    assert summary["test"]["std"] == pytest.approx(np.sqrt(0.02))  # sample std of 0.6, 0.8
    assert summary["truth_f1"] == [0.7, 0.9, 0.5]
    assert summary["truth_roi"]["median"] == pytest.approx(0.7)
    assert summary["train_f1_annotation"]["mean"] == pytest.approx(0.9)
    text = format_tsv(METRICS_COLUMNS, rows[:1] + rows[3:])
    lines = text.splitlines()
    assert lines[0].split("\t") == list(METRICS_COLUMNS)
    assert lines[1].split("\t")[4:7] == ["0.9000", "0.9500", "0.4750"]
    assert lines[2].split("\t")[4] == "nan" and lines[2].split("\t")[-1] == "nan"
