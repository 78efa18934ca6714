"""Step 1 of build-graph: the stacked, cleaned tissue volume of one brain.

:func:`reconstruct_volume` stacks the tissue masks with the rigid transforms composed to the central
base section, fills defects (median along y), bridges short runs of missing sections, drops detached
tissue and removes non-cortical gray matter (the brain's exclusion mask when it has one, the automatic
thickness criterion otherwise). Arrays in, arrays out; nothing is written here.
"""


from __future__ import annotations

import logging

import numpy as np

from cortexgraph.build_graph.parameters import BuildGraphParameters, Progress
from cortexgraph.data.manifest import Brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError
from cortexgraph.reconstruct.clean import (
    BACKGROUND,
    GRAY,
    WHITE,
    automatic_noncortical_mask,
    exclude_noncortical,
    fill_defects,
    fill_empty_planes,
    remove_detached_tissue,
    resample_mask_to_grid,
    small_components,
)
from cortexgraph.reconstruct.volume import stack_tissue_volume
from cortexgraph.resources import StackVolumeEstimate

log = logging.getLogger(__name__)


# -- 1. reconstruction ------------------------------------------------------------------------------


def exclusion_mask_volume(
    brain: Brain, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """The brain's exclusion mask (validated, :func:`cortexgraph.data.exclusion.read_exclusion_mask`)
    resampled onto the reconstruction's grid: bool (X, Y, Z)."""
    from cortexgraph.data.exclusion import read_exclusion_mask

    data, mask_affine = read_exclusion_mask(brain.path(brain.exclusion_mask))
    return resample_mask_to_grid(data, mask_affine, shape, affine)


#: Peak memory of build-graph per voxel of the stacked volume cropped to the tissue, and what the
#: process holds whatever the volume (interpreter, libraries). Fitted to two measured peaks
#: (benchmarks/results/full_brain.md, build_graph_accuracy.md), each minus the uncropped uint8
#: stack: the whole phantom brain at 0.3 mm, 7.1 GB for 88.9 M cropped voxels, and the demo slab's
#: B07 at 0.3 mm, 1.73 GB for 19.9 M: 75 bytes per voxel plus 0.19 GB. Both rounded up (80 bytes,
#: 0.5 GB), so the estimate errs on the safe side (7.9 and 2.1 GB for the two).
BYTES_PER_CROPPED_VOXEL = 80.0
BUILD_GRAPH_BASE_BYTES = 0.5e9


def build_graph_memory_bytes(estimate: StackVolumeEstimate) -> float:
    """Estimated peak memory of build-graph: :data:`BUILD_GRAPH_BASE_BYTES`, the uncropped uint8
    stack (allocated once while the sections are stacked) and :data:`BYTES_PER_CROPPED_VOXEL` per
    voxel of the cropped volume."""
    return (
        BUILD_GRAPH_BASE_BYTES
        + estimate.nbytes(1)
        + estimate.cropped_voxels * BYTES_PER_CROPPED_VOXEL
    )


#: the shortest remeshing edge build-graph accepts, as a fraction of the voxel size: the midsurface
#: holds no detail finer than its voxels, and the mesh's vertex count grows as 1 / edge^2
MIN_EDGE_PER_VOXEL = 0.25


def check_edge_length(target_edge_mm: float | None, voxel_mm: float) -> None:
    """Refuse (ParameterError, exit 2) a remeshing edge shorter than a quarter of the voxel size:
    a typo such as ``--edge-mm 0.0001`` would otherwise run out of memory in the remeshing.
    ``None`` (the voxel size) passes."""
    from cortexgraph.errors import ParameterError

    if target_edge_mm is None or target_edge_mm >= MIN_EDGE_PER_VOXEL * voxel_mm:
        return
    factor = (voxel_mm / target_edge_mm) ** 2
    raise ParameterError(
        f"--edge-mm {target_edge_mm:g} is shorter than a quarter of the voxel size "
        f"({voxel_mm:g} mm): the midsurface holds no detail finer than its voxels, and its mesh "
        f"would have about {factor:,.0f} times the vertices of one remeshed at the voxel size",
        fix=f"give --edge-mm {MIN_EDGE_PER_VOXEL * voxel_mm:g} or more (default: the voxel "
        "size), or reconstruct at a finer --voxel-mm",
    )


def require_build_graph_memory(brain: Brain, params: BuildGraphParameters) -> None:
    """Refuse (ResourceError, exit 5) before allocating anything when the reconstruction of
    ``brain`` at ``params.voxel_size_mm`` would not fit in the memory available."""
    from cortexgraph.resources import estimate_stack_volume, require_memory

    estimate = estimate_stack_volume(brain, params.voxel_size_mm)
    check_edge_length(params.target_edge_mm, estimate.voxel_size_mm)
    shape = " x ".join(str(n) for n in estimate.cropped_shape)
    require_memory(
        build_graph_memory_bytes(estimate),
        f"build-graph of {brain.id}: a stacked volume of {shape} voxels of "
        f"{estimate.voxel_size_mm:g} mm (cropped to the tissue)",
        fix="reconstruct at a coarser voxel size (--voxel-mm)",
        file=brain.manifest_path,
    )


def stacked_volume(
    stack: SectionStack, params: BuildGraphParameters, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stacked tissue volume with defects filled and detached tissue dropped (before exclusion).

    Returns (uint8 tissue classes (X, Y, Z), 4x4 voxel -> world mm affine, info).
    """

    def stacking_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("stack sections", done, total)

    volume, affine, info_stack = stack_tissue_volume(
        stack, params.voxel_size_mm, progress=stacking_progress, crop_to_tissue=True
    )
    voxel_mm = float(affine[0, 0])
    bridged, info_gaps = fill_empty_planes(volume, params.max_gap_planes)
    filled, info_fill = fill_defects(bridged, voxel_mm, params.min_defect_mm3)
    cleaned, info_detached = remove_detached_tissue(filled, params.min_tissue_fraction)
    info: dict[str, object] = {
        "stack": info_stack,
        "empty_planes": info_gaps,
        "fill_defects": info_fill,
        "detached_tissue": info_detached,
    }
    gaps = open_gaps(stack, affine, info_gaps["open_runs"], params.max_gap_planes)
    if gaps:
        info["open_gaps"] = gaps
    return cleaned, affine, info


def open_gaps(
    stack: SectionStack, affine: np.ndarray, runs: list[list[int]], max_gap_planes: int
) -> list[dict]:
    """Where missing sections leave the stack open: one entry per run of empty planes longer than
    ``max_gap_planes`` (``sections``: the sections flagged missing or excluded in it, ``y_mm``: its
    world y range, ``planes``), each logged as a warning naming the sections and the fix."""
    brain = stack.brain
    unusable = sorted(r.section for r in brain.sections if r.missing or r.excluded)
    out = []
    for first, last in runs:
        y0 = float(affine[1, 3] + affine[1, 1] * first)
        y1 = float(affine[1, 3] + affine[1, 1] * last)
        s0, s1 = (int(v) for v in stack.section_of_world_y(np.array([y0, y1])))
        sections = [s for s in unusable if s0 - brain.digitization_step < s < s1 + brain.digitization_step]
        out.append({"planes": [first, last], "y_mm": [y0, y1], "sections": sections})
        log.warning(
            "%s: no tissue over %d planes at y %.1f..%.1f mm (sections %s missing or excluded): "
            "the midsurface is cut in two there, with open edges and errors near the gap. Fix: "
            "supply those sections, or bridge the gap by copying the nearest planes with "
            "--max-gap-planes %d",
            brain.id, last - first + 1, y0, y1,
            ", ".join(str(s) for s in sections) or "(none listed)", last - first + 1,
        )  # fmt: skip
    return out


def small_gray_components(tissue: np.ndarray, min_fraction: float) -> np.ndarray:
    """Bool mask of the gray-matter components (26-connected) smaller than ``min_fraction`` of the
    largest gray component."""
    return small_components(tissue == GRAY, min_fraction)[0]


def reconstruct_volume(
    stack: SectionStack, params: BuildGraphParameters, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Stacked and cleaned tissue volume of one brain.

    Returns
    -------
    tissue : uint8 (X, Y, Z), 0 background, 1 white, 2 gray (cortex only after exclusion).
    excluded : bool (X, Y, Z), gray matter removed as non-cortical.
    affine : 4x4 voxel -> world mm.
    info : what was measured: stacking, defects filled, detached tissue, exclusion (method, voxels).
    """
    brain = stack.brain
    cleaned, affine, info = stacked_volume(stack, params, progress)
    voxel_mm = float(affine[0, 0])

    method = params.exclusion
    if method == "auto":
        method = "mask" if brain.exclusion_mask else "automatic"
    if method == "mask":
        if not brain.exclusion_mask:
            raise CortexgraphError(
                "exclusion 'mask' was asked for but the brain has no exclusion mask",
                file=brain.manifest_path,
                fix="set exclusion_mask in brain.toml, or use --exclusion automatic",
            )
        excluded = exclusion_mask_volume(brain, cleaned.shape, affine)
    elif method == "automatic":
        excluded = automatic_noncortical_mask(
            cleaned, voxel_mm, params.max_cortex_thickness_mm, params.exclusion_grow_mm
        )
    else:
        excluded = np.zeros(cleaned.shape, dtype=bool)
    excluded &= cleaned == GRAY
    tissue, info_exclusion = exclude_noncortical(cleaned, excluded)
    info_exclusion["method"] = method
    gray_before = int((cleaned == GRAY).sum())
    share = float(excluded.sum() / gray_before) if gray_before else 0.0
    info_exclusion["gray_share_excluded"] = share
    if method == "automatic" and share > 0.5:
        log.warning(
            "%s: the automatic exclusion removed %.0f%% of the gray matter as non-cortical: the "
            "cortex may be thicker than --max-cortex-thickness-mm %.1f. Fix: raise it, give the "
            "brain an exclusion mask, or use --exclusion none",
            brain.id, 100 * share, params.max_cortex_thickness_mm,
        )  # fmt: skip
    # slivers left at the rim of excluded structures (the mask's resampling, partial volume) are
    # small isolated gray components: they would give spurious midsurface patches
    slivers = small_gray_components(tissue, params.min_cortex_fraction)
    tissue[slivers] = BACKGROUND
    excluded |= slivers
    info_exclusion["voxels_small_gray_components"] = int(slivers.sum())
    cortex_voxels = int((tissue == GRAY).sum())
    if cortex_voxels == 0:
        raise CortexgraphError(
            "the reconstructed volume has no cortex (no gray matter left after cleaning and exclusion)",
            file=brain.manifest_path,
            fix="check the tissue masks (class 2 = gray matter) and the exclusion mask, "
            "or run with --exclusion none",
        )
    if not (tissue == WHITE).any():
        raise CortexgraphError(
            "the reconstructed volume has no white matter, so cortical depth is undefined",
            file=brain.manifest_path,
            fix="check the tissue masks (class 1 = white matter)",
        )
    info |= {
        "exclusion": info_exclusion,
        "voxels_cortex": cortex_voxels,
        "voxels_white": int((tissue == WHITE).sum()),
    }
    return tissue, excluded, affine, info
