"""3D area maps of one brain: read per-section labels of a source, build the map, write it.

Label sources (docs/derivatives.md, "Section label images")
    * ``gnn-<run>``: a model run's projected labels (``cortexgraph project``), uint16 area ids in the
      raw section pixel frame;
    * ``lsm-<name>`` / ``gsm-<name>``: one area's predictions of a segmentation model run
      (``cortexgraph lsm predict``; class 3 = the area);
    * ``truth``: the phantom's full labels ``<cohort>/ground_truth/<brain>/labels/sNNNN.h5``;
    * ``annotation``: the brain's own annotations (label images or contours).

    A *complete* source labels every area on its sections, so a section without the area says the
    area is absent there. Annotations are partial (an expert draws some areas per section), so a
    section counts for an area only where that area was drawn; the other planes are gaps.

Geometry
    Sections go to the reconstruction's world frame through ``SectionStack.section_to_world``
    (the composed rigid transforms to the base section, mirroring included), which is affine in
    the pixel index, so each section gets one 3x3 matrix pixel ``(column, row, 1)`` -> world
    ``(x_mm, z_mm, 1)``. Sections flagged excluded or missing in ``sections.tsv`` and those the
    user excludes are gaps. The map's voxels lie on the lattice of the stacked tissue volume
    (:func:`cortexgraph.reconstruct.volume.stack_tissue_volume`: same origin and voxel size) and
    the volume is cropped to the area's bounding box (with a margin for the filters and, along
    y, up to the next labelled section on either side, so the area can end half-way there).

Each labelled section stands for the slab half-way to its labelled neighbours: the area ends
half-way between a section that shows it and one that does not, and is extended by half the
median section interval of the source beyond the first and the last labelled section that shows
it (:func:`cortexgraph.maps3d.build.end_extension_planes`).

Outputs (:func:`write_area_map`; the stage :func:`cortexgraph.maps3d.stage.map3d_area` writes them
to ``<brain derivatives>/maps3d/<source>/``)::

    <area>.nii.gz              uint8 area map (1 inside), world affine
    <area>.gii / .ply          full-resolution surface (world mm)
    <area>_preview.gii / .ply  preview surface
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexgraph.data.manifest import Brain
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.maps3d.build import (
    area_surfaces,
    build_area_map,
    end_extension_planes,
    median_size_for_voxel,
    preview_factor_for_voxel,
)

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

__all__ = [
    "AreaNotLabelledError",
    "SOURCE_TRUTH",
    "SOURCE_ANNOTATION",
    "AreaMap",
    "label_source",
    "section_pixel_to_world",
    "lattice_origin_mm",
    "map_area",
    "write_area_map",
    "read_area_map",
    "remove_workdir",
]

SOURCE_TRUTH = "truth"
SOURCE_ANNOTATION = "annotation"
#: smallest default voxel: the published 20 um (Schiffer et al. 2021, NeuroImage, Sect. 2.8)
MIN_DEFAULT_VOXEL_MM = 0.02
#: margin (voxels) around the area's bounding box beyond the median half-width: Gaussian halo of
#: the surface smoothing (4 sigma) and the zero padding of marching cubes
_MARGIN_VOX = 6


class AreaNotLabelledError(CortexgraphError):
    """The label source does not show the area on any usable section."""


@dataclass
class LabelSource:
    """Where the section labels of one source are and how to read them.

    ``readers[s]()`` returns ``(labels, spacing_um)`` of section ``s`` (uint area ids, raw pixel
    frame); ``complete`` is True when absence of an area on a section means the area is absent.
    """

    name: str
    readers: dict[int, Callable[[], tuple[np.ndarray, float]]]
    complete: bool
    location: Path
    skipped: dict[str, list[int]] = field(default_factory=dict)
    upstream: list = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)


@dataclass
class AreaMap:
    """An area map and its surfaces (world mm), with what was measured while building it."""

    area_id: int
    area_name: str
    source: str
    mask: np.ndarray
    affine: np.ndarray
    vertices_mm: np.ndarray
    faces: np.ndarray
    preview_vertices_mm: np.ndarray
    preview_faces: np.ndarray
    info: dict


def _raster_reader(path: Path) -> Callable[[], tuple[np.ndarray, float]]:
    def read() -> tuple[np.ndarray, float]:
        with Raster(path) as raster:
            return raster.read_level(0), raster.spacing_um

    return read


def _truth_folder(brain: Brain) -> Path:
    return brain.ground_truth / "labels"


def _section_of(name: str) -> int | None:
    stem = Path(name).name
    if stem.startswith("s") and stem.endswith(".h5") and stem[1:-3].isdigit():
        return int(stem[1:-3])
    return None


def label_source(
    brain: Brain,
    stack: SectionStack,
    source: str,
    exclude_sections: Iterable[int] = (),
    area: int | None = None,
) -> LabelSource:
    """The labelled sections of ``source`` that can be used (available, not excluded).

    Parameters
    ----------
    brain, stack : the brain and its sections (``stack.sections``: not missing, not excluded).
    source : ``truth`` (the phantom's full labels), ``annotation`` (the brain's own annotations),
        ``gnn-<run>`` (a model run's projected labels, stage ``project@gnn-<run>``), or
        ``lsm-<name>`` / ``gsm-<name>`` (one area's predictions of a segmentation model run, stage
        ``lsm-predict@<name>@<area>``: needs ``area``).
    exclude_sections : sections to leave out in addition to those flagged in ``sections.tsv``.
    area : the area id (LSM sources hold one area each; pixels of class 3 are the area).

    Returns
    -------
    LabelSource
        ``skipped`` lists the labelled sections left out: ``flagged`` (missing or excluded in
        ``sections.tsv``) and ``user`` (``exclude_sections``); ``upstream`` the stage executions
        whose outputs it reads and ``inputs`` the other files (for the stage key of a consumer).
    """
    from cortexgraph.data.names import slug
    from cortexgraph.derivatives import Derivatives, StageId
    from cortexgraph.derivatives.inputs import brain_inputs

    usable = set(stack.sections)
    user = {int(s) for s in exclude_sections}
    listed = [r.section for r in brain.sections]
    unknown = sorted(user - set(listed))
    if unknown:
        raise DataFormatError(
            f"--exclude-sections names section(s) {', '.join(map(str, unknown[:10]))} that "
            f"brain {brain.id} does not have (its sections: {listed[0]}..{listed[-1]}, "
            f"{len(listed)} in the section table)",
            file=brain.section_table_path,
            fix="give section numbers from sections.tsv",
        )
    upstream: list = []
    inputs: list[Path] = []
    if source == SOURCE_ANNOTATION:
        labelled = list(brain.annotated_sections)
        location = brain.section_table_path
        inputs = brain_inputs(brain, ("annotation",), transforms=False)[1]

        def reader(s: int) -> Callable[[], tuple[np.ndarray, float]]:
            record = brain.section(s)

            def read() -> tuple[np.ndarray, float]:
                spacing = (
                    stack.raster(s, "annotation").spacing_um
                    if record.annotation
                    else brain.spacing_of("annotation")
                )
                return stack.annotation(s), spacing

            return read

        complete = False
    else:
        files: dict[int, Path] = {}
        lsm_area = None
        if source == SOURCE_TRUTH:
            location = _truth_folder(brain)
            if not location.is_dir():
                raise CortexgraphError(
                    f"no section labels of source {source!r}",
                    file=location,
                    fix="use a phantom cohort (cortexgraph synth) or another source",
                )
            files = {
                n: p for p in sorted(location.glob("s*.h5")) if (n := _section_of(p.name)) is not None
            }
            inputs = list(files.values())
        elif source.startswith(("gnn-", "lsm-", "gsm-")):
            store = Derivatives.of(brain)
            if source.startswith("gnn-"):
                sid = StageId("project", brain.id, (source,))
            else:
                if area is None:
                    raise CortexgraphError(
                        f"the labels of {source} hold one area each", fix="name the area (--area)"
                    )
                lsm_area = brain.area_table.by_id[int(area)]
                sid = StageId("lsm-predict", brain.id, (source, slug(lsm_area.name)))
            record = store.require(sid)
            upstream = [sid]
            location = store.record_path(sid)
            for name in sorted(record.outputs):
                number = _section_of(name)
                if number is not None:
                    files[number] = store.output(record, name)
        else:
            raise CortexgraphError(
                f"unknown label source {source!r}",
                fix="use truth, annotation, gnn-<run> (cortexgraph project) or lsm-<name> / "
                "gsm-<name> (cortexgraph lsm predict)",
            )
        labelled = sorted(files)

        def reader(s: int) -> Callable[[], tuple[np.ndarray, float]]:
            read_raw = _raster_reader(files[s])
            if lsm_area is None:
                return read_raw

            def read() -> tuple[np.ndarray, float]:  # LSM classes: 3 = the area
                classes, spacing = read_raw()
                return np.where(classes == 3, lsm_area.id, 0).astype(np.uint16), spacing

            return read

        complete = True
    skipped = {
        "flagged": [s for s in labelled if s not in usable],
        "user": [s for s in labelled if s in usable and s in user],
    }
    readers = {s: reader(s) for s in labelled if s in usable and s not in user}
    if not readers:
        raise CortexgraphError(
            f"source {source!r} has no usable labelled section",
            file=location,
            fix="check the label files and the excluded/missing flags in sections.tsv",
        )
    return LabelSource(source, readers, complete, location, skipped, upstream, inputs)


def section_pixel_to_world(stack: SectionStack, section: int, spacing_um: float) -> np.ndarray:
    """3x3 matrix: pixel index ``(column, row, 1)`` of a section raster -> world ``(x_mm, z_mm, 1)``.

    Built from ``stack.section_to_world`` at three pixel centres (the map is affine: rigid
    transforms and the world frame's reflection of v).
    """
    s_mm = spacing_um / 1000.0
    pixels = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    world = stack.section_to_world(section, (pixels + 0.5) * s_mm)[:, [0, 2]]
    matrix = np.eye(3)
    matrix[:2, 0] = world[1] - world[0]
    matrix[:2, 1] = world[2] - world[0]
    matrix[:2, 2] = world[0]
    return matrix


def lattice_origin_mm(stack: SectionStack, voxel_size_mm: float) -> np.ndarray:
    """World position (mm) of voxel (0, 0, 0) of the stacked tissue volume's lattice.

    The same origin as :func:`cortexgraph.reconstruct.volume.stack_tissue_volume`: half a voxel
    inside the minimum x and z of all available section images (voxels tile the canvases as pixels
    do), and the plane of the first section of the table.
    """
    from cortexgraph.reconstruct.volume import lattice_origin

    lo, _ = stack.canvas_bounds_mm()
    lo = np.asarray(lo, dtype=float).copy()
    lo[1] = stack.plane_y_mm(min(r.section for r in stack.brain.sections))
    return lattice_origin(lo, voxel_size_mm)


def _median_interval(sections: list[int], thickness_mm: float) -> float:
    if len(sections) < 2:
        return 0.0
    return float(np.median(np.diff(sorted(sections)))) * thickness_mm


def map_area(
    brain: Brain,
    area: str | int,
    source: str,
    *,
    voxel_size_mm: float | None = None,
    exclude_sections: Iterable[int] = (),
    median_size: int | None = None,
    min_component_mm3: float = 27.0,
    interpolation: str = "laplace",
    level: str = "area",
    preview_factor: int | None = None,
    memory_budget_gb: float = 4.0,
    chunk_vox: int = 128,
    num_workers: int = 2,
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> AreaMap:
    """Build the 3D map of one area of a brain from the section labels of ``source``.

    Parameters
    ----------
    brain : the brain (``cortexgraph.data.manifest.find_brain``).
    area : area name or id (``areas.tsv``).
    source : ``truth``, ``annotation``, ``gnn-<run>``, ``lsm-<arch>``... (:func:`label_source`).
    voxel_size_mm : isotropic voxel edge; default the labels' pixel spacing (at least 0.02 mm).
    exclude_sections : sections to treat as gaps (besides those flagged excluded or missing).
    median_size : median window in voxels; default :func:`~cortexgraph.maps3d.build.median_size_for_voxel`.
    min_component_mm3 : smallest kept component (27 mm^3).
    interpolation : ``'laplace'`` (default: the 3D Laplacian field over each gap) or ``'linear'``.
    level : ``'area'`` or ``'zero'``: cut of the interpolated field on gap planes.
    preview_factor : preview block size; default :func:`~cortexgraph.maps3d.build.preview_factor_for_voxel`.
    memory_budget_gb, chunk_vox, num_workers, workdir : out-of-core control
        (:func:`~cortexgraph.maps3d.build.build_area_map`); an out-of-core mask is an ``np.memmap``
        in ``workdir`` that the caller removes (``info["workdir"]``).
    progress : callable(str) called with each step's name.

    Returns
    -------
    AreaMap
        ``mask`` on the cropped lattice, ``affine``, full and preview surfaces (world mm) and
        ``info`` (sections used, gaps, crop, voxel counts per step, seconds).
    """
    if brain.cohort is None:
        raise DataFormatError(
            "the brain is not inside a cohort (no cohort.toml beside it)",
            file=brain.root,
            fix="map3d needs the cohort's area table",
        )
    area_rec = brain.cohort.areas.resolve(area)
    say = progress or (lambda step: None)
    with SectionStack(brain) as stack:
        labels = label_source(brain, stack, source, exclude_sections, area=area_rec.id)
        thickness = stack.thickness_mm

        # pass 1: crop every section to the area's bounding box and find the area's extent
        say("read labels")
        crops: dict[int, np.ndarray] = {}
        matrices: dict[int, np.ndarray] = {}
        spacings = []
        corners_world = []
        shows = []
        for s in sorted(labels.readers):
            image, spacing_um = labels.readers[s]()
            spacings.append(spacing_um)
            inside = np.asarray(image) == area_rec.id
            matrix = section_pixel_to_world(stack, s, spacing_um)
            if inside.any():
                rows = np.flatnonzero(inside.any(axis=1))
                cols = np.flatnonzero(inside.any(axis=0))
                r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                crops[s] = inside[r0:r1, c0:c1]
                shift = np.array([[1.0, 0.0, c0], [0.0, 1.0, r0], [0.0, 0.0, 1.0]])
                matrices[s] = matrix @ shift
                box = np.array(
                    [[c0 - 0.5, r0 - 0.5, 1], [c1 - 0.5, r0 - 0.5, 1], [c0 - 0.5, r1 - 0.5, 1]]
                    + [[c1 - 0.5, r1 - 0.5, 1]]
                )
                corners_world.append(box @ matrix.T)
                shows.append(s)
            elif labels.complete:
                crops[s] = np.zeros((1, 1), dtype=bool)
                matrices[s] = matrix
        if not shows:
            raise AreaNotLabelledError(
                f"area {area_rec.name} (id {area_rec.id}) is on no usable section of source "
                f"{source!r}",
                file=labels.location,
                fix="pick an area that the source labels, or another source",
            )
        if voxel_size_mm is None:
            voxel_size_mm = max(float(np.median(spacings)) / 1000.0, MIN_DEFAULT_VOXEL_MM)
        h = float(voxel_size_mm)
        if median_size is None:
            median_size = median_size_for_voxel(h)
        if preview_factor is None:
            preview_factor = preview_factor_for_voxel(h)
        interval = _median_interval(list(labels.readers), thickness) or thickness
        extend = end_extension_planes(interval, h)

        # crop of the tissue lattice: in-plane bounding box, and along y up to the next
        # labelled section on either side (complete sources) or half an interval
        origin = lattice_origin_mm(stack, h)
        corners = np.vstack(corners_world)
        margin = median_size // 2 + _MARGIN_VOX
        lo_x = math.floor((corners[:, 0].min() - origin[0]) / h) - margin
        hi_x = math.ceil((corners[:, 0].max() - origin[0]) / h) + margin
        lo_z = math.floor((corners[:, 1].min() - origin[2]) / h) - margin
        hi_z = math.ceil((corners[:, 1].max() - origin[2]) / h) + margin
        ys = {s: stack.plane_y_mm(s) for s in crops}
        first, last = min(shows), max(shows)
        before = [s for s in crops if s < first]
        after = [s for s in crops if s > last]
        y_lo = ys[max(before)] if before else ys[first] - 0.5 * interval
        y_hi = ys[min(after)] if after else ys[last] + 0.5 * interval
        lo_y = math.floor((y_lo - origin[1]) / h + 0.5) - margin
        hi_y = math.floor((y_hi - origin[1]) / h + 0.5) + margin
        shape = (hi_x - lo_x + 1, hi_y - lo_y + 1, hi_z - lo_z + 1)
        affine = np.diag([h, h, h, 1.0])
        affine[:3, 3] = origin + h * np.array([lo_x, lo_y, lo_z])
        in_range = {s: m for s, m in crops.items() if y_lo - 1e-9 <= ys[s] <= y_hi + 1e-9}

        mask, info = build_area_map(
            in_range,
            matrices,
            shape,
            affine,
            section_y_mm=ys,
            extend_planes=extend,
            interpolation=interpolation,
            level=level,
            median_size=median_size,
            min_component_mm3=min_component_mm3,
            memory_budget_gb=memory_budget_gb,
            chunk_vox=chunk_vox,
            num_workers=num_workers,
            workdir=workdir,
            progress=progress,
        )
    say("surfaces")
    (verts, faces), (pverts, pfaces) = area_surfaces(
        mask,
        affine,
        preview_factor=preview_factor,
        out_of_core=info["out_of_core"],
        chunk_vox=chunk_vox,
    )
    info.update(
        {
            "area_id": area_rec.id,
            "area": area_rec.name,
            "source": source,
            "complete_source": labels.complete,
            "label_location": str(labels.location),
            "voxel_size_mm": h,
            "sections_labelled": len(labels.readers),
            "sections_showing_area": len(shows),
            "sections_in_crop": len(in_range),
            "sections_skipped_flagged": labels.skipped["flagged"],
            "sections_skipped_user": labels.skipped["user"],
            "section_interval_mm": interval,
            "end_extension_planes": extend,
            "preview_factor": preview_factor,
            "crop_index_lo": [lo_x, lo_y, lo_z],
            "surface_vertices": len(verts),
            "surface_triangles": len(faces),
            "preview_triangles": len(pfaces),
        }
    )
    return AreaMap(
        area_rec.id, area_rec.name, source, mask, affine, verts, faces, pverts, pfaces, info
    )


def write_area_map(out_dir: str | Path, stem: str, amap: AreaMap) -> list[Path]:
    """Write an area map and its surfaces atomically.

    Files: ``<stem>.nii.gz`` (uint8, world affine, qform/sform code 1 = scanner mm), ``<stem>.gii``
    and ``<stem>.ply`` (full surface), ``<stem>_preview.gii`` / ``.ply``. Returns the paths.
    """
    from cortexgraph.meshes.io import write_gifti_surface, write_ply
    from cortexgraph.outputs import write_nifti_mm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = np.asarray(amap.mask).view(np.uint8) if amap.mask.dtype == bool else amap.mask
    written = [write_nifti_mm(out_dir / f"{stem}.nii.gz", data, amap.affine)]
    for suffix, verts, faces in (
        ("", amap.vertices_mm, amap.faces),
        ("_preview", amap.preview_vertices_mm, amap.preview_faces),
    ):
        written.append(write_gifti_surface(out_dir / f"{stem}{suffix}.gii", verts, faces))
        written.append(write_ply(out_dir / f"{stem}{suffix}.ply", verts, faces))
    return written


def read_area_map(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an area map written by :func:`write_area_map`: (bool mask, 4x4 affine)."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataFormatError("area map not found", file=path, fix="run `cortexgraph map3d` first")
    image = cast("SpatialImage", nib.load(str(path)))
    return np.asarray(image.dataobj) != 0, np.asarray(image.affine, dtype=float)


def remove_workdir(amap: AreaMap) -> None:
    """Delete the out-of-core work folder of an area map (its mask memmap becomes unusable)."""
    work = amap.info.get("workdir")
    if work:
        amap.mask = np.zeros((0, 0, 0), dtype=bool)
        shutil.rmtree(work, ignore_errors=True)
