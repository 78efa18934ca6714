"""benchmarks/bench_encoder_batch.py (SCL against CE per batch, steps and temperature) on synthetic
encoder metrics: each variant's parameters file gives train-encoder the intended preset, the runs
are read from metrics.json as train-encoder writes it, and the page's numbers are the mean ± s.d.
of the runs (exact to 1e-3, the page's digits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexgraph.derivatives.parameters import resolve_parameters
from cortexgraph.features.parameters import TrainEncoderParameters
from cortexgraph.features.presets import get_preset


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_encoder_batch")


def test_each_variant_file_changes_only_its_fields(bench, tmp_path):
    demo = get_preset("demo")
    for variant, fields in bench.VARIANTS.items():
        path = tmp_path / f"{variant}.toml"
        path.write_text(bench.params_text(fields), encoding="utf-8")
        spec = resolve_parameters(TrainEncoderParameters, path, {}, stage="train-encoder")
        spec = spec.preset_spec(demo.image_spacing_um)
        changed = {k for k, v in spec.as_dict().items() if v != demo.as_dict()[k]}
        assert changed == set(fields), variant
        assert all(getattr(spec, k) == v for k, v in fields.items())
    # b512-e120 keeps the preset's SCL and linear steps within 4 % (36 areas: 27 or 7 batches per
    # epoch, features.train._batches), with four times the patches each
    steps = lambda batch, epochs: epochs * round(36 * demo.samples_per_area / batch)  # noqa: E731
    big = bench.VARIANTS["b512-e120"]
    for epochs, preset_epochs in ((big["scl_epochs"], demo.scl_epochs),
                                  (big["linear_epochs"], demo.linear_epochs)):  # fmt: skip
        ratio = steps(512, epochs) / steps(demo.batch_size, preset_epochs)
        assert ratio == pytest.approx(1.0, abs=0.04)
    args = bench.encoder_args(Path("c"), 3, "tau0.2", Path("p.toml"))
    assert args[args.index("--seed") + 1] == "3" and args[args.index("--name") + 1] == "enc-tau0.2"


def _metrics(scl_test: float, ce_test: float, batch: int = 128, scl_epochs: int = 30) -> dict:
    preset = get_preset("demo").with_overrides(batch_size=batch, scl_epochs=scl_epochs).as_dict()
    splits = lambda test: {"train": test + 0.1, "test": test, "transfer": test - 0.1}  # noqa: E731
    return {
        "preset": preset,
        "training_areas": 33,
        "training_patches_per_epoch": 33 * 96,
        "scl_linear": {s: {"macro_f1": v} for s, v in splits(scl_test).items()},
        "ce": {s: {"macro_f1": v} for s, v in splits(ce_test).items()},
        "history": {"scl": [{"loss": 5.0}, {"loss": 4.25}], "linear": [], "ce": []},
        "seconds": {"total": 100.0},
    }


def test_runs_are_read_and_the_page_holds_their_numbers(bench):
    run = bench.read_run(_metrics(0.2, 0.3, batch=512, scl_epochs=120))
    assert run["scl_steps"] == 120 * 6 and run["ce_steps"] == 126 * 6  # round(3168 / 512) = 6
    assert run["positives_per_anchor"] == pytest.approx(512 / 33 - 1)
    assert run["scl_last_loss"] == 4.25 and run["scl"]["transfer"] == pytest.approx(0.1)
    results = {
        "s1-a11": {"preset": bench.read_run(_metrics(0.20, 0.30)),
                   "b512-e120": bench.read_run(_metrics(0.35, 0.30, 512, 120))},
        "s2-a12": {"preset": bench.read_run(_metrics(0.16, 0.34)),
                   "b512-e120": bench.read_run(_metrics(0.29, 0.31, 512, 120))},
    }  # fmt: skip
    info = {"command": "x", "machine": "m", "load_min": 1.0, "load_max": 2.0, "minutes": 5.0,
            "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, ["preset", "b512-e120"], info)
    test_row = next(line for line in page.splitlines() if "(macro F1, test patches)" in line)
    # preset: margins -0.10, -0.18 -> -0.140 ± 0.057, held 0/2; b512: +0.05, -0.02 -> 0.015 ± 0.049
    assert "-0.140 ± 0.057 (0/2)" in test_row and "0.015 ± 0.049 (1/2)" in test_row
    row = next(line for line in page.splitlines() if line.startswith("| b512-e120 |"))
    assert "| 512 | 0.07 | 14.5 ± 0.0 | 720 ± 0 | 756 ± 0 | 4.25 ± 0.00 |" in row
    assert "0.320 ± 0.042" in row  # SCL test mean of 0.35, 0.29
    per_cohort = next(line for line in page.splitlines() if line.startswith("| s2-a12 |"))
    assert "0.160 / 0.340 (100 s)" in per_cohort and "0.290 / 0.310 (100 s)" in per_cohort
    # a hand-written reading survives a rewrite
    kept = page.replace("(no reading written yet)", "Reading: b512 closes the gap.")
    again = bench.render_page(results, ["preset", "b512-e120"], info, kept)
    assert "Reading: b512 closes the gap." in again


def test_unknown_variants_and_bad_pairs_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--variants", "preset,b4096"])
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--pairs", "1-11"])
    assert bench.parse_args(["out", "--pairs", "1:11,3:12"]).pairs == [(1, 11), (3, 12)]
