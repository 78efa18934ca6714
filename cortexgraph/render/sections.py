"""Section overlay pictures: a section image with area labels painted over it (matplotlib, Agg).

:func:`overlay_labels` blends label colours into a gray section image (an array in, an RGB array
out); :func:`section_overlay_figure` writes a PNG with one panel per label image (e.g. projected
labels and ground truth) over the same section, and a legend of the areas present, coloured from the
area table. Used by ``cortexgraph project`` (``labels/<source>/overlays/sNNNN.png``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable
from cortexgraph.outputs import atomic_path
from cortexgraph.render.colors import area_id_colours

__all__ = ["overlay_labels", "label_borders", "section_overlay_figure", "legend_entries"]


def label_borders(labels: np.ndarray) -> np.ndarray:
    """bool (rows, cols): labelled pixels with a 4-neighbour of another label (area borders)."""
    labels = np.asarray(labels)
    border = np.zeros(labels.shape, dtype=bool)
    diff_rows = labels[1:, :] != labels[:-1, :]
    diff_cols = labels[:, 1:] != labels[:, :-1]
    border[1:, :] |= diff_rows
    border[:-1, :] |= diff_rows
    border[:, 1:] |= diff_cols
    border[:, :-1] |= diff_cols
    return border & (labels > 0)


def overlay_labels(
    image: np.ndarray,
    labels: np.ndarray,
    colours: np.ndarray,
    *,
    alpha: float = 0.6,
    borders: bool = True,
) -> np.ndarray:
    """Blend area colours into a section image.

    Parameters
    ----------
    image : (rows, cols) gray image (uint8 0..255, or float in the same range).
    labels : (rows, cols) area ids, 0 = unlabelled (left as the plain image).
    colours : uint8 (max_id + 1, 3) colour table indexed by area id
        (:func:`cortexgraph.render.colors.area_id_colours`).
    alpha : opacity of the label colours.
    borders : darken the pixels on borders between labels (areas and unlabelled).

    Returns
    -------
    uint8 (rows, cols, 3) RGB picture.
    """
    image = np.asarray(image, dtype=np.float64)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in shape")
    if labels.size and labels.max() >= len(colours):
        raise ValueError(f"label {labels.max()} has no colour (table of {len(colours)} rows)")
    gray = np.repeat(np.clip(image, 0, 255)[..., None], 3, axis=-1)
    out = gray.copy()
    on = labels > 0
    tint = colours[labels[on]].astype(np.float64)
    out[on] = (1.0 - alpha) * gray[on] + alpha * tint
    if borders:
        edge = label_borders(labels)
        out[edge] = 0.45 * colours[labels[edge]].astype(np.float64)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def legend_entries(areas: AreaTable, ids: Sequence[int]) -> list[tuple[str, tuple[float, ...]]]:
    """(name, rgb in [0, 1]) of the given area ids that are in the table, sorted by id."""
    entries = []
    for area_id in sorted({int(i) for i in ids if int(i) > 0}):
        if area_id in areas:
            area = areas.by_id[area_id]
            entries.append((area.name, tuple(c / 255.0 for c in area.rgb)))
    return entries


def _crop_window(shape, label_images, spacing_um, margin_mm) -> tuple[slice, slice]:
    whole = (slice(0, shape[0]), slice(0, shape[1]))
    if margin_mm is None:
        return whole
    labelled = np.zeros(shape, dtype=bool)
    for labels in label_images:
        labelled |= np.asarray(labels) > 0
    if not labelled.any():
        return whole
    rows = np.nonzero(labelled.any(axis=1))[0]
    cols = np.nonzero(labelled.any(axis=0))[0]
    pad = int(np.ceil(margin_mm * 1000.0 / spacing_um))
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, shape[0])),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, shape[1])),
    )


def section_overlay_figure(
    path: str | os.PathLike,
    image: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    areas: AreaTable,
    *,
    spacing_um: float,
    title: str = "",
    alpha: float = 0.6,
    crop_margin_mm: float | None = 4.0,
    panel_inches: float = 5.0,
    dpi: int = 100,
) -> Path:
    """Write a PNG: the section image under each label image of ``panels``, with an area legend.

    Parameters
    ----------
    path : output ``.png`` (written atomically).
    image : (rows, cols) gray section image on the labels' pixel grid.
    panels : ``(title, labels)`` pairs; labels (rows, cols) area ids, 0 = unlabelled.
    areas : the cohort's area table (colours and names).
    spacing_um : pixel spacing (axes are labelled in section mm, origin top-left).
    title : figure title.
    crop_margin_mm : show only the box around the labelled pixels of all panels, widened by this
        margin (``None``: the whole section).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    present = set()
    for _, labels in panels:
        present.update(np.unique(labels).tolist())
    max_id = max([int(areas.ids.max(initial=0))] + [int(v) for v in present])
    colours = area_id_colours(areas, max_id)
    image = np.asarray(image)
    window = _crop_window(image.shape, [labels for _, labels in panels], spacing_um, crop_margin_mm)
    image = image[window]
    panels = [(panel_title, np.asarray(labels)[window]) for panel_title, labels in panels]
    rows, cols = image.shape
    r0, c0 = window[0].start, window[1].start
    scale = spacing_um / 1000.0
    extent = (c0 * scale, (c0 + cols) * scale, (r0 + rows) * scale, r0 * scale)
    aspect = rows / max(cols, 1)
    entries = legend_entries(areas, present)
    legend_columns = max(1, int(np.ceil(len(entries) / 30)))
    width = panel_inches * len(panels) + 1.6 * legend_columns
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, panel_inches * aspect + 0.8), squeeze=False
    )
    for ax, (panel_title, labels) in zip(axes[0], panels, strict=True):
        picture = overlay_labels(image, labels, colours, alpha=alpha)
        ax.imshow(picture, extent=extent, interpolation="nearest")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("x (mm)", fontsize=8)
        ax.set_ylabel("y (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
    if entries:
        handles = [Patch(facecolor=rgb, edgecolor="none", label=name) for name, rgb in entries]
        fig.legend(
            handles=handles,
            loc="center right",
            ncol=legend_columns,
            fontsize=7,
            frameon=False,
            title="areas",
            title_fontsize=8,
        )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 * legend_columns / width, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
