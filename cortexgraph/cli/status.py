"""``cortexgraph status [BRAIN...]``: every stage of every brain as done, stale, missing or running."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cortexgraph.cli.common import LOGGING, RootOption, command, console, json_option

_STYLE = {"done": "green", "stale": "yellow", "missing": "dim", "running": "cyan", "unused": "dim"}


def register(app: typer.Typer) -> None:
    @command(app, "status", LOGGING)
    def status(
        brains: list[str] = typer.Argument(
            None, metavar="BRAINS", help="Brains to show (default: all)."
        ),
        root: Path = RootOption,
        as_json: bool = json_option("the states"),
        *,
        verbose: bool,
    ) -> None:
        """Show every stage of the cohort's brains: done, stale (with what changed), missing,
        running; and the model runs and encoders that exist. Computes nothing.

        Exit status 0 when every listed stage is done (or an unused model of an LSM interval
        that its run's plan dropped), 1 when some are stale, missing or running.
        """
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.data.names import check_name
        from cortexgraph.derivatives.status import cohort_status

        cohort = find_cohort(root)
        for brain in brains or []:
            check_name(brain, "brain id")
            cohort.brain(brain)  # a clear error for a brain that is not in the cohort
        result = cohort_status(cohort, list(brains or []) or None)
        states = result["cohort"] + [s for rows in result["brains"].values() for s in rows]
        if as_json:
            payload = {
                "cohort": [s.as_dict() for s in result["cohort"]],
                "brains": {b: [s.as_dict() for s in rows] for b, rows in result["brains"].items()},
                "runs": result["runs"],
                "encoders": result["encoders"],
            }
            typer.echo(json.dumps(payload, indent=2))
        else:
            _print(result)
        if any(s.state not in ("done", "unused") for s in states):
            raise typer.Exit(code=1)


def _print(result: dict) -> None:
    def show(title: str, rows) -> None:
        console.print(f"[bold]{title}[/]", highlight=False)
        if not rows:
            console.print("  (nothing yet)")
        for state in rows:
            name = state.label.split("/", 1)[-1]
            style = _STYLE.get(state.state, "")
            line = f"  {name:<40} [{style}]{state.state:<8}[/]"
            if state.state == "done":
                line += f" {state.finished} ({state.seconds:.0f} s)"
            elif state.state == "stale":
                more = f" (+{len(state.reasons) - 1} more)" if len(state.reasons) > 1 else ""
                line += f" {state.reasons[0]}{more}; update: {state.command}"
            elif state.state == "missing":
                line += f" run: {state.command}"
            else:
                line += f" {'; '.join(state.reasons)}"
            console.print(line, highlight=False, soft_wrap=True)

    show("cohort", result["cohort"])
    for brain, rows in result["brains"].items():
        show(brain, rows)
    console.print(
        f"model runs: {', '.join(result['runs']) or 'none'}; encoders: "
        f"{', '.join(result['encoders']) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
