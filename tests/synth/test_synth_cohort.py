"""The tiny phantom cohort: valid for `check`, deterministic, partial annotations, atlas."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.atlas import ProbabilisticAtlas
from cortexgraph.data.check import check_brain
from cortexgraph.data.manifest import Cohort
from cortexgraph.data.raster import Raster
from cortexgraph.errors import ParameterError
from cortexgraph.synth.cohort import synthesize_cohort
from cortexgraph.synth.presets import PRESETS


def test_check_passes_on_every_brain(tiny_cohort):
    cohort = Cohort.read(tiny_cohort)
    assert cohort.brain_ids == ["B01", "B03", "B07"]
    for brain_id in cohort.brain_ids:
        problems = check_brain(tiny_cohort / brain_id, deep=True)
        assert problems == [], "\n".join(str(p) for p in problems)


def test_sections_missing_mirrored_and_partly_annotated(tiny_cohort):
    cohort = Cohort.read(tiny_cohort)
    assert len(cohort.areas) == 100
    for brain in cohort.brains:
        records = brain.sections
        numbers = [r.section for r in records]
        assert numbers == sorted(numbers)
        steps = np.diff(numbers)
        assert np.all(steps == brain.digitization_step)  # missing ones stay in the table
        annotated = brain.annotated_sections
        assert len(annotated) >= 0.5 * len(brain.available_sections)
        annotated_px, cortex_px = 0, 0
        for n in annotated:
            record = brain.section(n)
            annotation = Raster(brain.path(record.annotation)).read_level(0)
            truth = Raster(tiny_cohort / "ground_truth" / brain.id / "labels" / f"s{n:04d}.h5")
            labels = truth.read_level(0)
            # every annotated pixel carries the true area ...
            on = annotation > 0
            assert np.array_equal(annotation[on], labels[on])
            annotated_px += int(on.sum())
            cortex_px += int((labels > 0).sum())
            # the contours rasterise back to (almost) the same pixels
            features = read_contours(brain.path(record.contours))
            raster = rasterize_contours(features, annotation.shape, brain.annotation_spacing_um)
            agree = (raster == annotation)[on | (raster > 0)].mean()
            assert agree > 0.9
        # ... but only part of the cortex is annotated
        assert 0.1 * cortex_px < annotated_px < 0.9 * cortex_px


def test_atlas_is_informative_but_not_exact(tiny_cohort):
    cohort = Cohort.read(tiny_cohort)
    atlas = ProbabilisticAtlas.from_cohort(cohort)
    assert atlas.num_maps == len(cohort.areas)
    assert atlas.maps.min() >= 0.0 and atlas.maps.max() <= 1.0
    brain = cohort.brain("B07")
    hits, total = 0, 0
    for n in brain.annotated_sections[:6]:
        record = brain.section(n)
        coords_raster = Raster(brain.path(record.coords))
        coords = coords_raster.read_level(0)
        labels = Raster(
            tiny_cohort / "ground_truth" / "B07" / "labels" / f"s{n:04d}.h5"
        ).read_at_spacing(coords_raster.spacing_um)
        on = (labels > 0) & np.isfinite(coords[..., 0])
        mni = cohort.from_canonical(coords[on])
        probs = atlas.sample(mni)
        predicted = atlas.area_ids[np.argmax(probs, axis=1)]
        hits += int((predicted == labels[on]).sum())
        total += int(on.sum())
    accuracy = hits / total
    assert total > 50
    assert 0.25 < accuracy < 0.98  # chance is about 1/30 in the slab


def _tree_digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path):
    mini = dataclasses.replace(PRESETS["tiny"], slab_posterior_mm=5.0, digitization_step=30)
    first = synthesize_cohort(tmp_path / "a", preset=mini, brains=["B07"], seed=3)
    second = synthesize_cohort(tmp_path / "b", preset=mini, brains=["B07"], seed=3)
    digest_a, digest_b = _tree_digest(first), _tree_digest(second)
    assert len(digest_a) > 10
    assert digest_a == digest_b
    other = synthesize_cohort(tmp_path / "c", preset=mini, brains=["B07"], seed=4)
    digest_c = _tree_digest(other)
    assert digest_c["B07/transforms.tsv"] != digest_a["B07/transforms.tsv"]


def test_a_folder_that_is_not_empty_is_refused_or_replaced_only_when_a_phantom(tmp_path):
    """synth into a non-empty folder used to exit 0 and leave the previous phantom's sections
    beside the new ones (check then passed)."""
    from cortexgraph.errors import DataFormatError

    mini = dataclasses.replace(PRESETS["tiny"], slab_posterior_mm=5.0, digitization_step=30)
    root = synthesize_cohort(tmp_path / "c", preset=mini, brains=["B07"], seed=3)
    first = _tree_digest(root)
    with pytest.raises(DataFormatError, match="folder not empty .*add --overwrite"):
        synthesize_cohort(root, preset=mini, brains=["B07"], seed=4)
    assert _tree_digest(root) == first  # nothing written
    # a file of the old phantom that the new one would not write, and derivatives of a run
    stale = root / "B07" / "images" / "s9999.h5"
    stale.write_bytes(b"old")
    (root / "derivatives" / "cortexgraph").mkdir(parents=True)
    again = synthesize_cohort(root, preset=mini, brains=["B07"], seed=3, overwrite=True)
    assert _tree_digest(again) == first  # the same seed again: the same files, nothing else
    # a folder with anything synth does not write is never deleted
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(DataFormatError, match="not a phantom cohort: it holds notes.txt"):
        synthesize_cohort(mine, preset=mini, brains=["B07"], seed=3, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_second_synth_into_the_same_folder_waits_for_none_and_is_refused(tmp_path):
    """Two synth runs started at the same moment both found the folder empty and wrote into it;
    the folder's lock lets one write and refuses the other (exit status 3)."""
    from cortexgraph.derivatives.lock import StageLock
    from cortexgraph.errors import StageBusyError
    from cortexgraph.synth.cohort import SYNTH_LOCK

    out = tmp_path / "c"
    out.mkdir()
    with StageLock(out / SYNTH_LOCK, "the first synth"):  # held by a live process (this one)
        with pytest.raises(StageBusyError, match="synth into .* is running already") as error:
            synthesize_cohort(out, preset="tiny", seed=3)
        assert error.value.exit_code == 3
        assert [p.name for p in out.iterdir()] == [SYNTH_LOCK]  # nothing written
    assert not any(out.iterdir())


def test_unknown_preset_is_rejected(tmp_path):
    with pytest.raises(ParameterError, match="tiny, demo, full"):
        synthesize_cohort(tmp_path, preset="huge")
    assert not any(tmp_path.iterdir())  # nothing written


def test_sections_without_tissue_become_missing(tmp_path, monkeypatch):
    """Sections past the occipital pole (the planned stack moved 3 mm behind the tissue) hold no
    tissue: they are written as missing, nothing else of them is written, and the cohort passes
    `check` (a lab does not digitize empty glass)."""
    import cortexgraph.synth.cohort as cohort_module
    from cortexgraph.synth.sectioning import plan_sections

    def planned_behind(template, brain, preset, seed):
        geometry = plan_sections(template, brain, preset, seed)
        geometry.first_y_mm -= 3.0
        return geometry

    monkeypatch.setattr(cohort_module, "plan_sections", planned_behind)
    mini = dataclasses.replace(PRESETS["tiny"], slab_posterior_mm=5.0, digitization_step=30)
    root = synthesize_cohort(tmp_path / "c", preset=mini, brains=["B07"], seed=3)
    brain = Cohort.read(root).brain("B07")
    records = brain.sections
    empty = [r.section for r in records if r.missing]
    # the first digitized sections, and only they, fell on empty glass (the plan's tissue extent
    # is sampled every second template voxel, so how many is not exact: 2 to 5 of 0.6 mm each)
    assert 2 <= len(empty) <= 5, empty
    assert empty == [r.section for r in records[: len(empty)]]
    first_two = empty[:2]
    for n in first_two:
        assert not (brain.root / "masks" / f"s{n:04d}.h5").exists()
        assert not (brain.root / "images" / f"s{n:04d}.h5").exists()
        assert not (root / "ground_truth" / "B07" / "labels" / f"s{n:04d}.h5").exists()
    assert not any(n in pair for pair in brain.transforms for n in first_two)
    assert brain.base_section not in empty
    problems = check_brain(brain, deep=True)
    assert problems == [], "\n".join(str(p) for p in problems)
