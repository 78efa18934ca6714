"""Training the patch encoder: supervised contrastive pre-training, linear evaluation, CE baseline.

Method (Schiffer, PhD thesis, Univ. Düsseldorf, chapter 6, Sects. 6.1.1-6.1.5 and 6.2.1; Schiffer
et al. 2021, ISBI):

1. **SCL pre-training**: encoder ``f_E`` plus projection head ``f_P`` (FC-BN-ReLU-FC, 256 outputs) on
   batches of class-balanced, augmented training patches; loss
   :func:`cortexgraph.training.losses.supervised_contrastive_loss` on the projections (cosine
   similarity, temperature 0.07, normalised by the number of positives ``n_c - 1``; an anchor without
   positive in the batch is left out, so the loss is never NaN); under torchrun the projections of all
   processes are gathered before the loss (thesis Sect. 6.1.4) and batch norm is synchronised.
2. **Linear evaluation**: ``f_P`` is dropped, ``f_E`` is frozen (parameters and batch-norm statistics),
   a linear classifier on ``h`` is trained with cross-entropy on the same augmented batches.
3. **CE baseline**: the same encoder architecture from scratch plus a linear classifier, trained end to
   end with cross-entropy for the SCL + linear epoch budget (thesis Sect. 6.2.1).

All three use LARS (:class:`cortexgraph.training.lars.LARS`: Nesterov momentum 0.9, weight decay 1e-4 on
non-bias, non-norm parameters, trust coefficient 0.02) at a constant learning rate (no schedule, no
warm-up: none is described).  Mixed precision (:func:`cortexgraph.training.runtime.autocast`) and
data parallelism are used on GPUs only.  After SCL and after CE training, the encoder's batch-norm
statistics are recomputed over one epoch of training batches (:func:`recompute_batch_norm`; the
running averages of training lag the weights of short, large-step runs).  Every epoch ends with a
checkpoint; an interrupted run
resumes from it.  Same seed, same preset, same data: same weights (on CPU).

Outputs of :func:`train_encoder` in ``<cohort>/derivatives/cortexgraph/encoders/<name>/``:

    encoder.pt          SCL encoder + its linear classifier + preset (load_encoder)
    ce.pt               the CE baseline (same format)
    metrics.json        macro F1 on train / test / transfer patches for SCL-linear and CE, chance level,
                        patch counts, seconds, per-epoch losses
    confusion.png       confusion matrices of SCL-linear and CE on test and transfer patches
    embedding.png       PCA (and t-SNE with ``tsne=True``) of the SCL and CE features of test patches
    patches.tsv         every patch centre with its label and split
    clusters.tsv        Ward clusters (10) of the SCL and CE test features against the areas
                        (:mod:`cortexgraph.features.clusters`; the encoder study of the contrastive
                        paper); their agreement scores in metrics.json
    checkpoints/<run>/last.pt   per-run checkpoints (scl, linear, ce); resumed only by a run of the
                        same stage key (checkpoints/KEY), never an output

and its record ``derivatives/cortexgraph/records/train-encoder@<name>.json`` (stage
``train-encoder@<name>``: preset, seed, brains and the identity of every image and annotation read).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cortexgraph.data.check import require_clean
from cortexgraph.data.manifest import Cohort
from cortexgraph.data.names import check_name
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.errors import CortexgraphError
from cortexgraph.features.augment import sample_augmentation_params
from cortexgraph.features.dataset import (
    BatchPlan,
    PatchReader,
    PatchTable,
    annotated_sections,
    build_patch_table,
    default_loader_workers,
    epoch_indices,
    iterate_batches,
)
from cortexgraph.features.encoders import (
    BaseEncoder,
    PatchClassifier,
    ProjectionHead,
    ResNetEncoder,
    build_encoder,
    count_parameters,
    encoder_feature_dim,
)
from cortexgraph.features.payload import cpu_state, read_payload, write_payload
from cortexgraph.features.presets import EncoderPreset, get_preset, preset_for_spacing
from cortexgraph.outputs import write_json_atomic
from cortexgraph.training.checkpoint import load_checkpoint, plain, save_checkpoint
from cortexgraph.training.lars import LARS, lars_param_groups
from cortexgraph.training.losses import supervised_contrastive_loss
from cortexgraph.training.metrics import macro_f1, per_class_f1
from cortexgraph.training.runtime import (
    all_gather_with_grad,
    all_reduce_sum,
    autocast,
    barrier,
    get_rank,
    get_world_size,
    init_distributed_from_env,
    is_distributed,
    is_main_process,
    make_grad_scaler,
    pick_device,
    seed_everything,
)
from cortexgraph.training.syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)

__all__ = [
    "ENCODER_FORMAT",
    "build_preset_encoder",
    "encoders_folder",
    "train_scl",
    "train_linear",
    "train_ce",
    "recompute_batch_norm",
    "encode_patches",
    "predict_patches",
    "chance_macro_f1",
    "save_encoder",
    "load_encoder",
    "train_encoder",
]

ENCODER_FORMAT = "cortexgraph-encoder"
_STREAMS = {"scl": 1, "linear": 2, "ce": 3, "batch_norm": 4}


def encoders_folder(cohort: Cohort, name: str) -> Path:
    """``<cohort>/derivatives/cortexgraph/encoders/<name>``."""
    return cohort.derivatives / "encoders" / name


def build_preset_encoder(
    preset: EncoderPreset, seed: int | None = 0
) -> BaseEncoder | ResNetEncoder:
    """The encoder of a preset, initialised from ``seed``; checks the patch size fits it."""
    encoder = build_encoder(preset.encoder, 1, seed=seed, **dict(preset.encoder_kwargs))
    if encoder.output_size(preset.patch_px) < 1:
        raise CortexgraphError(
            f"preset {preset.name}: {preset.patch_px} px patches are smaller than the "
            f"{encoder.min_input_px} px the {preset.encoder} encoder needs",
            fix="use a larger patch_px or an encoder with padding='same' / fewer blocks",
        )
    return encoder


def _initial_encoder(
    preset: EncoderPreset, seed: int, init_state: dict | None, device: torch.device
) -> BaseEncoder | ResNetEncoder:
    """The preset's encoder as a training run starts it: initialised from ``seed``, or with the
    weights ``init_state`` when given, on ``device``."""
    encoder = build_preset_encoder(preset, seed)
    if init_state is not None:
        encoder.load_state_dict(init_state)
    return encoder.to(device)


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; a last batch smaller than half a batch joins the previous one."""
    n = len(indices)
    count = max(1, int(round(n / batch_size)))
    return [b for b in np.array_split(indices, count) if len(b)]


def _rank_slice(batch: np.ndarray) -> np.ndarray:
    """This process's share of a global batch (every world-size-th element)."""
    return batch[get_rank() :: get_world_size()]


def _gather_order(batch: np.ndarray) -> np.ndarray:
    """Rows of the global batch in the order :func:`all_gather_with_grad` concatenates them."""
    world = get_world_size()
    return np.concatenate([batch[r::world] for r in range(world)])


@dataclass(frozen=True)
class _Settings:
    """The keywords :func:`train_scl`, :func:`train_linear` and :func:`train_ce` share."""

    seed: int
    device: torch.device
    checkpoint_dir: Path | None
    amp: bool
    progress: Callable[[str, int, int], None] | None
    loader_workers: int


class _Run:
    """One training run (SCL, linear or CE): optimizer, checkpoints and the epoch loop."""

    def __init__(
        self,
        stage: str,
        modules: dict[str, nn.Module],
        trainable: nn.Module,
        lr: float,
        preset: EncoderPreset,
        settings: _Settings,
    ) -> None:
        self.stage = stage
        self.modules = modules
        self.settings = settings
        self.device = settings.device
        self.preset = preset
        self.optimizer = LARS(
            lars_param_groups(trainable, preset.weight_decay),
            lr=lr,
            momentum=preset.momentum,
            nesterov=True,
            weight_decay=preset.weight_decay,
            trust_coefficient=preset.trust_coefficient,
        )
        self.scaler = make_grad_scaler(settings.device, settings.amp)
        self.amp = settings.amp
        folder = settings.checkpoint_dir
        self.checkpoint = None if folder is None else Path(folder) / "last.pt"
        self.container = nn.ModuleDict(modules)
        self.history: list[dict] = []
        self.start_epoch = 0

    def resume(self) -> None:
        if self.checkpoint is not None and self.checkpoint.is_file():
            payload = load_checkpoint(
                self.checkpoint,
                self.container,
                self.optimizer,
                scaler=self.scaler,
                map_location=self.device,
            )
            self.start_epoch = int(payload["epoch"])
            self.history = list(payload["extra"].get("history", []))
            log.info("%s: resumed after epoch %d", self.stage, self.start_epoch)

    def save(self, epoch: int) -> None:
        if self.checkpoint is not None and is_main_process():
            save_checkpoint(
                self.checkpoint,
                self.container,
                self.optimizer,
                epoch=epoch,
                scaler=self.scaler,
                extra={"history": self.history},
            )

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def _fit(
    run: _Run, table: PatchTable, reader: PatchReader, epochs: int, loss_of_batch
) -> list[dict]:
    """The epoch loop shared by the three runs; ``loss_of_batch(x, labels, batch)`` -> loss.

    Each epoch is planned first (rows and augmentation of every global batch, drawn in this process
    for the global batch so every process count sees the same data), then read by
    :func:`~cortexgraph.features.dataset.iterate_batches` in ``loader_workers`` processes while the
    model trains. The recorded loss is the mean over processes (the loss of the global batch)."""
    run.resume()
    preset = run.preset
    seed, progress = run.settings.seed, run.settings.progress
    stream = _STREAMS[run.stage]
    for epoch in range(run.start_epoch, epochs):
        start = time.perf_counter()
        for module in run.modules.values():
            module.train()
        indices = epoch_indices(table, preset, seed, epoch, stream)
        rng = np.random.default_rng([seed, stream, epoch, 2])
        world = get_world_size()
        batches: list[tuple[np.ndarray, np.ndarray]] = []
        plan: BatchPlan = []
        for batch in _batches(indices, preset.batch_size):
            # equal shares per process (the gather of the projections needs them)
            batch = batch[: len(batch) - len(batch) % world]
            params_all = [
                sample_augmentation_params(rng, reader.augmentation) for _ in range(len(batch))
            ]
            local = _rank_slice(np.arange(len(batch)))
            batches.append((batch, local))
            plan.append((batch[local], [params_all[k] for k in local]))
        losses = []
        wait_seconds = 0.0
        t0 = time.perf_counter()
        for (batch, local), x in zip(
            batches, iterate_batches(reader, plan, run.settings.loader_workers), strict=True
        ):
            wait_seconds += time.perf_counter() - t0
            x_t = torch.from_numpy(x[:, None]).to(run.device, non_blocking=True)
            with autocast(run.device, run.amp):
                loss = loss_of_batch(x_t, batch, local)
            run.step(loss)
            losses.append(float(loss.detach()))
            t0 = time.perf_counter()
        mean_loss = float(np.mean(losses)) if losses else math.nan
        if world > 1:
            mean_loss = (
                float(all_reduce_sum(torch.tensor([mean_loss], dtype=torch.float64))) / world
            )
        run.history.append(
            {
                "epoch": epoch + 1,
                "loss": mean_loss,
                "seconds": time.perf_counter() - start,
                "seconds_reading": wait_seconds,
                "patches": int(len(indices)),
            }
        )
        log.info(
            "%s epoch %d/%d: loss %.4f (%.1f s)",
            run.stage,
            epoch + 1,
            epochs,
            run.history[-1]["loss"],
            run.history[-1]["seconds"],
        )
        run.save(epoch + 1)
        if progress is not None:
            progress(run.stage, epoch + 1, epochs)
    return run.history


def _distributed(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised batch norm and DistributedDataParallel under torchrun; unchanged otherwise.

    Batch norm is synchronised on every device (:mod:`cortexgraph.training.syncbn`: torch's
    SyncBatchNorm on CUDA, a gloo-capable one on CPU), so N processes train the model one process
    trains on the same global batch."""
    if not is_distributed():
        return module
    module = convert_sync_batchnorm(module, device)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


@torch.no_grad()
def recompute_batch_norm(
    module: nn.Module,
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    amp: bool = True,
    loader_workers: int = 0,
) -> int:
    """Recompute the batch-norm running statistics of a trained module ("precise BN").

    The running statistics that training keeps are exponential averages (momentum 0.1, about the
    last ten batches) taken while the weights move; in the short, large-step runs of the small
    presets they describe earlier weights, and evaluation-mode features suffer.  So after training
    the statistics are reset and recomputed as plain averages over one epoch of augmented,
    class-balanced training batches (forward passes only, weights unchanged).  Not in the
    publications (which do not describe it).  On the demo phantom it raised the CE test macro F1 from 0.315 to
    0.346 (12 + 4 epochs) and from 0.474 to 0.490 (the demo preset; docs/features.md).

    Returns
    -------
    The number of patches passed through the module.
    """
    device = torch.device(device)
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    was_training = module.training
    module.train()
    stream = _STREAMS["batch_norm"]
    indices = epoch_indices(table, preset, seed, 0, stream)
    rng = np.random.default_rng([seed, stream, 0, 2])
    seen = 0
    plan: BatchPlan = []
    for batch in _batches(indices, preset.batch_size):
        params = [sample_augmentation_params(rng, reader.augmentation) for _ in range(len(batch))]
        local = _rank_slice(np.arange(len(batch)))
        plan.append((batch[local], [params[k] for k in local]))
    for x in iterate_batches(reader, plan, loader_workers):
        with autocast(device, amp):
            module(torch.from_numpy(x[:, None]).to(device))
        seen += len(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    module.train(was_training)
    return seen


def _precise_batch_norm(
    encoder: nn.Module,
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    settings: _Settings,
) -> None:
    """:func:`recompute_batch_norm` of a trained encoder when the preset asks for it."""
    if preset.recompute_batch_norm:
        recompute_batch_norm(
            encoder, table, reader, preset, seed=settings.seed, device=settings.device,
            amp=settings.amp, loader_workers=settings.loader_workers,
        )  # fmt: skip


def train_scl(
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    checkpoint_dir: Path | None = None,
    amp: bool = True,
    progress=None,
    init_state: dict | None = None,
    loader_workers: int = 0,
) -> tuple[nn.Module, list[dict]]:
    """Supervised contrastive pre-training of the preset's encoder (with its projection head).

    ``init_state``: encoder weights to start from (a distance pre-training,
    :func:`cortexgraph.features.distance_stage.encoder_init_state`) instead of random ones.

    Returns
    -------
    (encoder, history): the trained encoder (head dropped) on ``device``, one dict per epoch.
    """
    settings = _Settings(seed, torch.device(device), checkpoint_dir, amp, progress, loader_workers)
    device = settings.device
    encoder = _initial_encoder(preset, seed, init_state, device)
    head = ProjectionHead(encoder.feature_dim, preset.projection_dim, seed=seed + 1).to(device)
    model = _distributed(nn.Sequential(encoder, head), device)
    run = _Run("scl", {"encoder": encoder, "head": head}, model, preset.scl_lr, preset, settings)
    labels = torch.from_numpy(table.label)

    def loss_of_batch(x, batch, local):
        z = all_gather_with_grad(model(x).float())
        y = labels[batch[_gather_order(np.arange(len(batch)))]].to(z.device)
        return supervised_contrastive_loss(z, y, preset.temperature)

    history = _fit(run, table, reader, preset.scl_epochs, loss_of_batch)
    _precise_batch_norm(encoder, table, reader, preset, settings)
    return encoder, history


def _train_classifier(
    stage: str,
    classifier: PatchClassifier,
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    epochs: int,
    lr: float,
    settings: _Settings,
) -> list[dict]:
    model = _distributed(classifier, settings.device)
    trainable = classifier.head if classifier.freeze_encoder else classifier
    run = _Run(stage, {"classifier": classifier}, trainable, lr, preset, settings)
    labels = torch.from_numpy(table.label)

    def loss_of_batch(x, batch, local):
        logits = model(x).float()
        return F.cross_entropy(logits, labels[batch[local]].to(logits.device))

    return _fit(run, table, reader, epochs, loss_of_batch)


def train_linear(
    encoder: nn.Module,
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    num_classes: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    checkpoint_dir: Path | None = None,
    amp: bool = True,
    progress=None,
    loader_workers: int = 0,
) -> tuple[PatchClassifier, list[dict]]:
    """Linear evaluation: a linear classifier on the frozen encoder's features (cross-entropy)."""
    settings = _Settings(seed, torch.device(device), checkpoint_dir, amp, progress, loader_workers)
    classifier = PatchClassifier(encoder, num_classes, freeze_encoder=True, seed=seed + 2).to(
        settings.device
    )
    history = _train_classifier(
        "linear", classifier, table, reader, preset, preset.linear_epochs, preset.linear_lr,
        settings,
    )  # fmt: skip
    return classifier, history


def train_ce(
    table: PatchTable,
    reader: PatchReader,
    preset: EncoderPreset,
    num_classes: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    checkpoint_dir: Path | None = None,
    amp: bool = True,
    progress=None,
    init_state: dict | None = None,
    loader_workers: int = 0,
) -> tuple[PatchClassifier, list[dict]]:
    """The cross-entropy baseline: encoder + linear classifier trained end to end for the SCL +
    linear epoch budget (``preset.ce_epoch_budget``); from ``init_state`` when given (the
    contrastive paper's ``distance`` baseline starts from the distance pre-training)."""
    settings = _Settings(seed, torch.device(device), checkpoint_dir, amp, progress, loader_workers)
    encoder = _initial_encoder(preset, seed, init_state, settings.device)
    classifier = PatchClassifier(encoder, num_classes, seed=seed + 2).to(settings.device)
    history = _train_classifier(
        "ce", classifier, table, reader, preset, preset.ce_epoch_budget, preset.ce_lr, settings
    )
    _precise_batch_norm(classifier.encoder, table, reader, preset, settings)
    return classifier, history


@torch.no_grad()
def encode_patches(
    encoder: nn.Module,
    patches: np.ndarray,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> np.ndarray:
    """Encoder features ``h`` (float32 (B, D)) of patches (B, rows, cols) in [0, 1], eval mode."""
    device = torch.device(device)
    encoder.eval()
    out = []
    for start in range(0, len(patches), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(patches[start : start + batch_size])[:, None])
        with autocast(device, amp):
            h = encoder(x.to(device, dtype=torch.float32))
        out.append(h.float().cpu().numpy())
    if not out:
        return np.zeros((0, getattr(encoder, "feature_dim", 0)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


@torch.no_grad()
def predict_patches(
    classifier: PatchClassifier,
    reader: PatchReader,
    indices: np.ndarray,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (B,), features h (B, D)) of unaugmented patches of table rows ``indices``."""
    device = torch.device(device)
    classifier.eval()
    preds, feats = [], []
    for start in range(0, len(indices), batch_size):
        x = reader.read(indices[start : start + batch_size])
        x_t = torch.from_numpy(x[:, None]).to(device)
        with autocast(device, amp):
            h = classifier.encoder(x_t)
            logits = classifier.head(h)
        preds.append(logits.float().argmax(1).cpu().numpy())
        feats.append(h.float().cpu().numpy())
    if not preds:
        return np.zeros(0, np.int64), np.zeros(
            (0, encoder_feature_dim(classifier.encoder)), np.float32
        )
    return np.concatenate(preds).astype(np.int64), np.concatenate(feats)


def chance_macro_f1(y_true: np.ndarray, num_guess_classes: int) -> float:
    """Expected macro F1 of guessing uniformly among ``num_guess_classes`` training classes.

    A class with prevalence ``p`` gets precision ``p`` and recall ``1/K``, so ``F1 = 2 p / (1 + p K)``;
    guessed classes absent from ``y_true`` score 0 and count in the mean (as in :func:`macro_f1`).
    Assumes the true classes are among the guessed ones.
    """
    y_true = np.asarray(y_true).ravel()
    if y_true.size == 0 or num_guess_classes < 1:
        return float("nan")
    _, counts = np.unique(y_true, return_counts=True)
    p = counts / counts.sum()
    k = float(num_guess_classes)
    f1 = 2.0 * p / (1.0 + p * k)
    return float(f1.sum() / max(k, len(counts)))


def save_encoder(
    path: Path,
    classifier: PatchClassifier,
    preset: EncoderPreset,
    area_ids: np.ndarray,
    *,
    kind: str,
    seed: int,
    extra: dict | None = None,
) -> Path:
    """Write an encoder file: encoder and classifier weights, preset, class -> area id table."""
    from cortexgraph.training.runtime import unwrap_model

    # the classifier inside a DistributedDataParallel / compiled wrapper
    classifier = cast(PatchClassifier, unwrap_model(classifier))
    payload = {
        "format": ENCODER_FORMAT,
        "version": 1,
        "kind": kind,
        "preset": plain(preset.as_dict()),
        "feature_dim": encoder_feature_dim(classifier.encoder),
        "num_classes": int(classifier.num_classes),
        "area_ids": [int(a) for a in np.asarray(area_ids).tolist()],
        "seed": int(seed),
        "encoder": cpu_state(classifier.encoder),
        "head": cpu_state(classifier.head),
        "extra": plain(extra or {}),
    }
    return write_payload(path, payload)


def load_encoder(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[PatchClassifier, EncoderPreset, dict]:
    """Read an encoder file written by :func:`save_encoder`.

    Returns
    -------
    (classifier in eval mode with ``.encoder`` and ``.head``, preset, payload without weights).
    """
    payload = read_payload(
        path,
        ENCODER_FORMAT,
        default_name="encoder.pt",
        what="encoder file",
        fix="run `cortexgraph train-encoder` (again), or pass --encoder NAME of a trained one",
    )
    fields = dict(payload["preset"])
    fields["encoder_kwargs"] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in fields["encoder_kwargs"].items()
    }
    preset = EncoderPreset(**fields)
    encoder = build_preset_encoder(preset, seed=None)
    encoder.load_state_dict(payload["encoder"])
    classifier = PatchClassifier(encoder, payload["num_classes"], freeze_encoder=True)
    classifier.head.load_state_dict(payload["head"])
    classifier.to(torch.device(device)).eval()
    info = {k: v for k, v in payload.items() if k not in ("encoder", "head")}
    return classifier, preset, info


def _evaluate(
    classifier: PatchClassifier,
    reader: PatchReader,
    table: PatchTable,
    device: torch.device,
    amp: bool,
    batch_size: int,
) -> tuple[dict, dict]:
    """Macro F1 per split, plus predictions and features (for the pictures)."""
    scores: dict[str, dict] = {}
    outputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    train_classes = np.unique(table.label[table.indices("train")])
    for split in ("train", "test", "transfer"):
        idx = table.indices(split)
        if len(idx) == 0:
            continue
        pred, feats = predict_patches(
            classifier, reader, idx, batch_size=batch_size, device=device, amp=amp
        )
        y = table.label[idx]
        labels, f1 = per_class_f1(y, pred)
        scores[split] = {
            "macro_f1": macro_f1(y, pred),
            "accuracy": float(np.mean(pred == y)),
            "patches": int(len(idx)),
            "areas": int(len(np.unique(y))),
            "areas_unseen_in_training": int(len(np.setdiff1d(np.unique(y), train_classes))),
            "chance_macro_f1": chance_macro_f1(y, len(train_classes)),
            "per_class_f1": {
                str(int(c)): (None if np.isnan(v) else float(v))
                for c, v in zip(labels, f1, strict=True)
            },
        }
        outputs[split] = (y, pred, feats)
    return scores, outputs


def _cluster_table(path: Path, cohort: Cohort, outputs: dict) -> dict:
    """``clusters.tsv``: Ward clusters of the test features of each model against the areas
    (:mod:`cortexgraph.features.clusters`); returns the agreement scores per model."""
    from cortexgraph.features.clusters import write_cluster_table

    ids = np.asarray(cohort.areas.ids)
    names = {a.id: a.name for a in cohort.areas.areas}
    sets = {
        model: (split_outputs["test"][2], ids[split_outputs["test"][0]])
        for model, split_outputs in outputs.items()
        if "test" in split_outputs
    }
    return write_cluster_table(path, sets, names)[1]


def train_encoder(
    cohort: Cohort | str | Path,
    preset: str | EncoderPreset = "auto",
    name: str | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    amp: bool = True,
    overwrite: bool = False,
    tsne: bool = False,
    cache_mb: float = 1024.0,
    overrides: dict | None = None,
    progress=None,
    method: str = "scl",
    init: str | None = None,
    distance: dict | None = None,
    branch: str = "features",
    lsm_preset: str = "auto",
    loader_workers: int | None = None,
    wait_s: float = 0.0,
) -> Path:
    """Train the patch encoder of a cohort (SCL + linear evaluation, and the CE baseline).

    Parameters
    ----------
    cohort : a :class:`Cohort` or its folder.
    preset : preset name, an :class:`EncoderPreset`, or ``"auto"`` (the preset made for the image
        spacing of the cohort's first brain, :func:`preset_for_spacing`).
    name : encoder name, the output folder (default: the preset's name).
    seed : seeds weights, resampling and augmentation.
    device : ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; under torchrun each process
        takes its local GPU.
    amp : mixed precision on GPUs (ignored on CPU).
    overwrite : retrain even when the encoder is current (its checkpoints are removed).
    wait_s : seconds to wait for another process training the same encoder (its lock) before
        refusing with exit status 3 (:class:`~cortexgraph.derivatives.StageRun`).
    tsne : add a t-SNE panel to ``embedding.png`` (sklearn; seconds for a few thousand patches).
    cache_mb : memory for cached patch windows (:class:`PatchReader`).
    overrides : preset fields to replace (``scl_epochs``, ``samples_per_area``, ...;
        ``transfer_brain``: the brain held out entirely, which must be the transfer brain of every
        GNN run that uses this encoder's features).
    progress : optional callable ``(stage, done, total)``.
    method : ``scl`` (this module) or ``distance``: the Siamese 3D-distance pre-training
        (:func:`cortexgraph.features.distance_stage.train_distance_encoder`, with ``distance``
        setting overrides, ``branch`` and ``lsm_preset``; returns ``distance.pt``).
    init : name of a distance pre-training whose weights start the SCL and CE encoders.
    loader_workers : processes that read and augment patches while the model trains (None:
        :func:`~cortexgraph.features.dataset.default_loader_workers`; 0: read in this process).
        Not part of the stage key: any number gives the same batches.

    Returns
    -------
    Path of ``encoder.pt`` (the module docstring lists every output).
    """
    start_all = time.perf_counter()
    start_cpu = time.process_time()
    if not isinstance(cohort, Cohort):
        cohort = Cohort.read(cohort)
    if preset == "auto":
        preset = preset_for_spacing(cohort.brain(cohort.brain_ids[0]).spacing_of("image"))
    preset = get_preset(preset)
    if overrides:
        preset = preset.with_overrides(**overrides)
    if preset.transfer_brain and preset.transfer_brain not in cohort.brain_ids:
        log.warning(
            "the encoder's transfer brain %s is not in the cohort: no brain is held out",
            preset.transfer_brain,
        )
    name = check_name(preset.name if name is None else name, "encoder name")
    for brain_id in cohort.brain_ids:  # before anything is written
        require_clean(cohort.brain(brain_id), "train-encoder")
    if method == "distance":
        from cortexgraph.features.distance import DistanceSettings
        from cortexgraph.features.distance_stage import train_distance_encoder

        return train_distance_encoder(
            cohort, preset, name, settings=DistanceSettings().with_overrides(**(distance or {})),
            branch=branch, lsm_preset=lsm_preset, seed=seed, device=device, amp=amp,
            overwrite=overwrite, cache_mb=cache_mb, progress=progress, wait_s=wait_s,
        )  # fmt: skip
    if method != "scl":
        raise CortexgraphError(f"unknown method {method!r}", fix="use scl or distance")
    out = encoders_folder(cohort, name)
    encoder_path = out / "encoder.pt"
    init_distributed_from_env()
    store = Derivatives.of(cohort)
    init_state, upstream, init_parameters = None, [], None
    if init is not None:
        from cortexgraph.features.distance_stage import encoder_init_state

        init_state, init_sid = encoder_init_state(cohort, check_name(init, "encoder name"), preset)
        upstream = [init_sid]
        init_parameters = {"name": init}  # its key is part of this key (upstream)
    files: list[Path] = []
    brain_values = {}
    for brain_id in cohort.brain_ids:
        brain = cohort.brain(brain_id)
        stack = SectionStack(brain)
        annotated = annotated_sections(brain, stack)
        values, brain_files = brain_inputs(
            brain, ("image", "annotation"), sections=annotated, transforms=False
        )
        brain_values[brain_id] = values
        files += brain_files
    with StageRun(
        store,
        StageId("train-encoder", None, (name,)),
        parameters={
            "preset": plain(preset.as_dict()),
            "seed": int(seed),
            "tsne": bool(tsne),
            "brains": brain_values,
            **({"init": init_parameters} if init_parameters else {}),
        },
        inputs=[*files, cohort.area_table_path],
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
        follower=not is_main_process(),
    ) as run:
        if run.reuse:
            return encoder_path
        ckpt = out / "checkpoints"
        if is_main_process():
            key_file = ckpt / "KEY"
            if not (key_file.is_file() and key_file.read_text().strip() == run.key):
                import shutil

                shutil.rmtree(ckpt, ignore_errors=True)  # checkpoints of other settings
                ckpt.mkdir(parents=True, exist_ok=True)
                key_file.write_text(run.key + "\n")
        barrier()
        outputs, measured = _train_encoder(
            cohort, preset, name, out, seed=seed, device=device, amp=amp, tsne=tsne,
            cache_mb=cache_mb, progress=progress, start_all=start_all, start_cpu=start_cpu,
            init_state=init_state,
            loader_workers=default_loader_workers() if loader_workers is None else loader_workers,
        )  # fmt: skip
        if is_main_process():
            run.commit(outputs, measured)
    return encoder_path


def _train_encoder(
    cohort: Cohort,
    preset: EncoderPreset,
    name: str,
    out: Path,
    *,
    seed: int,
    device,
    amp: bool,
    tsne: bool,
    cache_mb: float,
    progress,
    start_all: float,
    start_cpu: float,
    init_state: dict | None = None,
    loader_workers: int = 0,
) -> tuple[list[Path], dict]:
    """The computation of :func:`train_encoder` (no reuse decision, no record)."""
    encoder_path = out / "encoder.pt"
    device = pick_device(device)
    seed_everything(seed)
    for brain_id in cohort.brain_ids:
        spacing = cohort.brain(brain_id).spacing_of("image")
        if preset.spacing_um < spacing / 1.01:
            log.warning(
                "preset %s reads %.1f µm patches from %.1f µm images of %s (upsampled)",
                preset.name,
                preset.spacing_um,
                spacing,
                brain_id,
            )
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    table = build_patch_table(cohort, preset)
    counts = table.counts()
    if counts["train"] == 0:
        raise CortexgraphError(
            "no training patches: every annotated section is a test or transfer section",
            file=str(cohort.root),
            fix="annotate more sections, or pick another transfer brain",
        )
    reader = PatchReader(cohort, table, preset, cache_mb=cache_mb)
    reader.prefetch()
    seconds["patch_table_and_reading"] = time.perf_counter() - t0
    num_classes = len(cohort.areas)
    area_ids = cohort.areas.ids
    ckpt = out / "checkpoints"

    def timed(key: str, step, *args, **kwargs):
        t0 = time.perf_counter()
        result = step(*args, **kwargs)
        seconds[key] = time.perf_counter() - t0
        return result

    common = {
        "seed": seed,
        "device": device,
        "amp": amp,
        "progress": progress,
        "loader_workers": loader_workers,
    }
    encoder, scl_history = timed(
        "scl", train_scl, table, reader, preset, checkpoint_dir=ckpt / "scl",
        init_state=init_state, **common,
    )  # fmt: skip
    scl_classifier, linear_history = timed(
        "linear", train_linear, encoder, table, reader, preset, num_classes,
        checkpoint_dir=ckpt / "linear", **common,
    )  # fmt: skip
    ce_classifier, ce_history = timed(
        "ce", train_ce, table, reader, preset, num_classes, checkpoint_dir=ckpt / "ce",
        init_state=init_state, **common,
    )  # fmt: skip

    t0 = time.perf_counter()
    scl_scores, scl_out = _evaluate(
        scl_classifier, reader, table, device, amp, preset.eval_batch_size
    )
    ce_scores, ce_out = _evaluate(ce_classifier, reader, table, device, amp, preset.eval_batch_size)
    seconds["evaluation"] = time.perf_counter() - t0
    if not is_main_process():
        return [], {}

    t0 = time.perf_counter()
    from cortexgraph.features.report import confusion_figure, embedding_figure

    seen = ", ".join(b for b in cohort.brain_ids if b != preset.transfer_brain)
    splits = {
        "test": f"every {preset.test_every}th annotated section of {seen}",
        "transfer": f"brain {preset.transfer_brain}, never trained on",
    }
    confusion_figure(
        out / "confusion.png", cohort.areas, scl_out, ce_out, scl_scores, ce_scores,
        title=name, splits=splits,
    )  # fmt: skip
    embedding_figure(
        out / "embedding.png", cohort.areas, scl_out, ce_out, tsne=tsne, seed=seed, title=name,
        splits=splits,
    )  # fmt: skip
    table.write_tsv(out / "patches.tsv")
    cluster_summary = _cluster_table(out / "clusters.tsv", cohort, {"scl": scl_out, "ce": ce_out})
    seconds["pictures"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start_all
    seconds["total_cpu"] = time.process_time() - start_cpu

    train_classes = np.unique(table.label[table.indices("train")])
    metrics = {
        "name": name,
        "preset": plain(preset.as_dict()),
        "seed": seed,
        "device": str(device),
        "processes": get_world_size(),
        "encoder_parameters": int(count_parameters(encoder)),
        "feature_dim": int(encoder.feature_dim),
        "patches": counts,
        "training_areas": int(len(train_classes)),
        "training_patches_per_epoch": int(len(train_classes) * preset.samples_per_area),
        "brains": {
            "train_test": [b for b in table.brains if b != preset.transfer_brain],
            "transfer": [b for b in table.brains if b == preset.transfer_brain],
        },
        "scl_linear": scl_scores,
        "ce": ce_scores,
        "clusters": cluster_summary,
        "history": {"scl": scl_history, "linear": linear_history, "ce": ce_history},
        "seconds": seconds,
        "loader_workers": int(loader_workers),
        "seconds_reading_patches": reader.seconds_reading,
        "seconds_sampling_patches": reader.seconds_sampling,
    }
    macro_f1 = {
        "scl": {split: v["macro_f1"] for split, v in scl_scores.items()},
        "ce": {split: v["macro_f1"] for split, v in ce_scores.items()},
    }
    for path, classifier, kind in (
        (out / "ce.pt", ce_classifier, "ce"),
        (encoder_path, scl_classifier, "scl"),
    ):
        extra = {"macro_f1": macro_f1[kind]}
        save_encoder(path, classifier, preset, area_ids, kind=kind, seed=seed, extra=extra)
    write_json_atomic(out / "metrics.json", metrics)
    reader.close()
    outputs = [
        encoder_path,
        out / "ce.pt",
        out / "metrics.json",
        out / "confusion.png",
        out / "embedding.png",
        out / "patches.tsv",
        out / "clusters.tsv",
    ]
    measured = {
        "scl_linear_macro_f1": macro_f1["scl"],
        "ce_macro_f1": macro_f1["ce"],
        "seconds": seconds,
    }
    return outputs, measured
