"""One phantom brain: its deformation of the template, its area borders, its staining.

A brain lives in its own **block frame** (mm, the frame of the sectioned tissue block): sections are the
planes ``Y = const``, X runs left -> right and Z inferior -> superior on a section. The map to the template

    phi(X) = z + u(z),   z = c + S A X

sends a block point to MNI mm: ``S = shrinkage^(1/3) / size`` undoes the brain's histological shrinkage
and its size, ``A`` is a small rotation (the cutting plane is slightly oblique to the template axes)
times a small anisotropic scaling, ``c`` the template centre, and ``u`` a smooth random displacement
(Gaussian-filtered white noise, r.m.s. ``deformation_mm``, correlation length ``deformation_length_mm``).
The brain's anatomy is the template pulled back through ``phi``; canonical coordinates are ``phi(X)``
itself. :meth:`BrainModel.inverse` inverts ``phi`` for points by the fixed-point iteration
``z <- y - u(z)`` (a contraction, since |grad u| << 1).

Area borders differ between brains: each hemisphere's vertices take the area found at a smoothly
perturbed position on the template sphere (r.m.s. shift ``border_shift_mm`` on the 100 mm sphere).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cortexgraph.synth.presets import SEED_FRESH_WEIGHT_G, SEED_SHRINKAGE, Preset
from cortexgraph.synth.template import Template

TEMPLATE_FRESH_WEIGHT_G = 1450.0
"""Fresh weight the MNI152 template's size stands for (a size factor of 1)."""
TEMPLATE_CENTRE_MM = np.array([0.0, -18.0, 12.0])
DISPLACEMENT_GRID_MM = 4.0


def brain_rng(seed: int, brain_id: str, *keys: int) -> np.random.Generator:
    """Independent random stream for (cohort seed, brain, keys...) via numpy SeedSequence."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(brain_id.encode()), *[int(k) for k in keys]])
    )


def rotation_xyz(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx for angles about x, y, z."""
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def perturbed_vertex_areas(
    template: Template, rng: np.random.Generator, shift_mm: float
) -> np.ndarray:
    """Vertex -> area id for both hemispheres (length 2N) with smoothly shifted borders."""
    sphere = template.surfaces["lh"].sphere
    base = template.layout.vertex_area
    tree = cKDTree(sphere)
    out = []
    for _hemi in ("lh", "rh"):
        field = np.zeros_like(sphere)
        for _ in range(6):
            w = rng.normal(size=3) / 25.0
            phase = rng.uniform(0, 2 * np.pi)
            field += rng.normal(size=3) * np.sin(sphere @ w + phase)[:, None]
        field -= (field * sphere).sum(1, keepdims=True) * sphere / 100.0**2  # tangential part
        field *= shift_mm / max(np.sqrt((field**2).sum(1).mean()), 1e-9)
        moved = sphere + field
        moved *= 100.0 / np.linalg.norm(moved, axis=1, keepdims=True)
        _, nearest = tree.query(moved)
        labels = base[nearest]
        labels = np.where((base > 0) & (labels == 0), base, labels)
        labels[base == 0] = 0
        out.append(labels)
    return np.concatenate(out)


@dataclass
class BrainModel:
    """Geometry and appearance parameters of one phantom brain (see module docstring)."""

    brain_id: str
    shrinkage_factor: float
    size_factor: float
    scale: float  # S
    linear: np.ndarray  # S * A (3x3), block -> template before displacement
    centre_mm: np.ndarray  # c
    displacement: np.ndarray  # (3, X, Y, Z) float32 on a template-space grid
    displacement_affine: np.ndarray  # 4x4 voxel -> template mm
    vertex_area: np.ndarray  # (2N,) area id per vertex
    mapped_areas: np.ndarray  # area ids annotated at all in this brain
    stain_gain: float
    stain_gamma: float

    # -- the map -----------------------------------------------------------------------------------
    def displacement_at(self, template_mm: np.ndarray) -> np.ndarray:
        """u(z) for (N, 3) template points (trilinear; zero outside the field's box)."""
        inverse = np.linalg.inv(self.displacement_affine)
        vox = (template_mm @ inverse[:3, :3].T + inverse[:3, 3]).T
        return np.stack(
            [
                ndimage.map_coordinates(self.displacement[k], vox, order=1, mode="nearest")
                for k in range(3)
            ],
            axis=1,
        )

    def phi(self, block_mm: np.ndarray) -> np.ndarray:
        """Block-frame mm (..., 3) -> template mm (..., 3)."""
        shape = block_mm.shape
        z = block_mm.reshape(-1, 3) @ self.linear.T + self.centre_mm
        return (z + self.displacement_at(z)).reshape(shape)

    def inverse(self, template_mm: np.ndarray, iterations: int = 12) -> np.ndarray:
        """Template mm (..., 3) -> block-frame mm, inverting ``phi`` by fixed-point iteration."""
        shape = template_mm.shape
        y = template_mm.reshape(-1, 3).astype(np.float64)
        z = y.copy()
        for _ in range(iterations):
            z = y - self.displacement_at(z)
        block = (z - self.centre_mm) @ np.linalg.inv(self.linear).T
        return block.reshape(shape)

    def jacobian_det(self, template_mm: np.ndarray) -> np.ndarray:
        """det of d(phi)/dX at the block points whose images are ``template_mm`` (N,)."""
        eps = 0.5
        grads = []
        for k in range(3):
            step = np.zeros(3)
            step[k] = eps
            grads.append(
                (
                    self.displacement_at(template_mm + step)
                    - self.displacement_at(template_mm - step)
                )
                / (2 * eps)
            )
        jac_u = np.stack(grads, axis=2)  # (N, 3 comps, 3 derivs)
        jac = (np.eye(3)[None] + jac_u) @ self.linear
        return np.linalg.det(jac)


def make_brain(template: Template, preset: Preset, brain_id: str, seed: int) -> BrainModel:
    """Draw the parameters of brain ``brain_id`` from the (seed, brain id) random stream."""
    rng = brain_rng(seed, brain_id, 0)
    shrinkage = SEED_SHRINKAGE.get(brain_id)
    if shrinkage is None:
        shrinkage = float(rng.uniform(1.7, 2.4))
    weight = SEED_FRESH_WEIGHT_G.get(brain_id, float(rng.uniform(1100, 1600)))
    size = (weight / TEMPLATE_FRESH_WEIGHT_G) ** (1 / 3) * float(
        np.exp(rng.normal(0, preset.size_sd))
    )
    scale = shrinkage ** (1 / 3) / size
    angles = np.deg2rad(rng.normal(0, preset.oblique_deg, size=3))
    aniso = np.diag(np.exp(rng.normal(0, 0.03, size=3)))
    linear = scale * rotation_xyz(angles) @ aniso
    # smooth displacement on a template-space grid covering the tissue maps
    lo = np.array([-100.0, -140.0, -80.0])
    shape = (
        int(200 / DISPLACEMENT_GRID_MM) + 1,
        int(240 / DISPLACEMENT_GRID_MM) + 1,
        int(200 / DISPLACEMENT_GRID_MM) + 1,
    )
    sigma = preset.deformation_length_mm / DISPLACEMENT_GRID_MM
    field = np.stack(
        [ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap") for _ in range(3)]
    )
    field *= preset.deformation_mm / max(np.sqrt((field**2).sum(0).mean()), 1e-9)
    affine = np.eye(4)
    affine[:3, :3] *= DISPLACEMENT_GRID_MM
    affine[:3, 3] = lo
    vertex_area = perturbed_vertex_areas(
        template, brain_rng(seed, brain_id, 1), preset.border_shift_mm
    )
    num_areas = len(template.layout.areas)
    low, high = preset.mapped_area_fraction
    fraction = rng.uniform(low, high)
    mapped = np.sort(
        rng.choice(np.arange(1, num_areas + 1), int(round(fraction * num_areas)), replace=False)
    )
    return BrainModel(
        brain_id=brain_id,
        shrinkage_factor=float(shrinkage),
        size_factor=float(size),
        scale=float(scale),
        linear=linear,
        centre_mm=TEMPLATE_CENTRE_MM.copy(),
        displacement=field.astype(np.float32),
        displacement_affine=affine,
        vertex_area=vertex_area,
        mapped_areas=mapped,
        stain_gain=float(np.exp(rng.normal(0, 0.12))),
        stain_gamma=float(np.exp(rng.normal(0, 0.1))),
    )
