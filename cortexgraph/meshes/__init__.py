"""Geometry core: Laplace depth, isosurfaces, mesh repair and remeshing, mesh graphs, plane cuts."""

from cortexgraph.meshes.cut import cut_mesh_with_plane
from cortexgraph.meshes.graph import (
    edges_from_faces,
    load_graph,
    save_graph_h5,
)
from cortexgraph.meshes.io import read_gifti_surface, write_gifti_surface, write_ply
from cortexgraph.meshes.isosurface import extract_isosurface
from cortexgraph.meshes.laplace import laplace_system, solve_laplace_depth
from cortexgraph.meshes.repair import (
    keep_large_components,
    poisson_reconstruct,
    remesh_isotropic,
    remove_unreferenced_vertices,
    repair_mesh,
    split_hemispheres,
)

__all__ = [
    "cut_mesh_with_plane",
    "edges_from_faces",
    "extract_isosurface",
    "keep_large_components",
    "laplace_system",
    "load_graph",
    "poisson_reconstruct",
    "read_gifti_surface",
    "remesh_isotropic",
    "remove_unreferenced_vertices",
    "repair_mesh",
    "save_graph_h5",
    "solve_laplace_depth",
    "split_hemispheres",
    "write_gifti_surface",
    "write_ply",
]
