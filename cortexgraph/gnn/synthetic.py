"""Synthetic mesh-like graphs for tests and benchmarks: a triangulated grid on a torus or a plane.

Every interior vertex of the triangulated grid has degree 6, like the vertices of the isotropically
remeshed midsurfaces (graph-pipeline.md section 4: mean degree 6, ~760k nodes and ~4.5M directed
edges per hemisphere).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["triangulated_grid_edges", "synthetic_mesh_graph"]


def triangulated_grid_edges(rows: int, cols: int, periodic: bool = True) -> torch.Tensor:
    """Directed edges (both directions) of a ``rows x cols`` grid split into triangles.

    Vertex ``(r, c)`` has id ``r * cols + c`` and is joined to ``(r, c+1)``, ``(r+1, c)`` and
    ``(r+1, c+1)``. With ``periodic=True`` indices wrap around (a torus: every vertex has degree 6,
    ``E = 6 * rows * cols``); otherwise the grid has a boundary.

    Returns
    -------
    LongTensor (2, E)
    """
    if rows < 2 or cols < 2:
        raise ValueError("rows and cols must be >= 2")
    if periodic and (rows < 3 or cols < 3):
        raise ValueError("a periodic grid needs rows, cols >= 3 (no duplicate edges)")
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    src_parts, dst_parts = [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1)):
        r2, c2 = r + dr, c + dc
        if periodic:
            keep = np.ones(r.size, bool)
            r2, c2 = r2 % rows, c2 % cols
        else:
            keep = (r2 < rows) & (c2 < cols)
        src_parts.append(r[keep] * cols + c[keep])
        dst_parts.append(r2[keep] * cols + c2[keep])
    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    edges = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return torch.from_numpy(edges.astype(np.int64))


def synthetic_mesh_graph(
    rows: int,
    cols: int,
    feature_dims: dict[str, int] | None = None,
    num_classes: int = 8,
    labelled_fraction: float = 0.1,
    test_fraction: float = 0.2,
    feature_dtype: torch.dtype = torch.float32,
    seed: int = 0,
    periodic: bool = True,
    informative: bool = False,
):
    """A ``torch_geometric.data.Data`` graph on a triangulated torus grid with random features.

    Classes are vertical stripes of the grid (contiguous "areas"). A random ``labelled_fraction`` of
    nodes carries its class in ``y`` (others -1); of those, ``test_fraction`` go to ``test_mask``
    and the rest to ``train_mask``. Features are standard normal noise (CO: grid coordinates scaled
    to [-1, 1]); with ``informative=True`` three times the class id is added to the first CY channel so a model
    can learn it (classes 3 standard deviations apart). ``pos`` is the grid point in mm (0.3 mm spacing).
    """
    from torch_geometric.data import Data

    if feature_dims is None:
        feature_dims = {"cy": 2048, "pm": 152, "co": 3}
    n = rows * cols
    gen = torch.Generator().manual_seed(seed)
    rr = torch.arange(rows).repeat_interleave(cols)
    cc = torch.arange(cols).repeat(rows)
    area = (cc * num_classes) // cols
    data = Data(edge_index=triangulated_grid_edges(rows, cols, periodic), num_nodes=n)
    data.pos = torch.stack([cc * 0.3, rr * 0.3, torch.zeros(n)], 1).float()
    for name, dim in feature_dims.items():
        if name == "co" and dim == 3:
            x = torch.stack(
                [2 * cc / (cols - 1) - 1, 2 * rr / (rows - 1) - 1, torch.zeros(n)], 1
            ).to(feature_dtype)
        else:
            x = torch.empty((n, dim), dtype=feature_dtype)
            chunk = 65536
            for start in range(0, n, chunk):  # chunked so float16 storage never holds float32
                stop = min(start + chunk, n)
                x[start:stop] = torch.randn((stop - start, dim), generator=gen).to(feature_dtype)
            if informative and name == "cy":
                x[:, 0] += 3.0 * area.to(feature_dtype)
        setattr(data, f"x_{name}", x)
    labelled = torch.rand(n, generator=gen) < labelled_fraction
    data.y = torch.where(labelled, area, torch.full_like(area, -1))
    is_test = torch.rand(n, generator=gen) < test_fraction
    data.train_mask = labelled & ~is_test
    data.test_mask = labelled & is_test
    return data
