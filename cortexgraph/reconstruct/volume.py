"""Stack tissue masks into an approximate 3D volume (Schiffer, PhD thesis,
Sect. 7.1.1 and Fig. 7.1).

Every available section is placed in the plane ``y = (s - s_base) * thickness_mm`` of the world frame
(docs/conventions.md), aligned to the central base section by the composed rigid transforms. Planes
between digitized sections take the nearest digitized section; planes whose nearest digitized section is
missing stay empty (gaps), to be filled by :func:`cortexgraph.reconstruct.clean.fill_defects`.

Lattice and sampling: in x and z the voxels tile the stack's extent as pixels tile an image: voxel
``k`` covers ``[lo + k h, lo + (k + 1) h)`` and its centre (the affine's position of voxel ``k``) is
``lo + (k + 0.5) h``, ``lo`` being the corner of the section canvases. A voxel takes the majority
class of ``n x n`` points spread evenly over its square (``n`` the odd number nearest to the voxel /
mask pixel ratio, 1..5), so with identity transforms and a voxel of whole pixels each voxel holds
the classes of exactly the pixels it covers, centred where they are. (Before, the voxel centres
lay on the canvas corner and the pixel edges, and each voxel took the pixel beyond its centre: the
volume was shifted by half a mask pixel.)
"""

from __future__ import annotations

import time

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import DataFormatError


def lattice_origin(corner_mm: np.ndarray, voxel_size_mm: float) -> np.ndarray:
    """World position of voxel (0, 0, 0) for the stack's corner ``(x, y, z)``: the centre of the
    first voxel in x and z (half a voxel inside the corner), the first section plane in y."""
    origin = np.asarray(corner_mm, dtype=float).copy()
    origin[0] += 0.5 * voxel_size_mm
    origin[2] += 0.5 * voxel_size_mm
    return origin


def lattice_shape(lo_mm: np.ndarray, hi_mm: np.ndarray, voxel_size_mm: float) -> tuple[int, ...]:
    """Voxels covering ``[lo, hi]``: whole voxels tiling the extent in x and z, one plane per
    voxel step from the first to the last section plane in y."""
    extent = np.asarray(hi_mm, dtype=float) - np.asarray(lo_mm, dtype=float)
    in_plane = [max(1, int(np.ceil(extent[k] / voxel_size_mm - 1e-9))) for k in (0, 2)]
    planes = int(np.floor(extent[1] / voxel_size_mm + 1e-9)) + 1
    return (in_plane[0], planes, in_plane[1])


def _sample_plane(
    stack: SectionStack,
    section: int,
    mask: np.ndarray,
    spacing_um: float,
    centres_mm: np.ndarray,
    voxel_size_mm: float,
) -> np.ndarray:
    """Majority tissue class of ``n x n`` points per voxel of a plane (module docstring)."""
    ratio = voxel_size_mm * 1000.0 / spacing_um
    n = int(min(5, max(1, 2 * int(round((ratio - 1) / 2)) + 1)))
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * voxel_size_mm
    counts = np.zeros((3, len(centres_mm)), dtype=np.int16)
    for dx in offsets:
        for dz in offsets:
            points = centres_mm + np.array([dx, 0.0, dz])
            section_xy = stack.world_to_section(section, points)
            cols = np.floor(section_xy[:, 0] * 1000.0 / spacing_um).astype(np.int64)
            rows = np.floor(section_xy[:, 1] * 1000.0 / spacing_um).astype(np.int64)
            inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
            values = np.zeros(len(points), dtype=np.uint8)
            values[inside] = mask[rows[inside], cols[inside]]
            if n == 1:
                return values
            for c in range(3):
                counts[c] += values == c
    return np.argmax(counts, axis=0).astype(np.uint8)


def stack_tissue_volume(
    stack: SectionStack,
    voxel_size_mm: float | None = None,
    progress=None,
    *,
    crop_to_tissue: bool = False,
    margin_voxels: int = 2,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Build the tissue-class volume of a brain.

    Parameters
    ----------
    stack : the brain's sections.
    voxel_size_mm : isotropic voxel size; default the distance between digitized sections
        (``digitization_step x thickness``; 0.3 mm in the published data sets).
    progress : optional callable ``(done, total)``.
    crop_to_tissue : cut x and z down to the tissue's bounding box plus ``margin_voxels`` of
        background (y keeps one plane per section position). The section canvases hold glass and
        the scans' misalignment around the tissue, so the uncropped grid of a whole brain is
        several times larger than the brain; every later step costs memory per voxel. The
        origin moves with the crop (the affine says where).
    margin_voxels : background kept around the tissue when cropping.

    Returns
    -------
    volume : uint8 (nx, ny, nz), tissue classes 0 background, 1 white, 2 gray.
    affine : 4x4 voxel -> world mm.
    info : voxels per class, planes filled / left empty, seconds; with ``crop_to_tissue`` also the
        ``uncropped_shape`` and the ``crop_offset`` (voxels).
    """
    start = time.perf_counter()
    brain = stack.brain
    if voxel_size_mm is None:
        voxel_size_mm = brain.digitization_step * brain.thickness_um / 1000.0
    lo, hi = stack.canvas_bounds_mm()
    lo_y = stack.plane_y_mm(min(r.section for r in brain.sections))
    hi_y = stack.plane_y_mm(max(r.section for r in brain.sections))
    lo[1], hi[1] = lo_y, hi_y
    shape = lattice_shape(lo, hi, voxel_size_mm)
    affine = np.diag([voxel_size_mm, voxel_size_mm, voxel_size_mm, 1.0])
    affine[:3, 3] = lattice_origin(lo, voxel_size_mm)
    volume = np.zeros(shape, dtype=np.uint8)

    digitized = np.array(sorted(r.section for r in brain.sections))
    missing = {r.section for r in brain.sections if r.missing}
    excluded = {r.section for r in brain.sections if r.excluded and not r.missing}
    xs = affine[0, 3] + voxel_size_mm * np.arange(shape[0])
    zs = affine[2, 3] + voxel_size_mm * np.arange(shape[2])
    grid_x, grid_z = np.meshgrid(xs, zs, indexing="ij")
    centres = np.column_stack([grid_x.ravel(), np.zeros(grid_x.size), grid_z.ravel()])
    masks: dict[int, tuple[np.ndarray, float]] = {}
    filled, empty = 0, 0
    for j in range(shape[1]):
        y = lo[1] + j * voxel_size_mm
        nearest = int(digitized[np.argmin(np.abs(stack.plane_y_mm(digitized) - y))])
        if nearest in missing or nearest in excluded:
            empty += 1
        else:
            if nearest not in masks:
                masks.clear()  # planes visit sections in order: keep one mask in memory
                raster = stack.raster(nearest, "mask")
                masks[nearest] = (raster.read_level(0), raster.spacing_um)
                raster.close()
            mask, spacing_um = masks[nearest]
            values = _sample_plane(stack, nearest, mask, spacing_um, centres, voxel_size_mm)
            volume[:, j, :] = values.reshape(shape[0], shape[2])
            filled += 1
        if progress is not None:
            progress(j + 1, shape[1])
    if not volume.any():
        raise DataFormatError(
            "the stacked volume holds no tissue",
            file=brain.section_table_path,
            fix="check the tissue masks (0 background, 1 white, 2 gray) and the transforms",
        )
    info: dict[str, object] = {}
    if crop_to_tissue:
        offset = []
        slices = []
        for axis in (0, 2):
            hit = np.flatnonzero(volume.any(axis=tuple(a for a in range(3) if a != axis)))
            lo_i = max(int(hit[0]) - margin_voxels, 0)
            hi_i = min(int(hit[-1]) + 1 + margin_voxels, shape[axis])
            slices.append(slice(lo_i, hi_i))
            offset.append(lo_i)
        volume = np.ascontiguousarray(volume[slices[0], :, slices[1]])
        affine = affine.copy()
        affine[0, 3] += offset[0] * voxel_size_mm
        affine[2, 3] += offset[1] * voxel_size_mm
        info = {"uncropped_shape": list(shape), "crop_offset": [offset[0], 0, offset[1]]}
        shape = volume.shape
    info |= {
        "shape": list(shape),
        "voxel_size_mm": voxel_size_mm,
        "planes_filled": filled,
        "planes_empty": empty,
        "voxels_white": int((volume == 1).sum()),
        "voxels_gray": int((volume == 2).sum()),
        "seconds": time.perf_counter() - start,
    }
    return volume, affine, info
