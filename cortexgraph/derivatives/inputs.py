"""What a stage reads from a brain's folder, as stage-key material.

A stage depends on a few manifest *values* (section thickness, spacings, the section rows it uses)
and on the *files* it reads (masks, images, annotations, coordinate maps, transforms). Values go into
the stage's parameters, files into its inputs, so that an edit only invalidates the stages that read
what was edited: a new annotation does not make ``build-graph`` stale (it reads masks only), adding a
brain to ``cohort.toml`` does not make another brain's stages stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from cortexgraph.data.manifest import Brain

__all__ = ["SECTION_FILE_KINDS", "brain_inputs"]

#: Section file kinds, as columns of sections.tsv (``annotation`` covers label images and contours).
SECTION_FILE_KINDS = ("image", "mask", "annotation", "coords")
_COLUMNS = {"image": ("image",), "mask": ("mask",), "annotation": ("annotation", "contours"),
            "coords": ("coords",)}  # fmt: skip


def brain_inputs(
    brain: Brain,
    kinds: Sequence[str],
    *,
    sections: Iterable[int] | None = None,
    transforms: bool = True,
    exclusion_mask: bool = False,
) -> tuple[dict, list[Path]]:
    """Manifest values and files of ``brain`` that a stage reading ``kinds`` depends on.

    Parameters
    ----------
    brain : the brain.
    kinds : section file kinds read (``image``, ``mask``, ``annotation``, ``coords``).
    sections : restrict to these section numbers (default: every row of sections.tsv).
    transforms : the stage uses the transforms (transforms.tsv becomes an input).
    exclusion_mask : the stage reads the brain's exclusion mask (when it has one).

    Returns
    -------
    (parameters, files): ``parameters`` holds the brain id, section thickness, digitization step,
    shrinkage factor, base section, the spacings of ``kinds`` and a SHA-256 of the rows used
    (``section_rows``); ``files`` every file named by those rows, plus transforms.tsv and the
    exclusion mask when asked for.
    """
    unknown = set(kinds) - set(SECTION_FILE_KINDS)
    if unknown:
        raise ValueError(f"unknown section file kinds {sorted(unknown)}")
    wanted = None if sections is None else {int(s) for s in sections}
    columns = [c for k in kinds for c in _COLUMNS[k]]
    rows, files = [], []
    for record in brain.sections:
        if wanted is not None and record.section not in wanted:
            continue
        values = [getattr(record, c) for c in columns]
        rows.append([record.section, record.missing, record.mirrored, record.excluded, *values])
        if record.missing:
            continue
        files += [brain.path(v) for v in values if v]
    spacing = {
        "image": brain.image_spacing_um,
        "mask": brain.mask_spacing_um,
        "annotation": brain.annotation_spacing_um,
        "coords": brain.coords_spacing_um,
    }
    rows_text = json.dumps([columns, rows], separators=(",", ":"))
    parameters = {
        "brain": brain.id,
        "section_thickness_um": brain.thickness_um,
        "digitization_step": brain.digitization_step,
        "shrinkage_factor": brain.shrinkage_factor,
        "base_section": brain.base_section,
        "spacing_um": {k: spacing[k] for k in kinds},
        "section_rows": hashlib.sha256(rows_text.encode()).hexdigest(),
    }
    if transforms:
        files.append(brain.transform_table_path)
    if exclusion_mask and brain.exclusion_mask:
        files.append(brain.path(brain.exclusion_mask))
        parameters["exclusion_mask"] = brain.exclusion_mask
    return parameters, files
