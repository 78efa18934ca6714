"""Size arithmetic and output shapes of the HR / LR / MS U-Nets."""

from __future__ import annotations

import pytest
import torch

from cortexgraph.lsm.networks import (
    build_lsm,
    decoder_output_size,
    encoder_input_size,
    encoder_sizes,
    hr_encoder_ops,
    lr_encoder_ops,
    lsm_config,
    nearest_valid_input,
)


def test_full_configuration_matches_the_seeds():
    hr = lsm_config("full", "hr")
    lr = lsm_config("full", "lr")
    ms = lsm_config("full", "ms")
    # 2025 px at 2 um, LR 756 px (LR U-Net) / 628 px (MS) at 16 um, 64 px output at 16 um
    assert hr.input_px() == 2025
    assert lr.input_px() == 756
    assert ms.input_px() == (2025, 628)
    assert hr.output_px == 64 and hr.bottleneck_spacing_um == 256.0
    assert ms.lr_pools == 4
    for cfg in (hr, lr, ms):
        assert build_lsm(cfg).output_size(cfg.input_px()) == 64


def test_encoder_size_arithmetic():
    cfg = lsm_config("full", "ms")
    assert encoder_sizes(hr_encoder_ops(cfg), 2025) == [504, 248, 120, 56, 24, 8]
    assert encoder_sizes(lr_encoder_ops(cfg), 628) == [624, 304, 144, 64, 24, 16]
    assert encoder_sizes(lr_encoder_ops(cfg), 756)[-1] == 24
    # the paper's 682 px is not a valid input of the unpadded LR encoder (odd before 2nd pooling)
    with pytest.raises(ValueError):
        encoder_sizes(lr_encoder_ops(cfg), 682)
    with pytest.raises(ValueError):
        encoder_sizes(hr_encoder_ops(cfg), 2024)
    for blocks in (hr_encoder_ops(cfg), lr_encoder_ops(cfg)):
        for bottleneck in (1, 5, 8, 13):
            n_in = encoder_input_size(blocks, bottleneck)
            assert encoder_sizes(blocks, n_in)[-1] == bottleneck
    # linear in the bottleneck: HR steps of 128 px (stride 4 x 2^5), LR of 16 px (2^4)
    hr_blocks = hr_encoder_ops(cfg)
    assert encoder_input_size(hr_blocks, 9) - encoder_input_size(hr_blocks, 8) == 128
    assert nearest_valid_input(hr_blocks, 2030) == 2025
    assert decoder_output_size(8, 4) == 68  # valid decoder output; the published 64 px is its centre


def test_output_size_without_crop_is_the_full_valid_output():
    hr = build_lsm(lsm_config("full", "hr", output_patch_um=None))
    lr = build_lsm(lsm_config("full", "lr", output_patch_um=None))
    assert hr.output_size(2025) == 68
    assert hr.output_size(2025 + 128) == decoder_output_size(9, 4) == 84
    assert lr.output_size(756) == 324
    with pytest.raises(ValueError):
        hr.output_size(1000)  # not a valid size
    small_out = build_lsm(lsm_config("full", "hr"))
    with pytest.raises(ValueError):
        small_out.output_size(encoder_input_size(hr_encoder_ops(small_out.config), 7))


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("arch", ["hr", "lr", "ms"])
def test_forward_shapes(preset, arch):
    cfg = lsm_config(preset, arch)
    net = build_lsm(cfg).eval()
    sizes = cfg.input_px()
    out = net.output_size(sizes)
    with torch.no_grad():
        if arch == "ms":
            y = net(torch.rand(2, 1, sizes[0], sizes[0]), torch.rand(2, 1, sizes[1], sizes[1]))
        else:
            y = net(torch.rand(2, 1, sizes, sizes))
    assert y.shape == (2, cfg.n_classes, out, out)
    if preset == "small":
        assert out == 32 and cfg.output_spacing_um == 32.0


def test_full_ms_forward_shape():
    cfg = lsm_config("full", "ms")
    net = build_lsm(cfg).eval()
    hr_px, lr_px = cfg.input_px()
    with torch.no_grad():
        y = net(torch.rand(1, 1, hr_px, hr_px), torch.rand(1, 1, lr_px, lr_px))
    assert y.shape == (1, 4, 64, 64)
    # both encoders feed the bottleneck and every decoder level (skips from both)
    assert all(len(plan) == 2 for plan in net.skip_plan)


def test_output_is_centred_on_the_input():
    """Cropping the input by a multiple of the total stride crops the output by the same amount."""
    torch.manual_seed(0)
    cfg = lsm_config("tiny", "hr", upconv_padding="valid")
    net = build_lsm(cfg).eval().double()
    big = torch.rand(1, 1, 76, 76, dtype=torch.float64)
    with torch.no_grad():
        full = net(big)
        part = net(big[..., 8:68, 8:68])
    assert full.shape[-1] == 30 and part.shape[-1] == 14
    assert net.output_size(76) == 30 and net.output_size(60) == 14
    torch.testing.assert_close(part, full[..., 8:22, 8:22], rtol=1e-9, atol=1e-10)


def test_valid_upconv_full_configuration():
    cfg = lsm_config("full", "hr", upconv_padding="valid", hr_patch_um=2.0 * 2281)
    assert decoder_output_size(10, 4, 2, "valid") == 70
    assert cfg.input_px() == 2281
    assert build_lsm(cfg).output_size(2281) == 64
    with pytest.raises(ValueError):
        build_lsm(cfg).output_size(2025)  # a 38 px valid output cannot hold 64 px


def test_ms_rejects_misaligned_patches():
    cfg = lsm_config("tiny", "ms")
    net = build_lsm(cfg)
    hr_px, lr_px = cfg.input_px()
    with pytest.raises(ValueError):
        net.output_size((hr_px, lr_px + 4))  # LR bottleneck one px larger: grids misaligned


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError):
        lsm_config("full", "hr", hr_first_stride=2)  # HR bottleneck no longer at 256 um
    with pytest.raises(ValueError):
        lsm_config("full", "unet")


@pytest.mark.parametrize("arch", ["hr", "lr", "ms"])
def test_phantom_preset_scales_with_the_image_spacing(arch):
    from cortexgraph.lsm.networks import PHANTOM_OUTPUT_PX, with_output_tile

    for spacing in (100.0, 160.0):
        cfg = lsm_config("phantom", arch, spacing_um=spacing)
        assert (cfg.hr_spacing_um, cfg.output_spacing_um, cfg.lr_spacing_um) == (
            spacing,
            2 * spacing,
            4 * spacing,
        )
        net = build_lsm(cfg)
        assert net.output_size(cfg.input_px()) == PHANTOM_OUTPUT_PX
    # the same pixel sizes at every spacing: the preset is the architecture at that spacing
    assert lsm_config("phantom", arch, spacing_um=100.0).input_px() == cfg.input_px()
    # larger tiles for prediction: the smallest patches giving 64 px, same weights
    big = with_output_tile(cfg, 64)
    big_net = build_lsm(big)
    big_net.load_state_dict(net.state_dict())
    n_in = big.input_px()
    assert big_net.output_size(n_in) == 64
    smaller = (n_in[0] - 2, n_in[1] - 2) if arch == "ms" else n_in - 2
    with pytest.raises(ValueError):
        big_net.output_size(smaller)
