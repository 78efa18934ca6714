"""Fixtures of the feature tests: a copy of the tiny phantom with a small trained encoder and graphs.

The graphs are made from the phantom's ground-truth midsurfaces of B01, mapped to every second
section without midline refinement (fast), so that many nodes have no point and get their CY from
their neighbours.
"""

from __future__ import annotations

import shutil

import pytest

#: A short training budget for tests (the tiny preset otherwise).
TEST_OVERRIDES = {"scl_epochs": 8, "linear_epochs": 3, "samples_per_area": 32}


@pytest.fixture(scope="session")
def encoder_overrides() -> dict:
    """The training budget of the test encoder (``TEST_OVERRIDES``)."""
    return dict(TEST_OVERRIDES)


@pytest.fixture(scope="session")
def features_cohort(tiny_cohort, tmp_path_factory):
    """(cohort root, encoder.pt path) of a copy of the tiny phantom with a trained encoder."""
    from cortexgraph.features.train import train_encoder

    root = tmp_path_factory.mktemp("features") / "tiny"
    shutil.copytree(tiny_cohort, root)
    encoder = train_encoder(root, "tiny", device="cpu", seed=0, overrides=TEST_OVERRIDES)
    return root, encoder


@pytest.fixture(scope="session")
def features_graphs(features_cohort):
    """(cohort root, encoder path, {hemi: graph path}) with the graphs of B01 (no features yet),
    recorded as external build-graph outputs."""
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.derivatives import Derivatives, StageId
    from cortexgraph.derivatives.external import record_external
    from cortexgraph.features.nodes import node_arrays_from_table
    from cortexgraph.mapping.nodes import map_nodes_to_sections
    from cortexgraph.meshes.graph import save_graph_h5
    from cortexgraph.meshes.io import read_gifti_surface

    root, encoder = features_cohort
    brain = Cohort.read(root).brain("B01")
    stack = SectionStack(brain)
    graphs = {}
    for hemi in ("lh", "rh"):
        vertices, faces = read_gifti_surface(
            root / "ground_truth" / "B01" / f"midsurface_{hemi}.gii"
        )
        table, _ = map_nodes_to_sections(
            vertices, faces, stack, sections=stack.sections[::2], refine=False
        )
        path = brain.derivatives / "graph" / f"{hemi}.h5"
        save_graph_h5(path, vertices, faces, **node_arrays_from_table(table, len(vertices)))
        graphs[hemi] = path
    stack.close()
    record_external(
        Derivatives.of(brain),
        StageId("build-graph", "B01"),
        graphs.values(),
        {"source": "true midsurfaces, every second section, no refinement"},
    )
    return root, encoder, graphs
