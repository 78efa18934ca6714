"""Tests of the patch encoders: shapes, feature sizes, parameter counts, minimum sizes, seeds."""

from __future__ import annotations

import pytest
import torch

from cortexgraph.features.encoders import (
    BaseEncoder,
    PatchClassifier,
    PatchTooSmallError,
    ProjectionHead,
    ResNetEncoder,
    build_encoder,
    count_parameters,
    encoder_feature_dim,
)

torch.set_num_threads(1)

# Table 6.2 of the thesis (Schiffer, PhD thesis): parameters in millions and d_h.
NOMINAL = {"base": (0.66, 128), "resnet18": (11.16, 512), "resnet50": (23.50, 2048)}


@pytest.mark.parametrize("name", ["base", "resnet18", "resnet50", "resnet101"])
def test_parameter_counts_match_table_6_2(name):
    nominal_m = {"base": 0.66, "resnet18": 11.16, "resnet50": 23.50, "resnet101": 42.49}[name]
    count = count_parameters(build_encoder(name, seed=0))
    # the table gives two decimals: allow 1% (base: +-0.01M rounding is 1.5%, use 2%)
    tolerance = 0.02 if name == "base" else 0.01
    assert abs(count / 1e6 - nominal_m) <= tolerance * nominal_m, count


@pytest.mark.parametrize("name", ["base", "resnet18", "resnet50"])
def test_feature_dim(name):
    assert build_encoder(name, seed=0).feature_dim == NOMINAL[name][1]


def test_encoder_feature_dim_reads_any_encoder_module():
    assert encoder_feature_dim(build_encoder("base", seed=0)) == 128
    head = PatchClassifier(build_encoder("base", seed=0), 3)
    assert head.head.in_features == 128 and head.head.out_features == 3
    with pytest.raises(TypeError):
        encoder_feature_dim(torch.nn.Linear(2, 2))  # no feature_dim


def test_resnet_output_shapes_small_patches():
    for depth, size in [(18, 64), (50, 48), (18, 9)]:
        encoder = ResNetEncoder(depth, seed=1).eval()
        with torch.no_grad():
            h = encoder(torch.rand(2, 1, size, size))
            fmap = encoder.forward_features(torch.rand(1, 1, size, size))
        assert h.shape == (2, encoder.feature_dim)
        assert fmap.shape[-1] == encoder.output_size(size)
        assert torch.isfinite(h).all()


def test_base_minimum_input_is_1129_px_and_shapes():
    encoder = BaseEncoder(seed=0).eval()
    # 5x5/4 conv, five 2x2 pools and eleven unpadded 3x3 convs need 1129 px (the thesis's small
    # base patch size, Sect. 6.2.1); 2025 px gives an 8 x 8 map.
    assert encoder.min_input_px == 1129
    assert encoder.output_size(1129) == 1
    assert encoder.output_size(1128) == 0
    assert encoder.output_size(2025) == 8
    with torch.no_grad():
        h = encoder(torch.rand(1, 1, 1129, 1129))
    assert h.shape == (1, 128)
    with pytest.raises(PatchTooSmallError, match="1129"):
        encoder(torch.rand(1, 1, 1128, 1200))


def test_base_same_padding_for_small_presets():
    encoder = BaseEncoder(padding="same", seed=0).eval()
    assert encoder.min_input_px == 125
    assert encoder.output_size(125) == 1 and encoder.output_size(124) == 0
    for size in (128, 200):
        with torch.no_grad():
            fmap = encoder.forward_features(torch.rand(2, 1, size, size))
        assert fmap.shape == (2, 128, encoder.output_size(size), encoder.output_size(size))
    with pytest.raises(PatchTooSmallError):
        encoder(torch.rand(1, 1, 64, 64))


def test_resnet_minimum_input():
    encoder = ResNetEncoder(18, seed=0)
    assert encoder.min_input_px == 9
    with pytest.raises(PatchTooSmallError, match="9 px"):
        encoder(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="channel"):
        encoder(torch.rand(1, 3, 32, 32))


def test_output_size_matches_forward():
    encoder = ResNetEncoder(18, seed=0).eval()
    for size in (9, 10, 33, 64, 127):
        with torch.no_grad():
            fmap = encoder.forward_features(torch.rand(1, 1, size, size))
        assert fmap.shape[-1] == encoder.output_size(size)


def test_deterministic_with_seed():
    a, b = build_encoder("resnet18", seed=7), build_encoder("resnet18", seed=7)
    c = build_encoder("resnet18", seed=8)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_projection_head():
    head = ProjectionHead(512, 256, seed=0)
    z = head(torch.rand(4, 512))
    assert z.shape == (4, 256)
    assert head.hidden_dim == 512
    assert isinstance(head.net[1], torch.nn.BatchNorm1d)
    # two fully connected layers (thesis Sect. 6.1.5)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == 2


def test_patch_classifier_frozen_encoder_trains_only_head():
    model = PatchClassifier(ResNetEncoder(18, seed=0), 5, freeze_encoder=True, seed=0)
    model.train()
    assert not model.encoder.training  # running BN statistics stay fixed
    running = model.encoder.final[0].running_mean.clone()
    logits = model(torch.rand(3, 1, 32, 32))
    assert logits.shape == (3, 5)
    logits.sum().backward()
    assert model.head.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())
    assert torch.equal(running, model.encoder.final[0].running_mean)
    assert count_parameters(model, trainable_only=True) == 512 * 5 + 5


def test_patch_classifier_full_training_has_encoder_gradients():
    model = PatchClassifier(BaseEncoder(padding="same", seed=0), 3, seed=0).train()
    model(torch.rand(2, 1, 128, 128)).sum().backward()
    assert model.encoder.blocks[0][0].weight.grad is not None


def test_gradient_checkpointing_gives_same_result():
    x = torch.rand(2, 1, 24, 24)
    outputs = []
    for flag in (False, True):
        encoder = ResNetEncoder(18, checkpoint_stages=flag, seed=3).train()
        h = encoder(x)
        h.pow(2).sum().backward()
        outputs.append((h.detach(), encoder.stem[0].weight.grad.clone()))
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-6)
    assert torch.allclose(outputs[0][1], outputs[1][1], atol=1e-5)


def test_build_encoder_names():
    assert isinstance(build_encoder("ResNet-50"), ResNetEncoder)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vgg16")
