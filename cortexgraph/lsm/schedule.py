"""Learning-rate schedule of LSM training (Schiffer et al. 2021, NeuroImage, Sect. 2.5;
Schiffer, PhD thesis, Sect. 5.1.4).

SGD with Nesterov momentum 0.9 for 3000 iterations; the learning rate starts at 0.04 (0.01 per GPU x 4
GPUs with 16 patches each, linear scaling rule, no warm-up) and is halved after 1000, 1400, 1800, 2200
and 2600 iterations. Shorter runs (small presets) scale the milestones by ``iterations / 3000``; other
batch sizes scale the base rate linearly (0.01 per 16 patches).
"""

from __future__ import annotations

from collections.abc import Sequence

SEED_ITERATIONS = 3000
SEED_MILESTONES = (1000, 1400, 1800, 2200, 2600)
SEED_BASE_LR = 0.04
SEED_BATCH_SIZE = 64
SEED_LR_FACTOR = 0.5

MAX_INTERVAL_MM = 2.4
"""Longest interval between the two training sections of a local model (mm), the default limit of
the chain planner. The LSM paper trains its local models on sections about 2.4 mm apart (120
sections of 20 um in the BigBrain and B01; 48 sections of 50 um in the Allen brain, the same
physical distance), and its annotation workflow encloses about 100 sections (2 mm) per model; halving
the interval to 1.2 mm improved the models further. Nothing longer was evaluated: a local model is
only as good as its two sections are similar, and with sparse annotations the planner would
otherwise chain models over 7-11 mm (docs/lsm.md)."""


def scaled_milestones(
    iterations: int,
    reference_iterations: int = SEED_ITERATIONS,
    reference: Sequence[int] = SEED_MILESTONES,
) -> tuple[int, ...]:
    """The published milestones scaled to a run of ``iterations`` (``round(m * iterations / 3000)``)."""
    return tuple(max(1, round(m * iterations / reference_iterations)) for m in reference)


def scaled_base_lr(
    batch_size: int, reference_lr: float = SEED_BASE_LR, reference_batch: int = SEED_BATCH_SIZE
) -> float:
    """Linear scaling rule: 0.04 for a batch of 64, i.e. 0.01 per 16 patches."""
    return reference_lr * batch_size / reference_batch


def step_lr(
    iteration: int,
    base_lr: float = SEED_BASE_LR,
    milestones: Sequence[int] = SEED_MILESTONES,
    factor: float = SEED_LR_FACTOR,
) -> float:
    """Learning rate at (0-based) ``iteration``: ``base_lr * factor ** #{m <= iteration}``.

    With the published values: 0.04 for iterations 0-999, 0.02 from 1000, ..., 0.00125 from 2600.
    """
    passed = sum(1 for m in milestones if iteration >= m)
    return base_lr * factor**passed
