"""Patch encoders for the CY node features: the base (modified U-Net encoder) and ResNets.

Everything here follows the contrastive-learning chapter of Schiffer (PhD thesis, Univ.
Düsseldorf; cited as "thesis", chapter 6, network architectures in Sect. 6.1.5) and the matching paper
Schiffer et al. 2021, ISBI (Sect. 2, "Model architecture"); full references in docs/references.md.

Conventions
-----------
* Input: float tensors ``(batch, in_channels, rows, cols)``, intensities in [0, 1], grayscale
  (``in_channels=1``) at the patch spacing (2 µm/px in the publications, coarser in small presets).
* Output of an encoder: ``h`` of shape ``(batch, feature_dim)`` after global average pooling (GAP,
  thesis Sect. 2.2.2).  ``feature_dim`` is 128 (base), 512 (ResNet18/34), 2048 (ResNet50/101)
  (thesis Table 6.2).
* Every convolution is followed by batch normalisation and ReLU (base; Schiffer et al. 2021, ISBI,
  Sect. 2, "Model architecture"), or preceded by them (pre-activation ResNets, thesis Sect. 2.2.3).
  Convolutions followed by batch norm have no bias.
* "No padding" (thesis Sect. 5.1.5) makes the base encoder need large patches: its minimum input is
  1129 px (this is also the small-patch size of the base baseline, thesis Sect. 6.2.1).  Small presets
  can use ``padding="same"`` (minimum 125 px) -- a documented deviation, not the published network.
  The ResNets pad their 3x3 convolutions as in He et al. and only the stem is unpadded, so they
  accept patches from 9 px up.  Each encoder exposes ``min_input_px`` and ``output_size(n)``.

Nominal parameter counts (thesis Table 6.2) and what these modules give for one input
channel (``count_parameters``): base 0.66M -> 663,376; ResNet18 11.16M -> 11,167,040;
ResNet50 23.50M -> 23,492,672; ResNet101 42.49M -> 42,484,800 (all within 0.1%).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from cortexgraph.errors import CortexgraphError

__all__ = [
    "BASE_WIDTHS",
    "RESNET_LAYOUTS",
    "BaseEncoder",
    "ResNetEncoder",
    "ProjectionHead",
    "PatchClassifier",
    "PatchTooSmallError",
    "build_encoder",
    "count_parameters",
    "ENCODER_NAMES",
]

#: Filters of the six blocks of the base encoder (Schiffer et al. 2021, ISBI, Sect. 2; Schiffer et
#: al. 2021, NeuroImage, Sect. 2.4).
BASE_WIDTHS: tuple[int, ...] = (16, 32, 64, 64, 128, 128)

#: Residual blocks per stage and block type for each ResNet depth (He et al. 2016a; thesis
#: Fig. 2.13, Sect. 2.2.3): basic two-conv blocks for 18/34, three-conv bottleneck blocks for 50/101.
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}

ENCODER_NAMES: tuple[str, ...] = ("base", "resnet18", "resnet34", "resnet50", "resnet101")

# Stem shared by the base encoder and the ResNets: 5x5 convolution, stride 4, no padding
# (thesis Sect. 5.1.5, replacing the ResNet stem per thesis Sect. 6.1.5).
STEM_KERNEL = 5
STEM_STRIDE = 4


class PatchTooSmallError(CortexgraphError, ValueError):
    """A patch is smaller than the smallest input an encoder can process."""


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution / floor-mode pooling along one axis (0 if invalid)."""
    if n + 2 * padding < kernel:
        return 0
    return (n + 2 * padding - kernel) // stride + 1


def _min_input(output_size, limit: int = 100_000) -> int:
    """Smallest input length ``n`` whose output has at least one pixel (output is monotonic)."""
    lo, hi = 1, limit
    if output_size(hi) < 1:
        raise RuntimeError("no valid input size below the search limit")
    while lo < hi:
        mid = (lo + hi) // 2
        if output_size(mid) >= 1:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _init_weights(module: nn.Module, generator: torch.Generator | None) -> None:
    """He (fan-out) init for convolutions, unit/zero batch norm, PyTorch-style uniform linear init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(
                m.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / max(1, m.in_features) ** 0.5
            nn.init.uniform_(m.weight, -bound, bound, generator=generator)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


class _Encoder(nn.Module):
    """Common interface: ``feature_dim``, ``min_input_px``, ``output_size``, input checks."""

    name: str = "encoder"
    feature_dim: int
    min_input_px: int

    def output_size(self, size_px: int) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def feature_map_size(self, size_px: int) -> int:
        """Side of the last feature map (before GAP) for a square input of ``size_px``."""
        return self.output_size(size_px)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(
                f"{self.name} encoder expects (batch, channels, rows, cols), got shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} encoder was built for {self.in_channels} input channel(s), got "
                f"{x.shape[1]}"
            )
        rows, cols = int(x.shape[2]), int(x.shape[3])
        if min(rows, cols) < self.min_input_px:
            raise PatchTooSmallError(
                f"patch of {rows}x{cols} px is smaller than the minimum input of "
                f"{self.min_input_px} px of the {self.name} encoder",
                fix=self._size_fix(),
            )

    def _size_fix(self) -> str:
        return f"use patches of at least {self.min_input_px} px (patch_px in the preset)"


class BaseEncoder(_Encoder):
    """The base encoder: encoder of the modified U-Net of Spitzer et al. (2017).

    Six blocks of two convolutions each, filters 16-32-64-64-128-128, every convolution followed by
    batch norm and ReLU, 2x2 max pooling (stride 2) after all but the last block; the first
    convolution is 5x5 with stride 4, all others 3x3 with stride 1 (Schiffer et al. 2021, ISBI,
    Sect. 2; Schiffer et al. 2021, NeuroImage, Sect. 2.4); no padding (thesis Sect. 5.1.5); GAP of the last block gives ``h`` with 128 values (Table 6.2).

    Parameters
    ----------
    in_channels : image channels (1 for the grayscale cell-body stain).
    widths : filters per block; the default is the published network.
    padding : ``"valid"`` (as published: no padding, minimum input 1129 px) or ``"same"``
        (zero-padding, minimum input 125 px; a deviation for small presets).
    seed : seed of the weight initialisation (``None``: the global torch RNG).

    Attributes
    ----------
    feature_dim : length of the output vector (``widths[-1]``, 128).
    min_input_px : smallest patch side accepted (1129 px for ``"valid"`` and the default widths).
    """

    name = "base"

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = BASE_WIDTHS,
        *,
        padding: Literal["valid", "same"] = "valid",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1:
            raise ValueError("widths must name at least one block")
        self.in_channels = int(in_channels)
        self.widths = widths
        self.padding = padding
        pad3 = 1 if padding == "same" else 0
        pad5 = 2 if padding == "same" else 0
        blocks: list[nn.Module] = []
        channels = self.in_channels
        # shape recipe for output_size(): ("conv"|"pool", kernel, stride, padding)
        self._recipe: list[tuple[int, int, int]] = []
        for index, width in enumerate(widths):
            first_kernel, first_stride, first_pad = (
                (STEM_KERNEL, STEM_STRIDE, pad5) if index == 0 else (3, 1, pad3)
            )
            layers: list[nn.Module] = [
                nn.Conv2d(channels, width, first_kernel, first_stride, first_pad, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, 1, pad3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            self._recipe += [(first_kernel, first_stride, first_pad), (3, 1, pad3)]
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, 2))
                self._recipe.append((2, 2, 0))
            blocks.append(nn.Sequential(*layers))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]
        self.min_input_px = _min_input(self.output_size)
        _init_weights(self, _generator(seed))

    def output_size(self, size_px: int) -> int:
        """Side of the last feature map for an input side of ``size_px`` (0 if too small)."""
        n = int(size_px)
        for kernel, stride, pad in self._recipe:
            n = _conv_out(n, kernel, stride, pad)
            if n < 1:
                return 0
        return n

    def _size_fix(self) -> str:
        fix = super()._size_fix()
        if self.padding == "valid":
            same = BaseEncoder(self.in_channels, self.widths, padding="same").min_input_px
            fix += f", or build it with padding='same' (minimum {same} px) for small presets"
        return fix

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map ``(batch, feature_dim, s, s)`` before pooling."""
        self._check_input(x)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``h = GAP(blocks(x))`` of shape ``(batch, feature_dim)``."""
        return torch.flatten(self.pool(self.forward_features(x)), 1)


def _projection_shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """1x1 strided convolution for a residual shortcut that changes shape; None when identity fits."""
    if stride != 1 or in_ch != out_ch:
        return nn.Conv2d(in_ch, out_ch, 1, stride, 0, bias=False)
    return None


class _PreActBlock(nn.Module):
    """A pre-activation residual block (He 2016b): ``conv1`` reads the BN-ReLU of the input, every
    later convolution the BN-ReLU of the previous one (:meth:`later`); the shortcut (identity, or a
    projection of the pre-activated input when the shape changes) is added at the end."""

    # set by the subclasses' __init__
    bn1: nn.Module
    conv1: nn.Module
    relu: nn.Module
    shortcut: nn.Module | None

    def later(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(batch norm, convolution)`` pairs after ``conv1``, in order."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        for bn, conv in self.later():
            out = conv(self.relu(bn(out)))
        return out + identity


class _PreActBasic(_PreActBlock):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut (He 2016b)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_ch, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = _projection_shortcut(in_ch, out_ch, stride)

    def later(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.bn2, self.conv2)]


class _PreActBottleneck(_PreActBlock):
    """Pre-activation bottleneck: 1x1 (reduce) - 3x3 - 1x1 (expand x4), each after BN-ReLU.

    The stride of a downsampling block sits on its *first* convolution, as the thesis describes
    ("the first convolutional layer of the second block uses a stride of two", thesis Sect. 2.2.3,
    Fig. 2.13), i.e. the original ResNet-v1 placement.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, stride, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, 1, 0, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = _projection_shortcut(in_ch, out_ch, stride)

    def later(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.bn2, self.conv2), (self.bn3, self.conv3)]


class ResNetEncoder(_Encoder):
    """Pre-activation ResNet (He et al. 2016a/b) with the base encoder's downsampling stem.

    Stem: 5x5 convolution with stride 4 and no padding to 64 filters, BN, ReLU, 2x2 max pooling --
    the base's downsampling replaces the ResNet stem "because the patches are large"
    (thesis Sect. 6.1.5).  Then four stages of residual blocks with 64, 128, 256, 512 planes
    (x4 for bottlenecks); the first block of stages 2-4 halves the resolution; the blocks are
    pre-activated (thesis Sect. 2.2.3), so a final BN-ReLU precedes GAP (thesis Sect. 2.2.3).

    The stem width 64 reproduces Table 6.2 (11.16M / 23.50M parameters; an extra 3x3 stem
    convolution would add 37k and miss it).  The stem's max pooling is our reading of "the
    downsampling block of the base architecture" (a 5x5/4 convolution and a pooling layer,
    thesis Sects. 5.1.5 and 6.1.5): stem stride 8, final stride 64 (2048 px -> a 32 x 32 map).  It
    also fits the memory the thesis reports, 2560 GB of GPU memory for batches of 2048 patches of
    2048 px, about 1.25 GB per patch (thesis, discussion, Sect. 8.4): the tensors ResNet50 saves for backward
    total 2.9 GiB fp32 (~1.4 GiB fp16) per 2048 px patch with the pooling and 6.7 GiB fp32
    without it (measured at 512 px and scaled by 16).

    Parameters
    ----------
    depth : 18, 34, 50 or 101.
    in_channels : image channels.
    checkpoint_stages : recompute each stage in the backward pass (gradient checkpointing, used for
        ResNet101 in the thesis, Sect. 6.1.5); saves memory, costs one extra forward.
    seed : seed of the weight initialisation.

    Attributes
    ----------
    feature_dim : 512 (18/34) or 2048 (50/101).
    min_input_px : 9 px (the unpadded 5x5/4 stem followed by 2x2 pooling needs two stem outputs).
    """

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 1,
        *,
        checkpoint_stages: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYOUTS)}, not {depth}")
        kind, counts = RESNET_LAYOUTS[depth]
        block = _PreActBasic if kind == "basic" else _PreActBottleneck
        self.name = f"resnet{depth}"
        self.depth = depth
        self.in_channels = int(in_channels)
        self.checkpoint_stages = bool(checkpoint_stages)
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, 64, STEM_KERNEL, STEM_STRIDE, 0, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        stages: list[nn.Module] = []
        channels = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
            blocks = []
            for index in range(count):
                stride = 2 if (stage > 0 and index == 0) else 1
                blocks.append(block(channels, planes, stride))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self.min_input_px = _min_input(self.output_size)
        _init_weights(self, _generator(seed))

    def output_size(self, size_px: int) -> int:
        """Side of the last feature map for an input side of ``size_px`` (0 if too small)."""
        n = _conv_out(int(size_px), STEM_KERNEL, STEM_STRIDE, 0)
        n = _conv_out(n, 2, 2, 0) if n >= 1 else 0
        if n < 1:
            return 0
        for _ in range(3):  # stride-2 convolutions of stages 2-4 (1x1 or 3x3 with padding 1)
            n = (n - 1) // 2 + 1
        return n

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map ``(batch, feature_dim, s, s)`` after the final BN-ReLU."""
        self._check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            if self.checkpoint_stages and self.training and torch.is_grad_enabled():
                x = _checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return self.final(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``h = GAP(features(x))`` of shape ``(batch, feature_dim)``."""
        return torch.flatten(self.pool(self.forward_features(x)), 1)


class ProjectionHead(nn.Module):
    """Projection head f_P: FC - BN - ReLU - FC, output ``out_dim`` (d_z = 256).

    "an MLP with two fully-connected layers and output dimensionality d_z = 256. The first
    fully-connected layer uses ReLU activation and batch normalization" (thesis Sect. 6.1.5).  The
    hidden width is not given in the thesis (our choice); the default is ``in_dim`` (the paper used a
    hidden layer of 128 for the 128-d base encoder, Schiffer et al. 2021, ISBI, Sect. 2).  The output is *not*
    L2-normalised: the loss uses cosine similarity.  The head is discarded after pre-training.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 256,
        hidden_dim: int | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        hidden = int(in_dim if hidden_dim is None else hidden_dim)
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), hidden, int(out_dim)
        self.net = nn.Sequential(
            nn.Linear(self.in_dim, hidden, bias=False),  # bias is redundant before BN
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, self.out_dim),
        )
        _init_weights(self, _generator(seed))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``z = f_P(h)``: ``(batch, in_dim) -> (batch, out_dim)``."""
        return self.net(h)


def encoder_feature_dim(encoder: nn.Module) -> int:
    """Length of the output vector ``h`` of an encoder module: its integer ``feature_dim`` (the
    encoders of this module, the LSM high-resolution branch); TypeError when it has none."""
    dim: Any = getattr(encoder, "feature_dim", None)
    return operator.index(dim)


class PatchClassifier(nn.Module):
    """Encoder plus a linear classifier f_C on ``h`` (thesis Sect. 6.1.1).

    Used two ways: the cross-entropy baseline trains everything (``freeze_encoder=False``,
    thesis Sect. 6.2.1); linear evaluation after contrastive pre-training freezes the encoder
    (``freeze_encoder=True``, implied by "linear evaluation protocol"): its parameters get
    ``requires_grad=False`` and it stays in eval mode (running BN statistics) even when the
    classifier is put in training mode.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        *,
        freeze_encoder: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.head = nn.Linear(encoder_feature_dim(encoder), self.num_classes)
        _init_weights(self.head, _generator(seed))
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> PatchClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``h = f_E(x)`` (no gradient through a frozen encoder)."""
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder(x)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(batch, num_classes)`` (softmax / cross-entropy applied by the loss)."""
        return self.head(self.features(x))


def build_encoder(
    name: str,
    in_channels: int = 1,
    *,
    seed: int | None = None,
    **kwargs,
) -> BaseEncoder | ResNetEncoder:
    """Build an encoder by name: ``"base"``, ``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
    ``"resnet101"``.

    Extra keyword arguments go to the class (``padding`` for base, ``checkpoint_stages`` for the
    ResNets).  The thesis default for the CY features is ``"resnet50"`` (R50-SCL, thesis Sect. 6.2.2).
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key == "base":
        return BaseEncoder(in_channels, seed=seed, **kwargs)
    if key.startswith("resnet") and key[6:].isdigit() and int(key[6:]) in RESNET_LAYOUTS:
        return ResNetEncoder(int(key[6:]), in_channels, seed=seed, **kwargs)
    raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODER_NAMES)}")
