"""Progress where output is not a terminal: plain lines with stage, done/total, rate and time left,
repeated while a task is silent, and a heartbeat for every command (cortexgraph.cli.common)."""

from __future__ import annotations

import logging
import re
import time

import typer
from typer.testing import CliRunner

from cortexgraph.cli import common
from cortexgraph.cli.common import PlainProgress, format_duration, reports_errors, setup_logging


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(float("nan")) == "-:--:--"
    assert format_duration(None) == "-:--:--"


def test_plain_lines_name_stage_count_rate_and_time_left():
    lines: list[str] = []
    progress = PlainProgress(interval_s=0.05, emit=lines.append)
    progress.update("synth B01", 0, 10)  # first line when the task starts
    time.sleep(0.06)
    progress.update("synth B01", 4, 10)  # advanced and the interval passed: a line
    progress.update("synth B01", 5, 10)  # within the interval: no line
    progress.update("synth B01", 10, 10)  # completion: always a line
    assert len(lines) == 3, lines
    assert lines[0].startswith("progress synth B01: 0/10 (0%)")
    match = re.match(
        r"progress synth B01: 4/10 \(40%\), ([0-9.]+) per s, elapsed 0:00:00, about 0:00:0\d left",
        lines[1],
    )
    assert match, lines[1]
    rate = float(match.group(1))
    assert 4 / 0.5 < rate < 4 / 0.05  # 4 items in 0.06..0.5 s
    assert lines[2].startswith("progress synth B01: 10/10 (100%)") and lines[2].endswith("done")


def test_plain_progress_repeats_a_silent_task():
    lines: list[str] = []
    with PlainProgress(interval_s=0.1, emit=lines.append) as progress:
        progress.update("build-graph laplace", 1, 5)
        time.sleep(0.45)  # the step takes long: the heartbeat repeats its line
    repeats = [line for line in lines if line.endswith("working") or "left" in line]
    assert len(lines) >= 3 and len(repeats) >= 2, lines
    assert all(line.startswith("progress build-graph laplace: 1/5 (20%)") for line in lines)


def test_progress_bar_and_stage_progress_write_plain_lines_when_not_a_terminal(caplog):
    # pytest captures stderr, so it is not a terminal here
    caplog.set_level(logging.INFO, logger="cortexgraph")
    with common.progress_bar("predict", total=2) as advance:
        advance(1)
        advance(1)
    context, callback = common.stage_progress()
    with context:
        callback("features lh", 3, 3)
    text = caplog.text
    assert "progress predict: 0/2 (0%)" in text
    assert "progress predict: 2/2 (100%)" in text
    assert "progress features lh: 3/3 (100%)" in text


def test_every_command_has_a_heartbeat_when_not_on_a_terminal(monkeypatch):
    monkeypatch.setenv("CORTEXGRAPH_PROGRESS_S", "0.2")
    app = typer.Typer()

    @app.command("slow-step")
    @reports_errors
    def slow_step() -> None:
        setup_logging(False)
        logging.getLogger("cortexgraph").info("reading /a/very/long/path/" + "x" * 120 + ".h5")
        time.sleep(0.9)

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps the command names
        pass

    result = CliRunner().invoke(app, ["slow-step"])
    assert result.exit_code == 0, result.output
    beats = [line for line in result.output.splitlines() if "still running after" in line]
    assert len(beats) >= 2, result.output
    assert "cortexgraph slow-step: still running after 0:00:0" in beats[0]
    # the last log line is repeated whole: paths are never wrapped
    assert beats[0].endswith("x" * 120 + ".h5)")
