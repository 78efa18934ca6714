"""``cortexgraph lsm`` end to end on a copy of the tiny phantom: chain, GSM, evaluate, runs, jobs list,
and the errors of bad options (exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.data.raster import Raster


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_chain_gsm_and_evaluate(cohort):
    runner = CliRunner()
    common = ["B01", "--root", str(cohort), "--area", "hOc1"]
    # step 7: one model on the first and last annotated sections of hOc1 (422, 1142), six test
    # sections between; only 722..842 are predicted (--extent) to keep the test short
    fast = ["--arch", "hr", "--iterations", "6", "--step", "7", "--extent", "722,842"]
    # 422..1142 is 14.4 mm, six times the published 2.4 mm interval: refused, naming what to annotate
    result = runner.invoke(app, ["lsm", "chain", *common, *fast])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "422-1142 (720 sections)" in text and "annotate the area on section(s) 482, 662" in text
    assert not (cohort / "derivatives/cortexgraph/B01/lsm/lsm-hr/hOc1/chain.json").exists()
    result = runner.invoke(app, ["lsm", "chain", *common, *fast, "--allow-long-intervals"])
    assert result.exit_code == 0, result.output
    assert "LONGER than 120 sections: 422-1142; annotate next: 482, 662" in flat(result.output)
    for stage in ("lsm-plan@lsm-hr@hOc1", "lsm-train@lsm-hr@hOc1@s0422-s1142"):
        assert f"B01/{stage}: recomputed (no record yet" in flat(result.output)
    result = runner.invoke(app, ["lsm", "gsm", *common, *fast])
    assert result.exit_code == 0, result.output
    brain_out = cohort / "derivatives" / "cortexgraph" / "B01"
    plan = json.loads((brain_out / "lsm" / "lsm-hr" / "hOc1" / "chain.json").read_text())
    assert plan["intervals"] == [[422, 1142]]
    assert plan["tests"] == [[602, 722, 782, 842, 962, 1022]]
    assert plan["sections"] == [722, 782, 842]
    assert (brain_out / "lsm/lsm-hr/hOc1/models/s0422-s1142/model.pt").is_file()
    assert (brain_out / "lsm/gsm-hr/hOc1/models/global/model.pt").is_file()
    for run in ("lsm-hr", "gsm-hr"):
        for section in (722, 782, 842):
            path = brain_out / "lsm" / run / "hOc1" / "pred" / f"s{section:04d}.h5"
            with Raster(path) as raster:
                classes = raster.read_level(0)
                assert raster.kind == "labels" and raster.spacing_um == 320.0
            assert classes.dtype == np.uint8 and set(np.unique(classes)) <= {0, 1, 2, 3, 255}
    # a second chain reuses every stage and says so
    result = runner.invoke(app, ["lsm", "chain", *common, *fast, "--allow-long-intervals"])
    assert result.exit_code == 0, result.output
    assert flat(result.output).count("reused (up to date)") == 3
    result = runner.invoke(app, ["lsm", "runs", "B01", "--root", str(cohort)])
    assert result.exit_code == 0 and result.stdout.splitlines() == ["gsm-hr\thOc1", "lsm-hr\thOc1"]

    result = runner.invoke(app, ["lsm", "evaluate", "B01", "--root", str(cohort)])
    assert result.exit_code == 0, result.output
    assert "GSM (HR)" in result.output and "LSM (HR)" in result.output
    for run in ("lsm-hr", "gsm-hr"):
        folder = brain_out / "lsm" / run / "evaluation"
        table = (folder / "table.tsv").read_text().splitlines()
        assert table[0].startswith("model\tsource") and len(table) == 2 and run in table[1]
        metrics = (folder / "metrics.tsv").read_text().splitlines()
        assert len(metrics) == 4  # header + 3 sections, all test sections of the one interval
        rows = [dict(zip(metrics[0].split("\t"), m.split("\t"), strict=True)) for m in metrics[1:]]
        assert {r["role"] for r in rows} == {"test"} and {r["area"] for r in rows} == {"hOc1"}
        for row in rows:  # the phantom's annotation is its truth (up to dropped tiny fragments)
            assert 0.0 <= float(row["f1_annotation"]) <= 1.0
            assert float(row["f1_annotation"]) == pytest.approx(
                float(row["f1_truth_roi"]), abs=0.02
            )
    result = runner.invoke(
        app, ["lsm", "evaluate", "B01", "--root", str(cohort), "--name", "lsm-hr"]
    )
    assert result.exit_code == 0 and "B01/lsm-evaluate@lsm-hr: reused" in flat(result.output)
    assert "GSM (HR)" not in result.output
    assert not (brain_out / "labels").exists()
    result = runner.invoke(app, ["lsm", "jobs", "list", "B01", "--root", str(cohort)])
    assert result.exit_code == 0 and "no jobs" in result.output


def test_cli_errors(cohort, cli_exit_code):
    runner = CliRunner()
    common = ["B01", "--root", str(cohort)]
    train = ["lsm", "train", *common, "--area", "hOc1"]
    cases = [
        (["lsm", "train", *common, "--area", "nope", "--sections", "1,2"], "unknown area"),
        ([*train, "--sections", "722"], "two section numbers"),
        ([*train, "--sections", "722,842", "--arch", "xx"], "architecture"),
        ([*train, "--sections", "362,722", "--arch", "hr"], "not annotated"),
        ([*train, "--sections", "722,722", "--arch", "hr"], "differ"),
        ([*train, "--sections", "722,842", "--name", "gsm-x"], "is a gsm name"),
        ([*train, "--sections", "722,842", "--name", "../lsm-x"], "not a valid name"),
        ([*train, "--sections", "722,842", "--iterations", "0"], "--iterations"),
        (["lsm", "chain", *common, "--area", "hOc1", "--name", "lsm-a/b"], "not a valid name"),
        (
            ["lsm", "chain", *common, "--area", "hOc1", "--arch", "hr,ms", "--name", "lsm-x"],
            "one run",
        ),
        (["lsm", "chain", *common, "--area", "hOc1", "--step", "0"], "--step"),
        (["lsm", "chain", *common, "--area", "hOc1", "--tile-px", "0"], "--tile-px"),
        (["lsm", "gsm", *common, "--area", "hOc1", "--name", "lsm-ms"], "is a lsm name"),
        (["lsm", "predict", *common, "--area", "hOc1", "--wait", "-1"], "--wait"),
        (["lsm", "predict", *common, "--area", "hOc1", "--kind", "xsm"], "--kind"),
        (["lsm", "predict", *common, "--area", "hOc1", "--name", "/etc/lsm-x"], "not a valid name"),
        (["lsm", "evaluate", *common], "no LSM/GSM run"),
        (["lsm", "evaluate", *common, "--name", "lsm-..x/"], "not a valid name"),
        (["lsm", "jobs", "cancel", *common, "missing-job"], "no job"),
    ]
    for argv, message in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert message in flat(result.output), (argv, result.output)
        assert "Traceback" not in result.output
    # predicting before training: the plan is missing (exit 4 once the CLI uses exit codes per class)
    from cortexgraph.errors import UpstreamError

    result = runner.invoke(app, ["lsm", "predict", *common, "--area", "hOc1"])
    assert result.exit_code == cli_exit_code(UpstreamError)
    assert "has not been computed" in flat(result.output)
    assert "lsm chain B01" in flat(result.output)
    # nothing but lock and record folders were created by the failed commands
    derivatives = cohort / "derivatives" / "cortexgraph" / "B01"
    written = [p for p in derivatives.rglob("*") if p.is_file()] if derivatives.exists() else []
    assert written == []
