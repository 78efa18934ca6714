"""The ``train-encoder`` and ``features`` commands (thin layers; outputs reused, errors clear)."""

from __future__ import annotations

from typer.testing import CliRunner

from cortexgraph.cli.main import app

runner = CliRunner()


def test_train_encoder_reuses_and_prints_scores(features_cohort, encoder_overrides):
    root, encoder_path = features_cohort
    o = encoder_overrides

    result = runner.invoke(
        app,
        ["train-encoder", "--root", str(root), "--preset", "tiny", "--epochs", str(o["scl_epochs"])]
        + ["--linear-epochs", str(o["linear_epochs"])]
        + ["--samples-per-area", str(o["samples_per_area"]), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output  # the same settings as the fixture's: reused
    assert "scl_linear: macro F1 test" in result.output and "transfer" in result.output
    assert str(encoder_path) in result.output.replace("\n", "")
    # an empty name is refused (it used to train under the preset's name)
    empty = runner.invoke(
        app, ["train-encoder", "--root", str(root), "--name", "", "--device", "cpu"]
    )
    assert empty.exit_code == 2 and "encoder name '' is not a valid name" in empty.output


def test_features_command_and_errors(features_graphs, tmp_path):
    root, _, _ = features_graphs
    result = runner.invoke(app, ["features", "B01", "--root", str(root), "--encoder", "tiny"])
    assert result.exit_code == 0, result.output
    assert "features of B01 up to date" in result.output
    again = runner.invoke(app, ["features", "B01", "--root", str(root), "--encoder", "tiny"])
    for stage in ("priors", "labels", "cy"):
        assert f"{stage}: up to date, reused" in again.output
    # a brain without graphs: exit code 4 (upstream missing) and the command that makes them
    result = runner.invoke(app, ["features", "B03", "--root", str(root)])
    assert result.exit_code == 4
    assert "cortexgraph build-graph B03" in result.output
    # an encoder name that was never trained: refused before PM, CO and labels are made again
    # (they used to be recomputed, and the command failed only at the CY stage)
    records = root / "derivatives" / "cortexgraph" / "B01" / "records"
    before = {p.name: p.stat().st_mtime_ns for p in records.iterdir()}
    result = runner.invoke(
        app, ["features", "B01", "--root", str(root), "--encoder", "nope", "--overwrite"]
    )
    assert result.exit_code == 4 and "cortexgraph train-encoder --name nope" in result.output
    assert "node-priors" not in result.output and "node-labels" not in result.output
    assert {p.name: p.stat().st_mtime_ns for p in records.iterdir()} == before
    # a name that would become a path
    result = runner.invoke(app, ["features", "B01", "--root", str(root), "--encoder", "../x"])
    assert result.exit_code == 2 and "not a valid name" in result.output


def test_features_and_train_encoder_refuse_a_brain_that_fails_check(features_graphs, tmp_path):
    """Both used to run on such a brain and record success (build-graph refused it)."""
    import shutil

    root, _, _ = features_graphs
    copy = tmp_path / "broken"
    shutil.copytree(root, copy)
    annotation = sorted((copy / "B01" / "annotations").glob("*.geojson"))[0]
    annotation.write_text('{"type": "FeatureCollection", "features": [')
    records = copy / "derivatives" / "cortexgraph" / "B01" / "records"
    before = sorted(p.name for p in records.iterdir())
    for argv in (["features", "B01", "--overwrite"], ["train-encoder", "--overwrite"]):
        result = runner.invoke(app, [*argv, "--root", str(copy)])
        assert result.exit_code == 2, result.output
        assert "brain B01 fails check" in result.output and annotation.name in result.output
        assert "cortexgraph check B01" in result.output
    assert sorted(p.name for p in records.iterdir()) == before  # nothing recorded
