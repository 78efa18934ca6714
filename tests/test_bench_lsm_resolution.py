"""benchmarks/bench_lsm_resolution.py (LR against HR at 100 and 40 µm) on synthetic scores: the
40 µm parameters file gives synth the intended phantom, the patch fields follow the model preset
(HR 4.4 mm at 40 µm, the published field), the commands are the harness's, and the page's numbers
are the mean ± s.d. of the runs (exact to 1e-3, the page's digits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexgraph.derivatives.parameters import resolve_parameters


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_lsm_resolution")


def test_the_fine_phantom_file_and_the_patch_fields(bench, tmp_path):
    from cortexgraph.synth.parameters import SynthParameters

    path = tmp_path / "s40.toml"
    path.write_text(bench.fine_params_text(), encoding="utf-8")
    params = resolve_parameters(SynthParameters, path, {}, stage="synth")
    assert list(params.brains) == ["B01"] and params.image_spacing_um == 40.0
    assert (params.mask_spacing_um, params.annotation_spacing_um) == (160.0, 80.0)
    fine, coarse = bench.fields_mm(40.0), bench.fields_mm(100.0)
    assert fine["hr"] == pytest.approx(4.44) and coarse["hr"] == pytest.approx(11.1)
    assert fine["lr"] == pytest.approx(9.6) and coarse["lr"] == pytest.approx(24.0)
    assert fine["ms_lr"] == pytest.approx(8.0)
    commands = bench.lsm_commands(Path("c"), 2, 150, "hOc1")
    chains = [c for c in commands if c[:2] == ["lsm", "chain"]]
    assert [c[c.index("--arch") + 1] for c in chains] == ["hr", "lr", "ms"]
    assert all("--allow-long-intervals" in c and c[c.index("--seed") + 1] == "2" for c in chains)
    assert commands[-1][:2] == ["lsm", "evaluate"] and "lsm-hr,lsm-lr,lsm-ms" in commands[-1]


def _row(hr: float, lr: float, ms: float, spacing: float, bench) -> dict:
    lsm = {m: {"median": v, "truth_median": v - 0.01, "n": 9, "mean": v, "std": 0.05,
               "truth_n": 40, "truth_mean": v - 0.01}
           for m, v in (("lsm-hr", hr), ("lsm-lr", lr), ("lsm-ms", ms))}  # fmt: skip
    return {"lsm": lsm, "fields_mm": bench.fields_mm(spacing), "seconds": 60.0}


def test_the_page_holds_the_margins_per_spacing(bench):
    results = {
        "s1-a11": {"100um": _row(0.85, 0.84, 0.86, 100.0, bench),
                   "40um": _row(0.70, 0.80, 0.82, 40.0, bench)},
        "s2-a12": {"100um": _row(0.80, 0.83, 0.85, 100.0, bench),
                   "40um": _row(0.72, 0.78, 0.80, 40.0, bench)},
    }  # fmt: skip
    info = {"command": "x", "machine": "m", "load_min": 1.0, "load_max": 2.0, "minutes": 5.0,
            "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, info)
    coarse = next(line for line in page.splitlines() if line.startswith("| 100 µm | 11.1 mm"))
    fine = next(line for line in page.splitlines() if line.startswith("| 40 µm | 4.4 mm"))
    # 100 µm: LR - HR = -0.01, +0.03 -> 0.010 ± 0.028 (1/2); 40 µm: +0.10, +0.06 -> 0.080 ± 0.028
    assert coarse.endswith("| 0.010 ± 0.028 (1/2) |") and "24.0 / 20.0 mm" in coarse
    assert fine.endswith("| 0.080 ± 0.028 (2/2) |") and "0.710 ± 0.014" in fine
    truth = [line for line in page.splitlines() if line.startswith("| 40 µm | 0.")]
    assert truth and truth[0].startswith("| 40 µm | 0.700 ± 0.014 | 0.780 ± 0.014 |")
    assert "| s2-a12 | 0.800 / 0.830 / 0.850 (60 s) | 0.720 / 0.780 / 0.800 (60 s) |" in page
    kept = page.replace("(no reading written yet)", "Reading: context.")
    assert "Reading: context." in bench.render_page(results, info, old_page=kept)


def test_spacings_are_checked(bench):
    assert bench.parse_args(["out", "--spacings", "40"]).spacings == [40]
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--spacings", "20"])
