"""Parameters of build-graph: one frozen dataclass, validated on creation, recorded in the stage record."""


from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cortexgraph.derivatives.parameters import (
    check_fields,
    field_errors,
    integers,
    numbers,
    one_of,
)

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
        :func:`~cortexgraph.reconstruct.hemispheres.find_hemispheres`), ``both``, ``lh`` or ``rh`` (a brain of one hemisphere).
    min_hemisphere_fraction, max_fissure_tissue_ratio : when found, two hemispheres need at least this
        share of the cortex on each side of the fissure plane, and the plane must lie in a valley of
        the tissue per sagittal plane: at most this share of the larger planes on either side
        (:func:`~cortexgraph.reconstruct.hemispheres.fissure_dip`; one hemisphere has no valley).
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
    max_fissure_tissue_ratio: float = 0.8
    max_hole_edges: int = 30
    max_spike_ratio: float = 1.0

    def __post_init__(self) -> None:
        bad = field_errors(self, "build-graph")
        check_fields(self, bad, _RULES)


#: the fields of :class:`BuildGraphParameters` that are shares (of the largest component, ...)
_SHARES = (
    "min_tissue_fraction", "min_cortex_fraction", "min_component_fraction", "min_tissue_share",
    "min_hemisphere_fraction", "max_fissure_tissue_ratio",
)  # fmt: skip
#: the ranges of :class:`BuildGraphParameters` (checked by
#: :func:`~cortexgraph.derivatives.parameters.check_fields`)
_RULES = (
    ("exclusion", one_of(("auto", "mask", "automatic", "none"))),
    ("isosurface_method", one_of(("flying_edges", "lewiner"), "flying_edges or lewiner")),
    ("hemispheres", one_of(("auto", "both", "lh", "rh"))),
    (("voxel_size_mm", "target_edge_mm"), numbers(0, low_open=True).or_none("a finite number > 0")),
    (
        ("max_cortex_thickness_mm", "laplace_tol", "max_move_mm", "tissue_patch_mm"),
        numbers(0, low_open=True),
    ),
    (("exclusion_grow_mm", "min_defect_mm3", "max_spike_ratio"), numbers(0)),
    (_SHARES, numbers(0, 1, high_open=True)),
    (("max_gap_planes", "laplace_max_iter", "remesh_iterations", "max_hole_edges"), integers(0)),
    ("laplace_max_iter", integers(1)),
    ("poisson_depth", integers(4, 14).or_none("an integer in 4..14, or none")),
)
