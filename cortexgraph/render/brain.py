"""``cortexgraph render <brain>``: midsurfaces coloured by node arrays; pictures and exports.

What can be shown (``labels`` specs, node arrays of the graph file, docs/derivatives.md):

==================  ==========================================================================
``y``, ``pred``     class index per node (annotation / prediction), area colours; -1 gray
                    (any other integer class-index node array works the same way)
``errors``          nodes with both ``y`` and ``pred``: green = correct, red = wrong, gray = not
                    annotated
``proba:<area>``    predicted probability of one area (name or id), viridis 0..1
``co``              canonical coordinates as colours: R = x, G = y, B = z, each from [-1, 1]
``pm:<i>``          atlas map ``i`` (index along ``pm``'s second axis, or its name in
                    ``atlas/pmaps.tsv``), viridis from 0 to the map's maximum on the mesh
==================  ==========================================================================

For every hemisphere graph ``<brain>/graph/<hemi>.h5`` and every spec, :func:`render_brain` writes
(``<cohort>/derivatives/cortexgraph/<brain>/render/``, ``<name>`` = the spec with ``:`` -> ``-``)::

    <hemi>_<name>.png          the six standard views and a legend (area names) or a colour bar
    <hemi>_y_vs_pred.png       annotation and prediction side by side per view (thesis fig. 7.10),
                               when ``pred`` is rendered and the graph has ``y``
    <hemi>_<name>.label.gii    GIfTI labels with the area table (class specs: area ids;
                               errors: 1 correct, 2 wrong)
    <hemi>_<name>.annot        the same as a FreeSurfer annotation
    <hemi>_<name>.func.gii     the scalar values (proba, co, pm)
    <hemi>_<name>.ply          the mesh with the picture's vertex colours
    <hemi>.surf.gii            the mesh (world mm), geometry of the .label.gii / .func.gii files
    render.json                files written, node counts, seconds; + render.json.prov.json

Pictures are rendered off screen (:mod:`cortexgraph.render.surface`: VTK through EGL/OSMesa, or the
matplotlib fallback).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable, Brain, find_brain, read_tsv
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.outputs import write_json_atomic, write_provenance
from cortexgraph.render.colors import (
    CORRECT_RGB,
    UNLABELLED_RGB,
    WRONG_RGB,
    colour_classes,
    scalar_colours,
)
from cortexgraph.render.figures import ColourBar, picture_grid, trim_background
from cortexgraph.render.surface import VIEWS, SurfaceRenderer

log = logging.getLogger(__name__)

HEMISPHERES = ("lh", "rh")

__all__ = ["Colouring", "node_colouring", "render_brain", "parse_specs"]


@dataclass
class Colouring:
    """How to colour a mesh for one spec: vertex colours, legend or colour bar, values to export."""

    name: str
    title: str
    rgb: np.ndarray  # uint8 (N, 3)
    legend: list[tuple[str, tuple[float, float, float]]] | None = None
    legend_title: str = "areas"
    colour_bar: ColourBar | None = None
    labels: np.ndarray | None = None  # int keys (N,) for .label.gii / .annot
    label_table: dict[int, tuple[str, tuple[int, int, int]]] | None = None
    scalars: np.ndarray | None = None  # (N,) or (N, C) for .func.gii
    scalar_names: list[str] | None = None
    summary: dict = field(default_factory=dict)


def parse_specs(labels: str | Sequence[str]) -> list[str]:
    """``"y,pred"`` or ``["y", "pred"]`` -> ``["y", "pred"]`` (blank entries dropped)."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    specs = [item.strip() for item in items if item.strip()]
    if not specs:
        raise CortexgraphError("no labels to render", fix="pass --labels y|pred|errors|...")
    return specs


def _need(arrays: dict, name: str, spec: str) -> np.ndarray:
    if name not in arrays:
        stage = "predict" if name in ("pred", "proba") else "features"
        raise DataFormatError(
            f"--labels {spec} needs the node array {name!r}, which the graph does not have",
            fix=f"run `cortexgraph {stage}` first, or render another kind of labels",
        )
    return np.asarray(arrays[name])


def _area_legend(areas: AreaTable, classes: np.ndarray):
    present = np.unique(classes[(classes >= 0) & (classes < len(areas))])
    return [(areas.areas[k].name, tuple(c / 255.0 for c in areas.areas[k].rgb)) for k in present]


def node_colouring(
    spec: str,
    arrays: dict[str, np.ndarray],
    areas: AreaTable,
    pm_names: Sequence[str] | None = None,
) -> Colouring:
    """Vertex colours and legend for one spec (module docstring) from a graph's node arrays.

    Parameters
    ----------
    spec : ``y``, ``pred`` (or another class-index array), ``errors``, ``proba:<area>``, ``co``,
        ``pm:<index or name>``.
    arrays : node arrays by name (numpy), as in the graph file.
    areas : the cohort's area table.
    pm_names : names of the atlas maps (``atlas/pmaps.tsv``), to resolve ``pm:<name>``.
    """
    kind, _, argument = spec.partition(":")
    name = spec.replace(":", "-")
    if kind == "errors":
        truth = _need(arrays, "y", spec).astype(np.int64)
        pred = _need(arrays, "pred", spec).astype(np.int64)
        known = (truth >= 0) & (pred >= 0)
        keys = np.where(known, np.where(truth == pred, 1, 2), 0)
        rgb = np.array([UNLABELLED_RGB, CORRECT_RGB, WRONG_RGB], dtype=np.uint8)[keys]
        accuracy = float((keys == 1).sum() / known.sum()) if known.any() else float("nan")
        return Colouring(
            name=name,
            title=f"errors (annotated nodes: {int(known.sum())}, accuracy {accuracy:.3f})",
            rgb=rgb,
            legend=[
                ("correct", tuple(c / 255 for c in CORRECT_RGB)),
                ("wrong", tuple(c / 255 for c in WRONG_RGB)),
                ("not annotated", tuple(c / 255 for c in UNLABELLED_RGB)),
            ],
            legend_title="prediction",
            labels=keys,
            label_table={0: ("not annotated", UNLABELLED_RGB), 1: ("correct", CORRECT_RGB)}
            | {2: ("wrong", WRONG_RGB)},
            summary={"nodes_compared": int(known.sum()), "accuracy": accuracy},
        )
    if kind == "proba":
        if not argument:
            raise CortexgraphError(
                "--labels proba needs an area", fix="write proba:<area name or id>, e.g. proba:hOc1"
            )
        proba = _need(arrays, "proba", spec)
        area = areas.resolve(argument)
        k = int(np.searchsorted(areas.ids, area.id))
        if proba.ndim != 2 or proba.shape[1] != len(areas):
            raise DataFormatError(
                f"proba has shape {proba.shape}, expected (N, {len(areas)}) (one column per area)",
                fix="predict again with this cohort's area table",
            )
        values = proba[:, k].astype(np.float64)
        return Colouring(
            name=f"proba-{area.name}",
            title=f"probability of {area.name}",
            rgb=scalar_colours(values, 0.0, 1.0),
            colour_bar=ColourBar("viridis", 0.0, 1.0, f"p({area.name})"),
            scalars=values,
            scalar_names=[f"p_{area.name}"],
            summary={"mean": float(np.nanmean(values)), "max": float(np.nanmax(values))},
        )
    if kind == "co":
        co = _need(arrays, "co", spec).astype(np.float64)
        rgb = np.clip(np.round((co + 1.0) * 127.5), 0, 255).astype(np.uint8)
        rgb[~np.isfinite(co).all(axis=1)] = UNLABELLED_RGB
        return Colouring(
            name="co",
            title="canonical coordinates (R = x, G = y, B = z)",
            rgb=rgb,
            legend=[
                ("x = +1 (right)", (1.0, 0.0, 0.0)),
                ("y = +1 (anterior)", (0.0, 1.0, 0.0)),
                ("z = +1 (superior)", (0.0, 0.0, 1.0)),
            ],
            legend_title="colour channels",
            scalars=co,
            scalar_names=["co_x", "co_y", "co_z"],
        )
    if kind == "pm":
        pm = _need(arrays, "pm", spec)
        if pm.ndim != 2:
            raise DataFormatError(f"pm has shape {pm.shape}, expected (N, P)")
        if argument.isdigit():
            index = int(argument)
        elif pm_names and argument in pm_names:
            index = list(pm_names).index(argument)
        else:
            raise CortexgraphError(
                f"unknown atlas map {argument!r}",
                fix=f"write pm:<index 0..{pm.shape[1] - 1}> or pm:<name from atlas/pmaps.tsv>",
            )
        if not 0 <= index < pm.shape[1]:
            raise CortexgraphError(
                f"atlas map index {index} out of range", fix=f"use 0..{pm.shape[1] - 1}"
            )
        values = pm[:, index].astype(np.float64)
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
        top = top if top > 0 else 1.0
        label = pm_names[index] if pm_names and index < len(pm_names) else str(index)
        return Colouring(
            name=f"pm-{index}",
            title=f"atlas map {label}",
            rgb=scalar_colours(values, 0.0, top),
            colour_bar=ColourBar("viridis", 0.0, top, f"atlas probability ({label})"),
            scalars=values,
            scalar_names=[f"pm_{label}"],
            summary={"max": top},
        )
    if argument:
        raise CortexgraphError(
            f"unknown labels {spec!r}", fix="use y, pred, errors, proba:<area>, co or pm:<i>"
        )
    classes = _need(arrays, spec, spec)
    if classes.ndim != 1 or classes.dtype.kind not in "iu":
        raise DataFormatError(
            f"node array {spec!r} is not a class index per node ({classes.dtype}, {classes.shape})",
            fix="use y, pred, errors, proba:<area>, co or pm:<i>",
        )
    classes = classes.astype(np.int64)
    ids = np.where(
        (classes >= 0) & (classes < len(areas)), areas.ids[np.clip(classes, 0, len(areas) - 1)], 0
    )
    title = {"y": "annotation", "pred": "prediction"}.get(spec, spec)
    from cortexgraph.render.export import area_label_table

    return Colouring(
        name=name,
        title=title,
        rgb=colour_classes(classes, areas),
        legend=_area_legend(areas, classes),
        labels=ids,
        label_table=area_label_table(areas),
        summary={"nodes_labelled": int((classes >= 0).sum())},
    )


def _graph_arrays(path: Path) -> dict[str, np.ndarray]:
    from cortexgraph.meshes.graph import load_graph

    data = load_graph(path)
    arrays = {key: value.numpy() for key, value in data.items() if hasattr(value, "numpy")}
    arrays["face"] = arrays["face"].T
    return arrays


def _atlas_names(brain: Brain) -> list[str] | None:
    cohort = brain.cohort
    if cohort is None or not cohort.atlas_labels:
        return None
    path = cohort.root / cohort.atlas_labels
    if not path.is_file():
        return None
    rows = read_tsv(path, ("index", "area_id", "name"))
    rows.sort(key=lambda r: int(r["index"]))
    return [r["name"] for r in rows]


def _pictures(renderer: SurfaceRenderer, rgb: np.ndarray, views: Sequence[str]) -> dict:
    return {view: trim_background(renderer.render(rgb, view)) for view in views}


def render_brain(
    brain: Brain | str,
    labels: str | Sequence[str] = "pred",
    *,
    root: str | os.PathLike | None = None,
    hemis: Sequence[str] = HEMISPHERES,
    views: Sequence[str] = VIEWS,
    size_px: tuple[int, int] = (480, 400),
    backend: str = "auto",
    compare: bool = True,
    exports: bool = True,
    graph_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Render a brain's midsurface graphs coloured by node arrays; write pictures and exports.

    Parameters
    ----------
    brain : a Brain, or a brain id / folder resolved with ``find_brain(brain, root)``.
    labels : spec(s), comma-separated or a list (module docstring).
    hemis : hemispheres (graph files that do not exist are skipped).
    views : standard views (:data:`cortexgraph.render.surface.VIEWS`).
    size_px : (width, height) of each rendered view.
    backend : ``auto``, ``vtk`` or ``matplotlib`` (:mod:`cortexgraph.render.surface`).
    compare : with ``pred``, also the annotation | prediction figure when the graph has ``y``.
    exports : write .label.gii / .annot / .func.gii / .ply / .surf.gii beside the pictures.
    graph_dir, out_dir : override ``<derivatives>/<brain>/graph`` and
        ``<derivatives>/<brain>/render``.
    overwrite : recompute outputs that exist (otherwise a spec whose files all exist is skipped).

    Returns
    -------
    The paths of all outputs (written now or reused), ``render.json`` last.
    """
    from cortexgraph.meshes.io import write_gifti_surface, write_ply
    from cortexgraph.render.export import (
        write_freesurfer_annot,
        write_gifti_labels,
        write_gifti_scalars,
    )

    start = time.perf_counter()
    if not isinstance(brain, Brain):
        brain = find_brain(brain, root)
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort (no area table)",
            file=brain.root,
            fix="keep the brain folder inside its cohort folder (cohort.toml, areas.tsv)",
        )
    specs = parse_specs(labels)
    unknown_views = [v for v in views if v not in VIEWS]
    if unknown_views:
        raise CortexgraphError(
            f"unknown view(s) {', '.join(unknown_views)}", fix=f"choose from {', '.join(VIEWS)}"
        )
    areas = brain.cohort.areas
    graph_dir = Path(graph_dir) if graph_dir else brain.derivatives / "graph"
    out_dir = Path(out_dir) if out_dir else brain.derivatives / "render"
    graph_files = {h: graph_dir / f"{h}.h5" for h in hemis if (graph_dir / f"{h}.h5").is_file()}
    if not graph_files:
        raise CortexgraphError(
            f"no graph file for hemispheres {', '.join(hemis)}",
            file=graph_dir,
            fix=f"run `cortexgraph build-graph {brain.id}` first",
        )
    pm_names = _atlas_names(brain)
    written: list[Path] = []
    summary: dict = {}
    for hemi, path in graph_files.items():
        arrays = _graph_arrays(path)
        vertices, faces = arrays["pos"].astype(np.float64), arrays["face"]
        colourings = [node_colouring(spec, arrays, areas, pm_names) for spec in specs]
        summary[hemi] = {c.name: c.summary for c in colourings}
        renderer = None
        try:
            if exports:
                surface = out_dir / f"{hemi}.surf.gii"
                if overwrite or not surface.exists():
                    write_gifti_surface(surface, vertices, faces)
                written.append(surface)
            for colouring in colourings:
                outputs = _outputs(out_dir, hemi, colouring, exports)
                if not overwrite and all(p.exists() for p in outputs):
                    written.extend(outputs)
                    continue
                if renderer is None:
                    renderer = SurfaceRenderer(
                        vertices, faces, hemi=hemi, size_px=size_px, backend=backend
                    )
                pictures = _pictures(renderer, colouring.rgb, views)
                picture_grid(
                    outputs[0],
                    [(view, pictures[view]) for view in views],
                    ncols=min(3, len(views)),
                    legend=colouring.legend,
                    legend_title=colouring.legend_title,
                    colour_bar=colouring.colour_bar,
                    title=f"{brain.id} {hemi}: {colouring.title}",
                )
                if exports:
                    stem = out_dir / f"{hemi}_{colouring.name}"
                    if colouring.labels is not None:
                        write_gifti_labels(
                            stem.with_name(stem.name + ".label.gii"),
                            colouring.labels,
                            colouring.label_table,
                        )
                        write_freesurfer_annot(
                            stem.with_name(stem.name + ".annot"),
                            colouring.labels,
                            colouring.label_table,
                        )
                    if colouring.scalars is not None:
                        write_gifti_scalars(
                            stem.with_name(stem.name + ".func.gii"),
                            colouring.scalars,
                            colouring.scalar_names,
                        )
                    write_ply(stem.with_name(stem.name + ".ply"), vertices, faces, colouring.rgb)
                written.extend(outputs)
            if compare and "pred" in specs and "y" in arrays and "pred" in arrays:
                figure = out_dir / f"{hemi}_y_vs_pred.png"
                if overwrite or not figure.exists():
                    if renderer is None:
                        renderer = SurfaceRenderer(
                            vertices, faces, hemi=hemi, size_px=size_px, backend=backend
                        )
                    _comparison_figure(figure, renderer, arrays, areas, views, brain.id, hemi)
                written.append(figure)
        finally:
            if renderer is not None:
                renderer.close()
    report = {
        "brain": brain.id,
        "labels": specs,
        "views": list(views),
        "backend": backend,
        "files": [str(p) for p in written],
        "summary": summary,
        "seconds": time.perf_counter() - start,
    }
    record = out_dir / "render.json"
    write_json_atomic(record, report)
    parameters = {
        "brain": brain.id,
        "labels": specs,
        "views": list(views),
        "size_px": list(size_px),
        "backend": backend,
        "compare": compare,
        "exports": exports,
    }
    write_provenance(record, parameters, list(graph_files.values()))
    written.append(record)
    return written


def _outputs(out_dir: Path, hemi: str, colouring: Colouring, exports: bool) -> list[Path]:
    stem = f"{hemi}_{colouring.name}"
    outputs = [out_dir / f"{stem}.png"]
    if exports:
        if colouring.labels is not None:
            outputs += [out_dir / f"{stem}.label.gii", out_dir / f"{stem}.annot"]
        if colouring.scalars is not None:
            outputs.append(out_dir / f"{stem}.func.gii")
        outputs.append(out_dir / f"{stem}.ply")
    return outputs


def _comparison_figure(path, renderer, arrays, areas, views, brain_id, hemi) -> Path:
    """Annotation | prediction per view, two view pairs per row (thesis figure 7.10)."""
    truth = np.asarray(arrays["y"], dtype=np.int64)
    pred = np.asarray(arrays["pred"], dtype=np.int64)
    truth_pictures = _pictures(renderer, colour_classes(truth, areas), views)
    pred_pictures = _pictures(renderer, colour_classes(pred, areas), views)
    panels = []
    for view in views:
        panels.append((f"{view}: annotation", truth_pictures[view]))
        panels.append((f"{view}: prediction", pred_pictures[view]))
    legend = _area_legend(areas, np.concatenate([truth, pred]))
    return picture_grid(
        path,
        panels,
        ncols=4 if len(views) > 1 else 2,
        legend=legend,
        title=f"{brain_id} {hemi}: annotation and prediction",
    )
