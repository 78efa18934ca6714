"""Data augmentation of cortex patches for contrastive pre-training and linear evaluation.

The pipeline of Schiffer (PhD thesis, Univ. Düsseldorf; "the thesis"), Sect. 6.1.3 "Data
augmentation" and Fig. 6.2, applied per patch in the order of the text:

1. translation of the patch centre before reading: random direction, distance
   ``d ~ U[0, 200 µm]`` (thesis Sect. 6.1.3);
2. rotation ``theta ~ U[-pi, +pi]`` (thesis Sect. 6.1.3);
3. mirroring with probability 50% (thesis Sect. 6.1.3);
4. intensity ``x' = alpha * x**gamma + beta`` with ``alpha ~ U[0.9, 1.1]``, ``beta ~ U[-0.1, 0.1]``
   and the "unbiased" gamma ``gamma = log(0.5 + Z/sqrt 2) / log(0.5 - Z/sqrt 2)``,
   ``Z ~ U[-0.05, 0.05]`` (thesis Sect. 6.1.3, after Pohlen et al. 2017);
5. Gaussian blur (``sigma ~ U[0.125, 1.0]`` px) with probability 25%, or sharpening
   (``sigma ~ U[0.125, 2.0]`` px, ``delta ~ U[0.5, 1.5]``) with probability 25% (thesis Sect. 6.1.3).

Choices where the thesis is silent or ambiguous (ours):

* the translation direction is uniform in ``[-pi, pi)``; the distance (not the area) is uniform;
* blur and sharpen are mutually exclusive (one draw: 25% blur, 25% sharpen, 50% neither);
* sigma is in pixels of the patch grid;
* sharpening is unsharp masking ``x + delta * (x - G_sigma(x))``.  The thesis prints
  ``x + delta * (G_sigma(x) - x)`` (Sect. 6.1.3), which for ``delta`` in [0.5, 1.5] *blurs* (and
  over-blurs); we take the word "sharpened" over the printed sign;
* the output is clipped to [0, 1] (``clip=True``);
* geometry acts on the read window (centre, angle, mirror) so that a patch is read once from
  the chunked section image; ``apply_geometry`` does the same on an in-memory image.

Geometry convention (identical to :meth:`cortexgraph.data.raster.Raster.read_patch`): output
pixel ``(r, c)`` with offsets ``dr = r - (rows-1)/2``, ``dc = c - (cols-1)/2`` samples the source at
``col = c_col + cos(a) dc + sin(a) dr``, ``row = c_row - sin(a) dc + cos(a) dr``; mirroring flips
the output columns (``dc -> -dc``).  Section coordinates: x along columns, y along rows, in mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "AugmentationConfig",
    "AugmentationParams",
    "gamma_from_z",
    "sample_augmentation_params",
    "augmented_window",
    "sample_rotated_window",
    "apply_geometry",
    "apply_intensity",
    "apply_filter",
    "apply_photometric",
    "apply_photometric_batch",
    "apply_augmentation",
]

FILTERS = ("none", "blur", "sharpen")


@dataclass(frozen=True)
class AugmentationConfig:
    """Ranges of the augmentation parameters; the defaults are the thesis's (Sect. 6.1.3).

    Attributes
    ----------
    max_translation_um : largest centre translation, µm (200).
    rotation_range_rad : rotation interval (``[-pi, pi]``).
    p_mirror : probability of mirroring (0.5).
    alpha_range : contrast factor interval ([0.9, 1.1]).
    beta_range : brightness offset interval ([-0.1, 0.1]).
    z_range : interval of Z in the unbiased gamma formula ([-0.05, 0.05]).
    p_blur, p_sharpen : probabilities of Gaussian blur and of sharpening (0.25 each).
    blur_sigma_px : blur sigma interval in px ([0.125, 1.0]).
    sharpen_sigma_px : sharpen sigma interval in px ([0.125, 2.0]).
    sharpen_delta : sharpen strength interval ([0.5, 1.5]).
    """

    max_translation_um: float = 200.0
    rotation_range_rad: tuple[float, float] = (-math.pi, math.pi)
    p_mirror: float = 0.5
    alpha_range: tuple[float, float] = (0.9, 1.1)
    beta_range: tuple[float, float] = (-0.1, 0.1)
    z_range: tuple[float, float] = (-0.05, 0.05)
    p_blur: float = 0.25
    p_sharpen: float = 0.25
    blur_sigma_px: tuple[float, float] = (0.125, 1.0)
    sharpen_sigma_px: tuple[float, float] = (0.125, 2.0)
    sharpen_delta: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        if self.max_translation_um < 0:
            raise ValueError("max_translation_um must be >= 0")
        for name in ("p_mirror", "p_blur", "p_sharpen"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.p_blur + self.p_sharpen > 1.0:
            raise ValueError("p_blur + p_sharpen must not exceed 1 (the two are exclusive)")
        z_lo, z_hi = self.z_range
        if not -math.sqrt(0.5) < z_lo <= z_hi < math.sqrt(0.5):
            raise ValueError("z_range must lie inside (-1/sqrt(2), 1/sqrt(2))")


def gamma_from_z(z: float | np.ndarray) -> float | np.ndarray:
    """The unbiased gamma ``log(0.5 + 2**-0.5 z) / log(0.5 - 2**-0.5 z)`` (thesis Sect. 6.1.3).

    ``gamma(-z) = 1 / gamma(z)``, so ``log gamma`` is odd in ``z`` and ``E[log gamma] = 0`` for a
    symmetric ``Z``; ``z = +-0.05`` gives ``gamma`` = 0.815 / 1.227.
    """
    s = 2.0**-0.5
    return np.log(0.5 + s * np.asarray(z)) / np.log(0.5 - s * np.asarray(z))


@dataclass(frozen=True)
class AugmentationParams:
    """One patch's augmentation, drawn once per patch.

    Attributes
    ----------
    translation_um : (dx, dy) shift of the patch centre in section coordinates, µm.
    angle_rad : rotation of the patch axes (same sense as ``Raster.read_patch``), rad.
    mirrored : flip the patch columns after rotation.
    alpha, beta : contrast factor and brightness offset.
    gamma_z : the Z of the gamma formula; ``gamma`` is derived from it.
    filter : ``"none"``, ``"blur"`` or ``"sharpen"``.
    sigma_px : Gaussian sigma of the blur / sharpen filter, px (0 when ``filter == "none"``).
    delta : sharpening strength (0 unless ``filter == "sharpen"``).
    """

    translation_um: tuple[float, float] = (0.0, 0.0)
    angle_rad: float = 0.0
    mirrored: bool = False
    alpha: float = 1.0
    beta: float = 0.0
    gamma_z: float = 0.0
    filter: str = "none"
    sigma_px: float = 0.0
    delta: float = 0.0
    _gamma: float = field(init=False, repr=False, compare=False, default=1.0)

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, not {self.filter!r}")
        object.__setattr__(self, "_gamma", float(gamma_from_z(self.gamma_z)))

    @property
    def gamma(self) -> float:
        """The gamma exponent ``gamma_from_z(gamma_z)``."""
        return self._gamma

    @property
    def translation_distance_um(self) -> float:
        return float(math.hypot(*self.translation_um))

    @classmethod
    def identity(cls) -> AugmentationParams:
        """Parameters that leave a patch unchanged (evaluation)."""
        return cls()

    @property
    def is_geometric_identity(self) -> bool:
        return self.translation_um == (0.0, 0.0) and self.angle_rad == 0.0 and not self.mirrored

    @property
    def is_photometric_identity(self) -> bool:
        return (
            self.alpha == 1.0
            and self.beta == 0.0
            and self.gamma_z == 0.0
            and (self.filter == "none")
        )


def sample_augmentation_params(
    rng: np.random.Generator, config: AugmentationConfig | None = None
) -> AugmentationParams:
    """Draw one patch's augmentation parameters.

    Parameters
    ----------
    rng : numpy random generator (the only source of randomness; same seed -> same draws).
    config : parameter ranges; default :class:`AugmentationConfig` (the thesis's values).

    Returns
    -------
    AugmentationParams.  The same number of random values is drawn on every call, so the stream
    stays aligned whatever filter is chosen.
    """
    cfg = AugmentationConfig() if config is None else config
    distance_um = rng.uniform(0.0, cfg.max_translation_um)
    direction = rng.uniform(-math.pi, math.pi)
    angle = rng.uniform(*cfg.rotation_range_rad)
    mirrored = bool(rng.random() < cfg.p_mirror)
    alpha = rng.uniform(*cfg.alpha_range)
    beta = rng.uniform(*cfg.beta_range)
    z = rng.uniform(*cfg.z_range)
    u_filter = rng.random()
    u_sigma = rng.random()
    u_delta = rng.random()
    if u_filter < cfg.p_blur:
        kind = "blur"
        lo, hi = cfg.blur_sigma_px
        sigma, delta = lo + (hi - lo) * u_sigma, 0.0
    elif u_filter < cfg.p_blur + cfg.p_sharpen:
        kind = "sharpen"
        lo, hi = cfg.sharpen_sigma_px
        d_lo, d_hi = cfg.sharpen_delta
        sigma, delta = lo + (hi - lo) * u_sigma, d_lo + (d_hi - d_lo) * u_delta
    else:
        kind, sigma, delta = "none", 0.0, 0.0
    return AugmentationParams(
        translation_um=(
            float(distance_um * math.cos(direction)),
            float(distance_um * math.sin(direction)),
        ),
        angle_rad=float(angle),
        mirrored=mirrored,
        alpha=float(alpha),
        beta=float(beta),
        gamma_z=float(z),
        filter=kind,
        sigma_px=float(sigma),
        delta=float(delta),
    )


def augmented_window(
    center_mm: tuple[float, float] | np.ndarray, params: AugmentationParams
) -> tuple[np.ndarray, float, bool]:
    """The read window of an augmented patch: shifted centre, rotation angle, mirror flag.

    Parameters
    ----------
    center_mm : (x_mm, y_mm) patch centre in section coordinates.
    params : the patch's augmentation.

    Returns
    -------
    (center_mm (2,) float64, angle_rad, mirrored).  Read the patch lazily with
    ``raster.read_patch(tuple(center), size_px, spacing_um, angle_rad=angle)``, flip its columns
    if ``mirrored`` (``patch[:, ::-1]``), scale it to [0, 1] and finish with
    :func:`apply_photometric`.  This equals :func:`apply_geometry` on the whole image.
    """
    center = np.asarray(center_mm, dtype=np.float64).reshape(2)
    shift_mm = np.asarray(params.translation_um, dtype=np.float64) / 1000.0
    return center + shift_mm, float(params.angle_rad), bool(params.mirrored)


def sample_rotated_window(
    image: np.ndarray,
    center_rc_px: tuple[float, float],
    angle_rad: float,
    mirrored: bool,
    out_shape: tuple[int, int],
    *,
    fill: float = 0.0,
    order: int = 1,
) -> np.ndarray:
    """Resample a rotated (and optionally mirrored) window of a 2D image.

    Parameters
    ----------
    image : (H, W) array.
    center_rc_px : window centre as continuous (row, col) indices (pixel centres at integers).
    angle_rad, mirrored : rotation and mirroring (convention in the module docstring).
    out_shape : (rows, cols) of the output.
    fill : value outside the image (beyond the outer half pixel of the edge pixels).
    order : spline order (1 = bilinear).

    Returns
    -------
    (rows, cols) float32 array.
    """
    rows, cols = int(out_shape[0]), int(out_shape[1])
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D, got shape {image.shape}")
    flip = -1.0 if mirrored else 1.0
    cos_a, sin_a = math.cos(angle_rad), math.sin(angle_rad)
    half_r, half_c = (rows - 1) / 2.0, (cols - 1) / 2.0
    # source (row, col) = matrix @ (r, c) + offset, i.e. the convention of the module docstring
    matrix = np.array([[cos_a, -sin_a * flip], [sin_a, cos_a * flip]])
    offset = np.array(
        [
            center_rc_px[0] - cos_a * half_r + sin_a * flip * half_c,
            center_rc_px[1] - sin_a * half_r - cos_a * flip * half_c,
        ]
    )
    # Pixels cover [i - 0.5, i + 0.5]: the outer half pixel takes the nearest edge value (so
    # rounding noise such as cos(pi/2) = 6e-17 cannot drop edge pixels); beyond it, ``fill``.
    out = ndimage.affine_transform(
        image,
        matrix,
        offset=offset,
        output_shape=(rows, cols),
        order=order,
        mode="nearest",
        prefilter=order > 1,
    )
    corners = matrix @ np.array([[0, 0, rows - 1, rows - 1], [0, cols - 1, 0, cols - 1]])
    corners = corners + offset[:, None]
    limit = np.array([image.shape[0] - 0.5, image.shape[1] - 0.5])[:, None]
    if np.any(corners < -0.5) or np.any(corners > limit):  # the window leaves the image
        rr = np.arange(rows, dtype=np.float64)[:, None]
        cc = np.arange(cols, dtype=np.float64)[None, :]
        src_r = matrix[0, 0] * rr + matrix[0, 1] * cc + offset[0]
        src_c = matrix[1, 0] * rr + matrix[1, 1] * cc + offset[1]
        outside = (src_r < -0.5) | (src_r > limit[0, 0]) | (src_c < -0.5) | (src_c > limit[1, 0])
        out[outside] = fill
    return out.astype(np.float32, copy=False)


def apply_geometry(
    patch: np.ndarray,
    params: AugmentationParams,
    spacing_um: float,
    *,
    out_size_px: int | tuple[int, int] | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """Translate, rotate and mirror an in-memory patch about its centre.

    Parameters
    ----------
    patch : (H, W) image whose centre is the (unaugmented) patch centre, axes along the section.
    params : augmentation; ``translation_um`` is converted to pixels with ``spacing_um``.
    spacing_um : pixel spacing of ``patch``, µm.
    out_size_px : output size (default: the input size).  Reading a larger square (side x sqrt 2)
        and cropping avoids fill values in the corners of rotated patches.
    fill : value where the rotated window leaves ``patch``.

    Returns
    -------
    float32 array of ``out_size_px``.  Identity geometry with the same size returns a copy.
    """
    patch = np.asarray(patch)
    if patch.ndim != 2:
        raise ValueError(f"patch must be 2D (H, W), got shape {patch.shape}")
    if spacing_um <= 0:
        raise ValueError(f"spacing_um must be positive, got {spacing_um}")
    if out_size_px is None:
        out_shape = patch.shape
    elif isinstance(out_size_px, int | float | np.number):  # a scalar: a square
        out_shape = (int(out_size_px), int(out_size_px))
    else:
        out_shape = (int(out_size_px[0]), int(out_size_px[1]))
    if params.is_geometric_identity and tuple(out_shape) == patch.shape:
        return patch.astype(np.float32, copy=True)
    center = (
        (patch.shape[0] - 1) / 2.0 + params.translation_um[1] / spacing_um,
        (patch.shape[1] - 1) / 2.0 + params.translation_um[0] / spacing_um,
    )
    return sample_rotated_window(
        patch, center, params.angle_rad, params.mirrored, out_shape, fill=fill
    )


def apply_intensity(patch: np.ndarray, params: AugmentationParams) -> np.ndarray:
    """``alpha * x**gamma + beta`` on a patch in [0, 1] (inputs are clipped to [0, 1] first)."""
    x = np.clip(np.asarray(patch, dtype=np.float32), 0.0, 1.0)
    if params.gamma != 1.0:
        x = np.power(x, np.float32(params.gamma), dtype=np.float32)
    if params.alpha != 1.0:
        x = x * np.float32(params.alpha)
    if params.beta != 0.0:
        x = x + np.float32(params.beta)
    return x


def apply_filter(patch: np.ndarray, params: AugmentationParams) -> np.ndarray:
    """Gaussian blur ``G_sigma(x)`` or sharpening ``x + delta (x - G_sigma(x))`` (reflect borders)."""
    x = np.asarray(patch, dtype=np.float32)
    if params.filter == "none" or params.sigma_px <= 0:
        return x
    blurred = ndimage.gaussian_filter(x, params.sigma_px, mode="reflect", truncate=4.0)
    if params.filter == "blur":
        return blurred
    return x + np.float32(params.delta) * (x - blurred)


def apply_photometric(
    patch: np.ndarray, params: AugmentationParams, *, clip: bool = True
) -> np.ndarray:
    """Intensity then blur / sharpen, then clipping to [0, 1] (identity params: a copy)."""
    if params.is_photometric_identity:
        return np.asarray(patch, dtype=np.float32).copy()
    out = apply_filter(apply_intensity(patch, params), params)
    if clip:
        out = np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def apply_photometric_batch(
    patches: np.ndarray, params: list[AugmentationParams], *, clip: bool = True
) -> np.ndarray:
    """:func:`apply_photometric` of every patch of a batch (B, H, W), the intensity step vectorised.

    Gives the same values as calling :func:`apply_photometric` patch by patch (identity
    parameters leave a patch unchanged, except for the clipping of inputs outside [0, 1]).
    """
    x = np.asarray(patches, dtype=np.float32)
    if x.ndim != 3 or len(x) != len(params):
        raise ValueError("patches must be (B, H, W) with one AugmentationParams per patch")
    identity = np.array([p.is_photometric_identity for p in params], dtype=bool)
    out = x.copy()
    todo = np.flatnonzero(~identity)
    if todo.size == 0:
        return out
    gamma = np.array([params[k].gamma for k in todo], dtype=np.float32)[:, None, None]
    alpha = np.array([params[k].alpha for k in todo], dtype=np.float32)[:, None, None]
    beta = np.array([params[k].beta for k in todo], dtype=np.float32)[:, None, None]
    y = np.power(np.clip(x[todo], 0.0, 1.0), gamma, dtype=np.float32) * alpha + beta
    for j, k in enumerate(todo.tolist()):
        if params[k].filter != "none":
            y[j] = apply_filter(y[j], params[k])
    if clip:
        np.clip(y, 0.0, 1.0, out=y)
    out[todo] = y
    return out


def apply_augmentation(
    patch: np.ndarray,
    params: AugmentationParams,
    spacing_um: float,
    *,
    geometry: bool = True,
    out_size_px: int | tuple[int, int] | None = None,
    fill: float = 0.0,
    clip: bool = True,
) -> np.ndarray:
    """The whole augmentation of one patch, in the thesis's order.

    Parameters
    ----------
    patch : (H, W) float image in [0, 1].
    params : from :func:`sample_augmentation_params`.
    spacing_um : pixel spacing of ``patch``, µm (converts the translation to pixels).
    geometry : ``False`` when the geometry was already applied to the read window
        (:func:`augmented_window`).
    out_size_px, fill : see :func:`apply_geometry`.
    clip : clip the result to [0, 1].

    Returns
    -------
    float32 patch; identity parameters return the input values unchanged.
    """
    x = np.asarray(patch)
    if x.ndim != 2:
        raise ValueError(f"patch must be 2D (H, W), got shape {x.shape}")
    if geometry:
        x = apply_geometry(x, params, spacing_um, out_size_px=out_size_px, fill=fill)
    return apply_photometric(x, params, clip=clip)
