"""Section overlay pictures: a section image with area labels painted over it (matplotlib, Agg).

:func:`overlay_labels` blends label colours into a gray section image (an array in, an RGB array
out); :func:`section_overlay_figure` writes a PNG with one panel per label image (e.g. projected
labels and ground truth) over the same section, the area names written on the areas, and a legend
of the areas present, coloured from the display table (:mod:`cortexgraph.data.colors`). Used by
``cortexgraph project`` (``labels/<source>/overlays/sNNNN.png``).

What a reader needs to read a section on its own (:func:`section_context`): its **role** for the
model run (training section, test section, unannotated section, or a section of the transfer
brain), whether it is **mirrored** (stored flipped left-right; shown flipped back, so the two
hemispheres are on their true sides), and an **orientation marker**: arrows to the brain's right
(R) and superior (S) side, from the section's rigid transform into the reconstruction frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexgraph.data.colors import area_id_colours
from cortexgraph.data.manifest import AreaTable
from cortexgraph.outputs import atomic_path

__all__ = [
    "overlay_labels",
    "label_borders",
    "section_overlay_figure",
    "legend_entries",
    "SectionContext",
    "section_context",
    "section_roles",
]


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
        (:func:`cortexgraph.data.colors.area_id_colours`).
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


def unit_rgb(rgb: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """An 8-bit (r, g, b) colour (0..255) as fractions in [0, 1]."""
    return (float(rgb[0]) / 255.0, float(rgb[1]) / 255.0, float(rgb[2]) / 255.0)


def legend_entries(
    areas: AreaTable, ids: Iterable[int]
) -> list[tuple[str, tuple[float, float, float]]]:
    """(name, rgb in [0, 1]) of the given area ids that are in the table, sorted by id."""
    from cortexgraph.data.colors import area_rgb

    colours = area_rgb(areas)
    entries = []
    for area_id in sorted({int(i) for i in ids if int(i) > 0}):
        if area_id in areas:
            area = areas.by_id[area_id]
            entries.append((area.name, unit_rgb(colours[area_id])))
    return entries


@dataclass(frozen=True)
class SectionContext:
    """How to show and name one section.

    Attributes
    ----------
    role : e.g. ``"test section"`` (:func:`section_roles`).
    mirrored : the section is stored flipped left-right (``sections.tsv``).
    orientation : 2x2 matrix: world (x right, z superior) direction of a unit step along the
        section image's (x right, y down) axes, as the section is stored.
    """

    role: str
    mirrored: bool
    orientation: np.ndarray


def section_roles(brain, stack, run_config: dict | None = None) -> dict[int, str]:
    """``{section: role}`` of every available section of a brain.

    Without a run: ``training section`` / ``test section`` (the node-labels split: every 5th annotated
    section is a test section; read from the brain's ``node-labels`` record when it exists) or
    ``unannotated section``. With a model run's settings (``run_config``, keys ``train_brains`` and
    ``transfer``): on the run's transfer brain ``transfer brain, annotated section`` /
    ``transfer brain, unannotated section``; on a brain the run did not use ``not used by the run,
    ...``; on a training brain as without a run.
    """
    from cortexgraph.data.roles import annotated_sections, split_sections
    from cortexgraph.derivatives import Derivatives, StageId

    annotated: list[int] | None = None
    tests: set[int] = set()
    record = Derivatives.of(brain).record(StageId("node-labels", brain.id))
    if record is not None:
        annotated = [int(s) for s in record.parameters.get("annotated_sections", [])]
        for value in record.measured.values():
            if isinstance(value, dict):
                tests.update(int(s) for s in value.get("test_sections", []))
    if annotated is None:
        annotated = annotated_sections(brain, stack)
        tests = {int(s) for s in split_sections(annotated)[1]}
    annotated_set = set(annotated)
    roles = {}
    for s in stack.sections:
        if s in annotated_set:
            roles[s] = "test section" if s in tests else "training section"
        else:
            roles[s] = "unannotated section"
    if run_config:
        if brain.id == run_config.get("transfer"):
            roles = {s: "transfer brain, " + r.replace("test", "annotated").replace(
                "training", "annotated") for s, r in roles.items()}  # fmt: skip
        elif brain.id not in run_config.get("train_brains", ()):
            roles = {s: f"not used by the run, {r}" for s, r in roles.items()}
    return roles


def section_context(stack, section: int, role: str) -> SectionContext:
    """The :class:`SectionContext` of one section of a :class:`~cortexgraph.data.stack.SectionStack`."""
    linear = np.asarray(stack.to_base[section], dtype=np.float64)[:2, :2]
    orientation = np.diag([1.0, -1.0]) @ linear  # base (u right, v down) -> world (x, z)
    mirrored = bool(stack.brain.section(section).mirrored)
    return SectionContext(role=role, mirrored=mirrored, orientation=orientation)


def _name_positions(labels, areas, spacing_um) -> list[tuple[str, float, float]]:
    """(name, row, col) of the areas of a label image, deepest point of each (pixels)."""
    from cortexgraph.render.figures import label_positions

    ids = np.asarray(labels)
    present = [int(i) for i in np.unique(ids) if int(i) > 0 and int(i) in areas]
    index = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    index[present] = np.arange(len(present))
    names = [areas.by_id[i].name for i in present]
    radius = max(2.0, 0.4 * 1000.0 / spacing_um)  # at least 0.4 mm deep
    found = label_positions(index[ids], names, min_radius_px=radius, max_per_area=2)
    return [(n, r, c) for n, r, c, _ in found]


def _orientation_marker(ax, orientation: np.ndarray, flipped: bool) -> None:
    """Arrows to the brain's right (R) and superior (S) side in the corner of a section panel."""
    matrix = np.asarray(orientation, dtype=np.float64)
    if flipped:
        matrix = matrix @ np.diag([-1.0, 1.0])
    inverse = np.linalg.inv(matrix)
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(
        FancyBboxPatch((0.015, 0.015), 0.17, 0.17, boxstyle="round,pad=0.005",
                       transform=ax.transAxes, facecolor="white", edgecolor="0.6", alpha=0.9,
                       linewidth=0.6, zorder=3)
    )  # fmt: skip
    origin = np.array([0.1, 0.1])
    for world, letter in (((1.0, 0.0), "R"), ((0.0, 1.0), "S")):
        step = inverse @ np.array(world)  # displayed image (x right, y down)
        step = np.array([step[0], -step[1]])  # axes fraction (y up)
        step = 0.07 * step / max(float(np.linalg.norm(step)), 1e-9)
        ax.annotate(
            "", xy=origin + step, xytext=origin, xycoords="axes fraction",
            arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.0}, zorder=4,
        )  # fmt: skip
        tip = origin + 1.3 * step
        ax.text(*tip, letter, transform=ax.transAxes, ha="center", va="center", fontsize=8,
                weight="bold", zorder=4)  # fmt: skip


_ROLE_NOTES = {
    "test section": "test section (held out from training)",
    "training section": "training section (its annotation was used in training)",
    "transfer brain, annotated section": "transfer brain (never seen in training), annotated section",
    "transfer brain, unannotated section": "transfer brain (never seen in training), unannotated section",
}


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
    context: SectionContext | None = None,
    names: bool = True,
) -> Path:
    """Write a PNG: the section image under each label image of ``panels``, with area names on the
    areas and an area legend.

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
    context : the section's role, mirroring and orientation (:func:`section_context`): the role
        goes into the title, a mirrored section is shown flipped back (its x axis then runs from
        right to left in section mm), and each panel gets an orientation marker.
    names : write the area names on the areas (names that would overlap are left to the legend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    present: set[int] = set()
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
    flipped = bool(context is not None and context.mirrored)
    if flipped:  # shown flipped back: the hemispheres on their true sides
        image = image[:, ::-1]
        panels = [(panel_title, labels[:, ::-1]) for panel_title, labels in panels]
        extent = (extent[1], extent[0], extent[2], extent[3])
    aspect = rows / max(cols, 1)
    entries = legend_entries(areas, present)
    legend_columns = max(1, int(np.ceil(len(entries) / 30)))
    width = panel_inches * len(panels) + 1.6 * legend_columns
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, panel_inches * aspect + 0.8), squeeze=False
    )
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=2.0, foreground="white")]
    screen_px = dpi * panel_inches / max(cols, 1)  # figure pixels per image pixel
    for ax, (panel_title, labels) in zip(axes[0], panels, strict=True):
        picture = overlay_labels(image, labels, colours, alpha=alpha)
        ax.imshow(picture, extent=extent, interpolation="nearest")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("x (mm, section image)" + (", flipped" if flipped else ""), fontsize=8)
        ax.set_ylabel("y (mm, section image)", fontsize=8)
        ax.tick_params(labelsize=7)
        if names:
            placed: list[tuple[float, float, float, float]] = []
            for text, row, col in _name_positions(labels, areas, spacing_um):
                half_w = (2.5 * len(text) + 2) / screen_px  # image pixels
                half_h = 5.0 / screen_px
                box = (row - half_h, row + half_h, col - half_w, col + half_w)
                if any(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3]
                       for b in placed):  # fmt: skip
                    continue
                placed.append(box)
                x = extent[0] + (col + 0.5) * (extent[1] - extent[0]) / cols
                y = extent[3] + (row + 0.5) * (extent[2] - extent[3]) / rows
                ax.text(x, y, text, ha="center", va="center", fontsize=6, path_effects=halo)
        if context is not None:
            _orientation_marker(ax, context.orientation, flipped)
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
    if context is not None:
        note = _ROLE_NOTES.get(context.role, context.role) + (
            "; mirrored section, shown flipped back (left-right)" if flipped else ""
        )
        title = f"{title}\n{note}" if title else note
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 * legend_columns / width, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return path
