from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.transforms import (
    apply_transform,
    central_section,
    compose_to_base,
    invert_rigid,
    is_rigid,
    mirror_matrix,
    rigid_matrix,
    rigidity_error,
    rotation_about,
)
from cortexgraph.errors import DataFormatError


def random_chain(rng, sections):
    truth = {
        s: rigid_matrix(rng.uniform(-np.pi, np.pi), *rng.uniform(-20, 20, 2)) for s in sections
    }
    # truth[s] maps aligned coordinates -> raw section s; consecutive: raw s -> raw t
    consecutive = {
        (a, b): truth[b] @ invert_rigid(truth[a])
        for a, b in zip(sections[:-1], sections[1:], strict=True)
    }
    return truth, consecutive


def test_compose_and_invert_round_trip_to_1e9():
    rng = np.random.default_rng(3)
    sections = list(range(10, 500, 15))
    truth, consecutive = random_chain(rng, sections)
    base = central_section(sections)
    to_base = compose_to_base(sections, consecutive, base)
    points = rng.uniform(-50, 50, (100, 2))
    for s in sections:
        # raw section s -> base raw coordinates equals truth[base] @ truth[s]^-1
        expected = truth[base] @ invert_rigid(truth[s])
        assert np.abs(to_base[s] - expected).max() < 1e-9
        back = apply_transform(invert_rigid(to_base[s]), apply_transform(to_base[s], points))
        assert np.abs(back - points).max() < 1e-9
    assert np.allclose(to_base[base], np.eye(3))


def test_mirrored_section_is_reflected_first():
    sections = [1, 2, 3]
    consecutive = {(1, 2): np.eye(3), (2, 3): np.eye(3)}
    width = 10.0
    to_base = compose_to_base(sections, consecutive, 2, mirror={3: mirror_matrix(width)})
    assert np.allclose(apply_transform(to_base[3], [[1.0, 4.0]]), [[9.0, 4.0]])
    assert np.linalg.det(to_base[3][:2, :2]) < 0
    assert np.allclose(invert_rigid(to_base[3]) @ to_base[3], np.eye(3))


def test_broken_chain_names_the_section():
    with pytest.raises(DataFormatError, match="no transform from section 2 to section 3"):
        compose_to_base([1, 2, 3], {(1, 2): np.eye(3)}, 1)
    with pytest.raises(DataFormatError, match="not finite"):
        compose_to_base([1, 2], {(1, 2): np.full((3, 3), np.nan)}, 2)


def test_rigidity():
    assert is_rigid(rigid_matrix(0.3, 1, 2))
    assert is_rigid(rotation_about(1.0, (5, 5)))
    scaled = rigid_matrix(0.3, 1, 2)
    scaled[:2, :2] *= 1.01
    assert not is_rigid(scaled)
    assert rigidity_error(scaled) == pytest.approx(0.0201, rel=1e-3)
    assert not is_rigid(mirror_matrix(3.0))  # a reflection is not a proper rigid transform
    assert rigidity_error(np.full((3, 3), np.inf)) == np.inf
    assert np.allclose(
        apply_transform(rotation_about(np.pi / 2, (1, 1)), [[2.0, 1.0]]), [[1.0, 2.0]]
    )
