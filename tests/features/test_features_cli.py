"""The ``train-encoder`` and ``features`` commands (thin layers; outputs reused, errors clear)."""

from __future__ import annotations

from typer.testing import CliRunner

from cortexgraph.cli.main import app

runner = CliRunner()


def test_train_encoder_reuses_and_prints_scores(features_cohort):
    root, encoder_path = features_cohort
    result = runner.invoke(app, ["train-encoder", "--root", str(root), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    assert "scl_linear: macro F1 test" in result.output and "transfer" in result.output
    assert str(encoder_path) in result.output.replace("\n", "")


def test_features_command_and_errors(features_graphs, tmp_path):
    root, _, _ = features_graphs
    result = runner.invoke(app, ["features", "B01", "--root", str(root), "--encoder", "tiny"])
    assert result.exit_code == 0, result.output
    assert "features of B01 written" in result.output
    # a brain without graphs: exit code 2 and the command that makes them
    result = runner.invoke(app, ["features", "B03", "--root", str(root)])
    assert result.exit_code == 2
    assert "build-graph" in result.output
    # an encoder name that was never trained
    result = runner.invoke(
        app, ["features", "B01", "--root", str(root), "--encoder", "nope", "--overwrite"]
    )
    assert result.exit_code == 2 and "train-encoder" in result.output
