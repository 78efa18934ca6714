"""Node features: neighbour filling, map sampling, and CY / CO / PM / Y of phantom graphs by hand."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives
from cortexgraph.derivatives.layout import cy_path, node_labels_path, priors_path, read_node_arrays
from cortexgraph.errors import DataFormatError
from cortexgraph.features.nodes import (
    compute_node_features,
    fill_from_neighbours,
    node_arrays_from_table,
    read_graph_nodes,
    sample_labels_nearest,
    sample_map_bilinear,
)
from cortexgraph.features.patches import read_patches
from cortexgraph.features.sampling import split_sections
from cortexgraph.features.train import encode_patches, load_encoder
from cortexgraph.mapping.nodes import NodeSectionTable
from cortexgraph.meshes.graph import edges_from_faces, save_graph_h5


def _path_edges(n):
    src = np.arange(n - 1)
    return np.concatenate([np.stack([src, src + 1]), np.stack([src + 1, src])], axis=1)


def test_fill_from_neighbours_by_hand():
    # path 0-1-2-3-4-5 plus an isolated pair 6-7; known: 0 (=2) and 3 (=8)
    edges = np.concatenate([_path_edges(6), np.array([[6, 7], [7, 6]])], axis=1)
    values = np.array([2.0, 0, 0, 8.0, 0, 0, 0, 0])
    known = np.array([1, 0, 0, 1, 0, 0, 0, 0], bool)
    filled, info = fill_from_neighbours(values, known, edges)
    # round 1: node 1 <- 2, node 2 <- 8, node 4 <- 8; round 2: node 5 <- 8
    # component {6, 7} has no known node: mean of the known values, 5
    np.testing.assert_allclose(filled, [2, 2, 8, 8, 8, 8, 5, 5])
    assert info == {"rounds": 2, "filled_by_neighbours": 4, "filled_by_mean": 2}
    # a node between two known neighbours takes their mean
    filled, _ = fill_from_neighbours(
        np.array([[1.0, 0], [0, 0], [3.0, 4]]), [1, 0, 1], _path_edges(3)
    )
    np.testing.assert_allclose(filled[1], [2.0, 2.0])


def test_sample_map_bilinear_by_hand_with_nan():
    spacing = 500.0  # 0.5 mm pixels, centres at 0.25, 0.75, ... mm
    image = np.arange(12, dtype=np.float64).reshape(3, 4)
    image[2, 3] = np.nan
    # point between pixels (0,1), (0,2), (1,1), (1,2): col 1.3, row 0.6
    x_mm, y_mm = (1.3 + 0.5) * 0.5, (0.6 + 0.5) * 0.5
    got = sample_map_bilinear(image, spacing, [[x_mm, y_mm]])
    want = 0.4 * 0.7 * 1 + 0.4 * 0.3 * 2 + 0.6 * 0.7 * 5 + 0.6 * 0.3 * 6
    assert got.shape == (1, 1) and got[0, 0] == pytest.approx(want)
    # next to the NaN pixel (2, 3): its weight is dropped and the others renormalised
    r, c = 1.5, 2.5
    got = sample_map_bilinear(image, spacing, [[(c + 0.5) * 0.5, (r + 0.5) * 0.5]])[0, 0]
    assert got == pytest.approx((6 + 7 + 10) / 3)
    # far outside: NaN
    assert np.isnan(sample_map_bilinear(image, spacing, [[-5.0, -5.0]])[0, 0])


def test_sample_labels_nearest():
    labels = np.array([[1, 2], [3, 4]], dtype=np.uint16)
    pts = [[0.1, 0.1], [0.3, 0.1], [0.1, 0.3], [0.39, 0.39], [0.5, 0.1], [-0.01, 0.0]]
    np.testing.assert_array_equal(sample_labels_nearest(labels, 200.0, pts), [1, 2, 3, 4, 0, 0])


def test_node_arrays_from_table():
    table = NodeSectionTable(
        node=np.array([4, 1]),
        section=np.array([62, 122]),
        x_mm=np.array([1.5, 2.5]),
        y_mm=np.array([3.0, 4.0]),
        valid=np.array([True, False]),
        moved_mm=np.zeros(2),
    )
    arrays = node_arrays_from_table(table, 6)
    np.testing.assert_array_equal(arrays["section"], [-1, 122, -1, -1, 62, -1])
    np.testing.assert_array_equal(arrays["valid"], [0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(arrays["point_mm"][4], [1.5, 3.0])
    assert np.isnan(arrays["point_mm"][0]).all() and arrays["point_mm"].dtype == np.float32


# ------------------------------------------------------------------ on the tiny phantom's graphs


FEATURE_ARRAYS = ("cy", "cy_measured", "co", "pm", "y", "train_mask", "test_mask")


@pytest.fixture(scope="module")
def computed(features_graphs):
    root, encoder, graphs = features_graphs
    name = encoder.parent.name
    results = compute_node_features("B01", name, root=root, device="cpu", overwrite=True)
    store = Derivatives(root)
    arrays = {}
    for hemi, path in graphs.items():
        with h5py.File(path, "r") as h5:
            arrays[hemi] = {name: h5["nodes"][name][...] for name in h5["nodes"]}
            arrays[hemi]["edge_index"] = h5["edge_index"][...]
        for file in (
            cy_path(store.root, "B01", name, hemi),
            priors_path(store.root, "B01", hemi),
            node_labels_path(store.root, "B01", hemi),
        ):
            arrays[hemi].update(read_node_arrays(file))
    return root, encoder, graphs, results, arrays


def test_feature_arrays_written_with_the_contract_names(computed):
    root, _, graphs, results, arrays = computed
    cohort = Cohort.read(root)
    for hemi, a in arrays.items():
        n = len(a["section"])
        with h5py.File(graphs[hemi], "r") as h5:  # the graph file is never edited
            assert set(h5["nodes"]) == {"section", "point_mm", "valid"}
        for name in FEATURE_ARRAYS:
            assert name in a, name
        assert a["cy"].dtype == np.float32 and a["cy"].shape == (n, 64)
        assert a["co"].shape == (n, 3) and a["pm"].shape == (n, len(cohort.areas))
        assert a["y"].dtype == np.int64
        assert np.isfinite(a["cy"]).all() and np.isfinite(a["co"]).all()
        assert np.isfinite(a["pm"]).all() and a["pm"].min() >= 0 and a["pm"].max() <= 1
        np.testing.assert_array_equal(a["cy_measured"], a["valid"])
        assert (~a["valid"]).sum() > 1000  # every second section only: many nodes are filled
        assert results["cy"][hemi]["filled_by_neighbours"] > 0
        assert a["y"].max() < len(cohort.areas)
        assert (root / "derivatives" / "cortexgraph" / "B01" / "records" / "node-priors.json").is_file()


def test_batched_node_patches_equal_read_patch(computed):
    root, encoder, _, _, arrays = computed
    classifier, preset, _ = load_encoder(encoder)
    a = arrays["lh"]
    stack = SectionStack(Cohort.read(root).brain("B01"))
    rng = np.random.default_rng(0)
    nodes = rng.choice(np.flatnonzero(a["valid"]), 6, replace=False)
    for node in nodes:
        section = int(a["section"][node])
        raster = stack.raster(section, "image")
        # the whole section at once (as the features stage cuts it) versus one read_patch
        on_section = np.flatnonzero(a["valid"] & (a["section"] == section))
        batch = read_patches(raster, a["point_mm"][on_section], preset.patch_px, preset.spacing_um)
        mine = batch[np.searchsorted(on_section, node)]
        single = raster.read_patch(
            tuple(a["point_mm"][node].astype(np.float64)),
            preset.patch_px,
            preset.spacing_um,
            fill=255,
        )
        np.testing.assert_array_equal(mine, single)
        # and CY is the encoder's output for that patch (float32 tolerance)
        cy = encode_patches(classifier.encoder, single[None].astype(np.float32) / 255.0)
        np.testing.assert_allclose(a["cy"][node], cy[0], rtol=1e-4, atol=1e-5)
    stack.close()


def _trilinear_by_hand(volume, affine, point_mm):
    ijk = np.linalg.solve(affine, np.append(point_mm, 1.0))[:3]
    base = np.floor(ijk).astype(int)
    frac = ijk - base
    value = 0.0
    for corner in np.ndindex(2, 2, 2):
        idx = base + np.array(corner)
        if np.any(idx < 0) or np.any(idx >= volume.shape[:3]):
            continue
        weight = np.prod(np.where(np.array(corner) == 1, frac, 1 - frac))
        value += weight * volume[tuple(idx)]
    return value


def test_co_and_pm_of_nodes_by_hand(computed):
    root, _, _, _, arrays = computed
    cohort = Cohort.read(root)
    brain = cohort.brain("B01")
    image = nib.load(str(root / cohort.atlas_maps))
    maps = np.asarray(image.dataobj, dtype=np.float64)
    a = arrays["rh"]
    has_point = np.flatnonzero(a["section"] >= 0)
    rng = np.random.default_rng(1)
    checked = 0
    for node in rng.choice(has_point, 40, replace=False):
        section = int(a["section"][node])
        with Raster(brain.path(brain.section(section).coords)) as raster:
            cmap = raster.read_level(0).astype(np.float64)
            s = raster.spacing_um
        x, y = (float(v) for v in a["point_mm"][node])
        col, row = x * 1000 / s - 0.5, y * 1000 / s - 0.5
        c0, r0 = int(np.floor(col)), int(np.floor(row))
        fc, fr = col - c0, row - r0
        corners = cmap[r0 : r0 + 2, c0 : c0 + 2]
        if corners.shape[:2] != (2, 2) or not np.isfinite(corners).all():
            continue  # the NaN rule is tested on a synthetic map
        want = (
            (1 - fr) * (1 - fc) * corners[0, 0]
            + (1 - fr) * fc * corners[0, 1]
            + fr * (1 - fc) * corners[1, 0]
            + fr * fc * corners[1, 1]
        )
        np.testing.assert_allclose(a["co"][node], want, atol=1e-5)
        # PM: the atlas at the reference-space point of the node's canonical coordinates
        lo, hi = np.array(cohort.canonical_box_min_mm), np.array(cohort.canonical_box_max_mm)
        mni = lo + (a["co"][node].astype(np.float64) + 1.0) / 2.0 * (hi - lo)
        for k in range(maps.shape[3]):
            expected = _trilinear_by_hand(maps[..., k], image.affine, mni)
            assert a["pm"][node, k] == pytest.approx(expected, abs=1e-5)
        checked += 1
    assert checked >= 20


def test_labels_and_split_masks(computed):
    root, _, _, _, arrays = computed
    cohort = Cohort.read(root)
    brain = cohort.brain("B01")
    stack = SectionStack(brain)
    annotated = brain.annotated_sections
    train_sections, test_sections = split_sections(annotated, every=5, offset=4)
    np.testing.assert_array_equal(test_sections, [annotated[4], annotated[9], annotated[14]])
    a = arrays["lh"]
    # Y: the annotation pixel under the point, for valid nodes on annotated sections
    for section in np.unique(a["section"][a["valid"]]):
        on = np.flatnonzero(a["valid"] & (a["section"] == section))
        if section not in annotated:
            assert (a["y"][on] == -1).all()
            continue
        labels = stack.annotation(int(section))
        s = brain.annotation_spacing_um
        ij = np.floor(a["point_mm"][on][:, ::-1].astype(np.float64) * 1000 / s).astype(int)
        area = labels[ij[:, 0], ij[:, 1]]
        np.testing.assert_array_equal(a["y"][on], cohort.areas.class_index(area))
    assert (a["y"][~a["valid"]] == -1).all()
    labelled = a["y"] >= 0
    assert labelled.sum() > 100
    np.testing.assert_array_equal(a["train_mask"], labelled & np.isin(a["section"], train_sections))
    np.testing.assert_array_equal(a["test_mask"], labelled & np.isin(a["section"], test_sections))
    assert a["test_mask"].sum() > 0 and not (a["train_mask"] & a["test_mask"]).any()
    stack.close()


def test_reused_unless_overwrite(computed):
    root, encoder, _, _, _ = computed
    again = compute_node_features("B01", encoder.parent.name, root=root, device="cpu")
    assert set(again) == {"priors", "labels", "cy"}
    assert all(info["reused"] for info in again.values())


def test_graph_without_node_arrays_reads_its_node_table(tmp_path):
    pos = np.zeros((4, 3))
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    path = save_graph_h5(tmp_path / "lh.h5", pos, faces)
    table = NodeSectionTable(
        node=np.array([2, 0]),
        section=np.array([62, 122]),
        x_mm=np.array([1.25, 2.5]),
        y_mm=np.array([3.0, 4.5]),
        valid=np.array([True, False]),
        moved_mm=np.zeros(2),
    )
    table.write(tmp_path / "lh_nodes.tsv")
    n, edges, nodes = read_graph_nodes(path)
    assert n == 4 and nodes.pop("_from_table") is True
    np.testing.assert_array_equal(edges, edges_from_faces(faces, 4))
    np.testing.assert_array_equal(nodes["section"], [122, -1, 62, -1])
    np.testing.assert_array_equal(nodes["valid"], [False, False, True, False])
    np.testing.assert_allclose(nodes["point_mm"][[0, 2]], [[2.5, 4.5], [1.25, 3.0]])
    (tmp_path / "lh_nodes.tsv").unlink()
    with pytest.raises(DataFormatError):
        read_graph_nodes(path)


def test_cy_with_prefetch_equals_sequential_reading(computed):
    from cortexgraph.features.nodes import node_cy

    root, encoder, _, _, arrays = computed
    classifier, preset, _ = load_encoder(encoder)
    a = arrays["lh"]
    stack = SectionStack(Cohort.read(root).brain("B01"))
    runs = {}
    for prefetch in (True, False):
        nodes = {"section": a["section"], "point_mm": a["point_mm"], "valid": a["valid"].astype(bool)}
        runs[prefetch] = node_cy(
            stack, nodes, classifier.encoder, preset, amp=False, prefetch=prefetch
        )
    stack.close()
    (cy_p, measured_p, info_p), (cy_s, measured_s, info_s) = runs[True], runs[False]
    assert info_p["sections"] > 1 and info_p["prefetch"] and not info_s["prefetch"]
    np.testing.assert_array_equal(measured_p, measured_s)
    np.testing.assert_array_equal(cy_p, cy_s)
    np.testing.assert_allclose(cy_p[measured_p], a["cy"][measured_p], rtol=1e-4, atol=1e-5)
