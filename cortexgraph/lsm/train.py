"""Training loop of a local segmentation model (Schiffer, PhD thesis,
Sect. 5.1.4; Schiffer et al. 2021, NeuroImage, Sect. 2.5).

* SGD with Nesterov momentum 0.9; weight decay 1e-4 on all non-bias parameters (biases excluded).
* Categorical cross-entropy averaged over pixels, each class weighted inversely proportionally to its
  share in the training ROIs (:func:`class_weights_from_counts`). Target pixels labelled
  :data:`~cortexgraph.lsm.sampling.IGNORE_LABEL` (outside the image) do not count.
* Step schedule (:mod:`cortexgraph.lsm.schedule`).

:func:`train_lsm` is generic over a batch sampler ``sample_batch_fn(iteration) -> (inputs, targets)``;
:func:`patch_batch_sampler` builds one from image sources (class-balanced centres, orientation
normalisation, rotation and intensity augmentation): :class:`~cortexgraph.lsm.data.RasterImageSource`
reads patches lazily from the section rasters, :func:`array_batch_sampler` wraps in-memory arrays.

:func:`train_model` trains one model (an LSM on two sections, a GSM on more) from loaded training
sections: class-balanced patches, class-weighted cross-entropy, SGD with the published schedule;
:func:`model_seed` gives each model of a run its own reproducible seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cortexgraph.lsm.data import SectionData
from cortexgraph.lsm.layout import KINDS
from cortexgraph.lsm.networks import ARCHITECTURES, LSMConfig, build_lsm
from cortexgraph.lsm.sampling import (
    IGNORE_LABEL,
    class_pools,
    draw_augmentation,
    draw_balanced_centres,
    extract_patch,
    intensity_transform,
)
from cortexgraph.lsm.schedule import SEED_BASE_LR, SEED_LR_FACTOR, scaled_milestones, step_lr

Progress = Callable[[str, int, int], None]
"""``f(stage, done, total)``: progress of a long computation."""


def _noop(stage: str, done: int, total: int) -> None:
    return None


def roi_class_counts(
    class_images: Sequence[np.ndarray], rois: Sequence[np.ndarray], n_classes: int = 4
) -> np.ndarray:
    """Pixel count of each class inside the training ROIs, summed over sections (int64, (n_classes,))."""
    counts = np.zeros(n_classes, dtype=np.int64)
    for classes, roi in zip(class_images, rois, strict=True):
        values = np.asarray(classes)[np.asarray(roi, dtype=bool)]
        values = values[(values >= 0) & (values < n_classes)]
        counts += np.bincount(values.ravel(), minlength=n_classes)[:n_classes]
    return counts


def class_weights_from_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Loss weights inversely proportional to each class's share: ``w_k = 1 / (K * share_k)``.

    K is the number of classes present; absent classes get weight 0. The weights average to 1 under
    the ROI's class distribution (``sum_k share_k w_k = 1``) and are equal for a balanced distribution.
    """
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        raise ValueError("no labelled pixel in the training ROIs")
    share = values / total
    present = share > 0
    weights = np.zeros_like(share)
    weights[present] = 1.0 / (present.sum() * share[present])
    return weights.astype(np.float32)


def parameter_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Two SGD groups: weight decay on all non-bias parameters, none on biases."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _to_device(value, device):
    if isinstance(value, list | tuple):
        return tuple(_to_device(v, device) for v in value)
    return torch.as_tensor(value).to(device, non_blocking=True)


def train_lsm(
    sample_batch_fn: Callable[[int], tuple],
    net: nn.Module,
    iterations: int,
    *,
    base_lr: float = SEED_BASE_LR,
    milestones: Sequence[int] | None = None,
    lr_factor: float = SEED_LR_FACTOR,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    class_weights: Sequence[float] | np.ndarray | None = None,
    device: str | torch.device | None = None,
    log_every: int = 0,
    callback: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Train ``net`` with SGD (Nesterov) on batches from ``sample_batch_fn``.

    Parameters
    ----------
    sample_batch_fn : ``f(iteration) -> (inputs, targets)``; ``inputs`` a (B, C, n, n) array/tensor
        or, for MS, a tuple ``(x_hr, x_lr)``; ``targets`` (B, m, m) int labels matching the network
        output (``IGNORE_LABEL`` = ignored).
    net : the model (left in train mode, on ``device``).
    iterations : number of SGD steps (3000 in the publications).
    base_lr, milestones, lr_factor : step schedule; ``milestones=None`` scales the published milestones
        to ``iterations``.
    momentum, weight_decay : SGD parameters (0.9 Nesterov, 1e-4 on non-bias parameters).
    class_weights : per-class loss weights (e.g. :func:`class_weights_from_counts`); None = unweighted.
    device : torch device (default: the net's).
    log_every : print a line every this many iterations (0 = silent).
    callback : ``f(iteration, loss, lr)`` after every step.

    Returns
    -------
    history : dict with lists ``iteration``, ``loss``, ``lr`` and the floats ``seconds`` and
    ``final_loss`` (mean of the last 10 % of the losses).
    """
    device = torch.device(device) if device is not None else next(net.parameters()).device
    net.to(device).train()
    if milestones is None:
        milestones = scaled_milestones(iterations)
    optimizer = torch.optim.SGD(
        parameter_groups(net, weight_decay), lr=base_lr, momentum=momentum, nesterov=True
    )
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(np.asarray(class_weights, dtype=np.float32), device=device)
    history: dict = {"iteration": [], "loss": [], "lr": []}
    start = time.perf_counter()
    for iteration in range(iterations):
        lr = step_lr(iteration, base_lr, milestones, lr_factor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = sample_batch_fn(iteration)
        inputs = _to_device(inputs, device)
        targets = _to_device(targets, device).long()
        logits = net(*inputs) if isinstance(inputs, tuple) else net(inputs)
        if logits.shape[-2:] != targets.shape[-2:]:
            raise ValueError(
                f"network output {tuple(logits.shape[-2:])} and targets "
                f"{tuple(targets.shape[-2:])} differ: extract targets of output_size(input) px"
            )
        loss = F.cross_entropy(logits, targets, weight=weight, ignore_index=IGNORE_LABEL)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        history["iteration"].append(iteration)
        history["loss"].append(value)
        history["lr"].append(lr)
        if callback is not None:
            callback(iteration, value, lr)
        if log_every and (iteration % log_every == 0 or iteration == iterations - 1):
            print(f"iteration {iteration:5d}  loss {value:.4f}  lr {lr:.5f}")
    history["seconds"] = time.perf_counter() - start
    tail = history["loss"][-max(1, iterations // 10) :]
    history["final_loss"] = float(np.mean(tail)) if tail else float("nan")
    return history


def array_batch_sampler(
    images: Sequence[np.ndarray],
    class_images: Sequence[np.ndarray],
    rois: Sequence[np.ndarray],
    config: LSMConfig,
    output_px: int,
    rng: np.random.Generator,
    *,
    image_spacing_um: float,
    label_spacing_um: float,
    rot90_ks: Sequence[int] | None = None,
    augment: bool = True,
    intensity_scale: float = 1.0 / 255.0,
    pad_value: float = 0.0,
) -> Callable[[int], tuple]:
    """Batch sampler over in-memory training sections (for small data and tests).

    Parameters
    ----------
    images : per training section, (rows, cols) grey image at ``image_spacing_um`` (8-bit or float).
    class_images : per section, (rows, cols) LSM class image (0 bg, 1 wm, 2 cortex, 3 area) at
        ``label_spacing_um``; ``rois`` the matching training ROIs.
    config : the model configuration (arch, spacings, patch sizes, batch size, augmentation ranges).
    output_px : the network's output size for ``config.input_px()`` (targets are cut to it).
    rng : numpy Generator (centres and augmentation).
    image_spacing_um, label_spacing_um : spacings of the arrays; patches are resampled to
        ``config.hr_spacing_um`` / ``lr_spacing_um`` / ``output_spacing_um``.
    rot90_ks : per section, orientation normalisation (``superior_rot90``); default 0.
    augment : draw random rotation and intensity augmentation (else identity).
    intensity_scale : multiplies image values to reach [0, 1].
    pad_value : image value outside the image.

    Returns
    -------
    ``f(iteration) -> (inputs, targets)`` as :func:`patch_batch_sampler`.
    """
    from cortexgraph.lsm.data import ArrayImageSource

    rot90_ks = [0] * len(images) if rot90_ks is None else list(rot90_ks)
    sources = [ArrayImageSource(image, image_spacing_um) for image in images]
    angles = [-k * np.pi / 2 for k in rot90_ks]
    return patch_batch_sampler(
        sources,
        class_images,
        rois,
        angles,
        config,
        output_px,
        rng,
        label_spacing_um=label_spacing_um,
        augment=augment,
        intensity_scale=intensity_scale,
        pad_value=pad_value,
    )


def patch_batch_sampler(
    sources: Sequence,
    class_images: Sequence[np.ndarray],
    rois: Sequence[np.ndarray],
    angles_rad: Sequence[float],
    config: LSMConfig,
    output_px: int,
    rng: np.random.Generator,
    *,
    label_spacing_um: float,
    augment: bool = True,
    intensity_scale: float = 1.0 / 255.0,
    pad_value: float = 255.0,
) -> Callable[[int], tuple]:
    """Batch sampler reading image patches from image sources (in memory or lazily from rasters).

    Parameters
    ----------
    sources : per training section, an object with ``patch(centre_mm, size_px, spacing_um,
        angle_rad, fill)`` (:class:`~cortexgraph.lsm.data.RasterImageSource` or
        :class:`~cortexgraph.lsm.data.ArrayImageSource`).
    class_images, rois : per section, the LSM class image (0..3) and training ROI at
        ``label_spacing_um``.
    angles_rad : per section, the orientation normalisation (patch rotation, radians).
    config, output_px, rng : as :func:`array_batch_sampler`.
    augment : rotation ~ U[-45, 45] deg and ``alpha x^gamma + beta`` per patch (else identity).
    intensity_scale : multiplies image values to reach [0, 1] (1/255 for 8-bit scans).
    pad_value : image value outside the image (255: bright slide).

    Returns
    -------
    ``f(iteration) -> (inputs, targets)``: inputs float32 (B, 1, n, n) (MS: a tuple (hr, lr), both
    centred at the same point), targets int64 (B, m, m) with ``IGNORE_LABEL`` outside the section.
    Centres are class-balanced within each batch (exactly B / K per present class; ``rng`` draws
    centres and augmentations, so the same seed gives the same batches).
    """
    sizes = config.input_px()  # (hr_px, lr_px) for MS, else one size
    hr_px, lr_px = sizes if isinstance(sizes, tuple) else (sizes, sizes)
    branches = []
    if config.uses_hr:
        branches.append((hr_px, config.hr_spacing_um))
    if config.uses_lr:
        branches.append((lr_px, config.lr_spacing_um))
    label_scale = config.output_spacing_um / label_spacing_um
    # an even output centred on a label pixel would sit half a pixel off the label grid: centre it on
    # the pixel's corner instead (exact when label and output spacings agree)
    align = 0.5 if output_px % 2 == 0 else 0.0

    pools = class_pools(class_images, rois, config.n_classes)

    def sample(iteration: int) -> tuple:
        centres = draw_balanced_centres(pools, config.batch_size, rng)
        inputs = [np.empty((len(centres), 1, n, n), np.float32) for n, _ in branches]
        targets = np.empty((len(centres), output_px, output_px), np.int64)
        for b, (section, row, col) in enumerate(centres):
            aug = (
                draw_augmentation(
                    rng,
                    config.rotation_deg,
                    config.alpha_range,
                    config.beta_range,
                    config.gamma_range,
                )
                if augment
                else None
            )
            angle = float(angles_rad[section]) + (aug.angle_rad if aug else 0.0)
            # centre in label pixel coordinates (pixel centres at integers), then section mm (x, y)
            centre_label = np.array([row + align, col + align], dtype=np.float64)
            centre_mm = (centre_label[::-1] + 0.5) * label_spacing_um / 1000.0
            for slot, (n, spacing_um) in enumerate(branches):
                patch = sources[section].patch(centre_mm, n, spacing_um, angle, pad_value)
                patch = patch * intensity_scale
                if aug is not None:
                    patch = intensity_transform(patch, aug.alpha, aug.beta, aug.gamma)
                inputs[slot][b, 0] = patch
            targets[b] = extract_patch(
                class_images[section],
                centre_label,
                output_px,
                label_scale,
                angle,
                order=0,
                fill=IGNORE_LABEL,
            )
        x = tuple(torch.from_numpy(v) for v in inputs)
        return (x if len(x) > 1 else x[0]), torch.from_numpy(targets)

    return sample


# --------------------------------------------------------------------------------------------------
# one model from loaded sections


def model_seed(seed: int, area_id: int, sections: Sequence[int], arch: str, kind: str) -> int:
    """A reproducible per-model seed from the run seed and what the model is."""
    entropy = [int(seed), int(area_id), ARCHITECTURES.index(arch), KINDS.index(kind)]
    entropy += [int(s) for s in sections]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def train_model(
    sections: Sequence[SectionData],
    config: LSMConfig,
    *,
    seed: int = 0,
    device=None,
    progress: Progress | None = None,
    init_hr: dict | None = None,
) -> tuple:
    """Train one model (LSM on two sections, GSM on more) from loaded training sections.

    Parameters
    ----------
    sections : training sections with class images and ROIs (:func:`~cortexgraph.lsm.data.load_section_data` with the
        area), at ``config.output_spacing_um``.
    config : architecture, patch sizes and schedule.
    seed : seeds numpy (centres, augmentation) and torch (weights).
    device : torch device (default CPU).
    progress : ``f("train", iteration, iterations)``.
    init_hr : weights of the high-resolution encoder E_HR to start from (a Siamese distance
        pre-training, as in the NeuroImage paper, Sect. 2.4: :func:`cortexgraph.features.distance_stage.
        lsm_hr_init_state`); the rest of the network starts from random weights.

    Returns
    -------
    ``(net, history)``: the trained :class:`~cortexgraph.lsm.networks.LSMUNet` (eval mode) and the
    training history (losses, learning rates, seconds, class weights, ROI class counts).
    """
    progress = progress or _noop
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_lsm(config)
    if init_hr is not None:
        if net.hr_encoder is None:
            raise ValueError(f"init_hr: the {config.arch} network has no high-resolution encoder")
        net.hr_encoder.load_state_dict(init_hr)
    output_px = net.output_size(config.input_px())
    class_images: list[np.ndarray] = []
    rois: list[np.ndarray] = []
    for s in sections:
        if s.classes is None or s.roi is None:
            raise ValueError(f"section {s.section} has no class image and ROI (not annotated)")
        class_images.append(s.classes)
        rois.append(s.roi)
    sampler = patch_batch_sampler(
        [s.image for s in sections],
        class_images,
        rois,
        [s.angle_rad for s in sections],
        config,
        output_px,
        rng,
        label_spacing_um=config.output_spacing_um,
    )
    counts = roi_class_counts(class_images, rois, config.n_classes)
    weights = class_weights_from_counts(counts)
    every = max(1, min(10, config.iterations // 100))

    def callback(iteration: int, loss: float, lr: float) -> None:
        if (iteration + 1) % every == 0 or iteration + 1 == config.iterations:
            progress("train", iteration + 1, config.iterations)

    history = train_lsm(
        sampler,
        net,
        config.iterations,
        base_lr=config.base_lr,
        milestones=config.lr_milestones,
        lr_factor=config.lr_factor,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        class_weights=weights,
        device=device,
        callback=callback,
    )
    history["class_weights"] = weights.tolist()
    history["roi_class_counts"] = counts.tolist()
    history["sections"] = [s.section for s in sections]
    net.eval()
    return net, history
