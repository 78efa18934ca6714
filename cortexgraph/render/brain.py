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

The geometry of the .label.gii / .func.gii files is build-graph's ``meshes/midsurface_<hemi>.surf.gii``.

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

from cortexgraph.data.colors import (
    CORRECT_RGB,
    CORRECT_SEEN_RGB,
    UNLABELLED_RGB,
    WRONG_RGB,
    WRONG_SEEN_RGB,
    area_rgb,
    colour_classes,
    scalar_colours,
)
from cortexgraph.data.manifest import AreaTable, Brain, brain_in_cohort, read_tsv
from cortexgraph.data.names import slug
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.gnn.stage import run_settings
from cortexgraph.render.figures import ColourBar, Panel, label_positions, picture_grid, trim_box
from cortexgraph.render.sections import unit_rgb
from cortexgraph.render.surface import VIEWS, SurfaceRenderer, screen_directions

log = logging.getLogger(__name__)

HEMISPHERES = ("lh", "rh")

__all__ = ["Colouring", "node_colouring", "render_brain", "parse_specs", "run_role"]


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
    classes: np.ndarray | None = None  # class index per node: area names are written on the areas
    split: str = ""  # which nodes the picture shows, by data split


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
    colours = area_rgb(areas)
    present = np.unique(classes[(classes >= 0) & (classes < len(areas))])
    return [
        (areas.areas[k].name, tuple(c / 255.0 for c in colours[areas.areas[k].id])) for k in present
    ]


#: how a model run saw a brain (``run_role``)
ROLES = ("train", "transfer", "unused")


def run_role(brain_id: str, run_config: dict | None) -> str | None:
    """``train`` (the run trained on the brain's training sections; its test sections were held
    out), ``transfer`` (the run's transfer brain: never seen in training), ``unused`` (another
    brain), or None when the run's settings are not known."""
    if not run_config:
        return None
    if brain_id in run_config.get("train_brains", ()):
        return "train"
    if brain_id == run_config.get("transfer"):
        return "transfer"
    return "unused"


def role_text(brain_id: str, run: str | None, role: str | None) -> str:
    """One line saying how the run saw the brain (for picture titles)."""
    if run is None or role is None:
        return ""
    return {
        "train": f"{brain_id} is a training brain of run {run}: nodes on its training sections "
        "were seen in training, nodes on its test sections (every 5th annotated section) were not",
        "transfer": f"{brain_id} is the transfer brain of run {run}: never seen in training",
        "unused": f"run {run} was not trained on {brain_id}",
    }[role]


def node_colouring(
    spec: str,
    arrays: dict[str, np.ndarray],
    areas: AreaTable,
    pm_names: Sequence[str] | None = None,
    role: str | None = None,
) -> Colouring:
    """Vertex colours and legend for one spec (module docstring) from a graph's node arrays.

    Parameters
    ----------
    spec : ``y``, ``pred`` (or another class-index array), ``errors``, ``proba:<area>``, ``co``,
        ``pm:<index or name>``.
    arrays : node arrays by name (numpy), as in the graph file.
    areas : the cohort's area table.
    pm_names : names of the atlas maps (``atlas/pmaps.tsv``), to resolve ``pm:<name>``.
    role : how the model run saw this brain (:func:`run_role`). For ``errors`` on a training brain
        the nodes of training sections (``train_mask``, seen in training) are coloured and scored
        apart from the held-out test-section nodes (keys 1 correct / 2 wrong held out, 3 / 4 the
        same on training sections, 0 not annotated); otherwise every annotated node is held out.
    """
    kind, _, argument = spec.partition(":")
    name = spec.replace(":", "-")
    if kind == "errors":
        truth = _need(arrays, "y", spec).astype(np.int64)
        pred = _need(arrays, "pred", spec).astype(np.int64)
        known = (truth >= 0) & (pred >= 0)
        right = truth == pred
        if role == "train" and "train_mask" in arrays:
            # nodes of training sections were seen by the model: scored and coloured apart
            seen = known & np.asarray(arrays["train_mask"], dtype=bool)
        else:
            seen = np.zeros(len(truth), dtype=bool)
        held = known & ~seen
        keys = np.zeros(len(truth), dtype=np.int64)
        keys[held & right], keys[held & ~right] = 1, 2
        keys[seen & right], keys[seen & ~right] = 3, 4
        palette = [UNLABELLED_RGB, CORRECT_RGB, WRONG_RGB, CORRECT_SEEN_RGB, WRONG_SEEN_RGB]
        rgb = np.array(palette, dtype=np.uint8)[keys]

        def share(mask):
            return float((mask & right).sum() / mask.sum()) if mask.any() else float("nan")

        held_name = {
            "train": "test sections",
            "transfer": "transfer brain",
            "unused": "brain not trained on",
        }.get(role or "", "annotated nodes")
        accuracy = share(held)
        title = f"errors on {held_name}: accuracy {accuracy:.3f} ({int(held.sum())} nodes)"
        if seen.any():
            title += f"; training sections (seen): {share(seen):.3f} ({int(seen.sum())} nodes)"
        names = {
            0: "not annotated",
            1: f"correct ({held_name})",
            2: f"wrong ({held_name})",
            3: "correct (training sections)",
            4: "wrong (training sections)",
        }
        used = [k for k in range(5) if k in (0, 1, 2) or (keys == k).any()]
        return Colouring(
            name=name,
            title=title,
            rgb=rgb,
            legend=[(names[k], unit_rgb(palette[k])) for k in (1, 2, 3, 4, 0) if k in used],
            legend_title="prediction vs annotation",
            labels=keys,
            label_table={k: (names[k], palette[k]) for k in used},
            summary={
                "nodes_compared": int(held.sum()),
                "accuracy": accuracy,
                "held_out": held_name,
                "seen_nodes": int(seen.sum()),
                "seen_accuracy": share(seen),
            },
        )  # fmt: skip
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
    if spec == "y" and "train_mask" in arrays and "test_mask" in arrays:
        train = int((np.asarray(arrays["train_mask"], bool) & (classes >= 0)).sum())
        test = int((np.asarray(arrays["test_mask"], bool) & (classes >= 0)).sum())
        title += f" (nodes on annotated sections: {train} training-section, {test} test-section)"
    from cortexgraph.render.export import area_label_table

    return Colouring(
        name=name,
        title=title,
        rgb=colour_classes(classes, areas),
        legend=_area_legend(areas, classes),
        labels=ids,
        label_table=area_label_table(areas),
        summary={"nodes_labelled": int((classes >= 0).sum())},
        classes=classes,
    )


def _atlas_names(brain: Brain) -> list[str] | None:
    cohort = brain.cohort
    if cohort is None or not cohort.atlas_labels:
        return None
    path = cohort.atlas_labels_path
    if not path.is_file():
        return None
    rows = read_tsv(path, ("index", "area_id", "name"))
    rows.sort(key=lambda r: int(r["index"]))
    return [r["name"] for r in rows]


def _panels(
    renderer: SurfaceRenderer,
    rgb: np.ndarray,
    views: Sequence[str],
    *,
    classes: np.ndarray | None = None,
    names: Sequence[str] = (),
    title: str = "",
) -> dict[str, Panel]:
    """One :class:`Panel` per view: the picture cropped to the mesh, the names of the areas large
    enough on screen (when ``classes`` is given), scale bar and orientation marker."""
    panels = {}
    for view in views:
        picture = renderer.render(rgb, view)
        box = trim_box(picture)
        labels = []
        if classes is not None:
            ids = renderer.render_ids(classes, view)[box]
            labels = [(n, r, c) for n, r, c, _ in label_positions(ids, names)]
        panels[view] = Panel(
            f"{title}{view}",
            picture[box],
            labels=labels,
            mm_per_px=renderer.mm_per_px(view),
            directions=screen_directions(view, renderer.hemi),
        )
    return panels


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

    brain, _ = brain_in_cohort(brain, root)
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
                written += stage.reused_outputs()
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
    from cortexgraph.meshes.io import hemisphere_structure, write_ply
    from cortexgraph.render.export import (
        write_freesurfer_annot,
        write_gifti_labels,
        write_gifti_scalars,
    )

    areas = brain.cohort.areas
    pm_names = _atlas_names(brain)
    kind = spec.partition(":")[0]
    role = run_role(brain.id, run_settings(brain.cohort.root, run)) if run else None
    context = role_text(brain.id, run, role)
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
        colouring = node_colouring(spec, arrays, areas, pm_names, role)
        summary[hemi] = colouring.summary
        outputs = _outputs(out_dir, hemi, colouring, exports)
        renderer = SurfaceRenderer(vertices, faces, hemi=hemi, size_px=size_px, backend=backend)
        try:
            panels = _panels(
                renderer,
                colouring.rgb,
                views,
                classes=colouring.classes,
                names=[a.name for a in areas.areas],
            )
            what = f"{colouring.title}" + (f", run {run}" if run and kind in RUN_SPECS else "")
            title = f"{brain.id} {hemi}: {what}"
            if context and kind in RUN_SPECS:
                title += "\n" + context
            picture_grid(
                outputs[0],
                [panels[view] for view in views],
                ncols=min(3, len(views)),
                legend=colouring.legend,
                legend_title=colouring.legend_title,
                colour_bar=colouring.colour_bar,
                title=title,
            )
            if exports:
                stem = out_dir / f"{hemi}_{colouring.name}"
                if colouring.labels is not None and colouring.label_table is not None:
                    write_gifti_labels(
                        stem.with_name(stem.name + ".label.gii"),
                        colouring.labels,
                        colouring.label_table,
                        structure=hemisphere_structure(hemi),
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
                        structure=hemisphere_structure(hemi),
                    )
                write_ply(stem.with_name(stem.name + ".ply"), vertices, faces, colouring.rgb)
            written.extend(outputs)
            if compare and kind == "pred" and "y" in arrays:
                figure = out_dir / f"{hemi}_y_vs_pred.png"
                _comparison_figure(
                    figure, renderer, arrays, areas, views, brain.id, hemi, run, context
                )
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


def _comparison_figure(path, renderer, arrays, areas, views, brain_id, hemi, run, context) -> Path:
    """Annotation | prediction per view, two view pairs per row (as in the GNN paper's figures),
    area names on both."""
    truth = np.asarray(arrays["y"], dtype=np.int64)
    pred = np.asarray(arrays["pred"], dtype=np.int64)
    names = [a.name for a in areas.areas]
    truth_panels = _panels(
        renderer, colour_classes(truth, areas), views, classes=truth, names=names,
        title="annotation, ",
    )  # fmt: skip
    pred_panels = _panels(
        renderer, colour_classes(pred, areas), views, classes=pred, names=names,
        title="prediction, ",
    )  # fmt: skip
    panels = []
    for view in views:
        panels += [truth_panels[view], pred_panels[view]]
    legend = _area_legend(areas, np.concatenate([truth, pred]))
    title = f"{brain_id} {hemi}: annotation (nodes on annotated sections) and prediction of run {run}"
    if context:
        title += "\n" + context
    return picture_grid(
        path,
        panels,
        ncols=4 if len(views) > 1 else 2,
        legend=legend,
        title=title,
    )
