"""Node labels -> section label images (cortexgraph.mapping.project, ``cortexgraph project``).

Synthetic section of known geometry: an annulus of gray matter (centre C, radii 3 and 5 mm) around
white matter, with labelled points on the circle of radius 4 mm about C. For points on a circle
about C the nearest point of any pixel is the one closest in angle (the Voronoi cells are sectors
about C), so every pixel's label is known in closed form.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.data.annotations import (
    label_image_to_contours,
    rasterize_contours,
    read_contours,
)
from cortexgraph.data.manifest import Area, AreaTable, Brain, Cohort, SectionRecord, find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.layout import node_labels_path, write_node_arrays
from cortexgraph.errors import CortexgraphError, DataFormatError, UpstreamError
from cortexgraph.mapping.project import (
    PixelCounts,
    _graph_file_points,
    classes_to_area_ids,
    ground_truth_graphs,
    label_contours,
    pixel_counts,
    pixel_f1,
    project_brain,
    project_graphs,
    project_points_to_image,
    section_points,
    smooth_node_labels,
    truth_labels_folder,
)
from cortexgraph.meshes.graph import save_graph_h5
from cortexgraph.training.metrics import per_class_f1

SPACING_UM = 100.0
CENTRE_MM = (6.0, 6.0)
SIZE_PX = 120  # 12 x 12 mm
N_POINTS = 12
OFFSET_RAD = 0.1  # keeps every pixel centre off the sector borders (no ties)


def annulus(spacing_um: float = SPACING_UM, size_px: int = SIZE_PX):
    """Tissue classes, pixel-centre radius and angle (about CENTRE_MM) of the annulus section."""
    centres = (np.arange(size_px) + 0.5) * spacing_um / 1000.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    radius = np.hypot(x - CENTRE_MM[0], y - CENTRE_MM[1])
    angle = np.arctan2(y - CENTRE_MM[1], x - CENTRE_MM[0])
    tissue = np.zeros((size_px, size_px), np.uint8)
    tissue[radius <= 5.0] = 2
    tissue[radius < 3.0] = 1
    return tissue, radius, angle


def circle_points(n: int = N_POINTS, radius_mm: float = 4.0) -> np.ndarray:
    theta = OFFSET_RAD + 2 * np.pi * np.arange(n) / n
    return np.column_stack(
        [CENTRE_MM[0] + radius_mm * np.cos(theta), CENTRE_MM[1] + radius_mm * np.sin(theta)]
    )


def sector_of(angle: np.ndarray, n: int = N_POINTS) -> np.ndarray:
    """Index of the point closest in angle."""
    step = 2 * np.pi / n
    return np.mod(np.round((angle - OFFSET_RAD) / step).astype(int), n)


# -- one section -----------------------------------------------------------------------------------
def test_every_gray_pixel_takes_the_label_of_the_nearest_point():
    tissue, _, angle = annulus()
    labels = np.arange(1, N_POINTS + 1) * 3  # area ids 3, 6, ..., 36
    out = project_points_to_image(tissue, circle_points(), labels, SPACING_UM, max_distance_mm=10.0)
    gray = tissue == 2
    expected = np.zeros_like(out)
    expected[gray] = labels[sector_of(angle[gray])]
    assert out.dtype == np.uint16
    assert gray.sum() > 4000
    np.testing.assert_array_equal(out, expected)  # every pixel, white matter and glass stay 0
    # each sector got pixels
    assert set(np.unique(out[gray]).tolist()) == set(labels.tolist())


def test_distance_bound_is_inclusive_and_leaves_far_pixels_unlabelled():
    spacing = 125.0  # pixel centres and distances below are exact binary fractions
    tissue, _, _ = annulus(spacing, 96)
    rows, cols = np.nonzero(tissue == 2)
    r0, c0 = rows[0], cols[0]
    point = np.array([[(c0 + 0.5) * 0.125, (r0 + 0.5) * 0.125]])
    out = project_points_to_image(tissue, point, [7], spacing, max_distance_mm=1.0)
    centres_x = (np.arange(96) + 0.5) * 0.125
    y, x = np.meshgrid(centres_x, centres_x, indexing="ij")
    distance = np.hypot(x - point[0, 0], y - point[0, 1])
    expected = np.where((tissue == 2) & (distance <= 1.0), 7, 0)
    np.testing.assert_array_equal(out, expected)
    # a pixel exactly 8 pixels (1.0 mm) away on the same row is gray and labelled
    exact = (distance == 1.0) & (tissue == 2)
    assert exact.any()
    assert (out[exact] == 7).all()
    assert (out[(tissue == 2) & (distance > 1.0)] == 0).all()


def test_unlabelled_and_nan_points():
    tissue, radius, angle = annulus()
    points = circle_points()
    labels = np.arange(1, N_POINTS + 1)
    labels[0] = 0  # a point without a label: its sector stays unlabelled
    points[1] = np.nan  # a missing point: its sector goes to the neighbours
    out = project_points_to_image(tissue, points, labels, SPACING_UM, max_distance_mm=10.0)
    gray = tissue == 2
    sector = sector_of(angle)
    assert (out[gray & (sector == 0)] == 0).all()
    assert set(np.unique(out[gray & (sector == 1)]).tolist()) <= {0, 3}
    assert (out[gray & (sector == 1)] == 3).any()  # the far half of sector 1 goes to point 2
    assert (out[gray & (sector >= 2)] == labels[sector[gray & (sector >= 2)]]).all()
    assert (out[~gray] == 0).all()


def test_rejects_negative_labels():
    tissue, _, _ = annulus()
    with pytest.raises(ValueError):
        project_points_to_image(tissue, circle_points(2), [-1, 2], SPACING_UM)


def test_contours_traced_per_area_box_equal_the_whole_image_tracing():
    tissue, _, _ = annulus()
    labels = project_points_to_image(tissue, circle_points(), np.arange(1, 13), SPACING_UM)
    labels[60:64, 10:20] = 5  # a second region of area 5
    whole = label_image_to_contours(labels, SPACING_UM, {5: "five"})["features"]
    boxed = label_contours(labels, SPACING_UM, {5: "five"})["features"]

    def key(feature):
        return feature["properties"]["area_id"], feature["geometry"]["coordinates"][0][0]

    assert len(whole) == len(boxed) == 13
    for a, b in zip(sorted(whole, key=key), sorted(boxed, key=key), strict=True):
        assert a["properties"] == b["properties"]
        for ring_a, ring_b in zip(
            a["geometry"]["coordinates"], b["geometry"]["coordinates"], strict=True
        ):
            np.testing.assert_allclose(ring_a, ring_b, atol=1e-6)


# -- node labels -----------------------------------------------------------------------------------
def _chain(n: int) -> np.ndarray:
    a = np.arange(n - 1)
    return np.concatenate([np.stack([a, a + 1]), np.stack([a + 1, a])], axis=1)


def test_smoothing_removes_a_lone_label_and_keeps_unknowns():
    labels = np.array([0, 0, 0, 1, 0, 0, -1, 2, 2])
    out = smooth_node_labels(labels, _chain(len(labels)), hops=1)
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, -1, 2, 2])
    # node 5 has neighbours 4 (label 0) and 6 (unknown: no vote) -> stays 0; node 7: own 2 + 8 -> 2
    np.testing.assert_array_equal(smooth_node_labels(labels, _chain(9), hops=0), labels)


def test_smoothing_ties_keep_the_own_label():
    out = smooth_node_labels(np.array([4, 1]), _chain(2), hops=1)
    np.testing.assert_array_equal(out, [4, 1])


def test_smoothing_two_hops_weights_walks():
    # chain 0-1-2-3-4; (A + I)^2 rows: 0 -> [2, 2, 1, 0, 0], 2 -> [1, 2, 3, 2, 1]
    labels = np.array([1, 1, 2, 2, 2])
    out = smooth_node_labels(labels, _chain(5), hops=2)
    # node 0: label 1 gets 2 + 2, label 2 gets 1 -> 1
    # node 2: label 1 gets 1 + 2, label 2 gets 3 + 2 + 1 -> 2
    np.testing.assert_array_equal(out, [1, 1, 2, 2, 2])
    out = smooth_node_labels(np.array([1, 2, 2, 2, 2]), _chain(5), hops=2)
    # row 0: label 1 (node 0): 2, label 2 (nodes 1, 2): 2 + 1 = 3 -> 2
    np.testing.assert_array_equal(out, [2, 2, 2, 2, 2])


def test_classes_to_area_ids():
    areas = AreaTable([Area(5, "a", "#ff0000"), Area(2, "b", "#00ff00"), Area(9, "c", "#0000ff")])
    np.testing.assert_array_equal(classes_to_area_ids([0, 1, 2, -1], areas), [2, 5, 9, 0])
    with pytest.raises(DataFormatError):
        classes_to_area_ids([3], areas)


def test_section_points_groups_valid_points():
    section = np.array([10, 10, -1, 12, 10, 12])
    points = np.array([[1, 1], [2, 2], [np.nan, np.nan], [3, 3], [np.nan, 4], [5, 5]], float)
    valid = np.array([True, False, False, True, True, True])
    groups = section_points(section, points, valid, np.array([1, 2, 3, 4, 5, 6]))
    assert sorted(groups) == [10, 12]
    np.testing.assert_array_equal(groups[10].area_ids, [1])
    np.testing.assert_array_equal(groups[12].area_ids, [4, 6])
    np.testing.assert_array_equal(groups[12].points_mm, [[3, 3], [5, 5]])


# -- scores ----------------------------------------------------------------------------------------
TRUTH = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [0, 0, 3, 3]])
PRED = np.array([[1, 2, 2, 2], [1, 0, 2, 2], [1, 1, 3, 2], [0, 0, 3, 3]])


def test_pixel_f1_by_hand():
    # scored: the 12 pixels with truth > 0
    # area 1: n_true 4, predicted 1 on scored pixels: 2 (both hits) -> F1 = 2*2 / (4 + 2) = 2/3
    # area 2: n_true 4, predicted 2: 1 (row 0 col 1) + 4 + 1 (row 2 col 3) = 6, hits 4 -> 8/10
    # area 3: n_true 4, predicted 3: 3, hits 3 -> 6/7
    macro, per_area = pixel_f1(PRED, TRUTH)
    assert per_area == pytest.approx({1: 2 / 3, 2: 0.8, 3: 6 / 7}, abs=1e-12)
    assert macro == pytest.approx((2 / 3 + 0.8 + 6 / 7) / 3, abs=1e-12)
    counts = pixel_counts(PRED, TRUTH)
    summary = counts.summary()
    assert summary["pixels_scored"] == 12
    assert summary["pixels_unlabelled"] == 1  # row 1 col 1
    assert summary["pixels_outside_truth"] == 2  # the two 1s at row 2 cols 0, 1
    assert summary["accuracy"] == pytest.approx(9 / 12)
    assert summary["coverage"] == pytest.approx(11 / 12)


def test_pixel_f1_agrees_with_training_metrics_and_sums_over_sections():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, (2, 40, 50))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 6, truth.shape))
    total = pixel_counts(pred[0], truth[0]) + pixel_counts(pred[1], truth[1])
    scored = truth > 0
    ids, f1 = per_class_f1(truth[scored], pred[scored], labels=np.arange(1, 6))
    ours_ids, ours = total.per_area_f1()
    np.testing.assert_array_equal(ours_ids, ids)
    np.testing.assert_allclose(ours, f1, atol=1e-12)
    assert total.macro_f1() == pytest.approx(pixel_f1(pred, truth)[0], abs=1e-12)
    assert np.isnan(PixelCounts.empty().macro_f1())


# -- a whole (synthetic) brain ---------------------------------------------------------------------
SECTIONS = (1, 2)


def _write_annulus_cohort(root):
    """Cohort with one brain of two annulus sections, a graph with points on the circle, and the
    phantom-style ground truth (the analytic sector labels)."""
    cohort = Cohort(root=root, name="annulus", section_thickness_um=20.0, brain_ids=["B01"])
    cohort.write_manifest()
    areas = AreaTable([Area(10 * (k + 1), f"A{k}", f"#{40 + 15 * k:02x}80c0") for k in range(12)])
    areas.write(root / "areas.tsv")
    brain = Brain(
        id="B01",
        root=root / "B01",
        cohort=cohort,
        shrinkage_factor=1.0,
        digitization_step=1,
        image_spacing_um=SPACING_UM,
        mask_spacing_um=SPACING_UM,
        annotation_spacing_um=SPACING_UM,
        coords_spacing_um=400.0,
    )
    brain.root.mkdir(parents=True)
    brain.write_manifest()
    tissue, _, angle = annulus()
    image = np.choose(tissue, [np.uint8(240), np.uint8(170), np.uint8(80)]).astype(np.uint8)
    records = []
    truth = np.zeros(tissue.shape, np.uint16)
    truth[tissue == 2] = areas.ids[sector_of(angle[tissue == 2])]
    for s in SECTIONS:
        write_raster(brain.root / f"images/s{s:04d}.h5", image, SPACING_UM)
        write_raster(brain.root / f"masks/s{s:04d}.h5", tissue, SPACING_UM, kind="labels")
        write_raster(
            root / "ground_truth/B01/labels" / f"s{s:04d}.h5", truth, SPACING_UM, kind="labels"
        )
        records.append(
            SectionRecord(section=s, image=f"images/s{s:04d}.h5", mask=f"masks/s{s:04d}.h5")
        )
    brain.write_sections(records)
    brain.write_transforms({(1, 2): np.eye(3)})
    # graph: 12 nodes on the circle of section 1, 12 on section 2, 4 nodes without a point
    points = np.concatenate([circle_points(), circle_points(), np.full((4, 2), np.nan)])
    section = np.array([1] * 12 + [2] * 12 + [-1] * 4)
    classes = np.concatenate([np.arange(12), np.arange(12), [-1] * 4])
    pos = np.column_stack([np.arange(28.0), np.zeros(28), np.zeros(28)])
    faces = np.array([[k, k + 1, k + 2] for k in range(26)])
    graph = save_graph_h5(
        root / "derivatives/cortexgraph/B01/graph/lh.h5",
        pos,
        faces,
        section=section,
        point_mm=points.astype(np.float32),
        valid=section >= 0,
    )
    store = Derivatives(root)
    key = record_external(store, StageId("build-graph", "B01"), [graph], {"source": "test"}).key
    labels = write_node_arrays(
        node_labels_path(store.root, "B01", "lh"),
        key,
        28,
        y=classes,
        train_mask=classes >= 0,
        test_mask=np.zeros(28, bool),
    )
    record_external(
        store, StageId("node-labels", "B01"), [labels], {"source": "test"},
        upstream=[StageId("build-graph", "B01")],
    )  # fmt: skip
    return find_brain("B01", root), truth


def test_project_brain_writes_every_section_and_scores_it(tmp_path):
    brain, truth = _write_annulus_cohort(tmp_path / "cohort")
    report = project_brain(brain, labels="y", max_distance_mm=10.0, overlays=1)
    out = brain.derivatives / "labels" / "nodes-y"
    assert report["out_dir"] == str(out)
    for s in SECTIONS:
        raster = Raster(out / f"s{s:04d}.h5")
        assert raster.kind == "labels" and raster.spacing_um == SPACING_UM
        np.testing.assert_array_equal(raster.read_level(0), truth)  # exact, every pixel
        features = read_contours(out / f"s{s:04d}.geojson")
        back = rasterize_contours(features, truth.shape, SPACING_UM)
        assert (back == truth).mean() > 0.97  # polygons trace pixel borders
    assert report["pixel_f1"]["macro_f1"] == pytest.approx(1.0)
    assert report["pixel_f1"]["coverage"] == pytest.approx(1.0)
    assert (out / "overlays").is_dir() and len(list((out / "overlays").glob("*.png"))) == 1
    saved = json.loads((out / "project.json").read_text())
    assert saved["pixel_f1"]["areas"] == 12
    record = Derivatives(brain.cohort.root).record(StageId("project", "B01", ("nodes-y",)))
    assert record.measured["pixel_f1"]["macro_f1"] == pytest.approx(1.0)
    assert "B01/node-labels" in record.upstream
    rows = (out / "pixel_f1.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["area_id", "name", "n_true", "n_pred", "tp", "f1"]
    assert len(rows) == 13


def test_project_brain_bound_reuse_and_errors(tmp_path):
    brain, truth = _write_annulus_cohort(tmp_path / "cohort")
    out = brain.derivatives / "labels" / "nodes-y"
    opts = dict(labels="y", overlays=0, contours=False)
    report = project_brain(brain, max_distance_mm=0.5, **opts)
    labels = Raster(out / "s0001.h5").read_level(0)
    assert (labels > 0).sum() < (truth > 0).sum() / 2  # most of the annulus is > 0.5 mm away
    assert report["pixel_f1"]["coverage"] < 0.5
    # the same parameters: reused; another distance bound: recomputed, and the reason is named
    assert project_brain(brain, max_distance_mm=0.5, **opts)["reused"]
    again = project_brain(brain, max_distance_mm=10.0, **opts)
    assert not again["reused"] and "max_distance_mm changed (0.5 -> 10.0)" in again["why"]
    assert again["pixel_f1"]["coverage"] == pytest.approx(1.0)
    with pytest.raises(CortexgraphError, match="needs the model run"):
        project_brain(brain, labels="pred")
    with pytest.raises(UpstreamError, match="B01/predict@nope has not been computed"):
        project_brain(brain, "nope")


def test_cli_project(tmp_path):
    from cortexgraph.cli.main import app

    brain, _ = _write_annulus_cohort(tmp_path / "cohort")
    result = CliRunner().invoke(
        app,
        ["project", "B01", "--root", str(tmp_path / "cohort"), "--labels", "y"]
        + ["--max-distance-mm", "10", "--overlays", "0", "--smooth", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "pixel macro F1 1.000" in result.output
    assert (brain.derivatives / "labels/nodes-y/s0002.h5").is_file()
    result = CliRunner().invoke(app, ["project", "B01", "--root", str(tmp_path / "cohort")])
    assert result.exit_code == 2
    assert "--run" in result.output


@pytest.mark.slow
def test_true_labels_of_the_phantom_project_back_onto_its_sections(tiny_cohort, tmp_path):
    brain = find_brain("B07", tiny_cohort)
    graphs = ground_truth_graphs(brain, tmp_path / "graph", hemis=("lh",))
    assert [p.name for p in graphs] == ["lh.h5"]
    report, _ = project_graphs(
        brain,
        [_graph_file_points(graphs[0])],
        tmp_path / "labels",
        source="truth-y",
        spacing_um=brain.annotation_spacing_um,
        overlays=0,
        contours=False,
        truth_dir=truth_labels_folder(brain),
    )
    scores = report["pixel_f1"]
    # only the left hemisphere's points: the right cortex stays unlabelled (coverage about half);
    # on the labelled pixels the true vertex labels agree with the true section labels
    assert scores["pixels_scored"] > 10_000
    assert 0.3 < scores["coverage"] < 0.7
    labelled = scores["accuracy"] / scores["coverage"]
    assert labelled > 0.8
    assert len(report["sections"]) == len(brain.available_sections)
