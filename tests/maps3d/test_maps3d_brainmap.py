"""Area maps of a phantom brain: label sources, section geometry, out of core = in memory."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError
from cortexgraph.maps3d.brainmap import (
    label_source,
    lattice_origin_mm,
    map_area,
    remove_workdir,
    section_pixel_to_world,
)
from cortexgraph.maps3d.morphometry import triangle_areas_mm2


@pytest.fixture(scope="module")
def brain(tiny_cohort):
    return find_brain("B01", tiny_cohort)


def test_section_matrix_matches_the_stack(brain):
    rng = np.random.default_rng(0)
    with SectionStack(brain) as stack:
        for s in stack.sections[::5]:
            m = section_pixel_to_world(stack, s, 320.0)
            pix = rng.uniform(0, 300, (20, 2))  # (column, row)
            got = np.column_stack([pix, np.ones(20)]) @ m.T
            want = stack.section_to_world(s, (pix + 0.5) * 0.32)
            np.testing.assert_allclose(got[:, :2], want[:, [0, 2]], atol=1e-9)
        origin = lattice_origin_mm(stack, 1.2)
        from cortexgraph.reconstruct.volume import stack_tissue_volume

        _, affine, _ = stack_tissue_volume(stack, 1.2)
        np.testing.assert_allclose(origin, affine[:3, 3], atol=1e-9)


def test_sources_complete_and_partial(brain):
    with SectionStack(brain) as stack:
        truth = label_source(brain, stack, "truth")
        notes = label_source(brain, stack, "annotation", exclude_sections=[302])
        assert truth.complete and not notes.complete
        assert sorted(truth.readers) == stack.sections  # every available section is labelled
        assert 302 not in notes.readers and notes.skipped["user"] == [302]
        with pytest.raises(CortexgraphError, match="project@gnn-nothing has not been computed"):
            label_source(brain, stack, "gnn-nothing")
        with pytest.raises(CortexgraphError, match="unknown label source"):
            label_source(brain, stack, "elsewhere")


def test_map_truth_annotation_and_excluded_sections(brain):
    truth = map_area(brain, "hOc1", "truth")
    info = truth.info
    assert info["sections_showing_area"] == 13 and info["complete_source"]
    assert info["voxel_size_mm"] == pytest.approx(0.32) and info["median_size"] == 1
    # the map is closed and holds the area: volume within 10 % of the section slab sum
    slab = info["voxels"]["assembled"] * 0.32**2 * 1.2
    volume = np.count_nonzero(truth.mask) * 0.32**3
    assert abs(volume / slab - 1) < 0.1
    # annotations are partial: only sections that show hOc1 count, the rest are gaps
    notes = map_area(brain, 4, "annotation")
    assert notes.info["sections_in_crop"] == notes.info["sections_showing_area"] < 13
    # a section left out is a gap: one known plane fewer, nearly the same volume
    gap = map_area(brain, "hOc1", "truth", exclude_sections=[842])
    assert gap.info["known_planes"] == info["known_planes"] - 1
    assert gap.info["sections_skipped_user"] == [842]
    assert abs(np.count_nonzero(gap.mask) / np.count_nonzero(truth.mask) - 1) < 0.03
    with pytest.raises(CortexgraphError, match="on no usable section"):
        map_area(brain, "Occ11", "annotation")


def test_map_out_of_core_equals_in_memory(brain, tmp_path):
    mem = map_area(brain, "hOc1", "truth", median_size=3)
    ooc = map_area(
        brain, "hOc1", "truth", median_size=3, memory_budget_gb=0.0, chunk_vox=24,
        workdir=tmp_path / "work",
    )  # fmt: skip
    assert ooc.info["out_of_core"] and not mem.info["out_of_core"]
    np.testing.assert_array_equal(np.asarray(ooc.mask), mem.mask)
    np.testing.assert_array_equal(ooc.affine, mem.affine)
    assert len(ooc.faces) == len(mem.faces) and len(ooc.preview_faces) == len(mem.preview_faces)
    area = triangle_areas_mm2(mem.vertices_mm, mem.faces).sum()
    assert triangle_areas_mm2(ooc.vertices_mm, ooc.faces).sum() == pytest.approx(area, rel=1e-6)
    remove_workdir(ooc)
    assert not (tmp_path / "work").exists()


def test_map_options_are_keywords_of_map_area():
    """map3d passes MapOptions to map_area field by field (``**asdict(options)``)."""
    import dataclasses
    import inspect

    from cortexgraph.maps3d.stage import MapOptions

    keywords = inspect.signature(map_area).parameters
    for f in dataclasses.fields(MapOptions):
        assert keywords[f.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert keywords[f.name].default == getattr(MapOptions(), f.name)
