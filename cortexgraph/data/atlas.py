"""Probabilistic atlas maps: a 4D NIfTI (x, y, z, map) in the reference space plus a label table.

The label table (TSV) has columns ``index`` (0-based position along the 4th axis), ``area_id`` (id in the
cohort's area table, or 0 for a map without a matching area) and ``name``. Values are probabilities in
[0, 1]. Sampling is trilinear in reference-space mm (outside the volume: 0).

Validation (:func:`atlas_problems`, also applied by :meth:`ProbabilisticAtlas.read`): a readable 4D
NIfTI with a finite, non-singular affine; one label row per map, indices 0..K-1 once each; area ids
present in areas.tsv and not repeated; every value finite and in [0, 1].
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

import nibabel as nib
import numpy as np
from scipy import ndimage

from cortexgraph.data.manifest import (
    Cohort,
    Findings,
    format_tsv,
    read_tsv_lines,
)
from cortexgraph.data.nifti import nifti_data
from cortexgraph.errors import DataFormatError, ParameterError
from cortexgraph.outputs import atomic_path, write_text_atomic

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

ATLAS_LABEL_COLUMNS = ("index", "area_id", "name")
PROBABILITY_TOLERANCE = 1e-6
"""Values may exceed [0, 1] by this much (float rounding of stored probabilities)."""
MIN_VOXEL_VOLUME_MM3 = 1e-9
"""An affine whose 3x3 part has a smaller |determinant| is singular."""
_DIGITS = re.compile(r"[0-9]+")
VALUE_BLOCK_BYTES = 256 << 20
"""``atlas_problems`` reads the maps in blocks of at most this many bytes."""


class ProbabilisticAtlas:
    """Probabilistic maps held in memory as float32 (x, y, z, K) with their affine."""

    def __init__(
        self, maps: np.ndarray, affine: np.ndarray, area_ids: np.ndarray, names: list[str]
    ):
        if maps.ndim != 4 or maps.shape[3] != len(area_ids):
            raise ParameterError(
                f"atlas maps must be 4D with one area id per map, got shape {maps.shape} and "
                f"{len(area_ids)} ids",
                fix="pass (x, y, z, K) maps and K area ids",
            )
        self.maps = np.asarray(maps, dtype=np.float32)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.area_ids = np.asarray(area_ids, dtype=np.int64)
        self.names = list(names)

    @property
    def num_maps(self) -> int:
        return self.maps.shape[3]

    def sample(self, points_mm: np.ndarray) -> np.ndarray:
        """Trilinear map values at reference-space points (N, 3) in mm; returns (N, K) float32."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        voxels = points_mm @ inverse[:3, :3].T + inverse[:3, 3]
        out = np.empty((len(points_mm), self.num_maps), dtype=np.float32)
        for k in range(self.num_maps):
            out[:, k] = ndimage.map_coordinates(
                self.maps[..., k], voxels.T, order=1, mode="constant", cval=0.0
            )
        return out

    @classmethod
    def read(
        cls,
        maps_path: str | os.PathLike,
        labels_path: str | os.PathLike,
        area_ids: set[int] | None = None,
    ) -> ProbabilisticAtlas:
        """Read and validate the maps and their label table (see the module docstring).

        ``area_ids``: the ids of the cohort's area table; label rows must use them (or 0).
        """
        maps_path, labels_path = Path(maps_path), Path(labels_path)
        image, found = _open_maps(maps_path)
        found.raise_if_any()
        num_maps = int(image.shape[3])
        rows, label_found = read_atlas_labels(labels_path, num_maps, area_ids)
        label_found.raise_if_any()
        data = nifti_data(
            image, maps_path, "the file is truncated or corrupt; copy it again", np.float32
        )
        values = Findings(maps_path)
        _value_problems(data, 0, values)
        values.raise_if_any()
        return cls(
            data,
            image.affine,
            np.array([r[1] for r in rows], dtype=np.int64),
            [r[2] for r in rows],
        )

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> ProbabilisticAtlas:
        if not cohort.atlas_maps:
            raise DataFormatError(
                "the cohort has no atlas",
                file=cohort.manifest_path,
                fix="add [atlas] maps = ..., labels = ... to cohort.toml",
            )
        return cls.read(
            cohort.atlas_maps_path,
            cohort.atlas_labels_path,
            area_ids={int(i) for i in cohort.areas.ids},
        )

    def write(self, maps_path: str | os.PathLike, labels_path: str | os.PathLike) -> None:
        with atomic_path(maps_path) as tmp:
            nib.save(nib.Nifti1Image(self.maps, self.affine), str(tmp))
        rows = [
            (k, int(a), n) for k, (a, n) in enumerate(zip(self.area_ids, self.names, strict=True))
        ]
        write_text_atomic(labels_path, format_tsv(ATLAS_LABEL_COLUMNS, rows))


def _open_maps(path: Path):
    """The NIfTI image (header read, data not) and the problems of its header."""
    found = Findings(path)
    if not path.is_file():
        found.add("atlas maps not found", "check [atlas] maps in cohort.toml")
        return None, found
    try:
        image = cast("SpatialImage", nib.load(str(path)))
        shape = tuple(int(n) for n in image.shape)
        affine = np.asarray(image.affine, dtype=np.float64)
        dtype = np.dtype(image.get_data_dtype())
    except Exception as exc:  # nibabel raises several types for files that are not NIfTI
        found.add(
            f"unreadable NIfTI ({type(exc).__name__}: {exc})",
            "the file is truncated or corrupt, or not a NIfTI image; copy it again",
        )
        return None, found
    if len(shape) != 4 or min(shape) == 0:
        found.add(
            f"atlas maps must be a 4D image (x, y, z, map), got shape {shape}",
            "stack the probability maps along the 4th axis",
        )
    if dtype.kind not in "uif":
        found.add(f"atlas maps have dtype {dtype}, not numbers", "store float32 probabilities")
    _affine_problems(affine, found, "atlas maps")
    return image, found


def _affine_problems(affine: np.ndarray, found: Findings, what: str) -> None:
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        found.add(f"the affine of the {what} is not finite", "save the image with a valid affine")
        return
    det = abs(float(np.linalg.det(affine[:3, :3])))
    if det < MIN_VOXEL_VOLUME_MM3:
        found.add(
            f"the affine of the {what} is singular (voxel volume {det:.3g} mm^3)",
            "save the image with its voxel-to-mm affine (qform/sform)",
        )


def read_atlas_labels(
    path: Path, num_maps: int | None, area_ids: set[int] | None
) -> tuple[list[tuple[int, int, str]], Findings]:
    """Rows ``(index, area_id, name)`` sorted by index, and their problems.

    Indices must be the integers 0..K-1 once each (K = ``num_maps``); area ids integers >= 0, the
    nonzero ones present in ``area_ids`` and not repeated.
    """
    found = Findings(path)
    try:
        lines = read_tsv_lines(path, ATLAS_LABEL_COLUMNS)
    except DataFormatError as exc:
        found.extend(exc)
        return [], found
    rows: list[tuple[int, int, str]] = []
    seen_index: dict[int, int] = {}
    seen_area: dict[int, int] = {}
    for line, row in lines:
        index_text, area_text = row["index"], row["area_id"]
        if not _DIGITS.fullmatch(index_text) or not _DIGITS.fullmatch(area_text):
            found.add(
                f"line {line}: index {index_text!r} and area_id {area_text!r} must be integers >= 0",
                "index: position along the 4th axis (0-based); area_id: id in areas.tsv or 0",
            )
            continue
        index, area = int(index_text), int(area_text)
        if index in seen_index:
            found.add(
                f"line {line}: map index {index} is listed twice (also line {seen_index[index]})",
                "one row per map",
            )
            continue
        if area and area in seen_area:
            found.add(
                f"line {line}: area id {area} is given to two maps (also line {seen_area[area]})",
                "one map per area (merge the maps or set area_id 0 for the extra one)",
            )
            continue
        if area and area_ids is not None and area not in area_ids:
            found.add(
                f"line {line}: area id {area} is not in the cohort's area table",
                "add the area to areas.tsv, or set area_id 0 for a map without an area",
            )
            continue
        seen_index[index], seen_area[area] = line, line
        rows.append((index, area, row["name"]))
    rows.sort()
    if num_maps is not None and not found:
        indices = [r[0] for r in rows]
        if indices != list(range(num_maps)):
            found.add(
                f"the label table has indices {_ranges(indices)} but the maps have {num_maps} "
                f"volumes (indices 0..{num_maps - 1})",
                "one label row per map along the 4th axis",
            )
    return rows, found


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")


def _value_problems(block: np.ndarray, first_map: int, found: Findings) -> None:
    for k in range(block.shape[3]):
        data = block[..., k]
        label = f"map {first_map + k}"
        if not np.all(np.isfinite(data)):
            found.add(
                f"{label} holds values that are not finite (NaN or infinite)",
                "replace them by 0 (outside the map) or the probability",
            )
            return
        low, high = float(data.min()), float(data.max())
        if low < -PROBABILITY_TOLERANCE or high > 1.0 + PROBABILITY_TOLERANCE:
            found.add(
                f"{label} holds values in [{low:.4g}, {high:.4g}], outside the probabilities "
                "[0, 1]",
                "store probabilities (divide percentages by 100)",
            )
            return


def atlas_problems(
    maps_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    area_ids: set[int] | None = None,
    *,
    values: bool = True,
    block_bytes: int = VALUE_BLOCK_BYTES,
    total: list | None = None,
) -> list[DataFormatError]:
    """Every problem of an atlas, without holding all its maps in memory.

    Header (4D, numeric, finite non-singular affine), label table (:func:`read_atlas_labels`) and,
    with ``values``, every value (finite, in [0, 1]) read in blocks of maps of at most
    ``block_bytes``. Returns DataFormatErrors naming the maps or label file. When ``total`` is a
    list and the values are valid, ``(sum of all maps (x, y, z) float32, affine)`` is appended to it
    (for the overlap test of ``check``, computed in the same pass).
    """
    maps_path, labels_path = Path(maps_path), Path(labels_path)
    image, found = _open_maps(maps_path)
    num_maps = int(image.shape[3]) if image is not None and len(image.shape) == 4 else None
    _, label_found = read_atlas_labels(labels_path, num_maps, area_ids)
    problems = found.errors + label_found.errors
    if values and image is not None and num_maps is not None and not found:
        per_map = max(1, int(np.prod(image.shape[:3])) * 4)
        step = max(1, block_bytes // per_map)
        value_found = Findings(maps_path)
        summed = np.zeros(image.shape[:3], dtype=np.float32)
        try:
            for k0 in range(0, num_maps, step):
                block = np.asarray(image.dataobj[..., k0 : k0 + step], dtype=np.float32)
                _value_problems(block, k0, value_found)
                if value_found:
                    break
                summed += block.sum(axis=3)
        except Exception as exc:  # nibabel and zlib raise several types for corrupt files
            value_found.add(
                f"unreadable NIfTI data ({type(exc).__name__}: {exc})",
                "the file is truncated or corrupt; copy it again",
            )
        problems += value_found.errors
        if total is not None and not value_found:
            total.append((summed, np.asarray(image.affine, dtype=np.float64)))
    return problems
