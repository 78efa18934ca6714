"""Ground truth of a phantom brain: true transforms, midsurfaces, area measures, exclusion mask.

* The true midsurface of a hemisphere is the depth-0.5 level set of the phantom's cortex, i.e. the zero
  level of the signed offset ``d`` (``depth = (T/2 - d) / T``), extracted by marching cubes on the
  template fields resampled to ``midsurface_voxel_mm`` (brain mm), restricted to the cortex of that
  hemisphere, mapped to the block frame by the inverse deformation and to the world frame of the
  reconstruction (built from the *true* transforms) by a rigid 4x4.
* Area volumes integrate ``|det d(phi^-1)|`` over cortex samples of the template grid (brain mm^3, and
  x shrinkage for the fresh brain); pial-side surface areas sum the brain-space areas of the triangles of
  the pial boundary ``d = T/2`` per area (x shrinkage^(2/3) for the fresh brain).
* In a slab phantom (tiny preset) everything is restricted to the sectioned slab.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import measure

from cortexgraph.data.manifest import MATRIX_COLUMNS, Brain, format_tsv
from cortexgraph.meshes import io as meshes_io
from cortexgraph.outputs import write_json_atomic, write_nifti_mm, write_text_atomic
from cortexgraph.synth.deform import BrainModel
from cortexgraph.synth.presets import Preset
from cortexgraph.synth.sectioning import SectionGeometry
from cortexgraph.synth.template import FAR, GRAY, Template, sample_template

HEMI_NAMES = ("lh", "rh")


def _slab_range(geometry: SectionGeometry) -> tuple[float, float]:
    """Block Y range covered by the digitized sections (half a step of margin)."""
    half = (
        0.5
        * (geometry.digitized[1] - geometry.digitized[0] if len(geometry.digitized) > 1 else 1)
        * geometry.thickness_mm
    )
    return geometry.y_mm(geometry.digitized[0]) - half, geometry.y_mm(geometry.digitized[-1]) + half


def write_exclusion_mask(
    path: Path, template: Template, brain: BrainModel, geometry: SectionGeometry, preset: Preset
) -> Path:
    """NIfTI (uint8, world mm) of gray matter that is not cortex: deep nuclei, cerebellum, brainstem."""
    voxel = preset.exclusion_voxel_mm
    to_world = geometry.block_to_world()
    from_world = np.linalg.inv(to_world)
    # world bounding box of the canvas block
    xc, zc = geometry.centre_xz_mm
    hw, hh = geometry.width_mm / 2, geometry.height_mm / 2
    y0, y1 = _slab_range(geometry)
    corners = np.array(
        [[xc + sx * hw, y, zc + sz * hh, 1.0] for sx in (-1, 1) for sz in (-1, 1) for y in (y0, y1)]
    )
    world = corners @ to_world.T
    lo, hi = world[:, :3].min(0), world[:, :3].max(0)
    shape = tuple(int(np.ceil((h - l) / voxel)) + 1 for l, h in zip(lo, hi, strict=True))
    affine = np.eye(4)
    affine[:3, :3] *= voxel
    affine[:3, 3] = lo
    mask = np.zeros(shape, dtype=np.uint8)
    grid_xz = np.indices((shape[0], shape[2])).reshape(2, -1).T.astype(np.float64)
    for j in range(shape[1]):  # one coronal plane at a time
        pts = (
            np.column_stack(
                [grid_xz[:, 0], np.full(len(grid_xz), j), grid_xz[:, 1], np.ones(len(grid_xz))]
            )
            @ affine.T
        )
        block = pts @ from_world.T
        inside = (block[:, 1] >= y0) & (block[:, 1] <= y1)
        if not inside.any():
            continue
        sample = sample_template(template, brain.phi(block[inside, :3]))
        plane = np.zeros(len(grid_xz), dtype=np.uint8)
        plane[inside] = ((sample.tissue == GRAY) & ~sample.cortex).astype(np.uint8)
        mask[:, j, :] = plane.reshape(shape[0], shape[2])
    return write_nifti_mm(path, mask, affine)


def _resampled_fields(template: Template, spacing_mm: float, box_mm: np.ndarray):
    """Template fields in ``box_mm`` (2x3, template mm) resampled to ``spacing_mm``.

    Returns d, T, medial, vertex and the 4x4 voxel -> template mm affine of the new grid.
    """
    inverse = np.linalg.inv(template.affine)
    lo = np.floor(box_mm[0] @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    hi = np.ceil(box_mm[1] @ inverse[:3, :3].T + inverse[:3, 3]).astype(int) + 1
    lo = np.clip(lo, 0, np.array(template.shape) - 2)
    hi = np.clip(hi, lo + 2, np.array(template.shape))
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    zoom = template.spacing_mm / spacing_mm
    fields = []
    for array, order in (
        (template.signed_mm, 1),
        (template.thickness_mm, 1),
        (template.medial, 1),
        (template.vertex, 0),
    ):
        fields.append(ndimage.zoom(array[crop], zoom, order=order, mode="nearest", grid_mode=False))
    affine = template.affine.copy()
    affine[:3, 3] = template.affine[:3, :3] @ lo + template.affine[:3, 3]
    ratio = (hi - lo - 1) / (np.array(fields[0].shape) - 1)
    affine[:3, :3] = template.affine[:3, :3] * ratio[None, :]
    return (*fields, affine)


def _template_box(brain: BrainModel, geometry: SectionGeometry, margin_mm: float = 6.0):
    """Template-space bounding box of the sectioned block (canvas x slab), with a margin."""
    xc, zc = geometry.centre_xz_mm
    y0, y1 = _slab_range(geometry)
    grid = np.stack(
        np.meshgrid(
            np.linspace(xc - geometry.width_mm / 2, xc + geometry.width_mm / 2, 6),
            np.linspace(y0, y1, 6),
            np.linspace(zc - geometry.height_mm / 2, zc + geometry.height_mm / 2, 6),
            indexing="ij",
        ),
        axis=-1,
    ).reshape(-1, 3)
    mapped = brain.phi(grid)
    return np.stack([mapped.min(0) - margin_mm, mapped.max(0) + margin_mm])


def _level_surface(field: np.ndarray, mask: np.ndarray, affine: np.ndarray):
    """Marching cubes of ``field = 0`` inside ``mask``; vertices in template mm."""
    if mask.sum() < 8:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, np.array(field.shape))
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    verts, faces, _, _ = measure.marching_cubes(
        np.ascontiguousarray(field[crop]), 0.0, mask=mask[crop], allow_degenerate=False
    )
    verts = (verts + lo) @ affine[:3, :3].T + affine[:3, 3]
    return verts, faces.astype(np.int64)


def _crop_faces(verts: np.ndarray, faces: np.ndarray, keep_vertex: np.ndarray):
    keep = keep_vertex[faces].all(1)
    faces = faces[keep]
    used = np.unique(faces)
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces]


def _triangle_areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def read_gifti_surface(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3) mm, faces (F, 3), area id per vertex (N,)) of a ground-truth surface."""
    vertices, faces = meshes_io.read_gifti_surface(path)
    return vertices, faces, meshes_io.read_gifti_vertex_labels(path)


def write_ground_truth(
    root: Path,
    template: Template,
    brain: BrainModel,
    geometry: SectionGeometry,
    preset: Preset,
    names: dict[int, str],
) -> None:
    """Write the ground-truth files of one brain under ``root`` (see module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    holder = Brain(
        id=brain.brain_id,
        root=root,
        cohort=None,
        shrinkage_factor=brain.shrinkage_factor,
        digitization_step=preset.digitization_step,
        image_spacing_um=0,
        mask_spacing_um=0,
        annotation_spacing_um=0,
        coords_spacing_um=0,
    )
    holder.write_transforms(geometry.true_transforms())
    rows = []
    for n in geometry.digitized:
        d = geometry.misalignment[n]
        rows.append(
            (
                n,
                *[repr(float(v)) for v in d[:2].ravel()],
                int(n in geometry.mirrored),
                int(n in geometry.missing),
                int(n in geometry.annotated),
            )
        )
    write_text_atomic(
        root / "misalignment.tsv",
        format_tsv(
            ("section", *MATRIX_COLUMNS[:6], "mirrored", "missing", "annotated"),
            rows,
        ),
    )
    to_world = geometry.block_to_world()
    y0, y1 = _slab_range(geometry)
    n_vertices = template.num_vertices

    # midsurfaces
    spacing = preset.midsurface_voxel_mm * brain.scale
    signed, thick, medial, vertex, affine = _resampled_fields(
        template, spacing, _template_box(brain, geometry)
    )
    cortex = (np.abs(signed) <= thick / 2) & (medial < 0.5) & (vertex >= 0)
    hemi_of = np.where(vertex >= n_vertices, 1, 0)
    measures: dict[tuple[int, str], list[float]] = {}
    surfaces = {}
    for h, hemi in enumerate(HEMI_NAMES):
        verts, faces = _level_surface(signed, cortex & (hemi_of == h), affine)
        block = brain.inverse(verts)
        used, faces = _crop_faces(verts, faces, (block[:, 1] >= y0) & (block[:, 1] <= y1))
        world = np.column_stack([block[used], np.ones(len(used))]) @ to_world.T
        vox = np.rint((verts[used] - affine[:3, 3]) / np.diag(affine)[:3]).astype(np.int64)
        vox = np.clip(vox, 0, np.array(vertex.shape) - 1)
        labels = brain.vertex_area[np.maximum(vertex[tuple(vox.T)], 0)]
        meshes_io.write_gifti_surface(
            root / f"midsurface_{hemi}.gii", world[:, :3], faces, labels,
            structure=meshes_io.STRUCTURES[hemi], secondary="MidThickness",
        )  # fmt: skip
        surfaces[hemi] = len(used)

        # pial-side surface area per area
        pial = signed - thick / 2
        near = (np.abs(signed) <= thick / 2 + 1.5 * spacing) & (signed != FAR) & (medial < 0.5)
        verts, faces = _level_surface(pial, near & (vertex >= 0) & (hemi_of == h), affine)
        block = brain.inverse(verts)
        keep, faces = _crop_faces(verts, faces, (block[:, 1] >= y0) & (block[:, 1] <= y1))
        areas = _triangle_areas(block[keep], faces)
        centroid = verts[keep][faces].mean(1)
        vox = np.rint((centroid - affine[:3, 3]) / np.diag(affine)[:3]).astype(np.int64)
        vox = np.clip(vox, 0, np.array(vertex.shape) - 1)
        face_vertex = vertex[tuple(vox.T)]
        face_area = np.where(face_vertex >= 0, brain.vertex_area[np.maximum(face_vertex, 0)], 0)
        pial_by_area = np.bincount(face_area, weights=areas, minlength=len(names) + 1)

        # volumes: cortex samples of the resampled grid, brain-space volume element
        mask = cortex & (hemi_of == h)
        pts = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
        volume: np.ndarray = np.zeros(len(names) + 1)
        if len(pts):
            block_pts = brain.inverse(pts, iterations=6)
            inside = (block_pts[:, 1] >= y0) & (block_pts[:, 1] <= y1)
            sample = sample_template(template, pts[inside])
            ok = sample.cortex
            area = brain.vertex_area[np.maximum(sample.vertex[ok], 0)]
            dv = spacing**3 / np.abs(brain.jacobian_det(pts[inside][ok]))
            volume = np.bincount(area, weights=dv, minlength=len(names) + 1)
        for area_id in sorted(names):
            measures[(area_id, hemi)] = [float(volume[area_id]), float(pial_by_area[area_id])]

    f = brain.shrinkage_factor
    rows = [
        (
            area_id,
            names[area_id],
            hemi,
            f"{vol:.3f}",
            f"{vol * f:.3f}",
            f"{pial:.3f}",
            f"{pial * f ** (2 / 3):.3f}",
        )
        for (area_id, hemi), (vol, pial) in sorted(measures.items())
    ]
    write_text_atomic(
        root / "area_measures.tsv",
        format_tsv(
            (
                "area_id",
                "name",
                "hemisphere",
                "volume_mm3",
                "volume_fresh_mm3",
                "pial_area_mm2",
                "pial_area_fresh_mm2",
            ),
            rows,
        ),
    )
    write_json_atomic(
        root / "brain.json",
        {
            "brain": brain.brain_id,
            "block_to_world": to_world.tolist(),
            "block_to_template_linear": brain.linear.tolist(),
            "template_centre_mm": brain.centre_mm.tolist(),
            "shrinkage_factor": brain.shrinkage_factor,
            "size_factor": brain.size_factor,
            "template_per_brain_mm": brain.scale,
            "base_section": geometry.base_section,
            "canvas_mm": [geometry.width_mm, geometry.height_mm],
            "canvas_centre_block_xz_mm": list(geometry.centre_xz_mm),
            "first_section_block_y_mm": geometry.first_y_mm,
            "slab_block_y_mm": [y0, y1],
            "mapped_areas": [int(a) for a in brain.mapped_areas],
            "midsurface_vertices": surfaces,
            "frames": "block frame: sections are planes Y = const; world = block_to_world @ block; "
            "template (MNI mm) = phi(block), see cortexgraph.synth.deform",
        },
    )
