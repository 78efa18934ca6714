"""The build-graph QC picture: mapped points over a few sections, the midsurfaces from three sides.

Drawn with matplotlib (Agg, no display needed); the meshes with the matplotlib back end of
:class:`cortexgraph.render.surface.SurfaceRenderer` (both hemispheres in one depth-sorted mesh).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.mapping.nodes import NodeSectionTable
from cortexgraph.outputs import atomic_path

QC_VIEWS = ("lateral", "dorsal", "posterior")
"""Views of the midsurfaces (lateral = from the left, :func:`cortexgraph.render.surface.view_camera`)."""

HEMI_RGB = {"lh": (140, 178, 230), "rh": (153, 217, 153)}


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
    from cortexgraph.render.surface import SurfaceRenderer

    vertices = np.vstack([v for v, _ in meshes.values()])
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes.values()])[:-1]
    faces = np.vstack([f + o for (_, f), o in zip(meshes.values(), offsets, strict=True)])
    rgb = np.vstack(
        [np.tile(HEMI_RGB.get(h, (200, 200, 200)), (len(v), 1)) for h, (v, _) in meshes.items()]
    ).astype(np.uint8)
    with SurfaceRenderer(vertices, faces, hemi="lh", size_px=(480, 400), backend="matplotlib") as r:
        for ax, view in zip(axes[1], QC_VIEWS, strict=False):
            ax.imshow(r.render(rgb, view))
            ax.set_title(f"midsurfaces, {view}")
            ax.axis("off")
    for ax in axes.ravel()[len(axes[0]) + len(QC_VIEWS) :]:
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
