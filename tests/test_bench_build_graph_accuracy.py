"""benchmarks/bench_build_graph_accuracy.py (build-graph accuracy per phantom variant) on synthetic
accuracy files: the summary over brains, hemispheres and seeds, the page, and the refusal of an
unknown variant. Numbers exact to the digits the page prints."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_build_graph_accuracy")


def _accuracy(lh: float, rh: float, cortex_removed: float) -> dict:
    hemi = lambda d: {  # noqa: E731
        "distance_mm_mean": d, "distance_mm_median": d, "distance_mm_p95": 2 * d,
        "valid_points": 100, "valid_points_in_cortex": 0.99, "edges_within_30pct": 0.987,
    }  # fmt: skip
    return {
        "lh": hemi(lh),
        "rh": hemi(rh),
        "automatic_exclusion": {"cortex_removed": cortex_removed, "noncortical_removed": 0.98},
    }


def test_summary_and_page(bench):
    results = {
        "default-s0": {"accuracy": {"B01": _accuracy(0.1, 0.2, 0.05)}, "seconds": 60.0},
        "default-s1": {"accuracy": {"B01": _accuracy(0.3, 0.4, 0.07)}, "seconds": 70.0},
        "harder-s0": {
            "accuracy": {"B01": _accuracy(3.1, 0.5, 0.10)},
            "warned": {"B01": ["lh"]},
            "seconds": 80.0,
        },
    }
    s = bench.variant_summary(results, ["default-s0", "default-s1"])
    # four hemispheres: 0.1, 0.2, 0.3, 0.4 -> mean 0.25, s.d. 0.1291; two brains for the exclusion
    assert s["distance_mm_mean"][0] == pytest.approx(0.25)
    assert s["distance_mm_mean"][1] == pytest.approx(0.129099, abs=1e-6)
    assert s["distance_mm_mean"][2] == 4
    assert s["cortex_removed_pct"][:2] == pytest.approx((6.0, 1.414214), abs=1e-6)
    info = {"command": "x", "preset": "tiny", "machine": "m", "load_min": 1.0, "load_max": 2.0,
            "minutes": 3.5, "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, ["default", "distorted", "harder"], [0, 1], info)
    row = next(line for line in page.splitlines() if line.startswith("| default |"))
    assert (
        "| 0, 1 | 0.250 ± 0.129 | 0.400 | 0.50 ± 0.26 | 99.0 ± 0.0 | 0 of 4 | 6.00 ± 1.41 |" in row
    )
    row = next(line for line in page.splitlines() if line.startswith("| harder |"))
    # lh 3.1, rh 0.5: mean 1.8, s.d. 1.838; the warned lh counted
    assert "| 0 | 1.800 ± 1.838 | 3.100 | 3.60 ± 3.68 | 99.0 ± 0.0 | 1 of 2 |" in row
    assert not any(line.startswith("| distorted |") for line in page.splitlines())  # not run
    row = next(line for line in page.splitlines() if line.startswith("| default-s1 | B01 |"))
    assert "| 0.300 / 0.400 | 0.60 / 0.80 | 100 / 100 | 99.0 / 99.0 | 98.7 / 98.7 | - |" in row
    row = next(line for line in page.splitlines() if line.startswith("| harder-s0 | B01 |"))
    assert row.endswith("| lh |")


def test_unknown_variant_is_refused(bench, tmp_path):
    with pytest.raises(
        SystemExit, match="choose from default, distorted, harder, harder-automatic"
    ):
        bench.main([str(tmp_path / "out"), "--variants", "default,warped"])
    assert not (tmp_path / "out").exists()
