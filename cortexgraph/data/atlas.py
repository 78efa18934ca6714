"""Probabilistic atlas maps: a 4D NIfTI (x, y, z, map) in the reference space plus a label table.

The label table (TSV) has columns ``index`` (0-based position along the 4th axis), ``area_id`` (id in the
cohort's area table, or 0 for a map without a matching area) and ``name``. Values are probabilities in
[0, 1]. Sampling is trilinear in reference-space mm (outside the volume: 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from cortexgraph.data.manifest import Cohort, format_tsv, read_tsv
from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import atomic_path, write_text_atomic

ATLAS_LABEL_COLUMNS = ("index", "area_id", "name")


class ProbabilisticAtlas:
    """Probabilistic maps held in memory as float32 (x, y, z, K) with their affine."""

    def __init__(
        self, maps: np.ndarray, affine: np.ndarray, area_ids: np.ndarray, names: list[str]
    ):
        if maps.ndim != 4:
            raise ValueError(f"atlas maps must be 4D, got shape {maps.shape}")
        if maps.shape[3] != len(area_ids):
            raise ValueError("one label row per map expected")
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
        cls, maps_path: str | os.PathLike, labels_path: str | os.PathLike
    ) -> ProbabilisticAtlas:
        maps_path, labels_path = Path(maps_path), Path(labels_path)
        try:
            image = nib.load(str(maps_path))
            data = np.asarray(image.dataobj, dtype=np.float32)
        except FileNotFoundError:
            raise DataFormatError(
                "atlas maps not found", file=maps_path, fix="check [atlas] maps in cohort.toml"
            ) from None
        except Exception as exc:  # nibabel raises several types for corrupt files
            raise DataFormatError(
                f"unreadable NIfTI ({exc})",
                file=maps_path,
                fix="the file is truncated or corrupt; copy it again",
            ) from None
        rows = read_tsv(labels_path, ATLAS_LABEL_COLUMNS)
        rows = sorted(rows, key=lambda r: int(r["index"]))
        if data.ndim != 4 or data.shape[3] != len(rows):
            raise DataFormatError(
                f"atlas has shape {data.shape} but the label table has {len(rows)} rows",
                file=maps_path,
                fix="one label row per map along the 4th axis",
            )
        return cls(
            data,
            image.affine,
            np.array([int(r["area_id"]) for r in rows]),
            [r["name"] for r in rows],
        )

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> ProbabilisticAtlas:
        if not cohort.atlas_maps:
            raise DataFormatError(
                "the cohort has no atlas",
                file=cohort.manifest_path,
                fix="add [atlas] maps = ..., labels = ... to cohort.toml",
            )
        return cls.read(cohort.root / cohort.atlas_maps, cohort.root / cohort.atlas_labels)

    def write(self, maps_path: str | os.PathLike, labels_path: str | os.PathLike) -> None:
        with atomic_path(maps_path) as tmp:
            nib.save(nib.Nifti1Image(self.maps, self.affine), str(tmp))
        rows = [
            (k, int(a), n) for k, (a, n) in enumerate(zip(self.area_ids, self.names, strict=True))
        ]
        write_text_atomic(labels_path, format_tsv(ATLAS_LABEL_COLUMNS, rows))
