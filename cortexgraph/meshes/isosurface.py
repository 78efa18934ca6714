"""Isosurfaces of a scalar volume as triangle meshes in world millimetres.

Two interchangeable back ends: VTK's ``vtkFlyingEdges3D`` (default, fastest) and scikit-image's
marching cubes (Lewiner et al. 2003). Both return vertices in world mm (voxel index ``(i, j, k)`` ->
``affine @ [i, j, k, 1]``, NIfTI style) and triangles oriented the same way: the right-hand normal
``(v1 - v0) x (v2 - v0)`` of every face points towards *lower* values of the volume. For a cortical
depth field (0 pial, 1 white) the 0.5 midsurface therefore has normals pointing to the pial side.

NaN (and infinite) voxels and voxels outside ``mask`` are "outside the domain": every marching-cubes
cell that has such a voxel among its 8 corners produces no triangles, so the surface ends there (it is
not closed against the NaN region). To close a depth midsurface across thin cortex, fill the NaN
voxels first (white matter with 1, background with 0).

Cost: a C-contiguous float32 volume is handed to VTK without a copy. Marching cubes builds every
triangle from the 8 corner values of its own cell only, and flying edges numbers vertices by edge
position, so the values of invalid voxels change neither a triangle of a valid cell nor the order of
the vertices that survive: flying edges runs on the volume as it is (NaN included), and afterwards the
triangles whose cell has an invalid corner are dropped (8 look-ups per triangle, not passes over the
volume). This equals "fill the invalid voxels, extract, drop the triangles of invalid cells" except
for degenerate triangles that lie in a face shared with an invalid cell, which the filled run may
produce and assign to the valid side. A volume without ``mask`` is checked for non-finite values with
one read-only reduction; ``check_finite=False`` skips even that for callers that know their field is
finite. The Lewiner back end numbers vertices in visiting order, so it still fills a copy.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from cortexgraph.errors import CortexgraphError

__all__ = ["extract_isosurface"]

_METHODS = ("flying_edges", "lewiner")


def _flying_edges(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """vtkFlyingEdges3D on a C-contiguous float32 volume (zero-copy).

    Returns the vertices as VTK gives them, float32 in ``(k, j, i)`` order (VTK's x, the fastest
    axis, is numpy's last), and int64 faces.
    """
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    image = vtkImageData()
    flat = volume.reshape(-1)
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
        return np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)
    # the arrays stay valid after ``poly`` goes: numpy keeps a reference to the VTK array
    points = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())
    connectivity = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray())
    return points, connectivity.astype(np.int64, copy=False).reshape(-1, 3)


def _lewiner(volume: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image marching cubes (Lewiner); vertices float32 in ``(k, j, i)`` order like VTK's."""
    from skimage.measure import marching_cubes

    vertices, faces, _normals, _values = marching_cubes(
        volume, level=float(level), method="lewiner", allow_degenerate=True
    )
    return vertices[:, ::-1].astype(np.float32), faces.astype(np.int64)


def _valid_cell_faces(
    points: np.ndarray, faces: np.ndarray, values: np.ndarray, mask: np.ndarray | None
) -> np.ndarray:
    """Faces whose marching-cubes cell has 8 valid corners (finite value, inside ``mask``).

    ``points`` in ``(k, j, i)`` order. A face's cell is the floor of its centroid (clipped to the
    cells); faces with a non-finite vertex come from an invalid cell and are dropped as well.
    """
    tri = points[faces]  # (M, 3, 3) float32, (k, j, i)
    centroid = tri.mean(axis=1, dtype=np.float64)[:, ::-1]
    keep = np.isfinite(centroid).all(axis=1)
    centroid[~keep] = 0.0
    cell = np.floor(centroid).astype(np.int64)
    np.clip(cell, 0, np.array(values.shape) - 2, out=cell)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                corner = (cell[:, 0] + di, cell[:, 1] + dj, cell[:, 2] + dk)
                keep &= np.isfinite(values[corner])
                if mask is not None:
                    keep &= mask[corner]
    return keep


def _drop_faces(
    vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the faces flagged in ``keep`` and the vertices they use (renumbered, order kept)."""
    faces = faces[keep]
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces].astype(np.int64)


def _points_uphill(
    volume: np.ndarray, vertices: np.ndarray, faces: np.ndarray, sample: int = 20000
) -> bool:
    """Whether most face normals point to higher values (a vote on an evenly strided subsample).

    ``vertices`` in voxel index coordinates ``(i, j, k)``; samples that touch a non-finite voxel
    do not vote.
    """
    pick = faces[:: max(len(faces) // sample, 1)]
    a, b, c = (vertices[pick[:, k]].astype(np.float64) for k in range(3))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    ok = length > 1e-12
    if not np.any(ok):
        return False
    centroid = (a + b + c)[ok] / 3.0
    unit = normal[ok] / length[ok, None]
    step = 0.25
    ahead = ndi.map_coordinates(volume, (centroid + step * unit).T, order=1, mode="nearest")
    behind = ndi.map_coordinates(volume, (centroid - step * unit).T, order=1, mode="nearest")
    return bool(np.nansum(np.sign(ahead - behind)) > 0)


def extract_isosurface(
    volume: np.ndarray,
    level: float,
    affine: np.ndarray | None = None,
    *,
    method: str = "flying_edges",
    mask: np.ndarray | None = None,
    check_finite: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of the ``level`` isosurface of ``volume`` in world millimetres.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
        Scalar field; NaN marks voxels outside the domain. A C-contiguous float32 array is used
        in place; anything else is converted to one (a copy).
    level : float
        Iso-value (e.g. 0.5 for the cortical midsurface of a depth field).
    affine : ndarray (4, 4), optional
        Voxel-to-world affine (voxel index -> mm, NIfTI style). Identity if omitted.
    method : {"flying_edges", "lewiner"}
        VTK ``vtkFlyingEdges3D`` or scikit-image ``marching_cubes(method="lewiner")``.
    mask : ndarray of bool, optional
        Voxels allowed to take part; cells with a False corner produce no triangles.
    check_finite : bool
        Without ``mask``, look for NaN/inf voxels first (one read-only reduction over the
        volume). ``False`` skips it: only for fields known to be finite (a NaN voxel would then
        leave stray triangles in its cells).

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
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != volume.shape:
            raise CortexgraphError(
                f"mask shape {mask.shape} differs from volume shape {volume.shape}"
            )
    values = np.ascontiguousarray(volume, dtype=np.float32)  # no copy for float32 C order
    restricted = mask is not None
    if not restricted and check_finite:
        # NaN and inf propagate through a sum of squares (BLAS dot: the fastest full read; an
        # overflow only sends a finite volume down the restricted path, which is exact too)
        flat = values.reshape(-1)
        restricted = not np.isfinite(np.dot(flat, flat))

    if method == "flying_edges":
        points, faces = _flying_edges(values, level)
    else:
        if restricted:
            # scikit-image numbers vertices in visiting order, so invalid values would reorder
            # them: fill a copy below the level (NaN and outside the mask)
            valid = np.isfinite(values) if mask is None else np.isfinite(values) & mask
            filled = np.where(valid, values, np.float32(level) - 1.0)
            del valid
        try:
            points, faces = _lewiner(filled if restricted else values, level)
        except (ValueError, RuntimeError):  # level touches no cell
            return empty
    if len(faces) == 0:
        return empty
    if restricted:
        keep = _valid_cell_faces(points, faces, values, mask)
        if not keep.all():
            vertices_kji, faces = _drop_faces(points, faces, keep)
            points = vertices_kji
        if len(faces) == 0:
            return empty

    vertices = points[:, ::-1]  # (i, j, k) voxel coordinates, float32 view
    # one flip (one copy at most): normals uphill in voxel space, or a mirroring affine
    flip = _points_uphill(values, vertices, faces) != (np.linalg.det(affine[:3, :3]) < 0)
    world = vertices @ affine[:3, :3].T  # float64
    world += affine[:3, 3]
    return world, np.ascontiguousarray(faces[:, ::-1] if flip else faces, dtype=np.int64)
