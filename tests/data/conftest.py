from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from brain_factory import make_brain  # noqa: E402


@pytest.fixture(scope="session")
def _valid_brain_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid-cohort")
    make_brain(root)
    return root


@pytest.fixture
def valid_cohort(_valid_brain_template, tmp_path) -> Path:
    """A fresh copy of a small valid cohort (one brain B01) that a test may break."""
    root = tmp_path / "cohort"
    shutil.copytree(_valid_brain_template, root)
    return root
