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

For every hemisphere graph and every spec, :func:`render_brain` writes (stage
``render@<source>@<name>``, in ``<cohort>/derivatives/cortexgraph/<brain>/render/<source>/``;
``<source>`` = ``gnn-<run>`` for a model run's predictions, ``nodes`` otherwise; ``<name>`` = the spec
with ``:`` -> ``-``)::

    <hemi>_<name>.png          the six standard views and a legend (area names) or a colour bar
    <hemi>_y_vs_pred.png       annotation and prediction side by side per view (thesis fig. 7.10),
                               when ``pred`` is rendered and the graph has ``y``
    <hemi>_<name>.label.gii    GIfTI labels with the area table (class specs: area ids;
                               errors: 1 correct, 2 wrong)
    <hemi>_<name>.annot        the same as a FreeSurfer annotation
    <hemi>_<name>.func.gii     the scalar values (proba, co, pm)
    <hemi>_<name>.ply          the mesh with the picture's vertex colours

The geometry of the .label.gii / .func.gii files is build-graph's ``meshes/midsurface_<hemi>.gii``.

Pictures are rendered off screen (:mod:`cortexgraph.render.surface`: VTK through EGL/OSMesa, or the
matplotlib fallback).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable, Brain, find_brain, read_tsv
from cortexgraph.data.names import slug
from cortexgraph.errors import CortexgraphError, DataFormatError
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
            name=f"proba-{slug(area.name)}",
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


RUN_SPECS = ("pred", "errors", "proba")


def render_source(run: str | None) -> str:
    """The folder (and record scope) of a rendering: ``gnn-<run>`` with a run, else ``nodes``."""
    return f"gnn-{run}" if run else "nodes"


SPEC_KINDS = ("y", "pred", "errors", "proba", "co", "pm")


def spec_needs(spec: str, run: str | None, compare: bool, labels_exist: bool):
    """What one spec reads: (feature types, node labels?, the run's predictions?)."""
    kind = spec.partition(":")[0]
    if kind not in SPEC_KINDS:
        raise CortexgraphError(
            f"unknown --labels {spec!r}",
            fix="use y, pred, errors, proba:<area>, co or pm:<index or name>",
        )
    uses_run = kind in RUN_SPECS
    if uses_run and not run:
        raise CortexgraphError(
            f"--labels {spec} shows a model's predictions: name the model run", fix="pass --run RUN"
        )
    features = ("pm", "co") if kind in ("co", "pm") else ()
    labels = kind in ("y", "errors") or (kind == "pred" and compare and labels_exist)
    return features, labels, uses_run


def render_brain(
    brain: Brain | str,
    labels: str | Sequence[str] = "pred",
    *,
    run: str | None = None,
    root: str | os.PathLike | None = None,
    views: Sequence[str] = VIEWS,
    size_px: tuple[int, int] = (480, 400),
    backend: str = "auto",
    compare: bool = True,
    exports: bool = True,
    overwrite: bool = False,
    wait_s: float = 0.0,
) -> list[Path]:
    """Render a brain's midsurface graphs coloured by one label source; write pictures and exports.

    Each spec is a stage execution ``render@<source>@<spec>`` with its own record, reused while its
    inputs are unchanged; ``<source>`` is ``gnn-<run>`` when ``run`` is given, else ``nodes``.

    Parameters
    ----------
    brain : a Brain, or a brain id / folder resolved with ``find_brain(brain, root)``.
    labels : spec(s), comma-separated or a list (module docstring).
    run : the model run whose predictions ``pred``, ``errors`` and ``proba:<area>`` show (named in
        every picture's title and in the output folder).
    views : standard views (:data:`cortexgraph.render.surface.VIEWS`).
    size_px : (width, height) of each rendered view.
    backend : ``auto``, ``vtk`` or ``matplotlib`` (:mod:`cortexgraph.render.surface`).
    compare : with ``pred``, also the annotation | prediction figure.
    exports : write .label.gii / .annot / .func.gii / .ply beside the pictures.
    overwrite, wait_s : see :class:`~cortexgraph.derivatives.StageRun`.

    Returns
    -------
    The paths of all outputs (written now or reused).
    """
    from cortexgraph.data.names import slug
    from cortexgraph.derivatives import Derivatives, StageId, StageRun
    from cortexgraph.derivatives.layout import render_dir

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
    store = Derivatives.of(brain)
    source = render_source(run)
    out_dir = render_dir(store.root, brain.id, source)
    written: list[Path] = []
    from cortexgraph.derivatives.graphs import node_stages

    labels_exist = store.record(StageId("node-labels", brain.id)) is not None
    for spec in specs:
        features, with_labels, uses_run = spec_needs(spec, run, compare, labels_exist)
        upstream = node_stages(
            brain.id, features, labels=with_labels, run=run if uses_run else None
        )
        parameters = {
            "spec": spec,
            "run": run,
            "views": list(views),
            "size_px": list(size_px),
            "backend": backend,
            "compare": bool(compare),
            "exports": bool(exports),
        }
        with StageRun(
            store,
            StageId("render", brain.id, (source, slug(spec.replace(":", "-")))),
            parameters=parameters,
            upstream=upstream,
            overwrite=overwrite,
            wait_s=wait_s,
        ) as stage:
            if stage.reuse:
                written += [store.output(stage.record, n) for n in sorted(stage.record.outputs)]
                continue
            files, summary = _render_spec(
                store, brain, spec, run if uses_run else None, features, with_labels, out_dir,
                views, size_px, backend, compare, exports,
            )  # fmt: skip
            stage.commit(files, summary)
            written += files
    return written


def _render_spec(
    store, brain, spec, run, features, with_labels, out_dir, views, size_px, backend, compare, exports
) -> tuple[list[Path], dict]:
    """Pictures and exports of one spec for every hemisphere (no record)."""
    from cortexgraph.derivatives.graphs import graph_hemispheres, load_brain_graph
    from cortexgraph.meshes.io import write_ply
    from cortexgraph.render.export import (
        write_freesurfer_annot,
        write_gifti_labels,
        write_gifti_scalars,
    )

    areas = brain.cohort.areas
    pm_names = _atlas_names(brain)
    kind = spec.partition(":")[0]
    written: list[Path] = []
    summary: dict = {}
    for hemi in graph_hemispheres(store, brain.id):
        data = load_brain_graph(store, brain.id, hemi, features, labels=with_labels, run=run)
        arrays = {
            key: value.numpy()
            for key, value in data.items()
            if hasattr(value, "numpy") and key != "face"
        }
        for name in ("pm", "co"):
            if f"x_{name}" in arrays:
                arrays[name] = arrays.pop(f"x_{name}")
        vertices, faces = arrays["pos"].astype(np.float64), data.face.numpy().T
        colouring = node_colouring(spec, arrays, areas, pm_names)
        summary[hemi] = colouring.summary
        outputs = _outputs(out_dir, hemi, colouring, exports)
        renderer = SurfaceRenderer(vertices, faces, hemi=hemi, size_px=size_px, backend=backend)
        try:
            pictures = _pictures(renderer, colouring.rgb, views)
            what = f"{colouring.title}" + (f", run {run}" if run and kind in RUN_SPECS else "")
            picture_grid(
                outputs[0],
                [(view, pictures[view]) for view in views],
                ncols=min(3, len(views)),
                legend=colouring.legend,
                legend_title=colouring.legend_title,
                colour_bar=colouring.colour_bar,
                title=f"{brain.id} {hemi}: {what}",
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
            if compare and kind == "pred" and "y" in arrays:
                figure = out_dir / f"{hemi}_y_vs_pred.png"
                _comparison_figure(figure, renderer, arrays, areas, views, brain.id, hemi, run)
                written.append(figure)
        finally:
            renderer.close()
    return written, summary


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


def _comparison_figure(path, renderer, arrays, areas, views, brain_id, hemi, run) -> Path:
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
        title=f"{brain_id} {hemi}: annotation and prediction of run {run}",
    )
