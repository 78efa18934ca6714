"""Composite PNG figures of rendered pictures: a grid of panels with an area legend or a colour bar.

:func:`picture_grid` lays out already rendered RGB pictures (from :mod:`cortexgraph.render.surface`)
with titles, and adds either a legend of named colours (areas, or correct / wrong) or a colour bar
of a scalar map (probability, atlas map), with annotation and prediction side by side in several
views as in the GNN paper's figures (Schiffer et al., MICCAI 2021; docs/references.md).

A panel (:class:`Panel`) can carry what a reader needs to read a surface picture on its own: area
names placed on the areas (:func:`label_positions` finds a point deep inside every area region large
enough to hold its name; names that would overlap a name already placed are left to the legend), an
orientation marker (two arrows with the anatomical directions of screen right and screen up, e.g.
``P`` and ``S`` in a lateral view of a left hemisphere) and a scale bar in mm (a parallel projection
has one scale for the whole picture).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexgraph.outputs import atomic_path

__all__ = [
    "ColourBar",
    "Panel",
    "picture_grid",
    "trim_background",
    "trim_box",
    "label_positions",
    "mark_axes_picture",
]


@dataclass(frozen=True)
class ColourBar:
    """A colour bar: matplotlib colour map name, value range and label."""

    cmap: str
    vmin: float
    vmax: float
    label: str


@dataclass
class Panel:
    """One picture of a grid and what is drawn on it.

    Attributes
    ----------
    title : shown above the picture.
    picture : uint8 (h, w, 3).
    labels : ``(text, row_px, col_px)`` names placed on the picture (e.g. from :func:`label_positions`).
    mm_per_px : scale of the picture; draws a scale bar under it.
    directions : anatomical directions of screen right and screen up (``("P", "S")``); draws an
        orientation marker under the picture.
    """

    title: str
    picture: np.ndarray
    labels: Sequence[tuple[str, float, float]] = ()
    mm_per_px: float | None = None
    directions: tuple[str, str] | None = None


def trim_box(
    picture: np.ndarray, background=(255, 255, 255), margin_px: int = 4
) -> tuple[slice, slice]:
    """(rows, cols) slices of the content of a picture on a uniform background, plus ``margin_px``."""
    picture = np.asarray(picture)
    content = np.any(picture[..., :3] != np.asarray(background, dtype=picture.dtype), axis=-1)
    if not content.any():
        return slice(0, picture.shape[0]), slice(0, picture.shape[1])
    rows = np.nonzero(content.any(axis=1))[0]
    cols = np.nonzero(content.any(axis=0))[0]
    r0, r1 = max(rows[0] - margin_px, 0), min(rows[-1] + margin_px + 1, picture.shape[0])
    c0, c1 = max(cols[0] - margin_px, 0), min(cols[-1] + margin_px + 1, picture.shape[1])
    return slice(r0, r1), slice(c0, c1)


def trim_background(
    picture: np.ndarray, background=(255, 255, 255), margin_px: int = 4
) -> np.ndarray:
    """Crop the uniform background around a rendered picture (keeping ``margin_px``)."""
    return np.asarray(picture)[trim_box(picture, background, margin_px)]


def label_positions(
    ids: np.ndarray,
    names: Sequence[str],
    *,
    min_radius_px: float = 5.0,
    max_per_area: int = 1,
) -> list[tuple[str, float, float, float]]:
    """Where to write area names on a picture of areas.

    Parameters
    ----------
    ids : int (H, W) area index per pixel (-1 = background, border or unknown), e.g.
        :meth:`cortexgraph.render.surface.SurfaceRenderer.render_ids`.
    names : name of each index.
    min_radius_px : regions whose deepest point is closer than this to their edge get no name.
    max_per_area : name up to this many separate regions of one area (the deepest first; e.g. 2 on a
        section that cuts an area in both hemispheres).

    Returns
    -------
    ``[(name, row, col, radius_px)]``, deepest regions first: for each connected region of an index,
    the point farthest from the region's edge (Euclidean distance transform), so the name sits inside
    the area even when the area is curved or seen in several pieces.
    """
    from scipy import ndimage

    ids = np.asarray(ids)
    out = []
    for k in np.unique(ids[ids >= 0]):
        regions, count = ndimage.label(ids == k)
        found = []
        for index, box in enumerate(ndimage.find_objects(regions), start=1):
            if box is None:
                continue
            mask = regions[box] == index
            depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            radius = float(depth.max())
            if radius < min_radius_px:
                continue
            r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
            found.append((str(names[int(k)]), float(box[0].start + r), float(box[1].start + c),
                          radius))  # fmt: skip
        found.sort(key=lambda item: -item[3])
        out += found[: max(int(max_per_area), 1)]
    out.sort(key=lambda item: -item[3])
    return out


def _scale_bar_mm(width_mm: float) -> float:
    """A round length near a quarter of the picture's width."""
    for length in (100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1):
        if length <= 0.3 * width_mm:
            return length
    return 0.1


def picture_grid(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray] | Panel],
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
    panels : titled pictures, or :class:`Panel` with names, scale bar and orientation marker.
    ncols : pictures per row.
    legend : ``(name, rgb in [0, 1])`` entries shown as colour patches on the right (many entries
        are split into columns of 28), under ``legend_title``.
    colour_bar : a colour bar on the right.
    title : figure title (several lines allowed).
    dpi : pixels per inch of the PNG (text size).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, Patch

    if not panels:
        raise ValueError("no pictures to lay out")
    laid = [p if isinstance(p, Panel) else Panel(p[0], p[1]) for p in panels]
    nrows = int(np.ceil(len(laid) / ncols))
    title_px = 22
    footer_px = 34 if any(p.mm_per_px or p.directions for p in laid) else 0
    cell_h = max(p.picture.shape[0] for p in laid) + title_px + footer_px
    cell_w = max(max(p.picture.shape[1] for p in laid) + 8, 150 if footer_px else 0)
    title_lines = title.count("\n") + 1 if title else 0
    top_px = 16 + 18 * title_lines if title else 4
    canvas_rgb = np.full((top_px + nrows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    origins, corners = [], []
    for k, panel in enumerate(laid):
        row, col = divmod(k, ncols)
        h, w = panel.picture.shape[:2]
        r0 = top_px + row * cell_h + title_px + (cell_h - title_px - footer_px - h) // 2
        c0 = col * cell_w + (cell_w - w) // 2
        canvas_rgb[r0 : r0 + h, c0 : c0 + w] = panel.picture[..., :3]
        origins.append((top_px + row * cell_h, col * cell_w))
        corners.append((r0, c0))
    legend_columns = int(np.ceil(len(legend) / 28)) if legend else 0
    longest = max([len(name) for name, _ in legend] + [len(legend_title or "")]) if legend else 0
    side_px = max(90, int(5.2 * longest) + 40) * legend_columns + (110 if colour_bar else 0)
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

    halo = [patheffects.withStroke(linewidth=2.2, foreground="white")]
    for panel, (r0, c0), (pr, pc) in zip(laid, origins, corners, strict=True):
        x, y = at(r0 + title_px - 5, c0 + cell_w / 2)
        fig.text(x, y, panel.title, ha="center", va="bottom", fontsize=9)
        placed: list[tuple[float, float, float, float]] = []
        for text, label_row, label_col, *_ in panel.labels:
            half_w, half_h = 2.6 * len(text) + 2, 5.5  # 6.5 pt text at 100 dpi, in pixels
            box = (
                pr + label_row - half_h,
                pr + label_row + half_h,
                pc + label_col - half_w,
                pc + label_col + half_w,
            )
            if any(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3] for b in placed):
                continue  # would cover a name already placed: the legend names the area
            placed.append(box)
            x, y = at(pr + label_row, pc + label_col)
            fig.text(x, y, text, ha="center", va="center", fontsize=6.5, path_effects=halo)
        base = r0 + cell_h - 8  # baseline of the footer under the picture
        if panel.directions is not None:
            right, up = panel.directions
            ox, oy = c0 + 14, base
            for dx, dy, letter in ((22, 0, right), (0, -22, up)):
                start, end = at(oy, ox), at(oy + dy, ox + dx)
                fig.add_artist(
                    FancyArrowPatch(
                        start, end, transform=fig.transFigure, arrowstyle="-|>",
                        mutation_scale=7, linewidth=1.0, color="black",
                    )
                )  # fmt: skip
                lx, ly = at(oy + dy * 1.25 + (0 if dy else 1), ox + dx * 1.25 + (0 if dx else 1))
                fig.text(lx, ly, letter, ha="center", va="center", fontsize=7, weight="bold")
        if panel.mm_per_px:
            picture_w = panel.picture.shape[1]
            length_mm = _scale_bar_mm(picture_w * panel.mm_per_px)
            length_px = length_mm / panel.mm_per_px
            x1 = c0 + cell_w - 12
            x0 = x1 - length_px
            (fx0, fy), (fx1, _) = at(base - 4, x0), at(base - 4, x1)
            fig.add_artist(Line2D([fx0, fx1], [fy, fy], transform=fig.transFigure, lw=2.5, c="k"))
            tx, ty = at(base - 8, (x0 + x1) / 2)
            label = f"{length_mm:g} mm"
            fig.text(tx, ty, label, ha="center", va="bottom", fontsize=7)
    if title:
        x, y = at(top_px - 8, main_px / 2)
        fig.text(x, y, title, ha="center", va="bottom", fontsize=10, linespacing=1.3)
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


def mark_axes_picture(
    ax, width_px: int, mm_per_px: float | None, directions: tuple[str, str] | None
) -> None:
    """Orientation marker (bottom left) and scale bar (bottom right) on a matplotlib axes that shows
    a rendered picture ``width_px`` wide with ``imshow`` (for figures not laid out by
    :func:`picture_grid`)."""
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=2.0, foreground="white")]
    if directions is not None:
        right, up = directions
        origin = (0.05, 0.06)
        for (dx, dy), letter in (((0.09, 0.0), right), ((0.0, 0.09), up)):
            ax.annotate(
                "", xy=(origin[0] + dx, origin[1] + dy), xytext=origin, xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.0},
            )  # fmt: skip
            ax.text(origin[0] + 1.3 * dx, origin[1] + 1.3 * dy, letter, transform=ax.transAxes,
                    ha="center", va="center", fontsize=8, weight="bold",
                    path_effects=halo)  # fmt: skip
    if mm_per_px:
        length_mm = _scale_bar_mm(width_px * mm_per_px)
        fraction = length_mm / (width_px * mm_per_px)
        x1 = 0.95
        ax.plot([x1 - fraction, x1], [0.05, 0.05], transform=ax.transAxes, color="black", lw=2.5)
        ax.text(x1 - fraction / 2, 0.07, f"{length_mm:g} mm", transform=ax.transAxes,
                ha="center", va="bottom", fontsize=7, path_effects=halo)  # fmt: skip
