"""Pictures of a phantom cohort for the documentation (docs/phantom.md).

``python -m cortexgraph.synth.figures COHORT OUT_DIR [BRAIN]`` writes

* ``phantom_section.png``: an annotated section image beside its tissue mask, its (partial) annotation
  and the full ground-truth labels;
* ``phantom_areas.png``: the phantom's areas on the template's left midthickness surface (lateral and
  medial views) and on the brain's true midsurface.

``python -m cortexgraph.synth.figures --harder OUT_DIR`` writes ``phantom_harder.png``: one window of
a section across the hOc1/hOc2 border rendered with the default phantom and with the options that
make it harder (:func:`harder_figure`).

``python -m cortexgraph.synth.figures --cells OUT_DIR`` writes ``phantom_cells.png``: one window
across the hOc1/hOc2 border at 2 µm pixels without and with the cell-level texture
(:func:`cells_figure`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import GROUND_TRUTH
from cortexgraph.errors import CortexgraphError
from cortexgraph.outputs import save_figure


def _colour_table(cohort) -> np.ndarray:
    table = np.zeros((int(cohort.areas.ids.max()) + 1, 3))
    table[0] = (0.85, 0.85, 0.85)
    for area in cohort.areas.areas:
        table[area.id] = np.array(area.rgb) / 255.0
    return table


def section_figure(cohort_root: Path, out: Path, brain_id: str = "B07") -> Path:
    """Image, tissue mask, annotation and full labels of the annotated section with most cortex."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.raster import Raster

    cohort = Cohort.read(cohort_root)
    brain = cohort.brain(brain_id)
    colours = _colour_table(cohort)
    best: int | None = None
    best_count = -1
    for n in brain.annotated_sections:
        count = int((Raster(brain.path(brain.section(n).annotation)).read_level(0) > 0).sum())
        if count > best_count:
            best, best_count = n, count
    if best is None:
        raise CortexgraphError(
            f"brain {brain_id} has no annotated section", fix="pick a brain with annotations"
        )
    record = brain.section(best)
    image = Raster(brain.path(record.image)).read_level(0)
    mask = Raster(brain.path(record.mask)).read_level(0)
    annotation = Raster(brain.path(record.annotation)).read_level(0)
    truth = Raster(
        cohort_root / GROUND_TRUTH / brain_id / "labels" / f"s{best:04d}.h5"
    ).read_level(0)
    tissue_colours = np.array([[1, 1, 1], [0.75, 0.75, 0.95], [0.45, 0.3, 0.55]])
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.6))
    panels = [
        (image, "section image (cell-body stain)", "gray"),
        (tissue_colours[mask], "tissue mask: glass / white / gray", None),
        (colours[annotation], "annotation (partial)", None),
        (colours[truth], "ground truth: all areas", None),
    ]
    for ax, (data, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(data, cmap=cmap, vmin=0, vmax=255 if cmap else None, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"phantom {brain_id}, section {best} ({cohort.name})")
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)


def areas_figure(cohort_root: Path, out: Path, brain_id: str = "B07") -> Path:
    """Areas on the template's left surface (two views) and on the brain's true left midsurface."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from cortexgraph.data.manifest import Cohort
    from cortexgraph.synth.areas import build_area_layout
    from cortexgraph.synth.resources import load_surfaces
    from cortexgraph.synth.truth import read_gifti_surface

    cohort = Cohort.read(cohort_root)
    colours = _colour_table(cohort)
    surface = load_surfaces()["lh"]
    layout = build_area_layout(surface)
    meshes = [
        (surface.vertices_mm, surface.faces, layout.vertex_area, (0, 180), "template, lateral"),
        (surface.vertices_mm, surface.faces, layout.vertex_area, (0, 0), "template, medial"),
    ]
    gt = cohort_root / GROUND_TRUTH / brain_id / "midsurface_lh.gii"
    if gt.is_file():
        vertices, faces, labels = read_gifti_surface(gt)
        meshes.append((vertices, faces, labels, (10, 180), f"{brain_id} true midsurface (world)"))
    fig = plt.figure(figsize=(6 * len(meshes), 5.5))
    for k, (vertices, faces, labels, (elev, azim), title) in enumerate(meshes):
        ax = fig.add_subplot(1, len(meshes), k + 1, projection="3d")
        tri = vertices[faces]
        face_label = labels[faces[:, 0]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        light = np.array([np.cos(np.deg2rad(azim)), np.sin(np.deg2rad(azim)), 0.5])
        shade = 0.55 + 0.45 * np.abs(normal @ (light / np.linalg.norm(light)))
        ax.add_collection3d(
            Poly3DCollection(tri, facecolors=colours[face_label] * shade[:, None], edgecolor="none")
        )
        lo, hi = vertices.min(0), vertices.max(0)
        centre, half = (lo + hi) / 2, (hi - lo).max() / 2
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, out, dpi=80)


def harder_figure(
    out: Path,
    preset: str = "tiny",
    seed: int = 0,
    brain_id: str = "B01",
    spacing_um: float = 20.0,
    window_mm: float = 12.0,
    variability: float = 0.15,
    transition_mm: float = 2.0,
) -> Path:
    """The same tissue rendered three ways, side by side: the default phantom (abrupt border, the
    areas' own profiles), a brain with its own profiles (``variability``), and that brain with
    transition zones of ``transition_mm``; then where the transition zones changed the image, and
    the true labels. The window (``window_mm`` square, ``spacing_um`` pixels, no artefacts) is
    centred on the longest hOc1/hOc2 border of the brain's sections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cortexgraph.synth.areas import brain_profiles, depth_profiles
    from cortexgraph.synth.deform import brain_rng
    from cortexgraph.synth.render import render_image

    layout, n, sample, extent = _border_window(preset, seed, brain_id, spacing_um, window_mm)
    none = np.zeros(sample.tissue.shape, dtype=bool)
    own = brain_profiles(layout.profiles, brain_rng(seed, brain_id, 8), variability)
    widths = np.full(len(layout.areas) + 1, transition_mm)
    widths[0] = 0.0
    panels = []
    for profiles, transition in ((layout.profiles, None), (own, None), (own, widths)):
        luts = depth_profiles(profiles, len(layout.areas))
        luts["transition_mm"] = transition
        rng = np.random.default_rng(seed)  # one noise field for all panels: only tissue differs
        panels.append(render_image(sample, luts, spacing_um, rng, 1.0, 1.0, none, none))
    titles = (
        "default: abrupt border,\nevery brain the same profiles",
        f"this brain's own profiles\n(--profile-variability {variability:g})",
        f"+ transition zones\n(--transition-mm {transition_mm:g})",
    )
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.6))
    for ax, image, title in zip(axes[:3], panels, titles, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent)
        ax.set_title(title, fontsize=10)
    change = np.abs(panels[2].astype(np.float32) - panels[1].astype(np.float32))
    shown = axes[3].imshow(change, cmap="magma", vmin=0, vmax=40, extent=extent)
    axes[3].set_title("what the transition zones changed\n(grey levels)", fontsize=10)
    fig.colorbar(shown, ax=axes[3], fraction=0.046)
    _labels_and_title(fig, axes, layout, sample, extent, preset, seed, brain_id, n, spacing_um)
    return save_figure(fig, out, dpi=80)


def _border_window(preset: str, seed: int, brain_id: str, spacing_um: float, window_mm: float):
    """A ``window_mm`` square window at ``spacing_um`` centred on the longest hOc1/hOc2 border of the
    brain's sections (found on the mask raster): the template's area layout, the section number,
    the section sampled in the window (:func:`~cortexgraph.synth.render.sample_section`) and the
    window's imshow extent in mm."""
    from cortexgraph.synth.deform import make_brain
    from cortexgraph.synth.presets import get_preset
    from cortexgraph.synth.render import sample_section
    from cortexgraph.synth.sectioning import plan_sections
    from cortexgraph.synth.template import build_template

    spec = get_preset(preset)
    template = build_template(spec.template_mm, spec.area_seed)
    layout = template.layout
    ids = {a.name: a.id for a in layout.areas}
    brain = make_brain(template, spec, brain_id, seed)
    geometry = plan_sections(template, brain, spec, seed)
    best: tuple[int, int | None, np.ndarray | None] = (-1, None, None)
    for n in geometry.available:
        labels = sample_section(template, brain, geometry, n, spec.mask_spacing_um).area
        border = (labels[:, :-1] == ids["hOc1"]) & (labels[:, 1:] == ids["hOc2"])
        border |= (labels[:, :-1] == ids["hOc2"]) & (labels[:, 1:] == ids["hOc1"])
        if border.any() and border.sum() > best[0]:
            border_rows, border_cols = np.nonzero(border)
            centre_px = (np.median(border_rows) + 0.5, np.median(border_cols) + 1.0)
            best = (int(border.sum()), n, np.array(centre_px) * spec.mask_spacing_um / 1000)
    _, best_n, centre_mm = best
    if best_n is None or centre_mm is None:
        raise CortexgraphError(
            f"brain {brain_id}: no section shows a border between hOc1 and hOc2",
            fix="pick another brain or seed",
        )
    n = best_n
    half = int(window_mm * 500 / spacing_um)
    shape = geometry.raster_shape(spacing_um)
    r0, c0 = (int(v) for v in np.clip(centre_mm * 1000 / spacing_um - half, 0, None))
    rows, cols = slice(r0, min(r0 + 2 * half, shape[0])), slice(c0, min(c0 + 2 * half, shape[1]))
    sample = sample_section(template, brain, geometry, n, spacing_um, rows, cols)
    height_mm = (rows.stop - rows.start) * spacing_um / 1000
    width_mm = (cols.stop - cols.start) * spacing_um / 1000
    return layout, n, sample, (0, width_mm, height_mm, 0)


def _labels_and_title(fig, axes, layout, sample, extent, preset, seed, brain_id, n, spacing_um):
    """The last panel of a border-window figure (the true labels), mm axes and the title."""
    from cortexgraph.data.manifest import AreaTable

    area_colours = _colour_table(_AreasOnly(AreaTable(layout.areas)))
    axes[-1].imshow(area_colours[sample.area], extent=extent, interpolation="nearest")
    axes[-1].set_title("true labels (hOc1, hOc2, ...)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("mm")
    fig.suptitle(f"phantom {preset} seed {seed}, {brain_id} section {n}, {spacing_um:g} um pixels")
    fig.tight_layout()


def cells_figure(
    out: Path,
    preset: str = "tiny",
    seed: int = 0,
    brain_id: str = "B01",
    spacing_um: float = 2.0,
    window_mm: float = 1.6,
    zoom_mm: float = 0.4,
) -> Path:
    """The same window rendered without and with the cell-level texture (``cell_texture``,
    :mod:`cortexgraph.synth.cells`), a ``zoom_mm`` square of the latter at full resolution, and the
    true labels. The window (``window_mm`` square, ``spacing_um`` pixels, no artefacts, the areas'
    own profiles) is centred on the longest hOc1/hOc2 border of the brain's sections; both images
    share the stain noise (``rng``), the cells have their own stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from cortexgraph.synth.areas import depth_profiles
    from cortexgraph.synth.deform import brain_rng
    from cortexgraph.synth.render import render_image

    layout, n, sample, extent = _border_window(preset, seed, brain_id, spacing_um, window_mm)
    none = np.zeros(sample.tissue.shape, dtype=bool)
    luts = depth_profiles(layout.profiles, len(layout.areas))
    smooth = render_image(sample, luts, spacing_um, np.random.default_rng(seed), 1.0, 1.0, none, none)
    cells = render_image(
        sample, luts, spacing_um, np.random.default_rng(seed), 1.0, 1.0, none, none,
        cell_rng=brain_rng(seed, brain_id, 10, n),
    )  # fmt: skip
    # the zoom: the square with most cortex, the nearest the window's centre among equals
    z = int(zoom_mm * 1000 / spacing_um)
    cortex = np.isfinite(sample.depth).astype(np.float64)
    centre = np.array(cortex.shape) / 2
    best, corner = (-1.0, 0.0), (0, 0)
    for r in range(0, max(cortex.shape[0] - z, 0) + 1, max(z // 4, 1)):
        for c in range(0, max(cortex.shape[1] - z, 0) + 1, max(z // 4, 1)):
            share = round(float(cortex[r : r + z, c : c + z].mean()), 2)
            offset = float(np.hypot(*(np.array([r, c]) + z / 2 - centre)))
            if (share, -offset) > best:
                best, corner = (share, -offset), (r, c)
    r, c = corner
    fig, axes = plt.subplots(1, 4, figsize=(21, 5.6))
    for ax, image, title in (
        (axes[0], smooth, "default: smooth laminar profile + noise"),
        (axes[1], cells, "cell_texture = true: cell bodies per layer"),
    ):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    s = spacing_um / 1000
    axes[1].add_patch(
        Rectangle((c * s, r * s), z * s, z * s, fill=False, edgecolor="red", linewidth=1.2)
    )
    axes[2].imshow(
        cells[r : r + z, c : c + z], cmap="gray", vmin=0, vmax=255, interpolation="nearest",
        extent=(c * s, (c + z) * s, (r + z) * s, r * s),
    )  # fmt: skip
    axes[2].set_title(f"cell texture, {zoom_mm:g} mm (red square)", fontsize=10)
    _labels_and_title(fig, axes, layout, sample, extent, preset, seed, brain_id, n, spacing_um)
    return save_figure(fig, out, dpi=90)


class _AreasOnly:
    """An area table in the shape :func:`_colour_table` reads (``cohort.areas``)."""

    def __init__(self, areas) -> None:
        self.areas = areas


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--harder":
        harder_figure(Path(args[1]) / "phantom_harder.png")
        return
    if args and args[0] == "--cells":
        cells_figure(Path(args[1]) / "phantom_cells.png")
        return
    cohort, out_dir = Path(args[0]), Path(args[1])
    brain_id = args[2] if len(args) > 2 else "B07"
    section_figure(cohort, out_dir / "phantom_section.png", brain_id)
    areas_figure(cohort, out_dir / "phantom_areas.png", brain_id)


if __name__ == "__main__":
    main()
