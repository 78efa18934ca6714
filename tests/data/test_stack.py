from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.manifest import Cohort, find_brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.data.transforms import apply_transform
from cortexgraph.errors import DataFormatError


def test_section_world_round_trip_and_planes(valid_cohort):
    brain = Cohort.read(valid_cohort).brain("B01")
    stack = SectionStack(brain)
    assert stack.sections == [100, 115, 130, 160, 175]
    assert stack.base_section == 130
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 10, (50, 2))
    for s in stack.sections:
        world = stack.section_to_world(s, points)
        assert np.allclose(world[:, 1], (s - 130) * 0.02)
        back = stack.world_to_section(s, world)
        assert np.abs(back - points).max() < 1e-9
    # the base section (mirrored in the fixture) maps its raw image centre line onto itself
    width, height = stack.section_extent_mm(130)
    centre = stack.section_to_world(130, [[width / 2, height / 2]])
    assert np.allclose(centre[0, [0, 2]], 0.0)
    corner = stack.section_to_world(130, [[0.0, 0.0]])
    assert np.allclose(corner[0, [0, 2]], [width / 2, height / 2])  # mirrored: x flips


def test_mirrored_section_tissue_lands_on_unmirrored_tissue(valid_cohort):
    brain = Cohort.read(valid_cohort).brain("B01")
    stack = SectionStack(brain)
    mask_base = stack.tissue_mask(130)
    mask_raw_other = stack.tissue_mask(115)
    # a pixel of the (un-mirrored) ring on section 115, mapped through to_base, lands on the same class
    # in the base section up to the small random transforms of the fixture
    assert np.array_equal(mask_base[:, ::-1], mask_raw_other)
    t = stack.to_base[130]
    assert np.linalg.det(t[:2, :2]) < 0
    assert np.allclose(apply_transform(t, [[1.0, 2.0]]), [[11.0, 2.0]])


def test_patch_annotation_and_coords_access(valid_cohort):
    brain = Cohort.read(valid_cohort).brain("B01")
    with SectionStack(brain) as stack:
        patch = stack.read_patch(115, (6.0, 5.0), 16, 50.0)
        assert patch.shape == (16, 16) and patch.dtype == np.uint8
        from_labels = stack.annotation(115)
        assert set(np.unique(from_labels)) == {0, 1, 2, 3}
        coarse = stack.annotation(115, spacing_um=200.0)
        assert coarse.shape == (50, 60)
        coords = stack.coords(160)
        assert coords.shape[2] == 3 and np.nanmax(coords) == pytest.approx(0.25)
        with pytest.raises(DataFormatError, match="not annotated"):
            stack.annotation(100)
        with pytest.raises(DataFormatError, match="section 145"):
            stack.raster(145, "image")


def test_annotation_from_contours_only(valid_cohort):
    table = valid_cohort / "B01/sections.tsv"
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    col = header.index("annotation")
    rows = [line.split("\t") for line in lines[1:]]
    for row in rows:
        row[col] = ""
    table.write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    brain = Cohort.read(valid_cohort).brain("B01")
    stack = SectionStack(brain)
    labels = stack.annotation(115)
    from brain_factory import ring_masks

    _, truth = ring_masks(100.0)
    assert labels.shape == truth.shape
    assert (labels != truth).mean() < 0.02  # only boundary pixels differ


def test_find_brain_by_root_env_and_path(valid_cohort, monkeypatch):
    assert find_brain("B01", valid_cohort).id == "B01"
    monkeypatch.setenv("CORTEXGRAPH_ROOT", str(valid_cohort))
    assert find_brain("B01").cohort.name == "test"
    monkeypatch.delenv("CORTEXGRAPH_ROOT")
    assert find_brain(valid_cohort / "B01").id == "B01"
    with pytest.raises(DataFormatError, match="CORTEXGRAPH_ROOT"):
        find_brain("B99", valid_cohort)
