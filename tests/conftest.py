"""Project-wide fixtures.

``tiny_cohort``: the phantom cohort of the ``tiny`` preset (brains B01, B03, B07; occipital slab),
generated once per test session with seed 0. Tests must treat it as read-only; copy it
(``shutil.copytree``) to modify it.

``benchmark_module``: imports a script of benchmarks/ (not a package) by name, for the tests of
what the benchmarks compute.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_module():
    """``load(name)`` imports ``benchmarks/<name>.py`` as module ``name`` (benchmarks/ on sys.path
    while it loads, for its own ``import reproduce``; registered in sys.modules, where dataclasses
    look their module up)."""

    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(BENCHMARKS))
        return module

    return load


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Path of the tiny phantom cohort (generated once per session, seed 0)."""
    from cortexgraph.synth.cohort import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("phantom") / "tiny", preset="tiny", seed=0)
