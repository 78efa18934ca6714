"""The phantom as yardstick: how close build-graph comes to the ground truth.

Measures, for one brain of a phantom cohort (ground truth in ``<cohort>/ground_truth/<brain>/``):

- midsurface distance: exact distance from every vertex of the built midsurface to the true midsurface
  of the same hemisphere (:func:`cortexgraph.meshes.distance.point_mesh_distance`), in mm;
- mapped points in cortex: share of valid mapped points whose pixel carries a true area label (the true
  labels cover exactly the cortex of each section);
- automatic exclusion: on the cleaned, stacked volume, the share of the true non-cortical gray matter
  (the phantom's exact exclusion mask) that the automatic criterion removes, and the share of cortex it
  removes by mistake;
- edges within +-30% of the target length (from the build-graph report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import nibabel as nib
import numpy as np
from scipy import ndimage

from cortexgraph.build_graph import (
    HEMISPHERES,
    BuildGraphParameters,
    build_graph_outputs,
    build_graph_stage,
    exclusion_mask_volume,
    stacked_volume,
)
from cortexgraph.data.manifest import Brain
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives
from cortexgraph.errors import CortexgraphError
from cortexgraph.mapping.nodes import NodeSectionTable
from cortexgraph.meshes.distance import point_mesh_distance
from cortexgraph.meshes.io import read_gifti_surface
from cortexgraph.reconstruct.clean import GRAY, automatic_noncortical_mask

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

__all__ = [
    "truth_folder",
    "exclusion_accuracy",
    "build_graph_accuracy",
    "write_build_graph_accuracy",
]


def truth_folder(brain: Brain) -> Path | None:
    """``<cohort>/ground_truth/<brain>`` if the brain belongs to a phantom cohort, else None."""
    folder = brain.ground_truth
    return folder if (folder / "midsurface_lh.gii").is_file() else None


def exclusion_accuracy(
    tissue: np.ndarray,
    removed: np.ndarray,
    truth_noncortical: np.ndarray,
    voxel_size_mm: float,
    tolerance_mm: float = 0.0,
) -> dict[str, float]:
    """Shares of the true non-cortical gray matter removed and of the cortex removed by mistake.

    ``tissue``: classes before exclusion; ``removed``, ``truth_noncortical``: bool masks on its grid.
    With ``tolerance_mm`` > 0 the cortex share is also given for the cortex farther than that from the
    true non-cortical gray matter (``cortex_removed_beyond_tolerance``): the true mask has its own voxel
    size, so which side of the border a voxel next to it belongs to is not known better than that.
    """
    gray = tissue == GRAY
    noncortical = gray & truth_noncortical
    cortex = gray & ~truth_noncortical
    result = {
        "voxels_noncortical": int(noncortical.sum()),
        "voxels_cortex": int(cortex.sum()),
        "noncortical_removed": float((removed & noncortical).sum() / max(noncortical.sum(), 1)),
        "cortex_removed": float((removed & cortex).sum() / max(cortex.sum(), 1)),
    }
    if tolerance_mm > 0:
        far = ndimage.distance_transform_edt(~noncortical, sampling=voxel_size_mm) > tolerance_mm
        inner = cortex & far
        result["tolerance_mm"] = tolerance_mm
        result["cortex_removed_beyond_tolerance"] = float(
            (removed & inner).sum() / max(inner.sum(), 1)
        )
    return result


def _points_in_cortex(table: NodeSectionTable, labels_folder: Path) -> tuple[int, int]:
    inside = total = 0
    for s in np.unique(table.section[table.valid]):
        pick = table.valid & (table.section == s)
        path = labels_folder / f"s{int(s):04d}.h5"
        if not path.is_file():
            continue
        raster = Raster(path)
        labels = raster.read_level(0)
        spacing_mm = raster.spacing_um / 1000.0
        rows = np.clip((table.y_mm[pick] / spacing_mm).astype(np.int64), 0, labels.shape[0] - 1)
        cols = np.clip((table.x_mm[pick] / spacing_mm).astype(np.int64), 0, labels.shape[1] - 1)
        inside += int((labels[rows, cols] > 0).sum())
        total += int(pick.sum())
    return inside, total


def build_graph_accuracy(brain: Brain, truth: Path | None = None) -> dict:
    """Accuracy of the build-graph outputs of ``brain`` against its phantom ground truth.

    Needs current outputs of :func:`cortexgraph.build_graph.build_graph` (their stage record is
    required; the parameters of the automatic-exclusion comparison are the ones that record holds).
    Returns a dict per hemisphere (distance mean / median / p95 in mm, share of points in cortex, edges
    within +-30%), the automatic exclusion's shares, and ``build_graph_key``.
    """
    record = Derivatives.of(brain).require(build_graph_stage(brain))
    params = BuildGraphParameters(**record.parameters["build_graph"])
    truth = truth or truth_folder(brain)
    if truth is None:
        raise CortexgraphError(
            f"brain {brain.id} has no phantom ground truth",
            file=brain.ground_truth,
            fix="accuracy can only be measured on a cohort made by `cortexgraph synth`",
        )
    outputs = build_graph_outputs(brain)
    report = json.loads(outputs["qc_json"].read_text())
    target = float(report["target_edge_mm"])
    result: dict = {"brain": brain.id, "target_edge_mm": target, "build_graph_key": record.key}
    for hemi in report["midsurfaces"].get("hemispheres", HEMISPHERES):
        built_v, _ = read_gifti_surface(outputs[f"gii_{hemi}"])
        true_v, true_f = read_gifti_surface(truth / f"midsurface_{hemi}.gii")
        distance = point_mesh_distance(built_v, true_v, true_f)
        inside, total = _points_in_cortex(
            NodeSectionTable.read(outputs[f"nodes_{hemi}"]), truth / "labels"
        )
        result[hemi] = {
            "distance_mm_mean": float(distance.mean()),
            "distance_mm_median": float(np.median(distance)),
            "distance_mm_p95": float(np.percentile(distance, 95)),
            "valid_points": total,
            "valid_points_in_cortex": float(inside / max(total, 1)),
            "edges_within_30pct": float(report["midsurfaces"][hemi]["edges_within_30pct"]),
        }
    if brain.exclusion_mask:
        stack = SectionStack(brain)
        cleaned, affine, _ = stacked_volume(stack, params)
        automatic = automatic_noncortical_mask(
            cleaned, float(affine[0, 0]), params.max_cortex_thickness_mm, params.exclusion_grow_mm
        )
        true_mask = exclusion_mask_volume(brain, cleaned.shape, affine)
        image = cast("SpatialImage", nib.load(str(brain.path(brain.exclusion_mask))))
        mask_voxel_mm = float(np.abs(np.linalg.det(image.affine[:3, :3])) ** (1 / 3))
        result["automatic_exclusion"] = exclusion_accuracy(
            cleaned,
            automatic & (cleaned == GRAY),
            true_mask,
            float(affine[0, 0]),
            tolerance_mm=max(mask_voxel_mm, float(affine[0, 0])),
        )
    return result


def write_build_graph_accuracy(brain: Brain) -> dict:
    """:func:`build_graph_accuracy`, also written to ``<brain>/qc/build-graph-accuracy.json``.

    The file names the build-graph key it was measured on; a file of the current key is reused.
    """
    from cortexgraph.outputs import write_json_atomic

    path = build_graph_outputs(brain)["qc_json"].with_name("build-graph-accuracy.json")
    key = Derivatives.of(brain).require(build_graph_stage(brain)).key
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
        if previous.get("build_graph_key") == key:
            return previous
    accuracy = build_graph_accuracy(brain)
    write_json_atomic(path, accuracy)
    return accuracy
