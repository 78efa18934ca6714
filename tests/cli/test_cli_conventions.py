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
