"""benchmarks/bench_lsm_iterations.py (local-model orderings per training budget) on synthetic
results: the run names, the harness's commands, the claims scored per iteration count and the
page. Numbers exact to 1e-3 (the page prints 3 digits)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_lsm_iterations")


def _volumes(lsm_ms_mm3: float) -> dict:
    """B01's hOc1: exact 1000 mm^3, the true labels' map 990, the LSM-MS map ``lsm_ms_mm3``."""
    return {"B01": {"exact": {"both": 1000.0}, "truth": {"both": 990.0},
                    "lsm-ms": {"both": lsm_ms_mm3}}}  # fmt: skip


def _scores(lsm: float, gsm: float, lsm_sd: float = 0.05, gsm_sd: float = 0.1) -> dict:
    """Every architecture alike: LSM median ``lsm``, GSM median ``gsm`` (truth = median - 0.01)."""
    out = {}
    for kind, median, sd in (("lsm", lsm, lsm_sd), ("gsm", gsm, gsm_sd)):
        for arch in ("hr", "lr", "ms"):
            out[f"{kind}-{arch}"] = {"n": 9, "median": median, "mean": median, "std": sd,
                                     "truth_n": 40, "truth_median": median - 0.01,
                                     "truth_mean": median - 0.01}  # fmt: skip
    return out


def test_run_names_reuse_the_harness_runs_at_its_own_count(bench):
    assert bench.run_names(150, 150)["lsm-ms"] == "lsm-ms"
    names = bench.run_names(600, 150)
    assert names["gsm-hr"] == "gsm-hr-i600" and len(names) == 6
    commands = bench.lsm_commands(Path("c"), 3, 600, names, "hOc1", "auto")
    stats = [c for c in commands if c[0] == "stats"]
    assert [c[c.index("--labels") + 1] for c in stats] == ["truth", "lsm-ms-i600"]
    commands = [c for c in commands if c[0] != "stats"]
    chains = [c for c in commands if c[:2] == ["lsm", "chain"]]
    assert len(chains) == 3 and all("--allow-long-intervals" in c for c in chains)
    assert commands[-1][:2] == ["lsm", "evaluate"] and "lsm-ms-i600" in commands[-1][-3]
    first = chains[0]
    assert (
        first[first.index("--iterations") + 1] == "600" and first[first.index("--seed") + 1] == "3"
    )


def test_claims_per_iteration_count_and_page(bench):
    results = {
        "s1-a11": {"150": {"lsm": _scores(0.80, 0.85), "volumes": _volumes(800.0), "seconds": 30.0},
                   "600": {"lsm": _scores(0.90, 0.85), "volumes": _volumes(960.0), "seconds": 120.0}},
        "s2-a11": {"150": {"lsm": _scores(0.82, 0.84), "volumes": _volumes(1200.0), "seconds": 31.0},
                   "600": {"lsm": _scores(0.88, 0.84), "volumes": _volumes(1020.0), "seconds": 118.0}},
    }  # fmt: skip
    info = {"command": "x", "machine": "m", "load_min": 1.0, "load_max": 2.0, "minutes": 5.0,
            "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, [150, 600], info)
    row = next(line for line in page.splitlines() if line.startswith("| the worst LSM beats"))
    # worst LSM - best GSM (truth): 150 it. -0.05 and -0.02 (mean -0.035, s.d. 0.021);
    # 600 it. +0.05 and +0.04
    assert "-0.035 ± 0.021 (0/2)" in row and "0.045 ± 0.007 (2/2)" in row
    row = next(line for line in page.splitlines() if line.startswith("| LSM-MS |"))
    assert row.startswith("| LSM-MS | 0.810 ± 0.014 / 0.800 ± 0.014 / 0.050 ± 0.000 |")
    assert "| s2-a11 | 31 | 118 |" in page
    # LSM-MS volume errors: 150 it. -20 % and +20 %; 600 it. -4 % and +2 %
    row = next(line for line in page.splitlines() if line.startswith("| LSM-MS hOc1 volume"))
    assert row == "| LSM-MS hOc1 volume error (B01) | 0.0 ± 28.3 % | -1.0 ± 4.2 % |"
    row = next(line for line in page.splitlines() if "LSM-MS maps within a few %" in line)
    # 7 - |error|: 150 it. -13 and -13; 600 it. +3 and +5
    assert "-13.000 ± 0.000 (0/2)" in row and "4.000 ± 1.414 (2/2)" in row
