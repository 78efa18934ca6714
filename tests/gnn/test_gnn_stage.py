"""train_gnn / predict_brain on tiny synthetic graph files in a cohort layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.layout import read_node_arrays
from cortexgraph.errors import CortexgraphError, UpstreamError
from cortexgraph.gnn.data import graph_items, load_graphs
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
    # the default name carries the settings; width, batch and rate differ from the preset: -x<hash>
    assert run.parent == root / "derivatives/cortexgraph/runs"
    assert run.name.startswith("sage2-cy-pm-co-demo-e2-x")
    for name in ("model.pt", "config.json", "history.tsv"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints/last.pt").is_file()
    record = Derivatives(root).record(StageId("train-gnn", None, (run.name,)))
    assert record.parameters["encoder"] == "synthetic" and record.parameters["transfer"] == "B07"
    assert {"B01/build-graph", "B03/features@synthetic", "B03/node-labels"} <= set(record.upstream)
    assert not any(label.startswith("B07") for label in record.upstream)
    config = json.loads((run / "config.json").read_text())
    assert config["train_graphs"] == ["B01/lh", "B01/rh", "B03/lh", "B03/rh"]
    assert config["transfer"] == "B07" and config["epochs_done"] == 2
    assert config["fanout"] == 3 and config["feature_dims"] == {"cy": 8, "pm": 4, "co": 3}
    n_train = 0
    for key in config["train_graphs"]:
        brain, hemi = key.split("/")
        lab = read_node_arrays(root / f"derivatives/cortexgraph/{brain}/features/labels/{hemi}.h5")
        n_train += int((lab["train_mask"] & (lab["y"] >= 0)).sum())
    assert sum(config["train_nodes"].values()) == n_train
    history = read_history(run)
    assert history["epoch"] == [1.0, 2.0] and len(records) == 2
    # one epoch = one pass over all labelled training nodes of all training graphs
    np.testing.assert_allclose(
        np.array(history["nodes_per_s"]) * np.array(history["seconds"]), n_train, rtol=1e-4
    )
    model, cfg = load_run(run)
    assert model.kind == "sage" and model.num_layers == 2 and not model.training
    assert resolve_run(run.name, root) == run.resolve()


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
    # other settings under the same name: retrained, and the reason is the changed setting
    train_gnn(root, model="gat", layers=2, epochs=2, name="a", **{**FAST, "hidden": 8})
    assert load_run(a)[0].hidden == 8
    # a default name carries the settings that differ from the preset
    c = train_gnn(root, model="gat", layers=2, epochs=2, **{**FAST, "hidden": 8})
    d = train_gnn(root, model="gat", layers=2, epochs=2, **{**FAST, "hidden": 12})
    assert c != d and c.name.startswith("gat2-cy-pm-co-demo-e2-x")


def test_interrupted_training_resumes_exactly(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    straight = train_gnn(root, model="gat", layers=2, epochs=4, name="straight", **FAST)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_gnn(root, model="gat", layers=2, epochs=4, name="part", progress=stop_after_two, **FAST)
    part = root / "derivatives/cortexgraph/runs/part"
    assert not (part / "model.pt").exists() and (part / "checkpoints/last.pt").is_file()
    assert Derivatives(root).record(StageId("train-gnn", None, ("part",))) is None
    epochs = []
    resumed = train_gnn(
        root, model="gat", layers=2, epochs=4, name="part", progress=epochs.append, **FAST
    )
    assert [r["epoch"] for r in epochs] == [3, 4]  # resumed from the checkpoint of epoch 2
    h_straight, h_resumed = read_history(straight), read_history(resumed)
    assert h_resumed["epoch"] == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(h_resumed["loss"], h_straight["loss"], rtol=1e-5)
    ws = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    wr = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    for key in ws:
        torch.testing.assert_close(wr[key], ws[key], rtol=1e-5, atol=1e-6)
    # a checkpoint of other settings is never resumed
    epochs.clear()
    train_gnn(root, model="gat", layers=2, epochs=3, name="part", progress=epochs.append, **FAST)
    assert [r["epoch"] for r in epochs] == [1, 2, 3]


def test_errors_name_the_problem(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    with pytest.raises(CortexgraphError, match="transfer brain 'B09'"):
        train_gnn(root, transfer="B09", **FAST)
    with pytest.raises(CortexgraphError, match="unknown model"):
        train_gnn(root, model="gcn", **FAST)
    with pytest.raises(CortexgraphError, match="not a valid name"):
        train_gnn(root, name="../../x", **FAST)
    # an empty name or encoder is refused, not replaced by the default
    with pytest.raises(CortexgraphError, match="run name '' is not a valid name"):
        train_gnn(root, name="", **FAST)
    with pytest.raises(CortexgraphError, match="encoder name '' is not a valid name"):
        train_gnn(root, encoder="", **FAST)
    assert not (tmp_path / "x").exists()
    (root / "derivatives/cortexgraph/B03/records/build-graph.json").unlink()
    with pytest.raises(UpstreamError, match="B03/build-graph has not been computed") as err:
        train_gnn(root, **FAST)
    assert err.value.exit_code == 4 and "cortexgraph build-graph B03" in str(err.value)


def test_predict_writes_proba_and_pred(cohort, tmp_path):
    root = _copy(cohort, tmp_path)
    graph_files = sorted((root / "derivatives/cortexgraph/B07/graph").glob("*.h5"))
    before = [p.read_bytes() for p in graph_files]
    run = train_gnn(root, model="mlp", layers=2, epochs=1, features="cy,co", **FAST)
    written = predict_brain(run.name, "B07", root)
    assert [p.name for p in written] == ["lh.h5", "rh.h5"]
    assert all(p.parent == root / f"derivatives/cortexgraph/B07/predictions/{run.name}" for p in written)
    assert [p.read_bytes() for p in graph_files] == before  # the graph files are not touched
    model, _ = load_run(run)
    store = Derivatives(root)
    for path, item in zip(written, graph_items(store, ["B07"]), strict=True):
        arrays = read_node_arrays(path)
        proba, pred = arrays["proba"], arrays["pred"]
        x = load_graphs(store, [item], ("cy", "co"), encoder="synthetic", labels=False)[0].data
        assert proba.dtype == np.float32 and proba.shape == (320, 4)
        assert pred.dtype == np.int64
        np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pred, proba.argmax(1))
        with torch.no_grad():
            expected = torch.softmax(model(x), 1).numpy()
        np.testing.assert_allclose(proba, expected, atol=1e-5)
    again = predict_brain(run.name, "B07", root)
    assert again == written
    record = store.record(StageId("predict", "B07", (run.name,)))
    assert f"train-gnn@{run.name}" in record.upstream
    # a second model's predictions never share a file with the first's
    other = train_gnn(root, model="linear", epochs=1, features="co", **FAST)
    assert predict_brain(other.name, "B07", root)[0].parent.name == other.name


def test_transfer_leak_check_warns_only_when_there_is_a_transfer_brain(tmp_path, caplog):
    """An encoder trained elsewhere (no train-encoder record) cannot be checked against the
    transfer brain: a warning naming it; a run without a transfer brain has nothing to check."""
    import logging

    from cortexgraph.gnn.stage import _refuse_transfer_leak

    store = Derivatives(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cortexgraph.gnn.stage"):
        _refuse_transfer_leak(store, "outside", None)
        assert not caplog.records
        _refuse_transfer_leak(store, "outside", "B07")
    assert [r.getMessage() for r in caplog.records] == [
        "encoder outside has no train-encoder record (trained elsewhere): cannot check that it "
        "never saw the transfer brain B07"
    ]


def test_predict_computes_a_large_graph_layer_by_layer_on_a_cpu(cohort, tmp_path, monkeypatch):
    """From ``LAYERWISE_MIN_NODES`` nodes on (here lowered to 0) a GAT is predicted layer by layer
    (bounded memory, float16 activations): the same probabilities as the whole-graph pass within
    5e-3, and the record says which method ran."""
    import cortexgraph.gnn.stage as stage

    root = _copy(cohort, tmp_path)
    run = train_gnn(root, model="gat", layers=2, epochs=1, features="cy,co", **FAST)
    model, _ = load_run(run)
    store = Derivatives(root)
    monkeypatch.setattr(stage, "LAYERWISE_MIN_NODES", 0)
    calls: list[tuple[str, int, int]] = []
    written = predict_brain(
        run.name, "B07", root, device="cpu", batch_size=64, progress=lambda *a: calls.append(a)
    )
    record = store.record(StageId("predict", "B07", (run.name,)))
    expected_by_hemi = {}
    for path, item in zip(written, graph_items(store, ["B07"]), strict=True):
        assert record.measured[item.hemi]["method"] == "layerwise"
        data = load_graphs(store, [item], ("cy", "co"), encoder="synthetic", labels=False)[0].data
        with torch.no_grad():
            expected = torch.softmax(model(data), 1).numpy()
        np.testing.assert_allclose(read_node_arrays(path)["proba"], expected, atol=5e-3)
        expected_by_hemi[item.hemi] = expected
        # progress per batch of every layer (3 passes over the batches: 2 layers + the encoders)
        mine = [c for c in calls if c[0] == f"predict {item.hemi}"]
        batches = -(-int(data.num_nodes) // 64)
        assert [c[1] for c in mine] == list(range(1, 3 * batches + 1))
        assert {c[2] for c in mine} == {3 * batches}

    # below the threshold: exact k-hop batches, progress per batch up to its total
    monkeypatch.setattr(stage, "LAYERWISE_MIN_NODES", 10**9)
    calls.clear()
    written = predict_brain(
        run.name, "B07", root, device="cpu", batch_size=64, overwrite=True,
        progress=lambda *a: calls.append(a),
    )  # fmt: skip
    record = store.record(StageId("predict", "B07", (run.name,)))
    for path, item in zip(written, graph_items(store, ["B07"]), strict=True):
        assert record.measured[item.hemi]["method"] == "k-hop"
        np.testing.assert_allclose(
            read_node_arrays(path)["proba"], expected_by_hemi[item.hemi], atol=1e-5
        )
        mine = [c for c in calls if c[0] == f"predict {item.hemi}"]
        assert mine and mine[-1][1] == mine[-1][2] and len(mine) == mine[-1][2]

