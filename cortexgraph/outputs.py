"""Output layer: atomic writes.

Every file cortexgraph writes goes through :func:`atomic_path` (write to a temporary file in the same
folder, then ``os.replace``), so an interrupted run never leaves a half-written file that a later stage
would trust. What made an output, and whether it may be reused, is the stage contract's business
(:mod:`cortexgraph.derivatives`: stage records with keys).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file keeps the final suffix (``.nii.gz``, ``.h5``...) so writers that infer the
    format from the name work. On an exception the temporary file is removed and ``path`` is untouched.
    The output gets the permissions of a normally created file (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give the output the usual umask permissions
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy scalars converted)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def plain_json(obj: Any) -> Any:
    """``obj`` as it reads back from the JSON :func:`write_json_atomic` writes: numpy values and
    paths converted as there, tuples as lists, keys as strings (for results sent between
    processes)."""
    return json.loads(json.dumps(obj, default=_json_default))


def save_figure(fig: Any, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix; ``dpi``: dots per
    inch, None: matplotlib's default) and close it; return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return path


def write_nifti_mm(path: str | os.PathLike, data: Any, affine: Any) -> Path:
    """Write a volume as NIfTI-1 to ``path`` atomically; return the path.

    Inputs: ``data``, the voxel array (its dtype is stored as is); ``affine``, the 4x4 voxel ->
    world mm matrix. The header's spatial unit is mm, and the qform and sform both hold ``affine``
    with code 1 (``NIFTI_XFORM_SCANNER_ANAT``: the brain's own mm frame), so every viewer places
    the volume the same way. Output: ``path`` (``.nii`` or ``.nii.gz``, from the suffix).
    """
    import nibabel as nib

    with atomic_path(path) as tmp:
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, str(tmp))
    return Path(path)


def write_h5_dataset(group: Any, name: str, **create: Any) -> Any:
    """Create an HDF5 dataset in ``group`` (an open h5py File or Group) and flush the file.

    ``create`` is passed to ``h5py.Group.create_dataset``. Without the flush, HDF5 allocates a
    chunked dataset's chunks in the file when the dataset is closed, which is when Python lets go of
    it: normally at once, later when something holds a reference (Dask's worker profiler holds
    frames). The file's bytes then depend on timing. Flushing after each dataset places the chunks in
    the order the datasets are written, so the same arrays always give the same bytes.
    Returns the dataset (to set its attributes or write it tile by tile; call ``flush`` again after).
    """
    dataset = group.create_dataset(name, **create)
    group.file.flush()
    return dataset


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
