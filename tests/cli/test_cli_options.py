"""Option values a command cannot use are usage errors (exit 2, the option and its range), checked
before any work: each of these used to end as "internal error" (exit 1) or start a server whose
first local model would fail."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--port", "70000"], "--port 70000 is out of range"),
        (["--port", "-1"], "--port -1 is out of range"),
        (["--lsm-arch", "xx"], "--lsm-arch 'xx' is out of range"),
        (["--lsm-preset", "bogus"], "--lsm-preset 'bogus' is out of range"),
        (["--lsm-iterations", "0"], "--lsm-iterations 0 is out of range"),
        (["--max-interval-mm", "-1"], "--max-interval-mm -1.0 is out of range"),
        (["--max-interval-mm", "nan"], "--max-interval-mm nan is out of range"),
    ],
)
def test_serve_refuses_options_before_it_starts(tmp_path, options, words):
    result = runner.invoke(app, ["serve", "--root", str(tmp_path), *options])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())


def test_port_zero_is_a_free_port_chosen_before_the_address_is_printed():
    from cortexgraph.cli.serve import _free_port

    port = _free_port("127.0.0.1")
    assert 1 <= port <= 65535
    with socket.socket() as again:  # free: it can be bound
        again.bind(("127.0.0.1", port))


def test_lsm_train_and_render_refuse_what_they_cannot_use(tiny_cohort):
    root = ["--root", str(tiny_cohort)]
    result = runner.invoke(
        app, ["lsm", "train", "B01", *root, "--area", "hOc1", "--sections", "424,484",
              "--arch", "hr,ms"],
    )  # fmt: skip
    assert result.exit_code == 2 and "trains one model" in result.output, result.output
    result = runner.invoke(app, ["render", "B01", *root, "--backend", "foo"])
    assert result.exit_code == 2 and "unknown --backend 'foo'" in result.output, result.output
    assert not (tiny_cohort / "derivatives" / "cortexgraph" / "B01" / "render").exists()


def test_lsm_predict_refuses_kind_or_arch_beside_name(tiny_cohort):
    """--name picks the run; --arch and --kind pick runs by their default names. Given both, the
    name used to win in silence."""
    root = ["--root", str(tiny_cohort), "--area", "hOc1"]
    for extra in (["--arch", "hr"], ["--kind", "gsm"], ["--arch", "ms", "--kind", "lsm"]):
        result = runner.invoke(app, ["lsm", "predict", "B01", *root, "--name", "lsm-ms", *extra])
        assert result.exit_code == 2, result.output
        assert "--name lsm-ms names the run" in " ".join(result.output.split())
    assert not (tiny_cohort / "derivatives" / "cortexgraph" / "B01" / "lsm").exists()


def test_map3d_refuses_sections_the_brain_does_not_have(tiny_cohort):
    result = runner.invoke(
        app, ["map3d", "B01", "--root", str(tiny_cohort), "--labels", "truth", "--area", "hOc1",
              "--exclude-sections", "99999"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "99999" in text and "sections.tsv" in text
    assert not (tiny_cohort / "derivatives" / "cortexgraph" / "B01" / "maps3d").exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-distance-mm", "nan"], "--max-distance-mm nan is out of range"),
        (["--max-distance-mm", "0"], "--max-distance-mm 0.0 is out of range"),
        (["--spacing-um", "-5"], "--spacing-um -5.0 is out of range"),
        (["--smooth", "-1"], "--smooth -1 is out of range"),
        (["--overlays", "-2"], "--overlays -2 is out of range"),
    ],
)
def test_project_refuses_options_out_of_range_before_reading_anything(tmp_path, options, words):
    result = runner.invoke(app, ["project", "B01", "--run", "gat3", "--root", str(tmp_path), *options])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()) and "give " in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["train-gnn"],
        ["evaluate", "gat3"],
        ["predict", "gat3", "B01"],
        ["train-encoder"],
        ["features", "B01"],
    ],
)
@pytest.mark.parametrize("device", ["cuda", "cuda:99", "npu", "mps"])
def test_a_device_this_machine_cannot_use_is_refused_before_any_work(tmp_path, argv, device):
    """Before, `--device cuda` without a GPU ended in "internal error: RuntimeError" (exit 1)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    result = runner.invoke(app, [*argv, "--root", str(tmp_path), "--device", device])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"--device {device}" in text.replace("'", "") and "Fix: use --device" in text
    assert list(tmp_path.iterdir()) == []


def test_lsm_refuses_a_device_this_machine_cannot_use(tiny_cohort):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    before = sorted(p for p in tiny_cohort.rglob("*"))
    result = runner.invoke(app, ["lsm", "chain", "B01", "--root", str(tiny_cohort), "--area",
                                 "hOc1", "--device", "cuda"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "torch sees no CUDA device" in " ".join(result.output.split())
    assert sorted(p for p in tiny_cohort.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--name", "ok", "--time-min", "nan"], "time_limit_min must be a finite number > 0"),
        (["--name", "ok", "--memory-gb", "inf"], "memory_gb must be a finite number > 0"),
        (["--name", "../x"], "job name '../x'"),
        (["--name", "a b"], "job name 'a b'"),
    ],
)
def test_jobs_submit_refuses_bad_values_before_an_engine_starts(tmp_path, options, words):
    """Before, NaN limits were written into job.json (not JSON; NaN minutes meant no limit) and
    `--name ../x` became `.._x`; both after a background engine had been started."""
    (tmp_path / "cohort.toml").write_text("")
    argv = ["jobs", "submit", "--root", str(tmp_path), *options, "--", "check", "B01"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.toml"]  # no jobs folder, engine
