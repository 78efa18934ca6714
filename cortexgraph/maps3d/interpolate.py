"""Fill gaps in a 3D area map where sections are missing or were excluded by quality control.

The LSM paper (Schiffer et al. 2021, section 2.8) replaces excluded sections "by interpolations from
neighboring sections, using Laplacian fields", citing Schober et al. (2016) for the method, without
its parameters. This module states its own:

1. On every known plane (axis 1 = y, the section stack) the area mask becomes a signed in-plane
   distance field in mm: ``+`` inside, ``-`` outside, zero half-way between the last inside and the
   first outside voxel (``edt(mask) - edt(~mask)``, halved at the boundary pair). A plane without
   the area gets ``-L`` everywhere and a plane full of it ``+L`` (``L`` = plane diagonal in mm), so
   the area ends within the gap next to such a plane. ``field='indicator'`` uses +1 / -1 instead.
2. In each run of unknown planes between two known planes the field solves the Laplace equation
   with Dirichlet values on the two known planes:

   * ``method='laplace'`` (default; the method's Laplacian field): the 3D 7-point Laplacian over
     the whole gap slab (anisotropic spacing), zero flux (Neumann) at the in-plane volume borders.
     Solved exactly: a DCT-II in the plane diagonalises the Neumann Laplacian, leaving for every
     in-plane frequency a three-term recurrence along y with the closed-form solution
     ``sinh(mu (n - j)) / sinh(mu n)`` (the discrete form of the continuum solution
     ``sinh(k (L - y)) / sinh(k L)``, ``k`` the in-plane wave number; tested against it). In-plane
     detail of wave length ``lambda`` decays into the gap over ``~lambda / (2 pi)``, so the
     interpolated boundary is smooth inside long gaps instead of a straight blend of the two
     sections' outlines. The zero-flux borders would bend the level sets of areas close to them,
     so the planes are padded (edge values) by the longest gap length before the field is solved
     and cut back afterwards. The planes are computed one at a time from the two DCTs, so memory
     stays at a few planes. ``'harmonic'`` is accepted as the former name of this method.
   * ``method='linear'``: linear interpolation of the signed distance along y between the two
     planes (shape-based interpolation; the Laplace equation along y alone, without the in-plane
     terms). Exact for boundaries that move linearly between sections, such as a cone; faster.
     It was the default before cortexgraph 0.1 followed the method here.
3. The mask on the unknown planes is ``field > 0`` (``level='zero'``) or the cut of ``level='area'``
   below. Known planes keep their input mask unchanged. Unknown planes before the first or after
   the last known plane stay empty (no extrapolation: nothing is mapped outside the range of
   available sections), except for ``extend_planes`` planes next to the first and the last known
   plane, which copy that plane (a section stands for the slab of tissue half-way to its
   neighbours; the map pipeline extends the ends by half the distance between digitized sections).

Measured on shapes with a known answer (tests/maps3d/test_maps3d_interpolate.py): a ball with every
other plane removed comes back with Dice 0.995 (Laplace) and 0.993 (linear); a cone known on three
planes 20 apart with Dice 0.995 (Laplace) and 0.994 (linear), equivalent radius within 0.16 voxel
on every plane. With ``level='zero'`` the Laplacian field shrinks convex shapes in long gaps (the
cone loses up to 8 voxels of radius), which the default ``level='area'`` cut compensates.

Level of the cut (``level='area'``, default)
    The zero level of a linearly interpolated signed distance shrinks a band that moves between two
    sections: two bands of width ``w`` offset by ``d`` give a band of width ``w - d`` half-way, and
    nothing when ``d > w``. A cortex sheet cut obliquely is such a band: on the tiny phantom
    (sections 1.2 mm apart) the zero level gives 4-9 % fewer voxels than the area level
    (``benchmarks/bench_maps3d.py --part levels``, docs/maps3d.md). So each unknown plane
    between two planes that show the area is cut at the level that gives it
    ``((1 - t) sqrt(n0) + t sqrt(n1))^2`` voxels (``n0``, ``n1`` = area voxels of the two known
    planes, without pieces and holes under 5 pixels, so that isolated label noise does not
    count; ``t`` the fraction of the way): the shape still comes from the interpolated field,
    the amount of area from interpolating the equivalent radius ``sqrt(n)`` linearly (exact for
    a translating band and for a cone; the trapezoid rule on ``n`` would overestimate a cone).
    ``level='zero'`` cuts at zero everywhere.

Where the area ends between two known planes (present on one, absent on the other), the absent
plane's field is by default replaced by ``-|f|`` of the present plane (``empty_planes='midway'``):
every in-plane point of the area then crosses zero exactly half-way through the gap (linear
method), so the area ends midway between the two sections, which is the unbiased estimate of where
it ends (the true end is anywhere in the gap). The Laplacian field of the same data would taper the
area towards its end (in-plane detail decays into the gap), so with ``level='area'`` its planes keep
the amount of the section that shows the area up to half-way, and nothing beyond; the shape is the
field's. ``empty_planes='far'`` keeps the empty plane's ``-L`` field: the area
then stops soon after the last section that shows it (``L`` is large), which underestimates its
volume by up to half a section interval times its end cross-sections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft, ndimage

__all__ = [
    "METHODS",
    "signed_distance_plane",
    "harmonic_gap_field",
    "interpolation_method",
    "interpolate_missing_sections",
]


def _spacing3(voxel_size_mm: float | Sequence[float]) -> tuple[float, float, float]:
    v = np.atleast_1d(np.asarray(voxel_size_mm, dtype=float))
    if v.size == 1:
        v = np.repeat(v, 3)
    if v.size != 3 or np.any(v <= 0):
        raise ValueError(
            f"voxel_size_mm must be one or three positive numbers, got {voxel_size_mm}"
        )
    return float(v[0]), float(v[1]), float(v[2])


def signed_distance_plane(
    plane: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0), field: str = "signed_distance"
) -> np.ndarray:
    """Signed in-plane field of a 2D mask (float32, mm): positive inside, negative outside.

    Parameters
    ----------
    plane : 2D ndarray of bool
        Area mask of one section plane (axes x, z of the volume).
    spacing_mm : (float, float)
        Voxel edge lengths along the two plane axes (mm).
    field : {'signed_distance', 'indicator'}
        Signed Euclidean distance to the boundary or +1 / -1.

    Returns
    -------
    2D ndarray of float32
        Zero level lies half-way between boundary voxels. An empty plane is ``-L`` everywhere and a
        full plane ``+L``, with ``L`` the plane diagonal in mm.
    """
    plane = np.asarray(plane) != 0
    if field == "indicator":
        return np.where(plane, 1.0, -1.0).astype(np.float32)
    if field != "signed_distance":
        raise ValueError(f"field must be 'signed_distance' or 'indicator', got {field!r}")
    diag = float(np.hypot(plane.shape[0] * spacing_mm[0], plane.shape[1] * spacing_mm[1]))
    if not plane.any():
        return np.full(plane.shape, -diag, dtype=np.float32)
    if plane.all():
        return np.full(plane.shape, diag, dtype=np.float32)
    inside = ndimage.distance_transform_edt(plane, sampling=spacing_mm)
    outside = ndimage.distance_transform_edt(~plane, sampling=spacing_mm)
    # edt is >= one voxel on both sides of the boundary; subtracting half of the smallest step puts
    # the zero level midway (exactly so along the grid axes).
    half = 0.5 * min(spacing_mm)
    return np.where(plane, inside - half, half - outside).astype(np.float32)


def _area_count(plane: np.ndarray, min_pixels: int = 5) -> int:
    """Pixels of a plane's area without isolated label noise.

    Foreground pieces of fewer than ``min_pixels`` pixels (8-connected) do not count and holes of
    fewer than ``min_pixels`` pixels (4-connected background) count as area, so salt-and-pepper
    noise in the labels, which the 3D median removes later, does not change the interpolated
    area; the boundary itself is left as it is.
    """
    if not plane.any():
        return 0
    labels, n = ndimage.label(plane, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    count = int(sizes[sizes >= min_pixels].sum())
    holes, n_holes = ndimage.label(~plane)
    hole_sizes = np.bincount(holes.ravel(), minlength=n_holes + 1)[1:]
    return count + int(hole_sizes[hole_sizes < min_pixels].sum())


def _sinh_ratio(mu: np.ndarray, a: float, b: float) -> np.ndarray:
    """sinh(mu a) / sinh(mu b) for 0 <= a <= b, stable for large mu; limit a / b at mu = 0."""
    out = np.empty_like(mu)
    small = mu < 1e-12
    out[small] = a / b
    m = mu[~small]
    out[~small] = np.exp(m * (a - b)) * (-np.expm1(-2 * m * a)) / (-np.expm1(-2 * m * b))
    return out


def _laplace_gap_planes(
    field_lo: np.ndarray,
    field_hi: np.ndarray,
    n_gap: int,
    voxel_size_mm: float | Sequence[float] = 1.0,
):
    """Yield the discrete 3D harmonic field on the unknown planes ``1 .. n_gap``, one at a time."""
    hx, hy, hz = _spacing3(voxel_size_mm)
    f0 = np.asarray(field_lo, dtype=np.float64)
    f1 = np.asarray(field_hi, dtype=np.float64)
    nx, nz = f0.shape
    g0 = fft.dctn(f0, type=2, norm="ortho")
    g1 = fft.dctn(f1, type=2, norm="ortho")
    lam = (2 - 2 * np.cos(np.pi * np.arange(nx) / nx))[:, None] / hx**2 + (
        2 - 2 * np.cos(np.pi * np.arange(nz) / nz)
    )[None, :] / hz**2
    mu = np.arccosh(1.0 + 0.5 * lam * hy**2)
    del lam
    n = n_gap + 1
    for j in range(1, n):
        coeff = _sinh_ratio(mu, n - j, n) * g0
        coeff += _sinh_ratio(mu, j, n) * g1
        yield fft.idctn(coeff, type=2, norm="ortho").astype(np.float32)


def harmonic_gap_field(
    field_lo: np.ndarray,
    field_hi: np.ndarray,
    n_gap: int,
    voxel_size_mm: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """Discrete 3D harmonic field between two Dirichlet planes (Neumann at in-plane borders).

    Parameters
    ----------
    field_lo, field_hi : 2D ndarray (nx, nz)
        Field values on the known planes just below and just above the gap.
    n_gap : int
        Number of unknown planes between them.
    voxel_size_mm : float or (x, y, z)
        Voxel edge lengths (mm); y is the plane spacing.

    Returns
    -------
    ndarray of float32, shape (nx, n_gap, nz)
        Field on the unknown planes; satisfies the 7-point Laplace equation to rounding error.
    """
    nx, nz = np.shape(field_lo)
    out = np.empty((nx, n_gap, nz), dtype=np.float32)
    for j, plane in enumerate(_laplace_gap_planes(field_lo, field_hi, n_gap, voxel_size_mm)):
        out[:, j, :] = plane
    return out


METHODS = ("laplace", "linear")
"""Gap interpolation methods (:func:`interpolate_missing_sections`); ``'laplace'`` is the default."""


def interpolation_method(method: str) -> str:
    """The canonical name of a gap interpolation method (``'harmonic'`` -> ``'laplace'``).

    Raises ValueError naming the choices for anything else.
    """
    name = "laplace" if method == "harmonic" else method
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return name


def interpolate_missing_sections(
    volume_mask: np.ndarray,
    known_planes: np.ndarray,
    *,
    voxel_size_mm: float | Sequence[float] = 1.0,
    method: str = "laplace",
    field: str = "signed_distance",
    level: str = "area",
    empty_planes: str = "midway",
    extend_planes: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Fill unknown planes (axis 1) of an area mask by interpolation between known planes.

    Parameters
    ----------
    volume_mask : 3D array of bool, axes (x, y, z)
        Area mask (ndarray or anything sliceable by plane, e.g. ``np.memmap``); values on unknown
        planes are ignored.
    known_planes : 1D ndarray of bool, length ``volume_mask.shape[1]``
        True where the plane holds a section that passed quality control.
    voxel_size_mm : float or (x, y, z), default 1.0
        Voxel edge lengths in mm (in-plane distances, and y spacing for ``'laplace'``).
    method : {'laplace', 'linear'}
        The 3D Laplacian field over the gap slab (default, the method's; ``'harmonic'`` is an
        alias) or linear interpolation along y (see the module docstring).
    field : {'signed_distance', 'indicator'}
        Field built on the known planes (see module docstring).
    level : {'area', 'zero'}
        Where to cut the interpolated field on an unknown plane between two planes that both
        show the area: at the level that gives the plane the interpolated area
        ``((1 - t) sqrt(n0) + t sqrt(n1))^2`` voxels (default; see module docstring) or at zero.
    empty_planes : {'midway', 'far'}
        Field of a known plane without the area next to a gap whose other side shows the area:
        ``-|f|`` of the other side, so the area ends half-way (default), or the plane's own
        ``-L`` field (the area ends right after the last section that shows it).
    extend_planes : int, default 0
        Unknown planes within this many planes outside the first and the last known plane copy
        that plane's mask (the rest outside the known range stays empty).
    out : 3D array of bool, optional
        Where to write the result (e.g. a ``np.memmap``; may be ``volume_mask`` itself). Planes
        are written one at a time, so memory stays at a few planes.

    Returns
    -------
    3D ndarray of bool
        Mask with every unknown plane between two known planes filled; planes outside the known
        range are empty (but for ``extend_planes``).
    """
    mask = volume_mask  # read plane by plane: works on np.memmap / h5py / zarr volumes
    known = np.asarray(known_planes, dtype=bool)
    if len(mask.shape) != 3 or known.shape != (mask.shape[1],):
        raise ValueError(
            f"need a 3D mask and one flag per plane along axis 1; got mask {mask.shape}, "
            f"known_planes {known.shape}"
        )
    method = interpolation_method(method)
    if level not in ("area", "zero"):
        raise ValueError(f"level must be 'area' or 'zero', got {level!r}")
    if empty_planes not in ("midway", "far"):
        raise ValueError(f"empty_planes must be 'midway' or 'far', got {empty_planes!r}")
    if int(extend_planes) < 0:
        raise ValueError(f"extend_planes must be >= 0, got {extend_planes}")
    hx, hy, hz = _spacing3(voxel_size_mm)
    if out is None:
        out = np.zeros(mask.shape, dtype=bool)
    elif out.shape != tuple(mask.shape):
        raise ValueError(f"out has shape {out.shape}, mask {mask.shape}")
    idx = np.flatnonzero(known)
    for j in range(mask.shape[1]):
        if known[j]:
            out[:, j, :] = np.asarray(mask[:, j, :]) != 0
        elif idx.size == 0 or j < idx[0] or j > idx[-1]:
            out[:, j, :] = False
    cache: dict[int, tuple[np.ndarray, int]] = {}
    # the Laplacian field sees the in-plane borders as zero-flux walls, which bend the level sets
    # of areas near them; the planes are padded (edge values) by the longest gap, about the reach
    # of that effect into the plane, and the field is cut back before thresholding
    gaps = np.diff(idx) if idx.size > 1 else np.zeros(0, int)
    reach_mm = float(gaps.max()) * hy if method == "laplace" and gaps.size else 0.0
    pad = (
        min(int(math.ceil(reach_mm / hx)), mask.shape[0]),
        min(int(math.ceil(reach_mm / hz)), mask.shape[2]),
    )
    inner = (slice(pad[0], pad[0] + mask.shape[0]), slice(pad[1], pad[1] + mask.shape[2]))

    def plane_field(j: int) -> tuple[np.ndarray, int]:
        if j not in cache:
            if len(cache) >= 2:  # gaps are visited in order: keep only the last two planes
                cache.pop(next(iter(cache)))
            plane = np.asarray(mask[:, j, :]) != 0
            # the area of a plane for the 'area' level, without isolated label noise
            n = _area_count(plane) if level == "area" else int(plane.sum())
            padded = np.pad(plane, ((pad[0],) * 2, (pad[1],) * 2), mode="edge")
            cache[j] = (signed_distance_plane(padded, (hx, hz), field), n)
        return cache[j]

    def threshold(values: np.ndarray, t: float, n0: int, n1: int) -> np.ndarray:
        values = values[inner]
        if level == "zero" or (n0 == 0 and n1 == 0):
            return values > 0
        if n0 == 0 or n1 == 0:
            if empty_planes == "far":
                return values > 0
            # the area ends midway: its amount stays that of the section that shows it up to
            # half-way and is nothing beyond (the amount of the 'midway' rule for either method)
            target = n0 if t < 0.5 else 0 if n1 == 0 else (n1 if t > 0.5 else 0)
        else:
            target = int(round(((1.0 - t) * math.sqrt(n0) + t * math.sqrt(n1)) ** 2))
        flat = values.ravel()
        if target <= 0:
            return np.zeros(values.shape, dtype=bool)
        if target >= flat.size:
            return np.ones(values.shape, dtype=bool)
        cut = np.partition(flat, flat.size - target)[flat.size - target]
        above = values > cut
        at_or_above = values >= cut
        # ties at the cut: all of them or none, whichever is closer to the target
        n_above, n_at = int(above.sum()), int(at_or_above.sum())
        return above if target - n_above < n_at - target else at_or_above

    for j0, j1 in zip(idx[:-1], idx[1:], strict=True):
        n_gap = int(j1 - j0 - 1)
        if n_gap == 0:
            continue
        (f0, n0), (f1, n1) = plane_field(int(j0)), plane_field(int(j1))
        if n0 == 0 and n1 == 0:
            out[:, j0 + 1 : j1, :] = False
            continue
        if empty_planes == "midway":
            if n0 == 0:
                f0 = -np.abs(f1)
            elif n1 == 0:
                f1 = -np.abs(f0)
        if method == "linear":
            for k in range(1, n_gap + 1):
                t = k / (n_gap + 1)
                values = np.float32(1 - t) * f0 + np.float32(t) * f1
                out[:, j0 + k, :] = threshold(values, t, n0, n1)
        else:
            planes = _laplace_gap_planes(f0, f1, n_gap, (hx, hy, hz))
            for k, values in enumerate(planes, start=1):
                out[:, j0 + k, :] = threshold(values, k / (n_gap + 1), n0, n1)
    n_ext = int(extend_planes)
    if idx.size and n_ext:
        first = np.asarray(out[:, idx[0], :])
        for j in range(max(0, idx[0] - n_ext), idx[0]):
            out[:, j, :] = first
        last = np.asarray(out[:, idx[-1], :])
        for j in range(idx[-1] + 1, min(mask.shape[1], idx[-1] + n_ext + 1)):
            out[:, j, :] = last
    return out
