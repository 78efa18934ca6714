"""Section data of a local segmentation model: class images, ROIs, orientation and lazily read patches.

This is the layer between the brain's files (:class:`~cortexgraph.data.stack.SectionStack`) and the
array-level core (:mod:`~cortexgraph.lsm.sampling`, :mod:`~cortexgraph.lsm.train`):

* :func:`area_class_image`: the four LSM classes of a section for one area (Schiffer et al. 2021,
  NeuroImage, Sect. 2.5, "Background class labels"): 0 slide
  background, 1 white matter, 2 gray matter that is not the area, 3 the area (annotation pixels on
  tissue).
* :class:`RasterImageSource`: patches of a section image at any spacing and rotation, read from the
  pyramid level closest below the requested spacing. Only the chunks under a patch are read; levels
  that fit into ``cache_mb`` are kept in memory after their first use (a 100 um phantom section is
  2 MB, a 2 um scan as in the publications several GB: those stay on disk).
* :func:`orientation_angle`: the orientation normalisation of a section (Schiffer et al. 2021,
  NeuroImage, Sect. 2.5, "Data augmentation"): the patch rotation, a multiple of 90 degrees, that puts the superior direction at the top of the patch.
  "Superior" is up in the base section's frame (the world's z axis is ``v0 - v``, docs/conventions.md),
  so a section's superior direction is the base frame's up vector mapped back through its transform.
* :func:`load_section_data`: class image, training ROI (pixels within 5 mm of the area), orientation
  and image source of one annotated section, at the model's output spacing.
* :func:`section_transform`: ``Phi_{s->u}`` from the brain's transforms (via the base section).
* :func:`area_sections` / :func:`resolve_area`: the annotated sections that show an area, and an
  area of the cohort's table by name or id.

Coordinates: section mm ``(x, y)``, x along columns, y down the rows, origin at the image's top-left
corner; pixel (i, j) of a grid with spacing ``s`` um has its centre at ``((j + .5) s, (i + .5) s)/1000``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.lsm.roi import training_roi
from cortexgraph.lsm.sampling import array_window, extract_patch, superior_angle

CLASS_BACKGROUND, CLASS_WHITE, CLASS_CORTEX, CLASS_AREA = 0, 1, 2, 3
CLASS_NAMES = ("background", "white matter", "other cortex", "area")
OUTSIDE_ROI = 255
"""Value of pixels outside the prediction ROI in the per-area class predictions."""

IMAGE_PAD = 255
"""Grey value used where a patch reaches outside a section image (bright slide background)."""


# --------------------------------------------------------------------------------------------------
# classes


def area_class_image(tissue: np.ndarray, annotation: np.ndarray, area_id: int) -> np.ndarray:
    """The four LSM classes of a section for one area.

    Parameters
    ----------
    tissue : (rows, cols) tissue mask, 0 background, 1 white matter, 2 gray matter (other values are
        treated as background).
    annotation : (rows, cols) area ids (0 unlabelled), same grid as ``tissue``.
    area_id : the target area.

    Returns
    -------
    (rows, cols) uint8: 0 background, 1 white matter, 2 gray matter that is not the area, 3 the area.
    Annotated pixels of the area are class 3 where the tissue mask shows tissue (a tear inside the
    area stays background).
    """
    tissue = np.asarray(tissue)
    annotation = np.asarray(annotation)
    if tissue.shape != annotation.shape:
        raise ValueError(f"tissue {tissue.shape} and annotation {annotation.shape} differ in shape")
    classes = np.where((tissue == 1) | (tissue == 2), tissue, 0).astype(np.uint8)
    classes[(annotation == area_id) & (classes > 0)] = CLASS_AREA
    return classes


def grid_shape(extent_mm: tuple[float, float], spacing_um: float) -> tuple[int, int]:
    """(rows, cols) of a section of ``extent_mm`` = (width, height) at ``spacing_um`` (as
    :meth:`~cortexgraph.data.raster.Raster.read_at_spacing`)."""
    width_mm, height_mm = extent_mm
    rows = max(1, int(round(height_mm * 1000.0 / spacing_um)))
    cols = max(1, int(round(width_mm * 1000.0 / spacing_um)))
    return rows, cols


# --------------------------------------------------------------------------------------------------
# image sources


class _ImageSource:
    """A section image that hands out patches in section mm: subclasses give the window reader and
    pixel spacing of the image that serves a requested spacing (:meth:`_source`)."""

    def _source(self, spacing_um: float):
        raise NotImplementedError

    def patch(
        self,
        centre_mm: Sequence[float],
        size_px: int,
        spacing_um: float,
        angle_rad: float = 0.0,
        fill: float = IMAGE_PAD,
    ) -> np.ndarray:
        """(size_px, size_px) float32 patch centred at ``centre_mm`` = (x_mm, y_mm), resampled to
        ``spacing_um`` and rotated by ``angle_rad`` (bilinear; Gaussian pre-filter when
        downsampling)."""
        window, source_spacing_um = self._source(spacing_um)
        centre_rc = (
            float(centre_mm[1]) * 1000.0 / source_spacing_um - 0.5,
            float(centre_mm[0]) * 1000.0 / source_spacing_um - 0.5,
        )
        scale = spacing_um / source_spacing_um
        patch = extract_patch(window, centre_rc, size_px, scale, angle_rad, order=1, fill=fill)
        return patch.astype(np.float32, copy=False)


class ArrayImageSource(_ImageSource):
    """Patches of an in-memory image with pixel spacing ``spacing_um`` (same interface as
    :class:`RasterImageSource`)."""

    def __init__(self, image: np.ndarray, spacing_um: float) -> None:
        self.image = np.asarray(image)
        self.spacing_um = float(spacing_um)

    def _source(self, spacing_um: float):
        return array_window(self.image), self.spacing_um


class RasterImageSource(_ImageSource):
    """Patches of a section raster, read lazily from its pyramid: :meth:`patch` reads from the
    pyramid level closest below the requested spacing.

    Parameters
    ----------
    raster : the section image (:class:`~cortexgraph.data.raster.Raster`).
    cache_mb : levels up to this total size are read whole on first use and kept in memory; larger
        ones are read window by window (only the HDF5 chunks under each patch).

    :meth:`patch` gives the same values whichever way the level is read.
    """

    def __init__(self, raster: Raster, cache_mb: float = 256.0) -> None:
        self.raster = raster
        self.cache_mb = float(cache_mb)
        self._levels: dict[int, np.ndarray] = {}
        self.windows_read = 0

    def _level_array(self, index: int) -> np.ndarray | None:
        if index in self._levels:
            return self._levels[index]
        level = self.raster.levels[index]
        nbytes = int(np.prod(level.shape)) * self.raster.dataset(index).dtype.itemsize
        used = sum(a.nbytes for a in self._levels.values())
        if used + nbytes > self.cache_mb * 2**20:
            return None
        self._levels[index] = self.raster.read_level(index)
        return self._levels[index]

    def _source(self, spacing_um: float):
        level = self.raster.level_for_spacing(spacing_um)
        cached = self._level_array(level.index)
        if cached is not None:
            return array_window(cached), level.spacing_um

        def window(row0, col0, rows, cols, fill_value):
            self.windows_read += 1
            return self.raster.read_window(level.index, row0, col0, rows, cols, fill_value)

        return window, level.spacing_um


# --------------------------------------------------------------------------------------------------
# geometry


def section_transform(stack: SectionStack, source: int, target: int) -> np.ndarray:
    """``Phi_{source->target}``: 3x3 matrix mapping raw mm of section ``source`` onto ``target``
    (through the base section: ``from_base[target] @ to_base[source]``)."""
    return stack.from_base[target] @ stack.to_base[source]


def superior_direction(stack: SectionStack, section: int) -> np.ndarray:
    """Unit vector (dx, dy) of the superior direction in the raw image of ``section``."""
    linear = stack.to_base[section][:2, :2]
    direction = np.linalg.solve(linear, np.array([0.0, -1.0]))
    return direction / np.linalg.norm(direction)


def orientation_angle(stack: SectionStack, section: int) -> float:
    """Patch rotation (radians, a multiple of pi/2) that puts superior at the top of the patch."""
    return superior_angle(superior_direction(stack, section), snap_90=True)


# --------------------------------------------------------------------------------------------------
# one section's data


@dataclass
class SectionData:
    """What training and prediction need from one section, at the model's output spacing.

    ``classes`` (uint8 0..3) and ``area`` exist only for annotated sections; ``roi`` is the training ROI
    ``R_s(A; r)`` of an annotated section.
    """

    section: int
    spacing_um: float
    shape: tuple[int, int]
    angle_rad: float
    image: RasterImageSource
    classes: np.ndarray | None = None
    roi: np.ndarray | None = None

    @property
    def area(self) -> np.ndarray:
        if self.classes is None:
            raise ValueError(f"section {self.section} has no class image")
        return self.classes == CLASS_AREA


def load_section_data(
    stack: SectionStack,
    section: int,
    spacing_um: float,
    *,
    area_id: int | None = None,
    radius_mm: float = 5.0,
    cache_mb: float = 256.0,
) -> SectionData:
    """Read one section for an LSM at ``spacing_um`` (the model's output spacing).

    With ``area_id``: the section must be annotated and show the area; its class image
    (:func:`area_class_image` of the tissue mask and the annotation, both resampled to ``spacing_um``
    by nearest neighbour) and its training ROI (pixels within ``radius_mm`` of the area) are loaded.
    Without: only the geometry and the image source (a section to predict).

    Raises DataFormatError when the area is not annotated on the section.
    """
    shape = grid_shape(stack.section_extent_mm(section), spacing_um)
    data = SectionData(
        section=section,
        spacing_um=float(spacing_um),
        shape=shape,
        angle_rad=orientation_angle(stack, section),
        image=RasterImageSource(stack.raster(section, "image"), cache_mb=cache_mb),
    )
    if area_id is None:
        return data
    tissue = stack.tissue_mask(section, spacing_um)
    annotation = stack.annotation(section, spacing_um)
    classes = area_class_image(tissue, annotation, area_id)
    if not (classes == CLASS_AREA).any():
        raise DataFormatError(
            f"area {area_id} is not annotated on this section",
            file=stack.brain.section_table_path,
            section=section,
            fix="train on sections whose annotation contains the area (`cortexgraph lsm chain` "
            "lists them)",
        )
    data.classes = classes
    data.roi = training_roi(classes == CLASS_AREA, spacing_um, radius_mm)
    return data


def area_sections(stack: SectionStack, area_id: int, spacing_um: float | None = None) -> list[int]:
    """Annotated sections (not missing, not excluded) whose annotation contains ``area_id``."""
    out = []
    available = set(stack.sections)
    for section in stack.brain.annotated_sections:
        if section not in available:
            continue
        if np.any(stack.annotation(section, spacing_um) == area_id):
            out.append(int(section))
    return out


def resolve_area(brain: Brain, key: Area | str | int) -> Area:
    """An area of the brain's cohort by name or id (an :class:`~cortexgraph.data.manifest.Area`
    passes through)."""
    if isinstance(key, Area):
        return key
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort folder, so there is no area table",
            file=brain.root,
            fix="keep brains inside a cohort (docs/data-format.md)",
        )
    return brain.cohort.areas.resolve(key)
