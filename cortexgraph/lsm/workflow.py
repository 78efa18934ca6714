"""The computing core of the LSM workflow (Schiffer et al. 2021, NeuroImage, Sects. 2.3-2.7;
Schiffer, PhD thesis, chapter 5): plans, training, prediction.

A neuroanatomist annotates an area on a few sections; one model per interval ``[s, t]`` between two
annotated sections labels every section in between (thesis Sect. 5.1.1 and Fig. 5.1, NeuroImage paper Sect. 2.3):

1. :func:`plan_chain`: the area's annotated sections alternate between training and test sections
   (the publications train on every 120th section and test on the annotated section in the middle,
   thesis Sect. 5.2 and Fig. 5.6); consecutive training sections form the intervals of a chain of models that covers
   the area's extent. Sections beyond the first / last training section use the closest model
   (NeuroImage paper Sect. 2.3). :func:`plan_single_interval` is the chain of one given interval. An interval
   longer than :data:`MAX_INTERVAL_MM` is refused (or, when allowed, planned with a warning), and
   :func:`suggest_annotations` names the sections to annotate so that none is.
2. :func:`train_model`: class-balanced patches from the training sections (read lazily from the
   section rasters), class-weighted cross-entropy, SGD with the published schedule.
3. :func:`predict_section`: tiled prediction over the prediction ROI of eq. 5.65
   (:func:`section_roi`: the two training ROIs enlarged by 1.05 and transformed onto the section),
   with orientation normalisation.
4. The global model (GSM, NeuroImage paper Sect. 2.7) of an area is trained on all training sections of its chain and
   predicts the same sections within the same ROIs, so the two are scored on identical pixels.

This module takes arrays, plans and loaded section data and returns arrays, plans and models; the
only files it touches are the model files of :func:`save_model` / :func:`load_model` and the ROI files
of :func:`save_rois` / :func:`load_rois`. Which files exist, under which stage records, and when they
are reused is decided in :mod:`cortexgraph.lsm.stages` (layout: :mod:`cortexgraph.lsm.layout`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.lsm.data import (
    OUTSIDE_ROI,
    SectionData,
    area_sections,
    load_section_data,  # noqa: F401 - part of this module's interface (benchmarks import it here)
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
from cortexgraph.lsm.schedule import MAX_INTERVAL_MM, scaled_milestones
from cortexgraph.outputs import atomic_path

log = logging.getLogger(__name__)

PRESETS = ("auto", "full", "small", "phantom", "tiny")

"""Model size presets of :func:`make_config`."""
KINDS = ("lsm", "gsm")
"""Model kinds: a chain of local models, or one global model per area."""
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
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown preset {preset!r}", fix=f"use one of {', '.join(PRESETS)} (--preset)"
        )
    if preset == "auto":
        preset, extra = preset_for_spacing(image_spacing_um)
    else:
        extra = {"spacing_um": float(image_spacing_um)} if preset in ("phantom", "tiny") else {}
    extra.update(overrides)
    if iterations is not None:
        extra["iterations"] = int(iterations)
        extra["lr_milestones"] = scaled_milestones(int(iterations))
    try:
        config = lsm_config(preset, arch, **extra)
    except (TypeError, ValueError) as exc:  # an override that is not a field, or out of range
        raise ParameterError(f"bad model configuration: {exc}", fix="check the overrides") from None
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
    max_interval: int | None = None,
    allow_long: bool = False,
) -> ChainPlan:
    """Plan the chain of models of one area.

    Parameters
    ----------
    area_annotated : annotated sections whose annotation contains the area.
    available : sections that can be predicted (present, not excluded).
    area_id : the area (stored in the plan).
    step : every ``step``-th annotated section of the area is a training section (first and last
        always); the ones in between are test sections. ``step=2`` is the published protocol (train on
        every 120th section, test on the annotated 60th between, thesis Sect. 5.2, Fig. 5.6).
    brain_annotated : all annotated sections of the brain. By default the extent reaches from the
        area's first annotated section back to (excluding) the brain's previous annotated section
        that does *not* show the area, or to the first available section when there is none; the
        same forward. These end sections use the closest model (NeuroImage paper Sect. 2.3).
    extent : explicit ``(first, last)`` range of sections to predict (inclusive).
    max_interval : longest allowed interval ``t - s`` in section numbers (``None``: no limit); the
        callers derive it from :data:`MAX_INTERVAL_MM` and the section thickness.
    allow_long : plan longer intervals anyway, with a warning; the plan's ``notes`` list them
        (``long_intervals``) and the sections to annotate (``suggested_sections``).

    Returns
    -------
    :class:`ChainPlan`. Raises CortexgraphError when the area has fewer than two annotated sections,
    and LongIntervalError (naming the intervals and the sections to annotate next) when an
    interval is longer than ``max_interval`` and ``allow_long`` is False.
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
    if not sections:
        raise CortexgraphError(
            f"the extent {lo}..{hi} holds no available section to predict",
            fix="give an extent that overlaps the digitized sections (--extent first,last)",
        )
    plan = ChainPlan(
        area_id=int(area_id),
        annotated=tuple(annotated),
        intervals=intervals,
        tests=tests,
        sections=sections,
        extent=(lo, hi),
        step=int(step),
    )
    return _check_intervals(plan, available, max_interval, allow_long)


class LongIntervalError(ParameterError):
    """A planned interval is longer than the limit (exit status 2)."""


def long_intervals(plan: ChainPlan, max_interval: int) -> list[tuple[int, int]]:
    """The intervals of ``plan`` longer than ``max_interval`` sections."""
    return [(s, t) for s, t in plan.intervals if t - s > max_interval]


def suggest_annotations(
    annotated: Sequence[int],
    available: Sequence[int],
    max_interval: int,
    *,
    step: int = 2,
    single: bool = False,
) -> list[int]:
    """Sections to annotate next so that no interval of the re-planned chain is too long.

    First every gap between consecutive annotated sections inside a long interval that is wider
    than ``max_interval / step`` gets the fewest available sections that leave no step wider than
    that (a training interval spans ``step`` gaps); then, while the chain planned from the annotated sections plus the suggestions still has
    a long interval (a gap without a digitized section where one was wanted), its widest gap gets
    the available section nearest its middle. With ``single=True`` (one given interval ``[s, t]``,
    :func:`plan_single_interval`) the interval is split into models of at most ``max_interval``.

    Returns the suggested section numbers, sorted (empty when no available section can shorten the
    long intervals: the gaps hold no digitized section).
    """
    have = sorted({int(a) for a in annotated})
    free = sorted({int(a) for a in available} - set(have))
    if not have or max_interval < 1:
        return []
    suggested: set[int] = set()

    def nearest(lo: int, hi: int, target: float) -> int | None:
        inside = [x for x in free if lo < x < hi and x not in suggested]
        return min(inside, key=lambda x: (abs(x - target), x)) if inside else None

    def split(lo: int, hi: int, widest: int) -> None:
        """Sections in (lo, hi) so that no step between them is wider than ``widest``: walking
        from ``lo``, the farthest available section within reach each time."""
        at = lo
        while hi - at > widest:
            reach = [x for x in free if at < x < hi and x - at <= widest]
            if not reach:  # no digitized section within reach: the nearest one beyond
                beyond = [x for x in free if at < x < hi]
                if not beyond:
                    return
                reach = beyond[:1]
            at = max(reach)
            suggested.add(at)

    def long_now() -> list[tuple[int, int]]:
        points = sorted(set(have) | suggested)
        indices = list(range(0, len(points), step))
        if indices[-1] != len(points) - 1:
            indices.append(len(points) - 1)
        training = [points[i] for i in indices]
        pairs = zip(training[:-1], training[1:], strict=True)
        return [(a, b) for a, b in pairs if b - a > max_interval]

    if single:
        split(have[0], have[-1], max_interval)
        return sorted(suggested)
    gap_limit = max(1, max_interval // max(step, 1))
    for a, b in long_now():
        inner = [p for p in have if a <= p <= b]
        for lo, hi in zip(inner[:-1], inner[1:], strict=True):
            split(lo, hi, gap_limit)
    for _ in range(len(free) + 1):
        long = long_now()
        if not long:
            break
        added = False
        for a, b in long:
            inner = sorted(p for p in set(have) | suggested if a <= p <= b)
            gaps = sorted(zip(inner[:-1], inner[1:], strict=True), key=lambda g: g[0] - g[1])
            for lo, hi in gaps:
                pick = nearest(lo, hi, (lo + hi) / 2)
                if pick is not None:
                    suggested.add(pick)
                    added = True
                    break
        if not added:
            break
    return sorted(suggested)


def _check_intervals(
    plan: ChainPlan,
    available: Sequence[int],
    max_interval: int | None,
    allow_long: bool,
    single: bool = False,
) -> ChainPlan:
    """Refuse (or, with ``allow_long``, note and warn about) intervals longer than the limit."""
    if max_interval is None:
        return plan
    long = long_intervals(plan, max_interval)
    if not long:
        return plan
    suggestion = suggest_annotations(
        plan.annotated, available, max_interval, step=plan.step, single=single
    )
    listed = ", ".join(f"{s}-{t} ({t - s} sections)" for s, t in long)
    what = (
        f"area {plan.area_id}: {len(long)} interval(s) longer than {max_interval} sections "
        f"(the longest interval a local model is trained on, {MAX_INTERVAL_MM:g} mm by default): "
        f"{listed}"
    )
    advice = (
        f"annotate the area on section(s) {', '.join(str(x) for x in suggestion)} and plan again"
        if suggestion
        else "annotate the area on sections inside these intervals (no digitized section lies "
        "inside the widest gaps)"
    )
    if not allow_long:
        raise LongIntervalError(
            what,
            section=long[0][0],
            fix=f"{advice}; or raise --max-interval-mm, or plan anyway with --allow-long-intervals",
        )
    log.warning("%s; %s", what, advice)
    notes = dict(plan.notes)
    notes["long_intervals"] = [list(p) for p in long]
    notes["max_interval_sections"] = int(max_interval)
    notes["suggested_sections"] = list(suggestion)
    return replace(plan, notes=notes)


def max_interval_sections(max_interval_mm: float | None, thickness_um: float) -> int | None:
    """The interval limit in section numbers for a limit in mm (``None``: no limit)."""
    if max_interval_mm is None:
        return None
    if not (isinstance(max_interval_mm, int | float) and math.isfinite(max_interval_mm)) or (
        max_interval_mm <= 0
    ):
        raise ParameterError(
            f"--max-interval-mm {max_interval_mm!r} is out of range", fix="give a length > 0 mm"
        )
    return max(1, int(math.floor(max_interval_mm * 1000.0 / thickness_um + 1e-6)))


def plan_for_area(
    stack: SectionStack,
    area_id: int,
    *,
    step: int = 2,
    extent: tuple[int, int] | None = None,
    max_interval_mm: float | None = MAX_INTERVAL_MM,
    allow_long: bool = False,
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
        max_interval=max_interval_sections(max_interval_mm, stack.brain.thickness_um),
        allow_long=allow_long,
    )


def plan_single_interval(
    area_annotated: Sequence[int],
    available: Sequence[int],
    interval: tuple[int, int],
    *,
    area_id: int = 0,
    max_interval: int | None = None,
    allow_long: bool = False,
) -> ChainPlan:
    """The chain of one given interval ``(s, t)`` (``cortexgraph lsm train --sections s,t``).

    Parameters
    ----------
    area_annotated : annotated sections whose annotation contains the area (at least those in
        ``[s, t]``).
    available : sections that can be predicted.
    interval : the two training sections; both must show the area.
    max_interval, allow_long : the interval limit, as for :func:`plan_chain`.

    Returns
    -------
    :class:`ChainPlan` with the one interval, the annotated sections strictly inside it as test
    sections and every available section of ``[s, t]`` (both ends included) to predict.
    """
    s, t = sorted(int(v) for v in interval)
    if s == t:
        raise CortexgraphError("the two training sections must differ", section=s)
    annotated = sorted({int(a) for a in area_annotated if s <= int(a) <= t})
    for section in (s, t):
        if section not in annotated:
            raise CortexgraphError(
                f"area {area_id} is not annotated on this section",
                section=section,
                fix="train on sections whose annotation contains the area (`cortexgraph lsm chain` "
                "plans them)",
            )
    plan = ChainPlan(
        area_id=int(area_id),
        annotated=tuple(annotated),
        intervals=((s, t),),
        tests=(tuple(a for a in annotated if s < a < t),),
        sections=tuple(int(u) for u in sorted(available) if s <= int(u) <= t),
        extent=(s, t),
        step=len(annotated) - 1,
    )
    return _check_intervals(plan, available, max_interval, allow_long, single=True)


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
    init_hr: dict | None = None,
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
    init_hr : weights of the high-resolution encoder E_HR to start from (a Siamese distance
        pre-training, as in the NeuroImage paper, Sect. 2.4: :func:`cortexgraph.features.distance_stage.
        lsm_hr_init_state`); the rest of the network starts from random weights.

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
    if init_hr is not None:
        net.hr_encoder.load_state_dict(init_hr)
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


def save_rois(path: Path, rois: Mapping[int, np.ndarray], spacing_um: float) -> Path:
    """Write the training ROIs of a model (section -> bool image at the model's output spacing)
    atomically to an ``.npz`` file (arrays ``s0422``..., and ``spacing_um``)."""
    arrays = {f"s{int(k):04d}": np.asarray(v, dtype=bool) for k, v in rois.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, spacing_um=np.float64(spacing_um), **arrays)
    return Path(path)


def load_rois(path: Path) -> tuple[dict[int, np.ndarray], float]:
    """Inverse of :func:`save_rois`: ``({section: roi}, spacing_um)``."""
    with np.load(path) as data:
        spacing = float(data["spacing_um"])
        rois = {int(k[1:]): data[k].astype(bool) for k in data.files if k != "spacing_um"}
    return rois, spacing


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


def section_roi(
    roi_s: np.ndarray,
    roi_t: np.ndarray,
    phi_s: np.ndarray,
    phi_t: np.ndarray,
    shape: tuple[int, int],
    config: LSMConfig,
) -> np.ndarray:
    """Prediction ROI (eq. 5.65) on a section of the model trained on s and t.

    Parameters
    ----------
    roi_s, roi_t : training ROIs of s and t (bool, at ``config.output_spacing_um``).
    phi_s, phi_t : 3x3 matrices mapping raw mm of s (t) onto the section (:func:`section_transform`).
    shape : (rows, cols) of the section at the output spacing.
    config : gives the spacing, the ROI radius and its enlargement.
    """
    return prediction_roi(
        roi_s,
        roi_t,
        np.asarray(phi_s, dtype=np.float64),
        np.asarray(phi_t, dtype=np.float64),
        config.output_spacing_um,
        shape,
        scale=config.roi_enlarge,
        radius_mm=config.roi_radius_mm,
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
    return section_roi(
        data_s.roi,
        data_t.roi,
        section_transform(stack, data_s.section, section),
        section_transform(stack, data_t.section, section),
        shape,
        config,
    )


def parse_sections(text: str, option: str = "--sections") -> tuple[int, int]:
    """``"s,t"`` -> (s, t); ``option`` names the option in the error message."""
    try:
        values = [int(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0:
        raise CortexgraphError(
            f"{option} {text!r}: give two section numbers", fix=f"e.g. {option} 511,751"
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
