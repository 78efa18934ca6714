"""Step 4 of build-graph: the node <-> section point tables of all hemispheres (one pass over the
sections, :func:`cortexgraph.mapping.nodes.map_nodes_to_sections`)."""


from __future__ import annotations

import logging

import numpy as np

from cortexgraph.build_graph.parameters import BuildGraphParameters, Progress
from cortexgraph.data.stack import SectionStack
from cortexgraph.mapping.nodes import (
    NodeSectionTable,
    map_nodes_to_sections,
)

log = logging.getLogger(__name__)


# -- 4. node <-> section points ---------------------------------------------------------------------


def map_hemispheres(
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    stack: SectionStack,
    params: BuildGraphParameters,
    progress: Progress | None = None,
    workers: int = 1,
) -> tuple[dict[str, NodeSectionTable], dict]:
    """Node -> section point tables of all hemispheres, mapped in one pass over the sections (both
    hemispheres share each section's midline field), ``workers`` sections at once."""
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
        workers=workers,
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
