"""``cortexgraph build-graph <brain>``: sections -> volume -> depth -> midsurfaces -> graphs -> node points.

The stages of the graph method of Schiffer et al. 2021, MICCAI (Schiffer 2023, PhD thesis, Sect. 7.1.1,
Figs. 7.1-7.4), each a call into its own package:

1. :func:`reconstruct_volume` (reconstruct/): stack the tissue masks with the rigid transforms composed to
   the central base section, fill defects (median along y), drop detached tissue, remove non-cortical gray
   matter (the brain's exclusion mask when it has one, the automatic thickness criterion otherwise).
2. :func:`depth_field` (meshes/laplace): Laplace depth in the cortex, 0 pial, 1 white.
3. :func:`midsurfaces` (meshes/): the 0.5 isosurface, small components removed, split into hemispheres at
   the interhemispheric fissure, repaired, optionally Poisson-reconstructed, remeshed to the target edge.
4. :func:`map_hemispheres` (mapping/): the virtual cuts of every section through each midsurface, points
   back on the raw sections, refined to the cortical midline, low-tissue points invalid.
5. graph files: positions, faces, edges and the node arrays ``section``, ``point_mm``, ``valid``.

:func:`build_graph` chains them and writes (under ``<cohort>/derivatives/cortexgraph/<brain>/``)::

    reconstruct/tissue.nii.gz      uint8 cleaned tissue volume (0 bg, 1 white, 2 gray), world mm affine
    reconstruct/excluded.nii.gz    uint8, 1 = gray matter removed as non-cortical
    reconstruct/depth.nii.gz       float32 depth (0 pial .. 1 white), NaN outside the cortex
    meshes/midsurface_<hemi>.surf.gii  remeshed midsurface per hemisphere (lh, rh), world mm, GIfTI
                                   (CortexLeft / CortexRight, MidThickness, scanner mm)
    meshes/midsurface_<hemi>.ply   the same for ParaView
    graph/<hemi>.h5                graph file (docs/derivatives.md)
    graph/<hemi>_nodes.tsv         node -> section point table
    qc/build-graph.json            what every stage measured, seconds per stage
    qc/build-graph.png             sections with their mapped points; the meshes from three sides
    records/build-graph.json       the stage record: parameters, input identities, key, outputs

The graph files are never edited by later stages (node features and predictions go to files of their
own, :mod:`cortexgraph.derivatives.layout`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from cortexgraph.data.check import check_brain
from cortexgraph.data.manifest import Brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.mapping.nodes import (
    NodeSectionTable,
    map_nodes_to_sections,
    node_arrays_from_table,
)
from cortexgraph.meshes.graph import save_graph_h5
from cortexgraph.meshes.io import STRUCTURES, write_gifti_surface, write_ply
from cortexgraph.meshes.isosurface import extract_isosurface
from cortexgraph.meshes.laplace import solve_laplace_depth
from cortexgraph.meshes.repair import (
    close_small_holes,
    hemisphere_faces,
    keep_large_components,
    mesh_quality,
    poisson_reconstruct,
    remesh_isotropic,
    repair_mesh,
    smooth_spikes,
)
from cortexgraph.outputs import atomic_path, write_json_atomic
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

log = logging.getLogger(__name__)

HEMISPHERES = ("lh", "rh")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildGraphParameters:
    """Every parameter of build-graph (recorded in the provenance of each output).

    voxel_size_mm : isotropic voxel size of the reconstruction; ``None`` = the distance between digitized
        sections (300 µm for sections digitized like the published data sets: 20 µm x every 15th).
    target_edge_mm : remeshing edge length; ``None`` = the voxel size (published: 300 µm, thesis Sect. 7.1.1).
    exclusion : ``auto`` (the brain's exclusion mask if it has one, else automatic), ``mask``
        (require the mask), ``automatic`` (ignore any mask), ``none``.
    max_cortex_thickness_mm, exclusion_grow_mm : the automatic criterion
        (:func:`cortexgraph.reconstruct.clean.automatic_noncortical_mask`).
    max_gap_planes : runs of up to this many empty planes (missing sections) are filled from the
        nearest plane with tissue.
    min_defect_mm3 : smallest defect (connected difference to the y-median) that is filled.
    min_tissue_fraction : tissue components below this fraction of the largest are dropped.
    min_cortex_fraction : after exclusion, gray components below this fraction of the largest gray
        component (slivers at the rim of excluded structures) become background.
    laplace_tol, laplace_max_iter : solver stop criterion (relative residual) and iteration cap.
    isosurface_method : ``flying_edges`` (VTK) or ``lewiner`` (scikit-image).
    min_component_fraction : mesh components below this fraction of the largest (faces) are dropped
        (0.1: a hemisphere's cortex is one sheet; smaller pieces were remnants of non-cortical gray
        matter on the demo phantom, 1.4 % and 7.5 % of a B05 hemisphere; lower it for a slab whose
        cortex falls apart into pieces).
    poisson_depth : octree depth of Poisson reconstruction; ``None`` skips it.
    remesh_iterations : iterations of isotropic explicit remeshing.
    refine, max_move_mm, min_tissue_share, tissue_patch_mm : node -> section point mapping.
    hemispheres : ``auto`` (brain.toml's ``hemispheres`` when declared, else found:
        :func:`find_hemispheres`), ``both``, ``lh`` or ``rh`` (a brain of one hemisphere).
    min_hemisphere_fraction, max_fissure_tissue_ratio : when found, two hemispheres need at least this
        share of the cortex on each side of the fissure plane, and the plane (or one within two
        voxels) may cut at most this share of the median tissue of a sagittal plane (the fissure is
        nearly empty; a plane through one hemisphere cuts white and gray matter).
    max_hole_edges : holes of the remeshed midsurfaces bounded by at most this many edges are
        closed (the cut ends of a slab are longer loops); 0 keeps them.
    max_spike_ratio : vertices sticking out of their neighbours by more than this many median edge
        lengths are moved to their neighbours' centroid (:func:`~cortexgraph.meshes.repair.
        smooth_spikes`); 0 keeps them.
    """

    voxel_size_mm: float | None = None
    target_edge_mm: float | None = None
    exclusion: str = "auto"
    max_cortex_thickness_mm: float = 5.0
    exclusion_grow_mm: float = 2.0
    max_gap_planes: int = 3
    min_defect_mm3: float = 1.0
    min_tissue_fraction: float = 0.01
    min_cortex_fraction: float = 0.01
    laplace_tol: float = 1e-5
    laplace_max_iter: int = 200
    isosurface_method: str = "flying_edges"
    min_component_fraction: float = 0.1
    poisson_depth: int | None = None
    remesh_iterations: int = 10
    refine: bool = True
    max_move_mm: float = 2.0
    min_tissue_share: float = 0.5
    tissue_patch_mm: float = 4.0
    hemispheres: str = "auto"
    min_hemisphere_fraction: float = 0.2
    max_fissure_tissue_ratio: float = 0.35
    max_hole_edges: int = 30
    max_spike_ratio: float = 1.0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ParameterError:
            return ParameterError(
                f"build-graph parameter {name} = {getattr(self, name)!r}: must be {rule}",
                fix=f"give {name} {rule}",
            )

        if self.exclusion not in ("auto", "mask", "automatic", "none"):
            raise bad("exclusion", "one of auto, mask, automatic, none")
        if self.isosurface_method not in ("flying_edges", "lewiner"):
            raise bad("isosurface_method", "flying_edges or lewiner")
        if self.hemispheres not in ("auto", "both", "lh", "rh"):
            raise bad("hemispheres", "one of auto, both, lh, rh")
        positive = (
            "voxel_size_mm", "target_edge_mm", "max_cortex_thickness_mm", "laplace_tol",
            "max_move_mm", "tissue_patch_mm",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is None and name in ("voxel_size_mm", "target_edge_mm"):
                continue
            if not _finite_number(value) or value <= 0:
                raise bad(name, "a finite number > 0")
        for name in ("exclusion_grow_mm", "min_defect_mm3", "max_spike_ratio"):
            if not _finite_number(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "a finite number >= 0")
        for name in (
            "min_tissue_fraction", "min_cortex_fraction", "min_component_fraction",
            "min_tissue_share", "min_hemisphere_fraction", "max_fissure_tissue_ratio",
        ):  # fmt: skip
            if not _finite_number(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                raise bad(name, "a number in [0, 1)")
        for name in ("max_gap_planes", "laplace_max_iter", "remesh_iterations", "max_hole_edges"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "an integer >= 0")
        if self.laplace_max_iter < 1:
            raise bad("laplace_max_iter", "an integer >= 1")
        if self.poisson_depth is not None and (
            isinstance(self.poisson_depth, bool)
            or not isinstance(self.poisson_depth, int)
            or not 4 <= self.poisson_depth <= 14
        ):
            raise bad("poisson_depth", "an integer in 4..14, or none")


def _finite_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))
    )


def build_graph_outputs(brain: Brain, hemispheres=HEMISPHERES) -> dict[str, Path]:
    """Paths of every file :func:`build_graph` writes for ``brain`` (see the module docstring):
    the mesh and graph files of ``hemispheres`` only."""
    d = brain.derivatives
    out = {
        "tissue": d / "reconstruct" / "tissue.nii.gz",
        "excluded": d / "reconstruct" / "excluded.nii.gz",
        "depth": d / "reconstruct" / "depth.nii.gz",
        "qc_json": d / "qc" / "build-graph.json",
        "qc_png": d / "qc" / "build-graph.png",
    }
    for hemi in hemispheres:
        out[f"gii_{hemi}"] = d / "meshes" / f"midsurface_{hemi}.surf.gii"  # .surf.gii: Workbench
        out[f"ply_{hemi}"] = d / "meshes" / f"midsurface_{hemi}.ply"
        out[f"graph_{hemi}"] = d / "graph" / f"{hemi}.h5"
        out[f"nodes_{hemi}"] = d / "graph" / f"{hemi}_nodes.tsv"
    return out


# -- 1. reconstruction ------------------------------------------------------------------------------


def exclusion_mask_volume(
    brain: Brain, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """The brain's exclusion mask (validated, :func:`cortexgraph.data.exclusion.read_exclusion_mask`)
    resampled onto the reconstruction's grid: bool (X, Y, Z)."""
    from cortexgraph.data.exclusion import read_exclusion_mask

    data, mask_affine = read_exclusion_mask(brain.path(brain.exclusion_mask))
    return resample_mask_to_grid(data, mask_affine, shape, affine)


#: Peak memory of build-graph per voxel of the (uncropped) stacked volume, measured on the demo slab
#: at 0.3 mm (53.7 M voxels, 2.0 GB peak after cropping to the tissue; benchmarks/results/
#: full_brain.md) and rounded up, so the estimate errs on the safe side.
BYTES_PER_STACK_VOXEL = 40.0


def require_build_graph_memory(brain: Brain, params: BuildGraphParameters) -> None:
    """Refuse (ResourceError, exit 5) before allocating anything when the reconstruction of
    ``brain`` at ``params.voxel_size_mm`` would not fit in the memory available."""
    from cortexgraph.resources import estimate_stack_volume, require_memory

    estimate = estimate_stack_volume(brain, params.voxel_size_mm)
    shape = " x ".join(str(n) for n in estimate.shape)
    require_memory(
        estimate.nbytes(BYTES_PER_STACK_VOXEL),
        f"build-graph of {brain.id}: a stacked volume of {shape} voxels of "
        f"{estimate.voxel_size_mm:g} mm",
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
    info = {
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


# -- 2. depth ---------------------------------------------------------------------------------------


def depth_field(
    tissue: np.ndarray, voxel_size_mm: float, params: BuildGraphParameters
) -> tuple[np.ndarray, dict]:
    """Laplace depth in the cortex (0 pial, 1 white; NaN elsewhere) and the solver's report.

    The first and last planes of the stack (y) are cut faces of the tissue, not pial surface: the volume
    is padded there by one replicated plane, so cortex touching the ends gets no pial condition from the
    cut (approximately zero flux), and the padding is cropped again.
    """
    padded = np.pad(tissue, ((0, 0), (1, 1), (0, 0)), mode="edge")
    depth, info = solve_laplace_depth(
        padded, voxel_size_mm, tol=params.laplace_tol, max_iter=params.laplace_max_iter
    )
    return depth[:, 1:-1, :], info


# -- 3. midsurfaces ---------------------------------------------------------------------------------


def interhemispheric_x_mm(tissue: np.ndarray, affine: np.ndarray, search_mm: float = 25.0) -> float:
    """World x of the interhemispheric fissure: the sagittal plane near the tissue's centre that cuts
    the least cortex (the medial cortex lies parallel to the fissure, the fissure itself is empty).

    The profile of gray voxels per sagittal plane is smoothed over ~2 mm and its minimum is searched
    within ``search_mm`` of the centre of mass of the tissue.
    """
    voxel_mm = float(affine[0, 0])
    gray_per_x = (tissue == GRAY).sum(axis=(1, 2)).astype(np.float64)
    tissue_per_x = (tissue > 0).sum(axis=(1, 2)).astype(np.float64)
    centre = float(np.sum(np.arange(len(tissue_per_x)) * tissue_per_x) / tissue_per_x.sum())
    profile = ndimage.gaussian_filter1d(gray_per_x, sigma=max(1.0 / voxel_mm, 0.5))
    half = int(round(search_mm / voxel_mm))
    lo = max(int(round(centre)) - half, 0)
    hi = min(int(round(centre)) + half + 1, len(profile))
    x_index = lo + int(np.argmin(profile[lo:hi]))
    return float(affine[0, 0] * x_index + affine[0, 3])


def find_hemispheres(
    tissue: np.ndarray,
    affine: np.ndarray,
    min_hemisphere_fraction: float = 0.2,
    max_fissure_tissue_ratio: float = 0.35,
) -> tuple[tuple[str, ...], float, dict]:
    """Whether a reconstructed brain holds both hemispheres, and where they meet.

    The candidate plane is :func:`interhemispheric_x_mm`. It is the fissure between two hemispheres
    when (1) each side holds at least ``min_hemisphere_fraction`` of the cortex and (2) the plane
    crosses a gap in the tissue: within two voxels of it a sagittal plane holds at most
    ``max_fissure_tissue_ratio`` of the median tissue of the planes through the brain (the fissure
    is nearly empty; a plane through one hemisphere cuts its white and gray matter). Otherwise the
    brain holds one hemisphere: ``rh`` when (nearly) all its cortex lies right of the plane (the
    search stopped at the medial face of a right hemisphere, world x being RAS), else ``lh``; the
    tissue alone cannot always tell, so declare ``hemispheres`` in brain.toml. Measured on the tiny phantom (1.2 mm voxels): the
    fissure planes hold 0-9 % of the median tissue, with 53-55 % of the cortex on the left; with
    one hemisphere removed, the best plane lies outside the tissue (0 % of the cortex on one side).

    Returns ``(hemispheres, plane x mm, measures)``; measures: ``cortex_left_fraction`` and
    ``fissure_tissue_ratio``.
    """
    midline = interhemispheric_x_mm(tissue, affine)
    gray_per_x = (tissue == GRAY).sum(axis=(1, 2)).astype(np.float64)
    tissue_per_x = (tissue > 0).sum(axis=(1, 2)).astype(np.float64)
    x_mm = affine[0, 0] * np.arange(len(gray_per_x)) + affine[0, 3]
    total = gray_per_x.sum()
    left = float(gray_per_x[x_mm < midline].sum() / total) if total else 0.0
    index = int(np.argmin(np.abs(x_mm - midline)))
    window = tissue_per_x[max(index - 2, 0) : index + 3].min()
    median = float(np.median(tissue_per_x[tissue_per_x > 0])) if tissue_per_x.any() else 0.0
    ratio = float(window / median) if median else 1.0
    both = min(left, 1.0 - left) >= min_hemisphere_fraction and ratio <= max_fissure_tissue_ratio
    measures = {"cortex_left_fraction": left, "fissure_tissue_ratio": ratio}
    if both:
        return ("lh", "rh"), midline, measures
    return (("rh",) if left < min_hemisphere_fraction else ("lh",)), midline, measures


def _edge_lengths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from cortexgraph.meshes.graph import edges_from_faces

    edges = edges_from_faces(faces, len(vertices))
    edges = edges[:, edges[0] < edges[1]]
    return np.linalg.norm(vertices[edges[0]] - vertices[edges[1]], axis=1)


def mesh_summary(vertices: np.ndarray, faces: np.ndarray, target_edge_mm: float) -> dict:
    """Vertices, faces, edge-length statistics and the share of edges within +-30% of the target."""
    lengths = _edge_lengths(vertices, faces)
    within = np.abs(lengths / target_edge_mm - 1.0) <= 0.3 if len(lengths) else np.zeros(0)
    return {
        "vertices": int(len(vertices)),
        "faces": int(len(faces)),
        "edges": int(len(lengths)),
        "edge_mm_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "edge_mm_std": float(lengths.std()) if len(lengths) else 0.0,
        "edge_mm_p5": float(np.percentile(lengths, 5)) if len(lengths) else 0.0,
        "edge_mm_p95": float(np.percentile(lengths, 95)) if len(lengths) else 0.0,
        "edges_within_30pct": float(within.mean()) if len(lengths) else 0.0,
    }


def midsurfaces(
    depth: np.ndarray,
    tissue: np.ndarray,
    affine: np.ndarray,
    params: BuildGraphParameters,
    target_edge_mm: float,
    progress: Progress | None = None,
    declared: tuple[str, ...] | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """The remeshed midsurface of each hemisphere (``{"lh": (v, f), "rh": (v, f)}``, world mm;
    one entry for a brain of one hemisphere: ``declared`` from brain.toml, the parameter, or
    :func:`find_hemispheres`).

    Voxels outside the cortex take the value of their side (white 1, elsewhere 0) so the 0.5 level
    closes against them instead of leaving holes at NaN cells; only marching-cubes cells with a cortex
    corner take part. Each hemisphere's mesh is repaired, remeshed, cleaned (small holes closed,
    spikes smoothed, components under ``min_component_fraction`` of the largest dropped) and
    measured (:func:`cortexgraph.meshes.repair.mesh_quality`: components, genus, boundary edges
    and loops, curvature, spikes; ``before_cleanup`` and ``quality`` in the report).
    """
    # open the surface at the cut ends of the stack: extend the field by a replicated plane, then keep
    # the faces between the first and the last plane (built in place in float32: no float64 or
    # second full-size temporaries)
    field = np.empty((depth.shape[0], depth.shape[1] + 2, depth.shape[2]), dtype=np.float32)
    inner = field[:, 1:-1, :]
    inner[...] = depth
    outside = np.isnan(inner)
    inner[outside] = 0.0
    inner[outside & (tissue == WHITE)] = 1.0
    del outside
    field[:, 0, :] = inner[:, 0, :]
    field[:, -1, :] = inner[:, -1, :]
    padded_affine = affine.copy()
    padded_affine[:3, 3] -= affine[:3, 1]
    # only cells with a cortex corner: white matter touching background directly (cerebellar white
    # matter after exclusion, cut ends) would otherwise give a spurious 0.5 level
    near_cortex = ndimage.binary_dilation(
        np.pad(tissue == GRAY, ((0, 0), (1, 1), (0, 0)), mode="edge"),
        structure=np.ones((3, 3, 3), dtype=bool),
    )
    vertices, faces = extract_isosurface(
        field, 0.5, padded_affine, method=params.isosurface_method, mask=near_cortex
    )
    y_first = affine[1, 3]
    y_last = affine[1, 3] + affine[1, 1] * (depth.shape[1] - 1)
    centroid_y = vertices[faces].mean(axis=1)[:, 1]
    faces = faces[(centroid_y >= y_first) & (centroid_y <= y_last)]
    info: dict = {"isosurface": {"vertices": int(len(vertices)), "faces": int(len(faces))}}
    if len(faces) == 0:
        raise CortexgraphError(
            "the 0.5 isosurface of the depth field is empty",
            fix="check that the volume has cortex between white matter and background",
        )
    vertices, faces = keep_large_components(
        vertices, faces, min_fraction=params.min_component_fraction
    )
    hemispheres, midline_x, found = _hemispheres(tissue, affine, params, declared)
    info["hemispheres"] = list(hemispheres)
    info["hemispheres_from"] = found.pop("source")
    info["fissure"] = found
    info["midline_x_mm"] = midline_x
    left = hemisphere_faces(vertices, faces, midline_x)
    info["faces_moved_across_plane"] = int(
        (left != (vertices[faces].mean(axis=1)[:, 0] < midline_x)).sum()
    )
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, hemi in enumerate(hemispheres):
        if progress is not None:
            progress("midsurfaces", k, len(hemispheres))
        if len(hemispheres) == 1:
            side = np.ones(len(faces), dtype=bool)
        else:
            side = left if hemi == "lh" else ~left
        v, f = keep_large_components(
            vertices, faces[side], min_fraction=params.min_component_fraction
        )
        hemi_info: dict = {"isosurface_faces": int(side.sum())}
        if len(f) == 0:
            raise CortexgraphError(
                f"hemisphere {hemi} has no midsurface (no cortex on its side of x = {midline_x:.1f} mm)",
                fix="check the tissue masks and the exclusion mask of this hemisphere; a brain of "
                'one hemisphere: declare hemispheres = ["lh"] or ["rh"] in brain.toml',
            )
        v, f = repair_mesh(v, f)
        if params.poisson_depth is not None:
            v, f = poisson_reconstruct(v, f, depth=params.poisson_depth)
            v, f = repair_mesh(v, f)
            hemi_info["poisson_faces"] = int(len(f))
        v, f = remesh_isotropic(v, f, target_edge_mm, iterations=params.remesh_iterations)
        v, f = repair_mesh(v, f)
        v, f = keep_large_components(v, f, min_fraction=params.min_component_fraction)
        hemi_info["before_cleanup"] = mesh_quality(v, f, params.max_spike_ratio or 1.0)
        v, f = _clean_mesh(v, f, params, hemi_info)
        hemi_info.update(mesh_summary(v, f, target_edge_mm))
        hemi_info["quality"] = mesh_quality(v, f, params.max_spike_ratio or 1.0)
        info[hemi] = hemi_info
        meshes[hemi] = (v, f)
    if progress is not None:
        progress("midsurfaces", len(hemispheres), len(hemispheres))
    return meshes, info


def _hemispheres(
    tissue: np.ndarray, affine: np.ndarray, params: BuildGraphParameters, declared
) -> tuple[tuple[str, ...], float, dict]:
    """The hemispheres to build and the plane between them: ``params.hemispheres`` unless
    ``auto``, else brain.toml's (``declared``), else :func:`find_hemispheres`."""
    wanted = params.hemispheres
    if wanted == "auto" and declared is not None:
        wanted = "both" if tuple(declared) == HEMISPHERES else declared[0]
        source = "brain.toml"
    else:
        source = "parameter"
    if wanted == "auto":
        hemispheres, midline, measures = find_hemispheres(
            tissue, affine, params.min_hemisphere_fraction, params.max_fissure_tissue_ratio
        )
        if len(hemispheres) == 1:
            log.warning(
                "found one hemisphere (%.0f%% of the cortex left of the best plane, which cuts "
                "%.0f%% of a typical sagittal plane's tissue): building it as %s. Fix: "
                'declare hemispheres = ["lh"] or ["rh"] in brain.toml (or ["lh", "rh"] if both '
                "are there)",
                100 * measures["cortex_left_fraction"],
                100 * measures["fissure_tissue_ratio"],
                hemispheres[0],
            )
        return hemispheres, midline, {**measures, "source": "found"}
    midline = interhemispheric_x_mm(tissue, affine)
    hemispheres = HEMISPHERES if wanted == "both" else (wanted,)
    return hemispheres, midline, {"source": source}


def _clean_mesh(
    v: np.ndarray, f: np.ndarray, params: BuildGraphParameters, info: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Close small holes and smooth spikes of a remeshed midsurface (parameters
    ``max_hole_edges``, ``max_spike_ratio``), then repair and drop small components again."""
    if params.max_hole_edges >= 3:
        before = len(f)
        v, f = close_small_holes(v, f, params.max_hole_edges)
        info["hole_faces_added"] = int(len(f) - before)
    if params.max_spike_ratio > 0:
        v, spikes = smooth_spikes(v, f, params.max_spike_ratio)
        info["spikes"] = spikes
    v, f = repair_mesh(v, f)
    return keep_large_components(v, f, min_fraction=params.min_component_fraction)


# -- 4. node <-> section points ---------------------------------------------------------------------


def map_hemispheres(
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    stack: SectionStack,
    params: BuildGraphParameters,
    progress: Progress | None = None,
) -> tuple[dict[str, NodeSectionTable], dict]:
    """Node -> section point tables of all hemispheres, mapped in one pass over the sections (both
    hemispheres share each section's midline field)."""
    offsets, all_v, all_f, start = {}, [], [], 0
    for hemi, (v, f) in meshes.items():
        offsets[hemi] = (start, start + len(v))
        all_v.append(v)
        all_f.append(f + start)
        start += len(v)
    vertices, faces = np.vstack(all_v), np.vstack(all_f)
    sections = list(stack.sections)

    def mapping_progress(done: int, total: int) -> None:
        if progress is not None:
            progress("map nodes to sections", done, total)

    table, info = map_nodes_to_sections(
        vertices,
        faces,
        stack,
        sections=sections,
        refine=params.refine,
        max_move_mm=params.max_move_mm,
        min_tissue_share=params.min_tissue_share,
        patch_mm=params.tissue_patch_mm,
        progress=mapping_progress,
    )
    tables = {}
    for hemi, (lo, hi) in offsets.items():
        keep = (table.node >= lo) & (table.node < hi)
        tables[hemi] = NodeSectionTable(
            node=table.node[keep] - lo,
            section=table.section[keep],
            x_mm=table.x_mm[keep],
            y_mm=table.y_mm[keep],
            valid=table.valid[keep],
            moved_mm=table.moved_mm[keep],
        )
        info[hemi] = {
            "nodes": int(hi - lo),
            "nodes_mapped": int(keep.sum()),
            "nodes_valid": int(table.valid[keep].sum()),
        }
    return tables, info


# -- the whole command ------------------------------------------------------------------------------


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)  # NIFTI_XFORM_SCANNER_ANAT: the brain's own mm frame
        image.set_sform(affine, code=1)
        nib.save(image, str(tmp))


def build_graph_stage(brain: Brain) -> StageId:
    """The :class:`~cortexgraph.derivatives.stages.StageId` of build-graph for ``brain``."""
    return StageId("build-graph", brain.id)


def build_graph(
    brain: Brain,
    params: BuildGraphParameters | None = None,
    *,
    overwrite: bool = False,
    check: bool = True,
    qc_picture: bool = True,
    progress: Progress | None = None,
    wait_s: float = 0.0,
) -> dict:
    """Run build-graph for one brain and write its outputs (module docstring).

    The outputs are reused when the stage record's key matches: same parameters, same code version,
    same manifest values and the same tissue masks, transforms and exclusion mask
    (:mod:`cortexgraph.derivatives`); otherwise everything is recomputed and the report says why.

    Parameters
    ----------
    brain : the brain (``cortexgraph.data.manifest.find_brain``).
    params : every parameter (defaults: :class:`BuildGraphParameters`).
    overwrite : recompute even when the outputs are current.
    check : run ``cortexgraph check`` first and stop on the first problem.
    qc_picture : draw ``qc/build-graph.png``.
    progress : optional callable ``(stage, done, total)``.
    wait_s : how long to wait when another process builds this brain (then StageBusyError).

    Returns
    -------
    The report written to ``qc/build-graph.json`` (per-stage measurements and seconds), plus
    ``"reused"`` (bool), ``"why"`` (why it was recomputed) and ``"key"`` (the stage key).
    """
    params = params or BuildGraphParameters()
    if check:  # before anything is written: bad input leaves the derivatives folder untouched
        problems = check_brain(brain)
        if problems:
            first = problems[0]
            raise CortexgraphError(
                f"brain {brain.id} fails check ({len(problems)} problem(s)); first: {first.message}",
                file=first.file,
                section=first.section,
                fix=f"{first.fix}; run `cortexgraph check {brain.id}` for the full list",
            )
    require_build_graph_memory(brain, params)
    outputs = build_graph_outputs(brain)
    if not qc_picture:
        outputs.pop("qc_png")
    manifest_values, input_files = brain_inputs(
        brain, ("mask",), exclusion_mask=params.exclusion in ("auto", "mask")
    )
    store = Derivatives.of(brain)
    with StageRun(
        store,
        build_graph_stage(brain),
        parameters={
            "build_graph": asdict(params),
            "qc_picture": qc_picture,
            "hemispheres_declared": None if brain.hemispheres is None else list(brain.hemispheres),
            **manifest_values,
        },
        inputs=input_files,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return run.summary()
        report = _build(brain, params, outputs, progress=progress)
        run.commit(list(outputs.values()), measured=report)
    return run.summary(report)


def _build(
    brain: Brain,
    params: BuildGraphParameters,
    outputs: dict[str, Path],
    *,
    progress: Progress | None,
) -> dict:
    """The computation of :func:`build_graph` (no reuse decision, no record)."""
    seconds: dict[str, float] = {}
    report: dict = {"brain": brain.id, "parameters": asdict(params)}

    stack = SectionStack(brain)
    start = time.perf_counter()
    tissue, excluded, affine, info = reconstruct_volume(stack, params, progress)
    voxel_mm = float(affine[0, 0])
    report["reconstruct"] = info
    seconds["reconstruct"] = time.perf_counter() - start
    _save_nifti(outputs["tissue"], tissue.astype(np.uint8), affine)
    _save_nifti(outputs["excluded"], excluded.astype(np.uint8), affine)

    start = time.perf_counter()
    if progress is not None:
        progress("laplace depth", 0, 1)
    depth, info = depth_field(tissue, voxel_mm, params)
    report["laplace"] = info
    seconds["laplace"] = time.perf_counter() - start
    _save_nifti(outputs["depth"], depth.astype(np.float32), affine)
    if progress is not None:
        progress("laplace depth", 1, 1)

    start = time.perf_counter()
    target_edge_mm = params.target_edge_mm or voxel_mm
    meshes, info = midsurfaces(
        depth, tissue, affine, params, target_edge_mm, progress, declared=brain.hemispheres
    )
    report["midsurfaces"] = info
    for hemi in HEMISPHERES:  # files of a hemisphere the brain does not hold (any more)
        if hemi not in meshes:
            for key in ("gii", "ply", "graph", "nodes"):
                stale = outputs.pop(f"{key}_{hemi}", None)
                if stale is not None:
                    stale.unlink(missing_ok=True)
    report["target_edge_mm"] = target_edge_mm
    seconds["midsurfaces"] = time.perf_counter() - start

    start = time.perf_counter()
    tables, info = map_hemispheres(meshes, stack, params, progress)
    report["mapping"] = info
    seconds["mapping"] = time.perf_counter() - start

    start = time.perf_counter()
    for hemi, (v, f) in meshes.items():
        write_gifti_surface(
            outputs[f"gii_{hemi}"], v, f, structure=STRUCTURES[hemi], secondary="MidThickness"
        )
        write_ply(outputs[f"ply_{hemi}"], v, f)
        tables[hemi].write(outputs[f"nodes_{hemi}"])
        save_graph_h5(
            outputs[f"graph_{hemi}"], v, f, **node_arrays_from_table(tables[hemi], len(v))
        )
    seconds["write"] = time.perf_counter() - start

    if "qc_png" in outputs:
        from cortexgraph.mapping.qc import build_graph_qc_figure

        start = time.perf_counter()
        build_graph_qc_figure(outputs["qc_png"], stack, meshes, tables, title=brain.id)
        seconds["qc_picture"] = time.perf_counter() - start
    report["seconds"] = seconds | {"total": float(sum(seconds.values()))}
    write_json_atomic(outputs["qc_json"], report)
    return report
