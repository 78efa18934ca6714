"""Helpers that break one thing in a copy of a cohort (for the bad-input battery and check tests).

Every helper edits files in place under a cohort folder that the test owns (a copy of the tiny
phantom). None of them touches anything outside the folder it is given, except :func:`outside_file`,
which writes into the ``outside`` folder the test names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import tomli_w

from cortexgraph.data.raster import Raster, write_raster

DELETE = object()
"""Value for :func:`edit_toml` that removes a key."""


# -- copies and snapshots ---------------------------------------------------------------------------
def copy_cohort(source: Path, target: Path, brain: str = "B01") -> Path:
    """Copy a cohort for a test: the full ``brain``, the manifests and tables of the other brains,
    the atlas and areas; no ground truth, no derivatives."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skip = {"ground_truth", "derivatives"} if here == source else set()
        if here.parent == source and here.name != brain and (here / "brain.toml").is_file():
            skip |= {n for n in names if (here / n).is_dir()}
            skip |= {n for n in names if n.endswith(".nii.gz")}
        return skip

    shutil.copytree(source, target, ignore=ignore)
    return target


def snapshot(folder: Path, exclude: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of every file (and ``'<dir>'``/``'<link>'`` markers) under
    ``folder``, leaving out ``exclude``."""
    out = {}
    if not os.path.lexists(folder):
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if exclude is not None and (here == exclude or exclude in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames:
            if exclude is None or here / name != exclude:
                out[str((here / name).relative_to(folder))] = "<dir>"
        for name in filenames:
            path = here / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = "<link>" + os.readlink(path)
            else:
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# -- manifests and tables ---------------------------------------------------------------------------
def edit_toml(path: Path, **changes) -> None:
    """Set (or with :data:`DELETE`, remove) keys; ``a__b`` names key ``b`` of table ``a``."""
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    for key, value in changes.items():
        parts = key.split("__")
        holder = table
        for part in parts[:-1]:
            holder = holder.setdefault(part, {})
        if value is DELETE:
            holder.pop(parts[-1], None)
        else:
            holder[parts[-1]] = value
    path.write_text(tomli_w.dumps(table))


def append_text(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def replace_text(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def read_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def write_rows(path: Path, rows: list[list[str]]) -> None:
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")


def row_index(rows: list[list[str]], first: str) -> int:
    """Index of the row whose first field is ``first``."""
    for k, row in enumerate(rows):
        if row and row[0] == first:
            return k
    raise AssertionError(f"no row starting with {first!r}")


def set_cell(path: Path, first: str, column: str, value: str) -> None:
    """Set one cell of a TSV: the row whose first field is ``first``, the column named ``column``."""
    rows = read_rows(path)
    rows[row_index(rows, first)][rows[0].index(column)] = value
    write_rows(path, rows)


def drop_column(path: Path, column: str) -> None:
    rows = read_rows(path)
    k = rows[0].index(column)
    write_rows(path, [r[:k] + r[k + 1 :] for r in rows])


def rename_column(path: Path, column: str, new: str) -> None:
    rows = read_rows(path)
    rows[0][rows[0].index(column)] = new
    write_rows(path, rows)


def transform_row(path: Path, moving: int, edit) -> None:
    """Apply ``edit(matrix 3x3) -> matrix`` to the row of transforms.tsv whose moving section is
    ``moving``."""
    rows = read_rows(path)
    k = row_index(rows, str(moving))
    matrix = np.array([float(v) for v in rows[k][2:11]]).reshape(3, 3)
    rows[k][2:11] = [repr(float(v)) for v in np.asarray(edit(matrix)).ravel()]
    write_rows(path, rows)


# -- rasters ----------------------------------------------------------------------------------------
def raster_level0(path: Path) -> tuple[np.ndarray, float, str, dict]:
    """(level 0, spacing_um, kind, file attributes) of a raster."""
    with Raster(path) as raster:
        data = raster.read_level(0)
        attrs = {
            k: v for k, v in raster.handle.attrs.items() if k not in ("format", "format_version")
        }
        return data, raster.spacing_um, raster.kind, attrs


def rewrite_raster(path: Path, edit=None, *, spacing_um=None, kind=None, attrs=None, **kw) -> None:
    """Write the raster again with ``edit(level 0) -> array`` applied and any header changed."""
    data, spacing, old_kind, old_attrs = raster_level0(path)
    if edit is not None:
        data = edit(data)
    attrs_all = dict(old_attrs)
    attrs_all.pop("kind", None)
    attrs_all.update(attrs or {})
    write_raster(
        path,
        data,
        spacing if spacing_um is None else spacing_um,
        kind=old_kind if kind is None else kind,
        attrs=attrs_all,
        **kw,
    )


def write_contiguous_raster(path: Path, edit=None) -> None:
    """The same raster with every level stored contiguously (unchunked, uncompressed: legal HDF5)."""
    with Raster(path) as raster:
        levels = [(raster.read_level(lv.index), lv.spacing_um) for lv in raster.levels]
        attrs = dict(raster.handle.attrs.items())
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle.attrs.update(attrs)
        for k, (data, spacing) in enumerate(levels):
            if edit is not None:
                data = edit(data)
            dataset = handle.create_dataset(f"levels/{k}", data=data)
            dataset.attrs["spacing_um"] = spacing


def h5_edit(path: Path, edit) -> None:
    """Open the HDF5 file read-write and call ``edit(handle)``."""
    with h5py.File(path, "r+") as handle:
        edit(handle)


def corrupt_first_chunk(path: Path) -> None:
    """Overwrite the first bytes of the first chunk of level 0 (a decompression error)."""
    with h5py.File(path, "r") as handle:
        info = handle["levels/0"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[info.byte_offset : info.byte_offset + 32] = b"\xff" * 32
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- NIfTI ------------------------------------------------------------------------------------------
def edit_nifti(path: Path, data=None, affine=None, dtype=None) -> None:
    """Rewrite a NIfTI with ``data(array) -> array`` and/or ``affine(4x4) -> 4x4`` applied."""
    image = nib.load(str(path))
    array = np.asarray(image.dataobj)
    matrix = image.affine.copy()
    if data is not None:
        array = data(array)
    if affine is not None:
        matrix = affine(matrix)
    if dtype is not None:
        array = array.astype(dtype)
    out = nib.Nifti1Image(array, matrix)
    out.header.set_data_dtype(array.dtype)
    nib.save(out, str(path))


def shift_affine(dx=0.0, dy=0.0, dz=0.0):
    def edit(affine):
        out = affine.copy()
        out[:3, 3] += (dx, dy, dz)
        return out

    return edit


def singular_affine(affine):
    """The third voxel axis squashed to 1e-12 mm (nibabel refuses to save an exactly singular one)."""
    out = affine.copy()
    out[:3, 2] *= 1e-12
    return out


def outside_file(outside: Path, name: str, source: Path) -> Path:
    """A copy of ``source`` in the folder ``outside`` (beside the cohort); returns its path."""
    outside.mkdir(parents=True, exist_ok=True)
    target = outside / name
    shutil.copyfile(source, target)
    return target
