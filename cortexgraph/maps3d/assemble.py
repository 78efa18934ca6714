"""Place per-section area masks into the planes of a 3D volume (nearest neighbour).

Schiffer et al. 2021, NeuroImage, Sect. 2.8 (Schiffer, PhD thesis, Sect. 5.2.6): segmentations that
passed quality control are transformed into the reconstructed 3D space; excluded sections stay as gaps that
:func:`cortexgraph.maps3d.interpolate.interpolate_missing_sections` fills.

Conventions
    * Volume axes (x, y, z) in RAS mm through a 4x4 voxel-to-world ``affine``. Voxel axis 1 must map
      to world y only and world y must depend on voxel axis 1 only (sections are planes of constant
      y, docs/conventions.md); the in-plane 2x2 part may rotate, scale or flip x and z.
    * A section ``s`` lies in the world plane ``y = section_y_mm[s]`` (docs/conventions.md:
      ``(s - s_base) * thickness_mm``); it goes to the volume plane nearest to that y.
    * ``section_to_world[s]`` is either a 3x3 homogeneous matrix that maps a section pixel index
      ``(column, row, 1)`` to in-plane world coordinates ``(x_mm, z_mm, 1)`` (the linear part of a
      2D rigid/affine alignment), or a callable ``f(columns, rows) -> (x_mm, z_mm)`` for a
      non-linear 2D->3D mapping.
    * Matrix: every voxel of the plane pulls the section pixel nearest to its centre (no holes,
      exact nearest neighbour). Callable (cannot be inverted in general): every pixel centre is
      pushed into the voxel that contains it, and a voxel is inside when at least half of the
      pixel centres it received are inside (area-preserving majority vote; a plain "any pixel"
      push would dilate the area by up to half a voxel). Voxels that receive no pixel stay empty,
      so use it with section pixels at or below the voxel size (1-20 um pixels into 20 um
      voxels).
    * Several sections mapping to one plane are combined by union. A plane is "known" when at
      least one non-excluded section maps to it, even if its mask is empty (the area is absent
      there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from cortexgraph.errors import CortexgraphError

__all__ = ["assemble_area_volume"]

SectionTransform = np.ndarray | Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check_affine(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    lin = affine[:3, :3]
    scale = np.abs(lin).max()
    if abs(lin[1, 0]) + abs(lin[1, 2]) + abs(lin[0, 1]) + abs(lin[2, 1]) > 1e-9 * scale:
        raise CortexgraphError(
            "volume affine mixes the section axis (voxel axis 1 / world y) with x or z",
            fix="resample the volume so that its voxel axis 1 runs along world y",
        )
    if abs(lin[1, 1]) < 1e-12 or abs(np.linalg.det(lin[np.ix_([0, 2], [0, 2])])) < 1e-18:
        raise ValueError("volume affine is singular")
    return affine


def assemble_area_volume(
    section_masks: Mapping[int, np.ndarray],
    section_to_world: Mapping[int, SectionTransform],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    section_y_mm: Mapping[int, float] | Callable[[int], float],
    excluded: Iterable[int] = (),
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build a 3D area mask from 2D section masks.

    Parameters
    ----------
    section_masks : mapping section number -> 2D ndarray of bool (rows, columns)
        Area mask of each segmented section (an empty mask = area absent from the section).
    section_to_world : mapping section number -> 3x3 ndarray or callable
        Section pixel index -> in-plane world mm (see module docstring).
    shape : (nx, ny, nz)
        Volume shape.
    affine : (4, 4) ndarray
        Voxel-to-world affine of the volume (mm, RAS).
    section_y_mm : mapping or callable
        World y (mm) of each section plane.
    excluded : iterable of int
        Sections excluded by quality control; they are skipped and left as gaps.
    out : 3D array of bool, optional
        Where to write (e.g. an ``np.memmap`` for volumes larger than memory); it is cleared
        first and filled plane by plane. ``section_masks`` may be a lazy mapping that loads or
        computes a section on access (each is read once, in increasing section order).

    Returns
    -------
    mask : 3D ndarray of bool, ``shape``
        Assembled area mask; planes without a section are empty.
    known_planes : 1D ndarray of bool, length ``shape[1]``
        True for planes that received at least one section.
    """
    affine = _check_affine(affine)
    nx, ny, nz = (int(s) for s in shape)
    shape = (nx, ny, nz)
    if out is None:
        mask = np.zeros(shape, dtype=bool)
    else:
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {out.shape}, expected {shape}")
        mask = out
        for j in range(shape[1]):
            mask[:, j, :] = False
    known = np.zeros(shape[1], dtype=bool)
    excluded = {int(s) for s in excluded}
    y_of = section_y_mm if callable(section_y_mm) else section_y_mm.__getitem__
    a2 = affine[np.ix_([0, 2], [0, 2])]
    t2 = affine[[0, 2], 3]
    a2_inv = np.linalg.inv(a2)
    # world in-plane coordinates of every voxel centre of a plane (same for all planes)
    ii, kk = np.meshgrid(np.arange(shape[0]), np.arange(shape[2]), indexing="ij")
    world_x = a2[0, 0] * ii + a2[0, 1] * kk + t2[0]
    world_z = a2[1, 0] * ii + a2[1, 1] * kk + t2[1]

    for s in sorted(section_masks):
        if int(s) in excluded:
            continue
        if s not in section_to_world:
            raise CortexgraphError(
                "section has an area mask but no section-to-world transform",
                section=int(s),
                fix="add the section's transform or exclude the section",
            )
        j = int(np.rint((float(y_of(s)) - affine[1, 3]) / affine[1, 1]))
        if not 0 <= j < shape[1]:
            continue  # section outside the volume's y range
        known[j] = True
        sec = np.asarray(section_masks[s]) != 0
        transform = section_to_world[s]
        if callable(transform):
            rows, cols = np.indices(sec.shape).reshape(2, -1)
            x_mm, z_mm = transform(cols.astype(float), rows.astype(float))
            vox = a2_inv @ np.vstack([np.asarray(x_mm) - t2[0], np.asarray(z_mm) - t2[1]])
            vi, vk = np.floor(vox + 0.5).astype(np.int64)
            ok = (vi >= 0) & (vi < shape[0]) & (vk >= 0) & (vk < shape[2])
            flat = vi[ok] * shape[2] + vk[ok]
            n_plane = shape[0] * shape[2]
            total = np.bincount(flat, minlength=n_plane)
            inside = np.bincount(flat, weights=sec.ravel()[ok], minlength=n_plane)
            # majority of the pixel centres that fall into the voxel (ties count as inside)
            plane = (total > 0) & (2 * inside >= total)
            mask[:, j, :] |= plane.reshape(shape[0], shape[2])
        else:
            m = np.asarray(transform, dtype=float)
            if m.shape != (3, 3):
                raise CortexgraphError(
                    f"section transform must be a 3x3 matrix, got shape {m.shape}", section=int(s)
                )
            inv = np.linalg.inv(m)
            col = np.rint(inv[0, 0] * world_x + inv[0, 1] * world_z + inv[0, 2]).astype(np.int64)
            row = np.rint(inv[1, 0] * world_x + inv[1, 1] * world_z + inv[1, 2]).astype(np.int64)
            ok = (row >= 0) & (row < sec.shape[0]) & (col >= 0) & (col < sec.shape[1])
            plane = np.zeros(shape[0] * shape[2], dtype=bool).reshape(shape[0], shape[2])
            plane[ok] = sec[row[ok], col[ok]]
            mask[:, j, :] |= plane
    return mask, known
