"""Memory a stage may use, and estimates made before anything is allocated.

A stage estimates its peak memory from headers (section canvases, transforms, voxel size) and calls
:func:`require_memory` before it allocates; when the estimate exceeds what the machine can give, it
stops with a :class:`~cortexgraph.errors.ResourceError` (exit status 5) that says how much is needed
and how to need less, instead of being killed by the kernel.

* :func:`available_memory_bytes`: ``MemAvailable`` of ``/proc/meminfo``, lowered by the memory limit
  of the process's control group (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``, minus
  what the group already uses) and by ``$CORTEXGRAPH_MAX_MEMORY`` (bytes, or with a suffix K, M, G,
  T: ``8G``) when set. Elsewhere: the physical memory (``os.sysconf``).
* :func:`estimate_stack_volume`: the shape of the stacked tissue volume of a brain at a voxel size,
  from the mask headers and the transforms only (the same bounding box the reconstruction uses).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cortexgraph.errors import ParameterError, ResourceError

MEMORY_ENV = "CORTEXGRAPH_MAX_MEMORY"
HEADROOM = 0.9
"""A stage may plan to use at most this share of the available memory."""
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number close to 2^63

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_bytes(text: str) -> int:
    """``"8G"`` -> 8 * 2**30; plain digits are bytes. Raises ParameterError for anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ParameterError(
            f"{MEMORY_ENV}={text!r} is not an amount of memory",
            fix=f"set {MEMORY_ENV} to bytes or a number with K, M, G or T (e.g. 8G), or unset it",
        )
    return int(float(match.group(1)) * _SUFFIX[match.group(2).upper()])


def format_bytes(n: float) -> str:
    """Human-readable size (binary units): ``format_bytes(3 << 30) == '3.0 GiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(proc_cgroup: Path, cgroup_root: Path) -> int | None:
    """Limit minus usage of this process's memory cgroup (v2 or v1); None when unlimited."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2
            folder = cgroup_root / rel
            limit = _read_int(folder / "memory.max")
            usage = _read_int(folder / "memory.current")
        elif "memory" in controllers.split(","):  # cgroup v1
            folder = cgroup_root / "memory" / rel
            if not folder.is_dir():
                folder = cgroup_root / "memory"
            limit = _read_int(folder / "memory.limit_in_bytes")
            usage = _read_int(folder / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and limit < _UNLIMITED:
            return max(0, limit - (usage or 0))
    return None


def available_memory_bytes(
    *,
    meminfo: str | os.PathLike = "/proc/meminfo",
    proc_cgroup: str | os.PathLike = "/proc/self/cgroup",
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
    environ: Mapping[str, str] | None = None,
) -> int:
    """Bytes this process can still allocate (see the module docstring for the sources).

    The keyword arguments exist for tests (other files instead of the system's).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    candidates = []
    value = _meminfo_available(Path(meminfo))
    if value is not None:
        candidates.append(value)
    value = _cgroup_available(Path(proc_cgroup), Path(cgroup_root))
    if value is not None:
        candidates.append(value)
    if env.get(MEMORY_ENV):
        candidates.append(parse_bytes(env[MEMORY_ENV]))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return _UNLIMITED
    return int(min(candidates))


def require_memory(
    estimate_bytes: float,
    what: str,
    fix: str,
    *,
    file: str | os.PathLike | None = None,
    section: int | None = None,
    available: int | None = None,
) -> None:
    """Raise ResourceError when ``estimate_bytes`` exceeds :data:`HEADROOM` of the available memory.

    Parameters
    ----------
    estimate_bytes : the stage's estimated peak memory.
    what : what needs it, for the message ("build-graph: the stacked volume (812 x 640 x 590)").
    fix : how to need less (a coarser voxel size, fewer workers, ...).
    file, section : the input that makes it so large, when there is one.
    available : bytes available (default :func:`available_memory_bytes`).
    """
    available = available_memory_bytes() if available is None else int(available)
    if not math.isfinite(estimate_bytes) or estimate_bytes > HEADROOM * available:
        raise ResourceError(
            f"{what} needs about {format_bytes(estimate_bytes)} of memory, but "
            f"{format_bytes(available)} is available",
            file=None if file is None else str(file),
            section=section,
            fix=f"{fix} (or run on a machine with more memory; {MEMORY_ENV} caps what "
            "cortexgraph assumes it may use)",
        )


@dataclass(frozen=True)
class StackVolumeEstimate:
    """Shape of a brain's stacked volume at one voxel size, computed without allocating it.

    ``shape``: the uncropped grid (the section canvases), allocated once as uint8 while stacking;
    ``cropped_shape``: that grid cut to the tissue's bounding box plus the reconstruction's margin
    (:func:`cortexgraph.reconstruct.volume.stack_tissue_volume` with ``crop_to_tissue``), from the
    masks' coarse pyramid levels, so at least the size of the real crop; every later step holds
    arrays of this size. ``largest_mask_bytes``: the largest level-0 tissue mask (the
    reconstruction reads one at a time).
    """

    shape: tuple[int, int, int]
    voxel_size_mm: float
    origin_mm: tuple[float, float, float]
    largest_mask_bytes: int
    cropped_shape: tuple[int, int, int]

    @property
    def voxels(self) -> int:
        return int(self.shape[0]) * int(self.shape[1]) * int(self.shape[2])

    @property
    def cropped_voxels(self) -> int:
        return int(self.cropped_shape[0]) * int(self.cropped_shape[1]) * int(self.cropped_shape[2])

    def nbytes(self, bytes_per_voxel: float) -> float:
        """Memory of ``bytes_per_voxel`` bytes per voxel (e.g. 1 per uint8 copy, 8 per float64)."""
        return self.voxels * float(bytes_per_voxel)


def estimate_stack_volume(brain, voxel_size_mm: float | None = None) -> StackVolumeEstimate:
    """The stacked tissue volume's shape for ``brain`` at ``voxel_size_mm``, from headers only.

    Parameters
    ----------
    brain : a :class:`~cortexgraph.data.manifest.Brain`.
    voxel_size_mm : isotropic voxel size; default the distance between digitized sections
        (``digitization_step x thickness``), as in the reconstruction.

    Returns
    -------
    :class:`StackVolumeEstimate`. The bounding box is that of
    :func:`cortexgraph.reconstruct.volume.stack_tissue_volume`: canvases of the used sections mapped
    to the world by the composed transforms (x, z), planes of the first and last digitized section
    (y). Opens the mask headers; validates the transforms against the canvases first
    (DataFormatError for a translation far beyond the canvas), so nothing large is ever computed.
    The cropped shape reads each mask at the coarsest level not coarser than the voxel
    (:meth:`cortexgraph.data.stack.SectionStack.tissue_bounds_mm`).
    """

    from cortexgraph.data.stack import SectionStack

    if voxel_size_mm is None:
        voxel_size_mm = brain.digitization_step * brain.thickness_um / 1000.0
    if (
        isinstance(voxel_size_mm, bool)
        or not isinstance(voxel_size_mm, (int, float))
        or not math.isfinite(voxel_size_mm)
        or voxel_size_mm <= 0
    ):
        raise ParameterError(
            f"voxel size {voxel_size_mm!r} mm must be a finite number > 0",
            fix="give a positive voxel size in mm",
        )
    with SectionStack(brain) as stack:
        lo, hi = stack.world_bounds_mm()
        largest = 0
        for s in stack.sections:
            raster = stack.raster(s, "mask")
            rows, cols = raster.shape[:2]
            largest = max(largest, rows * cols * raster.dtype.itemsize)
        tissue = stack.tissue_bounds_mm(1000.0 * float(voxel_size_mm))
    from cortexgraph.reconstruct.volume import lattice_origin, lattice_shape

    voxel = float(voxel_size_mm)
    shape = lattice_shape(lo, hi, voxel)
    origin = lattice_origin(lo, voxel)
    cropped = list(shape)
    if tissue is not None:  # the voxel range of the tissue box, with the crop's margin of 2
        for axis in (0, 2):
            first = max(math.floor((tissue[0][axis] - origin[axis]) / voxel) - 2, 0)
            last = min(math.ceil((tissue[1][axis] - origin[axis]) / voxel) + 3, shape[axis])
            cropped[axis] = max(1, last - first)
    return StackVolumeEstimate(
        shape=shape,  # type: ignore[arg-type]
        voxel_size_mm=voxel,
        origin_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        largest_mask_bytes=int(largest),
        cropped_shape=tuple(cropped),  # type: ignore[arg-type]
    )
