"""The build-graph QC picture: mapped points over a few sections, the midsurfaces from three sides.

Drawn with matplotlib (Agg, no display needed); the meshes with the matplotlib back end of
:class:`cortexgraph.render.surface.SurfaceRenderer` (both hemispheres in one depth-sorted mesh).
Each section panel names the section's role (training, test or unannotated section), shows a
mirrored section flipped back and marks the brain's right (R) and superior (S) directions; each
surface panel has an orientation marker and a scale bar (:mod:`cortexgraph.render.sections`,
:func:`cortexgraph.render.figures.mark_axes_picture`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.mapping.nodes import NodeSectionTable
from cortexgraph.outputs import save_figure

QC_VIEWS = ("lateral", "dorsal", "posterior")
"""Views of the midsurfaces (lateral = from the left, :func:`cortexgraph.render.surface.view_camera`)."""

HEMI_RGB = {"lh": (140, 178, 230), "rh": (153, 217, 153)}


def _rgb01(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """An 8-bit RGB colour as matplotlib's 0-1 floats."""
    return (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)


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

    from cortexgraph.render.sections import _orientation_marker, section_context, section_roles

    sections = np.asarray(stack.sections)
    picks = sections[np.linspace(0, len(sections) - 1, n_sections + 2).astype(int)[1:-1]]
    roles = section_roles(stack.brain, stack)
    fig, axes = plt.subplots(2, max(n_sections, 3), figsize=(5 * max(n_sections, 3), 9.8))
    hemi_colors = {"lh": "#1f77b4", "rh": "#2ca02c"}
    for ax, s in zip(axes[0], picks, strict=False):
        raster = stack.raster(int(s), "image")
        image = raster.read_at_spacing(max(raster.spacing_um, 100.0))
        width_mm, height_mm = stack.section_extent_mm(int(s))
        context = section_context(stack, int(s), roles.get(int(s), ""))
        extent: tuple[float, float, float, float] = (0.0, width_mm, height_mm, 0.0)
        if context.mirrored:  # flipped back: the hemispheres on their true sides
            image, extent = image[:, ::-1], (width_mm, 0, height_mm, 0)
        ax.imshow(image, cmap="gray", extent=extent)
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
        mirrored = ", mirrored: shown flipped back" if context.mirrored else ""
        role = {
            "training section": "annotated, a training section of the split",
            "test section": "annotated, a test section of the split",
        }.get(context.role, context.role)
        ax.set_title(f"section {s} ({role}{mirrored})", fontsize=9)
        ax.legend(loc="lower right", fontsize=7, markerscale=3)
        ax.set_xlabel("x (mm, section image)" + (", flipped" if context.mirrored else ""))
        ax.set_ylabel("y (mm, section image)")
        _orientation_marker(ax, context.orientation, context.mirrored)
    from matplotlib.patches import Patch

    from cortexgraph.render.figures import mark_axes_picture, trim_box
    from cortexgraph.render.surface import SurfaceRenderer, screen_directions

    vertices = np.vstack([v for v, _ in meshes.values()])
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes.values()])[:-1]
    faces = np.vstack([f + o for (_, f), o in zip(meshes.values(), offsets, strict=True)])
    rgb = np.vstack(
        [np.tile(HEMI_RGB.get(h, (200, 200, 200)), (len(v), 1)) for h, (v, _) in meshes.items()]
    ).astype(np.uint8)
    with SurfaceRenderer(vertices, faces, hemi="lh", size_px=(480, 400), backend="matplotlib") as r:
        for ax, view in zip(axes[1], QC_VIEWS, strict=False):
            picture = r.render(rgb, view)
            picture = picture[trim_box(picture, margin_px=40)]
            ax.imshow(picture)
            ax.set_title(f"midsurfaces, {view}")
            ax.axis("off")
            mark_axes_picture(ax, picture.shape[1], r.mm_per_px(view), screen_directions(view, "lh"))
        axes[1][0].legend(
            handles=[Patch(color=_rgb01(HEMI_RGB[h]), label=h) for h in meshes if h in HEMI_RGB],
            loc="upper right", fontsize=8, frameon=False,
        )  # fmt: skip
    for ax in axes.ravel()[len(axes[0]) + len(QC_VIEWS) :]:
        ax.axis("off")
    for ax in axes[0][len(picks) :]:
        ax.axis("off")
    fig.suptitle(
        f"build-graph QC {title}: mapped section points (valid per hemisphere, invalid in red) and "
        "the midsurfaces"
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
