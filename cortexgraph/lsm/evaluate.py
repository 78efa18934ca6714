"""Evaluation of LSM predictions (Schiffer et al. 2021, NeuroImage, Sect. 2.7; Schiffer, PhD thesis,
Sect. 5.2).

F1 (= Dice) of the target area only; the auxiliary classes (background, white matter, other cortex)
are not scored. Scoring is restricted to the region around the area (the prediction ROI) when one is
given.

:func:`evaluate_prediction` scores one predicted section, :func:`area_summary` pools an area's
sections, :func:`comparison_table` pools runs into the HR/LR/MS x LSM/GSM table (thesis Table 5.1);
:func:`format_tsv` / :func:`format_table` write them (``metrics.tsv``, ``table.tsv``, ``table.md`` of
the ``lsm-evaluate`` stage, :func:`cortexgraph.lsm.stages.evaluate_stage`).
"""

from __future__ import annotations

from pathlib import Path

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


# --------------------------------------------------------------------------------------------------
# brain-level evaluation

SOURCE_ORDER = ("gsm-hr", "gsm-lr", "gsm-ms", "lsm-hr", "lsm-lr", "lsm-ms")
"""Row order of the comparison table (thesis Table 5.1: GSM (HR, LR, MS), then LSM)."""

METRICS_COLUMNS = (
    "area",
    "section",
    "role",
    "interval",
    "f1_annotation",
    "f1_truth_roi",
    "f1_truth_section",
    "roi_px",
    "pred_area_px",
    "truth_area_px",
)
"""Columns of ``metrics.tsv``: one row per area and predicted section (:func:`evaluate_prediction`
scores with the section's role in the chain plan and its interval ``s-t``)."""

TABLE_COLUMNS = (
    "model",
    "source",
    "areas",
    "n",
    "median",
    "mean",
    "std",
    "truth_n",
    "truth_median",
    "truth_mean",
)
"""Columns of ``table.tsv``: the rows of :func:`comparison_table`."""


def truth_labels_dir(brain) -> Path | None:
    """The phantom's full ground truth ``<cohort>/ground_truth/<brain>/labels`` (None if absent)."""
    if brain.cohort is None:
        return None
    folder = brain.ground_truth / "labels"
    return folder if folder.is_dir() else None


def summarize(values) -> dict:
    """``n``, ``median``, ``mean`` and ``std`` (sample standard deviation, ddof 1) of the finite
    values; NaN statistics when there are none."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return {"n": 0, "median": float("nan"), "mean": float("nan"), "std": float("nan")}
    return {
        "n": n,
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if n > 1 else 0.0,
    }


def evaluate_prediction(
    pred: np.ndarray,
    area_id: int,
    annotation: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    area_class: int = 3,
    outside_roi: int = 255,
) -> dict:
    """Scores of one section's class prediction for one area.

    Parameters
    ----------
    pred : (rows, cols) class prediction (area = ``area_class``, ``outside_roi`` outside the ROI).
    area_id : the area's id in ``annotation`` and ``truth``.
    annotation : area-id annotation on the same grid (an annotated section), or None.
    truth : full ground-truth area ids on the same grid (phantom), or None.

    Returns
    -------
    dict with ``f1_annotation`` (the published protocol: F1 of the area against the annotation, inside
    the ROI), ``f1_truth_roi`` (against the full truth inside the ROI), ``f1_truth_section`` (whole
    section; pixels outside the ROI count as predicted "not the area"), ``roi_px``, ``pred_area_px``,
    ``truth_area_px`` (truth inside the ROI; NaN without truth). Missing inputs give NaN.
    """
    pred = np.asarray(pred)
    roi = pred != outside_roi
    found = pred == area_class
    out = {
        "f1_annotation": float("nan"),
        "f1_truth_roi": float("nan"),
        "f1_truth_section": float("nan"),
        "roi_px": int(roi.sum()),
        "pred_area_px": int(found.sum()),
        "truth_area_px": float("nan"),
    }
    if annotation is not None:
        out["f1_annotation"] = area_f1(found, np.asarray(annotation) == area_id, True, roi)
    if truth is not None:
        truth_area = np.asarray(truth) == area_id
        out["f1_truth_roi"] = area_f1(found, truth_area, True, roi)
        out["f1_truth_section"] = area_f1(found, truth_area, True)
        out["truth_area_px"] = int((truth_area & roi).sum())
    return out


def area_summary(rows: list[dict]) -> dict:
    """The scores of one area of a run from its :func:`evaluate_prediction` rows (each with
    ``section`` and ``role``, :data:`METRICS_COLUMNS`).

    Returns ``sections`` (how many), ``test_sections``, the F1 lists ``test_f1`` (against the
    annotation on the left-out test sections, the published protocol), ``truth_f1`` (against the
    full truth inside the ROI) and ``truth_section_f1`` (whole section) on every section that was not
    trained on, and their statistics (:func:`summarize`) ``test``, ``truth_roi``, ``truth_section``,
    ``train_f1_annotation`` (training sections, a check of the fit).
    """
    test = [r["f1_annotation"] for r in rows if r["role"] == "test"]
    truth_f1 = [r["f1_truth_roi"] for r in rows if r["role"] != "train"]
    truth_section = [r["f1_truth_section"] for r in rows if r["role"] != "train"]
    return {
        "sections": len(rows),
        "test_sections": [r["section"] for r in rows if r["role"] == "test"],
        "test_f1": test,
        "truth_f1": truth_f1,
        "truth_section_f1": truth_section,
        "test": summarize(test),
        "truth_roi": summarize(truth_f1),
        "truth_section": summarize(truth_section),
        "train_f1_annotation": summarize(
            [r["f1_annotation"] for r in rows if r["role"] == "train"]
        ),
    }


def comparison_table(summaries: list[dict]) -> list[dict]:
    """Pool per-section scores over areas into the HR/LR/MS x LSM/GSM table (thesis Table 5.1).

    Parameters
    ----------
    summaries : one dict per (area, source) with ``source`` (the model run's name), optionally
        ``kind`` and ``arch`` (else read from a ``<kind>-<arch>`` source name), and the lists
        ``test_f1`` (F1 on the left-out annotated sections) and ``truth_f1`` (F1 against the full
        truth inside the ROI on every predicted section that was not trained on).

    Returns
    -------
    One row per source present, in :data:`SOURCE_ORDER`, then the other runs by name: ``model``
    (e.g. "LSM (MS)"; runs with a custom name add it: "LSM (MS) lsm-ms-long"), the test-F1
    statistics ``n``, ``median``, ``mean``, ``std`` and the truth statistics ``truth_n``,
    ``truth_median``, ``truth_mean``.
    """
    pooled: dict[str, dict[str, list]] = {}
    labels: dict[str, str] = {}
    for record in summaries:
        source = record["source"]
        kind, _, arch = source.partition("-")
        kind, arch = record.get("kind") or kind, record.get("arch") or arch
        label = f"{kind.upper()} ({arch.upper()})"
        labels[source] = label if source == f"{kind}-{arch}" else f"{label} {source}"
        entry = pooled.setdefault(source, {"test": [], "truth": [], "areas": []})
        entry["test"] += list(record.get("test_f1", []))
        entry["truth"] += list(record.get("truth_f1", []))
        entry["areas"].append(record.get("area", ""))
    rows = []
    order = list(SOURCE_ORDER) + sorted(set(pooled) - set(SOURCE_ORDER))
    for source in order:
        if source not in pooled:
            continue
        test = summarize(pooled[source]["test"])
        truth = summarize(pooled[source]["truth"])
        rows.append(
            {
                "model": labels[source],
                "source": source,
                "areas": ",".join(sorted(set(pooled[source]["areas"]))),
                **test,
                "truth_n": truth["n"],
                "truth_median": truth["median"],
                "truth_mean": truth["mean"],
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The comparison table as Markdown."""
    lines = [
        "| model | test sections | median F1 | mean F1 | std | truth sections | truth median F1 "
        "| truth mean F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['n']} | {row['median']:.3f} | {row['mean']:.3f} | "
            f"{row['std']:.3f} | {row['truth_n']} | {row['truth_median']:.3f} | "
            f"{row['truth_mean']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def format_value(value) -> str:
    """A table cell: floats with four decimals (``nan`` when not finite), anything else as text."""
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.4f}"
    return str(value)


def format_tsv(columns: tuple[str, ...], rows: list[dict]) -> str:
    """Tab-separated text: a header line of ``columns``, then one line per row
    (:func:`format_value`)."""
    lines = ["\t".join(columns)] + ["\t".join(format_value(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"
