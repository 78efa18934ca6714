"""Probabilistic maps of the phantom areas in the reference space, from other phantom brains.

Like an atlas built from a separate set of brains (Julich-Brain: 23 brains, none of them the one being
mapped), the maps come from ``preset.atlas_brains`` extra phantom brains (ids ``ATLAS01``...) that are
not in the cohort. Each has its own area borders (:func:`cortexgraph.synth.deform.perturbed_vertex_areas`);
in the reference space every brain's cortex is the template ribbon, so map ``k`` at a point is the
fraction of atlas brains whose area there is ``k``, averaged over 2x2x2 sub-voxel samples (partial
volume) and blurred by a Gaussian of ``atlas_blur_mm`` (the atlas' registration error).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cortexgraph.data.atlas import ProbabilisticAtlas
from cortexgraph.synth.deform import brain_rng, perturbed_vertex_areas
from cortexgraph.synth.presets import Preset
from cortexgraph.synth.template import Template, sample_template


def build_atlas(template: Template, preset: Preset, seed: int) -> ProbabilisticAtlas:
    """The cohort's probabilistic maps (float32, one map per area, ids as in the area table)."""
    voxel = preset.atlas_voxel_mm
    ribbon = np.abs(template.signed_mm) <= template.thickness_mm / 2
    idx = np.argwhere(ribbon)
    lo_mm = idx.min(0) * template.spacing_mm + template.affine[:3, 3] - 2 * voxel
    hi_mm = idx.max(0) * template.spacing_mm + template.affine[:3, 3] + 2 * voxel
    shape = tuple(int(np.ceil((h - l) / voxel)) + 1 for l, h in zip(lo_mm, hi_mm, strict=True))
    num_areas = len(template.layout.areas)
    labels = [
        perturbed_vertex_areas(
            template, brain_rng(seed, f"ATLAS{b + 1:02d}", 1), preset.border_shift_mm
        )
        for b in range(preset.atlas_brains)
    ]
    counts = np.zeros((int(np.prod(shape)), num_areas), dtype=np.float32)
    centres = np.indices(shape).reshape(3, -1).T.astype(np.float64) * voxel + lo_mm
    offsets = [
        np.array([i, j, k]) * voxel / 2 - voxel / 4 for i in (0, 1) for j in (0, 1) for k in (0, 1)
    ]
    weight = 1.0 / (len(offsets) * len(labels))
    for offset in offsets:
        sample = sample_template(template, centres + offset)
        cells = np.flatnonzero(sample.cortex)
        vertices = sample.vertex[cells]
        for area_of in labels:
            area = area_of[vertices]
            ok = area > 0
            np.add.at(counts, (cells[ok], area[ok] - 1), weight)
    maps = counts.reshape(shape + (num_areas,))
    sigma = preset.atlas_blur_mm / voxel
    for k in range(num_areas):
        maps[..., k] = ndimage.gaussian_filter(maps[..., k], sigma)
    maps = np.clip(maps, 0.0, 1.0).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] *= voxel
    affine[:3, 3] = lo_mm
    areas = template.layout.areas
    return ProbabilisticAtlas(
        maps, affine, np.array([a.id for a in areas]), [a.name for a in areas]
    )
