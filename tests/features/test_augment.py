"""Tests of the patch augmentation: parameter distributions, identity, geometry conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cortexgraph.features.augment import (
    AugmentationConfig,
    AugmentationParams,
    apply_augmentation,
    apply_filter,
    apply_geometry,
    apply_intensity,
    augmented_window,
    gamma_from_z,
    sample_augmentation_params,
    sample_rotated_window,
)

N_DRAWS = 20_000


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(1234)
    return [sample_augmentation_params(rng) for _ in range(N_DRAWS)]


def test_parameters_within_ranges(draws):
    d = np.array([p.translation_distance_um for p in draws])
    angle = np.array([p.angle_rad for p in draws])
    alpha = np.array([p.alpha for p in draws])
    beta = np.array([p.beta for p in draws])
    z = np.array([p.gamma_z for p in draws])
    assert d.min() >= 0 and d.max() <= 200.0 + 1e-9
    assert angle.min() >= -math.pi and angle.max() <= math.pi
    assert alpha.min() >= 0.9 and alpha.max() <= 1.1
    assert beta.min() >= -0.1 and beta.max() <= 0.1
    assert z.min() >= -0.05 and z.max() <= 0.05
    for p in draws:
        if p.filter == "blur":
            assert 0.125 <= p.sigma_px <= 1.0 and p.delta == 0.0
        elif p.filter == "sharpen":
            assert 0.125 <= p.sigma_px <= 2.0 and 0.5 <= p.delta <= 1.5
        else:
            assert p.sigma_px == 0.0
    # uniform distance on [0, 200]: mean 100 um, sd 57.7 um -> 5-sigma bound on the mean
    assert abs(d.mean() - 100.0) < 5 * 57.74 / math.sqrt(N_DRAWS)
    # uniform direction: the mean translation vector is ~0
    t = np.array([p.translation_um for p in draws])
    assert np.all(np.abs(t.mean(axis=0)) < 5 * 100.0 / math.sqrt(N_DRAWS))


def test_unbiased_gamma(draws):
    gamma = np.array([p.gamma for p in draws])
    log_g = np.log(gamma)
    # E[log gamma] = 0 because log gamma(Z) is odd in Z and Z is symmetric
    assert abs(log_g.mean()) < 5 * log_g.std() / math.sqrt(N_DRAWS)
    lo, hi = float(gamma_from_z(0.05)), float(gamma_from_z(-0.05))
    assert lo == pytest.approx(0.8151, abs=1e-3) and hi == pytest.approx(1.2268, abs=1e-3)
    assert gamma.min() >= lo - 1e-12 and gamma.max() <= hi + 1e-12
    z = np.linspace(-0.05, 0.05, 11)
    np.testing.assert_allclose(gamma_from_z(z) * gamma_from_z(-z), 1.0, rtol=1e-12)


def test_blur_sharpen_and_mirror_frequencies(draws):
    kinds = np.array([p.filter for p in draws])
    tol = 5 * math.sqrt(0.25 * 0.75 / N_DRAWS)  # 5 binomial standard deviations
    assert abs(np.mean(kinds == "blur") - 0.25) < tol
    assert abs(np.mean(kinds == "sharpen") - 0.25) < tol
    mirrored = np.mean([p.mirrored for p in draws])
    assert abs(mirrored - 0.5) < 5 * math.sqrt(0.25 / N_DRAWS)


def test_same_seed_same_draws():
    a = [sample_augmentation_params(np.random.default_rng(5)) for _ in range(3)]
    b = [sample_augmentation_params(np.random.default_rng(5)) for _ in range(3)]
    assert a == b


def test_config_overrides_and_validation():
    cfg = AugmentationConfig(max_translation_um=0.0, p_mirror=0.0, p_blur=0.0, p_sharpen=1.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = sample_augmentation_params(rng, cfg)
        assert p.translation_distance_um == 0.0 and not p.mirrored and p.filter == "sharpen"
    with pytest.raises(ValueError):
        AugmentationConfig(p_blur=0.7, p_sharpen=0.7)


def test_identity_returns_input():
    x = np.random.default_rng(0).random((33, 40)).astype(np.float32)
    out = apply_augmentation(x, AugmentationParams.identity(), spacing_um=2.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


def test_intensity_formula():
    x = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    p = AugmentationParams(alpha=1.05, beta=-0.03, gamma_z=0.02)
    expected = 1.05 * x.astype(np.float64) ** p.gamma - 0.03
    np.testing.assert_allclose(apply_intensity(x, p), expected, atol=1e-6)
    # the full pipeline clips to [0, 1]
    out = apply_augmentation(x, AugmentationParams(beta=0.1), spacing_um=2.0)
    assert out.max() == 1.0 and out.min() == pytest.approx(0.1)


def test_blur_has_requested_sigma_and_sharpen_adds_contrast():
    impulse = np.zeros((41, 41), dtype=np.float32)
    impulse[20, 20] = 1.0
    blurred = apply_filter(impulse, AugmentationParams(filter="blur", sigma_px=0.8))
    rr = np.arange(41) - 20
    var_rows = float(np.sum(blurred.sum(axis=1) * rr**2) / blurred.sum())
    assert var_rows == pytest.approx(0.8**2, rel=0.02)
    step = np.zeros((21, 21), dtype=np.float32)
    step[:, 10:] = 0.6
    step += 0.2
    sharp = apply_filter(step, AugmentationParams(filter="sharpen", sigma_px=1.0, delta=1.0))
    # unsharp masking over- and undershoots at the edge, leaves flat regions unchanged
    assert sharp[:, 10].min() > 0.8 + 0.05 and sharp[:, 9].max() < 0.2 - 0.05
    np.testing.assert_allclose(sharp[:, :4], 0.2, atol=1e-6)


def test_geometry_rotation_mirror_translation():
    x = np.random.default_rng(2).random((9, 9)).astype(np.float32)
    quarter = apply_geometry(x, AugmentationParams(angle_rad=math.pi / 2), spacing_um=2.0)
    np.testing.assert_allclose(quarter, np.rot90(x, -1), atol=1e-5)
    mirrored = apply_geometry(x, AugmentationParams(mirrored=True, angle_rad=0.0), 2.0)
    np.testing.assert_array_equal(mirrored, x[:, ::-1])
    # the centre moves +3 px in x (6 um at 2 um/px) and -2 px in y: content moves the other way
    shifted = apply_geometry(x, AugmentationParams(translation_um=(6.0, -4.0)), 2.0, fill=-1.0)
    np.testing.assert_allclose(shifted[2:, :6], x[:-2, 3:], atol=1e-6)
    assert np.all(shifted[:2] == -1.0) and np.all(shifted[:, 6:] == -1.0)
    # reading a larger square and cropping keeps the rotated corners inside the data
    big = np.random.default_rng(3).random((91, 91)).astype(np.float32)
    crop = apply_geometry(big, AugmentationParams(angle_rad=0.7), 2.0, out_size_px=64, fill=-1.0)
    assert crop.shape == (64, 64) and crop.min() >= 0.0


def test_full_pipeline_output_range_and_shape(draws):
    x = np.random.default_rng(4).random((64, 64)).astype(np.float32)
    for p in draws[:20]:
        out = apply_augmentation(x, p, spacing_um=8.0)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_augmented_window_matches_raster_read_patch(tmp_path):
    from cortexgraph.data.raster import Raster, write_raster

    spacing_um = 4.0
    image = np.random.default_rng(6).random((160, 200)).astype(np.float32)
    path = write_raster(tmp_path / "s.h5", image, spacing_um, num_levels=1)
    params = AugmentationParams(translation_um=(120.0, -60.0), angle_rad=0.6, mirrored=True)
    row, col = 75, 100  # unshifted centre on a pixel centre: ((i + 0.5) * spacing) mm
    start_mm = ((col + 0.5) * spacing_um / 1000, (row + 0.5) * spacing_um / 1000)
    centre_mm, angle, mirrored = augmented_window(start_mm, params)
    np.testing.assert_allclose(centre_mm, [start_mm[0] + 0.12, start_mm[1] - 0.06])
    with Raster(path) as raster:
        patch = raster.read_patch(tuple(centre_mm), 31, spacing_um, angle_rad=angle)
    if mirrored:
        patch = patch[:, ::-1]
    centre_rc = (centre_mm[1] * 1000 / spacing_um - 0.5, centre_mm[0] * 1000 / spacing_um - 0.5)
    ours = sample_rotated_window(image, centre_rc, angle, mirrored, (31, 31))
    np.testing.assert_allclose(ours, patch, atol=1e-5)
    # the same through apply_geometry on a window cut around the unshifted centre
    window = image[row - 70 : row + 71, col - 70 : col + 71]
    via_patch = apply_geometry(window, params, spacing_um, out_size_px=31)
    np.testing.assert_allclose(via_patch, patch, atol=1e-5)


def test_batch_photometric_equals_patch_by_patch(draws):
    from cortexgraph.features.augment import apply_photometric, apply_photometric_batch

    x = np.random.default_rng(7).random((40, 24, 24)).astype(np.float32)
    x[0, 0, 0] = 1.2  # outside [0, 1]: clipped first, as apply_intensity does
    params = draws[:39] + [AugmentationParams.identity()]
    batch = apply_photometric_batch(x, params)
    for k, p in enumerate(params):
        np.testing.assert_allclose(batch[k], apply_photometric(x[k], p), rtol=0, atol=1e-6)
    assert {p.filter for p in params} == {"none", "blur", "sharpen"}
