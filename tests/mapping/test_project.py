"""The stage ``project@<source>`` (cortexgraph.mapping.project, ``cortexgraph project``) on a
synthetic cohort of annulus sections (tests/mapping/conftest.py), and the phantom's true labels
projected back onto its sections.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.manifest import Area, AreaTable, Brain, Cohort, SectionRecord, find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.layout import node_labels_path, write_node_arrays
from cortexgraph.errors import CortexgraphError, UpstreamError
from cortexgraph.mapping.nodes import graph_file_arrays, ground_truth_graphs
from cortexgraph.mapping.project import project_brain, project_graphs, truth_labels_folder
from cortexgraph.meshes.graph import save_graph_h5
from tests.mapping.conftest import SPACING_UM, annulus, circle_points, sector_of

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
        [graph_file_arrays(graphs[0])],
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


def test_an_interrupted_first_projection_leaves_no_file(tmp_path, monkeypatch):
    """Before, a first `project` stopped while drawing its overlays left pixel_f1.tsv, label images
    and overlays behind, unrecorded (the label images only since they were declared)."""
    import cortexgraph.mapping.project as project_module

    brain, _ = _write_annulus_cohort(tmp_path / "cohort")
    out = brain.derivatives / "labels" / "nodes-y"
    original, drawn = project_module._overlay, []

    def stop_at_the_second_overlay(*args, **kwargs):
        if drawn:
            raise KeyboardInterrupt
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(project_module, "_overlay", stop_at_the_second_overlay)
    with pytest.raises(KeyboardInterrupt):
        project_brain(brain, labels="y", max_distance_mm=10.0, overlays=2)
    assert drawn and drawn[0].parent.parent == out  # one overlay was drawn, the tables before it
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []
    assert Derivatives(brain.cohort.root).record(StageId("project", "B01", ("nodes-y",))) is None
