"""``cortexgraph build-graph --params FILE.toml`` and ``--params-template`` (docs/conventions.md,
"Parameters")."""

from __future__ import annotations

import json
import shutil
import tomllib

import pytest
from typer.testing import CliRunner

from cortexgraph.build_graph.parameters import BuildGraphParameters
from cortexgraph.cli.main import app
from cortexgraph.derivatives import Derivatives, StageId

runner = CliRunner()


def test_template_lists_every_parameter_with_its_default(tmp_path):
    result = runner.invoke(app, ["build-graph", "--params-template"])  # no BRAINS needed
    assert result.exit_code == 0, result.output
    values = tomllib.loads(result.stdout)
    defaults = BuildGraphParameters()
    assert set(values) == set(BuildGraphParameters.__dataclass_fields__)
    assert values["voxel_size_mm"] == "none" and values["laplace_tol"] == defaults.laplace_tol
    assert values["remesh_iterations"] == 10 and values["refine"] is True


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "voxel_sise_mm = 1.5\n",
            ["unknown build-graph parameter 'voxel_sise_mm'", "voxel_size_mm?"],
        ),
        ('remesh_iterations = "ten"\n', ["remesh_iterations", "is not an integer", "Fix:"]),
        ("laplace_tol = -1\n", ["laplace_tol = -1.0: must be a finite number > 0"]),
    ],
)
def test_bad_parameters_file_exits_2_naming_file_and_key(tmp_path, text, words):
    path = tmp_path / "bg.toml"
    path.write_text(text, encoding="utf-8")
    # the file is read before the brain is looked up: no cohort needed
    result = runner.invoke(
        app, ["build-graph", "B01", "--root", str(tmp_path), "--params", str(path)]
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich may wrap long lines
    assert str(path) in message
    for word in words:
        assert word in message


def test_an_option_out_of_range_blames_the_command_line(tmp_path):
    path = tmp_path / "bg.toml"
    path.write_text("max_gap_planes = 2\n", encoding="utf-8")
    result = runner.invoke(
        app,
        ["build-graph", "B01", "--root", str(tmp_path), "--params", str(path), "--voxel-mm", "0"],
    )
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "voxel_size_mm = 0.0" in message and "(command-line options)" in message
    assert str(path) not in message


@pytest.mark.slow
def test_parameters_file_is_recorded_reused_and_overridden(tiny_cohort, tmp_path):
    """The file sets the voxel size (1.5 mm instead of the 1.2 mm section distance); the record holds
    the resolved values; the same file reuses; a changed value recomputes; an option wins."""
    root = tmp_path / "tiny"
    shutil.copytree(tiny_cohort, root)
    path = tmp_path / "bg.toml"
    path.write_text("voxel_size_mm = 1.5\nmax_gap_planes = 4\n", encoding="utf-8")
    sid = StageId("build-graph", "B01")
    store = Derivatives(root)

    def run(*extra: str):
        args = ["build-graph", "B01", "--root", str(root), "--no-qc-picture", "--params", str(path)]
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        record = store.record(sid)
        assert record is not None
        return record

    first = run()
    recorded = first.parameters["build_graph"]
    assert recorded["voxel_size_mm"] == pytest.approx(1.5, abs=0)
    assert recorded["max_gap_planes"] == 4
    assert recorded["remesh_iterations"] == BuildGraphParameters().remesh_iterations
    report = json.loads((root / "derivatives/cortexgraph/B01/qc/build-graph.json").read_text())
    assert report["target_edge_mm"] == pytest.approx(1.5, abs=1e-12)  # the edge follows the voxel

    again = run()
    assert again.key == first.key and again.started_unix == first.started_unix  # reused

    path.write_text("voxel_size_mm = 1.5\nmax_gap_planes = 5\n", encoding="utf-8")
    changed = run("--max-gap-planes", "4")  # the option wins: the values are those of the first run
    assert changed.key == first.key and changed.started_unix == first.started_unix

    changed = run()
    assert changed.key != first.key and changed.started_unix > first.started_unix
    assert changed.parameters["build_graph"]["max_gap_planes"] == 5


def test_an_edge_far_below_the_voxel_size_is_refused_before_any_work(tiny_cohort, tmp_path):
    """Before, `--edge-mm 0.0001` ran into std::bad_alloc in the remeshing ("internal error") or
    the OOM killer, and 0.05 ran 25 times longer than the default without a word."""
    import shutil

    root = tmp_path / "tiny"
    shutil.copytree(tiny_cohort, root, ignore=shutil.ignore_patterns("derivatives"))
    argv = ["build-graph", "B01", "--root", str(root), "--voxel-mm", "0.6"]
    result = runner.invoke(app, [*argv, "--edge-mm", "0.05"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "--edge-mm 0.05 is shorter than a quarter of the voxel size (0.6 mm)" in message
    assert "about 144 times the vertices" in message and "give --edge-mm 0.15 or more" in message
    assert not (root / "derivatives").exists()
