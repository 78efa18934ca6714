"""Template-space anatomy: the cortical ribbon around conte69 and the MNI152 tissue maps, as fields.

The MNI152 gray-matter map is an average: its sulci are filled with gray matter, so its own boundary is a
smooth hull. The cortex of the phantom is therefore the ribbon of local thickness ``T`` around the conte69
midthickness surface, which keeps the folds: for a point ``p`` near the surface with nearest vertex ``v``
(unit outward normal ``n_v``) the signed offset is ``d = (p - x_v) . n_v`` (weighted over the 4 nearest
vertices); the point is cortex when ``|d| <= T/2``, sulcal CSF / outside when ``d > T/2`` and white
matter when ``d < -T/2``. Its distances to the pial and white boundaries are ``T/2 - d`` and ``T/2 + d``,
so the cortical depth is ``(T/2 - d) / T`` (0 at the pia, 1 at the white matter). Away from the ribbon
(more than ``NEAR_MARGIN_MM`` beyond it, or next to the medial wall) the MNI152 maps decide: white
matter, background (CSF, ventricles), or gray matter that is not cortex (deep nuclei, cerebellum,
brainstem, hippocampus).

These fields are tabulated once per cohort on a grid of spacing ``template_mm`` in MNI mm; phantom
brains sample them through their deformation (trilinear for ``d``, ``T`` and the MNI maps, nearest for the
vertex index), so section images have smooth boundaries at any pixel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cortexgraph.synth.areas import AreaLayout, build_area_layout, vertex_neighbours
from cortexgraph.synth.presets import AREA_LAYOUT_SEED
from cortexgraph.synth.resources import HEMISPHERES, Surface, load_surfaces, load_tissue_maps

NEAR_MARGIN_MM = 2.5
"""Beyond the ribbon, the conte69 surface decides the tissue class up to this distance (template mm)."""

HULL_MM = 8.0
"""Thickness of the MNI gray-matter hull beyond the conte69 ribbon that is cleared to background."""

LATERAL_MM = 20.0
"""How far beside the hemispheres (in x) tissue still counts as lying under them."""

K_NEAREST = 4
FAR = np.float32(99.0)

BACKGROUND, WHITE, GRAY = 0, 1, 2


@dataclass
class Template:
    """Fields in template (MNI) space on one regular grid, plus the surfaces and areas.

    Attributes
    ----------
    affine : 4x4 grid voxel -> MNI mm.
    signed_mm : (X, Y, Z) float32 signed offset ``d`` from the midthickness (FAR away from it).
    thickness_mm : (X, Y, Z) float32 local cortical thickness ``T``.
    vertex : (X, Y, Z) int32 nearest vertex as ``hemi * N + v`` (-1 far away).
    medial : (X, Y, Z) float32, 1 where the nearest vertex is on the medial wall (0 elsewhere).
    far_allowed : (X, Y, Z) float32, 1 where MNI tissue away from the ribbon is kept (inside the
        hemispheres, cerebellum, brainstem), 0 for the MNI gray-matter hull around the cortex.
    ribbon_mm : ``signed_mm`` with the medial wall set to +-FAR (sampled per pixel).
    far_tissue, far_white : ``(gm + wm) * far_allowed`` and ``wm - gm`` of the MNI maps on this grid
        (tissue where far_tissue >= 0.5, white where far_white >= 0).
    surfaces : conte69 hemispheres; ``normals`` their outward unit vertex normals.
    layout : the areas.
    vertex_thickness_mm : (2N,) thickness per vertex (lh then rh).
    gm, wm, tissue_affine : MNI152 maps and their voxel -> mm affine.
    """

    affine: np.ndarray
    signed_mm: np.ndarray
    thickness_mm: np.ndarray
    vertex: np.ndarray
    medial: np.ndarray
    far_allowed: np.ndarray
    ribbon_mm: np.ndarray
    far_tissue: np.ndarray
    far_white: np.ndarray
    surfaces: dict[str, Surface]
    normals: dict[str, np.ndarray]
    layout: AreaLayout
    vertex_thickness_mm: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    tissue_affine: np.ndarray

    @property
    def num_vertices(self) -> int:
        return len(self.surfaces["lh"].vertices_mm)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.signed_mm.shape

    @property
    def spacing_mm(self) -> float:
        return float(self.affine[0, 0])


def outward_normals(surface: Surface) -> np.ndarray:
    """Unit vertex normals pointing out of the hemisphere (area-weighted face normals)."""
    v, f = surface.vertices_mm, surface.faces
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], face_n)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # orientation: the sphere is star-shaped, so compare with its radial direction
    if np.mean(np.sum(normals * surface.sphere, axis=1)) < 0:
        normals = -normals
    return normals


def smooth_on_mesh(values: np.ndarray, neighbours: list[np.ndarray], iterations: int) -> np.ndarray:
    """Repeated neighbour averaging (each vertex with its one-ring)."""
    counts = np.array([len(n) for n in neighbours], dtype=np.float64)
    flat = np.concatenate(neighbours)
    owner = np.repeat(np.arange(len(neighbours)), counts.astype(np.int64))
    out = values.astype(np.float64)
    for _ in range(iterations):
        sums = np.bincount(owner, weights=out[flat], minlength=len(out))
        out = 0.5 * out + 0.5 * sums / np.maximum(counts, 1)
    return out


@lru_cache(maxsize=2)
def build_template(template_mm: float, area_seed: int = AREA_LAYOUT_SEED) -> Template:
    """Tabulate the template fields on a grid of spacing ``template_mm`` (cached per spacing and
    area seed; the area seed picks the area layout and profiles, :func:`build_area_layout`).

    The grid covers the bounding box of the MNI152 brain with a margin. Only points within
    ``max(T)/2 + NEAR_MARGIN_MM + 1`` mm of a surface vertex are queried in the k-d tree.
    """
    surfaces = load_surfaces()
    maps = load_tissue_maps()
    layout = build_area_layout(surfaces["lh"], area_seed=area_seed)
    n = len(surfaces["lh"].vertices_mm)
    normals = {h: outward_normals(surfaces[h]) for h in HEMISPHERES}
    neighbours = vertex_neighbours(surfaces["lh"].faces, n)
    per_area = np.full(len(layout.areas) + 1, 2.6)
    for area_id, profile in layout.profiles.items():
        per_area[area_id] = profile.thickness_mm
    thick = per_area[layout.vertex_area]
    thick[layout.vertex_area == 0] = 2.6
    thick = smooth_on_mesh(thick, neighbours, 6)
    vertex_thickness = np.concatenate([thick, thick])

    # grid over the MNI brain
    tissue = (maps.gm + maps.wm) > 0.2
    idx = np.argwhere(tissue)
    lo_vox, hi_vox = idx.min(0) - 4, idx.max(0) + 4
    lo_mm = lo_vox @ maps.affine[:3, :3].T + maps.affine[:3, 3]
    hi_mm = hi_vox @ maps.affine[:3, :3].T + maps.affine[:3, 3]
    shape = tuple(
        int(np.ceil((h - l) / template_mm)) + 1 for l, h in zip(lo_mm, hi_mm, strict=True)
    )
    affine = np.eye(4)
    affine[:3, :3] *= template_mm
    affine[:3, 3] = lo_mm

    all_vertices = np.concatenate([surfaces[h].vertices_mm for h in HEMISPHERES])
    all_normals = np.concatenate([normals[h] for h in HEMISPHERES])
    all_medial = np.concatenate([~surfaces[h].cortex for h in HEMISPHERES])

    # candidate voxels near the surface: distance transform of the rasterised vertices
    vox = np.rint((all_vertices - lo_mm) / template_mm).astype(np.int64)
    vox = np.clip(vox, 0, np.array(shape) - 1)
    seeds = np.ones(shape, dtype=bool)
    seeds[tuple(vox.T)] = False
    approx = ndimage.distance_transform_edt(seeds, sampling=template_mm)
    reach = float(vertex_thickness.max()) / 2 + NEAR_MARGIN_MM + 1.5
    candidates = np.argwhere(approx <= reach)
    points = candidates * template_mm + lo_mm

    tree = cKDTree(all_vertices)
    signed = np.full(shape, FAR, dtype=np.float32)
    thickness = np.full(shape, 2.6, dtype=np.float32)
    vertex = np.full(shape, -1, dtype=np.int32)
    medial = np.zeros(shape, dtype=np.float32)
    step = 400_000
    for start in range(0, len(points), step):
        block = points[start : start + step]
        dist, near = tree.query(block, k=K_NEAREST)
        weights = 1.0 / np.maximum(dist, 1e-3) ** 2
        weights /= weights.sum(1, keepdims=True)
        offsets = np.einsum(
            "nkj,nkj->nk", block[:, None, :] - all_vertices[near], all_normals[near]
        )
        d = (weights * offsets).sum(1)
        t = (weights * vertex_thickness[near]).sum(1)
        cells = tuple(candidates[start : start + step].T)
        signed[cells] = d
        thickness[cells] = t
        vertex[cells] = near[:, 0]
        medial[cells] = (weights * all_medial[near]).sum(1)
    inside = np.zeros(shape, dtype=bool)
    for hemi in HEMISPHERES:
        inside |= _solid(surfaces[hemi], lo_mm, template_mm, shape)
    signed[(signed == FAR) & inside] = -FAR
    allowed = _far_tissue_allowed(maps, inside, signed, thickness, lo_mm, template_mm, shape)
    # the medial wall is decided by the MNI maps: no ribbon there (keeps one lookup per pixel)
    signed_ribbon = np.where(medial >= 0.5, np.where(inside, -FAR, FAR), signed).astype(np.float32)
    inverse = np.linalg.inv(maps.affine)
    matrix = inverse[:3, :3] * template_mm
    offset = inverse[:3, :3] @ lo_mm + inverse[:3, 3]
    gm = ndimage.affine_transform(maps.gm, matrix, offset, shape, order=1)
    wm = ndimage.affine_transform(maps.wm, matrix, offset, shape, order=1)
    return Template(
        affine=affine,
        signed_mm=signed,
        far_allowed=allowed,
        ribbon_mm=signed_ribbon,
        far_tissue=((gm + wm) * allowed).astype(np.float32),
        far_white=(wm - gm).astype(np.float32),
        thickness_mm=thickness,
        vertex=vertex,
        medial=medial,
        surfaces=surfaces,
        normals=normals,
        layout=layout,
        vertex_thickness_mm=vertex_thickness,
        gm=maps.gm,
        wm=maps.wm,
        tissue_affine=maps.affine,
    )


def _solid(surface: Surface, lo_mm: np.ndarray, spacing_mm: float, shape) -> np.ndarray:
    """Voxels inside the closed midthickness mesh (rasterised densely, then hole-filled)."""
    v, f = surface.vertices_mm, surface.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    longest = max(
        np.linalg.norm(b - a, axis=1).max(),
        np.linalg.norm(c - a, axis=1).max(),
        np.linalg.norm(c - b, axis=1).max(),
    )
    steps = int(np.ceil(2.0 * longest / spacing_mm)) + 1
    shell = np.zeros(shape, dtype=bool)
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            u, w = i / steps, j / steps
            p = a + u * (b - a) + w * (c - a)
            ijk = np.rint((p - lo_mm) / spacing_mm).astype(np.int64)
            ijk = np.clip(ijk, 0, np.array(shape) - 1)
            shell[tuple(ijk.T)] = True
    return ndimage.binary_fill_holes(shell)


def _far_tissue_allowed(maps, inside, signed, thickness, lo_mm, spacing_mm, shape) -> np.ndarray:
    """Where MNI tissue away from the ribbon is real: inside the hemispheres, cerebellum, brainstem.

    The MNI gray-matter hull outside the (smoother) conte69 ribbon is not: MNI tissue outside the
    hemispheres is kept only under the hemispheres (a hemisphere voxel above it), in components that
    survive removing a shell of
    ``T/2 + NEAR_MARGIN_MM + 2 + HULL_MM`` mm around the hemispheres and are large (> 1% of the
    largest), regrown into MNI tissue by geodesic dilation of ``HULL_MM`` that stays out of the first
    ``T/2 + NEAR_MARGIN_MM + 2`` mm.
    """
    inverse = np.linalg.inv(maps.affine)
    matrix = inverse[:3, :3] * spacing_mm
    offset = inverse[:3, :3] @ lo_mm + inverse[:3, 3]
    tissue = ndimage.affine_transform(maps.gm + maps.wm, matrix, offset, shape, order=1) >= 0.5
    width = int(np.ceil((NEAR_MARGIN_MM + 2.0 + float(thickness.max()) / 2) / spacing_mm))
    ball = ndimage.generate_binary_structure(3, 1)
    near_zone = ndimage.binary_dilation(inside, ball, iterations=width)
    zone = ndimage.binary_dilation(near_zone, ball, iterations=int(np.ceil(HULL_MM / spacing_mm)))
    # cerebellum and brainstem lie beneath the cerebrum: under the lowest hemisphere voxel of their
    # (x, y) column, the column test widened by LATERAL_MM in x so the cerebellum keeps its round shape
    z_index = np.arange(shape[2])[None, None, :]
    bottom = np.where(inside, z_index, shape[2]).min(axis=2).astype(np.float64)
    reach_px = int(round(LATERAL_MM / spacing_mm))
    bottom = ndimage.minimum_filter(bottom, size=(2 * reach_px + 1, 1))
    below = z_index < bottom[:, :, None] + int(round(2.0 / spacing_mm))
    rest = tissue & ~zone & below
    labels, count = ndimage.label(rest)
    keep = np.zeros(shape, dtype=bool)
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        big = np.flatnonzero(sizes >= 0.01 * sizes.max()) + 1
        keep = np.isin(labels, big)
        keep = ndimage.binary_dilation(
            keep,
            ball,
            iterations=int(np.ceil(HULL_MM / spacing_mm)),
            mask=tissue & ~near_zone & below,
        )
    return (inside | keep).astype(np.float32)


@dataclass
class TemplateSample:
    """Template fields sampled at a set of points (all arrays shaped like the points' leading axes)."""

    tissue: np.ndarray  # uint8: 0 background, 1 white, 2 gray
    cortex: np.ndarray  # bool: gray matter that is cortex
    depth: np.ndarray  # float32 in [0, 1] on cortex (0 pia, 1 white), NaN elsewhere
    vertex: np.ndarray  # int32 nearest vertex (hemi * N + v), -1 where not cortex


def _to_voxels(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(affine)
    return points_mm @ inverse[:3, :3].T + inverse[:3, 3]


def sample_template(template: Template, points_mm: np.ndarray) -> TemplateSample:
    """Classify template points ``(..., 3)`` in MNI mm into tissue, cortex, depth and nearest vertex.

    The cortical ribbon rule of the module docstring is applied to trilinearly interpolated ``d`` and
    ``T``; elsewhere the MNI152 maps decide (argmax of gray, white and ``1 - gray - white``).
    """
    lead = points_mm.shape[:-1]
    pts = points_mm.reshape(-1, 3)
    vox = _to_voxels(template.affine, pts).T
    d = ndimage.map_coordinates(template.ribbon_mm, vox, order=1, mode="constant", cval=FAR)
    t = ndimage.map_coordinates(template.thickness_mm, vox, order=1, mode="nearest")
    near = np.abs(d) <= t / 2 + NEAR_MARGIN_MM
    tissue_p = ndimage.map_coordinates(template.far_tissue, vox, order=1, mode="constant", cval=0.0)
    white_p = ndimage.map_coordinates(template.far_white, vox, order=1, mode="constant", cval=0.0)
    far_class = np.where(tissue_p < 0.5, BACKGROUND, np.where(white_p >= 0, WHITE, GRAY)).astype(
        np.uint8
    )
    cortex = near & (np.abs(d) <= t / 2)
    tissue = np.where(
        near, np.where(cortex, GRAY, np.where(d < 0, WHITE, BACKGROUND)), far_class
    ).astype(np.uint8)
    depth = np.where(cortex, np.clip((t / 2 - d) / t, 0.0, 1.0), np.nan).astype(np.float32)
    ivox = np.rint(vox).astype(np.int64)
    inside = np.all((ivox >= 0) & (ivox < np.array(template.shape)[:, None]), axis=0)
    vertex = np.full(len(pts), -1, dtype=np.int32)
    sel = cortex & inside
    vertex[sel] = template.vertex[tuple(ivox[:, sel])]
    cortex &= vertex >= 0
    return TemplateSample(
        tissue=tissue.reshape(lead),
        cortex=cortex.reshape(lead),
        depth=depth.reshape(lead),
        vertex=vertex.reshape(lead),
    )
