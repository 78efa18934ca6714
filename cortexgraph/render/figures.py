"""Composite PNG figures of rendered pictures: a grid of panels with an area legend or a colour bar.

:func:`picture_grid` lays out already rendered RGB pictures (from :mod:`cortexgraph.render.surface`)
with titles, and adds either a legend of named colours (areas, or correct / wrong) or a colour bar
of a scalar map (probability, atlas map), like the source's figure 7.10 (annotation and prediction
side by side, several views).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexgraph.outputs import atomic_path

__all__ = ["ColourBar", "picture_grid", "trim_background"]


@dataclass(frozen=True)
class ColourBar:
    """A colour bar: matplotlib colour map name, value range and label."""

    cmap: str
    vmin: float
    vmax: float
    label: str


def trim_background(
    picture: np.ndarray, background=(255, 255, 255), margin_px: int = 4
) -> np.ndarray:
    """Crop the uniform background around a rendered picture (keeping ``margin_px``)."""
    picture = np.asarray(picture)
    content = np.any(picture[..., :3] != np.asarray(background, dtype=picture.dtype), axis=-1)
    if not content.any():
        return picture
    rows = np.nonzero(content.any(axis=1))[0]
    cols = np.nonzero(content.any(axis=0))[0]
    r0, r1 = max(rows[0] - margin_px, 0), min(rows[-1] + margin_px + 1, picture.shape[0])
    c0, c1 = max(cols[0] - margin_px, 0), min(cols[-1] + margin_px + 1, picture.shape[1])
    return picture[r0:r1, c0:c1]


def picture_grid(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    *,
    ncols: int,
    legend: Sequence[tuple[str, tuple[float, float, float]]] | None = None,
    legend_title: str = "areas",
    colour_bar: ColourBar | None = None,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write a PNG grid of pictures (``(title, uint8 (h, w, 3))`` pairs, row-major) with a legend.

    The pictures are pasted at their own pixel size (centred in equal cells) into one image, so the
    PNG shows every rendered pixel once; titles, legend and colour bar are drawn with matplotlib.

    Parameters
    ----------
    path : output ``.png`` (written atomically).
    panels : titled pictures.
    ncols : pictures per row.
    legend : ``(name, rgb in [0, 1])`` entries shown as colour patches on the right (many entries
        are split into columns of 28), under ``legend_title``.
    colour_bar : a colour bar on the right.
    title : figure title.
    dpi : pixels per inch of the PNG (text size).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not panels:
        raise ValueError("no pictures to lay out")
    nrows = int(np.ceil(len(panels) / ncols))
    title_px = 22
    cell_h = max(p.shape[0] for _, p in panels) + title_px
    cell_w = max(p.shape[1] for _, p in panels) + 8
    top_px = 34 if title else 4
    canvas_rgb = np.full((top_px + nrows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    origins = []
    for k, (_, picture) in enumerate(panels):
        row, col = divmod(k, ncols)
        h, w = picture.shape[:2]
        r0 = top_px + row * cell_h + title_px + (cell_h - title_px - h) // 2
        c0 = col * cell_w + (cell_w - w) // 2
        canvas_rgb[r0 : r0 + h, c0 : c0 + w] = picture[..., :3]
        origins.append((top_px + row * cell_h, col * cell_w))
    legend_columns = int(np.ceil(len(legend) / 28)) if legend else 0
    side_px = 150 * legend_columns + (110 if colour_bar else 0)
    height_px, main_px = canvas_rgb.shape[0], canvas_rgb.shape[1]
    if legend:
        height_px = max(height_px, int(min(len(legend), 28) * 13 + 60))
    width_px = main_px + side_px
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    fig.patch.set_facecolor("white")
    FigureCanvasAgg(fig)
    # raw pixels, no resampling: the canvas sits at the top-left corner of the figure
    fig.figimage(canvas_rgb, xo=0, yo=height_px - canvas_rgb.shape[0], origin="upper")

    def at(row_px: float, col_px: float) -> tuple[float, float]:
        return col_px / width_px, 1.0 - row_px / height_px

    for (panel_title, _), (r0, c0) in zip(panels, origins, strict=True):
        x, y = at(r0 + title_px - 5, c0 + cell_w / 2)
        fig.text(x, y, panel_title, ha="center", va="bottom", fontsize=9)
    if title:
        x, y = at(top_px - 8, main_px / 2)
        fig.text(x, y, title, ha="center", va="bottom", fontsize=11)
    if legend:
        handles = [Patch(facecolor=rgb, edgecolor="none", label=name) for name, rgb in legend]
        fig.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(main_px / width_px, 0.5),
            ncol=legend_columns,
            fontsize=7,
            frameon=False,
            title=legend_title or None,
            title_fontsize=8,
        )
    if colour_bar is not None:
        left = (width_px - 80) / width_px
        cax = fig.add_axes((left, 0.15, 18 / width_px, 0.7))
        mappable = ScalarMappable(
            norm=Normalize(colour_bar.vmin, colour_bar.vmax), cmap=colour_bar.cmap
        )
        bar = fig.colorbar(mappable, cax=cax)
        bar.set_label(colour_bar.label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path
