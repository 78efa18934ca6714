"""``cortexgraph lsm`` end to end on the tiny phantom: chain, GSM, evaluate, jobs list, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.data.raster import Raster


@pytest.mark.slow
def test_chain_gsm_and_evaluate(tiny_cohort, tmp_path):
    runner = CliRunner()
    out = tmp_path / "derivatives"
    common = ["B01", "--root", str(tiny_cohort), "--derivatives", str(out), "--area", "hOc1"]
    # step 7: one model on the first and last annotated sections of hOc1 (422, 1142), six test
    # sections between; only 722..842 are predicted (--extent) to keep the test short
    fast = ["--arch", "hr", "--iterations", "6", "--step", "7", "--extent", "722,842"]
    result = runner.invoke(app, ["lsm", "chain", *common, *fast])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["lsm", "gsm", *common, *fast])
    assert result.exit_code == 0, result.output
    brain_out = out / "B01"
    plan = json.loads((brain_out / "lsm" / "hOc1" / "chain.json").read_text())
    assert plan["intervals"] == [[422, 1142]]
    assert plan["tests"] == [[602, 722, 782, 842, 962, 1022]]
    assert plan["sections"] == [722, 782, 842]
    assert (brain_out / "lsm" / "hOc1" / "lsm-hr" / "s0422-s1142" / "model.pt").is_file()
    assert (brain_out / "lsm" / "hOc1" / "gsm-hr" / "model.pt").is_file()
    for source in ("lsm-hr", "gsm-hr"):
        for section in (722, 782, 842):
            path = brain_out / "labels" / source / f"s{section:04d}.h5"
            with Raster(path) as raster:
                labels = raster.read_level(0)
                assert raster.kind == "labels" and raster.spacing_um == 320.0
            assert labels.dtype == np.uint16 and set(np.unique(labels)) <= {0, 4}
            assert path.with_name(path.name + ".prov.json").is_file()
    result = runner.invoke(app, ["lsm", "evaluate", "B01", *common[1:]])
    assert result.exit_code == 0, result.output
    assert "GSM (HR)" in result.output and "LSM (HR)" in result.output
    table = (brain_out / "lsm" / "evaluation" / "table.tsv").read_text().splitlines()
    assert table[0].startswith("model\tsource") and len(table) == 3
    metrics = (brain_out / "lsm" / "hOc1" / "lsm-hr" / "metrics.tsv").read_text().splitlines()
    assert len(metrics) == 4  # header + 3 sections, all test sections of the one interval
    rows = [dict(zip(metrics[0].split("\t"), m.split("\t"), strict=True)) for m in metrics[1:]]
    assert {r["role"] for r in rows} == {"test"}
    for row in rows:  # the phantom's annotation is its truth (up to dropped tiny fragments)
        assert 0.0 <= float(row["f1_annotation"]) <= 1.0
        assert float(row["f1_annotation"]) == pytest.approx(float(row["f1_truth_roi"]), abs=0.02)
    result = runner.invoke(app, ["lsm", "jobs", "list", "B01", *common[1:5]])
    assert result.exit_code == 0 and "no jobs" in result.output


def test_cli_errors(tiny_cohort, tmp_path):
    runner = CliRunner()
    common = ["B01", "--root", str(tiny_cohort), "--derivatives", str(tmp_path)]
    result = runner.invoke(app, ["lsm", "train", *common, "--area", "nope", "--sections", "1,2"])
    assert result.exit_code == 2 and "unknown area" in result.output
    result = runner.invoke(app, ["lsm", "train", *common, "--area", "hOc1", "--sections", "722"])
    assert result.exit_code == 2 and "two section numbers" in result.output
    result = runner.invoke(
        app, ["lsm", "train", *common, "--area", "hOc1", "--sections", "722,842", "--arch", "xx"]
    )
    assert result.exit_code == 2 and "architecture" in result.output
    # a section where the area is not annotated
    result = runner.invoke(
        app, ["lsm", "train", *common, "--area", "hOc1", "--sections", "362,722", "--arch", "hr"]
    )
    assert result.exit_code == 2 and "not annotated" in result.output
    result = runner.invoke(app, ["lsm", "evaluate", *common, "--area", "hOc1"])
    assert result.exit_code == 2 and "chain" in result.output
    result = runner.invoke(app, ["lsm", "jobs", "cancel", *common, "missing-job"])
    assert result.exit_code == 2 and "no job" in result.output
