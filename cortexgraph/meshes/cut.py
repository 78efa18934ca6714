"""Virtual cutting: intersect a mesh with an axis-aligned plane (a section plane).

Each mesh edge that crosses the plane ``coordinate[axis] == offset_mm`` gives one intersection point
(linear interpolation along the edge), identified with the nearer endpoint of its edge, i.e. the
graph node it belongs to (Schiffer, PhD thesis, Sect. 7.1.1 and Fig. 7.4). Vertices lying exactly on the plane give
one point each (their own position and index), and their edges give none, so nothing is duplicated.
"""

from __future__ import annotations

import numpy as np

from cortexgraph.errors import CortexgraphError
from cortexgraph.meshes.graph import edges_from_faces

__all__ = ["cut_mesh_with_plane"]


def cut_mesh_with_plane(
    vertices: np.ndarray, faces: np.ndarray, axis: int = 1, offset_mm: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Intersection points of the mesh edges with the plane ``coordinate[axis] == offset_mm``.

    Parameters
    ----------
    vertices : ndarray float (N, 3)
        Vertex positions in world mm.
    faces : ndarray int (M, 3)
        Triangles.
    axis : int
        0, 1 or 2 (x, y, z); sections are planes of constant y (``axis=1``).
    offset_mm : float
        Plane position in mm.

    Returns
    -------
    points_mm : ndarray float64 (K, 3)
        Points on the plane: first the vertices lying on it (ascending index), then one point per
        strictly crossing edge (edges sorted by (lower, higher) vertex index).
    node_index : ndarray int64 (K,)
        The vertex (graph node) of each point: the vertex itself, or the nearer endpoint of the
        crossing edge (ties go to the lower index).
    """
    if axis not in (0, 1, 2):
        raise CortexgraphError(f"axis must be 0, 1 or 2, got {axis}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    signed = vertices[:, axis] - float(offset_mm)

    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    on_plane = np.flatnonzero(used & (signed == 0.0))

    # only faces with vertices on both sides can hold crossing edges
    side = signed[faces]
    straddling = faces[(side.min(axis=1) < 0) & (side.max(axis=1) > 0)]
    edges = edges_from_faces(straddling, len(vertices))
    a, b = edges[:, edges[0] < edges[1]]
    sa, sb = signed[a], signed[b]
    crossing = ((sa < 0) & (sb > 0)) | ((sa > 0) & (sb < 0))
    a, b, sa, sb = a[crossing], b[crossing], sa[crossing], sb[crossing]
    t = sa / (sa - sb)  # in (0, 1): position along a -> b
    points = vertices[a] + t[:, None] * (vertices[b] - vertices[a])
    points[:, axis] = float(offset_mm)  # exact on the plane
    nearer = np.where(t <= 0.5, a, b)

    points_mm = np.concatenate([vertices[on_plane], points])
    node_index = np.concatenate([on_plane, nearer]).astype(np.int64)
    return points_mm, node_index
