"""``cortexgraph build-graph <brain>``: sections -> volume -> depth -> midsurfaces -> graphs -> node points.

One module per step, arrays in and arrays out; :mod:`.stage` is the file-level stage that chains them
and writes the outputs (listed in its docstring) under the stage contract.

=================  ============================================================================
module             what it does
=================  ============================================================================
:mod:`.parameters` :class:`BuildGraphParameters`, every parameter of the stage
:mod:`.volume`     step 1: stacked and cleaned tissue volume (:func:`reconstruct_volume`)
:mod:`.surfaces`   steps 2-3: Laplace depth (:func:`depth_field`), midsurfaces (:func:`midsurfaces`)
:mod:`.nodes`      step 4: node <-> section point tables (:func:`map_hemispheres`)
:mod:`.stage`      the stage: :func:`build_graph`, its outputs, its record
:mod:`.accuracy`   QC against a phantom's ground truth (only where a cohort has one)
=================  ============================================================================
"""

from cortexgraph.build_graph.nodes import map_hemispheres
from cortexgraph.build_graph.parameters import HEMISPHERES, BuildGraphParameters
from cortexgraph.build_graph.stage import build_graph, build_graph_outputs, build_graph_stage
from cortexgraph.build_graph.surfaces import depth_field, mesh_summary, midsurfaces
from cortexgraph.build_graph.volume import (
    exclusion_mask_volume,
    reconstruct_volume,
    stacked_volume,
)

__all__ = [
    "HEMISPHERES",
    "BuildGraphParameters",
    "build_graph",
    "build_graph_outputs",
    "build_graph_stage",
    "depth_field",
    "exclusion_mask_volume",
    "map_hemispheres",
    "mesh_summary",
    "midsurfaces",
    "reconstruct_volume",
    "stacked_volume",
]
