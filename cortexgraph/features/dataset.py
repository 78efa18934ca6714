"""The patch data set of the encoder: centres, labels and splits of a cohort, read lazily.

Method (Schiffer, PhD thesis, Univ. Düsseldorf, Sects. 6.1.2 "Dataset preparation" and 6.1.3
"Data augmentation"):

* patch centres lie every ``step_mm`` (1 mm) along the morphological skeleton of each annotated
  region (:func:`cortexgraph.features.sampling.centres_from_annotation`, on the label image at its
  stored spacing); the label of a patch is the area of its region;
* the transfer brain (default B07) is held out entirely: its annotated sections give the *transfer*
  patches; of every other brain, the annotated sections sorted by number are split with every fifth
  (the 5th, 10th, ...) a *test* section and the rest *train* sections
  (:func:`~cortexgraph.features.sampling.split_sections`, per brain);
* training patches are resampled with replacement to ``samples_per_area`` per area, redrawn every
  epoch from that epoch's seed (the thesis does not say whether the draw is fixed; our choice); test and
  transfer patches are not resampled;
* a training patch is augmented when it is read (:mod:`cortexgraph.features.augment`: translation,
  rotation, mirroring by the read window; intensity and blur / sharpen on the pixels), evaluation
  patches are not.

Reading is lazy: :class:`PatchReader` reads, per section, one block of the image level that the
patch spacing needs (only the HDF5 chunks under the section's patch centres) and keeps for every
patch centre a small window that holds all its augmented versions (any rotation, the largest
translation), as long as the windows of the whole set fit in ``cache_mb``; otherwise every batch is
read again from the files (the thesis's regime, about 1 TB per epoch, thesis Table 6.1).  Pixels are scaled to [0, 1] by
``value / 255``.

Reading overlaps training: :func:`iterate_batches` reads the batches of an epoch (planned in the
training process: rows and augmentation of every batch) in ``workers`` DataLoader worker processes,
``prefetch`` batches ahead of the model, and yields them in plan order, so the result does not
depend on the number of workers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.roles import annotated_sections, split_sections
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError
from cortexgraph.features.augment import (
    AugmentationConfig,
    AugmentationParams,
    apply_photometric_batch,
    sample_augmentation_params,
)
from cortexgraph.features.patches import (
    IMAGE_FILL,
    patch_geometry,
    read_patches,
    read_windows,
    sample_patches,
    window_px_for,
)
from cortexgraph.features.presets import EncoderPreset
from cortexgraph.features.sampling import balanced_resample, centres_from_annotation
from cortexgraph.resources import usable_cores

if TYPE_CHECKING:
    from torch.utils.data import Dataset

log = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "PatchTable",
    "annotated_sections",
    "section_split",
    "build_patch_table",
    "PatchReader",
    "epoch_indices",
    "BatchPlan",
    "iterate_batches",
    "default_loader_workers",
]

SPLITS = ("train", "test", "transfer")


@dataclass
class PatchTable:
    """Patch centres of a cohort, one row per patch.

    Attributes
    ----------
    brains : brain ids; ``brain`` indexes this list.
    brain : (N,) int64 brain index.
    section : (N,) int64 section number.
    centre_mm : (N, 2) float64 ``(x_mm, y_mm)`` in the raw section frame.
    area_id : (N,) int64 area id.
    label : (N,) int64 class index (``AreaTable.class_index``).
    split : (N,) int8 index into :data:`SPLITS`.
    """

    brains: list[str]
    brain: np.ndarray
    section: np.ndarray
    centre_mm: np.ndarray
    area_id: np.ndarray
    label: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.brain)

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split (``train``, ``test`` or ``transfer``)."""
        return np.flatnonzero(self.split == SPLITS.index(split))

    def counts(self) -> dict[str, int]:
        return {name: int((self.split == k).sum()) for k, name in enumerate(SPLITS)}

    def write_tsv(self, path) -> None:
        """``brain section x_mm y_mm area_id label split`` (one row per patch)."""
        from cortexgraph.data.manifest import format_tsv
        from cortexgraph.outputs import write_text_atomic

        rows = zip(
            [self.brains[b] for b in self.brain.tolist()],
            self.section.tolist(),
            np.round(self.centre_mm[:, 0], 4).tolist(),
            np.round(self.centre_mm[:, 1], 4).tolist(),
            self.area_id.tolist(),
            self.label.tolist(),
            [SPLITS[s] for s in self.split.tolist()],
            strict=True,
        )
        columns = ("brain", "section", "x_mm", "y_mm", "area_id", "label", "split")
        write_text_atomic(path, format_tsv(columns, rows))


def section_split(
    annotated_sections, every: int = 5, offset: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(train_sections, test_sections) of one brain: every ``every``-th annotated section is a test
    section (``offset`` = position in each run of ``every``, 4 = the 5th, 10th, ...)."""
    return split_sections(annotated_sections, every=every, offset=offset)


def build_patch_table(
    cohort: Cohort,
    preset: EncoderPreset,
    *,
    brains: list[str] | None = None,
    progress=None,
) -> PatchTable:
    """Centres, labels and splits of every annotated section of the cohort's brains.

    Parameters
    ----------
    cohort : the cohort.
    preset : gives ``step_mm``, the split (``test_every``, ``test_offset``) and the transfer brain.
    brains : brain ids (default: all of the cohort).
    progress : optional callable ``(done, total)`` over brains.

    Returns
    -------
    :class:`PatchTable`.  Annotated sections without an image, and excluded sections, are skipped.
    """
    brain_ids = list(cohort.brain_ids if brains is None else brains)
    areas = cohort.areas
    rows: list[tuple[np.ndarray, ...]] = []
    for b, brain_id in enumerate(brain_ids):
        brain = cohort.brain(brain_id)
        stack = SectionStack(brain)
        annotated = annotated_sections(brain, stack)
        if brain_id == preset.transfer_brain:
            split_of = dict.fromkeys(annotated, SPLITS.index("transfer"))
        else:
            train, test = section_split(annotated, preset.test_every, preset.test_offset)
            split_of = {int(s): SPLITS.index("train") for s in train}
            split_of.update({int(s): SPLITS.index("test") for s in test})
        for s in annotated:
            label_image = stack.annotation(s)  # at the brain's annotation spacing
            centres, ids = centres_from_annotation(
                label_image, brain.spacing_of("annotation"), preset.step_mm
            )
            if len(ids) == 0:
                continue
            rows.append(
                (
                    np.full(len(ids), b, dtype=np.int64),
                    np.full(len(ids), s, dtype=np.int64),
                    centres,
                    ids,
                    np.full(len(ids), split_of[s], dtype=np.int8),
                )
            )
        stack.close()
        if progress is not None:
            progress(b + 1, len(brain_ids))
    if not rows:
        raise CortexgraphError(
            "no annotated patch centres in the cohort",
            file=str(cohort.root),
            fix="annotate sections (annotation or contours column of sections.tsv)",
        )
    brain_idx, section, centre, area_id, split = (
        np.concatenate(c) for c in zip(*rows, strict=True)
    )
    label = areas.class_index(area_id)
    known = label >= 0
    if not known.all():
        log.warning("%d patch centres have area ids missing from the area table", (~known).sum())
    return PatchTable(
        brains=brain_ids,
        brain=brain_idx[known],
        section=section[known],
        centre_mm=centre[known],
        area_id=area_id[known],
        label=label[known],
        split=split[known],
    )


def epoch_indices(
    table: PatchTable, preset: EncoderPreset, seed: int, epoch: int, stream: int = 0
) -> np.ndarray:
    """Class-balanced training indices of one epoch: ``samples_per_area`` draws per area present in
    the training split, with replacement, shuffled; redrawn from ``(seed, stream, epoch)``."""
    train = table.indices("train")
    rng = np.random.default_rng([seed, stream, epoch, 1])
    picks = balanced_resample(table.label[train], preset.samples_per_area, rng)
    return train[picks]


class PatchReader:
    """Reads (augmented) patches of a :class:`PatchTable` as float32 arrays in [0, 1].

    Parameters
    ----------
    cohort : the cohort the table was built from.
    table : the patch table.
    preset : patch size and spacing, largest translation.
    cache_mb : keep per-centre windows in memory when all of them fit in this budget.
    augmentation : augmentation ranges (default: the thesis's, Sect. 6.1.3).
    """

    def __init__(
        self,
        cohort: Cohort,
        table: PatchTable,
        preset: EncoderPreset,
        *,
        cache_mb: float = 512.0,
        augmentation: AugmentationConfig | None = None,
    ) -> None:
        self.cohort = cohort
        self.table = table
        self.preset = preset
        self.augmentation = augmentation or AugmentationConfig(
            max_translation_um=preset.max_translation_um
        )
        self.stacks = {b: SectionStack(cohort.brain(b)) for b in table.brains}
        self._geometry: dict[tuple[int, int], object] = {}
        self.cache_mb = float(cache_mb)
        self._windows: np.ndarray | None = None
        self._origins: np.ndarray | None = None
        self._cached = np.zeros(len(table), dtype=bool)
        self.seconds_reading = 0.0
        self.seconds_sampling = 0.0
        self._plan_cache()

    # -- geometry and cache ------------------------------------------------------------------
    def geometry(self, brain: int, section: int):
        key = (int(brain), int(section))
        if key not in self._geometry:
            raster = self.raster(brain, section)
            self._geometry[key] = patch_geometry(
                raster, self.preset.patch_px, self.preset.spacing_um
            )
        return self._geometry[key]

    def raster(self, brain: int, section: int):
        return self.stacks[self.table.brains[int(brain)]].raster(int(section), "image")

    def _plan_cache(self) -> None:
        """Cache per-centre windows when they fit in ``cache_mb`` (one level spacing for all)."""
        self._window_px: int | None = None
        if len(self.table) == 0 or self.cache_mb <= 0:
            return
        pairs = set(zip(self.table.brain.tolist(), self.table.section.tolist(), strict=True))
        geometries = [self.geometry(b, s) for b, s in sorted(pairs)]
        if len({(g.level_spacing_um, g.smooth) for g in geometries}) != 1:
            log.info("sections with different level spacings: windows are not cached")
            return
        first_b, first_s = sorted(pairs)[0]
        geometry = geometries[0]
        dtype = (
            np.dtype(np.float32)
            if geometry.smooth
            else np.dtype(self.raster(first_b, first_s).dataset(geometry.level).dtype)
        )
        window_px = window_px_for(geometry, self.augmentation.max_translation_um)
        need_mb = len(self.table) * window_px**2 * dtype.itemsize / 2**20
        if need_mb > self.cache_mb:
            log.info("patch windows need %.0f MB > %.0f MB: read per batch", need_mb, self.cache_mb)
            return
        self._window_px = window_px
        self._windows = np.empty((len(self.table), window_px, window_px), dtype=dtype)
        self._origins = np.zeros((len(self.table), 2), dtype=np.int64)

    @property
    def caches_windows(self) -> bool:
        return self._window_px is not None

    def _window_cache(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(window side px, windows, origins)`` of the window cache (while :attr:`caches_windows`)."""
        if self._window_px is None or self._windows is None or self._origins is None:
            raise RuntimeError("the patch windows are not cached")
        return self._window_px, self._windows, self._origins

    def _fill_cache(self, indices: np.ndarray) -> None:
        window_px, windows_cache, origins_cache = self._window_cache()
        need = indices[~self._cached[indices]]
        if len(need) == 0:
            return
        start = time.perf_counter()
        need = np.unique(need)
        keys = _section_keys(self.table, need)
        for key in np.unique(keys):
            idx = need[keys == key]
            b, s = int(self.table.brain[idx[0]]), int(self.table.section[idx[0]])
            windows, origin = read_windows(
                self.raster(b, s), self.table.centre_mm[idx], self.geometry(b, s), window_px
            )
            windows_cache[idx] = windows
            origins_cache[idx] = origin
            self._cached[idx] = True
        self.seconds_reading += time.perf_counter() - start

    def prefetch(self, indices: np.ndarray | None = None) -> None:
        """Read the windows of ``indices`` (default: all rows) now, section by section."""
        if self.caches_windows:
            self._fill_cache(np.arange(len(self.table)) if indices is None else indices)

    # -- reading ------------------------------------------------------------------------------
    def read(
        self,
        indices: np.ndarray,
        params: list[AugmentationParams] | None = None,
    ) -> np.ndarray:
        """Patches of table rows ``indices`` as float32 ``(B, patch_px, patch_px)`` in [0, 1].

        ``params`` (one per patch) augments them; None reads them as they are (evaluation).
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if params is not None and len(params) != len(indices):
            raise ValueError("one AugmentationParams per patch expected")
        centres = self.table.centre_mm[indices].copy()
        angles = mirrored = None
        if params is not None:
            shift = np.array([p.translation_um for p in params], dtype=np.float64) / 1000.0
            centres = centres + shift
            angles = np.array([p.angle_rad for p in params], dtype=np.float64)
            mirrored = np.array([p.mirrored for p in params], dtype=bool)
        n = self.preset.patch_px
        out = np.empty((len(indices), n, n), dtype=np.float32)
        if self.caches_windows:
            self._fill_cache(indices)
            _, windows_cache, origins_cache = self._window_cache()
            start = time.perf_counter()
            geometry = self.geometry(self.table.brain[indices[0]], self.table.section[indices[0]])
            patches = sample_patches(
                windows_cache,
                indices,
                origins_cache[indices],
                geometry.centres_px(centres),
                geometry,
                angles_rad=angles,
                mirrored=mirrored,
                fill=IMAGE_FILL,
            )
            out[:] = patches
            self.seconds_sampling += time.perf_counter() - start
        else:
            start = time.perf_counter()
            keys = _section_keys(self.table, indices)
            for key in np.unique(keys):
                pos = np.flatnonzero(keys == key)
                b, s = divmod(int(key), _KEY_BASE)
                out[pos] = read_patches(
                    self.raster(b, s),
                    centres[pos],
                    n,
                    self.preset.spacing_um,
                    angles_rad=None if angles is None else angles[pos],
                    mirrored=None if mirrored is None else mirrored[pos],
                )
            self.seconds_reading += time.perf_counter() - start
        out *= np.float32(1.0 / 255.0)
        if params is not None:
            out = apply_photometric_batch(out, params)
        return out

    def augmented_batch(
        self, indices: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[AugmentationParams]]:
        """Draw one augmentation per patch from ``rng`` and read the patches."""
        params = [sample_augmentation_params(rng, self.augmentation) for _ in range(len(indices))]
        return self.read(indices, params), params

    def close(self) -> None:
        for stack in self.stacks.values():
            stack.close()

    def reopen(self) -> None:
        """Open the image files again, in this process (a DataLoader worker forked from the
        training process must not share HDF5 handles with it). The parent's handles are left
        alone; cached windows and geometries stay valid."""
        self.stacks = {b: SectionStack(self.cohort.brain(b)) for b in self.table.brains}


_KEY_BASE = 10_000_000  # section numbers are below this


def _section_keys(table: PatchTable, indices: np.ndarray) -> np.ndarray:
    """One integer per (brain, section) pair of the rows ``indices``."""
    return table.brain[indices] * _KEY_BASE + table.section[indices]


#: One batch of an epoch: table rows and their augmentation (None: read as they are).
BatchPlan = list[tuple[np.ndarray, "list[AugmentationParams] | None"]]


def default_loader_workers() -> int:
    """DataLoader workers for patch reading when none are asked for: 0 with 2 CPUs or fewer (a
    reader process would compete with training for the cores), else ``min(4, cpus - 2)``."""
    return max(0, min(4, usable_cores() - 2))


class _PlannedBatches:
    """Map-style data set over a batch plan: item ``k`` is batch ``k`` read by ``reader``."""

    def __init__(self, reader: PatchReader, plan: BatchPlan) -> None:
        self.reader = reader
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int):
        import torch

        indices, params = self.plan[k]
        return torch.from_numpy(self.reader.read(indices, params))


def _reopen_reader(worker_id: int) -> None:
    import torch

    info = torch.utils.data.get_worker_info()
    assert info is not None  # a worker_init_fn runs inside a DataLoader worker
    cast(_PlannedBatches, info.dataset).reader.reopen()
    torch.set_num_threads(1)


def iterate_batches(reader: PatchReader, plan: BatchPlan, workers: int = 0, prefetch: int = 2):
    """Yield the patches of every batch of ``plan`` in order, as float32 arrays (B, px, px).

    Parameters
    ----------
    reader : reads (and augments) the patches.
    plan : ``[(rows, params or None), ...]``, one entry per batch.
    workers : DataLoader worker processes that read ahead (0: read in this process, one batch at a
        time). Workers are forked, so they share the cached windows of ``reader`` without copying
        them, and open the image files again (:meth:`PatchReader.reopen`).
    prefetch : batches read ahead per worker.

    The arrays are the same for any number of workers (the plan fixes rows and augmentation).
    """
    if workers <= 0 or len(plan) <= 1:
        for indices, params in plan:
            yield reader.read(indices, params)
        return
    import multiprocessing

    from torch.utils.data import DataLoader

    # a map-style data set by duck typing (__len__, __getitem__): no torch import at module level
    loader: DataLoader[Any] = DataLoader(
        cast("Dataset[Any]", _PlannedBatches(reader, plan)),
        batch_size=None,
        shuffle=False,
        num_workers=int(min(workers, len(plan))),
        prefetch_factor=int(max(1, prefetch)),
        worker_init_fn=_reopen_reader,
        multiprocessing_context=multiprocessing.get_context("fork"),
    )
    for batch in loader:
        yield batch.numpy()
