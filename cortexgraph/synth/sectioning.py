"""Cutting a phantom brain into sections: geometry, misalignment, and the true transforms.

Physical sections of ``section_thickness_um`` are numbered 1, 2, ... from the posterior pole; section
``n`` is the block-frame plane ``Y = Y_1 + (n - 1) * thickness``. Every ``digitization_step``-th section
is digitized. Each digitized section is drawn on a canvas of ``width_mm x height_mm`` (a multiple of the
coarsest raster spacing, so every raster kind has the same extent) whose centre is the block point
``(X, Z) = (Xc, Zc)``: the *aligned* section coordinates are ``u = X - Xc + W/2``, ``v = H/2 - (Z - Zc)``
(v grows downwards, like image rows). The scan is then moved by its own random rigid misalignment
``D_n`` (rotation about the canvas centre, then translation), and a few scans are mirrored
(``x -> W - x``), so a raw scan point is ``p_raw = Mirror? (D_n @ p_aligned)``.

The true transform between consecutive available sections (un-mirrored coordinates) is
``M = D_fixed @ inv(D_moving)``; the stored table adds a small rigid estimation error. With the base
section ``b`` (central available, not mirrored), the stack's world frame (docs/conventions.md) is
``x = p'_x - W/2, y = Y - Y_b, z = H/2 - p'_y`` with ``p' = D_b @ p_aligned``: a rigid map of the block
frame, returned by :meth:`SectionGeometry.block_to_world`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cortexgraph.data.transforms import invert_rigid, rigid_matrix, rotation_about
from cortexgraph.synth.deform import BrainModel, brain_rng
from cortexgraph.synth.presets import Preset
from cortexgraph.synth.template import Template


@dataclass
class SectionGeometry:
    """Where the digitized sections of one brain are and how their scans are misplaced."""

    thickness_mm: float
    first_y_mm: float  # block Y of physical section 1
    digitized: list[int]  # all digitized section numbers (missing ones included)
    missing: set[int]
    mirrored: set[int]
    annotated: set[int]
    width_mm: float
    height_mm: float
    centre_xz_mm: tuple[float, float]
    misalignment: dict[int, np.ndarray] = field(default_factory=dict)  # n -> D_n (3x3)
    base_section: int = 0
    #: n -> (scale_x, scale_y, warp_x_mm, angle_x_rad, phase_x, warp_y_mm, angle_y_rad, phase_y):
    #: the non-rigid distortion of the mounted section (:meth:`undistort`); none when absent
    distortion: dict[int, np.ndarray] = field(default_factory=dict)
    warp_wavelength_mm: float = 30.0

    @property
    def available(self) -> list[int]:
        return [n for n in self.digitized if n not in self.missing]

    def y_mm(self, n: int) -> float:
        return self.first_y_mm + (n - 1) * self.thickness_mm

    def raw_to_block(self, n: int, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Raw scan coordinates of section ``n`` (arrays) -> block-frame points (..., 3)."""
        if n in self.mirrored:
            x_mm = self.width_mm - x_mm
        inverse = invert_rigid(self.misalignment[n])
        u = inverse[0, 0] * x_mm + inverse[0, 1] * y_mm + inverse[0, 2]
        v = inverse[1, 0] * x_mm + inverse[1, 1] * y_mm + inverse[1, 2]
        if n in self.distortion:
            u, v = self.undistort(n, u, v)
        xc, zc = self.centre_xz_mm
        return np.stack(
            [
                u - self.width_mm / 2 + xc,
                np.full_like(u, self.y_mm(n)),
                zc - (v - self.height_mm / 2),
            ],
            axis=-1,
        )

    def undistort(self, n: int, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where a point of the mounted, distorted section ``n`` lies in the undistorted section
        (aligned coordinates, mm): with ``q = p - c`` about the canvas centre ``c``,

        ``u = c_x + q_x / scale_x + warp_x sin(2 pi (cos a_x q_x + sin a_x q_y) / L + phase_x)``,

        and the same for ``v`` with ``scale_y``, ``warp_y``, ``a_y``, ``phase_y`` (``L`` =
        :attr:`warp_wavelength_mm`): an anisotropic shrinkage or stretch of the section and a smooth
        wave of it, as mounting on the slide does."""
        sx, sy, ax, tx, px, ay, ty, py = (float(t) for t in self.distortion[n])
        cx, cy = self.width_mm / 2, self.height_mm / 2
        qx, qy = u - cx, v - cy
        k = 2 * np.pi / self.warp_wavelength_mm
        u_out = cx + qx / sx + ax * np.sin(k * (np.cos(tx) * qx + np.sin(tx) * qy) + px)
        v_out = cy + qy / sy + ay * np.sin(k * (np.cos(ty) * qx + np.sin(ty) * qy) + py)
        return u_out, v_out

    def pixel_grid(
        self, n: int, spacing_um: float, rows: slice | None = None, cols: slice | None = None
    ) -> np.ndarray:
        """Block-frame points (rows, cols, 3) of the pixel centres of a raster of section ``n``."""
        shape = self.raster_shape(spacing_um)
        rows = rows or slice(0, shape[0])
        cols = cols or slice(0, shape[1])
        s = spacing_um / 1000.0
        yy = (np.arange(rows.start, rows.stop) + 0.5) * s
        xx = (np.arange(cols.start, cols.stop) + 0.5) * s
        gx, gy = np.meshgrid(xx, yy)
        return self.raw_to_block(n, gx, gy)

    def raster_shape(self, spacing_um: float) -> tuple[int, int]:
        return (
            int(round(self.height_mm * 1000 / spacing_um)),
            int(round(self.width_mm * 1000 / spacing_um)),
        )

    def true_transforms(self) -> dict[tuple[int, int], np.ndarray]:
        """``{(moving, fixed): D_fixed @ inv(D_moving)}`` for consecutive available sections."""
        avail = self.available
        return {
            (m, f): self.misalignment[f] @ invert_rigid(self.misalignment[m])
            for m, f in zip(avail[:-1], avail[1:], strict=True)
        }

    def block_to_world(self) -> np.ndarray:
        """4x4 block-frame mm -> world mm (the reconstruction frame built from the true transforms)."""
        xc, zc = self.centre_xz_mm
        w, h = self.width_mm, self.height_mm
        # aligned (u, v, 1) from block (X, Y, Z, 1)
        to_aligned = np.array([[1.0, 0, 0, w / 2 - xc], [0, 0, -1.0, h / 2 + zc], [0, 0, 0, 1.0]])
        d = self.misalignment[self.base_section]
        moved = d @ to_aligned  # (3, 4): p'_x, p'_y, 1
        out = np.zeros((4, 4))
        out[0] = moved[0] - np.array([0, 0, 0, w / 2])
        out[1] = np.array([0, 1.0, 0, -self.y_mm(self.base_section)])
        out[2] = -moved[1] + np.array([0, 0, 0, h / 2])
        out[3, 3] = 1.0
        return out


def tissue_extent(
    template: Template, brain: BrainModel, stride: int = 2, slab_posterior_mm: float | None = None
) -> np.ndarray:
    """Block-frame bounding box ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of the brain's tissue.

    With ``slab_posterior_mm`` the box of the posterior slab of that length only.
    """
    near = np.abs(template.signed_mm) <= template.thickness_mm / 2
    inv = np.linalg.inv(template.tissue_affine)
    idx = np.argwhere(near[::stride, ::stride, ::stride]) * stride
    points = idx * template.spacing_mm + template.affine[:3, 3]
    vox = np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    # the cerebellum and brainstem count too
    far = np.argwhere(template.far_allowed[::stride, ::stride, ::stride] > 0.5) * stride
    far_pts = far * template.spacing_mm + template.affine[:3, 3]
    fvox = np.clip(
        np.rint(far_pts @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64),
        0,
        np.array(template.gm.shape) - 1,
    )
    tissue = (template.gm[tuple(fvox.T)] + template.wm[tuple(fvox.T)]) >= 0.5
    del vox
    points = np.concatenate([points, far_pts[tissue]])
    block = brain.inverse(points)
    if slab_posterior_mm is not None:
        block = block[block[:, 1] <= block[:, 1].min() + slab_posterior_mm]
    return np.stack([block.min(0), block.max(0)])


def plan_sections(
    template: Template, brain: BrainModel, preset: Preset, seed: int
) -> SectionGeometry:
    """Numbers, canvas, missing / mirrored / annotated sections and misalignments of one brain."""
    rng = brain_rng(seed, brain.brain_id, 2)
    extent = tissue_extent(template, brain, slab_posterior_mm=preset.slab_posterior_mm)
    t_mm = preset.section_thickness_um / 1000.0
    margin_y = 0.3  # the first and last digitized sections hold some tissue
    first_y = extent[0, 1] + margin_y
    last_y = extent[1, 1] - margin_y
    if preset.slab_posterior_mm is not None:
        last_y = min(last_y, extent[0, 1] + preset.slab_posterior_mm)
    count = int(np.ceil((last_y - first_y) / t_mm))
    step = preset.digitization_step
    offset = int(rng.integers(1, step + 1))
    digitized = list(range(offset, count + 1, step))
    # the canvas: tissue extent in X, Z plus room for the misalignment
    span_x = extent[1, 0] - extent[0, 0]
    span_z = extent[1, 2] - extent[0, 2]
    room = np.sin(np.deg2rad(2.5 * preset.misalignment_deg)) * 0.6 * max(span_x, span_z) + (
        2.5 * preset.misalignment_mm + 2.0
    )
    unit = max(preset.coords_spacing_um, preset.image_spacing_um) / 1000.0 * 2
    width = np.ceil((span_x + 2 * room) / unit) * unit
    height = np.ceil((span_z + 2 * room) / unit) * unit
    centre = (0.5 * (extent[0, 0] + extent[1, 0]), 0.5 * (extent[0, 2] + extent[1, 2]))
    k = len(digitized)
    inner = digitized[1:-1]
    n_missing = int(round(preset.missing_fraction * k))
    n_mirrored = int(round(preset.mirrored_fraction * k))
    picks = rng.permutation(inner)
    missing = {int(n) for n in picks[:n_missing]}
    mirrored = {int(n) for n in picks[n_missing : n_missing + n_mirrored]}
    every = max(1, preset.annotation_every_sections // step)
    phase = int(rng.integers(0, every))
    annotated = {n for i, n in enumerate(digitized) if i % every == phase and n not in missing}
    misalignment = {}
    for n in digitized:
        angle = np.deg2rad(rng.normal(0, preset.misalignment_deg))
        tx, ty = rng.normal(0, preset.misalignment_mm, size=2)
        misalignment[n] = rigid_matrix(0.0, tx, ty) @ rotation_about(angle, (width / 2, height / 2))
    geometry = SectionGeometry(
        thickness_mm=t_mm,
        first_y_mm=float(first_y),
        digitized=digitized,
        missing=missing,
        mirrored=mirrored,
        annotated=annotated,
        width_mm=float(width),
        height_mm=float(height),
        centre_xz_mm=(float(centre[0]), float(centre[1])),
        misalignment=misalignment,
    )
    candidates = [n for n in geometry.available if n not in mirrored]
    geometry.base_section = int(candidates[(len(candidates) - 1) // 2])
    if preset.distortion_scale_sd > 0 or preset.distortion_warp_mm > 0:
        # a stream of its own: the geometry above is the same with and without distortion
        warp_rng = brain_rng(seed, brain.brain_id, 9)
        for n in digitized:
            scale = np.exp(warp_rng.normal(0, preset.distortion_scale_sd, size=2))
            amplitude = np.abs(warp_rng.normal(0, preset.distortion_warp_mm, size=2))
            angle = warp_rng.uniform(0, 2 * np.pi, size=2)
            phase_rad = warp_rng.uniform(0, 2 * np.pi, size=2)
            geometry.distortion[n] = np.array([
                scale[0], scale[1], amplitude[0], angle[0], phase_rad[0], amplitude[1], angle[1],
                phase_rad[1],
            ])  # fmt: skip
    return geometry


def distortion_rows(geometry: SectionGeometry) -> list[tuple]:
    """Rows of ``ground_truth/<brain>/distortion.tsv``: the parameters of
    :meth:`SectionGeometry.undistort` per digitized section (angles in degrees)."""
    rows = []
    for n in geometry.digitized:
        if n not in geometry.distortion:
            continue
        sx, sy, ax, tx, px, ay, ty, py = geometry.distortion[n]
        rows.append((
            n, f"{sx:.6f}", f"{sy:.6f}", f"{ax:.5f}", f"{np.rad2deg(tx):.3f}", f"{px:.5f}",
            f"{ay:.5f}", f"{np.rad2deg(ty):.3f}", f"{py:.5f}", f"{geometry.warp_wavelength_mm:g}",
        ))  # fmt: skip
    return rows


DISTORTION_COLUMNS = (
    "section", "scale_x", "scale_y", "warp_x_mm", "angle_x_deg", "phase_x", "warp_y_mm",
    "angle_y_deg", "phase_y", "wavelength_mm",
)  # fmt: skip


def noisy_transforms(
    geometry: SectionGeometry, preset: Preset, seed: int, brain_id: str
) -> dict[tuple[int, int], np.ndarray]:
    """The true consecutive transforms times a small rigid estimation error about the canvas centre."""
    rng = brain_rng(seed, brain_id, 3)
    out = {}
    centre = (geometry.width_mm / 2, geometry.height_mm / 2)
    for key, matrix in geometry.true_transforms().items():
        angle = np.deg2rad(rng.normal(0, preset.transform_noise_deg))
        tx, ty = rng.normal(0, preset.transform_noise_um / 1000.0, size=2)
        error = rigid_matrix(0.0, tx, ty) @ rotation_about(angle, centre)
        out[key] = error @ matrix
    return out
