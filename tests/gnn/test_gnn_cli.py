"""``cortexgraph train-gnn`` / ``evaluate`` / ``predict`` end to end on tiny synthetic graph files."""

from __future__ import annotations

import json

import h5py
import numpy as np
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.gnn.stage import read_history
from cortexgraph.gnn.synthetic import write_synthetic_cohort

runner = CliRunner()
SMALL = dict(
    rows=20,
    cols=16,
    num_areas=4,
    cy_dim=8,
    pm_dim=4,
    section_every=1,
    annotate_every=1,
    cy_signal=1.0,
)


def _train(root, epochs, *extra):
    args = ["train-gnn", "--model", "gat", "--layers", "2", "--features", "cy,pm,co"]
    args += ["--transfer", "B07", "--epochs", str(epochs), "--preset", "demo", "--hidden", "16"]
    args += ["--batch-size", "48", "--device", "cpu", "--root", str(root), "--name", "g2"]
    args += list(extra)
    return runner.invoke(app, args)


def test_train_resume_evaluate_predict(tmp_path):
    root = write_synthetic_cohort(tmp_path / "cohort", ("B01", "B03", "B07"), **SMALL)
    first = _train(root, 2)
    assert first.exit_code == 0, first.output
    run = root / "derivatives/cortexgraph/runs/g2"
    h2 = read_history(run)
    assert h2["epoch"] == [1.0, 2.0]
    again = _train(root, 2)
    assert again.exit_code == 0 and "up to date" in again.output
    # other settings under the same name: retrained (same seed: the first epochs agree)
    more = _train(root, 3)
    assert more.exit_code == 0, more.output
    assert "parameter epochs changed (2 -> 3)" in more.output
    h3 = read_history(run)
    assert h3["epoch"] == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(h3["loss"][:2], h2["loss"], rtol=1e-5)
    assert json.loads((run / "config.json").read_text())["epochs_done"] == 3
    # evaluate by name and by folder
    ev = runner.invoke(app, ["evaluate", run.name, "--root", str(root), "--device", "cpu"])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads((run / "evaluation/metrics.json").read_text())
    assert 0.0 <= metrics["test_f1"] <= 1.0 and 0.0 <= metrics["transfer_f1"] <= 1.0
    assert metrics["test_nodes"] > 0 and metrics["transfer_nodes"] > 0
    assert runner.invoke(app, ["evaluate", str(run), "--device", "cpu"]).exit_code == 0
    # a brain the cohort does not have is refused before any brain is predicted
    bad = runner.invoke(app, ["predict", run.name, "B07", "B99", "--root", str(root)])
    assert bad.exit_code == 2 and "B99" in bad.output, bad.output
    assert not (root / "derivatives/cortexgraph/B07/predictions").exists()
    # predict writes the run's own files for the transfer brain
    pr = runner.invoke(app, ["predict", run.name, "B07", "--root", str(root), "--device", "cpu"])
    assert pr.exit_code == 0, pr.output
    with h5py.File(root / "derivatives/cortexgraph/B07/predictions/g2/rh.h5", "r") as h5:
        proba, pred = h5["proba"][...], h5["pred"][...]
    assert proba.shape == (320, 4)
    np.testing.assert_array_equal(pred, proba.argmax(1))


def test_cli_errors_exit_with_status_2(tmp_path):
    root = write_synthetic_cohort(
        tmp_path / "cohort",
        ("B01", "B07"),
        rows=4,
        cols=4,
        num_areas=2,
        cy_dim=2,
        section_every=1,
        annotate_every=1,
    )
    bad = _train(root, 1, "--features", "cy,xyz")
    assert bad.exit_code == 2 and "feature selection" in bad.output
    missing = runner.invoke(app, ["evaluate", "nope", "--root", str(root)])
    assert missing.exit_code == 2 and "not found" in missing.output
    nothing = runner.invoke(app, ["evaluate", "--root", str(root)])
    assert nothing.exit_code == 2
    outside = _train(root, 1, "--name", "../../escape")
    assert outside.exit_code == 2 and "not a valid name" in outside.output
    assert not (tmp_path / "escape").exists()
    never = runner.invoke(app, ["predict", "g2", "B07", "--root", str(root)])
    assert never.exit_code == 2 and "not found" in never.output
