"""benchmarks/bench_gnn_epochs.py (GNN orderings per training budget) on synthetic results: the
claims it scores per epoch count and the page. Numbers exact to 1e-3 (the page prints 3 digits)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_gnn_epochs")


def _depth_result(gat: float, sage: float, mlp: float, linear: float) -> dict:
    """Test F1 of the depth comparison: every depth alike, transfer = test - 0.1."""
    gnn = {"Linear-CY": linear}
    for d in (3, 5, 7):
        gnn.update({f"GAT{d}-CY": gat, f"SAGE{d}-CY": sage, f"MLP{d}-CY": mlp})
    return {k: {"run": k, "test_f1": v, "transfer_f1": v - 0.1} for k, v in gnn.items()}


def test_claims_per_epoch_count_and_page(bench):
    results = {
        "s1-a11": {
            "6": {"gnn": _depth_result(0.3, 0.5, 0.2, 0.25), "seconds": 10.0},
            "100": {"gnn": _depth_result(0.8, 0.7, 0.4, 0.5), "seconds": 100.0},
        },
        "s2-a11": {
            "6": {"gnn": _depth_result(0.4, 0.5, 0.3, 0.35), "seconds": 12.0},
            "100": {"gnn": _depth_result(0.9, 0.7, 0.5, 0.6), "seconds": 90.0},
        },
    }
    claims = bench.gnn_claims_for(["depth"])
    assert {c.key for c in claims} == {
        "gnn-gnn-beats-mlp-depth", "gnn-mlp-not-above-linear", "gnn-gat-above-sage",
        "gnn-gat-stable-depth",
    }  # fmt: skip
    info = {"command": "x", "machine": "m", "load_min": 1.0, "load_max": 2.0, "minutes": 3.5,
            "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, [6, 100], ["depth"], info)
    row = next(line for line in page.splitlines() if line.startswith("| GAT is above SAGE"))
    # GAT - SAGE: 6 epochs -0.2 and -0.1 (mean -0.15, s.d. 0.071); 100 epochs +0.1 and +0.2
    assert "-0.150 ± 0.071 (0/2)" in row and "0.150 ± 0.071 (2/2)" in row
    row = next(line for line in page.splitlines() if line.startswith("| GAT3-CY |"))
    assert row == "| GAT3-CY | 0.350 ± 0.071 | 0.850 ± 0.071 |"
    assert "| s1-a11 | 10 | 100 |" in page
