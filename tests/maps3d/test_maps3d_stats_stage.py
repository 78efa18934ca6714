"""The ``stats`` stage called from Python (cortexgraph.maps3d.stats_stage.stats_brain): what
``cortexgraph stats`` prints, on the tiny phantom, against its voxels and its ground truth."""

from __future__ import annotations

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest

from cortexgraph.errors import ParameterError


@pytest.mark.slow
def test_stats_brain_measures_the_phantom(tiny_cohort, tmp_path):
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.maps3d.stats_stage import stats_brain

    root = tmp_path / "tiny"
    shutil.copytree(tiny_cohort, root, ignore=shutil.ignore_patterns("B03", "B07"))
    brain = Cohort.read(root).brain("B01")
    with pytest.raises(ParameterError, match="no area maps of source 'truth'"):
        stats_brain(brain, "truth")  # no --area and no map yet

    seen = []
    result = stats_brain(brain, "truth", ["hOc1"], reference="none", on_area=seen.append)
    assert result["missing"] == [] and [e["area"] for e in result["areas"]] == ["hOc1"]
    assert seen == result["areas"]
    entry = result["areas"][0]
    assert not entry["reused"] and [r["hemisphere"] for r in entry["rows"]] == ["lh", "rh", "both"]
    out = root / "derivatives/cortexgraph/B01/maps3d/truth"
    assert result["table"] == out / "stats.tsv" and result["table"].is_file()
    assert sorted(p.name for p in entry["files"]) == ["hOc1.png", "hOc1_stats.tsv"]

    both = entry["rows"][-1]
    image = nib.load(out / "hOc1.nii.gz")
    voxel_mm3 = abs(np.linalg.det(image.affine[:3, :3]))
    assert both["volume_mm3"] == pytest.approx(
        np.count_nonzero(np.asarray(image.dataobj)) * voxel_mm3, rel=1e-5
    )
    lh, rh = entry["rows"][0], entry["rows"][1]
    assert lh["volume_mm3"] + rh["volume_mm3"] == pytest.approx(both["volume_mm3"], rel=1e-9)
    f = 1.933  # B01's volume shrinkage factor (brain.toml)
    assert both["volume_corrected_mm3"] == pytest.approx(both["volume_mm3"] * f, rel=1e-5)
    assert both["surface_corrected_mm2"] == pytest.approx(
        both["surface_mm2"] * f ** (2 / 3), rel=1e-5
    )
    truth = [
        r for r in csv.DictReader(
            open(root / "ground_truth/B01/area_measures.tsv"), delimiter="\t"
        ) if r["name"] == "hOc1"
    ]  # fmt: skip
    # tolerances of the CLI test (tests/cli/test_cli_maps3d.py): tiny preset, 1.2 mm between
    # sections, one missing section; B01 hOc1 measured -3.4 % volume, +5.2 % pial area
    assert abs(both["volume_mm3"] / sum(float(r["volume_mm3"]) for r in truth) - 1) < 0.10
    assert abs(both["surface_mm2"] / sum(float(r["pial_area_mm2"]) for r in truth) - 1) < 0.12

    # no --area: every map of the source, now up to date (the same numbers, reused)
    again = stats_brain(brain, "truth", reference="none")
    assert [e["area"] for e in again["areas"]] == ["hOc1"] and again["areas"][0]["reused"]
    assert again["areas"][0]["rows"][-1]["volume_mm3"] == both["volume_mm3"]

    # an area the source labels on no section is skipped and named, the table left alone
    partial = stats_brain(brain, "annotation", ["Occ11"], reference="none")
    assert partial["missing"] == ["Occ11"] and partial["table"] is None
    assert "Occ11" in partial["areas"][0]["skipped"]
