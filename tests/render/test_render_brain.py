"""``render_brain`` / ``cortexgraph render``: pictures and exports of a graph's node arrays."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from matplotlib.image import imread
from typer.testing import CliRunner

from cortexgraph.data.manifest import Area, AreaTable, Brain, Cohort, find_brain
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.layout import (
    node_labels_path,
    prediction_path,
    priors_path,
    write_node_arrays,
)
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.meshes.graph import save_graph_h5
from cortexgraph.render.brain import node_colouring, render_brain
from cortexgraph.render.export import read_gifti_labels

AREAS = AreaTable(
    [Area(4, "hOc1", "#d62728"), Area(7, "hOc2", "#1f77b4"), Area(9, "FG1", "#2ca02c")]
)


def _cohort_with_graph(root):
    """A cohort with brain B01 whose left graph is a sphere: y on part of it, pred everywhere."""
    cohort = Cohort(root=root, name="sphere", section_thickness_um=20.0, brain_ids=["B01"])
    cohort.write_manifest()
    AREAS.write(root / "areas.tsv")
    brain = Brain(
        id="B01",
        root=root / "B01",
        cohort=cohort,
        shrinkage_factor=1.0,
        digitization_step=1,
        image_spacing_um=100.0,
        mask_spacing_um=100.0,
        annotation_spacing_um=100.0,
        coords_spacing_um=400.0,
    )
    brain.root.mkdir(parents=True)
    brain.write_manifest()
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    vertices = np.asarray(sphere.vertices) + np.array([-15.0, 0.0, 0.0])
    faces = np.asarray(sphere.faces)
    n = len(vertices)
    pred = np.where(vertices[:, 1] < 0, 0, 1)  # hOc1 posterior, hOc2 anterior
    y = np.full(n, -1)
    stripe = np.abs(vertices[:, 2]) < 2.0
    y[stripe] = pred[stripe]
    y[stripe & (vertices[:, 1] > 6)] = 2  # FG1 where pred says hOc2: errors
    proba = np.zeros((n, 3), np.float32)
    proba[np.arange(n), pred] = 0.8
    proba[np.arange(n), 2] += 0.2
    co = (vertices - vertices.mean(0)) / 10.0
    pm = np.stack([np.clip(vertices[:, 2] / 10, 0, 1), np.clip(-vertices[:, 2] / 10, 0, 1)], 1)
    store = Derivatives(root)
    graph = save_graph_h5(brain.derivatives / "graph/lh.h5", vertices, faces)
    graph_id = StageId("build-graph", "B01")
    key = record_external(store, graph_id, [graph], {"source": "sphere"}).key
    parts = {
        StageId("node-labels", "B01"): (
            node_labels_path(store.root, "B01", "lh"),
            {"y": y, "train_mask": y >= 0, "test_mask": np.zeros(n, bool)},
        ),
        StageId("node-priors", "B01"): (
            priors_path(store.root, "B01", "lh"),
            {"co": co.astype(np.float32), "pm": pm.astype(np.float32)},
        ),
        StageId("predict", "B01", ("r1",)): (
            prediction_path(store.root, "B01", "r1", "lh"),
            {"proba": proba, "pred": pred},
        ),
    }
    for sid, (path, arrays) in parts.items():
        write_node_arrays(path, key, n, **arrays)
        record_external(store, sid, [path], {"source": "sphere"}, upstream=[graph_id])
    return find_brain("B01", root), vertices, faces, y, pred


def test_render_brain_pictures_and_exports(tmp_path):
    brain, vertices, faces, y, pred = _cohort_with_graph(tmp_path / "cohort")
    small = dict(views=("lateral", "dorsal"), size_px=(160, 120))
    written = render_brain(brain, "pred,errors,proba:hOc2", run="r1", **small)
    written += render_brain(brain, "y,co,pm:1", **small)
    run_out = brain.derivatives / "render" / "gnn-r1"
    node_out = brain.derivatives / "render" / "nodes"
    names = {p.relative_to(brain.derivatives / "render").as_posix() for p in written}
    for stem in ("gnn-r1/lh_pred", "gnn-r1/lh_errors", "gnn-r1/lh_proba-hOc2", "nodes/lh_y",
                 "nodes/lh_co", "nodes/lh_pm-1"):  # fmt: skip
        assert f"{stem}.png" in names and f"{stem}.ply" in names
    for stem in ("nodes/lh_y", "gnn-r1/lh_pred", "gnn-r1/lh_errors"):
        assert f"{stem}.label.gii" in names and f"{stem}.annot" in names
    for stem in ("gnn-r1/lh_proba-hOc2", "nodes/lh_co", "nodes/lh_pm-1"):
        assert f"{stem}.func.gii" in names
    assert "gnn-r1/lh_y_vs_pred.png" in names
    # the prediction picture: the two area colours (shaded) on a white background
    picture = (imread(run_out / "lh_pred.png")[..., :3] * 255).round().astype(int)
    reddish = (picture[..., 0] > picture[..., 2] + 60) & (picture[..., 1] < 120)
    bluish = (picture[..., 2] > picture[..., 0] + 60) & (picture[..., 1] > 60)
    assert reddish.sum() > 500 and bluish.sum() > 500
    # exports hold the area ids of the prediction
    labels, table = read_gifti_labels(run_out / "lh_pred.label.gii")
    np.testing.assert_array_equal(labels, AREAS.ids[pred])
    assert table[7] == ("hOc2", (0x1F, 0x77, 0xB4))
    errors, _ = read_gifti_labels(run_out / "lh_errors.label.gii")
    known = y >= 0
    np.testing.assert_array_equal(errors[~known], 0)
    np.testing.assert_array_equal(errors[known], np.where(y[known] == pred[known], 1, 2))
    record = Derivatives(brain.cohort.root).record(StageId("render", "B01", ("gnn-r1", "errors")))
    expected = float((y[known] == pred[known]).mean())
    assert record.measured["lh"]["accuracy"] == pytest.approx(expected)
    assert 0 < expected < 1
    assert (node_out / "lh_y.png").is_file()
    # outputs are reused while nothing changed
    stamp = (run_out / "lh_pred.png").stat().st_mtime_ns
    render_brain(brain, "pred", run="r1", **small)
    assert (run_out / "lh_pred.png").stat().st_mtime_ns == stamp
    with pytest.raises(CortexgraphError, match="--run"):
        render_brain(brain, "pred", **small)
    with pytest.raises(CortexgraphError, match="unknown --labels"):
        render_brain(brain, "valid", **small)


def test_colouring_specs_and_errors(tmp_path):
    arrays = {
        "y": np.array([0, 1, -1]),
        "pred": np.array([0, 2, 1]),
        "proba": np.full((3, 3), 1 / 3, np.float32),
        "pm": np.array([[0.0, 0.5], [0.2, 1.0], [0.4, 0.0]]),
    }
    errors = node_colouring("errors", arrays, AREAS)
    np.testing.assert_array_equal(errors.labels, [1, 2, 0])
    assert errors.summary["accuracy"] == 0.5
    pred = node_colouring("pred", arrays, AREAS)
    np.testing.assert_array_equal(pred.rgb[2], [0x1F, 0x77, 0xB4])
    assert [name for name, _ in pred.legend] == ["hOc1", "hOc2", "FG1"]
    pm = node_colouring("pm:0", arrays, AREAS)
    assert pm.colour_bar.vmax == pytest.approx(0.4)
    assert node_colouring("pm:right", arrays, AREAS, pm_names=["left", "right"]).name == "pm-1"
    with pytest.raises(CortexgraphError):
        node_colouring("proba", arrays, AREAS)
    with pytest.raises(CortexgraphError):
        node_colouring("pm:5", arrays, AREAS)
    with pytest.raises(DataFormatError, match="co"):
        node_colouring("co", arrays, AREAS)
    with pytest.raises(DataFormatError):
        node_colouring("proba:nothing", arrays, AREAS)


def test_cli_render(tmp_path):
    from cortexgraph.cli.main import app

    brain, *_ = _cohort_with_graph(tmp_path / "cohort")
    args = ["render", "B01", "--root", str(tmp_path / "cohort"), "--labels", "y"]
    args += ["--views", "medial", "--size", "100x80", "--backend", "matplotlib", "--no-exports"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (brain.derivatives / "render/nodes/lh_y.png").is_file()
    assert not (brain.derivatives / "render/nodes/lh_y.label.gii").exists()
    result = CliRunner().invoke(app, args[:5] + ["--views", "sideways"])
    assert result.exit_code == 2 and "sideways" in result.output


def test_errors_of_a_training_brain_score_test_sections_apart():
    arrays = {
        "y": np.array([0, 1, 0, 1, -1, 2]),
        "pred": np.array([0, 0, 0, 1, 1, 2]),
        "train_mask": np.array([True, True, False, False, False, False]),
        "test_mask": np.array([False, False, True, True, False, True]),
    }
    held_out = node_colouring("errors", arrays, AREAS, role="train")
    # held-out test nodes: 1 correct / 2 wrong; training-section nodes: 3 correct / 4 wrong
    np.testing.assert_array_equal(held_out.labels, [3, 4, 1, 1, 0, 1])
    assert held_out.summary["accuracy"] == 1.0 and held_out.summary["nodes_compared"] == 3
    assert held_out.summary["seen_accuracy"] == 0.5 and held_out.summary["seen_nodes"] == 2
    assert "test sections: accuracy 1.000 (3 nodes)" in held_out.title
    assert "training sections (seen): 0.500 (2 nodes)" in held_out.title
    # on the transfer brain every annotated node is held out
    transfer = node_colouring("errors", arrays, AREAS, role="transfer")
    np.testing.assert_array_equal(transfer.labels, [1, 2, 1, 1, 0, 1])
    assert transfer.summary["accuracy"] == pytest.approx(0.8)
    assert "transfer brain" in transfer.title and "seen" not in transfer.title
