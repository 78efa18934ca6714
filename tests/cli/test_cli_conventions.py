"""Command-line conventions shared by every command (docs/conventions.md, "Command line")."""

from __future__ import annotations

import typer
from typer.core import TyperArgument

from cortexgraph.cli.main import app


def _commands(group, prefix: str = ""):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_brain_argument_reads_the_same():
    """A brain argument is shown as BRAIN (or BRAINS for several), whatever the command."""
    root = typer.main.get_command(app)
    seen = []
    for name, command in _commands(root):
        for param in command.params:
            if isinstance(param, TyperArgument) and "brain" in param.name:
                seen.append(name)
                wanted = "BRAINS" if param.nargs == -1 else "BRAIN"
                assert param.metavar == wanted, f"cortexgraph {name}: {param.name} is {param.metavar}"
    assert {"check", "build-graph", "map3d", "lsm chain", "segment", "align"} <= set(seen)


def test_every_command_has_help_and_the_shared_options():
    root = typer.main.get_command(app)
    for name, command in _commands(root):
        assert command.help, f"`cortexgraph {name}` has no help text"
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--help" in options or command.add_help_option, name


def _params(command):
    return {p.name: p for p in command.params}


def test_device_and_wait_read_the_same_everywhere():
    """--device defaults to auto wherever a command takes it; --wait to 0 s; a stage command's
    options end with --root, --overwrite, --wait, --verbose (then --debug)."""
    root = typer.main.get_command(app)
    devices, stages = [], []
    for name, command in _commands(root):
        params = _params(command)
        if "device" in params:
            devices.append(name)
            assert params["device"].default == "auto", f"cortexgraph {name}: --device"
            assert params["device"].opts == ["--device"], name
        if "wait" in params and name != "run-cohort":  # the engine's tasks wait (default 3600 s)
            assert params["wait"].default == 0.0 and params["wait"].opts == ["--wait"], name
        names = [p.name for p in command.params]
        # every command that recomputes on request takes a lock, so it can also wait for it
        # (ingest writes a brain's input files and synth a new cohort, not a stage's outputs;
        # synth's folder lock refuses a second synth at once)
        assert "overwrite" not in names or "wait" in names or name in ("ingest", "synth"), name
        if {"root", "overwrite", "wait", "verbose"} <= set(names) and "flags" not in names:
            stages.append(name)
            assert names[-5:] == ["root", "overwrite", "wait", "verbose", "debug"], name
    assert {"train-gnn", "predict", "features", "lsm chain", "lsm gsm", "lsm train",
            "lsm predict"} <= set(devices)  # fmt: skip
    assert {"map3d", "stats", "build-graph", "align", "lsm chain", "lsm evaluate", "train-encoder",
            "evaluate"} <= set(stages)  # fmt: skip


def test_map3d_and_stats_share_their_map_options():
    root = typer.main.get_command(app)
    map3d, stats = root.commands["map3d"], root.commands["stats"]
    shared = [p.name for p in map3d.params if p.name not in ("brain_name", "area", "labels")]
    assert [p.name for p in stats.params][-len(shared):] == shared
    chain, gsm = root.commands["lsm"].commands["chain"], root.commands["lsm"].commands["gsm"]
    assert {p.name for p in chain.params} - {p.name for p in gsm.params} == {
        "max_interval_mm", "allow_long_intervals"
    }  # fmt: skip


def test_split_list_takes_commas_and_repeats():
    from cortexgraph.cli.common import split_list

    assert split_list(None) == [] and split_list("") == []
    assert split_list("hOc1, hOc2,,") == ["hOc1", "hOc2"]
    assert split_list(["hOc1", "hOc2,hOc3"]) == ["hOc1", "hOc2", "hOc3"]


def test_option_group_declares_options_once():
    """Two commands share one group: each gets its options (values built by the group), in the
    order given, before the closing stage options."""
    from typer.testing import CliRunner

    from cortexgraph.cli.common import STAGE, command

    def scale(factor: float = typer.Option(2.0, "--factor"), offset: int = typer.Option(0)):
        return {"factor": factor, "offset": offset}

    demo = typer.Typer()
    seen = {}

    @command(demo, "one", ("scale", scale), STAGE)
    def one(value: float = typer.Argument(...), *, scale: dict, flags) -> None:
        seen["one"] = (value * scale["factor"] + scale["offset"], flags.wait_s, flags.overwrite)

    @command(demo, "two", ("scale", scale))
    def two(*, scale: dict) -> None:
        seen["two"] = scale

    runner = CliRunner()
    result = runner.invoke(demo, ["one", "1.5", "--factor", "4", "--offset", "1", "--wait", "7"])
    assert result.exit_code == 0, result.output
    assert seen["one"] == (7.0, 7.0, False)
    assert runner.invoke(demo, ["two"]).exit_code == 0 and seen["two"] == {"factor": 2.0, "offset": 0}
    names = [p.name for p in typer.main.get_command(demo).commands["one"].params]
    assert names == ["value", "factor", "offset", "root", "overwrite", "wait", "verbose", "debug"]
