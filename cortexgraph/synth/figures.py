"""Pictures of a phantom cohort for the documentation (docs/phantom.md).

``python -m cortexgraph.synth.figures COHORT OUT_DIR [BRAIN]`` writes

* ``phantom_section.png``: an annotated section image beside its tissue mask, its (partial) annotation
  and the full ground-truth labels;
* ``phantom_areas.png``: the phantom's areas on the template's left midthickness surface (lateral and
  medial views) and on the brain's true midsurface.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


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
    best, best_count = None, -1
    for n in brain.annotated_sections:
        count = int((Raster(brain.path(brain.section(n).annotation)).read_level(0) > 0).sum())
        if count > best_count:
            best, best_count = n, count
    record = brain.section(best)
    image = Raster(brain.path(record.image)).read_level(0)
    mask = Raster(brain.path(record.mask)).read_level(0)
    annotation = Raster(brain.path(record.annotation)).read_level(0)
    truth = Raster(
        cohort_root / "ground_truth" / brain_id / "labels" / f"s{best:04d}.h5"
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


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
    gt = cohort_root / "ground_truth" / brain_id / "midsurface_lh.gii"
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cohort, out_dir = Path(args[0]), Path(args[1])
    brain_id = args[2] if len(args) > 2 else "B07"
    section_figure(cohort, out_dir / "phantom_section.png", brain_id)
    areas_figure(cohort, out_dir / "phantom_areas.png", brain_id)


if __name__ == "__main__":
    main()
