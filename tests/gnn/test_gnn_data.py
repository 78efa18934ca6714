"""Graph files of a cohort as training data: feature selection, discovery, loading, the contract."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.gnn.data import (
    features_label,
    find_graph_files,
    graph_file,
    load_node_graph,
    parse_features,
    read_feature_dims,
)
from cortexgraph.gnn.synthetic import (
    triangulated_grid_edges,
    triangulated_grid_faces,
    write_synthetic_cohort,
)
from cortexgraph.meshes.graph import edges_from_faces, save_graph_h5

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
    path = graph_file(cohort, "B01", "lh")
    with h5py.File(path, "r") as h5:
        nodes = h5["nodes"]
        n = h5["pos"].shape[0]
        assert n == 20 * 16
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
        y = nodes["y"][...]
        train, test = nodes["train_mask"][...], nodes["test_mask"][...]
        section = nodes["section"][...]
        co = nodes["co"][...]
    assert not (train & test).any()
    assert ((y >= 0) == (train | test)).all()
    assert y.max() < 4 and np.abs(co).max() <= 1.0
    # every fifth annotated section (sorted by number) is a test section
    annotated = np.unique(section[y >= 0])
    tested = np.unique(section[test])
    sections = np.unique(section[section >= 0])
    assert tested.tolist() == [s for k, s in enumerate(sections) if k % 5 == 4 and s in annotated]


def test_find_and_load(cohort):
    items = find_graph_files(cohort)
    assert [i.key for i in items] == ["B01/lh", "B01/rh", "B07/lh", "B07/rh"]
    assert read_feature_dims(items[0].path, ("cy", "co")) == {"cy": 8, "co": 3}
    g = load_node_graph(items[0].path, ("pm", "co"))
    assert g.x_pm.shape == (320, 5) and g.x_pm.dtype == torch.float32
    assert "x_cy" not in g
    assert g.y.dtype == torch.int64 and g.train_mask.dtype == torch.bool
    assert g.edge_index.shape[1] == 2 * (19 * 15 * 3 + 19 + 15)  # grid edges, both directions
    unlabelled = load_node_graph(items[0].path, ("cy",), labels=False)
    assert unlabelled.y is None


def test_missing_graphs_and_arrays_are_named(cohort, tmp_path):
    with pytest.raises(CortexgraphError, match="B05 has no graph file"):
        find_graph_files(cohort, ["B05"])
    path = tmp_path / "g.h5"
    faces = triangulated_grid_faces(3, 3)
    pos = np.zeros((9, 3), np.float32)
    save_graph_h5(path, pos, faces, cy=np.zeros((9, 4), np.float32))
    with pytest.raises(DataFormatError, match="no node array.*pm") as err:
        load_node_graph(path, ("cy", "pm"))
    assert str(path) in str(err.value) and "features" in str(err.value)
    save_graph_h5(path, pos, faces, cy=np.full((9, 4), np.nan, np.float32))
    with pytest.raises(DataFormatError, match="NaN"):
        load_node_graph(path, ("cy",), labels=False)


def test_synthetic_cohort_command_line(tmp_path, capsys):
    from cortexgraph.gnn.synthetic import main

    main([str(tmp_path / "c"), "--brains", "B01,B07", "--rows", "6", "--cols", "5", "--areas", "3"])
    assert "written" in capsys.readouterr().out
    items = find_graph_files(tmp_path / "c")
    assert [i.key for i in items] == ["B01/lh", "B01/rh", "B07/lh", "B07/rh"]
    assert read_feature_dims(items[0].path, ("cy", "pm", "co")) == {"cy": 256, "pm": 100, "co": 3}
