"""Validation of a brain folder (``cortexgraph check``): every problem with its file, section and fix.

:func:`check_brain` never stops at the first problem and never fails on a bad file: every reader
failure becomes a :class:`Problem`. It validates what the stages trust:

* the manifests and tables (:mod:`cortexgraph.data.manifest`: types, ranges, duplicates, paths inside
  the brain or cohort folder or a declared data root), the other brains' folders of the cohort;
* every raster of every present section (:func:`~cortexgraph.data.raster.section_raster_problems`:
  dimensions, dtype, pyramid kind, ``section`` attribute against its row, spacing, canvas size; the
  stored bytes of chunked and contiguous HDF5 alike; values: tissue classes {0, 1, 2} with some
  tissue, annotation ids present in areas.tsv, coordinates finite or NaN within [-1, 1]); the extents
  of a section's files against its mask; contours (validity, overlaps, ids, inside the canvas);
* transforms: one per consecutive pair of available sections, none else, each moving its section by
  less than a canvas diagonal (:func:`~cortexgraph.data.transforms.link_shift_mm`; headers only);
* the atlas (:func:`~cortexgraph.data.atlas.atlas_problems`) and whether the brain's canonical
  coordinates fall on it;
* the exclusion mask (:func:`~cortexgraph.data.exclusion.read_exclusion_mask`) and whether it lies on
  the stacked tissue (sampled through the section geometry at a coarse pyramid level; no volume is
  built).

Reading is cheap by default: headers, chunk tables, three decoded chunks per level, tissue masks and
label images at the finest level of at most :data:`VALUE_MAX_PIXELS` pixels. ``deep=True`` decodes
every chunk of every level and reads values at level 0, block by block.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cortexgraph.data.annotations import contour_problems, read_contours
from cortexgraph.data.atlas import atlas_problems
from cortexgraph.data.exclusion import read_exclusion_mask
from cortexgraph.data.manifest import BRAIN_MANIFEST, Brain, Cohort, find_brain, findings_of
from cortexgraph.data.raster import Raster, section_raster_problems, storage_problems
from cortexgraph.data.stack import SPACING_ATTRIBUTE, SectionStack, drift_error
from cortexgraph.data.transforms import (
    central_section,
    chain_drift_mm,
    compose_to_base,
    link_shift_mm,
    mirror_matrix,
)
from cortexgraph.errors import CortexgraphError

KIND_SPACING = SPACING_ATTRIBUTE
RASTER_KINDS = ("image", "mask", "annotation", "coords")
EXTENT_TOLERANCE_PX = 1.0
"""Extents of a section's files may differ by at most one pixel of the coarser file."""
VALUE_MAX_PIXELS = 1 << 24
"""Without ``deep``, values are read at the finest level with at most this many pixels."""
COARSE_SPACING_UM = 1000.0
"""Overlap tests read the tissue masks at the coarsest level not coarser than this."""
MIN_EXCLUSION_ON_TISSUE = 0.5
"""At least this share of the exclusion mask's voxels (within the sectioned range) must lie on
tissue. On the phantoms 0.96-0.98 do; a mask in the wrong frame gives about 0."""
MAX_GRAY_EXCLUDED = 0.9
"""At most this share of the gray matter may be excluded (0.57-0.66 on the phantom slabs, which
hold cerebellum and deep nuclei)."""
MIN_ATLAS_FOV = 0.5
"""At least this share of the brain's canonical coordinates must fall inside the atlas volume."""
MIN_ATLAS_COVERAGE = 0.1
"""At least this share must fall where some atlas map is > 0 (0.64-0.73 on the phantoms)."""
MAX_SAMPLES = 50000
"""Overlap tests use at most this many points (evenly subsampled)."""


@dataclass(frozen=True)
class Problem:
    """One finding of ``check``."""

    file: str
    section: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file + (f" [section {self.section}]" if self.section is not None else "")
        return f"{where}: {self.message} -> fix: {self.fix}"


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file, message: str, fix: str, section: int | None = None) -> None:
        self.problems.append(Problem(str(file), section, message, fix))

    def error(self, exc: CortexgraphError, file=None, section=None) -> None:
        """Every finding an error stands for (readers attach all the problems of a file)."""
        for item in findings_of(exc):
            self.add(
                item.file or file or "",
                item.message,
                item.fix or "see docs/data-format.md",
                item.section if item.section is not None else section,
            )

    @contextlib.contextmanager
    def guard(self, file, what: str, section: int | None = None):
        """Turn any failure inside into a problem of ``file`` (check never stops on a bad file)."""
        try:
            yield
        except CortexgraphError as exc:
            self.error(exc, file=file, section=section)
        except Exception as exc:  # a reader failing on a corrupt file: report it, go on
            self.add(
                file,
                f"{what} could not be checked ({type(exc).__name__}: {exc})",
                "the file is corrupt or not in the documented format (docs/data-format.md)",
                section,
            )


def require_clean(brain: Brain, command: str) -> None:
    """Stop a stage on a brain that fails :func:`check_brain`: CortexgraphError with the first
    problem's file, section and fix, the number of problems and the command that lists them all.
    Stages call it before they write anything, so bad input leaves the derivatives untouched."""
    problems = check_brain(brain)
    if problems:
        first = problems[0]
        raise CortexgraphError(
            f"brain {brain.id} fails check ({len(problems)} problem(s)), so {command} does not "
            f"run on it; first: {first.message}",
            file=first.file,
            section=first.section,
            fix=f"{first.fix}; run `cortexgraph check {brain.id}` for the full list",
        )


def check_brain(
    brain: Brain | str | os.PathLike, root: str | os.PathLike | None = None, deep: bool = False
) -> list[Problem]:
    """All problems of a brain folder (empty list = clean).

    Parameters
    ----------
    brain : a Brain, a brain id (resolved with ``root`` / ``$CORTEXGRAPH_ROOT``) or a folder path.
    deep : read every chunk of every raster and values at full resolution (slow on real data; finds
        corrupt compressed chunks anywhere).
    """
    found = _Collector()
    if not isinstance(brain, Brain):
        located: list[Brain] = []
        with found.guard(brain, "the brain"):
            located.append(find_brain(brain, root))
        if not located:
            return found.problems
        brain = located[0]
    area_ids, atlas_total = _check_cohort(brain, found)
    records = None
    with found.guard(brain.section_table_path, "the section table"):
        records = brain.sections
    table = None
    with found.guard(brain.transform_table_path, "the transform table"):
        table = brain.transforms
    if records is None:
        return found.problems
    if records and not any(not r.missing and not r.excluded for r in records):
        found.add(
            brain.section_table_path,
            "every present section is flagged excluded: no section is left to reconstruct",
            "clear the excluded flag of the sections that passed quality control",
        )
    extents: dict[int, tuple[float, float]] = {}
    coords_files: list[Path] = []
    sections_ok = True
    for record in records:
        before = len(found.problems)
        with found.guard(brain.section_table_path, "the section", record.section):
            _check_section(brain, record, area_ids, deep, found, extents, coords_files)
        sections_ok &= len(found.problems) == before
    links_ok = False
    if table is not None:
        before = len(found.problems)
        with found.guard(brain.transform_table_path, "the transforms"):
            _check_transforms(brain, table, extents, found)
        links_ok = len(found.problems) == before
    geometry_ok = sections_ok and links_ok
    if brain.exclusion_mask:
        with found.guard(brain.manifest_path, "the exclusion mask"):
            _check_exclusion(brain, found, geometry_ok)
    if atlas_total is not None and coords_files and brain.cohort is not None:
        with found.guard(brain.cohort.manifest_path, "the atlas overlap"):
            _check_atlas_overlap(brain.cohort, atlas_total, coords_files, found)
    return found.problems


# -- cohort -----------------------------------------------------------------------------------------
def _check_cohort(brain: Brain, found: _Collector) -> tuple[set[int] | None, tuple | None]:
    """Area ids of the cohort (None when unreadable) and the atlas' summed maps with their affine
    (None without a valid atlas)."""
    cohort = brain.cohort
    if cohort is None:
        return None, None
    area_ids = None
    atlas_total = None
    with found.guard(cohort.manifest_path, "the area table"):
        area_ids = {int(i) for i in cohort.areas.ids}
    for other in cohort.brain_ids:
        if not (cohort.root / other / BRAIN_MANIFEST).is_file():
            found.add(
                cohort.manifest_path,
                f"brain {other!r} is listed in 'brains' but {cohort.root / other} holds no "
                f"{BRAIN_MANIFEST}",
                "restore the brain folder or remove the brain from 'brains'",
            )
    if cohort.atlas_maps:
        with found.guard(cohort.manifest_path, "the atlas"):
            total: list = []
            problems = atlas_problems(
                cohort.atlas_maps_path, cohort.atlas_labels_path, area_ids, total=total
            )
            for problem in problems:
                found.error(problem)
            atlas_total = total[0] if total and not problems else None
    return area_ids, atlas_total


# -- sections ---------------------------------------------------------------------------------------
def _value_dataset(raster: Raster, deep: bool):
    """The dataset whose values are checked: level 0 with ``deep``, else the finest small level."""
    if deep:
        return raster.dataset(0)
    for level in raster.levels:
        if level.shape[0] * level.shape[1] <= VALUE_MAX_PIXELS:
            return raster.dataset(level.index)
    return raster.dataset(raster.levels[-1].index)


def _blocks(dataset, max_bytes: int = 64 << 20):
    row_bytes = max(1, int(np.prod(dataset.shape[1:])) * dataset.dtype.itemsize)
    step = max(1, max_bytes // row_bytes)
    for r in range(0, dataset.shape[0], step):
        yield dataset[r : r + step]


def _check_section(
    brain: Brain,
    record,
    area_ids: set[int] | None,
    deep: bool,
    found: _Collector,
    extents: dict,
    coords_files: list,
) -> None:
    section = record.section
    if record.missing:
        for kind in ("image", "mask", "annotation", "contours", "coords"):
            if getattr(record, kind):
                found.add(
                    brain.section_table_path,
                    f"flagged missing but lists a {kind} file",
                    "clear the missing flag or the file column",
                    section,
                )
        return
    if not record.mask:
        found.add(
            brain.section_table_path,
            "present section without a tissue mask",
            "add the mask column (or flag the section missing)",
            section,
        )
    rasters: dict[str, Raster] = {}
    try:
        for kind in RASTER_KINDS:
            relative = getattr(record, kind)
            if not relative:
                continue
            path = brain.path(relative, what=f"{kind} path", section=section)
            if not path.is_file():
                found.add(
                    path,
                    f"{kind} file not found",
                    "restore the file or correct sections.tsv",
                    section,
                )
                continue
            raster = Raster(path)
            header = section_raster_problems(
                raster, kind, spacing_um=getattr(brain, KIND_SPACING[kind]), section=section
            )
            for problem in header:
                found.error(problem)
            if header:
                raster.close()
                continue
            stored = storage_problems(raster, sample=True, deep=deep)
            for text in stored:
                found.add(path, f"{kind} file: {text}", "copy or convert the file again", section)
            if stored:
                raster.close()
                continue
            rasters[kind] = raster
            with found.guard(path, f"the {kind} values", section):
                _check_values(kind, raster, area_ids, deep, section, found)
        if "mask" in rasters:
            extents[section] = rasters["mask"].extent_mm
        if "coords" in rasters:
            coords_files.append(rasters["coords"].path)
        _check_extents(rasters, section, found)
    finally:
        for raster in rasters.values():
            raster.close()
    if record.contours:
        path = brain.path(record.contours, what="contours path", section=section)
        _check_contours(path, section, area_ids, extents.get(section), found)


def _check_values(kind, raster, area_ids, deep, section, found) -> None:
    dataset = _value_dataset(raster, deep)
    path = raster.path
    if kind == "mask":
        classes: set[int] = set()
        for block in _blocks(dataset):
            classes.update(int(v) for v in np.unique(block))
        bad = sorted(classes - {0, 1, 2})
        if bad:
            found.add(
                path,
                f"tissue mask has values {bad[:10]}",
                "use 0 background, 1 white matter, 2 gray matter",
                section,
            )
        elif not classes & {1, 2}:
            found.add(
                path,
                "tissue mask holds no tissue (only background)",
                "give the section its mask, or flag it missing or excluded in sections.tsv",
                section,
            )
    elif kind == "annotation":
        ids: set[int] = set()
        for block in _blocks(dataset):
            ids.update(int(v) for v in np.unique(block))
        negative = sorted(i for i in ids if i < 0)
        if negative:
            found.add(
                path,
                f"annotation has negative ids {negative[:10]}",
                "use area ids from areas.tsv and 0 for unlabelled",
                section,
            )
        if area_ids is not None:
            unknown = sorted(i for i in ids if i > 0 and i not in area_ids)
            if unknown:
                found.add(
                    path,
                    f"annotation uses area ids {unknown[:10]} absent from the area table",
                    "add the areas to areas.tsv or relabel the annotation",
                    section,
                )
    elif kind == "coords":
        infinite, outside = False, False
        for block in _blocks(dataset):
            values = block[~np.isnan(block)]
            infinite |= bool(np.isinf(values).any())
            finite = values[np.isfinite(values)]
            outside |= bool(finite.size and np.abs(finite).max() > 1.0 + 1e-6)
        if infinite:
            found.add(
                path,
                "coordinate map holds infinite values",
                "use NaN outside tissue and canonical coordinates in [-1, 1] inside",
                section,
            )
        if outside:
            found.add(
                path,
                "canonical coordinates outside [-1, 1]",
                "normalise with the cohort's canonical box",
                section,
            )


def _check_contours(path, section, area_ids, extent, found) -> None:
    try:
        features = read_contours(path)
    except CortexgraphError as exc:
        found.error(exc, section=section)
        return
    for text in contour_problems(features):
        found.add(
            path, text, "redraw the contours so that they are simple and do not overlap", section
        )
    used = sorted({int(f["properties"]["area_id"]) for f in features})
    if area_ids is not None:
        unknown = [i for i in used if i not in area_ids]
        if unknown:
            found.add(
                path,
                f"contours use area ids {unknown[:10]} absent from the area table",
                "add the areas to areas.tsv or relabel the contours",
                section,
            )
    if extent is not None and features:
        points = np.vstack(
            [
                np.asarray(ring, dtype=np.float64)
                for f in features
                for rings in (
                    [f["geometry"]["coordinates"]]
                    if f["geometry"]["type"] == "Polygon"
                    else f["geometry"]["coordinates"]
                )
                for ring in rings
            ]
        )
        margin = 1.0  # mm
        lo, hi = points.min(axis=0), points.max(axis=0)
        if lo.min() < -margin or hi[0] > extent[0] + margin or hi[1] > extent[1] + margin:
            found.add(
                path,
                f"contours reach [{lo[0]:.4g}, {hi[0]:.4g}] x [{lo[1]:.4g}, {hi[1]:.4g}] mm, "
                f"outside the section canvas {extent[0]:.4g} x {extent[1]:.4g} mm",
                "contour coordinates are in mm of the section frame (x along columns, y along "
                "rows, origin top-left); check their units",
                section,
            )


def _check_extents(rasters: dict[str, Raster], section: int, found: _Collector) -> None:
    if "mask" not in rasters:
        return
    reference = rasters["mask"]
    ref_w, ref_h = reference.extent_mm
    for kind, raster in rasters.items():
        if kind == "mask":
            continue
        width, height = raster.extent_mm
        tolerance = EXTENT_TOLERANCE_PX * max(raster.spacing_um, reference.spacing_um) / 1000.0
        if abs(width - ref_w) > tolerance or abs(height - ref_h) > tolerance:
            found.add(
                raster.path,
                f"{kind} covers {width:.3f} x {height:.3f} mm but the mask covers "
                f"{ref_w:.3f} x {ref_h:.3f} mm (shape {raster.shape[:2]} at "
                f"{raster.spacing_um:g} um vs {reference.shape[:2]} at {reference.spacing_um:g} um)",
                "both files must show the same section area (check spacing and cropping)",
                section,
            )


# -- transforms -------------------------------------------------------------------------------------
def _check_transforms(brain: Brain, table: dict, extents: dict, found: _Collector) -> None:
    path = brain.transform_table_path
    available = brain.available_sections
    pairs = list(zip(available[:-1], available[1:], strict=True))
    before = len(found.problems)
    for moving, fixed in pairs:
        if (moving, fixed) not in table:
            found.add(
                path,
                f"no transform from section {moving} to {fixed} (consecutive sections)",
                f"add the row moving={moving} fixed={fixed}",
                moving,
            )
    wanted = set(pairs)
    for (moving, fixed), matrix in sorted(table.items()):
        if (moving, fixed) not in wanted:
            found.add(
                path,
                f"transform {moving} -> {fixed} does not link consecutive available sections",
                "remove the row or fix the section numbers",
                moving,
            )
            continue
        if moving in extents and fixed in extents:
            shift, limit = link_shift_mm(matrix, extents[moving], extents[fixed])
            if shift > limit:
                found.add(
                    path,
                    f"transform {moving} -> {fixed} moves the section {shift:.4g} mm away from its "
                    f"neighbour (more than the canvas diagonal, {limit:.4g} mm)",
                    "translations are in mm of the section frame; re-estimate the transform or "
                    "correct its units",
                    moving,
                )
    if len(found.problems) == before and all(s in extents for s in available):
        _check_drift(brain, table, extents, found)


def _check_drift(brain: Brain, table: dict, extents: dict, found: _Collector) -> None:
    """The composed chain keeps every canvas near the base section's (headers only)."""
    base = brain.base_section
    available = brain.available_sections
    if base is None:
        base = central_section(available)
    mirror = {
        r.section: mirror_matrix(extents[r.section][0])
        for r in brain.sections
        if r.mirrored and not r.missing
    }
    to_base = compose_to_base(available, table, base, mirror, file=str(brain.transform_table_path))
    drift, limit = chain_drift_mm(to_base, extents, base)
    for section, distance in sorted(drift.items()):
        if distance > limit:
            found.error(drift_error(brain, section, distance, limit))


# -- overlaps ---------------------------------------------------------------------------------------
def _subsample(points: np.ndarray, limit: int = MAX_SAMPLES) -> np.ndarray:
    if len(points) <= limit:
        return points
    return points[:: int(np.ceil(len(points) / limit))]


def _coarse_mask(stack: SectionStack, section: int) -> tuple[np.ndarray, float]:
    raster = stack.raster(section, "mask")
    level = raster.level_for_spacing(COARSE_SPACING_UM)
    return raster.read_level(level.index), level.spacing_um


def _check_exclusion(brain: Brain, found: _Collector, geometry_ok: bool) -> None:
    path = brain.path(brain.exclusion_mask, what="exclusion_mask", file=brain.manifest_path)
    try:
        mask, affine = read_exclusion_mask(path)
    except CortexgraphError as exc:
        found.error(exc)
        return
    if not geometry_ok:
        return  # the section geometry is broken: reported above
    with SectionStack(brain) as stack:
        sections = np.array(stack.sections)
        planes = np.array([stack.plane_y_mm(s) for s in sections])
        half = 0.5 * brain.digitization_step * stack.thickness_mm
        voxels = _subsample(np.argwhere(mask))
        world = voxels @ affine[:3, :3].T + affine[:3, 3]
        in_range = (world[:, 1] >= planes.min() - half) & (world[:, 1] <= planes.max() + half)
        if not in_range.any():
            found.add(
                path,
                f"the exclusion mask lies outside the sectioned range (its y spans "
                f"{world[:, 1].min():.4g}..{world[:, 1].max():.4g} mm, the sections "
                f"{planes.min():.4g}..{planes.max():.4g} mm)",
                "the mask's affine must map voxels to the brain's world mm (docs/conventions.md)",
            )
            return
        world = world[in_range]
        nearest = sections[np.argmin(np.abs(world[:, 1][:, None] - planes[None, :]), axis=1)]
        classes = np.zeros(len(world), dtype=np.uint8)
        gray_total, gray_excluded = 0, 0
        inverse = np.linalg.inv(affine)
        for s in sections:
            tissue, spacing_um = _coarse_mask(stack, int(s))
            chosen = nearest == s
            if chosen.any():
                xy = stack.world_to_section(int(s), world[chosen])
                classes[chosen] = _lookup(tissue, xy, spacing_um)
            rows, cols = np.nonzero(tissue == 2)
            if rows.size:
                xy = np.column_stack([cols + 0.5, rows + 0.5]) * spacing_um / 1000.0
                xy = _subsample(xy, MAX_SAMPLES // len(sections) + 1)
                points = stack.section_to_world(int(s), xy)
                index = np.rint(points @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)
                inside = np.all((index >= 0) & (index < np.array(mask.shape)), axis=1)
                gray_total += len(points)
                gray_excluded += int(mask[tuple(index[inside].T)].sum())
    on_tissue = float((classes > 0).mean())
    if on_tissue < MIN_EXCLUSION_ON_TISSUE:
        found.add(
            path,
            f"only {100 * on_tissue:.0f}% of the exclusion mask lies on the stacked tissue "
            f"(expected at least {100 * MIN_EXCLUSION_ON_TISSUE:.0f}%): it is shifted, flipped or in "
            "another frame",
            "the mask's affine must map voxels to the brain's world mm (docs/conventions.md); "
            "check its origin and axes",
        )
    if gray_total and gray_excluded / gray_total > MAX_GRAY_EXCLUDED:
        found.add(
            path,
            f"the exclusion mask covers {100 * gray_excluded / gray_total:.0f}% of the gray matter "
            f"(at most {100 * MAX_GRAY_EXCLUDED:.0f}% expected)",
            "mark only non-cortical gray matter (nuclei, cerebellum), in the brain's world mm",
        )


def _lookup(tissue: np.ndarray, xy_mm: np.ndarray, spacing_um: float) -> np.ndarray:
    cols = np.floor(xy_mm[:, 0] * 1000.0 / spacing_um).astype(np.int64)
    rows = np.floor(xy_mm[:, 1] * 1000.0 / spacing_um).astype(np.int64)
    inside = (rows >= 0) & (rows < tissue.shape[0]) & (cols >= 0) & (cols < tissue.shape[1])
    out = np.zeros(len(xy_mm), dtype=tissue.dtype)
    out[inside] = tissue[rows[inside], cols[inside]]
    return out


def _check_atlas_overlap(
    cohort: Cohort, atlas_total: tuple, coords_files: list[Path], found: _Collector
) -> None:
    summed, affine = atlas_total
    samples = []
    per_file = MAX_SAMPLES // len(coords_files) + 1
    for path in coords_files:
        with Raster(path) as raster:
            data = raster.read_level(raster.levels[-1].index).reshape(-1, 3)
        data = data[np.all(np.isfinite(data), axis=1)]
        samples.append(_subsample(data, per_file))
    points = np.vstack(samples) if samples else np.empty((0, 3))
    if not len(points):
        return
    mm = cohort.from_canonical(points)
    inverse = np.linalg.inv(affine)
    index = np.rint(mm @ inverse[:3, :3].T + inverse[:3, 3]).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(summed.shape)), axis=1)
    in_fov = float(inside.mean())
    covered = float((summed[tuple(index[inside].T)] > 0).sum()) / len(points)
    if in_fov < MIN_ATLAS_FOV or covered < MIN_ATLAS_COVERAGE:
        found.add(
            cohort.atlas_maps_path,
            f"the atlas does not overlap the brain's canonical coordinates: {100 * in_fov:.0f}% "
            f"fall inside the atlas volume (at least {100 * MIN_ATLAS_FOV:.0f}% expected) and "
            f"{100 * covered:.1f}% on a map > 0 (at least {100 * MIN_ATLAS_COVERAGE:.0f}%)",
            "the atlas affine must map voxels to the reference space of [canonical] in cohort.toml "
            "(check its origin and axes, and the canonical box)",
        )


def problems_as_json(problems: list[Problem]) -> list[dict]:
    return [asdict(p) for p in problems]
