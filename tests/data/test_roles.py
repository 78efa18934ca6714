"""The deterministic section split (cortexgraph.data.roles)."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.roles import annotated_sections, split_sections


def test_split_every_fifth_section():
    rng = np.random.default_rng(0)
    sections = rng.permutation(np.arange(1, 2001, 15))[:100]
    train, test = split_sections(np.concatenate([sections, sections[:7]]), every=5)
    ordered = np.sort(sections)
    assert len(test) == 20 and len(train) == 80  # exact 80/20 for 100 sections
    np.testing.assert_array_equal(test, ordered[4::5])  # the 5th, 10th, ... section
    assert set(train) | set(test) == set(sections) and not set(train) & set(test)
    _, first = split_sections(sections, every=5, offset=0)
    np.testing.assert_array_equal(first, ordered[0::5])
    _, few = split_sections([3, 1, 2, 4], every=5)
    assert few.size == 0  # fewer than five sections: no test section with the default offset
    with pytest.raises(ValueError):
        split_sections(sections, every=5, offset=5)


def test_annotated_sections_skip_missing_excluded_and_imageless(tiny_cohort):
    from cortexgraph.data.manifest import find_brain
    from cortexgraph.data.stack import SectionStack

    brain = find_brain("B01", tiny_cohort)
    stack = SectionStack(brain)
    annotated = annotated_sections(brain, stack)
    assert annotated == sorted(annotated) and len(annotated) >= 5
    usable = {r.section for r in brain.sections if not r.missing and not r.excluded and r.image}
    assert set(annotated) == set(brain.annotated_sections) & usable & set(stack.sections)
