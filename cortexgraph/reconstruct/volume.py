"""Stack tissue masks into an approximate 3D volume (thesis ch. 7, graph-pipeline.md section 1).

Every available section is placed in the plane ``y = (s - s_base) * thickness_mm`` of the world frame
(docs/conventions.md), aligned to the central base section by the composed rigid transforms. Each voxel of
a plane takes, by nearest neighbour, the tissue class of the section pixel under its centre
(nearest-neighbour downscaling of the masks). Planes between digitized sections take the nearest
digitized section; planes whose nearest digitized section is missing stay empty (gaps), to be filled by
:func:`cortexgraph.reconstruct.clean.fill_defects`.
"""

from __future__ import annotations

import time

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import DataFormatError


def stack_extent_mm(stack: SectionStack) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (min, max) in mm of all available sections' images."""
    corners = []
    for s in stack.sections:
        width, height = stack.section_extent_mm(s)
        square = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        corners.append(stack.section_to_world(s, square))
    points = np.vstack(corners)
    return points.min(axis=0), points.max(axis=0)


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
        (``digitization_step x thickness``; 0.3 mm in the seeds).
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
    lo, hi = stack_extent_mm(stack)
    lo_y = stack.plane_y_mm(min(r.section for r in brain.sections))
    hi_y = stack.plane_y_mm(max(r.section for r in brain.sections))
    lo[1], hi[1] = lo_y, hi_y
    shape = tuple(int(np.floor((hi[k] - lo[k]) / voxel_size_mm)) + 1 for k in range(3))
    affine = np.diag([voxel_size_mm, voxel_size_mm, voxel_size_mm, 1.0])
    affine[:3, 3] = lo
    volume = np.zeros(shape, dtype=np.uint8)

    digitized = np.array(sorted(r.section for r in brain.sections))
    missing = {r.section for r in brain.sections if r.missing}
    excluded = {r.section for r in brain.sections if r.excluded and not r.missing}
    xs = lo[0] + voxel_size_mm * np.arange(shape[0])
    zs = lo[2] + voxel_size_mm * np.arange(shape[2])
    grid_x, grid_z = np.meshgrid(xs, zs, indexing="ij")
    plane_points = np.column_stack([grid_x.ravel(), np.zeros(grid_x.size), grid_z.ravel()])
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
            section_xy = stack.world_to_section(nearest, plane_points)
            cols = np.floor(section_xy[:, 0] * 1000.0 / spacing_um).astype(np.int64)
            rows = np.floor(section_xy[:, 1] * 1000.0 / spacing_um).astype(np.int64)
            inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
            values = np.zeros(len(plane_points), dtype=np.uint8)
            values[inside] = mask[rows[inside], cols[inside]]
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
    info = {}
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
