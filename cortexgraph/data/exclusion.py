"""The exclusion mask of a brain: a 3D NIfTI in the brain's world mm marking non-cortical gray matter.

:func:`read_exclusion_mask` is the validated reader (docs/data-format.md, "Exclusion mask"): a readable
3D image with a finite, non-singular affine; integer or boolean voxels >= 0 (nonzero = excluded), or
floating-point voxels that are exactly 0 or 1 (many tools save masks as float); at least one nonzero
voxel. Whether the mask lies on the reconstructed tissue is checked by ``cortexgraph check``
(:mod:`cortexgraph.data.check`), which knows the sections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexgraph.data.nifti import nifti_data
from cortexgraph.errors import DataFormatError

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

FIX_ROLE = (
    "give a 3D NIfTI mask in the brain's world mm (nonzero = non-cortical gray matter), or remove "
    "exclusion_mask from brain.toml to use the automatic method"
)


def read_exclusion_mask(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The validated exclusion mask: (bool (X, Y, Z) array, 4x4 voxel -> world mm affine).

    Raises DataFormatError naming the file for: a missing or unreadable file, not 3 dimensions, a
    singular or not finite affine, negative, NaN or fractional values, no nonzero voxel.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("exclusion mask not found", file=path, fix=FIX_ROLE)
    try:
        image = cast("SpatialImage", nib.load(str(path)))
        shape = tuple(int(n) for n in image.shape)
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises several types for files that are not NIfTI
        raise DataFormatError(
            f"unreadable NIfTI ({type(exc).__name__}: {exc})", file=path, fix=FIX_ROLE
        ) from None
    if len(shape) != 3 or min(shape) == 0:
        raise DataFormatError(
            f"the exclusion mask must be 3D, has shape {shape}", file=path, fix=FIX_ROLE
        )
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise DataFormatError("the exclusion mask's affine is not finite", file=path, fix=FIX_ROLE)
    volume = abs(float(np.linalg.det(affine[:3, :3])))
    if volume < 1e-9:
        raise DataFormatError(
            f"the exclusion mask's affine is singular (voxel volume {volume:.3g} mm^3)",
            file=path,
            fix="save the mask with its voxel-to-world-mm affine",
        )
    data = nifti_data(image, path, "the file is truncated or corrupt; save the mask again")
    if data.dtype.kind == "b":
        mask = data.astype(bool)
    elif data.dtype.kind in "ui":
        if data.dtype.kind == "i" and data.min(initial=0) < 0:
            raise DataFormatError(
                "the exclusion mask has negative values", file=path, fix="use 0 and 1 (or >= 0)"
            )
        mask = data != 0
    elif data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise DataFormatError(
                "the exclusion mask has NaN or infinite values", file=path, fix="use 0 and 1"
            )
        fractional = (data != 0) & (data != 1)
        if fractional.any():
            raise DataFormatError(
                f"the exclusion mask is not binary: {int(fractional.sum())} voxels hold values "
                f"other than 0 and 1 (e.g. {float(data[fractional][0]):g})",
                file=path,
                fix="threshold the mask to 0 and 1 (a probability map is not a mask)",
            )
        mask = data == 1
    else:
        raise DataFormatError(
            f"the exclusion mask has dtype {data.dtype}, not numbers", file=path, fix=FIX_ROLE
        )
    if not mask.any():
        raise DataFormatError(
            "the exclusion mask is empty (no nonzero voxel)",
            file=path,
            fix="mark the non-cortical gray matter, or remove exclusion_mask from brain.toml",
        )
    return mask, affine
