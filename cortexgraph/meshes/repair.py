"""Mesh clean-up: components, hemisphere split, topological repair, Poisson, isotropic remeshing.

Meshes are ``(vertices, faces)`` pairs: float64 (N, 3) positions in world mm and int64 (M, 3)
triangles. PyMeshLab filters are called with *every* parameter pinned, lengths as absolute mm via
``pymeshlab.PureValue`` (their defaults are percentages of the bounding box and changed between
MeshLab versions).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from cortexgraph.errors import CortexgraphError
from cortexgraph.meshes.io import mesh_problem

__all__ = [
    "hemisphere_faces",
    "mesh_quality",
    "vertex_mean_curvature",
    "spike_ratios",
    "close_small_holes",
    "smooth_spikes",
    "keep_large_components",
    "mask_clusters",
    "split_hemispheres",
    "repair_mesh",
    "poisson_reconstruct",
    "remesh_isotropic",
    "remove_unreferenced_vertices",
]


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    problem = mesh_problem(vertices, faces)
    if problem is not None:
        raise CortexgraphError(problem)
    return vertices, faces


def remove_unreferenced_vertices(
    vertices: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices used by no face; renumber faces (vertex order is kept)."""
    vertices, faces = _check_mesh(vertices, faces)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces].astype(np.int64)


def _face_components(n_vertices: int, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of faces (sharing a vertex); returns (count, label per face)."""
    n_faces = len(faces)
    rows = np.repeat(np.arange(n_faces), 3)
    graph = sp.csr_matrix(
        (np.ones(3 * n_faces, dtype=np.int8), (rows, faces.ravel())),
        shape=(n_faces, n_vertices),
    )
    # bipartite face-vertex graph: components over faces and vertices together
    full = sp.bmat([[None, graph], [graph.T, None]], format="csr")
    count, labels = connected_components(full, directed=False)
    return count, labels[:n_faces]


def keep_large_components(
    vertices: np.ndarray,
    faces: np.ndarray,
    min_faces: int | None = None,
    min_fraction: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected components with at least ``min_faces`` faces or ``min_fraction`` of the
    largest component's faces (give one of them; components connect through shared vertices).

    Returns the kept mesh with unreferenced vertices removed.
    """
    vertices, faces = _check_mesh(vertices, faces)
    if (min_faces is None) == (min_fraction is None):
        raise CortexgraphError("give exactly one of min_faces and min_fraction")
    if len(faces) == 0:
        return vertices[:0], faces
    _, labels = _face_components(len(vertices), faces)
    sizes = np.bincount(labels)
    threshold = min_faces if min_faces is not None else min_fraction * sizes.max()
    keep = sizes[labels] >= threshold
    return remove_unreferenced_vertices(vertices, faces[keep])


def mask_clusters(
    vertices: np.ndarray, faces: np.ndarray, mask: np.ndarray, affine: np.ndarray
) -> list[dict]:
    """The vertices of a mesh that lie in a voxel mask, grouped by mesh connectivity.

    Parameters
    ----------
    vertices : (N, 3) world mm; faces : (F, 3) vertex indices.
    mask : bool (X, Y, Z) volume; affine : 4x4 voxel -> world mm (axis-aligned, as build-graph's).
        A vertex is in the mask when its nearest voxel is set (outside the grid: not).

    Returns
    -------
    One dict per cluster (vertices in the mask connected through edges of the mesh whose two ends
    are in the mask), largest first: ``vertices`` (count), ``bbox_mm`` ([x, y, z] min, [x, y, z]
    max), ``component`` (label of the connected mesh component that holds it, components
    numbered by their lowest vertex) and ``component_vertices`` (its vertices).
    """
    v, f = _check_mesh(vertices, faces)
    if len(f) == 0:
        return []
    affine = np.asarray(affine, dtype=np.float64)
    index = np.rint((v - affine[:3, 3]) / np.diag(affine)[:3]).astype(np.int64)
    inside_grid = np.all((index >= 0) & (index < np.array(mask.shape)), axis=1)
    hit = np.zeros(len(v), dtype=bool)
    i = index[inside_grid]
    hit[inside_grid] = mask[i[:, 0], i[:, 1], i[:, 2]]
    if not hit.any():
        return []
    edges, _ = _edges(f)
    graph = sp.csr_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(len(v), len(v))
    )
    _, component = connected_components(graph, directed=False)
    component_size = np.bincount(component)
    inner = edges[hit[edges[:, 0]] & hit[edges[:, 1]]]
    sub = sp.csr_matrix(
        (np.ones(len(inner), dtype=np.int8), (inner[:, 0], inner[:, 1])), shape=(len(v), len(v))
    )
    _, cluster = connected_components(sub, directed=False)
    out = []
    for label in np.unique(cluster[hit]):
        members = hit & (cluster == label)
        out.append(
            {
                "vertices": int(members.sum()),
                "bbox_mm": [
                    [round(float(x), 2) for x in v[members].min(axis=0)],
                    [round(float(x), 2) for x in v[members].max(axis=0)],
                ],
                "component": int(component[members][0]),
                "component_vertices": int(component_size[component[members][0]]),
            }
        )
    return sorted(out, key=lambda c: -c["vertices"])


def split_hemispheres(
    vertices: np.ndarray, faces: np.ndarray, midline_x_mm: float = 0.0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split a mesh at the plane ``x = midline_x_mm`` (RAS: left is x < midline).

    Each face goes to the side of its centroid; unreferenced vertices are dropped per side.
    Returns ``{"left": (v, f), "right": (v, f)}``.
    """
    vertices, faces = _check_mesh(vertices, faces)
    centroid_x = vertices[faces, 0].mean(axis=1) if len(faces) else np.zeros(0)
    left = centroid_x < midline_x_mm
    return {
        "left": remove_unreferenced_vertices(vertices, faces[left]),
        "right": remove_unreferenced_vertices(vertices, faces[~left]),
    }


def hemisphere_faces(
    vertices: np.ndarray, faces: np.ndarray, midline_x_mm: float, rounds: int = 3
) -> np.ndarray:
    """Faces of the left hemisphere (bool per face) when a mesh of both is split at a sagittal plane.

    Each face first goes to the side of its centroid (``x < midline_x_mm``: left). A plane cannot
    follow a tilted or curved fissure, so a strip of one hemisphere's medial wall can land on the
    other side, where it forms a piece of its own. Then, per side, every piece (connected faces)
    other than the side's largest that touches the other side's largest piece and not its own
    largest moves to the other side (up to ``rounds`` times, until nothing moves).
    """
    v, f = _check_mesh(vertices, faces)
    left = v[f, 0].mean(axis=1) < midline_x_mm if len(f) else np.zeros(0, dtype=bool)
    for _ in range(rounds):
        moved = False
        pieces: dict[bool, tuple[np.ndarray, np.ndarray, set[int]]] = {}
        for side in (True, False):
            idx = np.flatnonzero(left == side)
            if len(idx) == 0:
                pieces[side] = (idx, np.zeros(0, int), set())
                continue
            _, labels = _face_components(len(v), f[idx])
            sizes = np.bincount(labels)
            main = int(np.argmax(sizes))
            pieces[side] = (idx, labels, set(np.unique(f[idx[labels == main]]).tolist()))
        for side in (True, False):
            idx, labels, own_main = pieces[side]
            other_main = pieces[not side][2]
            if len(idx) == 0 or not other_main:
                continue
            main = int(np.argmax(np.bincount(labels)))
            for piece in np.unique(labels):
                if piece == main:
                    continue
                members = idx[labels == piece]
                verts = set(np.unique(f[members]).tolist())
                if verts & other_main and not verts & own_main:
                    left[members] = not side
                    moved = True
        if not moved:
            break
    return left


def _meshset(vertices: np.ndarray, faces: np.ndarray):
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=vertices, face_matrix=faces.astype(np.int32)))
    return ms


def _current(ms) -> tuple[np.ndarray, np.ndarray]:
    mesh = ms.current_mesh()
    return (
        np.asarray(mesh.vertex_matrix(), dtype=np.float64),
        np.asarray(mesh.face_matrix(), dtype=np.int64),
    )


def repair_mesh(
    vertices: np.ndarray, faces: np.ndarray, *, max_rounds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Remove duplicate vertices and faces, zero-area faces, non-manifold edges (by removing faces)
    and non-manifold vertices (by splitting them), then unreferenced vertices.

    Repeats the cycle (at most ``max_rounds``) while it still changes the mesh, because removing
    faces at a non-manifold edge can create a non-manifold vertex.
    """
    vertices, faces = _check_mesh(vertices, faces)
    if len(faces) == 0:
        return vertices[:0], faces
    ms = _meshset(vertices, faces)
    for _ in range(max_rounds):
        before = (ms.current_mesh().vertex_number(), ms.current_mesh().face_number())
        ms.meshing_remove_duplicate_vertices()
        ms.meshing_remove_duplicate_faces()
        ms.meshing_remove_null_faces()
        ms.meshing_repair_non_manifold_edges(method="Remove Faces")
        ms.meshing_repair_non_manifold_vertices(vertdispratio=0.0)
        ms.meshing_remove_unreferenced_vertices()
        after = (ms.current_mesh().vertex_number(), ms.current_mesh().face_number())
        if after == before:
            break
    return _current(ms)


def poisson_reconstruct(
    vertices: np.ndarray,
    faces: np.ndarray,
    depth: int = 8,
    *,
    max_depth: int = 10,
    samples_per_node: float = 1.5,
    point_weight: float = 4.0,
    scale: float = 1.1,
    full_depth: int = 5,
    iterations: int = 8,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Screened Poisson surface reconstruction (Kazhdan & Hoppe 2013) of a mesh's vertices.

    Per-vertex normals are computed first from the faces (angle-weighted), so the input must be
    consistently oriented. ``depth`` is the octree depth, capped at ``max_depth`` (memory and time
    grow about 4-8x per level). All other PyMeshLab parameters are pinned here.
    """
    vertices, faces = _check_mesh(vertices, faces)
    if depth > max_depth:
        raise CortexgraphError(
            f"Poisson depth {depth} exceeds the cap {max_depth}",
            fix="lower depth (8 resolves ~1/256 of the bounding box) or raise max_depth",
        )
    ms = _meshset(vertices, faces)
    ms.compute_normal_per_vertex(weightmode="By Angle")
    ms.generate_surface_reconstruction_screened_poisson(
        visiblelayer=False,
        depth=int(depth),
        fulldepth=int(min(full_depth, depth)),
        cgdepth=0,
        scale=float(scale),
        samplespernode=float(samples_per_node),
        pointweight=float(point_weight),
        iters=int(iterations),
        confidence=False,
        preclean=False,
        threads=int(threads),
    )
    return _current(ms)


def remesh_isotropic(
    vertices: np.ndarray,
    faces: np.ndarray,
    target_edge_mm: float,
    iterations: int = 10,
    *,
    feature_angle_deg: float = 30.0,
    max_surface_distance_mm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic explicit remeshing (Surazhsky et al. 2003, PyMeshLab) to ``target_edge_mm``.

    Split, collapse, edge swap, tangential smoothing and reprojection are all on; the surface
    distance check uses ``max_surface_distance_mm`` (default: half the target edge). Lengths are
    absolute mm (``pymeshlab.PureValue``), never percentages of the bounding box.
    """
    import pymeshlab

    vertices, faces = _check_mesh(vertices, faces)
    if not target_edge_mm > 0:
        raise CortexgraphError(f"target_edge_mm must be positive, got {target_edge_mm}")
    if max_surface_distance_mm is None:
        max_surface_distance_mm = 0.5 * target_edge_mm
    ms = _meshset(vertices, faces)
    ms.meshing_isotropic_explicit_remeshing(
        iterations=int(iterations),
        adaptive=False,
        selectedonly=False,
        targetlen=pymeshlab.PureValue(float(target_edge_mm)),
        featuredeg=float(feature_angle_deg),
        checksurfdist=True,
        maxsurfdist=pymeshlab.PureValue(float(max_surface_distance_mm)),
        splitflag=True,
        collapseflag=True,
        swapflag=True,
        smoothflag=True,
        reprojectflag=True,
    )
    return _current(ms)


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct undirected edges (E, 2) of a triangle mesh and the number of faces of each."""
    pairs = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges, counts = np.unique(pairs, axis=0, return_counts=True)
    return edges, counts


def vertex_mean_curvature(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unsigned mean curvature per vertex (1/mm) from the cotangent Laplacian.

    ``|H| = |sum_j (cot a_ij + cot b_ij) (x_i - x_j)| / (4 A_i)`` with ``A_i`` a third of the area
    of the faces around vertex ``i`` (Meyer et al. 2003, barycentric areas). Boundary vertices get
    0 (their Laplacian measures the boundary, not the bending). Vertices of no face get 0.
    """
    v, f = _check_mesh(vertices, faces)
    n = len(v)
    if len(f) == 0:
        return np.zeros(n)
    lap = np.zeros((n, 3))
    area = np.zeros(n)
    for k in range(3):
        i, j, o = f[:, k], f[:, (k + 1) % 3], f[:, (k + 2) % 3]
        a, b = v[i] - v[o], v[j] - v[o]  # the angle at o faces edge (i, j)
        cross = np.linalg.norm(np.cross(a, b), axis=1)
        cot = np.einsum("ij,ij->i", a, b) / np.maximum(cross, 1e-12)
        diff = (v[i] - v[j]) * cot[:, None]
        np.add.at(lap, i, diff)
        np.add.at(lap, j, -diff)
    face_area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    for k in range(3):
        np.add.at(area, f[:, k], face_area / 3.0)
    h = np.linalg.norm(lap, axis=1) / np.maximum(4.0 * area, 1e-12)
    edges, counts = _edges(f)
    boundary = np.zeros(n, dtype=bool)
    boundary[edges[counts == 1].ravel()] = True
    h[boundary | (area == 0)] = 0.0
    return h


def _adjacency(n: int, faces: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Vertex adjacency (CSR, symmetric), the edges and the boundary-vertex flags of a mesh."""
    edges, counts = _edges(faces)
    adjacency = sp.csr_matrix(
        (np.ones(2 * len(edges)), (edges.ravel(), edges[:, ::-1].ravel())), shape=(n, n)
    )
    boundary = np.zeros(n, dtype=bool)
    boundary[edges[counts == 1].ravel()] = True
    return adjacency, edges, boundary


def spike_ratios(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """How far each vertex sticks out of its neighbours: the distance from the centroid of its
    neighbours over the median edge length of the mesh (0 on a plane, about ``e / 4R`` on a sphere
    of radius ``R`` with edges ``e``, larger than 1 for a needle; the median, not the vertex's own
    edges, which a needle lengthens). Boundary vertices (whose neighbours lie on one side) and
    vertices of no face get 0."""
    v, f = _check_mesh(vertices, faces)
    n = len(v)
    if len(f) == 0:
        return np.zeros(n)
    adjacency, edges, boundary = _adjacency(n, f)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    centroid = (adjacency @ v) / np.maximum(degree, 1)[:, None]
    length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    ratio = np.linalg.norm(v - centroid, axis=1) / max(float(np.median(length)), 1e-12)
    ratio[boundary | (degree == 0)] = 0.0
    return ratio


def mesh_quality(
    vertices: np.ndarray, faces: np.ndarray, max_spike_ratio: float = 1.0
) -> dict:
    """What build-graph reports about a mesh: components, topology, boundary, curvature, spikes.

    Returns ``components`` (count), ``component_faces`` (faces of the largest five, descending),
    ``euler`` (V - E + F over used vertices), ``boundary_edges`` (edges of one face),
    ``boundary_loops`` (connected chains of boundary edges: holes and cut ends), ``genus``
    (``(2 C - euler - loops) / 2``, 0 for a sheet without handles), ``nonmanifold_edges`` (edges
    of three or more faces), ``max_curvature_per_mm`` and ``p99_curvature_per_mm`` (unsigned mean
    curvature, :func:`vertex_mean_curvature`), ``max_spike_ratio`` (:func:`spike_ratios`) and
    ``spikes``: vertices whose spike ratio exceeds ``max_spike_ratio``.
    """
    v, f = _check_mesh(vertices, faces)
    if len(f) == 0:
        return {"components": 0, "component_faces": [], "euler": 0, "boundary_edges": 0,
                "boundary_loops": 0, "genus": 0, "nonmanifold_edges": 0,
                "max_curvature_per_mm": 0.0, "p99_curvature_per_mm": 0.0,
                "max_spike_ratio": 0.0, "spikes": 0}  # fmt: skip
    _, labels = _face_components(len(v), f)
    sizes = np.bincount(labels)
    sizes = np.sort(sizes[sizes > 0])[::-1]
    used = np.unique(f)
    edges, counts = _edges(f)
    boundary = edges[counts == 1]
    loops = 0
    if len(boundary):
        nodes = np.unique(boundary)
        index = np.searchsorted(nodes, boundary)
        graph = sp.csr_matrix(
            (np.ones(len(boundary)), (index[:, 0], index[:, 1])), shape=(len(nodes), len(nodes))
        )
        loops = int(connected_components(graph, directed=False)[0])
    euler = int(len(used) - len(edges) + len(f))
    h = vertex_mean_curvature(v, f)[used]
    ratio = spike_ratios(v, f)[used]
    return {
        "components": int(len(sizes)),
        "component_faces": [int(x) for x in sizes[:5]],
        "euler": euler,
        "boundary_edges": int(len(boundary)),
        "boundary_loops": loops,
        "genus": int(round((2 * len(sizes) - euler - loops) / 2)),
        "nonmanifold_edges": int((counts > 2).sum()),
        "max_curvature_per_mm": float(h.max()),
        "p99_curvature_per_mm": float(np.percentile(h, 99)),
        "max_spike_ratio": float(ratio.max()),
        "spikes": int((ratio > max_spike_ratio).sum()),
    }


def close_small_holes(
    vertices: np.ndarray, faces: np.ndarray, max_hole_edges: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Close holes bounded by at most ``max_hole_edges`` edges (PyMeshLab, no self-intersecting
    patches). Larger boundary loops, such as the cut ends of a slab, stay open."""
    v, f = _check_mesh(vertices, faces)
    if len(f) == 0 or max_hole_edges < 3:
        return v, f
    ms = _meshset(v, f)
    ms.meshing_close_holes(
        maxholesize=int(max_hole_edges),
        selected=False,
        newfaceselected=False,
        selfintersection=True,
        refinehole=False,
    )
    return _current(ms)


def smooth_spikes(
    vertices: np.ndarray, faces: np.ndarray, max_spike_ratio: float = 1.0, max_rounds: int = 10
) -> tuple[np.ndarray, dict]:
    """Move the vertices whose spike ratio (:func:`spike_ratios`) exceeds ``max_spike_ratio`` to
    the centroid of their neighbours, round by round, until none is left or ``max_rounds`` is
    reached; the other vertices do not move. Returns the vertices and ``{"spikes_before",
    "spikes_after", "rounds"}``.
    """
    v, f = _check_mesh(vertices, faces)
    v = v.copy()
    if len(f) == 0 or not max_spike_ratio > 0:
        return v, {"spikes_before": 0, "spikes_after": 0, "rounds": 0}
    adjacency, _, _ = _adjacency(len(v), f)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    spikes = spike_ratios(v, f) > max_spike_ratio
    before = int(spikes.sum())
    rounds = 0
    while spikes.any() and rounds < max_rounds:
        centroid = (adjacency @ v) / np.maximum(degree, 1)[:, None]
        v[spikes] = centroid[spikes]
        spikes = spike_ratios(v, f) > max_spike_ratio
        rounds += 1
    return v, {"spikes_before": before, "spikes_after": int(spikes.sum()), "rounds": rounds}
