"""evaluate_run against scikit-learn, and the comparison tables."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score

from cortexgraph.data.manifest import read_tsv
from cortexgraph.derivatives import Derivatives
from cortexgraph.gnn.data import graph_items, load_graphs
from cortexgraph.gnn.evaluate import compare_models, comparison_runs, evaluate_run
from cortexgraph.gnn.stage import load_run, train_gnn
from cortexgraph.gnn.synthetic import write_synthetic_cohort

SMALL = dict(
    rows=20,
    cols=16,
    num_areas=5,
    cy_dim=8,
    pm_dim=5,
    section_every=1,
    annotate_every=1,
    cy_signal=0.6,
)
FAST = dict(hidden=16, batch_size=48, lr=0.1, device="cpu", preset="demo")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_synthetic_cohort(tmp_path_factory.mktemp("eval"), ("B01", "B03", "B07"), **SMALL)
    run = train_gnn(root, model="gat", layers=2, epochs=2, **FAST)
    return root, run


def _reference(root, run, brains, transfer):
    """Labels and predictions of the evaluated nodes, computed independently of evaluate_run."""
    model, config = load_run(run)
    yt, yp = [], []
    store = Derivatives(root)
    for item in graph_items(store, brains):
        g = load_graphs(store, [item], config["features"], encoder=config["encoder"])[0].data
        with torch.no_grad():
            pred = model(g).argmax(1)
        mask = (g.y >= 0) if transfer else (g.y >= 0) & g.test_mask
        yt.append(g.y[mask].numpy())
        yp.append(pred[mask].numpy())
    return np.concatenate(yt), np.concatenate(yp)


def test_f1_equals_scikit_learn(trained):
    root, run = trained
    result = evaluate_run(run)
    yt, yp = _reference(root, run, ["B01", "B03"], transfer=False)
    assert result["test_nodes"] == yt.size > 0
    assert result["test_f1"] == pytest.approx(f1_score(yt, yp, average="macro"), abs=1e-12)
    yt_t, yp_t = _reference(root, run, ["B07"], transfer=True)
    assert result["transfer_nodes"] == yt_t.size > 0
    assert result["transfer_f1"] == pytest.approx(f1_score(yt_t, yp_t, average="macro"), abs=1e-12)
    # per-area table
    rows = read_tsv(run / "evaluation/per_area_f1.tsv", ("area_id", "f1_test", "f1_transfer"))
    assert [int(r["area_id"]) for r in rows] == [1, 2, 3, 4, 5]
    present = np.union1d(yt, yp)
    ref = f1_score(yt, yp, average=None, labels=present)
    for k, f1 in zip(present, ref, strict=True):
        assert float(rows[k]["f1_test"]) == pytest.approx(f1, abs=1e-4)
        assert int(rows[k]["n_test"]) == int((yt == k).sum())
    for k in set(range(5)) - set(present.tolist()):
        assert rows[k]["f1_test"] == "nan"
    # confusion matrix: rows true, columns predicted
    lines = (run / "evaluation/confusion_transfer.tsv").read_text().splitlines()
    cm = np.array([[int(v) for v in line.split("\t")[1:]] for line in lines[1:]])
    np.testing.assert_array_equal(cm, sk_confusion(yt_t, yp_t, labels=np.arange(5)))
    for name in ("per_area_f1.png", "confusion_test.png", "confusion_transfer.png", "metrics.json"):
        assert (run / "evaluation" / name).is_file()
    stored = json.loads((run / "evaluation/metrics.json").read_text())
    assert stored["test_f1"] == pytest.approx(result["test_f1"])
    assert set(stored["per_brain"]) == {"B01", "B03", "B07"}


def test_comparison_runs_are_the_seeds_grid():
    depth = comparison_runs("depth")
    assert len(depth) == 10 and depth[0] == ("linear", 0, ("cy",))
    assert {(m, d) for m, d, _ in depth[1:]} == {
        (m, d) for m in ("mlp", "sage", "gat") for d in (3, 5, 7)
    }
    assert all(f == ("cy",) for *_, f in depth)
    feats = comparison_runs("features")
    assert len(feats) == 14 and len(set(feats)) == 14
    assert {f for _, _, f in feats} == {
        ("cy",),
        ("pm",),
        ("co",),
        ("cy", "pm"),
        ("cy", "co"),
        ("pm", "co"),
        ("cy", "pm", "co"),
    }


def test_compare_writes_table_and_chart(trained, tmp_path):
    root = shutil.copytree(trained[0], tmp_path / "cohort")
    specs = [("mlp", 2, ("co",)), ("linear", 0, ("cy", "pm"))]
    tsv, png, rows = compare_models(
        root, "features", preset="demo", epochs=1, device="cpu", specs=specs
    )
    assert tsv == root / "derivatives/cortexgraph/comparisons/features-demo-e1.tsv"
    assert png.is_file()
    table = read_tsv(tsv, ("model", "layers", "features", "run", "test_f1", "transfer_f1"))
    assert [(r["model"], r["features"]) for r in table] == [("mlp", "CO"), ("linear", "CY/PM")]
    for r, row in zip(table, rows, strict=True):
        metrics = json.loads(
            (
                root / "derivatives/cortexgraph/runs" / r["run"] / "evaluation/metrics.json"
            ).read_text()
        )
        assert float(r["test_f1"]) == pytest.approx(metrics["test_f1"], abs=1e-4)
        assert row["transfer_f1"] == metrics["transfer_f1"]
