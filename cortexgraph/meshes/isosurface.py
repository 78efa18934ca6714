"""Isosurfaces of a scalar volume as triangle meshes in world millimetres.

Two interchangeable back ends: VTK's ``vtkFlyingEdges3D`` (default, fastest) and scikit-image's
marching cubes (Lewiner et al. 2003). Both return vertices in world mm (voxel index ``(i, j, k)`` ->
``affine @ [i, j, k, 1]``, NIfTI style) and triangles oriented the same way: the right-hand normal
``(v1 - v0) x (v2 - v0)`` of every face points towards *lower* values of the volume. For a cortical
depth field (0 pial, 1 white) the 0.5 midsurface therefore has normals pointing to the pial side.

NaN voxels and voxels outside ``mask`` are "outside the domain": every marching-cubes cell that has
such a voxel among its 8 corners produces no triangles, so the surface ends there (it is not closed
against the NaN region). To close a depth midsurface across thin cortex, fill the NaN voxels first
(white matter with 1, background with 0).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from cortexgraph.errors import CortexgraphError

__all__ = ["extract_isosurface"]

_METHODS = ("flying_edges", "lewiner")


def _flying_edges(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """vtkFlyingEdges3D on a float32 volume; vertices in voxel index coordinates."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    image = vtkImageData()
    # zero-copy: VTK's x (fastest) is numpy's last axis, so VTK sees the volume as (k, j, i)
    flat = np.ascontiguousarray(volume, dtype=np.float32).reshape(-1)
    image.SetDimensions(volume.shape[2], volume.shape[1], volume.shape[0])
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    scalars = numpy_support.numpy_to_vtk(flat, deep=False)
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    contour = vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetNumberOfContours(1)
    contour.SetValue(0, float(level))
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.InterpolateAttributesOff()
    contour.Update()
    poly = contour.GetOutput()
    del scalars, flat  # VTK has finished with the borrowed buffer
    if poly.GetNumberOfPoints() == 0 or poly.GetNumberOfPolys() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # back to (i, j, k); the axis swap mirrors the triangles, fixed by the orientation vote
    vertices = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())[:, ::-1].astype(np.float64)
    connectivity = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray())
    faces = connectivity.astype(np.int64).reshape(-1, 3)
    return vertices, faces


def _lewiner(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image marching cubes (Lewiner); vertices in voxel index coordinates."""
    from skimage.measure import marching_cubes

    vertices, faces, _normals, _values = marching_cubes(
        volume, level=float(level), method="lewiner", allow_degenerate=True
    )
    return vertices.astype(np.float64), faces.astype(np.int64)


def _drop_faces(
    vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the faces flagged in ``keep`` and the vertices they use (renumbered, order kept)."""
    faces = faces[keep]
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces].astype(np.int64)


def _orient_towards_lower(
    volume: np.ndarray, vertices: np.ndarray, faces: np.ndarray, sample: int = 20000
) -> np.ndarray:
    """Flip all faces if most face normals point to higher values (vote on a subsample)."""
    if len(faces) == 0:
        return faces
    rng = np.random.default_rng(0)
    pick = faces if len(faces) <= sample else faces[rng.choice(len(faces), sample, replace=False)]
    a, b, c = (vertices[pick[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    ok = length > 1e-12
    if not np.any(ok):
        return faces
    centroid = (a + b + c)[ok] / 3.0
    unit = normal[ok] / length[ok, None]
    step = 0.25
    ahead = ndi.map_coordinates(volume, (centroid + step * unit).T, order=1, mode="nearest")
    behind = ndi.map_coordinates(volume, (centroid - step * unit).T, order=1, mode="nearest")
    votes = np.sign(ahead - behind)
    if votes.sum() > 0:  # normals point uphill: flip
        return faces[:, ::-1].copy()
    return faces


def extract_isosurface(
    volume: np.ndarray,
    level: float,
    affine: np.ndarray | None = None,
    *,
    method: str = "flying_edges",
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of the ``level`` isosurface of ``volume`` in world millimetres.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        Scalar field; NaN marks voxels outside the domain.
    level : float
        Iso-value (e.g. 0.5 for the cortical midsurface of a depth field).
    affine : ndarray (4, 4), optional
        Voxel-to-world affine (voxel index -> mm, NIfTI style). Identity if omitted.
    method : {"flying_edges", "lewiner"}
        VTK ``vtkFlyingEdges3D`` or scikit-image ``marching_cubes(method="lewiner")``.
    mask : ndarray of bool, optional
        Voxels allowed to take part; cells with a False corner produce no triangles.

    Returns
    -------
    vertices : ndarray float64 (N, 3)
        Vertex positions in world mm.
    faces : ndarray int64 (M, 3)
        Triangles (vertex indices); normals ``(v1 - v0) x (v2 - v0)`` point towards lower values
        (in world space: a mirroring affine is compensated).
    """
    if method not in _METHODS:
        raise CortexgraphError(
            f"unknown isosurface method {method!r}", fix=f"use one of {', '.join(_METHODS)}"
        )
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise CortexgraphError(f"volume must be 3D, got shape {volume.shape}")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise CortexgraphError(f"affine must be 4x4, got shape {affine.shape}")
    empty = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    if min(volume.shape) < 2:
        return empty

    values = np.array(volume, dtype=np.float32)  # copy: NaN filled below
    valid = np.isfinite(values)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != volume.shape:
            raise CortexgraphError(
                f"mask shape {mask.shape} differs from volume shape {volume.shape}"
            )
        valid &= mask
    restricted = not bool(valid.all())
    if restricted:
        if not valid.any():
            return empty
        fill = np.float32(level) - 1.0
        values[~valid] = fill
    finite_values = values[valid] if restricted else values
    if not (finite_values.min() <= level <= finite_values.max()):
        return empty

    if method == "flying_edges":
        vertices, faces = _flying_edges(values, level)
    else:
        try:
            vertices, faces = _lewiner(values, level)
        except (ValueError, RuntimeError):  # level touches no cell
            return empty
    if len(faces) == 0:
        return empty

    if restricted:
        # a cell (i..i+1, j..j+1, k..k+1) is usable only if all 8 corners are valid
        cell_ok = valid[:-1, :-1, :-1].copy()
        for di in (0, 1):
            for dj in (0, 1):
                for dk in (0, 1):
                    if di or dj or dk:
                        cell_ok &= valid[
                            di : di + cell_ok.shape[0],
                            dj : dj + cell_ok.shape[1],
                            dk : dk + cell_ok.shape[2],
                        ]
        centroid = vertices[faces].mean(axis=1)
        cell = np.floor(centroid).astype(np.int64)
        np.clip(cell, 0, np.array(cell_ok.shape) - 1, out=cell)
        keep = cell_ok[cell[:, 0], cell[:, 1], cell[:, 2]]
        vertices, faces = _drop_faces(vertices, faces, keep)
        if len(faces) == 0:
            return empty

    faces = _orient_towards_lower(values, vertices, faces)
    world = vertices @ affine[:3, :3].T + affine[:3, 3]
    if np.linalg.det(affine[:3, :3]) < 0:
        faces = faces[:, ::-1].copy()
    return world, np.ascontiguousarray(faces, dtype=np.int64)
