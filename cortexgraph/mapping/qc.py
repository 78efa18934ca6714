"""The build-graph QC picture: mapped points over a few sections, the midsurfaces from three sides.

Drawn with matplotlib (Agg, no display needed). Meshes are drawn by the painter's algorithm: triangles
sorted far to near, shaded by the cosine between their normal and the viewing direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.mapping.nodes import NodeSectionTable
from cortexgraph.outputs import atomic_path

VIEWS = {
    "lateral (from left)": (np.array([-1.0, 0.0, 0.0]), (1, 2), (-1, 1)),
    "dorsal": (np.array([0.0, 0.0, 1.0]), (0, 1), (1, 1)),
    "posterior": (np.array([0.0, -1.0, 0.0]), (0, 2), (1, 1)),
}
"""name -> (direction towards the viewer, world axes drawn as (horizontal, vertical), axis signs)."""


def draw_meshes(
    ax,
    meshes: list[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]],
    towards_viewer: np.ndarray,
    axes: tuple[int, int],
    signs: tuple[int, int],
    max_faces: int = 300_000,
) -> None:
    """Draw triangle meshes ``[(vertices, faces, rgb)]`` on a 2D matplotlib axis as seen from
    ``towards_viewer`` (all faces depth-sorted together, so meshes hide each other correctly)."""
    from matplotlib.collections import PolyCollection

    tri = np.concatenate([v[f] for v, f, _ in meshes])
    base = np.concatenate([np.tile(np.asarray(c, float), (len(f), 1)) for _, f, c in meshes])
    if len(tri) > max_faces:  # thin out very large meshes, keep the look
        pick = np.linspace(0, len(tri) - 1, max_faces).astype(np.int64)
        tri, base = tri[pick], base[pick]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = np.abs(normals @ towards_viewer)  # two-sided lighting
    order = np.argsort(tri.mean(axis=1) @ towards_viewer)  # far first
    polys = tri[order][:, :, list(axes)] * np.array(signs, dtype=np.float64)
    colors = np.clip(base[order] * (0.25 + 0.75 * shade[order])[:, None], 0, 1)
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="none"))
    ax.set_xlim(polys[..., 0].min(), polys[..., 0].max())
    ax.set_ylim(polys[..., 1].min(), polys[..., 1].max())
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def build_graph_qc_figure(
    path: str | Path,
    stack: SectionStack,
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    tables: dict[str, NodeSectionTable],
    *,
    n_sections: int = 3,
    title: str = "",
) -> Path:
    """Write the QC PNG: ``n_sections`` evenly spaced sections (image, mapped points: valid in colour per
    hemisphere, invalid in red) above the midsurfaces seen from three sides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = np.asarray(stack.sections)
    picks = sections[np.linspace(0, len(sections) - 1, n_sections + 2).astype(int)[1:-1]]
    fig, axes = plt.subplots(2, max(n_sections, 3), figsize=(5 * max(n_sections, 3), 9.5))
    hemi_colors = {"lh": "#1f77b4", "rh": "#2ca02c"}
    for ax, s in zip(axes[0], picks, strict=False):
        raster = stack.raster(int(s), "image")
        image = raster.read_at_spacing(max(raster.spacing_um, 100.0))
        width_mm, height_mm = stack.section_extent_mm(int(s))
        ax.imshow(image, cmap="gray", extent=(0, width_mm, height_mm, 0))
        for hemi, table in tables.items():
            on = table.section == s
            ok = on & table.valid
            ax.scatter(
                table.x_mm[ok],
                table.y_mm[ok],
                s=2,
                c=hemi_colors.get(hemi, "y"),
                label=f"{hemi}: {ok.sum()} valid",
            )
            bad = on & ~table.valid
            if bad.any():
                ax.scatter(
                    table.x_mm[bad],
                    table.y_mm[bad],
                    s=4,
                    c="red",
                    marker="x",
                    label=f"{hemi}: {bad.sum()} invalid",
                )
        ax.set_title(f"section {s}")
        ax.legend(loc="lower right", fontsize=7, markerscale=3)
        ax.set_xlabel("x (mm)")
    hemi_colors_rgb = {"lh": (0.55, 0.7, 0.9), "rh": (0.6, 0.85, 0.6)}
    for ax, (name, (towards, axes_pair, signs)) in zip(axes[1], VIEWS.items(), strict=False):
        coloured = [(v, f, hemi_colors_rgb.get(h, (0.8, 0.8, 0.8))) for h, (v, f) in meshes.items()]
        draw_meshes(ax, coloured, towards, axes_pair, signs)
        ax.set_title(f"midsurfaces, {name}")
    for ax in axes.ravel()[len(axes[0]) + len(VIEWS) :]:
        ax.axis("off")
    for ax in axes[0][len(picks) :]:
        ax.axis("off")
    fig.suptitle(f"build-graph QC {title}")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
