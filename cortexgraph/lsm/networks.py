"""U-Net variants of the local segmentation models (LSM): HR, LR and MS.

Architecture (Schiffer et al. 2021, NeuroImage, Sect. 2.4 and Fig. 5; Schiffer, PhD thesis, Univ.
Düsseldorf, Sect. 5.1.5 and Fig. 5.5, cited as "the thesis"):

* ``E_HR`` (high resolution encoder): 6 blocks with {16, 32, 64, 64, 128, 128} filters, two
  convolutions per block (Schiffer et al. 2021, ISBI, Sect. 2 describes the identical encoder), max-pooling 2/2 after every block
  but the last. The first convolution has kernel 5 and stride 4, all others kernel 3 and stride 1.
* ``E_LR`` (low resolution encoder): same blocks and filters, all kernels 3 / stride 1; the two layers
  of block 1 have dilation 1, all later layers dilation 2 (NeuroImage paper Sect. 2.4, thesis Sect. 5.1.5).
* Decoder: 4 blocks with {128, 64, 64, 32} filters, each preceded by an upsampling block (nearest
  neighbour x2, then a zero-padded 2x2 convolution; NeuroImage paper Sect. 2.4) and followed by concatenation with the
  skip connections of the same spatial resolution (from both encoders in MS).
* Every convolution is followed by BatchNorm and ReLU; a final 1x1 convolution gives the class logits
  (the classifier layer is not stated in the publications: our choice).
* No padding (thesis Sect. 5.1.5) except in the 2x2 up-convolutions, which the papers call zero-padded: we pad
  one pixel at the bottom/right ("same" padding of an even kernel; ``upconv_padding="same"``, default).
  That padding makes the last rows/columns of a tile depend on it; ``upconv_padding="valid"`` drops it
  (and one more row/column to stay centred), which makes the network exactly translation-equivariant
  (seam-free tiling) at the cost of 2 px per decoder level.

Size arithmetic (our derivation, documented in :class:`LSMConfig`): with unpadded convolutions the HR
encoder maps exactly 2025 px to an 8 px bottleneck (2025 = 4 * 505 + 5 ...), which the decoder turns into
a 68 px valid output; the published 64 px output is its centre crop. E_LR reaches the bottleneck
spacing (256 um) with 4 poolings, i.e. no pooling after block 5 (the publications leave E_LR pooling open). The
thesis' LR sizes 628 px (MS) and 756 px (LR U-Net) are valid inputs of this encoder; the paper's 682 px is
not (678 px before the first pooling is fine, 339 px before the second is odd), which supports 628 as the
correct number. Encoder outputs larger than needed (LR branch) are centre-cropped; skip connections are
centre-cropped to the decoder's size. All crops remove an even number of pixels, so every feature map
stays centred on the patch centre: output pixel ``k`` of an ``n`` px output has its centre at
``patch_centre + (k - (n - 1) / 2) * output_spacing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cortexgraph.lsm.schedule import scaled_milestones

ARCHITECTURES = ("hr", "lr", "ms")

# --------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class LSMConfig:
    """Architecture, patch geometry and training hyper-parameters of a local segmentation model.

    Sizes are given in micrometres and converted to pixels with the spacings, so a small preset is the
    same code with smaller numbers. Pixel sizes are snapped to the nearest *valid* input size of the
    unpadded network (see :meth:`hr_input_px`).

    Attributes
    ----------
    arch : ``"hr"``, ``"lr"`` or ``"ms"``.
    hr_spacing_um, lr_spacing_um, output_spacing_um : pixel spacings of the HR input, LR input and the
        output label map (published: 2, 16, 16 um).
    hr_patch_um, lr_patch_um, output_patch_um : patch edges (published: 4050 um = 2025 px at 2 um; LR
        10048 um = 628 px at 16 um for MS and 12096 um = 756 px for the LR U-Net, thesis Sect. 5.1.5;
        output 1024 um = 64 px at 16 um). ``output_patch_um=None`` keeps the full valid output.
    encoder_filters, decoder_filters : filters per block ({16,32,64,64,128,128}, {128,64,64,32}).
    hr_first_kernel, hr_first_stride : first HR convolution (5, 4).
    lr_dilation : dilation of E_LR layers after block 1 (2).
    convs_per_block : convolutions per encoder/decoder block (2).
    upconv_padding : ``"same"`` (published: zero-padded 2x2 up-convolution; 2025 px -> 68 px valid
        -> 64 px) or ``"valid"`` (no padding anywhere: exactly translation-equivariant, seam-free tiling,
        but 2 px smaller per decoder level, so a 64 px output needs a 2281 px HR patch).
    n_classes, in_channels : 4 LSM classes (0 bg, 1 wm, 2 other cortex, 3 area); grey-level input.
    batch_size, iterations, base_lr, lr_milestones, lr_factor, momentum, weight_decay : training
        (64, 3000, 0.04 = 0.01 x 4 GPUs, halved at 1000..2600, Nesterov 0.9, 1e-4; thesis Sect. 5.1.4).
    rotation_deg, alpha_range, beta_range, gamma_range : augmentation (+-45 deg; alpha x^gamma + beta
        with U[0.9,1.1], U[-0.2,0.2], U[0.8,1.214]; NeuroImage paper Sect. 2.5, "Data augmentation").
    roi_radius_mm, roi_enlarge : training ROI radius (5 mm) and prediction enlargement e_r (1.05).
    """

    arch: str = "ms"
    hr_spacing_um: float = 2.0
    lr_spacing_um: float = 16.0
    output_spacing_um: float = 16.0
    hr_patch_um: float = 4050.0
    lr_patch_um: float = 10048.0
    output_patch_um: float | None = 1024.0
    encoder_filters: tuple[int, ...] = (16, 32, 64, 64, 128, 128)
    decoder_filters: tuple[int, ...] = (128, 64, 64, 32)
    hr_first_kernel: int = 5
    hr_first_stride: int = 4
    lr_dilation: int = 2
    convs_per_block: int = 2
    upconv_padding: str = "same"
    n_classes: int = 4
    in_channels: int = 1
    batch_size: int = 64
    iterations: int = 3000
    base_lr: float = 0.04
    lr_milestones: tuple[int, ...] = (1000, 1400, 1800, 2200, 2600)
    lr_factor: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    rotation_deg: float = 45.0
    alpha_range: tuple[float, float] = (0.9, 1.1)
    beta_range: tuple[float, float] = (-0.2, 0.2)
    gamma_range: tuple[float, float] = (0.8, 1.214)
    roi_radius_mm: float = 5.0
    roi_enlarge: float = 1.05

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, not {self.arch!r}")
        n_enc, n_dec = len(self.encoder_filters), len(self.decoder_filters)
        if n_dec >= n_enc or n_dec < 1:
            raise ValueError("need 1 <= len(decoder_filters) < len(encoder_filters)")
        bottleneck = self.bottleneck_spacing_um
        if self.uses_hr:
            hr_bottleneck = self.hr_spacing_um * self.hr_first_stride * 2 ** (n_enc - 1)
            if not math.isclose(hr_bottleneck, bottleneck, rel_tol=1e-9):
                raise ValueError(
                    f"HR encoder ends at {hr_bottleneck} um/px but the decoder needs {bottleneck} "
                    "um/px: output_spacing_um * 2**len(decoder_filters) must equal hr_spacing_um * "
                    "hr_first_stride * 2**(len(encoder_filters) - 1)"
                )
        if self.uses_lr:
            _ = self.lr_pools  # validates

    # -- derived geometry ---------------------------------------------------------------------
    @property
    def uses_hr(self) -> bool:
        return self.arch in ("hr", "ms")

    @property
    def uses_lr(self) -> bool:
        return self.arch in ("lr", "ms")

    @property
    def bottleneck_spacing_um(self) -> float:
        """Spacing of the deepest feature map (256 um in the full configuration)."""
        return self.output_spacing_um * 2 ** len(self.decoder_filters)

    @property
    def lr_pools(self) -> int:
        """Number of E_LR poolings: log2(bottleneck spacing / LR spacing) (4 in the full config)."""
        ratio = self.bottleneck_spacing_um / self.lr_spacing_um
        pools = round(math.log2(ratio))
        if pools < 0 or not math.isclose(2.0**pools, ratio, rel_tol=1e-9):
            raise ValueError(
                f"bottleneck spacing {self.bottleneck_spacing_um} um is not a power-of-two multiple "
                f"of lr_spacing_um={self.lr_spacing_um}"
            )
        if pools > len(self.encoder_filters) - 1:
            raise ValueError("E_LR would need more poolings than it has blocks")
        return pools

    @property
    def output_px(self) -> int | None:
        """Requested output edge in px (64 in the full configuration), None = full valid output."""
        if self.output_patch_um is None:
            return None
        return max(1, round(self.output_patch_um / self.output_spacing_um))

    def hr_input_px(self) -> int:
        """HR patch edge in px: ``hr_patch_um / hr_spacing_um`` snapped to the nearest valid size."""
        return nearest_valid_input(hr_encoder_ops(self), self.hr_patch_um / self.hr_spacing_um)

    def lr_input_px(self) -> int:
        """LR patch edge in px: ``lr_patch_um / lr_spacing_um`` snapped to the nearest valid size."""
        parity = None
        if self.arch == "ms":
            hr_blocks = hr_encoder_ops(self)
            parity = encoder_sizes(hr_blocks, self.hr_input_px())[-1] % 2
        return nearest_valid_input(
            lr_encoder_ops(self), self.lr_patch_um / self.lr_spacing_um, parity
        )

    def input_px(self) -> int | tuple[int, int]:
        """Input size(s) of the network: int for HR/LR, (hr_px, lr_px) for MS."""
        if self.arch == "hr":
            return self.hr_input_px()
        if self.arch == "lr":
            return self.lr_input_px()
        return self.hr_input_px(), self.lr_input_px()


def lsm_config(preset: str = "full", arch: str = "ms", **overrides) -> LSMConfig:
    """Named configurations.

    ``full``: the published numbers (2025 px at 2 um, LR 628 px (MS) / 756 px (LR) at 16 um, output 64 px
    at 16 um, 3000 iterations, batch 64).

    ``small``: the same physical patch sizes (4.05 mm HR, 10.048 / 12.096 mm LR, 1.024 mm output) at
    8 um (HR) and 32 um (LR, output) with half the filters, HR first stride 2 and 5 encoder / 3 decoder
    blocks: 503 px HR, 308 px (MS) / 372 px (LR) LR, 32 px output. 600 iterations with the
    milestones scaled by 600/3000 and batch 16 (base lr scaled linearly with the batch: 0.01 per 16
    patches, as 0.04 for 64).

    ``tiny``: 3 encoder / 2 decoder blocks with stride 1, everything at one spacing (default 20 um),
    for unit tests on CPU (HR 60 px, LR 84 px, full valid output of 20 px); 150 iterations of batch
    8 at base lr 0.02 (the linear scaling rule would give 0.005, too slow for such a short run: the
    preset factor is 4).

    ``phantom``: for coarse images (the phantom cohorts: 100 um demo, 160 um tiny), everything scaled
    by the image spacing ``s`` (keyword ``spacing_um``, default 100): HR at ``s``, output at ``2 s``,
    LR at ``4 s`` (published: 2 / 16 / 16 um); 3 encoder blocks {16, 32, 64} (first convolution k5 /
    stride 2) and 2 decoder blocks {32, 16}; a 16 px training output (``output_px``) with the smallest
    patches that give it (at ``s`` = 100 um: HR 111 px = 11.1 mm, MS LR 50 px = 20 mm; the LR U-Net
    reads a patch 1.2x larger, 60 px = 24 mm, as 756 / 628 px in the thesis); batch 16, 300 iterations with the
    published milestones scaled, base lr 0.02 (2x the linear scaling rule, for short runs).

    Any field can be overridden by keyword.
    """
    if preset == "full":
        lr_patch_um = 12096.0 if arch == "lr" else 10048.0
        base = LSMConfig(arch=arch, lr_patch_um=lr_patch_um)
    elif preset == "small":
        base = LSMConfig(
            arch=arch,
            hr_spacing_um=8.0,
            lr_spacing_um=32.0,
            output_spacing_um=32.0,
            hr_patch_um=4050.0,
            lr_patch_um=12096.0 if arch == "lr" else 10048.0,
            output_patch_um=1024.0,
            encoder_filters=(8, 16, 32, 32, 64),
            decoder_filters=(64, 32, 16),
            hr_first_stride=2,
            **_short_schedule(batch_size=16, iterations=600, base_lr=0.01),
        )
    elif preset == "tiny":
        spacing = float(overrides.pop("spacing_um", 20.0))
        base = LSMConfig(
            arch=arch,
            hr_spacing_um=spacing,
            lr_spacing_um=spacing,
            output_spacing_um=spacing,
            hr_patch_um=spacing * 60,
            lr_patch_um=spacing * 84,
            output_patch_um=None,
            encoder_filters=(8, 16, 16),
            decoder_filters=(16, 8),
            hr_first_kernel=3,
            hr_first_stride=1,
            **_short_schedule(batch_size=8, iterations=150, base_lr=0.02),
        )
    elif preset == "phantom":
        spacing = float(overrides.pop("spacing_um", 100.0))
        output_px = int(overrides.pop("output_px", PHANTOM_OUTPUT_PX))
        iterations = int(overrides.get("iterations", 300))
        base = LSMConfig(
            arch=arch,
            hr_spacing_um=spacing,
            lr_spacing_um=4 * spacing,
            output_spacing_um=2 * spacing,
            encoder_filters=(16, 32, 64),
            decoder_filters=(32, 16),
            hr_first_kernel=5,
            hr_first_stride=2,
            **_short_schedule(batch_size=16, iterations=iterations, base_lr=0.02),
        )
        base = with_output_tile(base, output_px)
        if arch == "lr":  # the LR U-Net reads a larger patch than the LR branch of MS (thesis Sect. 5.1.5)
            base = replace(base, lr_patch_um=base.lr_patch_um * LR_UNET_PATCH_FACTOR)
    else:
        raise ValueError(f"unknown preset {preset!r}; use 'full', 'small', 'phantom' or 'tiny'")
    return replace(base, **overrides)


def _short_schedule(batch_size: int, iterations: int, base_lr: float) -> dict[str, Any]:
    """The training schedule of a preset smaller than ``full``: its batch, iterations and base lr,
    with the published milestones scaled to the iterations (:func:`scaled_milestones`)."""
    return {
        "batch_size": batch_size,
        "iterations": iterations,
        "base_lr": base_lr,
        "lr_milestones": scaled_milestones(iterations),
    }


PHANTOM_OUTPUT_PX = 16
"""Training output tile of the ``phantom`` preset (px at twice the image spacing)."""

LR_UNET_PATCH_FACTOR = 12096.0 / 10048.0
"""LR U-Net patch / MS LR patch in the thesis (756 px vs 628 px at 16 um, Sect. 5.1.5)."""

PRESETS = ("full", "small", "phantom", "tiny")


def preset_for_spacing(image_spacing_um: float) -> tuple[str, dict]:
    """The preset that fits section images of ``image_spacing_um`` (level 0), with its arguments.

    * <= 2 um: ``full`` (the published 2 um HR patches can be read);
    * <= 8 um: ``small`` (8 um HR patches);
    * coarser: ``phantom`` at the image spacing (HR = image spacing, output = 2x, LR = 4x).

    Returns ``(preset, overrides)`` for :func:`lsm_config`.
    """
    if image_spacing_um <= 2.0 + 1e-9:
        return "full", {}
    if image_spacing_um <= 8.0 + 1e-9:
        return "small", {}
    return "phantom", {"spacing_um": float(image_spacing_um)}


def with_output_tile(config: LSMConfig, output_px: int) -> LSMConfig:
    """``config`` with an output tile of ``output_px`` px and the smallest patches that produce it.

    The HR and LR patch sizes (``hr_patch_um``, ``lr_patch_um``) are set to the smallest valid inputs
    whose (common) bottleneck yields at least ``output_px`` output px with an even crop. Used by the
    presets and for prediction with larger tiles than in training (the weights do not depend on the
    patch size).
    """
    output_px = int(output_px)
    if output_px < 1:
        raise ValueError("output_px must be >= 1")
    cfg = replace(config, output_patch_um=output_px * config.output_spacing_um)
    n_levels = len(cfg.decoder_filters)
    bottleneck = min(
        required_bottleneck(output_px, n_levels, cfg.convs_per_block, parity, cfg.upconv_padding)
        for parity in (0, 1)
    )
    changes: dict[str, Any] = {}
    if cfg.uses_hr:
        hr_px = encoder_input_size(hr_encoder_ops(cfg), bottleneck)
        changes["hr_patch_um"] = hr_px * cfg.hr_spacing_um
    if cfg.uses_lr:
        lr_px = encoder_input_size(lr_encoder_ops(cfg), bottleneck)
        changes["lr_patch_um"] = lr_px * cfg.lr_spacing_um
    return replace(cfg, **changes)


# --------------------------------------------------------------------------------------------------
# size arithmetic
#
# An encoder is a list of blocks; a block is a list of convolutions (kernel, stride, dilation) and a
# flag telling whether a 2x2 max-pooling follows. Sizes must divide exactly (no pixel is dropped by a
# strided convolution or a pooling) so that every feature map stays centred on the patch centre.


@dataclass(frozen=True)
class BlockSpec:
    convs: tuple[tuple[int, int, int], ...]  # (kernel, stride, dilation)
    pool: bool
    spacing_um: float  # spacing of the block's output (before pooling)


def hr_encoder_ops(config: LSMConfig) -> list[BlockSpec]:
    """Blocks of E_HR: first conv (k5, s4), then 3x3 convolutions; pool after all but the last."""
    blocks = []
    spacing = config.hr_spacing_um * config.hr_first_stride
    n = len(config.encoder_filters)
    for b in range(n):
        convs = [(3, 1, 1)] * config.convs_per_block
        if b == 0:
            convs[0] = (config.hr_first_kernel, config.hr_first_stride, 1)
        blocks.append(BlockSpec(tuple(convs), b < n - 1, spacing))
        if b < n - 1:
            spacing *= 2
    return blocks


def lr_encoder_ops(config: LSMConfig) -> list[BlockSpec]:
    """Blocks of E_LR: 3x3 convolutions, dilation 1 in block 1 and ``lr_dilation`` after it; pooling
    after the first ``config.lr_pools`` blocks so the bottleneck matches E_HR's spacing."""
    blocks = []
    spacing = config.lr_spacing_um
    pools = config.lr_pools
    for b in range(len(config.encoder_filters)):
        dilation = 1 if b == 0 else config.lr_dilation
        convs = tuple([(3, 1, dilation)] * config.convs_per_block)
        blocks.append(BlockSpec(convs, b < pools, spacing))
        if b < pools:
            spacing *= 2
    return blocks


def _conv_out(n: int, kernel: int, stride: int, dilation: int) -> int:
    span = dilation * (kernel - 1) + 1
    if n < span or (n - span) % stride:
        raise ValueError(
            f"size {n} px is not valid for a conv (kernel {kernel}, stride {stride}, dilation "
            f"{dilation}): need n >= {span} and (n - {span}) divisible by {stride}"
        )
    return (n - span) // stride + 1


def encoder_sizes(blocks: list[BlockSpec], n: int) -> list[int]:
    """Output size (before pooling) of each block for an input of ``n`` px; ValueError if invalid."""
    sizes = []
    for block in blocks:
        for kernel, stride, dilation in block.convs:
            n = _conv_out(n, kernel, stride, dilation)
        sizes.append(n)
        if block.pool:
            if n % 2:
                raise ValueError(f"odd size {n} px before a 2x2 pooling: input not valid")
            n //= 2
    return sizes


def encoder_input_size(blocks: list[BlockSpec], bottleneck: int) -> int:
    """Inverse of :func:`encoder_sizes`: the input size whose bottleneck is ``bottleneck`` px."""
    n = bottleneck
    for block in reversed(blocks):
        if block.pool:
            n *= 2
        for kernel, stride, dilation in reversed(block.convs):
            n = (n - 1) * stride + dilation * (kernel - 1) + 1
    return n


def nearest_valid_input(
    blocks: list[BlockSpec], requested_px: float, parity: int | None = None
) -> int:
    """The valid input size closest to ``requested_px`` (ties: the larger one).

    ``parity`` (0 or 1) restricts the choice to inputs whose bottleneck has that parity (MS: the LR
    bottleneck must have the HR bottleneck's parity so that both centred grids align).
    """
    best, best_err = 0, math.inf  # the first size tried always replaces best
    bottleneck = 1 if parity is None else 2 - parity % 2
    step = 1 if parity is None else 2
    while True:
        size = encoder_input_size(blocks, bottleneck)
        err = abs(size - requested_px)
        if err <= best_err:
            best, best_err = size, err
        if size > requested_px:
            return int(best)
        bottleneck += step


def decoder_output_size(
    bottleneck: int, n_levels: int, convs_per_block: int = 2, upconv_padding: str = "same"
) -> int:
    """Output size of the decoder for a bottleneck of ``bottleneck`` px (68 for 8 px, 4 levels).

    Each level: x2 upsampling, the 2x2 up-convolution (``"same"``: size kept; ``"valid"``: one px
    lost and one more cropped to stay centred, -2), then ``convs_per_block`` 3x3 convolutions (-2 each).
    """
    n = bottleneck
    for size in decoder_level_sizes(bottleneck, n_levels, convs_per_block, upconv_padding):
        n = size - 2 * convs_per_block
    return n


def decoder_level_sizes(
    bottleneck: int, n_levels: int, convs_per_block: int = 2, upconv_padding: str = "same"
) -> list[int]:
    """Size of the decoder map at each level after the up-convolution (where skips are concatenated)."""
    if upconv_padding not in ("same", "valid"):
        raise ValueError(f"upconv_padding must be 'same' or 'valid', not {upconv_padding!r}")
    lost = 0 if upconv_padding == "same" else 2
    sizes, n = [], bottleneck
    for _ in range(n_levels):
        n = 2 * n - lost
        sizes.append(n)
        n -= 2 * convs_per_block
    return sizes


def required_bottleneck(
    output_px: int,
    n_levels: int,
    convs_per_block: int,
    parity: int,
    upconv_padding: str = "same",
) -> int:
    """Smallest bottleneck of the given parity whose output covers ``output_px`` with an even
    margin (so the crop stays centred)."""
    n = 1 + ((parity - 1) % 2)
    while True:
        out = decoder_output_size(n, n_levels, convs_per_block, upconv_padding)
        if out >= output_px and (out - output_px) % 2 == 0:
            return n
        n += 2


# --------------------------------------------------------------------------------------------------
# modules


def centre_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Centre crop of the last two dims to ``size`` (int or (rows, cols)); margins must be even."""
    rows, cols = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if h < rows or w < cols or (h - rows) % 2 or (w - cols) % 2:
        raise ValueError(f"cannot centre-crop {h}x{w} to {rows}x{cols} (odd or negative margin)")
    top, left = (h - rows) // 2, (w - cols) // 2
    return x[..., top : top + rows, left : left + cols]


class ConvBNReLU(nn.Sequential):
    """Unpadded convolution + BatchNorm + ReLU (the conv has no bias: BN supplies it)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Encoder(nn.Module):
    """A stack of blocks; ``forward`` returns the list of block outputs (before pooling)."""

    def __init__(self, blocks: list[BlockSpec], filters: tuple[int, ...], in_channels: int):
        super().__init__()
        self.specs = blocks
        self.blocks = nn.ModuleList()
        c_in = in_channels
        for spec, c_out in zip(blocks, filters, strict=True):
            layers = []
            for kernel, stride, dilation in spec.convs:
                layers.append(ConvBNReLU(c_in, c_out, kernel, stride, dilation))
                c_in = c_out
            self.blocks.append(nn.Sequential(*layers))
        self.filters = tuple(filters)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for spec, block in zip(self.specs, self.blocks, strict=True):
            x = block(x)
            outputs.append(x)
            if spec.pool:
                x = F.max_pool2d(x, 2, 2)
        return outputs

    def skip_index(self, spacing_um: float) -> int | None:
        """Index of the last block whose output has ``spacing_um`` (None when there is none)."""
        found = None
        for i, spec in enumerate(self.specs[:-1]):
            if math.isclose(spec.spacing_um, spacing_um, rel_tol=1e-9):
                found = i
        return found


class UpBlock(nn.Module):
    """Nearest-neighbour x2 upsampling, 2x2 convolution, concatenation of centre-cropped skips, then
    ``convs`` unpadded 3x3 convolutions.

    ``padding="same"`` (the papers' "zero-padded" up-convolution): one zero row/column is padded at the
    bottom/right, so the size is kept but the last row/column of every level sees the padding (the
    network is then not exactly translation-equivariant near a tile's bottom/right border).
    ``padding="valid"``: no padding; the first row/column is dropped as well, so the map is the
    2n px upsampled grid centre-cropped by one px per side and every value is a valid convolution.
    """

    def __init__(self, c_in: int, c_skip: int, c_out: int, convs: int, padding: str = "same"):
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
        self.padding = padding
        self.up_conv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
        )
        layers, c = [], c_out + c_skip
        for _ in range(convs):
            layers.append(ConvBNReLU(c, c_out, 3))
            c = c_out
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.padding == "same":
            x = self.up_conv(F.pad(x, (0, 1, 0, 1)))
        else:
            x = self.up_conv(x)[..., 1:, 1:]
        size = (int(x.shape[-2]), int(x.shape[-1]))
        x = torch.cat([x] + [centre_crop(s, size) for s in skips], dim=1)
        return self.convs(x)


class LSMUNet(nn.Module):
    """HR, LR or MS U-Net of a local segmentation model.

    ``forward(x)`` for HR/LR takes a (B, C, n, n) patch; for MS ``forward(x_hr, x_lr)`` takes both
    patches centred at the same point. Returns (B, n_classes, m, m) logits with
    ``m = output_size(n)``, at ``config.output_spacing_um``, centred on the input patch centre.
    Rectangular inputs work the same way, rows and columns independently (``output_size`` per side).
    """

    def __init__(self, config: LSMConfig):
        super().__init__()
        self.config = config
        self.hr_encoder = (
            Encoder(hr_encoder_ops(config), config.encoder_filters, config.in_channels)
            if config.uses_hr
            else None
        )
        self.lr_encoder = (
            Encoder(lr_encoder_ops(config), config.encoder_filters, config.in_channels)
            if config.uses_lr
            else None
        )
        encoders = [e for e in (self.hr_encoder, self.lr_encoder) if e is not None]
        c = sum(e.filters[-1] for e in encoders)
        self.skip_plan: list[list[tuple[int, int]]] = []  # per level: (encoder slot, block index)
        ups = []
        spacing = config.bottleneck_spacing_um
        for c_out in config.decoder_filters:
            spacing /= 2
            plan, c_skip = [], 0
            for slot, enc in enumerate(encoders):
                index = enc.skip_index(spacing)
                if index is not None:
                    plan.append((slot, index))
                    c_skip += enc.filters[index]
            self.skip_plan.append(plan)
            ups.append(UpBlock(c, c_skip, c_out, config.convs_per_block, config.upconv_padding))
            c = c_out
        self.decoder = nn.ModuleList(ups)
        self.classifier = nn.Conv2d(c, config.n_classes, 1)

    # -- size arithmetic ------------------------------------------------------------------------
    def _decoder_args(self) -> tuple[int, int, str]:
        cfg = self.config
        return len(cfg.decoder_filters), cfg.convs_per_block, cfg.upconv_padding

    def _bottlenecks(self, input_size) -> list[int]:
        cfg = self.config
        if cfg.arch == "ms":
            if isinstance(input_size, int):
                raise ValueError("MS needs input_size = (hr_px, lr_px)")
            hr, lr = input_size
            assert self.hr_encoder is not None and self.lr_encoder is not None  # MS has both
            return [
                encoder_sizes(self.hr_encoder.specs, int(hr))[-1],
                encoder_sizes(self.lr_encoder.specs, int(lr))[-1],
            ]
        if not isinstance(input_size, int | float):
            (input_size,) = input_size
        encoder = self.hr_encoder if cfg.arch == "hr" else self.lr_encoder
        assert encoder is not None  # the arch's own encoder
        return [encoder_sizes(encoder.specs, int(input_size))[-1]]

    def decoder_bottleneck(self, input_size) -> int:
        """Bottleneck size the decoder runs on (encoder outputs are centre-cropped to it)."""
        cfg = self.config
        sizes = self._bottlenecks(input_size)
        smallest = min(sizes)
        if any((s - smallest) % 2 for s in sizes):
            raise ValueError(
                f"HR and LR bottlenecks {sizes} differ by an odd number of px: the two patches' "
                "grids would not align; choose sizes from LSMConfig.input_px()"
            )
        n_levels = len(cfg.decoder_filters)
        if cfg.output_px is None:
            if decoder_output_size(smallest, *self._decoder_args()) < 1:
                raise ValueError(f"input {input_size} is too small: the decoder output is empty")
            return smallest
        need = required_bottleneck(
            cfg.output_px, n_levels, cfg.convs_per_block, smallest % 2, cfg.upconv_padding
        )
        if need > smallest:
            raise ValueError(
                f"input {input_size} gives a {smallest} px bottleneck, but a {cfg.output_px} px "
                f"output needs {need} px: use a larger patch"
            )
        return need

    def output_size(self, input_size) -> int:
        """Output edge in px for an input edge (HR/LR: int; MS: (hr_px, lr_px)).

        Raises ValueError when the input size is not valid for the unpadded network.
        """
        n = decoder_output_size(self.decoder_bottleneck(input_size), *self._decoder_args())
        return n if self.config.output_px is None else self.config.output_px

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, x_lr: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if cfg.arch == "ms":
            if x_lr is None:
                raise ValueError("MS U-Net needs both the HR and the LR patch")
            assert self.hr_encoder is not None and self.lr_encoder is not None  # MS has both
            feats = [self.hr_encoder(x), self.lr_encoder(x_lr)]
            sizes: list[int | tuple[int, int]] = [(x.shape[d], x_lr.shape[d]) for d in (-2, -1)]
        else:
            encoder = self.hr_encoder if cfg.arch == "hr" else self.lr_encoder
            assert encoder is not None  # the arch's own encoder
            feats = [encoder(x)]
            sizes = [x.shape[-2], x.shape[-1]]
        # rows and columns are handled independently (rectangular inputs are allowed)
        n_b = (self.decoder_bottleneck(sizes[0]), self.decoder_bottleneck(sizes[1]))
        y = torch.cat([centre_crop(f[-1], n_b) for f in feats], dim=1)
        for up, plan in zip(self.decoder, self.skip_plan, strict=True):
            y = up(y, [feats[slot][index] for slot, index in plan])
        y = self.classifier(y)
        if cfg.output_px is not None:
            y = centre_crop(y, cfg.output_px)
        return y


def build_lsm(config: LSMConfig) -> LSMUNet:
    """Build the U-Net of ``config.arch`` (HR, LR or MS)."""
    return LSMUNet(config)
