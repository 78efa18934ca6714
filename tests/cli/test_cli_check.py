from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from typer.testing import CliRunner

from cortexgraph.cli.main import app

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from brain_factory import make_brain  # noqa: E402

runner = CliRunner()


def test_help_lists_stages_in_order():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    order = [
        result.output.index(s) for s in ("synth", "check", "build-graph", "train-gnn", "render")
    ]
    assert order == sorted(order)


def test_check_exit_codes_and_json(tmp_path):
    make_brain(tmp_path)
    ok = runner.invoke(app, ["check", "B01", "--root", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "B01/masks/s0100.h5").unlink()
    bad = runner.invoke(app, ["check", "B01", "--root", str(tmp_path), "--json"])
    assert bad.exit_code == 2  # a data error (cortexgraph.errors)
    report = json.loads(bad.stdout)
    assert report["problems"][0]["section"] == 100
    assert report["problems"][0]["file"].endswith("masks/s0100.h5")
    shutil.rmtree(tmp_path / "B01")
    missing = runner.invoke(app, ["check", "B01", "--root", str(tmp_path)])
    assert missing.exit_code == 2
    assert "B01/brain.toml" in missing.output
