"""The ``stats`` stage: morphometry of 3D area maps (volume, pial surface area, z-scores).

Stage executions and their files (``<brain>`` = ``<cohort>/derivatives/cortexgraph/<brain>``,
``<area>`` = the area name's file-name form, :func:`cortexgraph.data.names.slug`)::

    stats@<source>@<area>    <brain>/maps3d/<source>/<area>_stats.tsv, <area>.png
    stats-table@<source>     <brain>/maps3d/<source>/stats.tsv   (every area measured, one table)

:func:`stats_area` measures one area (building its map first, stage ``map3d@<source>@<area>`` of
:mod:`cortexgraph.maps3d.stage`, when it is not current); :func:`stats_table` merges every area
measured so far; :func:`stats_brain` does what ``cortexgraph stats <brain>`` does: both, for the
areas asked for or for every area map of the source. Volumes in mm^3, surface areas in mm^2,
shrinkage-corrected with the brain's volume shrinkage factor (Amunts et al. 2007, NeuroImage);
pial surface area and the 0.25 depth cut as in Schiffer et al. 2021, NeuroImage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack, cast

import numpy as np

from cortexgraph.data.manifest import GROUND_TRUTH, Brain
from cortexgraph.data.names import slug
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.derivatives.layout import maps3d_dir
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.maps3d.stage import MapOptions, _area, _areas, _source, map3d_area

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

__all__ = [
    "REFERENCES",
    "brain_hemispheres",
    "reference_for",
    "hemisphere_notes",
    "stats_area",
    "stats_table",
    "stats_brain",
    "Morphometry",
]

log = logging.getLogger(__name__)


def _midline(store: Derivatives, brain: Brain) -> tuple[float | None, list[StageId]]:
    """The interhemispheric plane build-graph found (x in mm), when its record is current."""
    sid = StageId("build-graph", brain.id)
    record = store.record(sid)
    if record is None or store.problems(record):
        return None, []
    midline = record.measured.get("midsurfaces", {}).get("midline_x_mm")
    return (float(midline), [sid]) if midline is not None else (None, [])


def brain_hemispheres(store: Derivatives, brain: Brain) -> tuple[tuple[str, ...], str]:
    """The hemispheres a brain's sections hold and where that comes from.

    brain.toml's ``hemispheres`` when declared, else those of the current build-graph record
    (build-graph detects a brain of one hemisphere), else both. Returns ``(hemispheres, source)``.
    """
    if brain.hemispheres is not None:
        return tuple(brain.hemispheres), "brain.toml"
    record = store.record(StageId("build-graph", brain.id))
    if record is not None and not store.problems(record):
        found = record.measured.get("midsurfaces", {}).get("hemispheres")
        if found:
            return tuple(found), "build-graph"
    return ("lh", "rh"), "default"


REFERENCES = ("auto", "human", "phantom", "none")
"""Keywords of ``stats --reference`` (besides a TSV path)."""


def reference_for(brain: Brain, reference: str | Path | None = None) -> tuple[dict, str, list[Path]]:
    """The reference population that z-scores compare a brain with, and its label.

    Parameters
    ----------
    brain : the brain measured.
    reference : ``auto`` (None; default): the phantom's own population in a phantom cohort (made
        by ``cortexgraph synth``: ``synth.json``), the shipped human table otherwise; ``human``:
        the shipped table (five male human brains, Amunts et al.); ``phantom``: the cohort's
        other phantom brains (their exact measures in ``ground_truth/<brain>/area_measures.tsv``,
        shrinkage-corrected); ``none``: no z-scores; or the path of a user table (TSV columns
        area, quantity, mean, sd[, hemisphere]).

    Returns
    -------
    ``(table, label, files)``: the table for :func:`~cortexgraph.maps3d.stats.morphometry_rows`
    (empty: no z-scores), the label written into the ``reference`` column, and the files read
    (inputs of the stats stage).
    """
    from cortexgraph.maps3d.morphometry import load_reference_table, population_reference_table

    cohort = brain.cohort
    phantom = cohort is not None and (cohort.root / "synth.json").is_file()
    choice = "auto" if reference is None else str(reference)
    if choice == "auto":
        choice = "phantom" if phantom else "human"
    if choice == "none":
        return {}, "none (no z-scores)", []
    if choice == "human":
        label = "human reference: 5 male brains (Amunts et al.; LSM paper Table 2)"
        if phantom:
            label += "; NOT a match for this phantom cohort"
        return load_reference_table(None), label, []
    if choice == "phantom":
        if cohort is None or not phantom:
            raise ParameterError(
                "--reference phantom needs a phantom cohort (made by cortexgraph synth)",
                file=cohort.root / "cohort.toml" if cohort else brain.root,
                fix="use --reference auto, human, none or a TSV of your population",
            )
        values, files = {}, []
        for other in cohort.brain_ids:
            path = cohort.root / GROUND_TRUTH / other / "area_measures.tsv"
            if not path.is_file():
                continue
            files.append(path)
            values[other] = _phantom_measures(path)
        table = population_reference_table(values, exclude=brain.id)
        others = sorted(b for b in values if b != brain.id)
        label = (
            f"phantom population: {len(others)} other brains of the cohort "
            f"({', '.join(others)}), exact measures"
        )
        return table, label, files
    path = Path(choice)  # str(reference): not None here
    if not path.is_file():
        raise ParameterError(
            f"reference {reference!r} is neither a keyword nor a file",
            file=path,
            fix=f"use one of {', '.join(REFERENCES)} or the path of a reference TSV",
        )
    return load_reference_table(path), f"user table {path.name}", [path]


def _phantom_measures(path: Path) -> dict[tuple[str, str, str], float]:
    """A phantom brain's exact, shrinkage-corrected (fresh) measures per area and hemisphere."""
    from cortexgraph.data.manifest import read_tsv

    out: dict[tuple[str, str, str], float] = {}
    for row in read_tsv(path, ("name", "hemisphere", "volume_fresh_mm3", "pial_area_fresh_mm2")):
        for quantity, column in (("volume", "volume_fresh_mm3"), ("surface", "pial_area_fresh_mm2")):
            value = float(row[column])
            out[(row["name"], quantity, row["hemisphere"])] = value
            key = (row["name"], quantity, "both")
            out[key] = out.get(key, 0.0) + value
    return out


def hemisphere_notes(
    rows: list[dict], hemispheres: tuple[str, ...], hemispheres_from: str, midline: float,
    midline_from: str,
) -> tuple[dict[str, str], list[str]]:
    """Notes per hemisphere row and warnings for the record (``stats`` docstring).

    A one-hemisphere brain: the absent hemisphere's row says so. A two-hemisphere brain whose area
    lies entirely on one side: both rows say so, and a warning names the plane and what to check.
    """  # fmt: skip
    notes: dict[str, str] = {}
    warnings: list[str] = []
    volume = {r["hemisphere"]: r["volume_mm3"] for r in rows}
    if len(hemispheres) == 1:
        (only,) = hemispheres
        other = "rh" if only == "lh" else "lh"
        notes[other] = f"the brain holds {only} only ({hemispheres_from}): not measured"
        return notes, warnings
    if volume.get("both", 0) > 0:
        empty = [h for h in ("lh", "rh") if volume.get(h, 0) == 0]
        if len(empty) == 1:
            side = "rh" if empty[0] == "lh" else "lh"
            text = (
                f"the area lies entirely in {side} (split at x = {midline:.1f} mm, {midline_from}); "
                f"{empty[0]} got no volume"
            )
            notes = {"lh": text, "rh": text}
            warnings.append(
                f"{text}: in a brain of two hemispheres check the plane (--midline-x-mm) and the "
                "labels; a brain of one hemisphere: declare hemispheres in brain.toml"
            )
    return notes, warnings


def stats_area(
    brain: Brain,
    area: str | int,
    source: str,
    options: MapOptions | None = None,
    *,
    reference: str | Path | None = None,
    shrinkage: float | None = None,
    max_depth: float = 0.25,
    midline_x_mm: float | None = None,
    depth_voxel_mm: float | None = None,
    depth_model: str = "equivolumetric",
    overwrite: bool = False,
    wait_s: float = 0.0,
) -> dict:
    """Stage ``stats@<source>@<area>``: volume and pial-side surface area of one area map, per
    hemisphere and together, shrinkage-corrected, with z-scores against a reference population.

    The map (stage ``map3d@<source>@<area>``) is built first when it is not current. The hemispheres
    are split at ``midline_x_mm``; by default at the interhemispheric plane of the brain's build-graph
    record, else at the fissure found in the stacked tissue volume; a brain of one hemisphere
    (:func:`brain_hemispheres`) is not split. ``reference``: see :func:`reference_for` (default: the
    population that matches the cohort). ``depth_model``: ``equivolumetric`` (the method's cortical
    depth for the 0.25 cut) or ``laplace``. An area of a two-hemisphere brain that lands entirely
    on one side is measured with a warning (log, ``note`` column, ``warnings`` in the record).

    Returns
    -------
    ``{"rows": [...], "files": [...], "reused", "why"}``; writes ``<area>_stats.tsv`` and
    ``<area>.png`` (module docstring).
    """
    import nibabel as nib

    from cortexgraph.data.colors import area_rgb
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.maps3d.brainmap import read_area_map
    from cortexgraph.maps3d.morphometry import sample_at_vertices
    from cortexgraph.maps3d.stats import (
        area_picture,
        hemisphere_measures,
        morphometry_rows,
        tissue_depth_volume,
        write_report,
    )
    from cortexgraph.meshes.io import read_gifti_surface
    from cortexgraph.reconstruct.hemispheres import interhemispheric_x_mm
    from cortexgraph.reconstruct.volume import stack_tissue_volume

    options = options or MapOptions()
    source = _source(source)
    rec = _area(brain, area)
    stem = slug(rec.name)
    if not 0 < max_depth < 1:
        raise ParameterError(f"max depth {max_depth} must lie in (0, 1)", fix="e.g. 0.25")
    ParameterError.check_ranges(
        [
            (midline_x_mm is None or abs(midline_x_mm) < 1e4, "--midline-x-mm", midline_x_mm,
             "a finite world x in mm inside the reconstruction, or leave it out (the plane "
             "build-graph found)"),
            (depth_voxel_mm is None or 0.001 <= depth_voxel_mm <= 10, "--depth-voxel-mm",
             depth_voxel_mm, "0.001..10 mm, or leave it out (the map's voxel size)"),
        ]
    )  # fmt: skip
    from cortexgraph.meshes.equivolume import DEPTH_MODELS

    if depth_model not in DEPTH_MODELS:
        raise ParameterError(
            f"unknown depth model {depth_model!r}", fix=f"use {' or '.join(DEPTH_MODELS)}"
        )
    f_volume = float(shrinkage) if shrinkage is not None else float(brain.shrinkage_factor)
    if not 0 < f_volume < 100:
        raise ParameterError(f"shrinkage factor {f_volume} out of range", fix="give a value > 0")
    map3d_area(brain, rec.id, source, options, wait_s=wait_s)
    store = Derivatives.of(brain)
    out_dir = maps3d_dir(store.root, brain.id, source)
    auto_midline, midline_upstream = (None, []) if midline_x_mm is not None else _midline(
        store, brain
    )
    hemispheres, hemispheres_from = brain_hemispheres(store, brain)
    reference_table, reference_label, reference_files = reference_for(brain, reference)
    values, geometry_files = brain_inputs(brain, ("mask",), exclusion_mask=True)
    inputs = [*geometry_files, *reference_files]
    parameters = {
        **values,
        "area": rec.name,
        "source": source,
        "max_depth": float(max_depth),
        "f_volume": f_volume,
        "midline_x_mm": midline_x_mm,
        "midline_from": "option" if midline_x_mm is not None else (
            "build-graph" if auto_midline is not None else "stacked tissue"
        ),
        "depth_voxel_mm": depth_voxel_mm,
        "depth_model": depth_model,
        "interpolation": options.interpolation,
        "hemispheres": list(hemispheres),
        "reference": reference_label,
    }
    with StageRun(
        store,
        StageId("stats", brain.id, (source, stem)),
        parameters=parameters,
        inputs=inputs,
        upstream=[StageId("map3d", brain.id, (source, stem)), *midline_upstream],
        overwrite=overwrite,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return run.summary(files=run.reused_outputs())
        mask, affine = read_area_map(out_dir / f"{stem}.nii.gz")
        verts, faces = read_gifti_surface(out_dir / f"{stem}.gii")
        pverts, pfaces = read_gifti_surface(out_dir / f"{stem}_preview.gii")
        h = round(float(abs(affine[0, 0])), 6)
        hd = round(float(depth_voxel_mm), 6) if depth_voxel_mm else h
        exclusion = None
        if brain.exclusion_mask:
            image = cast("SpatialImage", nib.load(str(brain.path(brain.exclusion_mask))))
            exclusion = (np.asarray(image.dataobj) > 0, np.asarray(image.affine, dtype=float))
        depth_info: dict = {}
        with SectionStack(brain) as stack:
            if len(verts):
                volume, volume_affine, _ = stack_tissue_volume(stack, hd)
                if len(hemispheres) == 1:  # not split: everything in the one hemisphere
                    midline = math.inf if hemispheres == ("lh",) else -math.inf
                elif midline_x_mm is not None:
                    midline = float(midline_x_mm)
                elif auto_midline is not None:
                    midline = auto_midline
                else:
                    log.warning(
                        "%s has no current build-graph record: the hemispheres are split at the "
                        "fissure of the stacked tissue volume (run build-graph first, or give "
                        "--midline-x-mm)",
                        brain.id,
                    )
                    midline = interhemispheric_x_mm(volume, volume_affine)
                depth_vol, depth_aff, depth_info = tissue_depth_volume(
                    stack,
                    hd,
                    verts.min(axis=0),
                    verts.max(axis=0),
                    exclusion=exclusion,
                    tissue=(volume, volume_affine),
                    depth_model=depth_model,
                    interpolation=options.interpolation,
                )
                depth = sample_at_vertices(depth_vol, depth_aff, verts)
                pdepth = sample_at_vertices(depth_vol, depth_aff, pverts)
                del depth_vol, volume
            else:
                depth, pdepth = np.zeros(0), np.zeros(0)
                midline = float(midline_x_mm or auto_midline or 0.0)
                if len(hemispheres) == 1:
                    midline = math.inf if hemispheres == ("lh",) else -math.inf
        measures = hemisphere_measures(
            mask, affine, verts, faces, depth, midline_x_mm=midline, max_depth=max_depth
        )
        midline_from = (
            "brain.toml hemispheres" if len(hemispheres) == 1 and hemispheres_from == "brain.toml"
            else "build-graph found one hemisphere" if len(hemispheres) == 1
            else parameters["midline_from"]
        )  # fmt: skip
        common = dict(
            brain=brain.id,
            source=source,
            area_id=rec.id,
            area=rec.name,
            voxel_size_mm=h,
            f_volume=f_volume,
            reference_table=reference_table,
            max_depth=max_depth,
            midline_x_mm=midline if math.isfinite(midline) else math.nan,
            depth_model=depth_model,
            reference=reference_label,
        )
        rows = morphometry_rows(measures, **common)
        notes, warnings = hemisphere_notes(
            rows, hemispheres, hemispheres_from, midline, midline_from
        )
        if notes:
            rows = morphometry_rows(measures, **common, notes=notes)
        for text in warnings:
            log.warning("%s %s from %s: %s", brain.id, rec.name, source, text)
        report = write_report(out_dir / f"{stem}_stats.tsv", rows)
        pial = (
            np.asarray(pdepth)[np.asarray(pfaces)].max(axis=1) < max_depth
            if len(pfaces)
            else np.zeros(0, bool)
        )
        picture = area_picture(
            out_dir / f"{stem}.png",
            pverts,
            pfaces,
            pial,
            color_rgb=area_rgb(brain.area_table)[rec.id],
            title=f"{brain.id} {rec.name} (id {rec.id}), labels: {source}"
            + _source_context(brain, source),
            rows=rows,
        )
        measured = {
            "rows": rows,
            "depth": depth_info,
            "midline_x_mm": midline if math.isfinite(midline) else None,
            "hemispheres": list(hemispheres),
            "reference": reference_label,
            "warnings": warnings,
        }
        run.commit([report, picture], measured)
    return run.summary(measured, files=[report, picture])


def _source_context(brain: Brain, source: str) -> str:
    """A second title line: how a model run saw the brain (``gnn-<run>`` sources), or what the
    labels are (``truth``, ``annotation``)."""
    if source == "truth":
        return "\nthe phantom's true labels on every section"
    if source == "annotation":
        return "\nthe annotated sections only"
    if source.startswith("gnn-") and brain.cohort is not None:
        from cortexgraph.gnn.stage import resolve_run, run_config

        try:
            config = run_config(resolve_run(source[4:], brain.cohort.root))
        except (CortexgraphError, OSError, ValueError):
            return ""
        if brain.id == config.get("transfer"):
            return "\ntransfer brain of the run: never seen in training"
        if brain.id in config.get("train_brains", ()):
            return "\ntraining brain of the run: labels of its training sections were seen"
        return "\nbrain not used by the run"
    return ""


def stats_table(brain: Brain, source: str, *, wait_s: float = 0.0) -> Path | None:
    """Stage ``stats-table@<source>``: every area of ``source`` measured so far (current
    ``stats@<source>@<area>`` records), in one table ``maps3d/<source>/stats.tsv``. None when no area
    has been measured."""
    from cortexgraph.maps3d.stats import merge_reports

    source = _source(source)
    store = Derivatives.of(brain)
    folder = store.root / brain.id / "records"
    upstream, reports = [], []
    for area in brain.area_table.areas:
        sid = StageId("stats", brain.id, (source, slug(area.name)))
        if (folder / f"{sid.file_stem}.json").is_file():
            upstream.append(sid)
            reports.append(maps3d_dir(store.root, brain.id, source) / f"{slug(area.name)}_stats.tsv")
    if not upstream:
        return None
    out = maps3d_dir(store.root, brain.id, source) / "stats.tsv"
    with StageRun(
        store,
        StageId("stats-table", brain.id, (source,)),
        parameters={"source": source},
        upstream=upstream,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return out
        merge_reports(reports, out)
        run.commit([out], {"areas": len(reports)})
    return out


class Morphometry(TypedDict, total=False):
    """The morphometry keywords of :func:`stats_area` (defaults there) that :func:`stats_brain`
    passes on to each area."""

    reference: str | Path | None
    shrinkage: float | None
    max_depth: float
    midline_x_mm: float | None
    depth_voxel_mm: float | None
    depth_model: str


def stats_brain(
    brain: Brain,
    source: str,
    areas: Iterable[str | int] | None = None,
    options: MapOptions | None = None,
    *,
    overwrite: bool = False,
    wait_s: float = 0.0,
    on_area: Callable[[dict], None] | None = None,
    **morphometry: Unpack[Morphometry],
) -> dict:
    """What ``cortexgraph stats <brain>`` does: :func:`stats_area` for each area, then
    :func:`stats_table`.

    Parameters
    ----------
    brain : the brain (inside a cohort: its areas.tsv names the areas).
    source : the label source (``truth``, ``annotation``, ``gnn-<run>``, ``lsm-<name>``, ...).
    areas : area names or ids; None or empty: every area that has a map of ``source``
        (``maps3d/<source>/<area>.nii.gz``); ParameterError when there is none.
    options : map parameters for maps built on the way (:class:`MapOptions`).
    overwrite, wait_s : as in :func:`stats_area`.
    morphometry : ``reference``, ``shrinkage``, ``max_depth``, ``midline_x_mm``, ``depth_voxel_mm``,
        ``depth_model`` (:class:`Morphometry`) as in :func:`stats_area`.
    on_area : called with each area's entry (below) as soon as it is done (progress, printing).

    Returns
    -------
    ``{"source", "areas": [entry, ...], "missing": [area names], "table": Path | None}``. An entry:
    what :func:`stats_area` returns (``rows``: lh, rh, both, as in the ``<area>_stats.tsv``; volumes
    mm^3, surfaces mm^2; ``files``, ``reused``, ``why``) with ``area`` (name) and ``area_id``; or
    ``{"area", "area_id", "skipped": message}`` when the source labels the area on no section (its
    name goes into ``missing``; the other areas are measured). ``table``:
    ``maps3d/<source>/stats.tsv`` (every area of the source measured so far), None when none has
    been.
    """
    from cortexgraph.maps3d.brainmap import AreaNotLabelledError

    source = _source(source)
    table = _areas(brain)
    areas = list(areas or ())
    if areas:
        records = [table.resolve(a) for a in areas]
    else:
        folder = maps3d_dir(Derivatives.of(brain).root, brain.id, source)
        records = [a for a in table.areas if (folder / f"{slug(a.name)}.nii.gz").exists()]
        if not records:
            raise ParameterError(
                f"no area maps of source {source!r}",
                file=folder,
                fix=f"run `cortexgraph map3d {brain.id} --area ... --labels {source}` or give --area",
            )
    entries: list[dict] = []
    missing: list[str] = []
    for rec in records:
        try:
            result = stats_area(
                brain, rec.id, source, options, overwrite=overwrite, wait_s=wait_s, **morphometry
            )
        except AreaNotLabelledError as exc:
            entry = {"area": rec.name, "area_id": rec.id, "skipped": str(exc)}
            missing.append(rec.name)
        else:
            entry = {**result, "area": rec.name, "area_id": rec.id}
        entries.append(entry)
        if on_area is not None:
            on_area(entry)
    merged = stats_table(brain, source, wait_s=wait_s)
    return {"source": source, "areas": entries, "missing": missing, "table": merged}
