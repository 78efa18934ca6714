"""train_gnn / predict_brain on tiny synthetic graph files in a cohort layout."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.stage import (
    default_run_name,
    load_run,
    predict_brain,
    read_history,
    resolve_run,
    train_gnn,
)
from cortexgraph.gnn.synthetic import write_synthetic_cohort

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
FAST = dict(hidden=16, batch_size=48, lr=0.1, device="cpu", preset="demo")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_synthetic_cohort(tmp_path_factory.mktemp("stage"), ("B01", "B03", "B07"), **SMALL)


def _copy(cohort, tmp_path):
    return shutil.copytree(cohort, tmp_path / "cohort")


def test_default_run_names():
    assert default_run_name("gat", 3, ("cy", "pm", "co")) == "gat3-cy-pm-co"
    assert default_run_name("linear", 0, "co,cy") == "linear-cy-co"
    assert default_run_name("sage", 5, "cy", "demo", "B01", 2) == "sage5-cy-demo-tB01-s2"
    assert default_run_name("gat", 3, "cy", "demo", epochs=6) == "gat3-cy-demo"  # preset's epochs
    assert default_run_name("gat", 3, "cy", "demo", epochs=20) == "gat3-cy-demo-e20"
    assert default_run_name("gat", 3, "cy", epochs=100) == "gat3-cy"


def test_train_writes_a_run_and_holds_out_the_transfer_brain(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    records = []
    run = train_gnn(root, model="sage", layers=2, epochs=2, progress=records.append, **FAST)
    assert run == root / "derivatives/cortexgraph/runs/sage2-cy-pm-co-demo-e2"
    for name in ("model.pt", "model.pt.prov.json", "config.json", "history.tsv"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints/last.pt").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["train_graphs"] == ["B01/lh", "B01/rh", "B03/lh", "B03/rh"]
    assert config["transfer"] == "B07" and config["epochs_done"] == 2
    assert config["fanout"] == 3 and config["feature_dims"] == {"cy": 8, "pm": 4, "co": 3}
    n_train = 0
    for key in config["train_graphs"]:
        brain, hemi = key.split("/")
        with h5py.File(root / f"derivatives/cortexgraph/{brain}/graph/{hemi}.h5") as h5:
            n_train += int((h5["nodes/train_mask"][...] & (h5["nodes/y"][...] >= 0)).sum())
    assert sum(config["train_nodes"].values()) == n_train
    history = read_history(run)
    assert history["epoch"] == [1.0, 2.0] and len(records) == 2
    # one epoch = one pass over all labelled training nodes of all training graphs
    np.testing.assert_allclose(
        np.array(history["nodes_per_s"]) * np.array(history["seconds"]), n_train, rtol=1e-4
    )
    prov = json.loads((run / "model.pt.prov.json").read_text())
    assert any("B01/graph/lh.h5" in k for k in prov["inputs"])
    assert not any("B07" in k for k in prov["inputs"])
    model, cfg = load_run(run)
    assert model.kind == "sage" and model.num_layers == 2 and not model.training
    assert resolve_run("sage2-cy-pm-co-demo-e2", root) == run.resolve()


def test_same_seed_same_model_and_reuse(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    a = train_gnn(root, model="gat", layers=2, epochs=2, name="a", **FAST)
    b = train_gnn(root, model="gat", layers=2, epochs=2, name="b", **FAST)
    wa, wb = (torch.load(r / "model.pt", weights_only=True)["state_dict"] for r in (a, b))
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    stamp = (a / "model.pt").stat().st_mtime_ns
    assert train_gnn(root, model="gat", layers=2, epochs=2, name="a", **FAST) == a
    assert (a / "model.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(CortexgraphError, match="other settings.*hidden"):
        train_gnn(root, model="gat", layers=2, epochs=2, name="a", **{**FAST, "hidden": 8})
    train_gnn(
        root, model="gat", layers=2, epochs=2, name="a", overwrite=True, **{**FAST, "hidden": 8}
    )
    assert load_run(a)[0].hidden == 8


def test_resume_continues_exactly(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    straight = train_gnn(root, model="gat", layers=2, epochs=4, name="straight", **FAST)
    part = train_gnn(root, model="gat", layers=2, epochs=2, name="part", **FAST)
    assert read_history(part)["epoch"] == [1.0, 2.0]
    # a run stopped after 2 epochs: only its checkpoint is left
    (part / "model.pt").unlink()
    resumed = train_gnn(root, model="gat", layers=2, epochs=4, name="part", **FAST)
    h_straight, h_resumed = read_history(straight), read_history(resumed)
    assert h_resumed["epoch"] == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(h_resumed["loss"], h_straight["loss"], rtol=1e-5)
    ws = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    wr = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    for key in ws:
        torch.testing.assert_close(wr[key], ws[key], rtol=1e-5, atol=1e-6)


def test_errors_name_the_problem(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    with pytest.raises(CortexgraphError, match="transfer brain 'B09'"):
        train_gnn(root, transfer="B09", **FAST)
    with pytest.raises(CortexgraphError, match="unknown model"):
        train_gnn(root, model="gcn", **FAST)
    shutil.rmtree(root / "derivatives/cortexgraph/B03")
    with pytest.raises(CortexgraphError, match="B03 has no graph file"):
        train_gnn(root, **FAST)


def test_predict_writes_proba_and_pred(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    run = train_gnn(root, model="mlp", layers=2, epochs=1, features="cy,co", **FAST)
    written = predict_brain(run.name, "B07", root)
    assert [p.name for p in written] == ["lh.h5", "rh.h5"]
    model, _ = load_run(run)
    for path in written:
        with h5py.File(path, "r") as h5:
            proba = h5["nodes/proba"][...]
            pred = h5["nodes/pred"][...]
            x = {k: torch.from_numpy(h5[f"nodes/{k}"][...]) for k in ("cy", "co")}
            assert "y" in h5["nodes"]  # the other arrays are kept
        assert proba.dtype == np.float32 and proba.shape == (320, 4)
        assert pred.dtype == np.int64
        np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pred, proba.argmax(1))
        with torch.no_grad():
            expected = torch.softmax(model(x), 1).numpy()
        np.testing.assert_allclose(proba, expected, atol=1e-5)
        assert path.with_name(f"{path.stem}.predict.prov.json").is_file()
