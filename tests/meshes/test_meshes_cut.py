"""Virtual cutting of meshes with section planes."""

from __future__ import annotations

import numpy as np

from cortexgraph.meshes.cut import cut_mesh_with_plane

# regular octahedron: vertices 0..5 = +x, -x, +y, -y, +z, -z
OCTA_V = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float
)
OCTA_F = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)


def test_cut_octahedron_between_vertices():
    points, nodes = cut_mesh_with_plane(OCTA_V, OCTA_F, axis=1, offset_mm=0.25)
    # the four edges from +y (vertex 2) to the equator cross at 1/4 of their height
    expected = {
        (0.75, 0.25, 0.0): 0,
        (-0.75, 0.25, 0.0): 1,
        (0.0, 0.25, 0.75): 4,
        (0.0, 0.25, -0.75): 5,
    }
    assert len(points) == 4
    got = {tuple(np.round(p, 12)): int(n) for p, n in zip(points, nodes, strict=True)}
    assert got == expected  # nearer endpoint: the equator vertex
    points, nodes = cut_mesh_with_plane(OCTA_V, OCTA_F, axis=1, offset_mm=0.75)
    assert np.all(nodes == 2)  # now the apex is nearer


def test_vertices_on_the_plane_are_not_duplicated():
    points, nodes = cut_mesh_with_plane(OCTA_V, OCTA_F, axis=1, offset_mm=0.0)
    assert sorted(nodes.tolist()) == [0, 1, 4, 5]
    np.testing.assert_array_equal(points, OCTA_V[[0, 1, 4, 5]])


def test_cut_cube_along_z():
    # unit cube, each side two triangles (12 faces); plane z = 0.3 crosses the 4 vertical edges
    # and the 4 side diagonals
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    import trimesh

    box = trimesh.creation.box(extents=(1, 1, 1))
    faces = np.asarray(box.faces)
    vertices = np.asarray(box.vertices) + 0.5
    order = [int(np.flatnonzero((np.abs(vertices - c) < 1e-12).all(axis=1))[0]) for c in corners]
    points, nodes = cut_mesh_with_plane(vertices, faces, axis=2, offset_mm=0.3)
    assert len(points) == 8 and np.all(points[:, 2] == 0.3)
    on_edges = {(x, y) for x in (0, 1) for y in (0, 1)}
    vertical = [p for p in points if (round(p[0], 12), round(p[1], 12)) in on_edges]
    assert len(vertical) == 4
    # every point lies on the cube's surface, and its node is a bottom (z = 0) corner
    assert np.all(vertices[nodes, 2] == 0.0)
    assert set(nodes.tolist()) <= {order[i] for i in range(8) if corners[i, 2] == 0}
    side = np.minimum(
        np.minimum(points[:, 0], 1 - points[:, 0]), np.minimum(points[:, 1], 1 - points[:, 1])
    )
    assert np.allclose(side, 0.0)
