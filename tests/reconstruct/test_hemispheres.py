"""Finding the hemispheres of a reconstructed brain on analytic brains: two ellipsoidal hemispheres
(3 mm cortex around white matter) whose medial cortices merge at the midline and are joined by a
white corpus callosum and brainstem, as a whole brain is at reconstruction resolution; the same with
a clean gap between the hemispheres, as in a posterior slab; and either hemisphere alone."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.reconstruct.clean import GRAY, WHITE
from cortexgraph.reconstruct.hemispheres import (
    find_hemispheres,
    fissure_dip,
    interhemispheric_x_mm,
)

VOXEL_MM = 1.0
CORTEX_MM = 3.0
SEMI_AXES_MM = np.array([35.0, 70.0, 45.0])


def analytic_brain(gap_mm: float = 0.0, midline_mm: float = 4.0, keep: str = "both"):
    """Tissue classes (x, y, z at ``VOXEL_MM``) and the affine of two hemispheres, each an ellipsoid
    (semi-axes 35, 70, 45 mm) centred 25 mm beside the midline ``x = midline_mm`` and cut flat there:
    the medial face, 3 mm of cortex like the rest, touches the other hemisphere's, so the midline
    planes hold more gray matter than their neighbours (as a whole brain at reconstruction
    resolution does). A white corpus callosum and brainstem cross the midline. ``gap_mm`` empties a
    slab of that width around the midline (the separated poles of a posterior slab). ``keep``:
    ``both``, ``lh`` or ``rh`` (the other hemisphere and its half of the callosum and brainstem
    removed)."""
    shape = (150, 160, 110)
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = [-71.0, -80.0, -55.0]
    x, y, z = (np.indices(shape) * VOXEL_MM + affine[:3, 3, None, None, None]).astype(np.float32)
    tissue = np.zeros(shape, np.uint8)
    cortex = np.zeros(shape, bool)
    white = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        if keep != "both" and (side < 0) != (keep == "lh"):
            continue
        lateral = side * (x - midline_mm)  # mm from the midline towards this hemisphere's side
        dx = lateral - 25.0
        outer = ((dx / 35.0) ** 2 + (y / 70.0) ** 2 + (z / 45.0) ** 2 <= 1.0) & (lateral >= 0)
        inner = (dx / 32.0) ** 2 + (y / 67.0) ** 2 + (z / 42.0) ** 2 <= 1.0
        inner &= lateral >= CORTEX_MM
        cortex |= outer & ~inner
        white |= inner
    tissue[cortex] = GRAY
    tissue[white] = WHITE
    callosum = (np.abs(x - midline_mm) <= 12) & (np.abs(y) <= 30) & (np.abs(z - 5) <= 4)
    brainstem = ((x - midline_mm) ** 2 + (y + 15) ** 2 <= 100) & (z <= 0)
    bridge = callosum | brainstem
    if keep == "lh":
        bridge &= x < midline_mm
    elif keep == "rh":
        bridge &= x >= midline_mm
    tissue[bridge] = WHITE
    if gap_mm:
        tissue[np.abs(x - midline_mm) < gap_mm / 2] = 0
    return tissue, affine


def test_dip_ratio_of_one_peak_is_one_and_of_two_peaks_is_the_valley():
    one_peak = np.array([0, 1, 3, 6, 8, 7, 4, 2, 0], float)
    np.testing.assert_allclose(fissure_dip(one_peak), 1.0)
    two_peaks = np.array([0, 4, 8, 5, 2, 6, 10, 3, 0], float)
    dip = fissure_dip(two_peaks)
    assert int(np.argmin(dip)) == 4
    assert dip[4] == pytest.approx(2 / 8)  # the lower of the two peaks is 8
    assert dip[0] == 1.0 and dip[-1] == 1.0  # no tissue on one side: no valley


def test_whole_brain_with_merged_medial_cortex_holds_two_hemispheres():
    tissue, affine = analytic_brain()
    gray = (tissue == GRAY).sum(axis=(1, 2))
    x_mm = affine[0, 3] + VOXEL_MM * np.arange(tissue.shape[0])
    # the trap: the midline plane holds more gray matter than the planes 10 mm beside it
    assert gray[np.argmin(np.abs(x_mm - 4.0))] > gray[np.argmin(np.abs(x_mm - 14.0))]
    hemispheres, midline, measures = find_hemispheres(tissue, affine)
    assert hemispheres == ("lh", "rh")
    assert midline == pytest.approx(4.0, abs=1.5)
    assert 0.2 < measures["fissure_tissue_ratio"] < 0.8
    assert measures["cortex_left_fraction"] == pytest.approx(0.5, abs=0.03)
    assert interhemispheric_x_mm(tissue, affine) == midline


def test_separated_hemispheres_have_a_near_empty_fissure():
    tissue, affine = analytic_brain(gap_mm=6.0)
    hemispheres, midline, measures = find_hemispheres(tissue, affine)
    assert hemispheres == ("lh", "rh")
    assert midline == pytest.approx(4.0, abs=3.0)  # in the empty gap
    # the 2 mm smoothing of the profile reaches into a 6 mm gap: well below a whole brain's valley
    assert measures["fissure_tissue_ratio"] < 0.2


@pytest.mark.parametrize("keep", ["lh", "rh"])
def test_one_hemisphere_has_no_valley(keep):
    tissue, affine = analytic_brain(keep=keep)
    hemispheres, midline, measures = find_hemispheres(tissue, affine)
    assert measures["fissure_tissue_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert hemispheres == (keep,)  # the medial face is the end nearer the widest plane
    assert midline == pytest.approx(4.0, abs=2.0)
