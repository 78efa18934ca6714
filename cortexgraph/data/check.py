"""Validation of a brain folder (``cortexgraph check``): every problem with its file, section and fix.

:func:`check_brain` never stops at the first problem; it collects all of them. Reading is cheap by
default: raster headers, chunk tables (a file shorter than its last chunk is truncated), masks and
annotations at their stored (low) resolution. ``deep=True`` also decompresses every chunk of every image.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cortexgraph.data.annotations import contour_problems, read_contours
from cortexgraph.data.manifest import Brain, Cohort, find_brain
from cortexgraph.data.raster import Raster
from cortexgraph.data.transforms import RIGID_TOLERANCE, rigidity_error
from cortexgraph.errors import CortexgraphError

KIND_SPACING = {
    "image": "image_spacing_um",
    "mask": "mask_spacing_um",
    "annotation": "annotation_spacing_um",
    "coords": "coords_spacing_um",
}
EXTENT_TOLERANCE_PX = 1.0
"""Extents of a section's files may differ by at most one pixel of the coarser file."""


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
        self.add(
            exc.file or file or "",
            exc.message,
            exc.fix or "see docs/data-format.md",
            exc.section if exc.section is not None else section,
        )


def check_brain(
    brain: Brain | str | os.PathLike, root: str | os.PathLike | None = None, deep: bool = False
) -> list[Problem]:
    """All problems of a brain folder (empty list = clean).

    Parameters
    ----------
    brain : a Brain, a brain id (resolved with ``root`` / ``$CORTEXGRAPH_ROOT``) or a folder path.
    deep : also read every chunk of every raster (slow on real data; finds corrupt compressed chunks).
    """
    found = _Collector()
    if not isinstance(brain, Brain):
        try:
            brain = find_brain(brain, root)
        except CortexgraphError as exc:
            found.error(exc)
            return found.problems
    _check_cohort(brain.cohort, found)
    try:
        records = brain.sections
    except CortexgraphError as exc:
        found.error(exc)
        return found.problems
    _check_order(brain, records, found)
    area_ids = None
    if brain.cohort is not None:
        try:
            area_ids = set(int(i) for i in brain.cohort.areas.ids)
        except CortexgraphError:
            area_ids = None  # reported by _check_cohort
    for record in records:
        if record.missing:
            for kind in ("image", "mask", "annotation", "contours", "coords"):
                if getattr(record, kind):
                    found.add(
                        brain.section_table_path,
                        f"flagged missing but lists a {kind} file",
                        "clear the missing flag or the file column",
                        record.section,
                    )
            continue
        _check_section(brain, record, area_ids, deep, found)
    _check_transforms(brain, found)
    if brain.base_section is not None and brain.base_section not in brain.available_sections:
        found.add(
            brain.manifest_path,
            f"base_section {brain.base_section} is not available",
            "set base_section to a present section or remove the key",
            brain.base_section,
        )
    if brain.exclusion_mask:
        _check_exclusion(brain, found)
    return found.problems


def _check_cohort(cohort: Cohort | None, found: _Collector) -> None:
    if cohort is None:
        return
    try:
        cohort.areas  # noqa: B018 - reads and validates the area table
    except CortexgraphError as exc:
        found.error(exc)
    if cohort.atlas_maps:
        for name in (cohort.atlas_maps, cohort.atlas_labels):
            if not (cohort.root / name).is_file():
                found.add(
                    cohort.root / name,
                    "atlas file not found",
                    "fix [atlas] in cohort.toml or add the file",
                )


def _check_order(brain: Brain, records, found: _Collector) -> None:
    seen: set[int] = set()
    previous = None
    for record in records:
        if record.section in seen:
            found.add(
                brain.section_table_path,
                "duplicated section number",
                "each section may appear once in sections.tsv",
                record.section,
            )
        elif previous is not None and record.section < previous:
            found.add(
                brain.section_table_path,
                f"section numbers are not increasing ({previous} before {record.section})",
                "sort sections.tsv by section number (posterior -> anterior)",
                record.section,
            )
        seen.add(record.section)
        previous = record.section


def _raster_ok(path: Path, section: int, kind: str, deep: bool, found: _Collector) -> Raster | None:
    if not path.is_file():
        found.add(
            path, f"{kind} file not found", "restore the file or correct sections.tsv", section
        )
        return None
    raster = Raster(path)
    try:
        raster.levels  # noqa: B018 - opens the file and reads the level table
        size = path.stat().st_size
        for level in raster.levels:
            dataset = raster.dataset(level.index)
            for k in range(dataset.id.get_num_chunks()):
                info = dataset.id.get_chunk_info(k)
                if info.byte_offset + info.size > size:
                    raise OSError(f"level {level.index} chunk {k} lies beyond the end of the file")
            if deep:
                dataset[...]
    except CortexgraphError as exc:
        found.error(exc, section=section)
        raster.close()
        return None
    except (OSError, KeyError, ValueError) as exc:
        found.add(
            path,
            f"{kind} file is truncated or unreadable ({exc})",
            "copy or convert the file again",
            section,
        )
        raster.close()
        return None
    return raster


def _check_section(brain: Brain, record, area_ids, deep: bool, found: _Collector) -> None:
    section = record.section
    rasters: dict[str, Raster] = {}
    if not record.mask:
        found.add(
            brain.section_table_path,
            "present section without a tissue mask",
            "add the mask column (or flag the section missing)",
            section,
        )
    for kind in ("image", "mask", "annotation", "coords"):
        relative = getattr(record, kind)
        if not relative:
            continue
        raster = _raster_ok(brain.path(relative), section, kind, deep, found)
        if raster is None:
            continue
        rasters[kind] = raster
        expected = getattr(brain, KIND_SPACING[kind])
        if abs(raster.spacing_um - expected) > 1e-6 * expected:
            found.add(
                raster.path,
                f"{kind} spacing is {raster.spacing_um:g} um but brain.toml says {expected:g} um",
                f"rewrite the file at {expected:g} um or correct [spacing_um] {kind}",
                section,
            )
    try:
        _check_extents(rasters, section, found)
        if "mask" in rasters:
            mask = rasters["mask"].read_level(0)
            bad = np.setdiff1d(np.unique(mask), [0, 1, 2])
            if bad.size:
                found.add(
                    rasters["mask"].path,
                    f"tissue mask has values {bad.tolist()}",
                    "use 0 background, 1 white matter, 2 gray matter",
                    section,
                )
        if "annotation" in rasters and area_ids is not None:
            ids = np.unique(rasters["annotation"].read_level(0))
            unknown = sorted(int(i) for i in ids if i > 0 and int(i) not in area_ids)
            if unknown:
                found.add(
                    rasters["annotation"].path,
                    f"annotation uses area ids {unknown} absent from the area table",
                    "add the areas to areas.tsv or relabel the annotation",
                    section,
                )
        if "coords" in rasters:
            coords = rasters["coords"].read_level(0)
            if coords.ndim != 3 or coords.shape[2] != 3:
                found.add(
                    rasters["coords"].path,
                    f"coordinate map has shape {coords.shape}",
                    "store (rows, cols, 3) canonical coordinates",
                    section,
                )
            elif np.nanmax(np.abs(coords), initial=0.0) > 1.0 + 1e-6:
                found.add(
                    rasters["coords"].path,
                    "canonical coordinates outside [-1, 1]",
                    "normalise with the cohort's canonical box",
                    section,
                )
    finally:
        for raster in rasters.values():
            raster.close()
    if record.contours:
        path = brain.path(record.contours)
        try:
            features = read_contours(path)
        except CortexgraphError as exc:
            found.error(exc, section=section)
            return
        for text in contour_problems(features):
            found.add(
                path,
                text,
                "redraw the contours so that they are simple and do not overlap",
                section,
            )
        if area_ids is not None:
            used = sorted({int(f["properties"]["area_id"]) for f in features})
            unknown = [i for i in used if i not in area_ids]
            if unknown:
                found.add(
                    path,
                    f"contours use area ids {unknown} absent from the area table",
                    "add the areas to areas.tsv or relabel the contours",
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


def _check_transforms(brain: Brain, found: _Collector) -> None:
    path = brain.transform_table_path
    try:
        table = brain.transforms
    except CortexgraphError as exc:
        found.error(exc)
        return
    available = brain.available_sections
    pairs = set(zip(available[:-1], available[1:], strict=True))
    for moving, fixed in pairs:
        if (moving, fixed) not in table:
            found.add(
                path,
                f"no transform from section {moving} to {fixed} (consecutive sections)",
                f"add the row moving={moving} fixed={fixed}",
                moving,
            )
    for (moving, fixed), matrix in sorted(table.items()):
        if (moving, fixed) not in pairs:
            found.add(
                path,
                f"transform {moving} -> {fixed} does not link consecutive available sections",
                "remove the row or fix the section numbers",
                moving,
            )
            continue
        if not np.all(np.isfinite(matrix)):
            found.add(
                path,
                f"transform {moving} -> {fixed} is not finite",
                "re-estimate the transform",
                moving,
            )
            continue
        error = rigidity_error(matrix)
        if error > RIGID_TOLERANCE:
            found.add(
                path,
                f"transform {moving} -> {fixed} is not rigid (deviation {error:.2e} > "
                f"{RIGID_TOLERANCE:g})",
                "use rotation + translation only (no scaling or shear); mirrored scans are "
                "flagged in sections.tsv instead",
                moving,
            )


def _check_exclusion(brain: Brain, found: _Collector) -> None:
    import nibabel as nib

    path = brain.path(brain.exclusion_mask)
    if not path.is_file():
        found.add(path, "exclusion mask not found", "restore it or remove exclusion_mask")
        return
    try:
        image = nib.load(str(path))
        if len(image.shape) != 3:
            found.add(
                path,
                f"exclusion mask must be 3D, has shape {image.shape}",
                "save a 3D mask in world mm",
            )
        np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        found.add(path, f"unreadable NIfTI ({exc})", "save the mask again")


def problems_as_json(problems: list[Problem]) -> list[dict]:
    return [asdict(p) for p in problems]
