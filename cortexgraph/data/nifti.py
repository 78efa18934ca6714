"""Reading the voxels of a NIfTI image whose header has been validated."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from cortexgraph.errors import DataFormatError

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage
    from numpy.typing import DTypeLike


def nifti_data(
    image: SpatialImage, path: str | os.PathLike, fix: str, dtype: DTypeLike | None = None
) -> np.ndarray:
    """The voxels of ``image`` (read from ``path``) as an array of ``dtype`` (default: the file's).

    Raises DataFormatError naming ``path``, with ``fix``, when the data cannot be read (a truncated
    or corrupt file: nibabel and zlib raise several exception types).
    """
    try:
        return np.asarray(image.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel and zlib raise several types for corrupt files
        raise DataFormatError(
            f"unreadable NIfTI data ({type(exc).__name__}: {exc})", file=path, fix=fix
        ) from None
