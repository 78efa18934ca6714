"""The per-area workflow of local segmentation models on one brain (method spec sections 4-8).

A neuroanatomist annotates an area on a few sections; one model per interval ``[s, t]`` between two
annotated sections labels every section in between (thesis 001:5793-5874, paper 000:210-244):

1. :func:`plan_chain`: the area's annotated sections alternate between training and test sections
   (the seeds train on every 120th section and test on the annotated section in the middle,
   001:6181-6189); consecutive training sections form the intervals of a chain of models that covers
   the area's extent. Sections beyond the first / last training section use the closest model
   (000:242-244).
2. :func:`train_model`: class-balanced patches from the two training sections (read lazily from the
   section rasters), class-weighted cross-entropy, SGD with the seeds' schedule.
3. :func:`predict_section`: tiled prediction over the prediction ROI of eq. 5.65 (the two training
   ROIs enlarged by 1.05 and transformed onto the section), with orientation normalisation.
4. The global model (GSM, 000:509-517) of an area is trained on all training sections of its chain and
   predicts the same sections within the same ROIs, so the two are scored on identical pixels.

Files, under the brain's derivatives folder ``OUT`` (``<cohort>/derivatives/cortexgraph/<brain>``)::

    OUT/lsm/<area>/chain.json                       the chain plan (training pairs, test sections, extent)
    OUT/lsm/<area>/lsm-<arch>/sSSSS-sTTTT/model.pt  one LSM, with model.pt.prov.json and history.json
    OUT/lsm/<area>/gsm-<arch>/model.pt              the area's global model (+ .prov.json, history.json)
    OUT/lsm/<area>/<source>/pred/sNNNN.h5           class prediction of the area: uint8 labels raster,
                                                    0 slide, 1 white matter, 2 other cortex, 3 the area,
                                                    255 outside the prediction ROI (+ .prov.json)
    OUT/labels/<source>/sNNNN.h5                    area ids (0 unlabelled) merged over areas, raw section
                                                    frame at the model's output spacing (+ .prov.json)

``<source>`` is ``lsm-<arch>`` or ``gsm-<arch>``; ``<area>`` the area's name from ``areas.tsv``.
Several areas share one label image per section: predicting an area replaces that area's pixels and
leaves the others (where two areas claim a pixel, the one predicted last wins).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.data import (
    CLASS_AREA,
    OUTSIDE_ROI,
    SectionData,
    area_sections,
    load_section_data,
    section_transform,
)
from cortexgraph.lsm.networks import (
    ARCHITECTURES,
    LSMConfig,
    lsm_config,
    preset_for_spacing,
    with_output_tile,
)
from cortexgraph.lsm.roi import prediction_roi
from cortexgraph.lsm.schedule import scaled_milestones
from cortexgraph.outputs import atomic_path, should_compute, write_json_atomic, write_provenance

log = logging.getLogger(__name__)

KINDS = ("lsm", "gsm")
Progress = Callable[[str, int, int], None]


def _noop(stage: str, done: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------------------------------
# configuration


def make_config(
    arch: str,
    image_spacing_um: float,
    *,
    preset: str = "auto",
    iterations: int | None = None,
    **overrides,
) -> LSMConfig:
    """The model configuration for a brain's images.

    Parameters
    ----------
    arch : ``"hr"``, ``"lr"`` or ``"ms"``.
    image_spacing_um : level-0 spacing of the section images.
    preset : ``"auto"`` (:func:`~cortexgraph.lsm.networks.preset_for_spacing`: ``full`` for 2 um
        scans, ``small`` up to 8 um, ``phantom`` scaled to coarser images) or a preset name.
    iterations : training iterations; the learning-rate milestones are scaled with them
        (3000 iterations: 1000, 1400, ..., 2600).
    overrides : further :class:`~cortexgraph.lsm.networks.LSMConfig` fields.
    """
    if arch not in ARCHITECTURES:
        raise CortexgraphError(f"unknown architecture {arch!r}", fix="use hr, lr or ms")
    if preset == "auto":
        preset, extra = preset_for_spacing(image_spacing_um)
    else:
        extra = {"spacing_um": float(image_spacing_um)} if preset in ("phantom", "tiny") else {}
    extra.update(overrides)
    if iterations is not None:
        extra["iterations"] = int(iterations)
        extra["lr_milestones"] = scaled_milestones(int(iterations))
    config = lsm_config(preset, arch, **extra)
    if config.hr_spacing_um < image_spacing_um * (1 - 1e-6) and config.uses_hr:
        log.warning(
            "HR patches at %.3g um are finer than the images (%.3g um): they are interpolated",
            config.hr_spacing_um,
            image_spacing_um,
        )
    return config


def config_to_dict(config: LSMConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(values: dict) -> LSMConfig:
    fields = LSMConfig.__dataclass_fields__
    clean = {}
    for key, value in values.items():
        if key not in fields:
            continue
        clean[key] = tuple(value) if isinstance(value, list) else value
    return LSMConfig(**clean)


# --------------------------------------------------------------------------------------------------
# chain plan


@dataclass(frozen=True)
class ChainPlan:
    """Which models an area needs and which sections each one predicts.

    Attributes
    ----------
    area_id : the area.
    annotated : sorted annotated sections that contain the area.
    intervals : training pairs ``(s, t)`` of consecutive training sections.
    tests : per interval, the annotated sections strictly inside it (never trained on).
    sections : every section the chain predicts (available, not excluded, inside the extent).
    extent : ``(first, last)`` section numbers of the predicted range (inclusive).
    """

    area_id: int
    annotated: tuple[int, ...]
    intervals: tuple[tuple[int, int], ...]
    tests: tuple[tuple[int, ...], ...]
    sections: tuple[int, ...]
    extent: tuple[int, int]
    step: int = 2
    notes: dict = field(default_factory=dict)

    @property
    def training_sections(self) -> tuple[int, ...]:
        return tuple(sorted({s for pair in self.intervals for s in pair}))

    @property
    def test_sections(self) -> tuple[int, ...]:
        return tuple(sorted({s for group in self.tests for s in group}))

    def interval_of(self, section: int) -> int:
        """Index of the model that predicts ``section``: the interval containing it (a shared
        training section goes to the interval on its left), else the closest end model."""
        for index, (s, t) in enumerate(self.intervals):
            if s <= section <= t:
                return index
        return 0 if section < self.intervals[0][0] else len(self.intervals) - 1

    def role(self, section: int) -> str:
        """``train``, ``test`` (annotated, left out), ``between`` (inside an interval) or ``end``."""
        if section in self.training_sections:
            return "train"
        if section in self.test_sections:
            return "test"
        if self.intervals[0][0] < section < self.intervals[-1][1]:
            return "between"
        return "end"

    def to_dict(self) -> dict:
        return {
            "area_id": self.area_id,
            "annotated": list(self.annotated),
            "intervals": [list(p) for p in self.intervals],
            "tests": [list(t) for t in self.tests],
            "sections": list(self.sections),
            "extent": list(self.extent),
            "step": self.step,
            "notes": dict(self.notes),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ChainPlan:
        return cls(
            area_id=int(values["area_id"]),
            annotated=tuple(int(s) for s in values["annotated"]),
            intervals=tuple((int(s), int(t)) for s, t in values["intervals"]),
            tests=tuple(tuple(int(s) for s in group) for group in values["tests"]),
            sections=tuple(int(s) for s in values["sections"]),
            extent=(int(values["extent"][0]), int(values["extent"][1])),
            step=int(values.get("step", 2)),
            notes=dict(values.get("notes", {})),
        )


def plan_chain(
    area_annotated: Sequence[int],
    available: Sequence[int],
    *,
    area_id: int = 0,
    step: int = 2,
    brain_annotated: Sequence[int] = (),
    extent: tuple[int, int] | None = None,
) -> ChainPlan:
    """Plan the chain of models of one area.

    Parameters
    ----------
    area_annotated : annotated sections whose annotation contains the area.
    available : sections that can be predicted (present, not excluded).
    area_id : the area (stored in the plan).
    step : every ``step``-th annotated section of the area is a training section (first and last
        always); the ones in between are test sections. ``step=2`` is the seeds' protocol (train on
        every 120th section, test on the annotated 60th between, 001:6181-6189).
    brain_annotated : all annotated sections of the brain. By default the extent reaches from the
        area's first annotated section back to (excluding) the brain's previous annotated section
        that does *not* show the area, or to the first available section when there is none; the
        same forward. These end sections use the closest model (000:242-244).
    extent : explicit ``(first, last)`` range of sections to predict (inclusive).

    Returns
    -------
    :class:`ChainPlan`. Raises CortexgraphError when the area has fewer than two annotated sections.
    """
    annotated = sorted({int(s) for s in area_annotated})
    if len(annotated) < 2:
        raise CortexgraphError(
            f"area {area_id} is annotated on {len(annotated)} section(s); a local model needs two",
            fix="annotate the area on at least two sections",
        )
    if step < 1:
        raise ValueError("step must be >= 1")
    indices = list(range(0, len(annotated), step))
    if indices[-1] != len(annotated) - 1:
        indices.append(len(annotated) - 1)
    training = [annotated[i] for i in indices]
    intervals = tuple(zip(training[:-1], training[1:], strict=True))
    tests = tuple(tuple(a for a in annotated if s < a < t) for s, t in intervals)
    available = sorted({int(s) for s in available})
    if extent is None:
        others = sorted(set(int(s) for s in brain_annotated) - set(annotated))
        before = [s for s in others if s < annotated[0]]
        after = [s for s in others if s > annotated[-1]]
        lo = before[-1] + 1 if before else min(available + annotated)
        hi = after[0] - 1 if after else max(available + annotated)
        extent = (lo, hi)
    lo, hi = int(extent[0]), int(extent[1])
    sections = tuple(s for s in available if lo <= s <= hi)
    return ChainPlan(
        area_id=int(area_id),
        annotated=tuple(annotated),
        intervals=intervals,
        tests=tests,
        sections=sections,
        extent=(lo, hi),
        step=int(step),
    )


def plan_for_area(
    stack: SectionStack,
    area_id: int,
    *,
    step: int = 2,
    extent: tuple[int, int] | None = None,
) -> ChainPlan:
    """:func:`plan_chain` from a brain's annotations (reads every annotated section once)."""
    annotated = area_sections(stack, area_id)
    return plan_chain(
        annotated,
        stack.sections,
        area_id=area_id,
        step=step,
        brain_annotated=stack.brain.annotated_sections,
        extent=extent,
    )


# --------------------------------------------------------------------------------------------------
# paths


def safe_name(name: str) -> str:
    """An area name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "area"


def source_name(kind: str, arch: str) -> str:
    """``lsm-<arch>`` or ``gsm-<arch>``: the label source of docs/derivatives.md."""
    if kind not in KINDS:
        raise CortexgraphError(f"unknown model kind {kind!r}", fix="use lsm or gsm")
    if arch not in ARCHITECTURES:
        raise CortexgraphError(f"unknown architecture {arch!r}", fix="use hr, lr or ms")
    return f"{kind}-{arch}"


def area_dir(out_dir: Path, area: Area) -> Path:
    return Path(out_dir) / "lsm" / safe_name(area.name)


def model_path(
    out_dir: Path, area: Area, kind: str, arch: str, interval: tuple[int, int] | None = None
) -> Path:
    """Where a model lives: ``lsm/<area>/lsm-<arch>/sSSSS-sTTTT/model.pt`` or
    ``lsm/<area>/gsm-<arch>/model.pt``."""
    base = area_dir(out_dir, area) / source_name(kind, arch)
    if kind == "gsm":
        return base / "model.pt"
    if interval is None:
        raise ValueError("an LSM needs its interval (s, t)")
    s, t = interval
    return base / f"s{int(s):04d}-s{int(t):04d}" / "model.pt"


def prediction_path(out_dir: Path, area: Area, source: str, section: int) -> Path:
    return area_dir(out_dir, area) / source / "pred" / f"s{int(section):04d}.h5"


def labels_path(out_dir: Path, source: str, section: int) -> Path:
    return Path(out_dir) / "labels" / source / f"s{int(section):04d}.h5"


def plan_path(out_dir: Path, area: Area) -> Path:
    return area_dir(out_dir, area) / "chain.json"


def write_plan(out_dir: Path, area: Area, plan: ChainPlan) -> Path:
    return write_json_atomic(plan_path(out_dir, area), plan.to_dict())


def read_plan(out_dir: Path, area: Area) -> ChainPlan:
    path = plan_path(out_dir, area)
    if not path.is_file():
        raise CortexgraphError(
            "no chain plan for this area", file=path, fix="run `cortexgraph lsm chain` first"
        )
    return ChainPlan.from_dict(json.loads(path.read_text()))


# --------------------------------------------------------------------------------------------------
# models


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
) -> tuple:
    """Train one model (LSM on two sections, GSM on more) from loaded training sections.

    Parameters
    ----------
    sections : training sections with class images and ROIs (:func:`load_section_data` with the
        area), at ``config.output_spacing_um``.
    config : architecture, patch sizes and schedule.
    seed : seeds numpy (centres, augmentation) and torch (weights).
    device : torch device (default CPU).
    progress : ``f("train", iteration, iterations)``.

    Returns
    -------
    ``(net, history)``: the trained :class:`~cortexgraph.lsm.networks.LSMUNet` (eval mode) and the
    training history (losses, learning rates, seconds, class weights, ROI class counts).
    """
    import torch

    from cortexgraph.lsm.networks import build_lsm
    from cortexgraph.lsm.train import (
        class_weights_from_counts,
        patch_batch_sampler,
        roi_class_counts,
        train_lsm,
    )

    progress = progress or _noop
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_lsm(config)
    output_px = net.output_size(config.input_px())
    class_images = [s.classes for s in sections]
    rois = [s.roi for s in sections]
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


def save_model(path: Path, net, config: LSMConfig, meta: dict) -> Path:
    """Write a model file (weights, configuration, metadata) atomically."""
    import torch

    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": config_to_dict(config), "state_dict": state, "meta": meta}, tmp)
    return Path(path)


def load_model(path: Path, device=None):
    """Read a model file: ``(net, config, meta)`` with the net in eval mode."""
    import torch

    from cortexgraph.lsm.networks import build_lsm

    path = Path(path)
    if not path.is_file():
        raise CortexgraphError(
            "model not found", file=path, fix="train it first (`cortexgraph lsm train` / `chain`)"
        )
    record = torch.load(path, map_location=device or "cpu", weights_only=True)
    config = config_from_dict(record["config"])
    net = build_lsm(config)
    net.load_state_dict(record["state_dict"])
    if device is not None:
        net.to(device)
    return net.eval(), config, dict(record.get("meta", {}))


# --------------------------------------------------------------------------------------------------
# prediction


def tile_network(net, tile_px: int):
    """A copy of ``net`` that outputs ``tile_px`` px tiles (same weights; the unpadded network's
    weights do not depend on the patch size)."""
    from cortexgraph.lsm.networks import build_lsm

    config = with_output_tile(net.config, tile_px)
    tiled = build_lsm(config)
    tiled.load_state_dict(net.state_dict())
    device = next(net.parameters()).device
    return tiled.to(device).eval()


def predict_section(
    net,
    image,
    roi: np.ndarray,
    angle_rad: float = 0.0,
    *,
    tile_px: int = 64,
    batch_size: int = 8,
    intensity_scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """Tiled prediction of one section over its ROI.

    Parameters
    ----------
    net : a trained :class:`~cortexgraph.lsm.networks.LSMUNet` (its config gives spacings; a copy
        with ``tile_px`` output tiles does the work), or any callable ``f(*patches) -> (B, C, tile_px,
        tile_px)`` scores with a ``config`` attribute whose output tile is ``tile_px``.
    image : image source of the section (``patch(centre_mm, size_px, spacing_um, angle_rad)``).
    roi : (rows, cols) bool prediction ROI at ``net.config.output_spacing_um`` (the output grid).
    angle_rad : orientation normalisation (a multiple of pi/2): patches are read rotated by it and
        the predicted tiles rotated back.
    tile_px : output tile edge (px); the HR / LR patches are the smallest that give it.
    batch_size : tiles per forward pass.
    intensity_scale : image values -> [0, 1].

    Returns
    -------
    (rows, cols) uint8: classes 0..3 inside the ROI, ``OUTSIDE_ROI`` (255) outside.
    """
    import torch

    from cortexgraph.lsm.networks import LSMUNet
    from cortexgraph.lsm.tiling import predict_tiled_at, tile_centre_mm

    config = net.config
    quarter = int(round(angle_rad / (np.pi / 2)))
    if abs(angle_rad - quarter * np.pi / 2) > 1e-9:
        raise ValueError("orientation normalisation must be a multiple of 90 degrees")
    if isinstance(net, LSMUNet):
        tiled = net if config.output_px == tile_px else tile_network(net, tile_px)
        device = next(tiled.parameters()).device
    else:  # any callable with a ``config`` whose output tile is ``tile_px`` (tests)
        tiled, device = net, torch.device("cpu")
        if config.output_px != tile_px:
            raise ValueError(f"the model outputs {config.output_px} px tiles, not {tile_px}")
    sizes = tiled.config.input_px()
    hr_px, lr_px = sizes if config.arch == "ms" else (sizes, sizes)
    spacing = config.output_spacing_um

    def predict_at(origins: np.ndarray) -> np.ndarray:
        centres = tile_centre_mm(origins, tile_px, spacing)
        inputs = []
        if config.uses_hr:
            inputs.append([image.patch(c, hr_px, config.hr_spacing_um, angle_rad) for c in centres])
        if config.uses_lr:
            inputs.append([image.patch(c, lr_px, config.lr_spacing_um, angle_rad) for c in centres])
        tensors = [
            torch.from_numpy(np.stack(x)[:, None] * np.float32(intensity_scale)).to(device)
            for x in inputs
        ]
        with torch.no_grad():
            logits = tiled(*tensors)
        labels = logits.argmax(dim=1).cpu().numpy().astype(np.uint8)
        return np.ascontiguousarray(np.rot90(labels, quarter, axes=(1, 2)))

    return predict_tiled_at(
        roi.shape,
        roi,
        predict_at,
        tile_px,
        batch_size=batch_size,
        outside_label=OUTSIDE_ROI,
        dtype=np.uint8,
    )


def interval_roi(
    stack: SectionStack,
    data_s: SectionData,
    data_t: SectionData,
    section: int,
    shape: tuple[int, int],
    config: LSMConfig,
) -> np.ndarray:
    """Prediction ROI (eq. 5.65) on ``section`` of the model trained on ``data_s`` and ``data_t``."""
    return prediction_roi(
        data_s.roi,
        data_t.roi,
        section_transform(stack, data_s.section, section),
        section_transform(stack, data_t.section, section),
        config.output_spacing_um,
        shape,
        scale=config.roi_enlarge,
        radius_mm=config.roi_radius_mm,
    )


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_area_labels(
    path: Path, classes: np.ndarray, area_id: int, spacing_um: float, provenance: dict
) -> Path:
    """Put one area's prediction into a section label image shared by all areas.

    The existing label image (same shape and spacing) keeps its other areas; pixels that carried
    ``area_id`` are cleared and the pixels predicted as the area (class 3) get ``area_id``. Written
    with ``write_raster(kind="labels")`` (uint16 area ids, 0 unlabelled), under a file lock so that
    concurrent jobs do not lose each other's areas. The provenance record lists every merged area.
    """
    path = Path(path)
    with _locked(path.parent):
        labels = np.zeros(classes.shape, np.uint16)
        merged: dict = {}
        if path.is_file():
            with Raster(path) as old:
                if old.shape[:2] == classes.shape and abs(old.spacing_um - spacing_um) < 1e-9:
                    labels = old.read_level(0).astype(np.uint16)
            prov = path.with_name(path.name + ".prov.json")
            if prov.is_file():
                merged = json.loads(prov.read_text()).get("parameters", {}).get("areas", {})
        labels[labels == area_id] = 0
        labels[classes == CLASS_AREA] = area_id
        write_raster(path, labels, spacing_um, kind="labels")
        merged[str(area_id)] = provenance
        write_provenance(path, {"areas": merged})
    return path


def _section_cache(stack: SectionStack, config: LSMConfig, area_id: int, cache_mb: float):
    cache: dict[tuple[int, bool], SectionData] = {}

    def get(section: int, annotated: bool) -> SectionData:
        key = (section, annotated)
        if key not in cache:
            cache[key] = load_section_data(
                stack,
                section,
                config.output_spacing_um,
                area_id=area_id if annotated else None,
                radius_mm=config.roi_radius_mm,
                cache_mb=cache_mb,
            )
        return cache[key]

    return get


def predict_sections(
    stack: SectionStack,
    plan: ChainPlan,
    area: Area,
    nets: dict[int, object],
    sections: Sequence[int],
    out_dir: Path,
    source: str,
    *,
    tile_px: int = 64,
    batch_size: int = 8,
    overwrite: bool = False,
    cache_mb: float = 256.0,
    progress: Progress | None = None,
    model_files: dict[int, Path] | None = None,
) -> list[Path]:
    """Predict sections with the chain's models and write their label images.

    Parameters
    ----------
    stack, plan, area : the brain, the area's chain plan and the area.
    nets : interval index -> trained net (a GSM: the same net for every interval).
    sections : the sections to predict; each uses the ROI (and, for LSMs, the net) of
        ``plan.interval_of(section)``.
    out_dir : the brain's derivatives folder.
    source : ``lsm-<arch>`` / ``gsm-<arch>``.
    tile_px, batch_size : tiling.
    overwrite : recompute existing per-area predictions (else they are reused and only merged).
    progress : ``f("predict", done, total)``.
    model_files : interval index -> model file (for the provenance records).

    Returns
    -------
    The per-area prediction files (``lsm/<area>/<source>/pred/sNNNN.h5``); the merged label images
    ``labels/<source>/sNNNN.h5`` are updated as well.
    """
    progress = progress or _noop
    config = next(iter(nets.values())).config
    get = _section_cache(stack, config, area.id, cache_mb)
    copies: dict[int, object] = {}  # one tiling copy per distinct net (a GSM serves every interval)
    for net in nets.values():
        if id(net) not in copies and getattr(net, "config", None) is not None:
            is_unet = hasattr(net, "state_dict") and net.config.output_px != tile_px
            copies[id(net)] = tile_network(net, tile_px) if is_unet else net
    nets = {i: copies[id(n)] for i, n in nets.items()}
    written = []
    total = len(sections)
    progress("predict", 0, total)
    for done, section in enumerate(sections, start=1):
        index = plan.interval_of(section)
        s, t = plan.intervals[index]
        out = prediction_path(out_dir, area, source, section)
        model_file = str((model_files or {}).get(index, ""))
        if should_compute(out, overwrite):
            start = time.perf_counter()
            target = get(section, False)
            roi = interval_roi(stack, get(s, True), get(t, True), section, target.shape, config)
            classes = predict_section(
                nets[index],
                target.image,
                roi,
                target.angle_rad,
                tile_px=tile_px,
                batch_size=batch_size,
            )
            write_raster(out, classes, config.output_spacing_um, kind="labels")
            write_provenance(
                out,
                {
                    "area_id": area.id,
                    "area": area.name,
                    "source": source,
                    "interval": [s, t],
                    "role": plan.role(section),
                    "model": model_file,
                    "tile_px": tile_px,
                    "classes": "0 slide, 1 white matter, 2 other cortex, 3 area, 255 outside ROI",
                },
                inputs=[model_file] if model_file else [],
                measured={
                    "seconds": round(time.perf_counter() - start, 3),
                    "roi_px": int(roi.sum()),
                    "area_px": int(np.count_nonzero(classes == CLASS_AREA)),
                },
            )
        with Raster(out) as raster:
            classes = raster.read_level(0)
            spacing = raster.spacing_um
        merge_area_labels(
            labels_path(out_dir, source, section),
            classes,
            area.id,
            spacing,
            {"area": area.name, "prediction": str(out), "model": model_file},
        )
        written.append(out)
        progress("predict", done, total)
    return written


# --------------------------------------------------------------------------------------------------
# stages (what the CLI runs)


@dataclass
class LSMRun:
    """Common settings of a workflow stage on one brain and area."""

    brain: Brain
    area: Area
    arch: str = "ms"
    out_dir: Path | None = None
    preset: str = "auto"
    iterations: int | None = None
    seed: int = 0
    step: int = 2
    extent: tuple[int, int] | None = None
    tile_px: int = 64
    batch_size: int = 8
    device: str | None = None
    overwrite: bool = False
    cache_mb: float = 256.0
    progress: Progress | None = None
    config_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir) if self.out_dir is not None else self.brain.derivatives
        self.progress = self.progress or _noop

    @property
    def config(self) -> LSMConfig:
        return make_config(
            self.arch,
            self.brain.image_spacing_um,
            preset=self.preset,
            iterations=self.iterations,
            **self.config_overrides,
        )

    def parameters(self) -> dict:
        return {
            "brain": self.brain.id,
            "area": self.area.name,
            "area_id": self.area.id,
            "arch": self.arch,
            "preset": self.preset,
            "seed": self.seed,
            "config": config_to_dict(self.config),
        }


def _check_sections(stack: SectionStack, sections: Sequence[int]) -> None:
    for section in sections:
        if section not in stack.sections:
            raise CortexgraphError(
                "section is not available (missing, excluded or not in the table)",
                file=stack.brain.section_table_path,
                section=int(section),
                fix="pick available annotated sections",
            )


def train_interval(run: LSMRun, interval: tuple[int, int], kind: str = "lsm") -> Path:
    """Train (or reuse) the LSM of ``interval`` = (s, t); returns the model file.

    Writes ``lsm/<area>/lsm-<arch>/sSSSS-sTTTT/model.pt`` (+ provenance, ``history.json``).
    """
    s, t = sorted(int(v) for v in interval)
    if s == t:
        raise CortexgraphError("the two training sections must differ", section=s)
    path = model_path(run.out_dir, run.area, "lsm", run.arch, (s, t))
    if not should_compute(path, run.overwrite):
        log.info("reusing %s", path)
        return path
    config = run.config
    with SectionStack(run.brain) as stack:
        _check_sections(stack, (s, t))
        data = [
            load_section_data(
                stack,
                sec,
                config.output_spacing_um,
                area_id=run.area.id,
                radius_mm=config.roi_radius_mm,
                cache_mb=run.cache_mb,
            )
            for sec in (s, t)
        ]
        seed = model_seed(run.seed, run.area.id, (s, t), run.arch, "lsm")
        return _train_and_save(run, data, config, seed, path, {"interval": [s, t]})


def _train_and_save(run: LSMRun, data, config, seed: int, path: Path, meta: dict) -> Path:
    net, history = train_model(data, config, seed=seed, device=run.device, progress=run.progress)
    meta = dict(meta, area_id=run.area.id, area=run.area.name, brain=run.brain.id, seed=seed)
    save_model(path, net, config, meta)
    write_json_atomic(path.with_name("history.json"), history)
    inputs = []
    for d in data:
        record = run.brain.section(d.section)
        inputs += [run.brain.path(record.image), run.brain.path(record.mask)]
        if record.annotation:
            inputs.append(run.brain.path(record.annotation))
    write_provenance(
        path,
        dict(run.parameters(), **meta),
        inputs=inputs,
        measured={
            "seconds": round(history["seconds"], 3),
            "iterations_per_s": round(config.iterations / max(history["seconds"], 1e-9), 3),
            "final_loss": history["final_loss"],
            "first_loss": history["loss"][0] if history["loss"] else None,
        },
    )
    return path


def predict_interval(run: LSMRun, interval: tuple[int, int]) -> list[Path]:
    """Predict every available section strictly between ``s`` and ``t`` with the LSM of [s, t]."""
    s, t = sorted(int(v) for v in interval)
    path = model_path(run.out_dir, run.area, "lsm", run.arch, (s, t))
    net, _, _ = load_model(path, run.device)
    with SectionStack(run.brain) as stack:
        _check_sections(stack, (s, t))
        tests = [
            a
            for a in stack.brain.annotated_sections
            if s < a < t and a in stack.sections and np.any(stack.annotation(a) == run.area.id)
        ]
        plan = ChainPlan(
            area_id=run.area.id,
            annotated=(s, *tests, t),
            intervals=((s, t),),
            tests=(tuple(tests),),
            sections=tuple(u for u in stack.sections if s < u < t),
            extent=(s, t),
        )
        return predict_sections(
            stack,
            plan,
            run.area,
            {0: net},
            plan.sections,
            run.out_dir,
            source_name("lsm", run.arch),
            tile_px=run.tile_px,
            batch_size=run.batch_size,
            overwrite=run.overwrite,
            cache_mb=run.cache_mb,
            progress=run.progress,
            model_files={0: path},
        )


def chain_plan(run: LSMRun) -> ChainPlan:
    """Plan the area's chain (and write ``lsm/<area>/chain.json``)."""
    with SectionStack(run.brain) as stack:
        plan = plan_for_area(stack, run.area.id, step=run.step, extent=run.extent)
    write_plan(run.out_dir, run.area, plan)
    return plan


def run_chain(run: LSMRun, predict: bool = True) -> dict:
    """Train the chain of LSMs that covers the area and predict its whole extent.

    Returns ``{"plan": ChainPlan, "models": [paths], "predictions": [paths]}``.
    """
    plan = chain_plan(run)
    models = []
    total = len(plan.intervals)
    for index, interval in enumerate(plan.intervals):
        log.info("model %d/%d: sections %d-%d", index + 1, total, *interval)
        models.append(train_interval(run, interval))
        run.progress("models", index + 1, total)
    predictions = []
    if predict:
        nets = {i: load_model(p, run.device)[0] for i, p in enumerate(models)}
        with SectionStack(run.brain) as stack:
            predictions = predict_sections(
                stack,
                plan,
                run.area,
                nets,
                plan.sections,
                run.out_dir,
                source_name("lsm", run.arch),
                tile_px=run.tile_px,
                batch_size=run.batch_size,
                overwrite=run.overwrite,
                cache_mb=run.cache_mb,
                progress=run.progress,
                model_files=dict(enumerate(models)),
            )
    return {"plan": plan, "models": models, "predictions": predictions}


def train_gsm(run: LSMRun, plan: ChainPlan | None = None) -> Path:
    """Train (or reuse) the area's global model on all training sections of its chain."""
    plan = plan or chain_plan(run)
    path = model_path(run.out_dir, run.area, "gsm", run.arch)
    if not should_compute(path, run.overwrite):
        log.info("reusing %s", path)
        return path
    config = run.config
    sections = plan.training_sections
    with SectionStack(run.brain) as stack:
        data = [
            load_section_data(
                stack,
                sec,
                config.output_spacing_um,
                area_id=run.area.id,
                radius_mm=config.roi_radius_mm,
                cache_mb=run.cache_mb,
            )
            for sec in sections
        ]
        seed = model_seed(run.seed, run.area.id, sections, run.arch, "gsm")
        return _train_and_save(run, data, config, seed, path, {"sections": list(sections)})


def run_gsm(run: LSMRun, predict: bool = True) -> dict:
    """Train the area's GSM and predict the chain's sections within the chain's ROIs."""
    plan = chain_plan(run)
    path = train_gsm(run, plan)
    predictions = []
    if predict:
        net = load_model(path, run.device)[0]
        with SectionStack(run.brain) as stack:
            predictions = predict_sections(
                stack,
                plan,
                run.area,
                dict.fromkeys(range(len(plan.intervals)), net),
                plan.sections,
                run.out_dir,
                source_name("gsm", run.arch),
                tile_px=run.tile_px,
                batch_size=run.batch_size,
                overwrite=run.overwrite,
                cache_mb=run.cache_mb,
                progress=run.progress,
                model_files=dict.fromkeys(range(len(plan.intervals)), path),
            )
    return {"plan": plan, "models": [path], "predictions": predictions}


def predict_chain(run: LSMRun, kind: str = "lsm") -> list[Path]:
    """Predict the whole extent with already trained models (the chain's LSMs, or the GSM)."""
    plan = read_plan(run.out_dir, run.area) if plan_path(run.out_dir, run.area).is_file() else None
    plan = plan or chain_plan(run)
    if kind == "lsm":
        files = {
            i: model_path(run.out_dir, run.area, "lsm", run.arch, iv)
            for i, iv in enumerate(plan.intervals)
        }
    else:
        gsm = model_path(run.out_dir, run.area, "gsm", run.arch)
        files = dict.fromkeys(range(len(plan.intervals)), gsm)
    nets = {i: load_model(p, run.device)[0] for i, p in files.items()}
    with SectionStack(run.brain) as stack:
        return predict_sections(
            stack,
            plan,
            run.area,
            nets,
            plan.sections,
            run.out_dir,
            source_name(kind, run.arch),
            tile_px=run.tile_px,
            batch_size=run.batch_size,
            overwrite=run.overwrite,
            cache_mb=run.cache_mb,
            progress=run.progress,
            model_files=files,
        )


def parse_sections(text: str) -> tuple[int, int]:
    """``"s,t"`` -> (s, t)."""
    try:
        values = [int(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        values = []
    if len(values) != 2:
        raise CortexgraphError(
            f"--sections {text!r}: give two section numbers", fix="e.g. --sections 511,751"
        )
    return values[0], values[1]


def resolve_area(brain: Brain, key: str | int) -> Area:
    """An area of the brain's cohort by name or id."""
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort folder, so there is no area table",
            file=brain.root,
            fix="keep brains inside a cohort (docs/data-format.md)",
        )
    return brain.cohort.areas.resolve(key)


def with_iterations(config: LSMConfig, iterations: int) -> LSMConfig:
    """``config`` with ``iterations`` and the milestones scaled to them."""
    return replace(config, iterations=iterations, lr_milestones=scaled_milestones(iterations))


# --------------------------------------------------------------------------------------------------
# evaluation


def truth_labels_dir(brain: Brain) -> Path | None:
    """The phantom's full ground truth ``<cohort>/ground_truth/<brain>/labels`` (None if absent)."""
    if brain.cohort is None:
        return None
    folder = brain.cohort.root / "ground_truth" / brain.id / "labels"
    return folder if folder.is_dir() else None


def available_sources(out_dir: Path, area: Area) -> list[str]:
    """Sources (``lsm-ms``, ``gsm-hr``...) with per-area predictions for ``area``."""
    from cortexgraph.lsm.evaluate import SOURCE_ORDER

    folder = area_dir(out_dir, area)
    found = [s for s in SOURCE_ORDER if (folder / s / "pred").is_dir()]
    return found


def evaluate_area(
    brain: Brain,
    area: Area,
    out_dir: Path | None = None,
    sources: Sequence[str] | None = None,
    truth_dir: Path | None | str = "auto",
) -> list[dict]:
    """Score an area's predictions: the seeds' protocol and, for a phantom, the full ground truth.

    For every source (default: all with predictions) and every predicted section of the chain:
    F1 of the area against the annotation inside the ROI (annotated sections), against the full
    truth inside the ROI and on the whole section (:func:`~cortexgraph.lsm.evaluate.
    evaluate_prediction`).

    Writes ``lsm/<area>/<source>/metrics.tsv`` (one row per section, columns
    :data:`~cortexgraph.lsm.evaluate.METRIC_COLUMNS`) and ``metrics.json`` (the summary).

    Returns
    -------
    One summary per source: ``area``, ``source``, ``test_f1`` (left-out annotated sections),
    ``truth_f1`` (truth inside the ROI, every section not trained on), ``truth_section_f1`` and
    their statistics.
    """
    from cortexgraph.lsm.evaluate import METRIC_COLUMNS, evaluate_prediction, summarize
    from cortexgraph.outputs import write_text_atomic

    out_dir = Path(out_dir) if out_dir is not None else brain.derivatives
    plan = read_plan(out_dir, area)
    if truth_dir == "auto":
        truth_dir = truth_labels_dir(brain)
    sources = list(sources) if sources else available_sources(out_dir, area)
    if not sources:
        raise CortexgraphError(
            f"no predictions of area {area.name}",
            file=area_dir(out_dir, area),
            fix="run `cortexgraph lsm chain` / `lsm gsm` first",
        )
    summaries = []
    with SectionStack(brain) as stack:
        annotations: dict[tuple[int, float], np.ndarray] = {}
        for source in sources:
            rows = []
            for section in plan.sections:
                path = prediction_path(out_dir, area, source, section)
                if not path.is_file():
                    continue
                with Raster(path) as raster:
                    pred = raster.read_level(0)
                    spacing = raster.spacing_um
                annotation = None
                if section in plan.annotated:
                    key = (section, spacing)
                    if key not in annotations:
                        annotations[key] = stack.annotation(section, spacing)
                    annotation = annotations[key]
                truth = None
                if truth_dir is not None and (Path(truth_dir) / path.name).is_file():
                    with Raster(Path(truth_dir) / path.name) as raster:
                        truth = raster.read_at_spacing(spacing)
                    if truth.shape != pred.shape:
                        truth = None
                index = plan.interval_of(section)
                s, t = plan.intervals[index]
                scores = evaluate_prediction(pred, area.id, annotation, truth)
                rows.append(
                    {"section": section, "role": plan.role(section), "interval": f"{s}-{t}"}
                    | scores
                )
            if not rows:
                continue
            test = [r["f1_annotation"] for r in rows if r["role"] == "test"]
            truth_f1 = [r["f1_truth_roi"] for r in rows if r["role"] != "train"]
            truth_section = [r["f1_truth_section"] for r in rows if r["role"] != "train"]
            summary = {
                "brain": brain.id,
                "area": area.name,
                "area_id": area.id,
                "source": source,
                "sections": len(rows),
                "test_sections": [r["section"] for r in rows if r["role"] == "test"],
                "test_f1": test,
                "truth_f1": truth_f1,
                "truth_section_f1": truth_section,
                "test": summarize(test),
                "truth_roi": summarize(truth_f1),
                "truth_section": summarize(truth_section),
                "train_f1_annotation": summarize(
                    [r["f1_annotation"] for r in rows if r["role"] == "train"]
                ),
            }
            folder = area_dir(out_dir, area) / source
            lines = ["\t".join(METRIC_COLUMNS)]
            for row in rows:
                lines.append("\t".join(_fmt(row[c]) for c in METRIC_COLUMNS))
            write_text_atomic(folder / "metrics.tsv", "\n".join(lines) + "\n")
            write_json_atomic(folder / "metrics.json", summary)
            summaries.append(summary)
    return summaries


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.4f}"
    return str(value)


def evaluate_brain(
    brain: Brain,
    areas: Sequence[Area],
    out_dir: Path | None = None,
    sources: Sequence[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Evaluate several areas and pool them into the comparison table.

    Writes ``lsm/evaluation/table.tsv``, ``table.md`` and ``summary.json`` (per area and source).
    Returns ``(summaries, table_rows)``.
    """
    from cortexgraph.lsm.evaluate import comparison_table, format_table
    from cortexgraph.outputs import write_text_atomic

    out_dir = Path(out_dir) if out_dir is not None else brain.derivatives
    summaries = []
    for area in areas:
        summaries += evaluate_area(brain, area, out_dir, sources)
    rows = comparison_table(summaries)
    folder = Path(out_dir) / "lsm" / "evaluation"
    columns = [
        "model",
        "source",
        "areas",
        "n",
        "median",
        "mean",
        "std",
        "truth_n",
        "truth_median",
        "truth_mean",
    ]
    lines = ["\t".join(columns)] + ["\t".join(_fmt(r[c]) for c in columns) for r in rows]
    write_text_atomic(folder / "table.tsv", "\n".join(lines) + "\n")
    write_text_atomic(folder / "table.md", format_table(rows))
    write_json_atomic(folder / "summary.json", {"summaries": summaries, "table": rows})
    return summaries, rows
