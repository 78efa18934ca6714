"""Lazy access to the sections of one brain, and the geometry that places them in 3D.

:class:`SectionStack` opens section files only when asked and reads only the chunks it needs. It also
holds the reconstruction geometry (docs/conventions.md):

* every available section is mapped onto the **base section** (default: the central one) by composing
  the consecutive rigid transforms (:func:`cortexgraph.data.transforms.compose_to_base`), mirrored
  sections being reflected first;
* base-section mm coordinates ``(u, v)`` of section ``s`` become world mm (RAS) as
  ``x = u - u0``, ``y = (s - s_base) * thickness_mm``, ``z = v0 - v``, where ``(u0, v0)`` is the centre of
  the base section's tissue mask.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import overload

import numpy as np

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.manifest import Brain
from cortexgraph.data.raster import Raster, section_raster_problems
from cortexgraph.data.transforms import (
    apply_transform,
    central_section,
    chain_drift_mm,
    compose_to_base,
    invert_rigid,
    link_shift_mm,
    mirror_matrix,
)
from cortexgraph.errors import DataFormatError, ParameterError

RASTER_KINDS = ("image", "mask", "annotation", "coords")
SPACING_ATTRIBUTE = {
    "image": "image_spacing_um",
    "mask": "mask_spacing_um",
    "annotation": "annotation_spacing_um",
    "coords": "coords_spacing_um",
}


class SectionStack:
    """The digitized sections of a brain, read lazily.

    Parameters
    ----------
    brain : a :class:`~cortexgraph.data.manifest.Brain`.
    include_excluded : when False (default) sections flagged ``excluded`` are left out of
        :attr:`sections` (they are still readable by number).
    """

    def __init__(self, brain: Brain, include_excluded: bool = False) -> None:
        self.brain = brain
        self._rasters: dict[tuple[int, str], Raster] = {}
        self.sections = [
            r.section
            for r in brain.sections
            if not r.missing and (include_excluded or not r.excluded)
        ]
        if not self.sections:
            raise DataFormatError(
                "no available sections",
                file=brain.section_table_path,
                fix="the section table lists no section that is present",
            )

    # -- files ------------------------------------------------------------------------------------
    def raster(self, section: int, kind: str) -> Raster:
        """The lazily opened raster of one section; ``kind`` in image, mask, annotation, coords.

        Its header is validated on opening (:func:`~cortexgraph.data.raster.section_raster_problems`:
        dimensions, dtype, pyramid kind, section attribute, spacing, canvas size); the first problem
        raises DataFormatError naming the file and section.
        """
        if kind not in RASTER_KINDS:
            raise ParameterError(
                f"raster kind {kind!r} is not one of {', '.join(RASTER_KINDS)}",
                fix=f"use one of {', '.join(RASTER_KINDS)}",
            )
        key = (section, kind)
        if key not in self._rasters:
            record = self.brain.section(section)
            relative = getattr(record, kind)
            if record.missing or not relative:
                raise DataFormatError(
                    f"section has no {kind} file",
                    file=self.brain.section_table_path,
                    section=section,
                    fix=f"add the {kind} column for this section",
                )
            raster = Raster(self.brain.path(relative, what=f"{kind} path", section=section))
            problems = section_raster_problems(
                raster,
                kind,
                spacing_um=getattr(self.brain, SPACING_ATTRIBUTE[kind]),
                section=section,
            )
            if problems:
                raster.close()
                raise problems[0]
            self._rasters[key] = raster
        return self._rasters[key]

    def close(self) -> None:
        for raster in self._rasters.values():
            raster.close()
        self._rasters.clear()

    def __enter__(self) -> SectionStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------
    def read_patch(
        self,
        section: int,
        center_mm: tuple[float, float],
        size_px: int | tuple[int, int],
        spacing_um: float,
        *,
        angle_rad: float = 0.0,
        kind: str = "image",
    ) -> np.ndarray:
        """A patch of a section image (or mask / labels) centred at ``center_mm`` (raw section mm)."""
        return self.raster(section, kind).read_patch(
            center_mm, size_px, spacing_um, angle_rad=angle_rad
        )

    def tissue_mask(self, section: int, spacing_um: float | None = None) -> np.ndarray:
        """Tissue classes (0 background, 1 white, 2 gray) at ``spacing_um`` (default: stored)."""
        raster = self.raster(section, "mask")
        if spacing_um is None:
            return raster.read_level(0)
        return raster.read_at_spacing(spacing_um)

    def annotation(self, section: int, spacing_um: float | None = None) -> np.ndarray:
        """Area-id label image (0 unlabelled) from the label image, or rasterised from the contours."""
        record = self.brain.section(section)
        if record.annotation:
            raster = self.raster(section, "annotation")
            return (
                raster.read_level(0) if spacing_um is None else raster.read_at_spacing(spacing_um)
            )
        if record.contours:
            spacing = self.brain.spacing_of("annotation") if spacing_um is None else spacing_um
            width_mm, height_mm = self.section_extent_mm(section)
            shape = (int(round(height_mm * 1000 / spacing)), int(round(width_mm * 1000 / spacing)))
            features = read_contours(self.brain.path(record.contours))
            return rasterize_contours(features, shape, spacing)
        raise DataFormatError(
            "section is not annotated",
            file=self.brain.section_table_path,
            section=section,
            fix="pick an annotated section (see `cortexgraph check`)",
        )

    def coords(self, section: int, spacing_um: float | None = None) -> np.ndarray:
        """Canonical coordinate map (rows, cols, 3) in [-1, 1], NaN outside tissue."""
        raster = self.raster(section, "coords")
        return raster.read_level(0) if spacing_um is None else raster.read_at_spacing(spacing_um)

    def section_extent_mm(self, section: int) -> tuple[float, float]:
        """(width_mm, height_mm) of a section, from its tissue mask."""
        return self.raster(section, "mask").extent_mm

    # -- geometry ---------------------------------------------------------------------------------
    @cached_property
    def base_section(self) -> int:
        base = self.brain.base_section
        available = self.brain.available_sections
        if base is None:
            return central_section(available)
        if base not in available:
            raise DataFormatError(
                f"base_section {base} is missing",
                file=self.brain.manifest_path,
                section=base,
                fix="set base_section to an available section or remove it (central default)",
            )
        return int(base)

    def link_problems(self) -> list[DataFormatError]:
        """Consecutive transforms that move a section's canvas implausibly far from its neighbour's.

        For each pair of consecutive available sections with a row in transforms.tsv,
        :func:`~cortexgraph.data.transforms.link_shift_mm` compares the shift with the canvases (read
        from the mask headers; nothing is allocated). Returns DataFormatErrors naming transforms.tsv
        and the moving section.
        """
        table = self.brain.transforms
        available = self.brain.available_sections
        out = []
        for moving, fixed in zip(available[:-1], available[1:], strict=True):
            matrix = table.get((moving, fixed))
            if matrix is None:
                continue
            shift, limit = link_shift_mm(
                matrix, self.section_extent_mm(moving), self.section_extent_mm(fixed)
            )
            if shift > limit:
                out.append(
                    DataFormatError(
                        f"transform {moving} -> {fixed} moves the section {shift:.4g} mm away from "
                        f"its neighbour (more than the canvas diagonal, {limit:.4g} mm)",
                        file=self.brain.transform_table_path,
                        section=moving,
                        fix="translations are in mm of the section frame; re-estimate the transform "
                        "or correct its units",
                    )
                )
        return out

    @cached_property
    def to_base(self) -> dict[int, np.ndarray]:
        """``{section: T}``, ``p_base = T @ p_raw`` in mm (mirroring included).

        Raises DataFormatError (transforms.tsv, the section) when a link is missing, not finite or
        moves a section beyond its neighbour's canvas (:meth:`link_problems`).
        """
        problems = self.link_problems()
        if problems:
            raise problems[0]
        mirror = {
            r.section: mirror_matrix(self.section_extent_mm(r.section)[0])
            for r in self.brain.sections
            if r.mirrored and not r.missing
        }
        to_base = compose_to_base(
            self.brain.available_sections,
            self.brain.transforms,
            self.base_section,
            mirror,
            file=str(self.brain.transform_table_path),
        )
        extents = {s: self.section_extent_mm(s) for s in to_base}
        drift, limit = chain_drift_mm(to_base, extents, self.base_section)
        for section, distance in sorted(drift.items()):
            if distance > limit:
                raise drift_error(self.brain, section, distance, limit)
        return to_base

    @cached_property
    def from_base(self) -> dict[int, np.ndarray]:
        """``{section: T^-1}``, ``p_raw = T^-1 @ p_base``."""
        return {s: invert_rigid(t) for s, t in self.to_base.items()}

    @cached_property
    def base_center_mm(self) -> tuple[float, float]:
        width, height = self.section_extent_mm(self.base_section)
        return width / 2.0, height / 2.0

    @property
    def thickness_mm(self) -> float:
        return self.brain.thickness_um / 1000.0

    @overload
    def plane_y_mm(self, section: int) -> float: ...
    @overload
    def plane_y_mm(self, section: np.ndarray) -> np.ndarray: ...
    def plane_y_mm(self, section: int | np.ndarray) -> float | np.ndarray:
        """World y of a section's plane: ``(section - base) * thickness_mm`` (elementwise on arrays)."""
        return (section - self.base_section) * self.thickness_mm

    def section_to_world(self, section: int, points_mm: np.ndarray) -> np.ndarray:
        """Raw section mm (N, 2) -> world mm (N, 3)."""
        base = apply_transform(self.to_base[section], np.asarray(points_mm, dtype=np.float64))
        u0, v0 = self.base_center_mm
        world = np.empty((len(base), 3))
        world[:, 0] = base[:, 0] - u0
        world[:, 1] = self.plane_y_mm(section)
        world[:, 2] = v0 - base[:, 1]
        return world

    def world_to_section(self, section: int, points_world_mm: np.ndarray) -> np.ndarray:
        """World mm (N, 3) -> raw section mm (N, 2) (the world y is ignored: projection on the plane)."""
        points = np.asarray(points_world_mm, dtype=np.float64)
        u0, v0 = self.base_center_mm
        base = np.column_stack([points[:, 0] + u0, v0 - points[:, 2]])
        return apply_transform(self.from_base[section], base)

    def canvas_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (min, max), each (3,) in mm, of the four canvas corners of every
        section in :attr:`sections` (available ones), mapped to the world by its transform; from
        headers only. Its y runs from the first to the last available section's plane."""
        corners = []
        for s in self.sections:
            width, height = self.section_extent_mm(s)
            square = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
            corners.append(self.section_to_world(s, square))
        points = np.vstack(corners)
        return points.min(axis=0), points.max(axis=0)

    def tissue_bounds_mm(self, spacing_um: float) -> tuple[np.ndarray, np.ndarray] | None:
        """World bounding box (min, max), each (3,) in mm, of the tissue of every section in
        :attr:`sections`, or None when no mask holds tissue.

        Each tissue mask is read at the coarsest pyramid level not coarser than ``spacing_um``
        (one small array at a time); the first and last tissue pixel of every row, grown by one
        pixel of that level on every side (a coarse level may miss a thin rim), are mapped to the
        world by the section's transform: the box of the transformed tissue, not of its
        transformed box. y runs from the first to the last available section's plane, as in
        :meth:`canvas_bounds_mm`.
        """
        corners = []
        for s in self.sections:
            raster = self.raster(s, "mask")
            level = raster.level_for_spacing(spacing_um)
            data = raster.read_level(level.index)
            tissue = np.asarray((data > 0).any(axis=2) if data.ndim == 3 else data > 0)
            rows = np.flatnonzero(tissue.any(axis=1))
            if rows.size == 0:
                continue
            # every vertex of the tissue's convex hull is the first or last tissue pixel of its
            # row, so the corners of those pixels (grown by one) bound the tissue under any
            # rigid transform
            first = np.argmax(tissue[rows], axis=1)
            last = tissue.shape[1] - 1 - np.argmax(tissue[rows, ::-1], axis=1)
            u = np.concatenate([first - 1, last + 2, first - 1, last + 2]).astype(np.float64)
            v = np.concatenate([rows - 1, rows - 1, rows + 2, rows + 2]).astype(np.float64)
            points = np.column_stack([u, v]) * (level.spacing_um / 1000.0)
            corners.append(self.section_to_world(s, points))
        if not corners:
            return None
        points = np.vstack(corners)
        lo, hi = points.min(axis=0), points.max(axis=0)
        planes = self.plane_y_mm(np.array(self.sections))
        lo[1], hi[1] = float(planes.min()), float(planes.max())
        return lo, hi

    def world_bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (min, max) in mm of the stacked sections, from headers only.

        x and z: the canvases of the sections in :attr:`sections`, mapped to the world
        (:meth:`canvas_bounds_mm`); y: the planes of the first and last digitized sections (missing
        ones included). Nothing is allocated beyond a few corners per section.
        """
        lo, hi = self.canvas_bounds_mm()
        numbers = [r.section for r in self.brain.sections]
        lo[1], hi[1] = self.plane_y_mm(min(numbers)), self.plane_y_mm(max(numbers))
        return lo, hi

    def section_of_world_y(self, y_mm: np.ndarray) -> np.ndarray:
        """Nearest section number (not necessarily available) of world y positions."""
        return np.rint(np.asarray(y_mm) / self.thickness_mm).astype(np.int64) + self.base_section


def drift_error(brain: Brain, section: int, distance_mm: float, limit_mm: float) -> DataFormatError:
    """The error for a section that the composed transforms carry away from the base section."""
    return DataFormatError(
        f"the transforms carry section {section} {distance_mm:.4g} mm away from the base section "
        f"(more than the largest canvas diagonal, {limit_mm:.4g} mm): the chain drifts",
        file=brain.transform_table_path,
        section=section,
        fix="re-estimate the transforms of the sections between this one and the base section "
        "(translations are in mm of the section frame)",
    )


def brain_folder(brain: Brain) -> Path:
    return brain.root
