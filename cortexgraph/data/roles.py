"""Roles of annotated sections: which ones exist for training, and which are held out for testing.

The split is deterministic and spread over the stack (Schiffer, PhD thesis, Sect. 6.1.2): the
annotated sections of a brain are sorted by number and every fifth one is a test section, so test
sections cover each brain about uniformly instead of clustering where a random draw puts them. The
patch encoder, the node labels of the GNN and the pictures that mark section roles all use it.
"""

from __future__ import annotations

import numpy as np

from cortexgraph.data.manifest import Brain
from cortexgraph.data.stack import SectionStack

__all__ = ["annotated_sections", "split_sections"]


def annotated_sections(brain: Brain, stack: SectionStack) -> list[int]:
    """Annotated sections of a brain that are available (not missing, not excluded) and have an
    image, sorted by number: the sections the patch split and the node labels use."""
    available = set(stack.sections)
    return sorted(s for s in brain.annotated_sections if s in available and brain.section(s).image)


def split_sections(
    section_numbers, every: int = 5, offset: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test split of annotated sections.

    Parameters
    ----------
    section_numbers : annotated section numbers of one brain (duplicates are merged).
    every : every ``every``-th section in increasing order is a test section (5: an 80/20 split).
    offset : position of the test section inside each run of ``every`` (0-based); default
        ``every - 1``, i.e. the 5th, 10th, 15th, ... section. The thesis says "every fifth section"
        without fixing where the count starts; this default is cortexgraph's choice.

    Returns
    -------
    (train_sections, test_sections), both sorted int64 arrays. With ``n`` sections there are
    ``floor((n - offset - 1) / every) + 1`` test sections (``n // every`` for the default offset).
    """
    if every < 2:
        raise ValueError(f"every must be >= 2, got {every}")
    offset = every - 1 if offset is None else int(offset)
    if not 0 <= offset < every:
        raise ValueError(f"offset must lie in [0, {every}), got {offset}")
    numbers = np.unique(np.asarray(section_numbers, dtype=np.int64).ravel())
    is_test = (np.arange(numbers.size) % every) == offset
    return numbers[~is_test], numbers[is_test]
