"""Volume and pial surface area of a 3D area map, shrinkage correction and z-scores.

Schiffer et al. 2021, NeuroImage, Sect. 2.8 and Table 2; Schiffer, PhD thesis, Sect. 5.2.6 and
Tables 5.2/5.3:

* volume = number of labelled voxels x voxel volume (|det| of the affine's linear part);
* pial surface area = summed area of the mesh triangles whose cortical depth is < 0.25, the depth
  of a triangle being the maximum of its vertices' depths (thesis Sect. 5.2.6); depth 0 = pial,
  1 = white matter (outside the brain the depth volume is 0, so triangles there count as pial);
* shrinkage correction: volume x f_V, area x f_V^(2/3) (B20: f_V = 1.931, f_A = 1.551;
  Amunts et al. 2005);
* z = (corrected - mean) / sd against the male reference values shipped in
  ``reference_values.tsv`` (thesis Tables 5.2/5.3; the same values as Table 2 of the NeuroImage paper).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from cortexgraph.errors import DataFormatError

__all__ = [
    "F_VOLUME_B20",
    "area_volume_mm3",
    "triangle_areas_mm2",
    "sample_at_vertices",
    "pial_surface_area_mm2",
    "shrinkage_correct",
    "load_reference_table",
    "population_reference_table",
    "zscores",
    "area_report",
]

#: volume shrinkage factor of BigBrain (B20), Amunts et al. 2005 (as cited by Schiffer et al. 2021,
#: NeuroImage, Sect. 2.8)
F_VOLUME_B20 = 1.931


def area_volume_mm3(mask, affine: np.ndarray) -> float:
    """Volume of a mask in mm^3: voxel count x |det(affine[:3, :3])|.

    ``mask`` may be a numpy array, a ``np.memmap`` (counted in slabs) or a dask array.
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))
    if hasattr(mask, "compute"):
        return int((mask != 0).sum().compute()) * voxel_mm3
    # slabs along axis 0: a np.memmap is counted without a full-size temporary
    count = sum(
        int(np.count_nonzero(np.asarray(mask[i : i + 32]))) for i in range(0, mask.shape[0], 32)
    )
    return count * voxel_mm3


def triangle_areas_mm2(vertices_mm: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area (mm^2) of every triangle of a mesh with vertices in mm (in blocks of 2^20 triangles)."""
    verts = np.asarray(vertices_mm, dtype=np.float64)
    faces = np.asarray(faces)
    out = np.empty(len(faces), dtype=np.float64)
    step = 1 << 20
    for i in range(0, len(faces), step):
        t = verts[faces[i : i + step]]
        out[i : i + step] = 0.5 * np.linalg.norm(
            np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1
        )
    return out


def sample_at_vertices(
    volume: np.ndarray, affine: np.ndarray, vertices_mm: np.ndarray, order: int = 1
) -> np.ndarray:
    """Values of a volume (e.g. cortical depth) at mesh vertices given in world mm.

    Parameters
    ----------
    volume : 3D ndarray
        Scalar volume, e.g. the equivolumetric depth (0 pial .. 1 white, 0 outside the brain).
    affine : (4, 4) ndarray
        Voxel-to-world affine of ``volume``.
    vertices_mm : (n, 3) ndarray
        World positions.
    order : int, default 1
        Spline order: 0 nearest-voxel look-up, 1 trilinear.

    Returns
    -------
    (n,) ndarray of float64
        Sampled values; NaN for vertices outside the volume.
    """
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    vox = np.asarray(vertices_mm, dtype=float) @ inv[:3, :3].T + inv[:3, 3]
    volume = np.asarray(volume)
    if volume.dtype not in (np.float32, np.float64):
        volume = volume.astype(np.float32)
    out = ndimage.map_coordinates(volume, vox.T, order=order, mode="nearest", output=np.float64)
    shape = np.asarray(volume.shape)
    outside = np.any((vox < -0.5) | (vox > shape - 0.5), axis=1)
    out[outside] = np.nan
    return out


def pial_surface_area_mm2(
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    depth_at_vertices: np.ndarray,
    max_depth: float = 0.25,
) -> float:
    """Pial surface area: summed area of triangles with max vertex depth < ``max_depth``.

    Parameters
    ----------
    vertices_mm : (n, 3) ndarray
        Mesh vertices in mm.
    faces : (m, 3) ndarray of int
        Triangles.
    depth_at_vertices : (n,) ndarray
        Cortical depth per vertex (0 pial, 1 white). Triangles with a NaN depth do not count.
    max_depth : float, default 0.25
        Triangles whose depth (maximum over their three vertices) is below this count as pial.

    Returns
    -------
    float
        Area in mm^2.
    """
    depth = np.asarray(depth_at_vertices, dtype=float)
    faces = np.asarray(faces)
    if depth.shape != (len(vertices_mm),):
        raise ValueError(f"need one depth per vertex: {depth.shape} vs {len(vertices_mm)} vertices")
    tri_depth = depth[faces].max(axis=1)  # NaN propagates; NaN < max_depth is False
    pial = tri_depth < max_depth
    return float(triangle_areas_mm2(vertices_mm, faces[pial]).sum())


def shrinkage_correct(
    volume_mm3: float | None = None,
    area_mm2: float | None = None,
    f_volume: float = F_VOLUME_B20,
) -> dict[str, float | None]:
    """Shrinkage-corrected volume (x f_V) and area (x f_V^(2/3)).

    Returns a dict with ``volume_mm3``, ``area_mm2`` (None where not given), ``f_volume`` and
    ``f_area``.
    """
    f_area = f_volume ** (2.0 / 3.0)
    return {
        "volume_mm3": None if volume_mm3 is None else volume_mm3 * f_volume,
        "area_mm2": None if area_mm2 is None else area_mm2 * f_area,
        "f_volume": f_volume,
        "f_area": f_area,
    }


def _float(text: str) -> float:
    text = text.strip()
    return math.nan if text in ("", "n.a.", "nan", "NA") else float(text)


def load_reference_table(path: str | Path | None = None) -> dict[tuple[str, ...], dict]:
    """Read a reference TSV (default: the shipped ``reference_values.tsv``).

    Required columns: ``area``, ``quantity`` (``volume`` or ``surface``), ``mean``, ``sd``; lines
    starting with ``#`` are comments. Returns ``{(area, quantity): row}`` with numeric fields as
    floats (NaN where empty). An optional ``hemisphere`` column gives per-hemisphere references:
    rows with ``lh`` or ``rh`` are keyed ``(area, quantity, hemisphere)``, rows with ``both`` or
    empty ``(area, quantity)`` (the whole area).
    """
    if path is None:
        text = resources.files("cortexgraph.maps3d").joinpath("reference_values.tsv").read_text()
        name = "cortexgraph/maps3d/reference_values.tsv"
    else:
        text = Path(path).read_text()
        name = str(path)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t")
    missing = {"area", "quantity", "mean", "sd"} - set(reader.fieldnames or [])
    if missing:
        raise DataFormatError(
            f"reference table lacks columns {sorted(missing)}",
            file=name,
            fix="use tab-separated columns area, quantity, mean, sd",
        )
    table: dict[tuple[str, ...], dict] = {}
    for row in reader:
        parsed = dict(row)
        for key in ("mean", "sd", "b20_raw", "b20_corrected", "b20_z", "n_subjects"):
            if key in parsed:
                parsed[key] = _float(parsed[key] or "")
        hemisphere = (row.get("hemisphere") or "").strip()
        if hemisphere in ("lh", "rh"):
            table[(row["area"], row["quantity"], hemisphere)] = parsed
        else:
            table[(row["area"], row["quantity"])] = parsed
    return table


def population_reference_table(
    values: Mapping[str, Mapping[tuple[str, str, str], float]],
    *,
    exclude: str | None = None,
) -> dict[tuple[str, ...], dict]:
    """A reference table (as :func:`load_reference_table` returns) from a population of brains.

    Parameters
    ----------
    values : ``{brain: {(area, quantity, hemisphere): shrinkage-corrected value}}``, quantity
        ``volume`` (mm^3) or ``surface`` (mm^2), hemisphere ``lh``, ``rh`` or ``both``.
    exclude : a brain left out of the population (the brain being compared with it).

    Returns
    -------
    ``{(area, quantity): row}`` for ``both`` and ``{(area, quantity, hemisphere): row}`` for
    ``lh`` / ``rh``; each row has ``mean``, ``sd`` (sample standard deviation, ddof 1; NaN with
    fewer than two brains), ``n_subjects`` and ``brains`` (comma-separated ids).
    """
    collected: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for brain, table in values.items():
        if brain == exclude:
            continue
        for key, value in table.items():
            if value is not None and math.isfinite(float(value)):
                collected.setdefault(key, []).append((brain, float(value)))
    out: dict[tuple[str, ...], dict] = {}
    for (area, quantity, hemisphere), items in collected.items():
        numbers = np.array([v for _, v in items])
        row = {
            "area": area,
            "quantity": quantity,
            "hemisphere": hemisphere,
            "mean": float(numbers.mean()),
            "sd": float(numbers.std(ddof=1)) if len(numbers) > 1 else math.nan,
            "n_subjects": float(len(numbers)),
            "brains": ",".join(sorted(b for b, _ in items)),
        }
        out_key: tuple[str, ...] = (
            (area, quantity) if hemisphere == "both" else (area, quantity, hemisphere)
        )
        out[out_key] = row
    return out


def zscores(
    values: Mapping[str, float],
    reference_table: Mapping[tuple[str, ...], Mapping] | str | Path | None = None,
    quantity: str = "volume",
) -> dict[str, float]:
    """z = (value - mean) / sd for each area; NaN where the reference has no mean or sd.

    Parameters
    ----------
    values : mapping area -> shrinkage-corrected value (mm^3 for volume, mm^2 for surface)
    reference_table : table from :func:`load_reference_table`, a TSV path, or None (shipped table)
    quantity : {'volume', 'surface'}
    """
    if reference_table is None or isinstance(reference_table, str | Path):
        reference_table = load_reference_table(reference_table)
    out = {}
    for area, value in values.items():
        ref = reference_table.get((area, quantity))
        if ref is None or not (ref["sd"] > 0):
            out[area] = math.nan
        else:
            out[area] = (float(value) - ref["mean"]) / ref["sd"]
    return out


def area_report(
    area: str,
    mask,
    affine: np.ndarray,
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    depth_at_vertices: np.ndarray,
    *,
    max_depth: float = 0.25,
    f_volume: float = F_VOLUME_B20,
    reference_table: Mapping | str | Path | None = None,
) -> dict[str, float | int | str]:
    """One table row of morphometry for an area map.

    Returns a dict: ``area``, ``n_voxels``, ``voxel_volume_mm3``, ``volume_mm3``,
    ``volume_corrected_mm3``, ``volume_z``, ``surface_mm2`` (pial), ``surface_corrected_mm2``,
    ``surface_z``, ``mesh_area_mm2`` (whole closed mesh), ``n_triangles``, ``n_pial_triangles``,
    ``f_volume``, ``f_area``, ``max_depth``.
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))
    volume = area_volume_mm3(mask, affine)
    depth = np.asarray(depth_at_vertices, dtype=float)
    faces = np.asarray(faces)
    surface = pial_surface_area_mm2(vertices_mm, faces, depth, max_depth)
    corr = shrinkage_correct(volume, surface, f_volume)
    volume_corr, surface_corr, f_area = corr["volume_mm3"], corr["area_mm2"], corr["f_area"]
    assert volume_corr is not None and surface_corr is not None and f_area is not None  # all given
    table = (
        load_reference_table(reference_table)
        if reference_table is None or isinstance(reference_table, str | Path)
        else reference_table
    )
    n_pial = int((depth[faces].max(axis=1) < max_depth).sum()) if len(faces) else 0
    return {
        "area": area,
        "n_voxels": int(round(volume / voxel_mm3)),
        "voxel_volume_mm3": voxel_mm3,
        "volume_mm3": volume,
        "volume_corrected_mm3": volume_corr,
        "volume_z": zscores({area: volume_corr}, table, "volume")[area],
        "surface_mm2": surface,
        "surface_corrected_mm2": surface_corr,
        "surface_z": zscores({area: surface_corr}, table, "surface")[area],
        "mesh_area_mm2": float(triangle_areas_mm2(vertices_mm, faces).sum()),
        "n_triangles": int(len(faces)),
        "n_pial_triangles": n_pial,
        "f_volume": f_volume,
        "f_area": f_area,
        "max_depth": max_depth,
    }
