"""benchmarks/bench_gat_sage.py (GAT against SAGE with one setting changed at a time): its method
variants train and score exactly as ``train-gnn`` and ``evaluate`` do, every variant changes
what it says, and the page's numbers (exact to 1e-3, the page prints 3 digits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cortexgraph.gnn.synthetic import write_synthetic_cohort

SMALL = dict(rows=20, cols=16, num_areas=5, cy_dim=8, pm_dim=5, section_every=1,
             annotate_every=1, cy_signal=0.6)  # fmt: skip


@pytest.fixture(scope="module")
def bench(benchmark_module):
    return benchmark_module("bench_gat_sage")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_synthetic_cohort(tmp_path_factory.mktemp("gs"), ("B01", "B03", "B07"), **SMALL)


@pytest.mark.parametrize("model", ["gat", "sage"])
def test_method_variants_are_the_train_gnn_runs(bench, cohort, model):
    """``gat`` and ``sage`` give the F1 of ``train-gnn --preset demo`` + ``evaluate`` to 1e-9."""
    from cortexgraph.gnn.evaluate import evaluate_run
    from cortexgraph.gnn.stage import train_gnn

    run = train_gnn(cohort, model=model, layers=2, features="cy", transfer="B07", preset="demo",
                    seed=4, device="cpu", sampler="own")  # fmt: skip
    expected = evaluate_run(run, device="cpu")
    got = bench.run_variant(str(cohort), model, 2, 4, attention_depths=[2])
    assert got["test_f1"] == pytest.approx(expected["test_f1"], abs=1e-9)
    assert got["transfer_f1"] == pytest.approx(expected["transfer_f1"], abs=1e-9)
    assert got["seconds"] > 0 and got["wall_seconds"] >= got["seconds"]
    if model == "sage":
        assert "attention" not in got
        return
    # the attention summary: one entropy and one border excess per layer, in their ranges; the
    # model under mean attention is scored on the same nodes (a different model: other F1)
    att = got["attention"]
    assert len(att["entropy"]) == 2 and all(0.0 < e <= 1.0 for e in att["entropy"])
    assert len(att["border_excess"]) == 2 and all(-1.0 < x < 1.0 for x in att["border_excess"])
    assert att["border_nodes"] > 0
    assert 0.0 <= att["test_f1"] <= 1.0 and 0.0 <= att["transfer_f1"] <= 1.0
    # training again with the same learner seed gives the same model: a run stored without its
    # attention summary can be completed by repeating it
    assert bench.run_variant(str(cohort), model, 2, 4)["test_f1"] == got["test_f1"]


def test_every_variant_changes_what_it_names(bench):
    from cortexgraph.gnn.models import NodeClassifier

    expected = {  # variant: (kind, attention dropout, heads, fanout)
        "gat": ("gat", 0.5, 1, None), "gat-ad0": ("gat", 0.0, 1, None),
        "gat-ad25": ("gat", 0.25, 1, None), "gat-h4": ("gat", 0.5, 4, None),
        "gat-f3": ("gat", 0.5, 1, 3),
        "gat-ad0-f3": ("gat", 0.0, 1, 3), "gat-mean": ("gat", 0.0, 1, None),
        "gat-mean-f3": ("gat", 0.0, 1, 3),
        "sage": ("sage", 0.5, 1, 3),
        "sage-full": ("sage", 0.5, 1, None),
    }  # fmt: skip
    assert set(bench.VARIANTS) == set(expected)
    for name, (kind, options, fanout, _) in bench.VARIANTS.items():
        options = {k: v for k, v in options.items() if k != "mean_attention"}
        net = NodeClassifier({"cy": 8}, 5, kind=kind, num_layers=2, hidden=64, **options)
        c = net.config
        assert (c["kind"], c["attention_dropout"], c["heads"], fanout) == expected[name], name
        if kind == "gat":  # the layer itself carries the setting
            assert (
                net.layers[0].dropout == c["attention_dropout"]
                and net.layers[0].heads == c["heads"]
            )


def _results(bench) -> dict:
    """Two cohorts x two learner seeds, depths 3 and 5: gat = 0.30 + offsets, sage = 0.35 + ...;
    gat-ad0 = gat + 0.08; seconds 10 x depth."""
    out = {}
    for ci, c in enumerate(("s1-a11", "s2-a11")):
        for s in (1, 2):
            for d in (3, 5):
                base = 0.01 * ci + 0.02 * s + 0.001 * d
                for v, f1 in (("gat", 0.30 + base), ("gat-ad0", 0.38 + base),
                              ("sage", 0.35 + base)):  # fmt: skip
                    out[bench.task_key(c, v, d, s)] = {
                        "test_f1": f1, "transfer_f1": f1 / 2, "seconds": 10.0 * d,
                        "wall_seconds": 10.0 * d + 1, "cpu_seconds": 10.0 * d,
                    }  # fmt: skip
                if d == 3:  # gat's attention: entropy 0.9 / 0.8 / 0.7 + 0.01 s; the mean costs 0.02 s
                    out[bench.task_key(c, "gat", d, s)]["attention"] = {
                        "entropy": [0.9 + 0.01 * s, 0.8 + 0.01 * s, 0.7 + 0.01 * s],
                        "border_excess": [0.01, 0.02, 0.03 * s], "border_nodes": 40,
                        "test_f1": 0.30 + base - 0.02 * s, "transfer_f1": (0.30 + base) / 2,
                    }  # fmt: skip
    return out


def test_page_numbers(bench, tmp_path):
    results = _results(bench)
    harness = tmp_path / "repro"
    table = harness / "cohorts/s1-a11/cohort/derivatives/cortexgraph/comparisons"
    table.mkdir(parents=True)
    rows = ["model\tlayers\tfeatures\trun\ttest_f1\ttransfer_f1",
            "gat\t3\tCY\tgat3-cy-demo-s1\t0.3330\t0.1665",  # gat, s1-a11, seed 1, depth 3: 0.323
            "sage\t3\tCY\tsage3-cy-demo-s1\t0.3730\t0.1865"]  # fmt: skip
    (table / "depth-demo-s1.tsv").write_text("\n".join(rows) + "\n")
    args = argparse.Namespace(depths=[3, 5], learner_seeds=[1, 2], jobs=2, attention_depths=[3],
                              variants=["gat", "gat-ad0", "sage"], harness=harness)  # fmt: skip
    info = {"command": "x", "machine": "m", "load_min": 1.0, "load_max": 2.0, "minutes": 5.0,
            "date": "2026-12-07"}  # fmt: skip
    page = bench.render_page(results, args, ["s1-a11", "s2-a11"], info)
    lines = page.splitlines()
    # gat depth 3: 0.323, 0.343 (s1-a11), 0.333, 0.353 (s2-a11): mean 0.338, s.d. 0.0129
    row = next(line for line in lines if line.startswith("| `gat` | 0."))
    assert row == "| `gat` | 0.338 ± 0.013 | 0.340 ± 0.013 | 0.169 ± 0.006 |"
    # gat - sage = -0.05 at every depth; gat-ad0 - sage = +0.03
    assert "| `gat` | `sage` | -0.050 ± 0.000 | 0/4 |" in lines
    assert "| `gat-ad0` | `sage` | 0.030 ± 0.000 | 4/4 |" in lines
    assert "| `gat` -> `gat-ad0` | 0.080 ± 0.000 (4/4) | 0.080 ± 0.000 (4/4) |" in lines
    assert "| `gat` - `sage` | -0.050 ± 0.000 (0/4) | -0.050 ± 0.000 (0/4) |" in lines
    assert "| `gat-ad0` - `sage` | 0.030 ± 0.000 (4/4) | 0.030 ± 0.000 (4/4) |" in lines
    # learner-seed spread: 0.02 apart in each cohort (s.d. 0.0141); cohort means 0.01 apart
    assert "| `sage` | 5 | 0.014 | 0.007 |" in lines
    # the harness table differs by 0.01 test F1 from the s1-a11 seed-1 depth-3 runs
    check = next(line for line in lines if "harness's own GAT/SAGE runs" in line)
    assert "2 runs" in check and "0.0100 F1" in check
    assert "| `gat` | 30 | 50 |" in lines
    # attention, 4 runs: entropy per layer 0.915 / 0.815 / 0.715; border excess per run
    # (0.01 + 0.02 + 0.03 s) / 3 = 0.02, 0.03: mean 0.025, s.d. 0.0058; mean instead: -0.02 s
    # (-0.02, -0.04: -0.030 ± 0.012, never higher); transfer unchanged (0.000, 0 of 4 higher)
    assert ("| `gat` | 3 | 4 | 0.915 / 0.815 / 0.715 | 0.025 ± 0.006 | 0.338 ± 0.013 | "
            "-0.030 ± 0.012 (0/4) | 0.000 ± 0.000 (0/4) |") in lines  # fmt: skip
    section = page.split("## What the attention does")[1].split("\n## ")[0]
    assert "`gat-ad0`" not in section  # its runs have no attention summary
    # a hand-written reading survives a rewrite of the page
    reading = "<!-- reading -->\nGAT loses to SAGE because ...\n<!-- /reading -->"
    again = bench.render_page(
        results,
        args,
        ["s1-a11", "s2-a11"],
        info,
        bench.rp.kept_reading(
            bench.render_page(results, args, ["s1-a11", "s2-a11"], info, reading)
        ),
    )
    assert reading in again and again.index(reading) < again.index("## GAT above SAGE")


def test_a_gat_with_attention_fixed_at_the_mean_keeps_it_there(bench, cohort):
    """``gat-mean-f3`` trains everything but the attention: after training every node still
    weights its neighbours 1 / degree (normalised entropy 1, border excess 0), so replacing the
    attention by the mean changes nothing."""
    got = bench.run_variant(str(cohort), "gat-mean-f3", 2, 4, attention_depths=[2])
    att = got["attention"]
    assert att["entropy"] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert att["border_excess"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert att["test_f1"] == pytest.approx(got["test_f1"], abs=1e-9)
    assert att["transfer_f1"] == pytest.approx(got["transfer_f1"], abs=1e-9)
    free = bench.run_variant(str(cohort), "gat-ad0-f3", 2, 4, attention_depths=[2])
    assert free["attention"]["entropy"][0] < 1.0 - 1e-6  # trained attention moves off the mean


def test_neighbourhoods_of_a_cohort(bench, cohort):
    """The synthetic cohort's areas are stripes of a triangulated grid: a node has at most 6
    neighbours (fewer at the grid's edge), most share its area, and the nodes beside a stripe
    border do not."""
    n = bench.neighbourhoods(str(cohort))
    assert n["test_nodes"] > 0 and 0 < n["border_nodes"] < n["test_nodes"]
    assert 4.0 < n["mean_degree"] <= 6.0
    assert 0.5 < n["same_area_share"] < 1.0
    page = bench._neighbourhood_section({"s1-a11": n}, ["s1-a11", "s2-a11"])
    percent = 100 * n["border_nodes"] / n["test_nodes"]
    assert f"| s1-a11 | {n['test_nodes']} | {n['border_nodes']} ({percent:.1f} %) |" in page[-1]
    assert len([line for line in page if line.startswith("| s")]) == 1  # s2-a11 not measured


def test_a_gat_run_without_its_attention_summary_is_done_again(bench):
    results = _results(bench)
    args = argparse.Namespace(attention_depths=[3])
    assert not bench._missing(results, args, "s1-a11", "gat", 3, 1)  # has its summary
    assert bench._missing(results, args, "s1-a11", "gat-ad0", 3, 1)  # a GAT without one
    assert not bench._missing(results, args, "s1-a11", "gat-ad0", 5, 1)  # not an attention depth
    assert not bench._missing(results, args, "s1-a11", "sage", 3, 1)  # SAGE has no attention
    assert bench._missing(results, args, "s3-a11", "sage", 3, 1)  # not run yet
    parsed = bench.parse_args(["out", "--harness", "h", "--depths", "3,5",
                               "--attention-depths", "3,7"])  # fmt: skip
    assert parsed.attention_depths == [3]  # only depths that are run


def test_refuses_unfinished_harness_cohorts(bench, tmp_path):
    folder = tmp_path / "repro/cohorts/s1-a11"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(SystemExit, match="no finished cohort"):
        bench.harness_cohorts(tmp_path / "repro", [])
    with pytest.raises(SystemExit, match="s1-a11: not a finished cohort"):
        bench.harness_cohorts(tmp_path / "repro", ["s1-a11"])
    with pytest.raises(SystemExit):
        bench.parse_args(["out", "--harness", "h", "--variants", "gat,gcn"])
