"""Annotations edited in the browser: validation, versions, history, conflicts, predictions accepted.

A section's annotation is two files in the documented format (docs/data-format.md): the GeoJSON
contours (``annotations/sNNNN.geojson``, polygons in section mm with ``area_id`` and ``name``) and the
label image rasterised from them (``annotations/sNNNN.h5``, uint16 area ids at the brain's
annotation spacing, or on the grid of the section's existing label image). Both are registered in
``sections.tsv`` (columns ``annotation`` and ``contours``) when the section had none; files a section
already names are rewritten in place.

**Versions.** The *version* of a section's annotation is a digest of the bytes of both files
(``"none"`` when the section has none). A client saves with the version it read (HTTP ``If-Match``);
when the files changed in between (another browser tab, another user, a program) the save is refused
with :class:`~cortexgraph.web.security.ConflictError` (HTTP 409) naming the current version, and
nothing is written. Saves of one brain are serialised by a lock file (``flock``), so two processes
serving the same cohort cannot interleave either.

**History.** Every version the app writes, and the version it replaced the first time it wrote a
section, is kept in ``<brain>/annotations/.history/sNNNN/``::

    v0001.geojson, v0001.h5    the files of version 1 (v0001.h5 absent when that version had none)
    index.json                 [{"id": "v0001", "version": <digest>, "created_unix", "origin",
                                 "features", "areas"}, ...] oldest first

Restoring a version writes its files as a new version (so a restore can be undone too); the history
lives in the cohort, so undo survives a restart of the app.

**Validation** (:func:`validate_collection`): a FeatureCollection of Polygon / MultiPolygon features,
at most :data:`MAX_FEATURES` features and :data:`MAX_VERTICES` vertices, finite coordinates within the
section (plus :data:`MARGIN_MM`), rings of at least three distinct points, ``area_id`` of an area in
``areas.tsv``, no self-intersecting polygon and no overlap between polygons of different areas
(:func:`cortexgraph.data.annotations.contour_problems`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cortexgraph.data.annotations import contour_problems, rasterize_contours
from cortexgraph.data.manifest import AreaTable, Brain, SectionRecord
from cortexgraph.data.names import inside
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.outputs import atomic_path, write_json_atomic, write_text_atomic
from cortexgraph.web.security import ConflictError, InvalidError, NotFoundError, TooLargeError

__all__ = [
    "MAX_FEATURES",
    "MAX_VERTICES",
    "MARGIN_MM",
    "NO_VERSION",
    "validate_collection",
    "annotation_paths",
    "current_annotation",
    "save_annotation",
    "history",
    "restore_version",
    "prediction_polygons",
]

MAX_FEATURES = 5000
MAX_VERTICES = 500_000
MARGIN_MM = 1.0
NO_VERSION = "none"


# --------------------------------------------------------------------------------------------------
# validation


def _rings(geometry: dict) -> list[Any]:
    if geometry.get("type") == "Polygon":
        return [geometry.get("coordinates")]
    if geometry.get("type") == "MultiPolygon":
        return list(geometry.get("coordinates") or [])
    return []


def validate_collection(
    collection: object, areas: AreaTable, extent_mm: tuple[float, float]
) -> dict:
    """A clean copy of a GeoJSON FeatureCollection, or InvalidError / TooLargeError listing why.

    Parameters
    ----------
    collection : the parsed JSON payload.
    areas : the cohort's area table (``area_id`` must be one of its ids).
    extent_mm : (width_mm, height_mm) of the section; coordinates must lie within it (plus
        :data:`MARGIN_MM`).

    Returns
    -------
    The collection with closed rings, coordinates as floats rounded to 1 nm, properties
    ``{"area_id", "name"}`` (the name from ``areas.tsv``).
    """
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise InvalidError("the annotation must be a GeoJSON FeatureCollection")
    features = collection.get("features")
    if not isinstance(features, list):
        raise InvalidError("the FeatureCollection has no list of features")
    if len(features) > MAX_FEATURES:
        raise TooLargeError(f"{len(features)} polygons: at most {MAX_FEATURES} per section")
    width, height = extent_mm
    problems: list[str] = []
    clean = []
    vertices = 0
    for number, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            problems.append(f"feature {number}: not a GeoJSON feature with a geometry")
            continue
        geometry = feature["geometry"]
        kind = geometry.get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            problems.append(f"feature {number}: geometry {kind!r} is not a Polygon or MultiPolygon")
            continue
        properties = feature.get("properties") or {}
        area_id = properties.get("area_id")
        if isinstance(area_id, str) and area_id.isdigit():
            area_id = int(area_id)
        if not isinstance(area_id, int) or isinstance(area_id, bool) or area_id not in areas:
            problems.append(f"feature {number}: area_id {area_id!r} is not an area of areas.tsv")
            continue
        polygons = []
        for rings in _rings(geometry):
            if not isinstance(rings, list) or not rings:
                problems.append(f"feature {number}: a polygon without rings")
                continue
            out_rings = []
            for ring in rings:
                try:
                    xy = np.asarray(ring, dtype=np.float64)
                except (TypeError, ValueError):
                    problems.append(f"feature {number}: coordinates are not numbers")
                    break
                if xy.ndim != 2 or xy.shape[1] != 2:
                    problems.append(f"feature {number}: a ring is not a list of [x_mm, y_mm]")
                    break
                vertices += len(xy)
                if vertices > MAX_VERTICES:
                    raise TooLargeError(f"more than {MAX_VERTICES} vertices in one section")
                if not np.isfinite(xy).all():
                    problems.append(f"feature {number}: a coordinate is not finite")
                    break
                lo, hi = xy.min(axis=0), xy.max(axis=0)
                if (
                    (lo < -MARGIN_MM).any()
                    or hi[0] > width + MARGIN_MM
                    or hi[1] > height + MARGIN_MM
                ):
                    problems.append(
                        f"feature {number}: polygon reaches outside the section "
                        f"({width:.2f} x {height:.2f} mm)"
                    )
                    break
                if not np.allclose(xy[0], xy[-1]):
                    xy = np.vstack([xy, xy[:1]])
                if len(np.unique(np.round(xy[:-1], 9), axis=0)) < 3:
                    problems.append(f"feature {number}: a ring has fewer than 3 distinct points")
                    break
                out_rings.append(np.round(xy, 6).tolist())
            else:
                polygons.append(out_rings)
        if not polygons:
            continue
        area = areas.by_id[int(area_id)]
        geometry_out = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if kind == "Polygon"
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        clean.append(
            {
                "type": "Feature",
                "geometry": geometry_out,
                "properties": {"area_id": int(area.id), "name": area.name},
            }
        )
    if not problems:
        problems = contour_problems(clean)
    if problems:
        raise InvalidError(
            "the annotation is not valid: " + "; ".join(problems[:5]), problems=problems
        )
    return {"type": "FeatureCollection", "features": clean}


# --------------------------------------------------------------------------------------------------
# files, versions, history


def annotation_paths(brain: Brain, record: SectionRecord) -> tuple[Path, Path, str, str]:
    """(label image, contours, their paths relative to the brain folder) of a section: the paths
    ``sections.tsv`` names, else ``annotations/sNNNN.h5`` / ``.geojson``; all inside the brain."""
    stem = f"annotations/s{record.section:04d}"
    label_rel = record.annotation or (
        str(Path(record.contours).with_suffix(".h5")) if record.contours else f"{stem}.h5"
    )
    contours_rel = record.contours or str(Path(label_rel).with_suffix(".geojson"))
    table, n = brain.section_table_path, record.section
    label = inside(brain.root, label_rel, what="annotation path", file=table, section=n)
    contours = inside(brain.root, contours_rel, what="contours path", file=table, section=n)
    return label, contours, label_rel, contours_rel


def _digest(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    present = False
    for path in paths:
        digest.update(b"\x00file\x00")
        if path is not None and path.is_file():
            present = True
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24] if present else NO_VERSION


def _current_files(brain: Brain, record: SectionRecord) -> tuple[Path | None, Path | None]:
    label, contours, _, _ = annotation_paths(brain, record)
    return (label if record.annotation else None), (contours if record.contours else None)


def history_dir(brain: Brain, section: int) -> Path:
    """``<brain>/annotations/.history/sNNNN``."""
    return brain.root / "annotations" / ".history" / f"s{int(section):04d}"


@contextlib.contextmanager
def brain_lock(brain: Brain) -> Iterator[None]:
    """Exclusive lock of a brain's annotation writes (``flock`` on ``annotations/.history/.lock``;
    excludes other threads and other processes)."""
    path = brain.root / "annotations" / ".history" / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_index(folder: Path) -> list[dict]:
    path = folder / "index.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())


def _extent_mm(brain: Brain, record: SectionRecord) -> tuple[float, float]:
    source = record.mask or record.image
    if not source:
        raise NotFoundError(
            f"section {record.section} has no mask or image", section=record.section
        )
    path = inside(brain.root, source, what="mask path", file=brain.section_table_path)
    with Raster(path) as raster:
        return raster.extent_mm


def _features_of(brain: Brain, record: SectionRecord, areas: AreaTable) -> list[dict]:
    """The section's current contours: the GeoJSON file, else traced from the label image."""
    from cortexgraph.data.annotations import label_image_to_contours, read_contours

    label, contours = _current_files(brain, record)
    if contours is not None and contours.is_file():
        return read_contours(contours)
    if label is not None and label.is_file():
        with Raster(label) as raster:
            names = {a.id: a.name for a in areas.areas}
            return label_image_to_contours(raster.read_level(0), raster.spacing_um, names)[
                "features"
            ]
    return []


def current_annotation(brain: Brain, record: SectionRecord, areas: AreaTable) -> dict:
    """``{"version", "geojson", "extent_mm", "label_image", "contours", "history"}`` of a section."""
    label, contours = _current_files(brain, record)
    features = _features_of(brain, record, areas)
    return {
        "section": record.section,
        "version": _digest(contours, label),
        "geojson": {"type": "FeatureCollection", "features": features},
        "extent_mm": list(_extent_mm(brain, record)),
        "label_image": record.annotation or None,
        "contours": record.contours or None,
        "history": len(_read_index(history_dir(brain, record.section))),
    }


def _archive(
    brain: Brain,
    section: int,
    label: Path | None,
    contours: Path | None,
    version: str,
    origin: str,
    features: list[dict],
) -> dict:
    folder = history_dir(brain, section)
    index = _read_index(folder)
    if index and index[-1]["version"] == version:
        return index[-1]
    number = 1 + max((int(e["id"][1:]) for e in index), default=0)
    entry_id = f"v{number:04d}"
    if contours is not None and contours.is_file():
        with atomic_path(folder / f"{entry_id}.geojson") as tmp:
            shutil.copyfile(contours, tmp)
    else:
        write_text_atomic(
            folder / f"{entry_id}.geojson",
            json.dumps({"type": "FeatureCollection", "features": features}),
        )
    if label is not None and label.is_file():
        with atomic_path(folder / f"{entry_id}.h5") as tmp:
            shutil.copyfile(label, tmp)
    entry = {
        "id": entry_id,
        "version": version,
        "created_unix": round(time.time(), 3),
        "origin": origin,
        "features": len(features),
        "areas": sorted({int(f["properties"]["area_id"]) for f in features}),
    }
    write_json_atomic(folder / "index.json", index + [entry])
    return entry


def _label_grid(brain: Brain, record: SectionRecord, label: Path) -> tuple[tuple[int, int], float]:
    """(shape, spacing_um) of the label image: the existing file's grid, else the brain's annotation
    spacing over the section's extent (as :meth:`SectionStack.annotation` rasterises contours)."""
    if record.annotation and label.is_file():
        with Raster(label) as raster:
            return (int(raster.shape[0]), int(raster.shape[1])), raster.spacing_um
    width, height = _extent_mm(brain, record)
    spacing = brain.spacing_of("annotation")
    return (int(round(height * 1000 / spacing)), int(round(width * 1000 / spacing))), spacing


def _write_locked(
    brain: Brain,
    record: SectionRecord,
    collection: dict,
    expected: str,
    origin: str,
    label_source: Path | None = None,
) -> dict:
    """Write a validated collection as the section's annotation (the brain lock is held)."""
    label, contours, label_rel, contours_rel = annotation_paths(brain, record)
    old_label, old_contours = _current_files(brain, record)
    current = _digest(old_contours, old_label)
    if expected != current:
        raise ConflictError(
            f"the annotation of section {record.section} was changed since you loaded it (in "
            "another tab or by another program); nothing was saved. Reload the section to see "
            "the current version, then draw your change again",
            current=current,
            section=record.section,
        )
    areas = brain.area_table
    if current != NO_VERSION:  # keep the version being replaced
        _archive(
            brain,
            record.section,
            old_label,
            old_contours,
            current,
            "before web edit",
            _features_of(brain, record, areas),
        )
    write_text_atomic(contours, json.dumps(collection, separators=(",", ":")))
    if label_source is not None:
        with atomic_path(label) as tmp:
            shutil.copyfile(label_source, tmp)
    else:
        shape, spacing = _label_grid(brain, record, label)
        labels = rasterize_contours(collection["features"], shape, spacing)
        write_raster(label, labels, spacing, kind="labels")
    if record.annotation != label_rel or record.contours != contours_rel:
        from dataclasses import replace

        rows = [
            replace(r, annotation=label_rel, contours=contours_rel)
            if r.section == record.section
            else r
            for r in brain.sections
        ]
        brain.write_sections(rows)
    version = _digest(contours, label)
    entry = _archive(
        brain, record.section, label, contours, version, origin, collection["features"]
    )
    return {"version": version, "history_entry": entry["id"]}


def save_annotation(
    brain: Brain, section: int, payload: object, expected_version: str, origin: str = "web edit"
) -> dict:
    """Validate and save a section's annotation if its version is still ``expected_version``.

    Returns ``{"version", "history_entry"}``; raises InvalidError (422), TooLargeError (413),
    ConflictError (409, nothing written).
    """
    with brain_lock(brain):
        fresh = Brain.read(brain.root, cohort=brain.cohort)  # the table as it is now
        record = fresh.section(int(section))
        if record.missing:
            raise InvalidError(f"section {section} is missing: it has nothing to annotate")
        collection = validate_collection(payload, fresh.area_table, _extent_mm(fresh, record))
        return _write_locked(fresh, record, collection, expected_version, origin)


def history(brain: Brain, section: int) -> list[dict]:
    """The kept versions of a section's annotation, oldest first."""
    return _read_index(history_dir(brain, section))


def restore_version(brain: Brain, section: int, entry_id: str, expected_version: str) -> dict:
    """Make a kept version the current annotation again (as a new version)."""
    folder = history_dir(brain, section)
    entries = {e["id"]: e for e in _read_index(folder)}
    if entry_id not in entries:
        raise NotFoundError(
            f"section {section} has no kept version {entry_id!r}",
            fix=f"pick one of: {', '.join(entries) or 'none'}",
        )
    with brain_lock(brain):
        fresh = Brain.read(brain.root, cohort=brain.cohort)
        record = fresh.section(int(section))
        collection = json.loads((folder / f"{entry_id}.geojson").read_text())
        kept_label = folder / f"{entry_id}.h5"
        if kept_label.is_file():
            label, _, _, _ = annotation_paths(fresh, record)
            shape, spacing = _label_grid(fresh, record, label)
            with Raster(kept_label) as raster:  # same grid: restore the exact label image
                same = tuple(raster.shape[:2]) == shape and math.isclose(raster.spacing_um, spacing)
        else:
            same = False
        return _write_locked(
            fresh,
            record,
            collection,
            expected_version,
            f"restored {entry_id}",
            label_source=kept_label if same else None,
        )


# --------------------------------------------------------------------------------------------------
# predictions accepted as annotations


def prediction_polygons(
    classes: np.ndarray, spacing_um: float, area_class: int = 3, simplify_px: float = 0.5
) -> list:
    """Shapely polygons (section mm) of the pixels of ``classes == area_class``.

    The pixel boundaries are traced (:func:`cortexgraph.data.annotations.label_image_to_contours`),
    merged and simplified by ``simplify_px`` pixels (topology kept), so an accepted prediction has
    few vertices to edit.
    """
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    from cortexgraph.data.annotations import label_image_to_contours

    mask = (np.asarray(classes) == area_class).astype(np.uint16)
    traced = label_image_to_contours(mask, spacing_um)["features"]
    shapes = []
    for feature in traced:
        rings = feature["geometry"]["coordinates"]
        shape = Polygon(rings[0], rings[1:]).buffer(0)
        if not shape.is_empty:
            shapes.append(shape)
    if not shapes:
        return []
    merged = unary_union(shapes).simplify(simplify_px * spacing_um / 1000.0, preserve_topology=True)
    return [g for g in getattr(merged, "geoms", [merged]) if g.area > 0]


def accept_prediction(
    brain: Brain,
    section: int,
    area_id: int,
    prediction: Path,
    expected_version: str,
    source: str,
) -> dict:
    """Replace the area's polygons on a section by the area predicted there (class 3 of the
    prediction raster), cut where other areas are annotated, and save it as a new version.

    Returns ``{"version", "history_entry", "features_added"}``.
    """
    from shapely.geometry import Polygon, mapping
    from shapely.ops import unary_union

    with Raster(prediction) as raster:
        classes, spacing = raster.read_level(0), raster.spacing_um
    shapes = prediction_polygons(classes, spacing)
    if not shapes:
        raise InvalidError(f"the prediction of section {section} holds no pixel of the area")
    with brain_lock(brain):
        fresh = Brain.read(brain.root, cohort=brain.cohort)
        record = fresh.section(int(section))
        areas = fresh.area_table
        keep = [
            f
            for f in _features_of(fresh, record, areas)
            if int(f["properties"]["area_id"]) != area_id
        ]
        others = []
        for feature in keep:
            geometry = feature["geometry"]
            polys = (
                [geometry["coordinates"]]
                if geometry["type"] == "Polygon"
                else geometry["coordinates"]
            )
            others += [Polygon(p[0], p[1:]).buffer(0) for p in polys]
        region = unary_union(shapes)
        if others:
            region = region.difference(unary_union(others))
        area = areas.by_id[int(area_id)]
        added = []
        for geom in getattr(region, "geoms", [region]):
            if geom.geom_type != "Polygon" or geom.area <= (spacing / 1000.0) ** 2 * 0.5:
                continue
            added.append(
                {
                    "type": "Feature",
                    "geometry": mapping(geom),
                    "properties": {"area_id": area.id, "name": area.name},
                }
            )
        payload = {"type": "FeatureCollection", "features": json.loads(json.dumps(keep + added))}
        collection = validate_collection(payload, areas, _extent_mm(fresh, record))
        result = _write_locked(
            fresh, record, collection, expected_version, f"accepted prediction {source}"
        )
    return dict(result, features_added=len(added))
