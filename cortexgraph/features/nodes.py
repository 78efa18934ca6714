"""Node features of a brain's graphs: CY (encoder), CO (canonical coordinates), PM (atlas), Y (labels).

Method (graph-pipeline.md sections 6-7; thesis seed L8912-9141).  Every node of a hemisphere's graph
that ``build-graph`` mapped to a point of a section (node arrays ``section``, ``point_mm``, ``valid``;
docs/derivatives.md) gets:

* **CY** (``cy``, float32 (N, D)): the encoder features ``h`` of the patch centred at the node's point,
  read like :meth:`~cortexgraph.data.raster.Raster.read_patch` at the encoder preset's patch size and
  spacing, without augmentation.  Patches are cut in batches: each section's image level is read once
  (:func:`cortexgraph.features.patches.read_patches`) and all its nodes' patches are cut from it.
  Nodes without a valid point get CY by **iterative neighbour averaging** on the graph
  (:func:`fill_from_neighbours`): in each round every unfilled node with at least one filled
  neighbour takes the mean of its filled neighbours, until nothing changes; nodes of a component
  without any measured node take the mean of all measured nodes.  ``cy_measured`` marks the nodes
  with their own patch.
* **CO** (``co``, float32 (N, 3)): the section's canonical coordinate map (``coords`` raster, RAS of the
  reference space in [-1, 1], NaN outside tissue) at the node's point, bilinear over the four
  surrounding pixel centres with NaN pixels left out and the weights renormalised
  (:func:`sample_map_bilinear`).  Nodes without a point, or with four NaN pixels around it, are
  filled from their neighbours like CY.
* **PM** (``pm``, float32 (N, P)): the cohort's probabilistic atlas (trilinear, 0 outside) at the
  reference-space position of the node's CO (``Cohort.from_canonical``); (N, 0) without an atlas.
* **Y** (``y``, int64 (N,)): the class index (``AreaTable.class_index``) of the annotation label image
  pixel under the point (nearest pixel) for valid nodes on annotated sections; -1 elsewhere and on
  unlabelled pixels.
* **train_mask / test_mask**: the annotated sections of the brain sorted by number, every fifth (the
  5th, 10th, ...) a test section -- the same split as the encoder's patches; a labelled node is in
  ``train_mask`` on a training section and in ``test_mask`` on a test section, on every brain.
  Holding out the transfer brain (B07) is the node classifier's job (:mod:`cortexgraph.gnn.data`
  trains on no node of it and evaluates all its labelled nodes), so choosing another transfer
  brain needs no new features.

All arrays are written into ``<brain>/graph/<hemi>.h5`` with
:func:`cortexgraph.meshes.graph.append_node_arrays`; what was measured goes to
``<brain>/qc/features.json``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy import sparse

from cortexgraph.data.atlas import ProbabilisticAtlas
from cortexgraph.data.manifest import Brain, Cohort, find_brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.features.dataset import annotated_sections, section_split
from cortexgraph.features.patches import IMAGE_FILL, read_patches
from cortexgraph.features.presets import EncoderPreset, preset_for_spacing
from cortexgraph.features.train import encode_patches, encoders_folder, load_encoder
from cortexgraph.mapping.nodes import node_arrays_from_table
from cortexgraph.meshes.graph import append_node_arrays
from cortexgraph.outputs import write_json_atomic
from cortexgraph.training.runtime import pick_device

log = logging.getLogger(__name__)

__all__ = [
    "HEMISPHERES",
    "FEATURE_ARRAYS",
    "node_arrays_from_table",
    "read_graph_nodes",
    "fill_from_neighbours",
    "sample_map_bilinear",
    "sample_labels_nearest",
    "node_cy",
    "node_co",
    "node_labels",
    "node_features",
    "compute_node_features",
    "default_encoder_path",
]

HEMISPHERES = ("lh", "rh")
FEATURE_ARRAYS = ("cy", "cy_measured", "co", "pm", "y", "train_mask", "test_mask")


# --------------------------------------------------------------------------------------------------
# graph node arrays
# --------------------------------------------------------------------------------------------------
def read_graph_nodes(path: str | Path) -> tuple[int, np.ndarray, dict[str, np.ndarray]]:
    """(number of nodes, edge_index (2, E), node arrays ``section``, ``point_mm``, ``valid``).

    When the graph file lacks these arrays but ``<hemi>_nodes.tsv`` lies beside it, they are built
    from that table (:func:`node_arrays_from_table`) and marked in the returned dict with
    ``"_from_table": True``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(
            "graph file not found", file=str(path), fix="run `cortexgraph build-graph` first"
        )
    with h5py.File(path, "r") as h5:
        num_nodes = int(h5["pos"].shape[0])
        edge_index = h5["edge_index"][...].astype(np.int64)
        group = h5.get("nodes", {})
        arrays = {
            name: group[name][...] for name in ("section", "point_mm", "valid") if name in group
        }
    if len(arrays) < 3:
        table_path = path.with_name(path.stem + "_nodes.tsv")
        if not table_path.is_file():
            raise DataFormatError(
                "graph has no node -> section mapping (node arrays section, point_mm, valid)",
                file=str(path),
                fix="run `cortexgraph build-graph` again (it writes them)",
            )
        from cortexgraph.mapping.nodes import NodeSectionTable

        arrays = node_arrays_from_table(NodeSectionTable.read(table_path), num_nodes)
        arrays["_from_table"] = True
    arrays["section"] = np.asarray(arrays["section"], dtype=np.int64)
    arrays["point_mm"] = np.asarray(arrays["point_mm"], dtype=np.float64)
    arrays["valid"] = np.asarray(arrays["valid"], dtype=bool)
    return num_nodes, edge_index, arrays


def fill_from_neighbours(
    values: np.ndarray, known: np.ndarray, edge_index: np.ndarray, max_rounds: int | None = None
) -> tuple[np.ndarray, dict]:
    """Iterative neighbour averaging of node values that are unknown.

    In each round, every unknown node with at least one known neighbour gets the mean of its known
    neighbours' values and becomes known; rounds repeat until no node changes (or ``max_rounds``).
    Nodes still unknown (components without any known node) get the mean of the initially known
    values (zeros if none is known).

    Parameters
    ----------
    values : (N, D) or (N,) node values; rows of unknown nodes are ignored.
    known : (N,) bool.
    edge_index : (2, E) int edges (both directions, as in the graph files).
    max_rounds : stop after this many rounds (default: until nothing changes).

    Returns
    -------
    (filled copy of ``values`` (float), info ``{"rounds", "filled_by_neighbours", "filled_by_mean"}``).
    """
    values = np.asarray(values)
    squeeze = values.ndim == 1
    out = np.array(values, dtype=np.float64).reshape(len(values), -1)
    known = np.asarray(known, dtype=bool).copy()
    n = len(out)
    initially = known.copy()
    src, dst = np.asarray(edge_index, dtype=np.int64)
    adjacency = sparse.csr_matrix((np.ones(len(src)), (dst, src)), shape=(n, n))
    rounds = 0
    while not known.all() and (max_rounds is None or rounds < max_rounds):
        weights = adjacency @ known.astype(np.float64)
        ready = (~known) & (weights > 0)
        if not ready.any():
            break
        sums = adjacency[ready] @ np.where(known[:, None], out, 0.0)
        out[ready] = sums / weights[ready, None]
        known[ready] = True
        rounds += 1
    remaining = ~known
    if remaining.any():
        fill = out[initially].mean(axis=0) if initially.any() else np.zeros(out.shape[1])
        out[remaining] = fill
    info = {
        "rounds": rounds,
        "filled_by_neighbours": int((known & ~initially).sum()),
        "filled_by_mean": int(remaining.sum()),
    }
    return (out[:, 0] if squeeze else out), info


def sample_map_bilinear(image: np.ndarray, spacing_um: float, points_mm: np.ndarray) -> np.ndarray:
    """Values of a (rows, cols[, C]) map at section points, bilinear, NaN-aware.

    Pixel ``(i, j)`` is centred at ``((j + 0.5) s, (i + 0.5) s)`` mm / 1000.  The four pixel centres
    around a point are weighted bilinearly; pixels that are NaN or outside the map are left out and
    the remaining weights renormalised; a point with no finite pixel among the four gives NaN.

    Returns
    -------
    (N, C) float64 (C = 1 for a 2D map).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    rows, cols = img.shape[:2]
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    c = pts[:, 0] * 1000.0 / spacing_um - 0.5
    r = pts[:, 1] * 1000.0 / spacing_um - 0.5
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    fr, fc = r - r0, c - c0
    total = np.zeros((len(pts), img.shape[2]))
    weight = np.zeros((len(pts), img.shape[2]))
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols) & np.isfinite(w)
        vals = np.full((len(pts), img.shape[2]), np.nan)
        vals[inside] = img[rr[inside], cc[inside]]
        ok = np.isfinite(vals) & (w[:, None] > 0)
        total += np.where(ok, vals * w[:, None], 0.0)
        weight += np.where(ok, w[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


def sample_labels_nearest(
    label_image: np.ndarray, spacing_um: float, points_mm: np.ndarray, outside: int = 0
) -> np.ndarray:
    """Label of the pixel containing each point (``outside`` beyond the image); int64 (N,)."""
    labels = np.asarray(label_image)
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    j = np.floor(pts[:, 0] * 1000.0 / spacing_um).astype(np.int64)
    i = np.floor(pts[:, 1] * 1000.0 / spacing_um).astype(np.int64)
    inside = (i >= 0) & (i < labels.shape[0]) & (j >= 0) & (j < labels.shape[1])
    out = np.full(len(pts), outside, dtype=np.int64)
    out[inside] = labels[i[inside], j[inside]]
    return out


# --------------------------------------------------------------------------------------------------
# the three kinds of features
# --------------------------------------------------------------------------------------------------
def _groups(section: np.ndarray, mask: np.ndarray) -> dict[int, np.ndarray]:
    idx = np.flatnonzero(mask)
    out: dict[int, np.ndarray] = {}
    if idx.size == 0:
        return out
    order = idx[np.argsort(section[idx], kind="stable")]
    uniq, starts = np.unique(section[order], return_index=True)
    ends = list(starts[1:]) + [len(order)]
    for s, a, e in zip(uniq.tolist(), starts.tolist(), ends, strict=True):
        out[int(s)] = order[a:e]
    return out


def node_cy(
    stack: SectionStack,
    section: np.ndarray,
    point_mm: np.ndarray,
    valid: np.ndarray,
    encoder: torch.nn.Module,
    preset: EncoderPreset,
    *,
    device: torch.device | str = "cpu",
    amp: bool = True,
    progress=None,
    prefetch: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encoder features of the valid nodes' patches, section by section (one read per section).

    With ``prefetch`` the next section's patches are read in a second thread while the current
    ones are encoded (reading is file I/O, HDF5 decompression and patch sampling; encoding is
    torch, which releases the GIL): on two cores the stage takes about the longer of the two
    instead of their sum. The result does not depend on it (same reads, same order).

    Returns
    -------
    (cy float32 (N, D) -- rows of unmeasured nodes are 0, measured bool (N,), info with the patch
    count and the wall-clock and CPU seconds spent reading patches (in the reading thread) and
    encoding them).
    """
    n = len(section)
    dim = int(encoder.feature_dim)
    cy = np.zeros((n, dim), dtype=np.float32)
    measured = np.zeros(n, dtype=bool)
    use = valid & (section >= 0) & np.all(np.isfinite(point_mm), axis=1)
    available = set(stack.sections)
    groups = {s: idx for s, idx in _groups(section, use).items() if s in available}
    skipped = int(use.sum() - sum(len(v) for v in groups.values()))
    read_s = encode_s = read_cpu = encode_cpu = waited_s = 0.0
    done = 0
    total = sum(len(v) for v in groups.values())

    def read(s: int, idx: np.ndarray) -> tuple[np.ndarray, float, float]:
        t0, c0 = time.perf_counter(), time.thread_time()
        raster = stack.raster(s, "image")
        try:
            patches = read_patches(
                raster, point_mm[idx], preset.patch_px, preset.spacing_um, fill=IMAGE_FILL
            )
        finally:
            raster.close()
        x = patches.astype(np.float32) * np.float32(1.0 / 255.0)
        return x, time.perf_counter() - t0, time.thread_time() - c0

    jobs = list(groups.items())
    pool = ThreadPoolExecutor(max_workers=1) if prefetch and len(jobs) > 1 else None
    try:
        pending = pool.submit(read, *jobs[0]) if pool is not None and jobs else None
        for k, (s, idx) in enumerate(jobs):
            t_wait = time.perf_counter()
            if pool is not None:
                x, seconds, cpu = pending.result()
                if k + 1 < len(jobs):  # start the next read before encoding this section
                    pending = pool.submit(read, *jobs[k + 1])
            else:
                x, seconds, cpu = read(s, idx)
            waited_s += time.perf_counter() - t_wait
            read_s += seconds
            read_cpu += cpu
            t1, c1 = time.perf_counter(), time.thread_time()
            cy[idx] = encode_patches(
                encoder, x, batch_size=preset.eval_batch_size, device=device, amp=amp
            )
            measured[idx] = True
            encode_s += time.perf_counter() - t1
            encode_cpu += time.thread_time() - c1
            done += len(idx)
            if progress is not None:
                progress("CY patches", done, total)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    info = {
        "patches": int(measured.sum()),
        "sections": len(groups),
        "valid_nodes_on_unavailable_sections": skipped,
        "seconds_reading_patches": read_s,
        "seconds_encoding": encode_s,
        "seconds_waiting_for_patches": waited_s,
        "cpu_seconds_reading_patches": read_cpu,
        "cpu_seconds_encoding": encode_cpu,
        "prefetch": pool is not None,
    }
    return cy, measured, info


def node_co(
    stack: SectionStack, section: np.ndarray, point_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical coordinates at the nodes' points: (co float64 (N, 3) with NaN where unknown,
    sampled bool (N,))."""
    n = len(section)
    co = np.full((n, 3), np.nan)
    has = (section >= 0) & np.all(np.isfinite(point_mm), axis=1)
    available = set(stack.sections)
    for s, idx in _groups(section, has).items():
        if s not in available or not stack.brain.section(s).coords:
            continue
        raster = stack.raster(s, "coords")
        co[idx] = sample_map_bilinear(raster.read_level(0), raster.spacing_um, point_mm[idx])
        raster.close()
    sampled = np.all(np.isfinite(co), axis=1)
    return co, sampled


def node_labels(
    stack: SectionStack,
    section: np.ndarray,
    point_mm: np.ndarray,
    valid: np.ndarray,
    cohort: Cohort,
    *,
    every: int = 5,
    offset: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(y int64 (N,), train_mask, test_mask, info) from the annotation label images and the split."""
    n = len(section)
    y = np.full(n, -1, dtype=np.int64)
    brain = stack.brain
    annotated = annotated_sections(brain, stack)
    train_sections, test_sections = section_split(annotated, every, offset)
    use = valid & (section >= 0) & np.all(np.isfinite(point_mm), axis=1)
    annotated_set = set(annotated)
    for s, idx in _groups(section, use).items():
        if s not in annotated_set:
            continue
        labels = stack.annotation(s)
        area = sample_labels_nearest(labels, brain.annotation_spacing_um, point_mm[idx])
        y[idx] = cohort.areas.class_index(area)
    labelled = y >= 0
    train = labelled & np.isin(section, train_sections)
    test = labelled & np.isin(section, test_sections)
    info = {
        "annotated_sections": len(annotated),
        "test_sections": [int(s) for s in test_sections],
        "labelled_nodes": int(labelled.sum()),
        "train_nodes": int(train.sum()),
        "test_nodes": int(test.sum()),
    }
    return y, train, test, info


def node_features(
    stack: SectionStack,
    cohort: Cohort,
    nodes: dict[str, np.ndarray],
    edge_index: np.ndarray,
    encoder: torch.nn.Module,
    preset: EncoderPreset,
    *,
    atlas: ProbabilisticAtlas | None = None,
    device: torch.device | str = "cpu",
    amp: bool = True,
    progress=None,
) -> tuple[dict[str, np.ndarray], dict]:
    """All feature arrays of one graph from its node arrays (``section``, ``point_mm``, ``valid``).

    Returns
    -------
    (arrays named as in docs/derivatives.md: ``cy cy_measured co pm y train_mask test_mask``,
    info: counts and seconds).
    """
    section = np.asarray(nodes["section"], dtype=np.int64)
    point = np.asarray(nodes["point_mm"], dtype=np.float64)
    valid = np.asarray(nodes["valid"], dtype=bool)
    info: dict = {"nodes": len(section), "valid_nodes": int(valid.sum())}
    t0 = time.perf_counter()
    cy, measured, cy_info = node_cy(
        stack, section, point, valid, encoder, preset, device=device, amp=amp, progress=progress
    )
    cy_filled, fill_info = fill_from_neighbours(cy, measured, edge_index)
    info["cy"] = {**cy_info, **fill_info, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    co, sampled = node_co(stack, section, point)
    if not sampled.any():
        log.warning("no node has canonical coordinates (no coordinate maps?): CO is 0 everywhere")
    co_filled, co_fill = fill_from_neighbours(np.nan_to_num(co), sampled, edge_index)
    info["co"] = {"sampled": int(sampled.sum()), **co_fill, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    if atlas is not None:
        pm = atlas.sample(cohort.from_canonical(co_filled))
        pm = np.clip(pm, 0.0, 1.0)
    else:
        pm = np.zeros((len(section), 0), dtype=np.float32)
    info["pm"] = {"maps": int(pm.shape[1]), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    y, train, test, y_info = node_labels(
        stack,
        section,
        point,
        valid,
        cohort,
        every=preset.test_every,
        offset=preset.test_offset,
    )
    info["y"] = {**y_info, "seconds": time.perf_counter() - t0}
    arrays = {
        "cy": cy_filled.astype(np.float32),
        "cy_measured": measured,
        "co": co_filled.astype(np.float32),
        "pm": pm.astype(np.float32),
        "y": y,
        "train_mask": train,
        "test_mask": test,
    }
    return arrays, info


def default_encoder_path(brain: Brain, name: str | None = None) -> Path:
    """``encoders/<name>/encoder.pt`` of the brain's cohort; default name: the preset made for the
    brain's image spacing (what ``train-encoder`` calls it by default)."""
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort folder (no cohort.toml beside it)",
            file=str(brain.root),
            fix="features need the cohort's area table and encoder; use the cohort layout",
        )
    name = name or preset_for_spacing(brain.image_spacing_um).name
    return encoders_folder(brain.cohort, name) / "encoder.pt"


def compute_node_features(
    brain: str | Path | Brain,
    encoder_path: str | Path | None = None,
    *,
    root: str | Path | None = None,
    hemispheres: tuple[str, ...] = HEMISPHERES,
    device: str | torch.device = "auto",
    amp: bool = True,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Compute CY, CO, PM, Y and the split masks of a brain's graphs and write them into the graphs.

    Parameters
    ----------
    brain : brain id (with ``root`` / ``$CORTEXGRAPH_ROOT``), brain folder, or :class:`Brain`.
    encoder_path : ``encoder.pt`` (or its folder); default :func:`default_encoder_path`.
    hemispheres : graphs to process (``<brain>/graph/<hemi>.h5``; missing ones are skipped, at least
        one must exist).
    device, amp : where the encoder runs; mixed precision on GPUs.
    overwrite : recompute graphs that already hold ``cy``.
    progress : optional callable ``(stage, done, total)``.

    Returns
    -------
    ``{hemi: info}`` with per-graph counts and seconds (also written to ``<brain>/qc/features.json``);
    a reused graph has ``{"reused": True}``.

    Output files: the node arrays of docs/derivatives.md in ``<brain>/graph/<hemi>.h5``, and
    ``<brain>/qc/features.json``.
    """
    if not isinstance(brain, Brain):
        brain = find_brain(brain, root)
    cohort = brain.cohort
    encoder_path = Path(encoder_path) if encoder_path else default_encoder_path(brain)
    graph_dir = brain.derivatives / "graph"
    graphs = {h: graph_dir / f"{h}.h5" for h in hemispheres if (graph_dir / f"{h}.h5").is_file()}
    if not graphs:
        raise CortexgraphError(
            f"no graph of brain {brain.id} (looked for {', '.join(hemispheres)} in {graph_dir})",
            fix=f"run `cortexgraph build-graph {brain.id}` first",
        )
    todo = {}
    results: dict = {}
    for hemi, path in graphs.items():
        with h5py.File(path, "r") as h5:
            done = "nodes" in h5 and "cy" in h5["nodes"]
        if done and not overwrite:
            results[hemi] = {"reused": True, "graph": str(path)}
        else:
            todo[hemi] = path
    if not todo:
        return results
    device = pick_device(device)
    classifier, preset, enc_info = load_encoder(encoder_path, device)
    encoder = classifier.encoder
    if brain.image_spacing_um > preset.spacing_um * 1.01:
        log.warning(
            "encoder %s reads %.1f µm patches; %s has %.1f µm images (upsampled)",
            encoder_path,
            preset.spacing_um,
            brain.id,
            brain.image_spacing_um,
        )
    atlas = ProbabilisticAtlas.from_cohort(cohort) if cohort.atlas_maps else None
    stack = SectionStack(brain)
    for hemi, path in todo.items():
        start = time.perf_counter()
        num_nodes, edge_index, nodes = read_graph_nodes(path)
        from_table = bool(nodes.pop("_from_table", False))
        arrays, info = node_features(
            stack,
            cohort,
            nodes,
            edge_index,
            encoder,
            preset,
            atlas=atlas,
            device=device,
            amp=amp,
            progress=None
            if progress is None
            else (lambda stage, d, t, h=hemi: progress(f"{stage} {h}", d, t)),
        )
        if from_table:  # the graph predates these arrays: store them too
            arrays.update(
                section=nodes["section"],
                point_mm=nodes["point_mm"].astype(np.float32),
                valid=nodes["valid"],
            )
        append_node_arrays(path, **arrays)
        info["seconds"] = time.perf_counter() - start
        info["graph"] = str(path)
        results[hemi] = info
    stack.close()
    summary = {
        "brain": brain.id,
        "encoder": str(encoder_path),
        "encoder_kind": enc_info.get("kind"),
        "preset": enc_info.get("preset"),
        "device": str(device),
        "hemispheres": results,
    }
    write_json_atomic(brain.derivatives / "qc" / "features.json", summary)
    return results
