"""Graph files of a cohort as training data: feature selection, discovery, loading, the contract."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.graphs import load_brain_graph
from cortexgraph.derivatives.layout import (
    cy_path,
    graph_path,
    node_labels_path,
    priors_path,
    read_node_arrays,
    write_node_arrays,
)
from cortexgraph.errors import CortexgraphError, UpstreamError
from cortexgraph.gnn.data import (
    feature_dims,
    features_label,
    graph_items,
    load_graphs,
    parse_features,
)
from cortexgraph.gnn.synthetic import (
    triangulated_grid_edges,
    triangulated_grid_faces,
    write_synthetic_cohort,
)
from cortexgraph.meshes.graph import edges_from_faces

SMALL = dict(rows=20, cols=16, num_areas=4, cy_dim=8, pm_dim=5, section_every=1, annotate_every=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_synthetic_cohort(tmp_path_factory.mktemp("graphs"), ("B01", "B07"), **SMALL)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("cy,pm,co", ("cy", "pm", "co")),
        ("co,cy", ("cy", "co")),
        ("CY/PM", ("cy", "pm")),
        ("pm+co", ("pm", "co")),
        (["co"], ("co",)),
    ],
)
def test_parse_features_gives_canonical_order(text, expected):
    assert parse_features(text) == expected
    assert features_label(expected) == "/".join(f.upper() for f in expected)


@pytest.mark.parametrize("bad", ["", "cy,xx", [], "rgb"])
def test_parse_features_rejects_bad_selection(bad):
    with pytest.raises(CortexgraphError, match="feature selection"):
        parse_features(bad)


def test_grid_faces_give_the_grid_edges():
    faces = triangulated_grid_faces(5, 7)
    assert faces.shape == (2 * 4 * 6, 3)
    ours = edges_from_faces(faces, 35)
    ref = triangulated_grid_edges(5, 7, periodic=False).numpy()
    assert set(map(tuple, ours.T.tolist())) == set(map(tuple, ref.T.tolist()))


def test_synthetic_graph_files_follow_the_contract(cohort):
    store = Derivatives(cohort)
    path = graph_path(store.root, "B01", "lh")
    with h5py.File(path, "r") as h5:
        n = h5["pos"].shape[0]
        nodes = {name: h5["nodes"][name][...] for name in h5["nodes"]}
    assert n == 20 * 16 and set(nodes) == {"section", "point_mm", "valid"}
    key = store.record(StageId("build-graph", "B01")).key
    for file in (
        cy_path(store.root, "B01", "synthetic", "lh"),
        priors_path(store.root, "B01", "lh"),
        node_labels_path(store.root, "B01", "lh"),
    ):
        nodes.update(read_node_arrays(file, graph_key=key))
    expect = {
        "cy": (np.float32, (n, 8)),
        "pm": (np.float32, (n, 5)),
        "co": (np.float32, (n, 3)),
        "y": (np.int64, (n,)),
        "train_mask": (np.bool_, (n,)),
        "test_mask": (np.bool_, (n,)),
        "section": (np.int64, (n,)),
        "valid": (np.bool_, (n,)),
        "cy_measured": (np.bool_, (n,)),
        "point_mm": (np.float32, (n, 2)),
    }
    for name, (dtype, shape) in expect.items():
        assert nodes[name].dtype == dtype and nodes[name].shape == shape, name
    y, train, test = nodes["y"], nodes["train_mask"], nodes["test_mask"]
    section, co = nodes["section"], nodes["co"]
    assert not (train & test).any()
    assert ((y >= 0) == (train | test)).all()
    assert y.max() < 4 and np.abs(co).max() <= 1.0
    # every fifth annotated section (sorted by number) is a test section
    annotated = np.unique(section[y >= 0])
    tested = np.unique(section[test])
    sections = np.unique(section[section >= 0])
    assert tested.tolist() == [s for k, s in enumerate(sections) if k % 5 == 4 and s in annotated]


def test_find_and_load(cohort):
    store = Derivatives(cohort)
    items = graph_items(store, ["B01", "B07"])
    assert [i.key for i in items] == ["B01/lh", "B01/rh", "B07/lh", "B07/rh"]
    assert feature_dims(store, items[0], ("cy", "co"), "synthetic") == {"cy": 8, "co": 3}
    g = load_graphs(store, items[:1], ("pm", "co"), encoder=None)[0].data
    assert g.x_pm.shape == (320, 5) and g.x_pm.dtype == torch.float32
    assert "x_cy" not in g
    assert g.y.dtype == torch.int64 and g.train_mask.dtype == torch.bool
    assert g.edge_index.shape[1] == 2 * (19 * 15 * 3 + 19 + 15)  # grid edges, both directions
    unlabelled = load_graphs(store, items[:1], ("cy",), encoder="synthetic", labels=False)[0].data
    assert unlabelled.y is None
    full = load_brain_graph(store, "B01", "lh", "cy,pm,co", encoder="synthetic", labels=True)
    assert full.x.shape == (320, 8 + 5 + 3) and full.pos.shape == (320, 3)
    np.testing.assert_array_equal(full.x[:, :8].numpy(), full.x_cy.numpy())


def test_missing_graphs_and_arrays_are_named(cohort, tmp_path):
    store = Derivatives(cohort)
    with pytest.raises(UpstreamError, match="B05/build-graph has not been computed"):
        graph_items(store, ["B05"])
    with pytest.raises(UpstreamError, match="features@other has not been computed") as err:
        load_brain_graph(store, "B01", "lh", ("cy",), encoder="other")
    assert "cortexgraph features B01 --encoder other" in str(err.value)
    # a CY file with NaN, recorded for the current graph, is refused by name
    key = store.record(StageId("build-graph", "B07")).key
    n = 20 * 16
    bad = write_node_arrays(
        cy_path(store.root, "B07", "nan", "lh"),
        key,
        n,
        cy=np.full((n, 4), np.nan, np.float32),
        cy_measured=np.ones(n, bool),
    )
    record_external(
        store, StageId("features", "B07", ("nan",)), [bad], {"source": "test"},
        upstream=[StageId("build-graph", "B07")],
    )  # fmt: skip
    with pytest.raises(UpstreamError, match="not a finite"):
        load_brain_graph(store, "B07", "lh", ("cy",), encoder="nan")
    # a node-array file of another graph is refused
    write_node_arrays(
        cy_path(store.root, "B07", "nan", "lh"), "0" * 64, n,
        cy=np.zeros((n, 4), np.float32), cy_measured=np.ones(n, bool),
    )  # fmt: skip
    with pytest.raises(UpstreamError, match="features@nan is stale"):
        load_brain_graph(store, "B07", "lh", ("cy",), encoder="nan")
