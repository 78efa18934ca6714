"""The 3D map of one area from its section masks: assemble, fill gaps, filter, clean, mesh.

Schiffer et al. 2021, NeuroImage, Sect. 2.8 and Fig. 7 (Schiffer, PhD thesis, Sect. 5.2.6 and
Fig. 5.13), in order:

1. :func:`~cortexgraph.maps3d.assemble.assemble_area_volume` puts every section that passed quality
   control into its plane of the reconstruction's world frame;
2. :func:`~cortexgraph.maps3d.interpolate.interpolate_missing_sections` fills the planes between
   sections (and the gaps of excluded or missing sections) by the Laplacian field of the signed
   inside/outside field over each gap (``interpolation='linear'``: along y only); the area ends half-way between a section that shows it and one that does
   not, and the first/last labelled sections are extended by ``extend_planes`` planes;
3. binary median filter (box-count majority, exact), ``median_size`` voxels per axis;
4. removal of connected components smaller than ``min_component_mm3`` (27 mm^3);
5. marching-cubes surfaces at full and at preview resolution (:func:`area_surfaces`).

Median window and preview for other voxel sizes
    The NeuroImage paper (Sect. 2.8) uses 11^3 voxels at 20 um because the expected boundary precision is 100 um = 5
    voxels (11 = 2 x 5 + 1), and previews at 100 um. :func:`median_size_for_voxel` keeps that
    physical meaning for any voxel size: ``2 round(0.1 mm / voxel) + 1`` (11 at 20 um, 5 at 50 um,
    1 = no filtering at 200 um and coarser, where a 100 um precision is below the voxel size);
    :func:`preview_factor_for_voxel` gives ``max(2, round(0.1 mm / voxel))`` (5 at 20 um).

In memory or out of core
    :func:`estimate_memory_gb` counts ``WORK_BYTES_PER_VOXEL`` bytes per voxel (the mask, the
    filtered copy, the uint16 running sums of the median and the int32 component labels). When
    that exceeds ``memory_budget_gb`` the volume lives in two ``np.memmap`` files in ``workdir``
    and the filters run block by block on dask's threaded scheduler with ``num_workers``
    threads (:func:`~cortexgraph.maps3d.filters.binary_median_filter_blockwise`,
    :func:`~cortexgraph.maps3d.filters.remove_small_components_blockwise`,
    :func:`~cortexgraph.maps3d.surface.mask_surface_chunked`). Both paths give the same mask voxel
    for voxel and the same surface (tested).
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from cortexgraph.maps3d.assemble import SectionTransform, assemble_area_volume
from cortexgraph.maps3d.filters import (
    binary_median_filter,
    binary_median_filter_blockwise,
    remove_small_components,
    remove_small_components_blockwise,
)
from cortexgraph.maps3d.interpolate import interpolate_missing_sections
from cortexgraph.maps3d.surface import mask_surface, mask_surface_chunked

__all__ = [
    "WORK_BYTES_PER_VOXEL",
    "median_size_for_voxel",
    "preview_factor_for_voxel",
    "end_extension_planes",
    "estimate_memory_gb",
    "build_area_map",
    "area_surfaces",
]

#: working memory of the in-memory path per voxel: bool mask + bool result + uint8 padded copy +
#: two uint16 running-sum arrays of the median, then int32 labels of the component analysis
WORK_BYTES_PER_VOXEL = 8

#: boundary precision the published 11^3 median encodes (5 voxels of 20 um), mm
MEDIAN_PRECISION_MM = 0.1
#: preview voxel size of the publications, mm
PREVIEW_VOXEL_MM = 0.1


def median_size_for_voxel(voxel_size_mm: float, precision_mm: float = MEDIAN_PRECISION_MM) -> int:
    """Odd median window (voxels) for a boundary precision: ``2 round(precision / voxel) + 1``.

    Half-width rounded half down: 11 at 20 um voxels (as published), 5 at 50 um, 3 at 100 um,
    1 (no filtering) at 200 um and coarser.
    """
    if voxel_size_mm <= 0:
        raise ValueError(f"voxel_size_mm must be positive, got {voxel_size_mm}")
    return 2 * int(math.floor(precision_mm / voxel_size_mm + 0.5 - 1e-9)) + 1


def preview_factor_for_voxel(voxel_size_mm: float, preview_mm: float = PREVIEW_VOXEL_MM) -> int:
    """Integer preview downsampling factor: ``max(2, round(preview_mm / voxel))`` (5 at 20 um)."""
    if voxel_size_mm <= 0:
        raise ValueError(f"voxel_size_mm must be positive, got {voxel_size_mm}")
    return max(2, int(round(preview_mm / voxel_size_mm + 1e-9)))


def end_extension_planes(section_interval_mm: float, plane_spacing_mm: float) -> int:
    """Planes within half a section interval of an end section: ``k h < interval / 2``, k >= 1.

    The same planes the ``'midway'`` gap rule of the interpolation fills next to an empty section.
    """
    if plane_spacing_mm <= 0:
        raise ValueError(f"plane_spacing_mm must be positive, got {plane_spacing_mm}")
    return max(0, math.ceil(0.5 * section_interval_mm / plane_spacing_mm - 1e-9) - 1)


def estimate_memory_gb(shape: Sequence[int]) -> float:
    """Working memory (GB) of the in-memory path for a volume of ``shape``."""
    return math.prod(int(n) for n in shape) * WORK_BYTES_PER_VOXEL / 1e9


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def build_area_map(
    section_masks: Mapping[int, np.ndarray],
    section_to_world: Mapping[int, SectionTransform],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    section_y_mm: Mapping[int, float] | Callable[[int], float],
    excluded: Iterable[int] = (),
    extend_planes: int = 0,
    interpolation: str = "laplace",
    level: str = "area",
    median_size: int = 11,
    min_component_mm3: float = 27.0,
    connectivity: int = 26,
    memory_budget_gb: float = 4.0,
    chunk_vox: int = 128,
    num_workers: int = 2,
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """3D mask of an area from its section masks (assemble, fill gaps, median, components).

    Parameters
    ----------
    section_masks : mapping section number -> 2D array (rows, columns)
        Area mask of each section that shows (or, for a complete labelling, may show) the area;
        an empty mask marks the area as absent there. May be lazy (read on access, once each).
    section_to_world : mapping section number -> 3x3 ndarray or callable
        Section pixel index ``(column, row, 1)`` -> in-plane world ``(x_mm, z_mm, 1)``.
    shape : (nx, ny, nz)
        Volume shape; axis 1 runs along world y (the stack).
    affine : (4, 4) ndarray
        Voxel-to-world affine (mm, RAS); see :func:`~cortexgraph.maps3d.assemble.assemble_area_volume`.
    section_y_mm : mapping or callable
        World y (mm) of each section plane.
    excluded : iterable of int
        Sections left out (quality control, missing, user's list): gaps to interpolate.
    extend_planes : int
        Planes the first and last known planes are copied outwards (half a section interval,
        :func:`end_extension_planes`).
    interpolation : {'laplace', 'linear'}
        Gap filling by the 3D Laplacian field over the gap (default) or linearly along y
        (:func:`~cortexgraph.maps3d.interpolate.interpolate_missing_sections`).
    level : {'area', 'zero'}
        Cut of the interpolated field on gap planes (see the interpolation module).
    median_size : int
        Odd median window edge in voxels (1 = none); see :func:`median_size_for_voxel`.
    min_component_mm3 : float
        Smallest kept connected component (27 mm^3 in the method); 0 keeps everything.
    connectivity : {26, 18, 6}
        Voxel neighbourhood of the component analysis.
    memory_budget_gb : float
        Above this working memory (:func:`estimate_memory_gb`) the volume is processed out of core.
    chunk_vox : int
        Block edge (voxels) of the out-of-core filters and surface.
    num_workers : int
        Threads of the out-of-core filters.
    workdir : path, optional
        Folder of the out-of-core memmaps (default: a new temporary folder). The returned memmap
        lives there (``info["mask_file"]``); the caller removes the folder when done.
    progress : callable(str), optional
        Called with the name of each step when it starts.

    Returns
    -------
    mask : 3D ndarray (or ``np.memmap`` out of core) of bool, ``shape``
        The cleaned area map.
    info : dict
        ``out_of_core``, ``workdir`` (or None), ``known_planes``, ``voxels`` after each step
        (``assembled``, ``interpolated``, ``median``, ``final``), ``median_size``,
        ``min_component_voxels`` and ``seconds`` per step.
    """
    from cortexgraph.maps3d.filters import min_component_voxels

    nx, ny, nz = (int(n) for n in shape)
    shape = (nx, ny, nz)
    affine = np.asarray(affine, dtype=float)
    voxel = _voxel_sizes(affine)
    memory_gb = estimate_memory_gb(shape)
    out_of_core = memory_gb > memory_budget_gb
    say = progress or (lambda step: None)
    info: dict = {
        "shape": list(shape),
        "voxel_size_mm": voxel.tolist(),
        "memory_estimate_gb": memory_gb,
        "out_of_core": out_of_core,
        "workdir": None,
        "median_size": int(median_size),
        "min_component_voxels": min_component_voxels(min_component_mm3, voxel)
        if min_component_mm3 > 0
        else 0,
        "voxels": {},
        "seconds": {},
    }
    if out_of_core:
        work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="map3d_"))
        work.mkdir(parents=True, exist_ok=True)
        info["workdir"] = str(work)
        vol_a: np.ndarray | None = np.lib.format.open_memmap(
            work / "mask.npy", mode="w+", dtype=bool, shape=shape
        )
        vol_b: np.ndarray | None = np.lib.format.open_memmap(
            work / "work.npy", mode="w+", dtype=bool, shape=shape
        )
    else:
        vol_a, vol_b = None, None

    def count(volume) -> int:
        if not out_of_core:
            return int(np.count_nonzero(volume))
        return int(sum(np.count_nonzero(volume[i : i + 64]) for i in range(0, shape[0], 64)))

    t = time.perf_counter()
    say("assemble")
    mask, known = assemble_area_volume(
        section_masks,
        section_to_world,
        shape,
        affine,
        section_y_mm=section_y_mm,
        excluded=excluded,
        out=vol_a,
    )
    info["known_planes"] = int(known.sum())
    info["voxels"]["assembled"] = count(mask)
    info["seconds"]["assemble"] = time.perf_counter() - t

    t = time.perf_counter()
    say("interpolate")
    mask = interpolate_missing_sections(
        mask,
        known,
        voxel_size_mm=tuple(voxel),
        method=interpolation,
        level=level,
        extend_planes=extend_planes,
        out=mask,
    )
    info["voxels"]["interpolated"] = count(mask)
    info["seconds"]["interpolate"] = time.perf_counter() - t

    def filter_step(in_memory: Callable, blockwise: Callable) -> None:
        """``mask`` through a filter: ``in_memory(mask)``, or out of core ``blockwise(mask,
        out=<the other memmap>, ...)``, after which the two memmaps swap roles."""
        nonlocal mask, vol_b
        if out_of_core:
            assert vol_b is not None  # opened above out of core
            blockwise(mask, out=vol_b, chunk_vox=chunk_vox, num_workers=num_workers)
            mask, vol_b = vol_b, mask
        else:
            mask = in_memory(mask)

    t = time.perf_counter()
    say("median")
    if median_size > 1:
        filter_step(
            functools.partial(binary_median_filter, size=median_size),
            functools.partial(binary_median_filter_blockwise, size=median_size),
        )
    info["voxels"]["median"] = count(mask)
    info["seconds"]["median"] = time.perf_counter() - t

    t = time.perf_counter()
    say("components")
    if min_component_mm3 > 0:
        filter_step(
            functools.partial(
                remove_small_components,
                min_volume_mm3=min_component_mm3,
                voxel_size_mm=tuple(voxel),
                connectivity=connectivity,
            ),
            functools.partial(
                remove_small_components_blockwise,
                min_volume_mm3=min_component_mm3,
                voxel_size_mm=tuple(voxel),
                connectivity=connectivity,
            ),
        )
    info["voxels"]["final"] = count(mask)
    info["seconds"]["components"] = time.perf_counter() - t
    if out_of_core:
        # the two memmaps opened above (each out-of-core step writes into the other one)
        result, spare_map = cast(np.memmap, mask), cast(np.memmap, vol_b)
        result.flush()
        assert spare_map.filename is not None  # opened from a file above
        spare = Path(spare_map.filename)
        del vol_b, spare_map
        spare.unlink(missing_ok=True)  # the other memmap; the result stays in ``workdir``
        info["mask_file"] = str(result.filename)
    return mask, info


def area_surfaces(
    mask,
    affine: np.ndarray,
    *,
    preview_factor: int = 5,
    smooth_sigma_vox: float = 1.0,
    out_of_core: bool = False,
    chunk_vox: int = 128,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Marching-cubes surfaces of an area map at full and at preview resolution (world mm).

    Parameters
    ----------
    mask : 3D array of bool (ndarray or memmap)
    affine : (4, 4) ndarray
        Voxel-to-world affine.
    preview_factor : int
        Block size of the preview (:func:`preview_factor_for_voxel`).
    smooth_sigma_vox : float
        Gaussian sigma (voxels) before marching cubes at full resolution
        (see :mod:`cortexgraph.maps3d.surface`).
    out_of_core : bool
        Full-resolution surface block by block (:func:`~cortexgraph.maps3d.surface.mask_surface_chunked`).
    chunk_vox : int
        Block edge for ``out_of_core``.

    Returns
    -------
    (vertices_mm, faces), (preview_vertices_mm, preview_faces)
    """
    if out_of_core:
        full = mask_surface_chunked(
            mask, affine, chunk_vox=chunk_vox, smooth_sigma_vox=smooth_sigma_vox
        )
    else:
        full = mask_surface(mask, affine, smooth_sigma_vox=smooth_sigma_vox)
    preview = mask_surface(mask, affine, downsample=preview_factor)
    return full, preview
