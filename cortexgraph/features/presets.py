"""Encoder presets: patch size and spacing, network, sampling and training budget in one place.

The published network reads 2048 px patches at 2 µm/px (4.1 mm of tissue), trains ResNet50 with supervised
contrastive learning for 150 epochs on 1200 patches per area and fine-tunes a linear classifier for 30
epochs (the thesis and the contrastive paper, docs/references.md).  Phantom images are 40-160 µm/px, so the same 4 mm of
tissue is 25-100 px; the small presets keep the tissue extent and the method (skeleton centres every
1 mm, section split, class-balanced resampling, the published augmentation, SCL with LARS then linear
evaluation, a cross-entropy baseline with the same epoch budget) and shrink what the budget needs:

=============  ========  =============  ========  ========  =====  ==========  ====================
preset         images    patch          encoder   per area  batch  epochs      use
=============  ========  =============  ========  ========  =====  ==========  ====================
full           2 µm      2048 px 4.1mm  resnet50  1200      2048   150 + 30    published (GPUs)
full-base      2 µm      2025 px 4.1mm  base      1200      2048   150 + 30    published base model
phantom-full   40 µm     100 px 4.0mm   resnet18  600       512    60 + 10     synth --preset full
demo           100 µm    40 px 4.0mm    base-4    96        128    30 + 6      synth --preset demo
tiny           160 µm    30 px 4.8mm    base-4    48        64     12 + 4      synth --preset tiny
=============  ========  =============  ========  ========  =====  ==========  ====================

(epochs: SCL + linear evaluation; the CE baseline gets their sum.)  ``base-4`` is the published base
encoder cut to its first four blocks (16-32-64-64 filters, the 5x5 stride-4 first convolution kept)
with zero padding, because the unpadded six-block network needs at least 1129 px (a deviation: small
patches cannot feed the full network).  The published learning rates are ``0.01 b / 128`` or
``0.005 b / 128`` (0.16 / 0.08 at b = 2048; their footnotes: ResNet50-SCL 0.08, ResNet50-CE at 2048 px
0.16, base 0.16), used by ``full`` and ``full-base``.  The small presets run a few hundred optimizer
steps instead of ~10 000; their rates were chosen on the demo phantom by the macro F1 on training
patches (docs/features.md): 0.1 for SCL and CE (0.03, 0.3 and 1.0 scored lower), 0.3 for the linear
evaluation (1.0 about the same).  ``phantom-full`` (never run: no GPU was available) uses the same
rates with a ResNet18.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cortexgraph.errors import CortexgraphError

__all__ = [
    "EncoderPreset",
    "PRESETS",
    "GPU_PRESETS",
    "get_preset",
    "preset_for_spacing",
    "estimate_training_seconds",
]

#: presets sized for GPUs: days to years of training on a CPU (the estimate says how long)
GPU_PRESETS = ("full", "full-base", "phantom-full")


@dataclass(frozen=True)
class EncoderPreset:
    """Everything ``train-encoder`` and ``features`` need to know about patches and training.

    Attributes
    ----------
    name : preset name.
    encoder : encoder name for :func:`cortexgraph.features.encoders.build_encoder`.
    encoder_kwargs : extra constructor arguments (``widths``, ``padding`` for base).
    patch_px : patch side, px.
    spacing_um : patch pixel spacing, µm (``patch_px x spacing_um`` = tissue extent).
    image_spacing_um : the image spacing the preset is made for (``preset_for_spacing``).
    step_mm : distance of patch centres along the annotation midlines (1 mm).
    samples_per_area : training patches per area after class-balanced resampling (n_s).
    batch_size : patches per optimizer step (global, over all processes).
    scl_epochs, linear_epochs : SCL pre-training and linear-evaluation epochs.
    ce_epochs : cross-entropy baseline epochs (default ``scl_epochs + linear_epochs``).
    scl_lr, linear_lr, ce_lr : constant learning rates of the three runs.
    temperature : SCL temperature tau (0.07).
    projection_dim : output of the projection head, d_z (256).
    weight_decay, momentum, trust_coefficient : LARS (1e-4, Nesterov 0.9, 0.02).
    max_translation_um : largest augmentation translation (200 µm).
    test_every, test_offset : every ``test_every``-th annotated section is a test section.
    transfer_brain : brain held out entirely (B07).
    eval_batch_size : patches per forward pass when computing features.
    recompute_batch_norm : recompute the encoder's batch-norm statistics after training
        (:func:`cortexgraph.features.train.recompute_batch_norm`).
    """

    name: str
    encoder: str
    patch_px: int
    spacing_um: float
    image_spacing_um: float
    samples_per_area: int
    batch_size: int
    scl_epochs: int
    linear_epochs: int
    scl_lr: float
    linear_lr: float
    ce_lr: float
    encoder_kwargs: dict = field(default_factory=dict)
    ce_epochs: int | None = None
    step_mm: float = 1.0
    temperature: float = 0.07
    projection_dim: int = 256
    weight_decay: float = 1e-4
    momentum: float = 0.9
    trust_coefficient: float = 0.02
    max_translation_um: float = 200.0
    test_every: int = 5
    test_offset: int = 4
    transfer_brain: str = "B07"
    eval_batch_size: int = 512
    recompute_batch_norm: bool = True

    @property
    def patch_mm(self) -> float:
        """Tissue extent of a patch side, mm."""
        return self.patch_px * self.spacing_um / 1000.0

    @property
    def ce_epoch_budget(self) -> int:
        """Epochs of the CE baseline: the SCL + linear budget unless set."""
        return self.scl_epochs + self.linear_epochs if self.ce_epochs is None else self.ce_epochs

    def as_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> EncoderPreset:
        """A copy with some fields replaced (``None`` values are ignored)."""
        from cortexgraph.errors import ParameterError

        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - set(self.as_dict())
        if unknown:
            raise ParameterError(
                f"unknown preset field(s): {', '.join(sorted(unknown))}",
                fix=f"use fields of the encoder preset: {', '.join(sorted(self.as_dict()))}",
            )
        for name, value in clean.items():
            current = getattr(self, name)
            numeric = isinstance(current, int | float) and not isinstance(current, bool)
            if numeric and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ParameterError(
                    f"encoder setting {name} = {value!r} must be a number > 0",
                    fix=f"give {name} a positive value",
                )
        return replace(self, **clean)


_BASE4 = {"widths": (16, 32, 64, 64), "padding": "same"}

#: the published full-resolution setting of both encoders (table above): 2 µm/px, 1200 patches per
#: area, batches of 2048, 150 SCL + 30 linear epochs, CE at 0.16
_FULL: dict[str, Any] = dict(
    spacing_um=2.0,
    image_spacing_um=2.0,
    samples_per_area=1200,
    batch_size=2048,
    scl_epochs=150,
    linear_epochs=30,
    ce_lr=0.16,
    eval_batch_size=64,
)
#: the four-block base encoder and the learning rates chosen on the demo phantom (above)
_SMALL: dict[str, Any] = dict(encoder="base", encoder_kwargs=_BASE4, scl_lr=0.1, linear_lr=0.3, ce_lr=0.1)

PRESETS: dict[str, EncoderPreset] = {
    preset.name: preset
    for preset in (
        EncoderPreset(
            name="full", encoder="resnet50", patch_px=2048, scl_lr=0.08, linear_lr=0.08, **_FULL
        ),
        EncoderPreset(
            name="full-base", encoder="base", patch_px=2025, scl_lr=0.16, linear_lr=0.16, **_FULL
        ),
        EncoderPreset(
            name="phantom-full",
            encoder="resnet18",
            patch_px=100,
            spacing_um=40.0,
            image_spacing_um=40.0,
            samples_per_area=600,
            batch_size=512,
            scl_epochs=60,
            linear_epochs=10,
            scl_lr=0.1,
            linear_lr=0.3,
            ce_lr=0.1,
            eval_batch_size=256,
        ),
        EncoderPreset(
            name="demo",
            patch_px=40,
            spacing_um=100.0,
            image_spacing_um=100.0,
            samples_per_area=96,
            batch_size=128,
            scl_epochs=30,
            linear_epochs=6,
            **_SMALL,
        ),
        EncoderPreset(
            name="tiny",
            patch_px=30,
            spacing_um=160.0,
            image_spacing_um=160.0,
            samples_per_area=48,
            batch_size=64,
            scl_epochs=12,
            linear_epochs=4,
            **_SMALL,
        ),
    )
}


def get_preset(name: str | EncoderPreset) -> EncoderPreset:
    """A preset by name (an :class:`EncoderPreset` passes through)."""
    if isinstance(name, EncoderPreset):
        return name
    try:
        return PRESETS[str(name)]
    except KeyError:
        raise CortexgraphError(
            f"unknown encoder preset {name!r}",
            fix=f"choose one of {', '.join(PRESETS)} (or 'auto')",
        ) from None


def preset_for_spacing(image_spacing_um: float) -> EncoderPreset:
    """The preset made for the image spacing closest to ``image_spacing_um`` (log scale)."""
    import math

    return min(
        PRESETS.values(),
        key=lambda p: (abs(math.log(p.image_spacing_um / image_spacing_um)), p.name != "full"),
    )


def estimate_training_seconds(
    preset: EncoderPreset | str, num_areas: int, *, probe_px: int = 128, repeats: int = 2
) -> tuple[float, float]:
    """Rough CPU wall time of ``train-encoder`` with a preset, measured on this machine.

    One training step (forward and backward) of the preset's encoder on a batch of random patches of
    ``min(patch_px, probe_px)`` pixels is timed (best of ``repeats``, after one warm-up step), scaled
    to the preset's patch size (convolution cost grows with the pixel count) and multiplied by the
    patch passes of the whole run: ``samples_per_area x num_areas`` patches per epoch, SCL and CE
    epochs with backward passes, linear-evaluation epochs and the two batch-norm passes forward only
    (a third of a step). A probe costs a second or two.

    Returns
    -------
    (seconds for the whole run, seconds per patch step).
    """
    import time

    import torch

    from cortexgraph.features.encoders import build_encoder

    preset = get_preset(preset)
    side = int(min(preset.patch_px, probe_px))
    batch = int(max(1, min(32, (probe_px // max(side, 1)) ** 2 * 2)))
    kwargs = dict(preset.encoder_kwargs)
    if preset.encoder == "base":
        kwargs["padding"] = "same"  # the unpadded base network needs >= 1129 px; same cost per pixel
    net = build_encoder(preset.encoder, 1, seed=0, **kwargs)
    net.train()
    x = torch.rand(batch, 1, side, side)
    best = float("inf")
    with torch.enable_grad():
        for k in range(repeats + 1):
            start = time.perf_counter()
            out = net(x)
            out = out[0] if isinstance(out, tuple) else out
            out.float().pow(2).mean().backward()
            if k:  # the first step warms up
                best = min(best, time.perf_counter() - start)
            net.zero_grad(set_to_none=True)
    per_patch = best / batch * (preset.patch_px / side) ** 2
    patches = preset.samples_per_area * max(int(num_areas), 1)
    full = preset.scl_epochs + preset.ce_epoch_budget
    forward_only = preset.linear_epochs + (2 if preset.recompute_batch_norm else 0)
    return patches * per_patch * (full + forward_only / 3.0), per_patch
