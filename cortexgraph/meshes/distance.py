"""Exact point-to-triangle-mesh distances (for accuracy measurements against reference surfaces).

Candidates are the triangles incident to the ``k`` mesh vertices nearest to each query point (KD-tree);
the distance to each candidate triangle is exact (projection inside the triangle, else the nearest of its
three edges). For meshes whose triangles are not much larger than the query's distance to the surface the
nearest triangle is always among the candidates.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["point_triangle_distance", "point_mesh_distance"]


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30)
    closest = a + np.clip(t, 0.0, 1.0)[:, None] * ab
    return np.linalg.norm(p - closest, axis=1)


def point_triangle_distance(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """Euclidean distance from each point (N, 3) to its triangle (a[i], b[i], c[i]), all (N, 3)."""
    points, a, b, c = (np.asarray(x, dtype=np.float64) for x in (points, a, b, c))
    normal = np.cross(b - a, c - a)
    norm = np.linalg.norm(normal, axis=1)
    unit = normal / np.maximum(norm, 1e-30)[:, None]
    height = np.einsum("ij,ij->i", points - a, unit)
    foot = points - height[:, None] * unit
    # barycentric test of the foot point
    inside = norm > 1e-30
    for p, q in ((a, b), (b, c), (c, a)):
        inside &= np.einsum("ij,ij->i", np.cross(q - p, foot - p), normal) >= 0
    edges = np.minimum(
        np.minimum(_segment_distance(points, a, b), _segment_distance(points, b, c)),
        _segment_distance(points, c, a),
    )
    return np.where(inside, np.abs(height), edges)


def point_mesh_distance(
    points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 8, chunk: int = 50_000
) -> np.ndarray:
    """Distance (same units as the input, mm) from each point (N, 3) to the mesh (vertices, faces)."""
    points = np.asarray(points, dtype=np.float64)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    # vertex -> incident faces (CSR)
    owner = faces.ravel()
    order = np.argsort(owner, kind="stable")
    face_of = (order // 3).astype(np.int64)
    start = np.zeros(len(vertices) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(vertices)), out=start[1:])
    tree = cKDTree(vertices)
    k = min(k, len(vertices))
    out = np.empty(len(points))
    for lo in range(0, len(points), chunk):
        p = points[lo : lo + chunk]
        _, near = tree.query(p, k=k)
        near = near.reshape(len(p), k)
        counts = (start[near + 1] - start[near]).ravel()
        query = np.repeat(np.repeat(np.arange(len(p)), k), counts)
        first = np.repeat(start[near].ravel(), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = face_of[first + offset]
        tri = vertices[faces[cand]]
        d = point_triangle_distance(p[query], tri[:, 0], tri[:, 1], tri[:, 2])
        best = np.full(len(p), np.inf)
        np.minimum.at(best, query, d)
        out[lo : lo + chunk] = best
    return out
