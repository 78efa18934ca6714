"""Point-to-mesh distances against analytic values and brute force."""

import numpy as np
import trimesh

from cortexgraph.meshes.distance import point_mesh_distance, point_triangle_distance


def test_point_triangle_distance_regions():
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    points = np.array(
        [
            [0.2, 0.2, 0.5],  # above the interior: height
            [-1.0, -1.0, 0.0],  # beyond vertex a
            [0.5, -2.0, 1.0],  # beyond edge ab
            [1.0, 1.0, 0.0],  # beyond the hypotenuse
        ]
    )
    expected = [0.5, np.sqrt(2.0), np.sqrt(5.0), np.sqrt(2.0) / 2]
    n = len(points)
    d = point_triangle_distance(points, np.tile(a, (n, 1)), np.tile(b, (n, 1)), np.tile(c, (n, 1)))
    np.testing.assert_allclose(d, expected, atol=1e-12)


def test_point_mesh_distance_equals_brute_force_near_a_sphere():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * rng.uniform(8.5, 11.5, size=(500, 1))
    d = point_mesh_distance(points, mesh.vertices, mesh.faces)
    tri = mesh.vertices[mesh.faces]
    brute = np.array(
        [
            point_triangle_distance(np.tile(p, (len(tri), 1)), tri[:, 0], tri[:, 1], tri[:, 2]).min()
            for p in points
        ]
    )
    np.testing.assert_allclose(d, brute, atol=1e-9)
    # and the faceted sphere is within its sagitta of the analytic sphere
    np.testing.assert_allclose(d, np.abs(np.linalg.norm(points, axis=1) - 10.0), atol=0.1)
