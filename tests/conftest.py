"""Project-wide fixtures.

``tiny_cohort``: the phantom cohort of the ``tiny`` preset (brains B01, B03, B07; occipital slab),
generated once per test session with seed 0. Tests must treat it as read-only; copy it
(``shutil.copytree``) to modify it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Path of the tiny phantom cohort (generated once per session, seed 0)."""
    from cortexgraph.synth.cohort import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("phantom") / "tiny", preset="tiny", seed=0)
