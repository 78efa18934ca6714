"""``cortexgraph project``: node labels back onto sections (label images, contours, overlays, F1).

The stage ``project@<source>`` of a brain: the labels of its graph nodes (``pred`` from predict,
``y`` from features) painted onto every available section
(:func:`cortexgraph.mapping.projection.project_points_to_image`: each gray-matter pixel takes the
label of the nearest mapped point of its section within ``max_distance_mm``, after an optional
smoothing along the cortex, Schiffer, PhD thesis, Sect. 6.1.1), and scored against the phantom's
full true label images when they exist (:mod:`cortexgraph.mapping.pixel_metrics`).

Outputs of :func:`project_brain` (``<cohort>/derivatives/cortexgraph/<brain>/labels/<source>/``)::

    sNNNN.h5              uint16 area ids (0 unlabelled), label raster, raw section frame
    sNNNN.geojson         the same as polygon contours (section mm)
    overlays/sNNNN.png    section image with the labels (and the ground truth, when present)
    pixel_f1.tsv          per area: area_id name n_true n_pred tp f1   (only with ground truth)
    project.json          per-section counts, scores, seconds

``<source>``: ``gnn-<run>`` for the predictions of a model run, ``nodes-y`` for the annotated node
labels; the stage record is ``<brain>/records/project@<source>.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Brain, brain_in_cohort, format_tsv
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.gnn.stage import run_settings
from cortexgraph.mapping.pixel_metrics import (
    PIXEL_F1_COLUMNS,
    PixelCounts,
    pixel_counts,
    pixel_f1_rows,
)
from cortexgraph.mapping.projection import (
    DEFAULT_MAX_DISTANCE_MM,
    SectionPoints,
    classes_to_area_ids,
    label_contours,
    merge_section_points,
    project_points_to_image,
    section_points,
    smooth_node_labels,
)
from cortexgraph.outputs import write_json_atomic, write_text_atomic

__all__ = ["project_graphs", "project_brain", "source_name", "truth_labels_folder"]


# -- the whole brain ------------------------------------------------------------------------------
def source_name(run: str | None = None, labels: str = "pred") -> str:
    """The label source a projection writes: ``gnn-<run>`` for a run's predictions, ``nodes-y``
    for the annotated node labels."""
    if labels == "pred":
        if not run:
            raise CortexgraphError(
                "projecting predictions needs the model run", fix="pass --run RUN"
            )
        return f"gnn-{run}"
    if labels == "y":
        return "nodes-y"
    raise CortexgraphError(
        f"unknown node labels {labels!r}", fix="project pred (with --run) or y (the annotations)"
    )


def _pick_overlays(sections: Sequence[int], labelled: dict[int, int], count: int) -> list[int]:
    if count == 0:
        return []
    candidates = [s for s in sections if labelled.get(s, 0) > 0] or list(sections)
    if count < 0 or count >= len(candidates):
        return list(candidates)
    picks = np.linspace(0, len(candidates) - 1, count + 2)[1:-1]
    return sorted({candidates[int(round(p))] for p in picks})


def truth_labels_folder(brain: Brain) -> Path | None:
    """The phantom's full true label images ``ground_truth/<brain>/labels`` (None elsewhere)."""
    if brain.cohort is None:
        return None
    candidate = brain.ground_truth / "labels"
    return candidate if candidate.is_dir() else None


def project_graphs(
    brain: Brain,
    graphs: Sequence[dict[str, np.ndarray]],
    out_dir: Path,
    *,
    source: str,
    spacing_um: float,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    smooth_hops: int = 0,
    contours: bool = True,
    overlays: int = 6,
    truth_dir: Path | None = None,
    title: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    run: str | None = None,
) -> tuple[dict, list[Path]]:
    """Project class labels of graph nodes onto every available section of ``brain`` (no record).

    Parameters
    ----------
    graphs : per hemisphere, node arrays ``section``, ``point_mm``, ``valid``, ``labels`` (class
        index, -1 unknown) and ``edge_index``.
    out_dir : where the label images, contours, overlays and tables go (module docstring).
    source : the label source's name (in the files' attributes and picture titles).
    truth_dir : full true label images to score against (or None).
    title : what the overlay pictures name as their labels (default ``source``).
    run : the model run whose labels these are: the overlays name each section's role for it
        (:func:`cortexgraph.render.sections.section_roles`).

    Returns
    -------
    (report, files written).
    """
    from cortexgraph.data.stack import SectionStack

    start = time.perf_counter()
    areas = brain.area_table  # DataFormatError for a brain read without its cohort
    groups, node_counts = [], {}
    for k, graph in enumerate(graphs):
        classes = smooth_node_labels(graph["labels"], graph["edge_index"], smooth_hops)
        ids = classes_to_area_ids(classes, areas)
        groups.append(section_points(graph["section"], graph["point_mm"], graph["valid"], ids))
        node_counts[graph.get("name", str(k))] = {
            "nodes": int(len(classes)),
            "labelled": int((classes >= 0).sum()),
            "changed_by_smoothing": int((classes != graph["labels"]).sum()),
        }
    points = merge_section_points(groups)
    stack = SectionStack(brain)
    sections = list(stack.sections)
    per_section, labelled_pixels, total = [], {}, PixelCounts.empty()
    names = {a.id: a.name for a in areas.areas}
    written: list[Path] = []
    for k, s in enumerate(sections):
        path = out_dir / f"s{s:04d}.h5"
        pts = points.get(s, SectionPoints(np.zeros((0, 2)), np.zeros(0, np.int64)))
        tissue = stack.tissue_mask(s, spacing_um)
        image = project_points_to_image(
            tissue, pts.points_mm, pts.area_ids, spacing_um, max_distance_mm=max_distance_mm
        )
        write_raster(path, image, spacing_um, kind="labels", attrs={"section": s, "source": source})
        written.append(path)
        if contours:
            from cortexgraph.data.annotations import write_contours

            write_contours(path.with_suffix(".geojson"), label_contours(image, spacing_um, names))
            written.append(path.with_suffix(".geojson"))
        labelled_pixels[s] = int((image > 0).sum())
        record: dict[str, int | float] = {
            "section": s,
            "points": int(len(pts.area_ids)),
            "pixels_labelled": labelled_pixels[s],
        }
        truth_path = truth_dir / f"s{s:04d}.h5" if truth_dir else None
        if truth_path is not None and truth_path.is_file():
            with Raster(truth_path) as raster:
                truth = raster.read_at_spacing(spacing_um)
            if truth.shape != image.shape:
                raise DataFormatError(
                    f"true labels {truth.shape} and projected labels {image.shape} differ in shape",
                    file=truth_path,
                    section=s,
                    fix="true and section rasters must cover the same extent",
                )
            counts = pixel_counts(image, truth)
            total = total + counts
            record["macro_f1"] = counts.macro_f1()
            record["pixels_scored"] = counts.scored
        per_section.append(record)
        if progress is not None:
            progress(k + 1, len(sections))

    scores = None
    if total.scored:
        scores = total.summary()
        ids, f1 = total.per_area_f1()
        scores["per_area"] = {int(i): float(v) for i, v in zip(ids, f1, strict=True)}
        text = format_tsv(PIXEL_F1_COLUMNS, pixel_f1_rows(total, names))
        write_text_atomic(out_dir / "pixel_f1.tsv", text)
        written.append(out_dir / "pixel_f1.tsv")

    picks = _pick_overlays(sections, labelled_pixels, overlays)
    if picks:
        from cortexgraph.render.sections import section_roles

        assert brain.cohort is not None  # brain.area_table above raised otherwise
        roles = section_roles(brain, stack, run_settings(brain.cohort.root, run))
    for s in picks:
        written.append(
            _overlay(stack, s, out_dir, spacing_um, areas, truth_dir, title or source, roles[s])
        )
    stack.close()
    report = {
        "source": source,
        "out_dir": str(out_dir),
        "graphs": node_counts,
        "sections": per_section,
        "pixel_f1": scores,
        "truth_dir": str(truth_dir) if truth_dir else None,
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(out_dir / "project.json", report)
    written.append(out_dir / "project.json")
    return report, written


def project_brain(
    brain: Brain | str,
    run: str | None = None,
    *,
    labels: str = "pred",
    root: str | os.PathLike | None = None,
    spacing_um: float | None = None,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    smooth_hops: int = 0,
    contours: bool = True,
    overlays: int = 6,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Stage ``project@<source>``: one model run's node predictions (or the annotated node labels)
    painted onto all sections of a brain; scored against the phantom's truth when it exists.

    Parameters
    ----------
    brain : a Brain, or a brain id / folder resolved with ``find_brain(brain, root)``.
    run : the model run whose ``pred`` to project (label source ``gnn-<run>``).
    labels : ``pred`` (needs ``run``) or ``y`` (the annotated node labels, source ``nodes-y``).
    spacing_um : pixel spacing of the label images (default: the brain's annotation spacing).
    max_distance_mm : pixels farther than this from every point of their section stay unlabelled.
    smooth_hops : majority vote along the cortex first (:func:`smooth_node_labels`); 0 = off.
    contours : also write ``sNNNN.geojson``.
    overlays : number of overlay PNGs (spread evenly over the labelled sections); -1 all, 0 none.
    overwrite, wait_s : see :class:`~cortexgraph.derivatives.StageRun`.
    progress : optional callable ``(done, total)`` over sections.

    Returns
    -------
    The content of ``project.json`` (per-section counts, ``pixel_f1`` or None, seconds) with
    ``reused`` and ``why``. Files: ``<brain>/labels/<source>/`` (module docstring).
    """
    from cortexgraph.derivatives import Derivatives, StageId, StageRun, run_stage
    from cortexgraph.derivatives.graphs import graph_hemispheres, load_brain_graph, node_stages
    from cortexgraph.derivatives.inputs import brain_inputs
    from cortexgraph.derivatives.layout import label_source_dir

    brain, _ = brain_in_cohort(brain, root)
    source = source_name(run, labels)
    store = Derivatives.of(brain)
    out_dir = label_source_dir(store.root, brain.id, source)
    truth_dir = truth_labels_folder(brain)
    # labels at the annotation spacing; a brain without annotations: at the mask spacing
    spacing_um = float(spacing_um or brain.annotation_spacing_um or brain.spacing_of("mask"))
    values, files = brain_inputs(brain, ("mask",), transforms=False)
    if truth_dir is not None:
        files += sorted(truth_dir.glob("s*.h5"))
    parameters = {
        **values,
        "labels": labels,
        "run": run if labels == "pred" else None,
        "spacing_um": spacing_um,
        "max_distance_mm": float(max_distance_mm),
        "smooth_hops": int(smooth_hops),
        "contours": bool(contours),
        "overlays": int(overlays),
        "scored_against_truth": truth_dir is not None,
    }
    upstream = node_stages(
        brain.id, labels=labels == "y", run=run if labels == "pred" else None
    )

    def compute(stage: StageRun) -> dict:
        # every file the run may write (for every listed section: a superset of those it
        # writes), declared first, so that an interrupted run leaves none of them behind
        sections = [record.section for record in brain.sections]
        label_files = [out_dir / f"s{s:04d}.h5" for s in sections]
        stage.writing(
            label_files
            + [p.with_suffix(".geojson") for p in label_files]
            + [out_dir / "overlays" / f"s{s:04d}.png" for s in sections]
            + [out_dir / "pixel_f1.tsv", out_dir / "project.json"]
        )
        graphs = []
        for hemi in graph_hemispheres(store, brain.id):
            data = load_brain_graph(
                store,
                brain.id,
                hemi,
                labels=labels == "y",
                run=run if labels == "pred" else None,
            )
            values_ = data.y if labels == "y" else data.pred
            graphs.append(
                {
                    "name": hemi,
                    "section": data.section.numpy(),
                    "point_mm": data.point_mm.numpy(),
                    "valid": data.valid.numpy(),
                    "labels": values_.numpy().astype(np.int64),
                    "edge_index": data.edge_index.numpy(),
                }
            )
        report, written = project_graphs(
            brain,
            graphs,
            out_dir,
            source=source,
            spacing_um=spacing_um,
            max_distance_mm=max_distance_mm,
            smooth_hops=smooth_hops,
            contours=contours,
            overlays=overlays,
            truth_dir=truth_dir,
            title=f"run {run}" if labels == "pred" else "annotated nodes",
            progress=progress,
            run=run if labels == "pred" else None,
        )
        report["parameters"] = parameters
        measured = {k: v for k, v in report.items() if k != "sections"}
        stage.commit(written, measured)
        return stage.summary(report)

    return run_stage(
        store,
        StageId("project", brain.id, (source,)),
        compute,
        parameters=parameters,
        inputs=files,
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def _overlay(stack, s, out_dir, spacing_um, areas, truth_dir, what, role) -> Path:
    from cortexgraph.render.sections import section_context, section_overlay_figure

    path = out_dir / "overlays" / f"s{s:04d}.png"
    labels = Raster(out_dir / f"s{s:04d}.h5").read_level(0)
    image = stack.raster(s, "image").read_at_spacing(spacing_um)
    panels = [(f"projected: {what}", labels)]
    truth_path = truth_dir / f"s{s:04d}.h5" if truth_dir else None
    if truth_path is not None and truth_path.is_file():
        with Raster(truth_path) as raster:
            panels.append(("ground truth (phantom)", raster.read_at_spacing(spacing_um)))
    return section_overlay_figure(
        path,
        image,
        panels,
        areas,
        spacing_um=spacing_um,
        title=f"{stack.brain.id}, section {s}: labels projected from {what}",
        context=section_context(stack, s, role),
    )
