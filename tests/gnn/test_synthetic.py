"""Synthetic graph cohorts (cortexgraph.gnn.synthetic): graph files and node arrays in the cohort
layout that train-gnn reads."""

from __future__ import annotations

from cortexgraph.derivatives import Derivatives
from cortexgraph.gnn.data import feature_dims, graph_items
from cortexgraph.gnn.synthetic import write_synthetic_cohort


def test_synthetic_cohort_layout(tmp_path):
    root = write_synthetic_cohort(
        tmp_path / "c", ("B01", "B07"), rows=6, cols=5, num_areas=3, cy_dim=8, pm_dim=5
    )
    assert root == tmp_path / "c"
    store = Derivatives(root)
    items = graph_items(store, ["B01", "B07"])
    assert [i.key for i in items] == ["B01/lh", "B01/rh", "B07/lh", "B07/rh"]
    dims = feature_dims(store, items[0], ("cy", "pm", "co"), "synthetic")
    assert dims == {"cy": 8, "pm": 5, "co": 3}
