"""``cortexgraph build-graph <brain>``: sections -> volume -> depth -> midsurfaces -> graphs -> node points.

The steps of the graph method of Schiffer et al. 2021, MICCAI (Schiffer, PhD thesis, Sect. 7.1.1,
Figs. 7.1-7.4), each in a module of its own:

1. :func:`~.volume.reconstruct_volume`: stack the tissue masks with the rigid transforms composed to
   the central base section, fill defects (median along y), drop detached tissue, remove non-cortical
   gray matter (the brain's exclusion mask when it has one, the automatic thickness criterion
   otherwise).
2. :func:`~.surfaces.depth_field` (meshes/laplace): Laplace depth in the cortex, 0 pial, 1 white.
3. :func:`~.surfaces.midsurfaces` (meshes/): the 0.5 isosurface, small components removed, split into
   hemispheres at the interhemispheric fissure, repaired, optionally Poisson-reconstructed, remeshed
   to the target edge.
4. :func:`~.nodes.map_hemispheres` (mapping/): the virtual cuts of every section through each
   midsurface, points back on the raw sections, refined to the cortical midline, low-tissue points
   invalid.
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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cortexgraph.build_graph.nodes import map_hemispheres
from cortexgraph.build_graph.parameters import HEMISPHERES, BuildGraphParameters, Progress
from cortexgraph.build_graph.surfaces import depth_field, midsurfaces, noncortical_pieces
from cortexgraph.build_graph.volume import reconstruct_volume, require_build_graph_memory
from cortexgraph.data.check import require_clean
from cortexgraph.data.manifest import Brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives, StageId, StageRun, run_stage
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.mapping.nodes import (
    node_arrays_from_table,
)
from cortexgraph.meshes.graph import save_graph_h5
from cortexgraph.meshes.io import STRUCTURES, write_gifti_surface, write_ply
from cortexgraph.outputs import write_json_atomic, write_nifti_mm
from cortexgraph.resources import usable_cores

log = logging.getLogger(__name__)


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


# -- the whole command ------------------------------------------------------------------------------


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
    workers: int | None = None,
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
    workers : hemispheres remeshed at once, in worker processes (default: 2 for a large brain,
        see :func:`~cortexgraph.build_graph.surfaces.midsurfaces`; at most the usable cores), and
        sections mapped at once, in threads (default: the usable cores). The outputs do not depend
        on it, so it is not part of the stage key.

    Returns
    -------
    The report written to ``qc/build-graph.json`` (per-stage measurements and seconds), plus
    ``"reused"`` (bool), ``"why"`` (why it was recomputed) and ``"key"`` (the stage key).
    """
    params = params or BuildGraphParameters()
    if check:  # before anything is written: bad input leaves the derivatives folder untouched
        require_clean(brain, "build-graph")
    require_build_graph_memory(brain, params)
    outputs = build_graph_outputs(brain)
    if not qc_picture:
        outputs.pop("qc_png")
    manifest_values, input_files = brain_inputs(
        brain, ("mask",), exclusion_mask=params.exclusion in ("auto", "mask")
    )

    def compute(run: StageRun) -> dict:
        report = _build(brain, params, outputs, progress=progress, workers=workers)
        run.commit(list(outputs.values()), measured=report)
        return run.summary(report)

    return run_stage(
        Derivatives.of(brain),
        build_graph_stage(brain),
        compute,
        parameters={
            "build_graph": asdict(params),
            "qc_picture": qc_picture,
            "hemispheres_declared": None if brain.hemispheres is None else list(brain.hemispheres),
            **manifest_values,
        },
        inputs=input_files,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def _build(
    brain: Brain,
    params: BuildGraphParameters,
    outputs: dict[str, Path],
    *,
    progress: Progress | None,
    workers: int | None = None,
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
    write_nifti_mm(outputs["tissue"], tissue.astype(np.uint8), affine)
    write_nifti_mm(outputs["excluded"], excluded.astype(np.uint8), affine)

    start = time.perf_counter()
    if progress is not None:
        progress("laplace depth", 0, 1)
    depth, info = depth_field(tissue, voxel_mm, params)
    report["laplace"] = info
    seconds["laplace"] = time.perf_counter() - start
    write_nifti_mm(outputs["depth"], depth.astype(np.float32), affine)
    if progress is not None:
        progress("laplace depth", 1, 1)

    start = time.perf_counter()
    cores = usable_cores()
    target_edge_mm = params.target_edge_mm or voxel_mm
    meshes, info = midsurfaces(
        depth,
        tissue,
        affine,
        params,
        target_edge_mm,
        progress,
        declared=brain.hemispheres,
        workers=None if workers is None else min(workers, cores),
    )
    report["midsurfaces"] = info
    for hemi in HEMISPHERES:  # files of a hemisphere the brain does not hold (any more)
        if hemi not in meshes:
            for key in ("gii", "ply", "graph", "nodes"):
                stale = outputs.pop(f"{key}_{hemi}", None)
                if stale is not None:
                    stale.unlink(missing_ok=True)
    report["target_edge_mm"] = target_edge_mm
    if report["reconstruct"]["exclusion"]["method"] != "automatic":
        pieces = noncortical_pieces(
            meshes, tissue, excluded, affine, params.max_cortex_thickness_mm
        )
        info["noncortical_pieces"] = pieces
        for hemi, found in pieces.items():
            for piece in found:
                log.warning("%s %s: %s", brain.id, hemi, noncortical_piece_text(piece, params))
    seconds["midsurfaces"] = time.perf_counter() - start

    start = time.perf_counter()
    tables, info = map_hemispheres(
        meshes, stack, params, progress, workers=cores if workers is None else workers
    )
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


def noncortical_piece_text(piece: dict, params: BuildGraphParameters) -> str:
    """The warning for midsurface nodes in gray matter too thick to be cortex
    (:func:`~cortexgraph.build_graph.surfaces.noncortical_pieces`)."""
    lo, hi = piece["bbox_mm"]
    where = ", ".join(f"{axis} {a:.1f}..{b:.1f}" for axis, a, b in zip("xyz", lo, hi, strict=True))
    if params.exclusion == "none":
        fix = "run with --exclusion automatic, or give the brain an exclusion mask"
    else:
        fix = (
            "check that the exclusion mask matches this reconstruction (it is in world mm: a mask "
            "drawn on a reconstruction made with other transforms does not), correct it, or run "
            "with --exclusion automatic"
        )
    return (
        f"{piece['vertices']} of {piece['mesh_vertices']} midsurface nodes (in a piece of "
        f"{piece['component_vertices']} nodes; at {where} mm) lie in gray matter too thick to be "
        f"cortex (more than {params.max_cortex_thickness_mm:g} mm from both the background and the "
        "white matter: cerebellum, deep nuclei?) that the exclusion left in. Fix: " + fix
    )
