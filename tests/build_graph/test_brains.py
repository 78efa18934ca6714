"""build-graph on brains as labs have them: one hemisphere, missing runs, thresholds on the CLI,
the mesh measures of the QC report."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.build_graph import BuildGraphParameters, build_graph
from cortexgraph.cli.main import app
from cortexgraph.data.manifest import Cohort
from cortexgraph.derivatives import Derivatives
from cortexgraph.derivatives.graphs import graph_hemispheres

FAST = BuildGraphParameters(refine=False)


def _copy(tiny_cohort, tmp_path, name):
    """A copy of the tiny phantom with B01 only (cohort.toml lists it alone)."""
    import tomllib

    import tomli_w

    root = tmp_path / name
    shutil.copytree(tiny_cohort, root, ignore=shutil.ignore_patterns("B03", "B07"))
    table = tomllib.loads((root / "cohort.toml").read_text())
    table["brains"] = ["B01"]
    (root / "cohort.toml").write_text(tomli_w.dumps(table))
    return root


@pytest.mark.slow
def test_a_brain_of_one_hemisphere_is_found_or_declared(tiny_cohort, tmp_path, caplog):
    """The right hemisphere is removed from every tissue mask of B01: build-graph finds one
    hemisphere (before: "hemisphere rh has no midsurface", exit 2) and writes its files only; a
    brain.toml declaring it rh builds it as rh."""
    import tomllib

    import tomli_w

    from cortexgraph.data.raster import Raster, write_raster
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.meshes.io import read_gifti_surface

    root = _copy(tiny_cohort, tmp_path, "one")
    brain = Cohort.read(root).brain("B01")
    lh, _ = read_gifti_surface(root / "ground_truth/B01/midsurface_lh.gii")
    rh, _ = read_gifti_surface(root / "ground_truth/B01/midsurface_rh.gii")
    midline = 0.5 * (lh[:, 0].max() + rh[:, 0].min())
    with SectionStack(brain) as stack:
        for s in stack.sections:
            path = brain.path(brain.section(s).mask)
            with Raster(path) as raster:
                mask, spacing = raster.read_level(0), raster.spacing_um
            rows, cols = np.indices(mask.shape)
            centres = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5]) * spacing / 1000
            x = stack.section_to_world(s, centres)[:, 0].reshape(mask.shape)
            write_raster(path, np.where(x > midline, 0, mask).astype(np.uint8), spacing,
                         kind="labels")  # fmt: skip
    brain = Cohort.read(root).brain("B01")
    with caplog.at_level(logging.WARNING, logger="cortexgraph.build_graph"):
        report = build_graph(brain, FAST, qc_picture=False, check=False)
    assert report["midsurfaces"]["hemispheres"] == ["lh"]
    assert report["midsurfaces"]["hemispheres_from"] == "found"
    assert report["midsurfaces"]["fissure"]["cortex_left_fraction"] > 0.95
    assert "found one hemisphere" in caplog.text and "brain.toml" in caplog.text
    store = Derivatives.of(brain)
    assert graph_hemispheres(store, "B01") == ["lh"]
    derivatives = brain.derivatives
    assert (derivatives / "graph/lh.h5").is_file() and not (derivatives / "graph/rh.h5").exists()

    manifest = brain.manifest_path
    table = tomllib.loads(manifest.read_text())
    table["hemispheres"] = ["rh"]  # the lab says which hemisphere it is
    manifest.write_text(tomli_w.dumps(table))
    brain = Cohort.read(root).brain("B01")
    report = build_graph(brain, FAST, qc_picture=False, check=False)
    assert "hemispheres_declared" in report["why"] or report["reused"] is False
    assert report["midsurfaces"]["hemispheres"] == ["rh"]
    assert report["midsurfaces"]["hemispheres_from"] == "brain.toml"
    assert graph_hemispheres(store, "B01") == ["rh"]
    assert not (derivatives / "graph/lh.h5").exists()  # the other hemisphere's files are gone


@pytest.mark.slow
def test_missing_runs_warn_where_and_thresholds_are_options(tiny_cohort, tmp_path):
    """Four consecutive sections flagged missing (tiny: one plane each, more than the three planes
    build-graph bridges): the report and the command say where the surface is cut; the CLI options
    --max-gap-planes, --max-cortex-thickness-mm and --exclusion-grow-mm reach the parameters (and
    bridging the gap removes the warning). The QC report measures each midsurface."""
    root = _copy(tiny_cohort, tmp_path, "gaps")
    brain = Cohort.read(root).brain("B01")
    present = [r for r in brain.sections if not r.missing]
    run = [r.section for r in present[3:7]]  # away from the base section (602)
    records = [
        type(r)(section=r.section, missing=True) if r.section in run else r for r in brain.sections
    ]
    brain.write_sections(records)
    # the transform across the gap: the composed transforms of the run
    transforms = dict(brain.transforms)
    before, after = present[2].section, present[7].section
    chain = [before, *run, after]
    matrix = np.eye(3)
    for moving, fixed in zip(chain[:-1], chain[1:], strict=True):
        matrix = transforms.pop((moving, fixed)) @ matrix
    transforms[(before, after)] = matrix
    brain.write_transforms(transforms)
    runner = CliRunner()
    args = ["build-graph", "--root", str(root), "--no-refine", "--no-qc-picture"]
    result = runner.invoke(app, [*args, "B01"])
    assert result.exit_code == 0, result.output
    assert "open gap" in result.output and str(run[1]) in result.output
    report = json.loads((root / "derivatives/cortexgraph/B01/qc/build-graph.json").read_text())
    (gap,) = report["reconstruct"]["open_gaps"]
    assert gap["sections"] == run and gap["planes"][1] - gap["planes"][0] + 1 >= 4
    for hemi in ("lh", "rh"):
        quality = report["midsurfaces"][hemi]["quality"]
        for key in ("components", "genus", "boundary_edges", "boundary_loops",
                    "max_curvature_per_mm", "spikes"):  # fmt: skip
            assert key in quality
        assert quality["spikes"] == 0
    bridged = runner.invoke(
        app,
        [*args, "--max-gap-planes", "6", "--max-cortex-thickness-mm", "6.5",
         "--exclusion-grow-mm", "1.5", "B01"],
    )  # fmt: skip
    assert bridged.exit_code == 0, bridged.output
    assert "open gap" not in bridged.output
    report = json.loads((root / "derivatives/cortexgraph/B01/qc/build-graph.json").read_text())
    assert "open_gaps" not in report["reconstruct"]
    parameters = report["parameters"]
    assert (parameters["max_gap_planes"], parameters["max_cortex_thickness_mm"],
            parameters["exclusion_grow_mm"]) == (6, 6.5, 1.5)  # fmt: skip
    bad = runner.invoke(app, [*args, "--hemispheres", "left", "B01"])
    assert bad.exit_code == 2 and "hemispheres" in bad.output
