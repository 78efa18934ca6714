"""Ground truth of the tiny phantom is self-consistent: frames, transforms, midsurface, measures."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from cortexgraph.data.manifest import TRANSFORM_COLUMNS, Cohort, read_tsv
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.synth.deform import make_brain
from cortexgraph.synth.presets import PRESETS
from cortexgraph.synth.sectioning import plan_sections
from cortexgraph.synth.template import build_template
from cortexgraph.synth.truth import read_gifti_surface


def _true_stack(root, brain_id):
    """SectionStack of a phantom brain whose transforms are replaced by the true ones."""
    brain = Cohort.read(root).brain(brain_id)
    rows = read_tsv(root / "ground_truth" / brain_id / "transforms.tsv", TRANSFORM_COLUMNS)
    brain._transforms = {
        (int(r["moving"]), int(r["fixed"])): np.array(
            [float(r[c]) for c in TRANSFORM_COLUMNS[2:]]
        ).reshape(3, 3)
        for r in rows
    }
    return SectionStack(brain)


@pytest.mark.parametrize("brain_id", ["B03", "B07"])
def test_composed_true_transforms_undo_the_misalignment(tiny_cohort, brain_id):
    preset = PRESETS["tiny"]
    template = build_template(preset.template_mm)
    model = make_brain(template, preset, brain_id, seed=0)
    geometry = plan_sections(template, model, preset, seed=0)
    to_world = geometry.block_to_world()
    stack = _true_stack(tiny_cohort, brain_id)
    assert stack.base_section == geometry.base_section
    spacing_mm = stack.brain.mask_spacing_um / 1000.0
    worst = 0.0
    mirrored = 0
    for n in stack.sections:
        mask = stack.tissue_mask(n)
        rows, cols = np.nonzero(mask)
        assert len(rows) > 0, f"section {n} holds no tissue"
        pick = np.linspace(0, len(rows) - 1, 200).astype(int)
        xy = np.column_stack([(cols[pick] + 0.5), (rows[pick] + 0.5)]) * spacing_mm
        via_stack = stack.section_to_world(n, xy)
        block = geometry.raw_to_block(n, xy[:, 0], xy[:, 1])
        expected = np.column_stack([block, np.ones(len(block))]) @ to_world.T
        worst = max(worst, float(np.abs(via_stack - expected[:, :3]).max()))
        mirrored += stack.brain.section(n).mirrored
    assert worst < spacing_mm  # under one pixel (in fact exact to rounding)
    assert worst < 1e-6

    # the stored (noisy) transforms stay close to the true ones over the whole chain
    noisy = SectionStack(Cohort.read(tiny_cohort).brain(brain_id))
    drift = max(
        float(np.abs(noisy.to_base[n][:2, 2] - stack.to_base[n][:2, 2]).max())
        for n in stack.sections
    )
    assert 0 < drift < 2.0


def test_alignment_increases_overlap_of_neighbouring_sections(tiny_cohort):
    stack = _true_stack(tiny_cohort, "B01")
    spacing_mm = stack.brain.mask_spacing_um / 1000.0
    raw_dice, aligned_dice = [], []
    sections = stack.sections
    for a, b in zip(sections[:-1], sections[1:], strict=True):
        ma, mb = stack.tissue_mask(a) > 0, stack.tissue_mask(b) > 0
        raw_dice.append(2 * (ma & mb).sum() / (ma.sum() + mb.sum()))
        # pull section b onto section a through the base frame
        rows, cols = np.indices(ma.shape)
        xy = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5]) * spacing_mm
        base = xy @ stack.to_base[a][:2, :2].T + stack.to_base[a][:2, 2]
        in_b = base @ stack.from_base[b][:2, :2].T + stack.from_base[b][:2, 2]
        ij = np.floor(in_b[:, ::-1] / spacing_mm).astype(int)
        ok = np.all((ij >= 0) & (ij < np.array(mb.shape)), axis=1)
        moved = np.zeros(ma.size, dtype=bool)
        moved[ok] = mb[ij[ok, 0], ij[ok, 1]]
        moved = moved.reshape(ma.shape)
        aligned_dice.append(2 * (ma & moved).sum() / (ma.sum() + moved.sum()))
    assert np.median(aligned_dice) > np.median(raw_dice) + 0.1
    assert np.median(aligned_dice) > 0.8


@pytest.mark.parametrize("hemi", ["lh", "rh"])
def test_true_midsurface_lies_inside_the_true_cortex(tiny_cohort, hemi):
    stack = _true_stack(tiny_cohort, "B07")
    vertices, faces, labels = read_gifti_surface(
        tiny_cohort / "ground_truth" / "B07" / f"midsurface_{hemi}.gii"
    )
    assert len(vertices) > 1000 and faces.max() < len(vertices)
    assert (labels > 0).mean() > 0.9
    inside, total = 0, 0
    for n in stack.sections:
        near = np.abs(vertices[:, 1] - stack.plane_y_mm(n)) < 0.05
        if near.sum() < 10:
            continue
        truth = Raster(tiny_cohort / "ground_truth" / "B07" / "labels" / f"s{n:04d}.h5")
        area = truth.read_level(0)
        xy = stack.world_to_section(n, vertices[near])
        ij = np.floor(xy[:, ::-1] / (truth.spacing_um / 1000.0)).astype(int)
        ij = np.clip(ij, 0, np.array(area.shape) - 1)
        found = area[ij[:, 0], ij[:, 1]]
        inside += int((found > 0).sum())
        total += len(found)
        # the label painted on the vertex is the label of the section pixel under it
        same = (found == labels[near])[found > 0].mean()
        assert same > 0.8
    assert total > 200
    assert inside / total > 0.9


def test_area_measures_and_exclusion_mask(tiny_cohort):
    truth = tiny_cohort / "ground_truth" / "B01"
    rows = read_tsv(truth / "area_measures.tsv", ("area_id", "volume_mm3", "pial_area_mm2"))
    volume = np.array([float(r["volume_mm3"]) for r in rows])
    pial = np.array([float(r["pial_area_mm2"]) for r in rows])
    fresh = np.array([float(r["volume_fresh_mm3"]) for r in rows])
    info = json.loads((truth / "brain.json").read_text())
    assert np.allclose(fresh, volume * info["shrinkage_factor"], rtol=1e-3, atol=1e-3)
    present = volume > 0
    assert 5 < present.sum() < len(rows)
    # volume / pial area ~ cortical thickness in the shrunken brain (template 2-3.6 mm / 1.2-1.4)
    thickness_mm = volume.sum() / pial.sum()
    assert 1.0 < thickness_mm < 3.0
    sizes = np.sort(volume[present])
    assert sizes[-1] > 10 * sizes[len(sizes) // 2] or sizes[-1] > 3 * sizes[len(sizes) // 2]

    # exclusion: non-cortical gray matter (cerebellum in the occipital slab), not cortex
    image = nib.load(str(tiny_cohort / "B01" / "exclusion.nii.gz"))
    mask = np.asarray(image.dataobj) > 0
    assert mask.sum() > 1000
    vertices, _, _ = read_gifti_surface(truth / "midsurface_lh.gii")
    ijk = np.rint(
        vertices @ np.linalg.inv(image.affine)[:3, :3].T + np.linalg.inv(image.affine)[:3, 3]
    ).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
    assert mask[tuple(ijk[ok].T)].mean() < 0.02
