"""Fixtures of the LSM tests: a writable copy of the tiny phantom cohort (outputs go into the cohort's
derivatives folder, and the session's ``tiny_cohort`` is read-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def cohort(tiny_cohort, tmp_path) -> Path:
    """A private copy of the tiny phantom (brain B01 and the cohort files; about 12 MB)."""
    target = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, target, ignore=shutil.ignore_patterns("B03", "B07"))
    return target


@pytest.fixture
def cli_exit_code():
    """``f(error_class) -> int``: the exit status the CLI gives for an error class (the class's
    ``exit_code``, 3 for a busy stage and 4 for a stale upstream, once ``cli.common.reports_errors``
    uses it; 2 for every CortexgraphError before that)."""
    import typer

    from cortexgraph.cli.common import reports_errors

    def code(error_class) -> int:
        @reports_errors
        def fail():
            raise error_class("x")

        with pytest.raises(typer.Exit) as info:
            fail()
        assert info.value.exit_code in (2, error_class.exit_code)
        return info.value.exit_code

    return code
