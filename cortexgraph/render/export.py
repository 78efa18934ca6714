"""Per-vertex data for other tools: GIfTI labels and values, FreeSurfer annotations, coloured PLY.

All written atomically.

* ``.label.gii``: one ``NIFTI_INTENT_LABEL`` int32 array (N,) with a **label table** (key, name,
  RGBA); keys are area ids (0 = unlabelled, transparent).
* ``.func.gii``: float32 arrays (N,) of scalar values (probabilities, atlas maps, canonical
  coordinates).
* ``.annot``: the same labels as a FreeSurfer annotation (``nibabel.freesurfer.write_annot``; colour
  table RGBT with T = 0, unlabelled vertices = -1 "unknown"), for ``freeview`` / ``mris_*`` tools.
* ``.ply``: the mesh with per-vertex RGB colours (ParaView, MeshLab, Blender).

The vertex order is the graph's node order, which is the order of build-graph's midsurface
(``meshes/midsurface_<hemi>.surf.gii``), so these files pair with that surface. A GIfTI label file is the
GIfTI counterpart of a FreeSurfer annotation; nibabel, Connectome Workbench and freeview read it.
The GIfTI files name their hemisphere (``AnatomicalStructurePrimary`` ``CortexLeft`` /
``CortexRight``, ``structure=``) so Workbench pairs them with the right surface; label and scalar
files have no coordinates of their own. Label colours are the display colours of the pictures
(:func:`cortexgraph.data.colors.display_colours`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexgraph.data.colors import UNLABELLED_RGB
from cortexgraph.data.manifest import AreaTable
from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import atomic_path

if TYPE_CHECKING:
    from nibabel.gifti import GiftiImage

__all__ = [
    "area_label_table",
    "write_gifti_labels",
    "read_gifti_labels",
    "write_gifti_scalars",
    "write_freesurfer_annot",
]

LabelTable = Mapping[int, tuple[str, tuple[int, int, int]]]


def area_label_table(areas: AreaTable) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """``{area id: (name, rgb)}`` of every area, plus ``0: ("unlabelled", gray)``; the colours are
    the display colours of the pictures (:func:`cortexgraph.data.colors.display_colours`)."""
    from cortexgraph.data.colors import area_rgb

    colours = area_rgb(areas)
    table = {0: ("unlabelled", UNLABELLED_RGB)}
    table.update({a.id: (a.name, colours[a.id]) for a in areas.areas})
    return table


def write_gifti_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    table: LabelTable,
    *,
    structure: str | None = None,
) -> Path:
    """Write a ``.label.gii``: int32 labels (N,) and the label table ``{key: (name, rgb uint8)}``.

    Key 0 is written fully transparent (alpha 0), every other key opaque. Labels missing from the
    table raise DataFormatError. ``structure``: ``CortexLeft`` / ``CortexRight`` (GIfTI
    ``AnatomicalStructurePrimary``, so Workbench pairs the file with the right hemisphere).
    """
    import nibabel as nib

    from cortexgraph.meshes.io import gifti_structure_meta

    labels = np.asarray(labels).reshape(-1)
    unknown = sorted(set(np.unique(labels).tolist()) - set(int(k) for k in table))
    if unknown:
        raise DataFormatError(f"labels {unknown[:5]} are not in the label table")
    label_table = nib.gifti.GiftiLabelTable()
    for key in sorted(int(k) for k in table):
        name, rgb = table[key]
        label = nib.gifti.GiftiLabel(
            key=key,
            red=rgb[0] / 255.0,
            green=rgb[1] / 255.0,
            blue=rgb[2] / 255.0,
            alpha=0.0 if key == 0 else 1.0,
        )
        label.label = str(name)  # type: ignore[attr-defined]  # nibabel sets it outside __init__
        label_table.labels.append(label)
    meta = gifti_structure_meta(structure)
    array = nib.gifti.GiftiDataArray(
        labels.astype(np.int32),
        intent="NIFTI_INTENT_LABEL",
        datatype="NIFTI_TYPE_INT32",
        meta={"Name": "areas"},
    )
    image = nib.gifti.GiftiImage(
        darrays=[array], labeltable=label_table, meta=nib.gifti.GiftiMetaData(meta)
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


def read_gifti_labels(
    path: str | os.PathLike,
) -> tuple[np.ndarray, dict[int, tuple[str, tuple[int, int, int]]]]:
    """Read a ``.label.gii``: (int64 labels (N,), ``{key: (name, rgb uint8)}``)."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("label file not found", file=path)
    image = cast("GiftiImage", nib.load(path))
    arrays = image.get_arrays_from_intent("NIFTI_INTENT_LABEL")
    if len(arrays) != 1:
        raise DataFormatError("a label file needs exactly one LABEL array", file=path)
    table: dict[int, tuple[str, tuple[int, int, int]]] = {}
    for label in image.labeltable.labels:
        r, g, b = (int(round(c * 255.0)) for c in (label.red, label.green, label.blue))
        rgb = (r, g, b)
        table[int(label.key)] = (str(label.label), rgb)
    return np.asarray(arrays[0].data, dtype=np.int64), table


def write_gifti_scalars(
    path: str | os.PathLike,
    values: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    structure: str | None = None,
) -> Path:
    """Write a ``.func.gii``: one float32 array (N,) per column of ``values`` ((N,) or (N, C)), each
    named by ``names`` (GIfTI meta ``Name``); ``structure`` as in :func:`write_gifti_labels`."""
    import nibabel as nib

    from cortexgraph.meshes.io import gifti_structure_meta

    values = np.asarray(values, dtype=np.float32)
    columns = values.reshape(len(values), -1)
    names = list(names) if names is not None else [f"value{k}" for k in range(columns.shape[1])]
    if len(names) != columns.shape[1]:
        raise ValueError(f"{len(names)} names for {columns.shape[1]} columns")
    darrays = []
    for k in range(columns.shape[1]):
        darray = nib.gifti.GiftiDataArray(
            np.ascontiguousarray(columns[:, k]),
            intent="NIFTI_INTENT_NONE",
            datatype="NIFTI_TYPE_FLOAT32",
            meta={"Name": names[k]},
        )
        darrays.append(darray)
    path = Path(path)
    image = nib.gifti.GiftiImage(
        darrays=darrays, meta=nib.gifti.GiftiMetaData(gifti_structure_meta(structure))
    )
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


def write_freesurfer_annot(path: str | os.PathLike, labels: np.ndarray, table: LabelTable) -> Path:
    """Write a FreeSurfer ``.annot`` of labels (N,) with the label table ``{key: (name, rgb)}``.

    Key 0 becomes FreeSurfer's "unknown" (annotation value 0); the other keys are the colour table's
    entries in increasing key order.
    """
    import nibabel.freesurfer as fs

    labels = np.asarray(labels).reshape(-1)
    keys = sorted(int(k) for k in table if int(k) != 0)
    unknown = sorted(set(np.unique(labels).tolist()) - set(keys) - {0})
    if unknown:
        raise DataFormatError(f"labels {unknown[:5]} are not in the label table")
    lookup = np.full(max(keys + [int(labels.max(initial=0))]) + 1, -1, dtype=np.int64)
    lookup[keys] = np.arange(len(keys))
    index = np.where(labels > 0, lookup[np.clip(labels, 0, None)], -1)
    ctab = np.array([list(table[k][1]) + [0] for k in keys], dtype=np.int64).reshape(-1, 4)
    names = [table[k][0] for k in keys]
    path = Path(path)
    with atomic_path(path) as tmp:
        fs.write_annot(str(tmp), index, ctab, names, fill_ctab=True)
    return path
