"""Surface files: GIfTI (world mm, for neuroimaging tools) and PLY (for ParaView), written atomically.

GIfTI surfaces hold two data arrays: ``NIFTI_INTENT_POINTSET`` (float32 (N, 3) vertices in mm, RAS)
and ``NIFTI_INTENT_TRIANGLE`` (int32 (M, 3) faces), optionally followed by ``NIFTI_INTENT_LABEL``
(int32 (N,) area id per vertex). Standard metadata, so that Connectome Workbench, FreeSurfer
(freeview), nilearn and other GIfTI readers place and name the surface correctly:

* the vertices' coordinate system: ``DataSpace`` and ``TransformedSpace``
  ``NIFTI_XFORM_SCANNER_ANAT`` (millimetres in the brain's own frame, docs/conventions.md; not
  Talairach or MNI), identity ``MatrixData``;
* ``AnatomicalStructurePrimary`` ``CortexLeft`` / ``CortexRight`` (``structure=``, in the file's and
  the point set's metadata; :func:`hemisphere_structure` maps ``lh`` / ``rh``), with
  ``AnatomicalStructureSecondary`` (``MidThickness`` for a midsurface) and ``GeometricType``
  ``Anatomical`` (coordinates in mm, not inflated or spherical).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import atomic_path

if TYPE_CHECKING:
    from nibabel.gifti import GiftiImage

__all__ = [
    "write_gifti_surface",
    "read_gifti_surface",
    "read_gifti_vertex_labels",
    "write_ply",
    "hemisphere_structure",
    "STRUCTURES",
    "mesh_problem",
]

#: GIfTI ``AnatomicalStructurePrimary`` of the hemispheres (the names Connectome Workbench uses)
STRUCTURES = {"lh": "CortexLeft", "rh": "CortexRight"}
#: NIFTI_XFORM_SCANNER_ANAT: millimetres in the subject's own (here: the reconstruction's) frame
SCANNER_ANAT = 1


def hemisphere_structure(hemi: str | None) -> str | None:
    """``CortexLeft`` for ``lh``, ``CortexRight`` for ``rh``, None otherwise."""
    return STRUCTURES.get(str(hemi)) if hemi else None


def gifti_structure_meta(structure: str | None, secondary: str | None = None) -> dict[str, str]:
    """GIfTI metadata naming the anatomical structure (empty without a structure)."""
    meta = {}
    if structure:
        meta["AnatomicalStructurePrimary"] = structure
        if secondary:
            meta["AnatomicalStructureSecondary"] = secondary
    return meta


def mesh_problem(vertices: np.ndarray, faces: np.ndarray) -> str | None:
    """What makes ``(vertices, faces)`` no triangle mesh, in words, or None when it is one.

    Inputs: ``vertices`` (N, 3) positions, ``faces`` (M, 3) vertex indices (arrays). A mesh needs
    both shapes and every index in ``0..N-1``. The caller raises the error class that fits (a file
    it read: :class:`DataFormatError`; an argument: :class:`CortexgraphError`).
    """
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        return f"vertices must have shape (N, 3), got {vertices.shape}"
    if faces.ndim != 2 or faces.shape[1] != 3:
        return f"faces must have shape (M, 3), got {faces.shape}"
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        return "faces reference vertices that do not exist"
    return None


def _check(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    problem = mesh_problem(vertices, faces)
    if problem is not None:
        raise DataFormatError(problem)
    return vertices, faces


def write_gifti_surface(
    path: str | os.PathLike,
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    vertex_labels: np.ndarray | None = None,
    *,
    structure: str | None = None,
    secondary: str | None = None,
) -> Path:
    """Write a GIfTI surface (``.surf.gii``) atomically; vertices in world mm (module docstring).

    ``vertex_labels`` (N,) integer area ids, if given, are stored as a third, LABEL-intent array.
    ``structure``: ``CortexLeft`` / ``CortexRight`` (:func:`hemisphere_structure`) or None (a
    surface of both hemispheres or of one area); ``secondary``: e.g. ``MidThickness``.
    """
    import nibabel as nib

    vertices, faces = _check(vertices_mm, faces)
    meta = gifti_structure_meta(structure, secondary)
    points = nib.gifti.GiftiDataArray(
        np.asarray(vertices, dtype=np.float32),
        intent="NIFTI_INTENT_POINTSET",
        datatype="NIFTI_TYPE_FLOAT32",
        meta={**meta, "GeometricType": "Anatomical"},
    )
    points.coordsys = nib.gifti.GiftiCoordSystem(
        dataspace=SCANNER_ANAT, xformspace=SCANNER_ANAT, xform=np.eye(4)
    )
    triangles = nib.gifti.GiftiDataArray(
        np.asarray(faces, dtype=np.int32),
        intent="NIFTI_INTENT_TRIANGLE",
        datatype="NIFTI_TYPE_INT32",
    )
    darrays = [points, triangles]
    if vertex_labels is not None:
        vertex_labels = np.asarray(vertex_labels)
        if vertex_labels.shape != (len(vertices),):
            raise DataFormatError(
                f"vertex_labels must have shape ({len(vertices)},), got {vertex_labels.shape}"
            )
        darrays.append(
            nib.gifti.GiftiDataArray(
                vertex_labels.astype(np.int32),
                intent="NIFTI_INTENT_LABEL",
                datatype="NIFTI_TYPE_INT32",
            )
        )
    image = nib.gifti.GiftiImage(darrays=darrays, meta=nib.gifti.GiftiMetaData(meta))
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


def read_gifti_surface(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a GIfTI surface: (vertices float64 (N, 3) mm, faces int64 (M, 3))."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("surface file not found", file=str(path))
    image = cast("GiftiImage", nib.load(path))
    points = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")
    triangles = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")
    if len(points) != 1 or len(triangles) != 1:
        raise DataFormatError(
            "a GIfTI surface needs exactly one POINTSET and one TRIANGLE array",
            file=str(path),
        )
    vertices = np.asarray(points[0].data, dtype=np.float64)
    faces = np.asarray(triangles[0].data, dtype=np.int64)
    return _check(vertices, faces)


def read_gifti_vertex_labels(path: str | os.PathLike) -> np.ndarray:
    """The (N,) int64 per-vertex labels (LABEL intent array) of a GIfTI surface."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("surface file not found", file=str(path))
    labels = cast("GiftiImage", nib.load(path)).get_arrays_from_intent("NIFTI_INTENT_LABEL")
    if len(labels) != 1:
        raise DataFormatError(
            "the GIfTI surface has no (or several) LABEL arrays",
            file=str(path),
            fix="write it with vertex_labels",
        )
    return np.asarray(labels[0].data, dtype=np.int64)


def write_ply(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray | None = None,
) -> Path:
    """Write a binary little-endian PLY atomically (own writer).

    ``vertex_colors``: uint8 (N, 3) RGB or (N, 4) RGBA, or floats in [0, 1] (scaled to 0-255).
    """
    vertices, faces = _check(vertices, faces)
    n, m = len(vertices), len(faces)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in "xyz"]
    colors = None
    if vertex_colors is not None:
        colors = np.asarray(vertex_colors)
        if colors.ndim != 2 or colors.shape[0] != n or colors.shape[1] not in (3, 4):
            raise DataFormatError(f"vertex_colors must be (N, 3) or (N, 4), got {colors.shape}")
        if colors.dtype.kind == "f":
            colors = np.clip(np.round(colors * 255.0), 0, 255)
        colors = colors.astype(np.uint8)
        names = "rgba"[: colors.shape[1]]
        channel = {"r": "red", "g": "green", "b": "blue", "a": "alpha"}
        fields += [(channel[c], "u1") for c in names]
        header += [f"property uchar {channel[c]}" for c in names]
    header += [f"element face {m}", "property list uchar int vertex_indices", "end_header"]
    vertex_data = np.empty(n, dtype=fields)
    for k, name in enumerate("xyz"):
        vertex_data[name] = vertices[:, k]
    if colors is not None:
        for k, (name, _) in enumerate(fields[3:]):
            vertex_data[name] = colors[:, k]
    face_data = np.empty(m, dtype=[("count", "u1"), ("index", "<i4", (3,))])
    face_data["count"] = 3
    face_data["index"] = faces
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(("\n".join(header) + "\n").encode("ascii"))
            handle.write(vertex_data.tobytes())
            handle.write(face_data.tobytes())
    return path
