"""Steps 2 and 3 of build-graph: the Laplace depth in the cortex and the midsurface of each hemisphere.

:func:`depth_field` solves the Laplace equation in the cortex (0 pial, 1 white; zero flux at the cut
ends of the stack); :func:`midsurfaces` takes its 0.5 isosurface, splits it at the interhemispheric
fissure (:mod:`cortexgraph.reconstruct.hemispheres`), repairs, optionally Poisson-reconstructs,
remeshes to the target edge length and cleans each hemisphere's mesh. Arrays in, arrays out.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage

from cortexgraph.build_graph.parameters import HEMISPHERES, BuildGraphParameters, Progress
from cortexgraph.errors import CortexgraphError
from cortexgraph.meshes.isosurface import extract_isosurface
from cortexgraph.meshes.laplace import solve_laplace_depth
from cortexgraph.meshes.repair import (
    close_small_holes,
    hemisphere_faces,
    keep_large_components,
    mask_clusters,
    mesh_quality,
    poisson_reconstruct,
    remesh_isotropic,
    repair_mesh,
    smooth_spikes,
)
from cortexgraph.reconstruct.clean import (
    GRAY,
    WHITE,
    automatic_noncortical_mask,
)
from cortexgraph.reconstruct.hemispheres import find_hemispheres, interhemispheric_x_mm

log = logging.getLogger(__name__)

#: isosurface size (faces) from which :func:`midsurfaces` remeshes the two hemispheres in two
#: processes by default (a whole brain at 0.3 mm has about 4 M; the demo slab about 0.2 M)
PARALLEL_MIN_FACES = 1_000_000

#: :func:`noncortical_pieces` reports a group of connected midsurface nodes in gray matter too thick
#: to be cortex from this share of the hemisphere's nodes (on the demo phantom no node of a true
#: cortical sheet lies there; sheets through a cerebellum that a misplaced exclusion mask left in
#: had 1200-2500 of about 20 000 nodes there)
NONCORTICAL_PIECE_SHARE = 0.005


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
    workers: int | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """The remeshed midsurface of each hemisphere (``{"lh": (v, f), "rh": (v, f)}``, world mm;
    one entry for a brain of one hemisphere: ``declared`` from brain.toml, the parameter, or
    :func:`find_hemispheres`).

    Voxels outside the cortex take the value of their side (white 1, elsewhere 0) so the 0.5 level
    closes against them instead of leaving holes at NaN cells; only marching-cubes cells with a cortex
    corner take part. Each hemisphere's mesh is repaired, remeshed, cleaned (small holes closed,
    spikes smoothed, components under ``min_component_fraction`` of the largest dropped) and
    measured (:func:`cortexgraph.meshes.repair.mesh_quality`: components, genus, boundary edges
    and loops, curvature, spikes; ``before_cleanup`` and ``quality`` in the report), by
    :func:`hemisphere_midsurface`; ``workers`` hemispheres at once in worker processes (default:
    2 when the isosurface has at least ``PARALLEL_MIN_FACES`` faces, else 1; the meshes do not
    depend on it).
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
    sides = {
        hemi: np.ones(len(faces), dtype=bool)
        if len(hemispheres) == 1
        else (left if hemi == "lh" else ~left)
        for hemi in hemispheres
    }

    jobs = [
        (vertices, faces[sides[hemi]], hemi, params, target_edge_mm, midline_x)
        for hemi in hemispheres
    ]
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if progress is not None:
        progress("midsurfaces", 0, len(hemispheres))
    if workers is None:  # a pool's start-up (~2 s) pays off only on large meshes
        workers = 2 if len(faces) >= PARALLEL_MIN_FACES else 1
    workers = max(1, min(int(workers), len(hemispheres)))
    if workers == 1:
        results = (hemisphere_midsurface(*job) for job in jobs)
    else:
        # processes, not threads: PyMeshLab is not safe to call from two threads at once (heap
        # corruption seen at exit); spawned, so no lock of this process is inherited. Each
        # hemisphere's result does not depend on where it is computed.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = (
            future.result() for future in [pool.submit(hemisphere_midsurface, *job) for job in jobs]
        )
    try:
        for k, (hemi, (v, f, hemi_info)) in enumerate(zip(hemispheres, results, strict=True)):
            info[hemi] = hemi_info
            meshes[hemi] = (v, f)
            if progress is not None:
                progress("midsurfaces", k + 1, len(hemispheres))
    except BaseException:
        if workers > 1:  # Ctrl-C, SIGTERM, an error: end the other hemisphere's remeshing now
            _stop_process_pool(pool)
        raise
    if workers > 1:
        pool.shutdown()
    return meshes, info


def _stop_process_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate a process pool's workers and shut it down without waiting for their tasks.

    ``ProcessPoolExecutor.shutdown`` waits for running tasks (a whole hemisphere's remeshing, minutes);
    Python 3.14 has ``terminate_workers`` for this, older versions only the pool's process table."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def hemisphere_midsurface(
    vertices: np.ndarray,
    faces: np.ndarray,
    hemi: str,
    params: BuildGraphParameters,
    target_edge_mm: float,
    midline_x: float = float("nan"),
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One hemisphere's midsurface from its faces of the 0.5 isosurface (world mm): small
    components dropped, repaired, optionally Poisson-reconstructed, remeshed to
    ``target_edge_mm``, cleaned (:func:`_clean_mesh`) and measured. Returns ``(vertices, faces,
    info)``; CortexgraphError when no face is left (``midline_x``, mm, only names the plane)."""
    v, f = keep_large_components(vertices, faces, min_fraction=params.min_component_fraction)
    hemi_info: dict = {"isosurface_faces": int(len(faces))}
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
    return v, f, hemi_info


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
                "found one hemisphere (%.0f%% of the cortex left of the best plane, which holds "
                "%.0f%% of the tissue of the larger planes on its two sides; two hemispheres need "
                "a valley, at most %.0f%%): building it as %s. Fix: "
                'declare hemispheres = ["lh"] or ["rh"] in brain.toml (or ["lh", "rh"] if both '
                "are there)",
                100 * measures["cortex_left_fraction"],
                100 * measures["fissure_tissue_ratio"],
                100 * params.max_fissure_tissue_ratio,
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


# -- 3b. check ---------------------------------------------------------------------------------------


def noncortical_pieces(
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    tissue: np.ndarray,
    excluded: np.ndarray,
    affine: np.ndarray,
    max_cortex_thickness_mm: float,
    min_share: float = NONCORTICAL_PIECE_SHARE,
) -> dict[str, list[dict]]:
    """Midsurface nodes that lie in gray matter too thick to be cortex.

    An exclusion mask removes non-cortical gray matter (cerebellum, deep nuclei) in world mm; when it
    does not match the reconstruction (drawn on a reconstruction made with other transforms, or from
    another brain), gray matter it should remove stays in, and build-graph puts a midsurface sheet
    through it. This finds such sheets: the thickness criterion of the automatic exclusion
    (:func:`~cortexgraph.reconstruct.clean.automatic_noncortical_mask`, without growth) on the
    volume before exclusion, restricted to the gray matter that was kept, and the groups of
    connected midsurface nodes in it (:func:`~cortexgraph.meshes.repair.mask_clusters`), summed
    per connected piece of the midsurface, whether the sheet is a piece of its own or joined to the
    cortex.

    Parameters
    ----------
    meshes : {hemisphere: (vertices world mm, faces)}.
    tissue : uint8 (X, Y, Z) after exclusion (0 background, 1 white, 2 gray); excluded : bool, the
        gray matter removed; affine : 4x4 voxel -> world mm.
    max_cortex_thickness_mm : the automatic criterion's thickness.
    min_share : report a piece when at least this share of the hemisphere's nodes lie in thick
        gray matter in it.

    Returns
    -------
    {hemisphere: [{``vertices`` (nodes in thick gray matter), ``clusters`` (connected groups of
    them), ``bbox_mm`` (their world box), ``component_vertices`` (nodes of the piece),
    ``mesh_vertices`` (nodes of the hemisphere)}, largest first]} for the hemispheres with such
    pieces (empty when none).
    """
    before = tissue.copy()
    before[excluded] = GRAY
    voxel_mm = float(affine[0, 0])
    thick = automatic_noncortical_mask(before, voxel_mm, max_cortex_thickness_mm, 0.0)
    thick &= tissue == GRAY
    if not thick.any():
        return {}
    found: dict[str, list[dict]] = {}
    for hemi, (vertices, faces) in meshes.items():
        by_component: dict[int, list[dict]] = {}
        for cluster in mask_clusters(vertices, faces, thick, affine):
            by_component.setdefault(cluster["component"], []).append(cluster)
        pieces = []
        for clusters in by_component.values():
            nodes = sum(c["vertices"] for c in clusters)
            if nodes < min_share * len(vertices):
                continue
            lo = np.min([c["bbox_mm"][0] for c in clusters], axis=0)
            hi = np.max([c["bbox_mm"][1] for c in clusters], axis=0)
            pieces.append(
                {
                    "vertices": int(nodes),
                    "clusters": len(clusters),
                    "bbox_mm": [[float(x) for x in lo], [float(x) for x in hi]],
                    "component_vertices": clusters[0]["component_vertices"],
                    "mesh_vertices": int(len(vertices)),
                }
            )
        if pieces:
            found[hemi] = sorted(pieces, key=lambda c: -c["vertices"])
    return found
