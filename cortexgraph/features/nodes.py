"""Node features of a brain's graphs: CY (encoder), CO (canonical coordinates), PM (atlas), Y (labels).

Method (Schiffer, PhD thesis, Univ. Düsseldorf, Sects. 7.1.1-7.1.2 and Fig. 7.5; Schiffer et
al. 2021, MICCAI).  Every node of a hemisphere's graph
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

Three stages write them, each into files of its own (the graph file is never edited;
:mod:`cortexgraph.derivatives.layout`), each with its record and key:

* ``node-priors`` (:func:`compute_node_priors`): ``<brain>/features/priors/<hemi>.h5`` -- co, pm;
* ``node-labels`` (:func:`compute_node_labels`): ``<brain>/features/labels/<hemi>.h5`` -- y,
  train_mask, test_mask;
* ``features@<encoder>`` (:func:`compute_node_cy`): ``<brain>/features/cy-<encoder>/<hemi>.h5`` --
  cy, cy_measured.

So a new encoder adds a CY set beside the others, an edited annotation recomputes Y only, and a
rebuilt graph makes all three stale (each file records the key of its graph).
:func:`cortexgraph.derivatives.graphs.load_brain_graph` assembles a PyG ``Data`` from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy import sparse

from cortexgraph.data.atlas import ProbabilisticAtlas
from cortexgraph.data.check import require_clean
from cortexgraph.data.manifest import Brain, Cohort, find_brain
from cortexgraph.data.names import check_name
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.derivatives.layout import (
    HEMISPHERES,
    cy_path,
    graph_path,
    node_labels_path,
    priors_path,
    write_node_arrays,
)
from cortexgraph.errors import CortexgraphError, DataFormatError, UpstreamError
from cortexgraph.features.dataset import annotated_sections, section_split
from cortexgraph.features.encoders import encoder_feature_dim
from cortexgraph.features.patches import IMAGE_FILL, read_patches
from cortexgraph.features.presets import EncoderPreset, preset_for_spacing
from cortexgraph.features.train import encode_patches, encoders_folder, load_encoder
from cortexgraph.mapping.nodes import mapped_mask, node_arrays_from_table, nodes_by_section
from cortexgraph.training.runtime import pick_device

log = logging.getLogger(__name__)

__all__ = [
    "HEMISPHERES",
    "node_arrays_from_table",
    "read_graph_nodes",
    "fill_from_neighbours",
    "sample_map_bilinear",
    "sample_labels_nearest",
    "node_cy",
    "node_cy_filled",
    "node_co",
    "node_co_filled",
    "node_pm",
    "node_labels",
    "compute_node_priors",
    "compute_node_labels",
    "compute_node_cy",
    "compute_node_features",
    "default_encoder_name",
    "encoder_file",
    "encoder_upstream",
]



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
        # a flag beside the arrays, as the docstring says (callers pop it)
        arrays["_from_table"] = True  # type: ignore[assignment]
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
def node_cy(
    stack: SectionStack,
    nodes: dict[str, np.ndarray],
    encoder: torch.nn.Module,
    preset: EncoderPreset,
    *,
    device: torch.device | str = "cpu",
    amp: bool = True,
    progress=None,
    prefetch: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encoder features of the valid nodes' patches, section by section (one read per section).

    ``nodes``: node arrays ``section``, ``point_mm``, ``valid`` (:func:`read_graph_nodes`).

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
    section, point_mm = nodes["section"], nodes["point_mm"]
    n = len(section)
    dim = encoder_feature_dim(encoder)
    cy = np.zeros((n, dim), dtype=np.float32)
    measured = np.zeros(n, dtype=bool)
    use = mapped_mask(section, point_mm, nodes["valid"])
    available = set(stack.sections)
    groups = {s: idx for s, idx in nodes_by_section(section, use).items() if s in available}
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
                assert pending is not None  # submitted before the loop and at each step
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


def node_co(stack: SectionStack, nodes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical coordinates at the nodes' points (node arrays ``section``, ``point_mm``; valid or
    not): (co float64 (N, 3) with NaN where unknown, sampled bool (N,))."""
    section, point_mm = nodes["section"], nodes["point_mm"]
    co = np.full((len(section), 3), np.nan)
    available = set(stack.sections)
    for s, idx in nodes_by_section(section, mapped_mask(section, point_mm)).items():
        if s not in available or not stack.brain.section(s).coords:
            continue
        raster = stack.raster(s, "coords")
        co[idx] = sample_map_bilinear(raster.read_level(0), raster.spacing_um, point_mm[idx])
        raster.close()
    sampled = np.all(np.isfinite(co), axis=1)
    return co, sampled


def node_labels(
    stack: SectionStack,
    nodes: dict[str, np.ndarray],
    cohort: Cohort,
    *,
    every: int = 5,
    offset: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(y int64 (N,), train_mask, test_mask, info) from the annotation label images and the split,
    for the valid nodes of the node arrays ``section``, ``point_mm``, ``valid``."""
    section, point_mm = nodes["section"], nodes["point_mm"]
    y = np.full(len(section), -1, dtype=np.int64)
    brain = stack.brain
    annotated = annotated_sections(brain, stack)
    train_sections, test_sections = section_split(annotated, every, offset)
    annotated_set = set(annotated)
    for s, idx in nodes_by_section(section, mapped_mask(section, point_mm, nodes["valid"])).items():
        if s not in annotated_set:
            continue
        labels = stack.annotation(s)
        area = sample_labels_nearest(labels, brain.spacing_of("annotation"), point_mm[idx])
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


def node_cy_filled(
    stack: SectionStack,
    nodes: dict[str, np.ndarray],
    edge_index: np.ndarray,
    encoder: torch.nn.Module,
    preset: EncoderPreset,
    **options,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """CY of every node: measured on the valid nodes' patches (:func:`node_cy`, ``options`` are its
    keyword arguments), the others filled from their graph neighbours
    (:func:`fill_from_neighbours`).

    Returns
    -------
    (cy float32 (N, D), measured bool (N,), info: counts and seconds).
    """
    t0 = time.perf_counter()
    cy, measured, cy_info = node_cy(stack, nodes, encoder, preset, **options)
    cy_filled, fill_info = fill_from_neighbours(cy, measured, edge_index)
    info = {**cy_info, **fill_info, "valid_nodes": int(np.count_nonzero(nodes["valid"]))}
    info["seconds_total"] = time.perf_counter() - t0
    return cy_filled.astype(np.float32), measured, info


def node_co_filled(
    stack: SectionStack, nodes: dict[str, np.ndarray], edge_index: np.ndarray
) -> tuple[np.ndarray, dict]:
    """CO of every node: sampled at the node's point (:func:`node_co`), unknown ones filled from
    their graph neighbours. Returns (co float32 (N, 3), info)."""
    co, sampled = node_co(stack, nodes)
    if not sampled.any():
        log.warning("no node has canonical coordinates (no coordinate maps?): CO is 0 everywhere")
    co_filled, co_fill = fill_from_neighbours(np.nan_to_num(co), sampled, edge_index)
    return co_filled.astype(np.float32), {"sampled": int(sampled.sum()), **co_fill}


def node_pm(co: np.ndarray, cohort: Cohort, atlas: ProbabilisticAtlas | None) -> np.ndarray:
    """PM: the atlas maps at the reference-space position of each node's CO, clipped to [0, 1];
    float32 (N, P), (N, 0) without an atlas."""
    if atlas is None:
        return np.zeros((len(co), 0), dtype=np.float32)
    pm = atlas.sample(cohort.from_canonical(np.asarray(co, dtype=np.float64)))
    return np.clip(pm, 0.0, 1.0).astype(np.float32)


def default_encoder_name(brain: Brain) -> str:
    """The encoder ``features`` uses by default: the preset made for the brain's image spacing
    (what ``train-encoder`` names its output by default)."""
    return preset_for_spacing(brain.spacing_of("image")).name


def encoder_file(cohort: Cohort, name: str) -> Path:
    """``<cohort>/derivatives/cortexgraph/encoders/<name>/encoder.pt`` (the name is checked)."""
    return encoders_folder(cohort, check_name(name, "encoder name")) / "encoder.pt"


def _cohort_of(brain: Brain) -> Cohort:
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort folder (no cohort.toml beside it)",
            file=str(brain.root),
            fix="node features need the cohort's area table and encoder; use the cohort layout",
        )
    return brain.cohort


def _graph_record(store: Derivatives, brain: Brain):
    return store.require(StageId("build-graph", brain.id))


def _graphs_of(store: Derivatives, brain: Brain, record) -> dict[str, Path]:
    """The hemisphere graphs listed in a build-graph record."""
    graphs = {}
    for hemi in HEMISPHERES:
        path = graph_path(store.root, brain.id, hemi)
        if store.namer.name(path) in record.outputs:
            graphs[hemi] = path
    if not graphs:
        raise UpstreamError(
            f"the build-graph record of {brain.id} lists no graph",
            file=str(store.record_path(StageId("build-graph", brain.id))),
            fix=f"run `cortexgraph build-graph {brain.id} --overwrite`",
        )
    return graphs


def _node_array_stage(
    brain: Brain,
    sid: StageId,
    parameters: dict,
    inputs: list[Path],
    prepare,
    *,
    upstream: Sequence[StageId] = (),
    overwrite: bool = False,
    wait_s: float = 0.0,
) -> dict:
    """One node-array stage of a brain: node arrays per hemisphere graph, under the stage contract.

    Runs stage ``sid`` with the brain's ``build-graph`` (and ``upstream``) as upstream; when it
    computes, ``prepare(stack, measured)`` (the brain's open :class:`SectionStack`, the stage's
    measured dict to add to) returns ``hemisphere(hemi, nodes, edge_index) -> (path, arrays, info)``,
    which is called for every graph of the build-graph record; ``arrays`` are written to ``path``
    for that graph's key (:func:`~cortexgraph.derivatives.layout.write_node_arrays`), ``info`` goes
    into ``measured[hemi]`` with the node count and seconds.

    Returns the stage summary (``reused``, ``why``, ``key`` and, when computed, ``measured``).
    """
    store = Derivatives.of(brain)
    with StageRun(
        store,
        sid,
        parameters=parameters,
        inputs=inputs,
        upstream=[StageId("build-graph", brain.id), *upstream],
        overwrite=overwrite,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return run.summary()
        graph_rec = run.upstream_records[f"{brain.id}/build-graph"]
        measured: dict = {}
        written = []
        with SectionStack(brain) as stack:
            hemisphere = prepare(stack, measured)
            for hemi, path in _graphs_of(store, brain, graph_rec).items():
                start = time.perf_counter()
                num_nodes, edge_index, nodes = read_graph_nodes(path)
                out, arrays, info = hemisphere(hemi, nodes, edge_index)
                write_node_arrays(out, graph_rec.key, num_nodes, **arrays)
                written.append(out)
                seconds = time.perf_counter() - start
                measured[hemi] = {**info, "nodes": num_nodes, "seconds": seconds}
        run.commit(written, measured)
    return run.summary(measured)


def compute_node_priors(
    brain: Brain, *, overwrite: bool = False, wait_s: float = 0.0
) -> dict:
    """Stage ``node-priors``: CO and PM on every node of the brain's graphs.

    Reads the graphs (build-graph), the sections' canonical coordinate maps and the cohort's atlas.
    Writes ``<brain>/features/priors/<hemi>.h5`` (``co`` float32 (N, 3), ``pm`` float32 (N, P)).

    Returns
    -------
    ``{"reused", "why", "key", <hemi>: info}``.
    """
    cohort = _cohort_of(brain)
    store = Derivatives.of(brain)
    values, files = brain_inputs(brain, ("coords",), transforms=False)
    atlas_files = []
    if cohort.atlas_maps:
        atlas_files = [cohort.atlas_maps_path, cohort.atlas_labels_path]
    parameters = {
        **values,
        "canonical_box_mm": [list(cohort.canonical_box_min_mm), list(cohort.canonical_box_max_mm)],
        "atlas": [cohort.atlas_maps, cohort.atlas_labels],
    }

    def prepare(stack: SectionStack, measured: dict):
        atlas = ProbabilisticAtlas.from_cohort(cohort) if cohort.atlas_maps else None

        def hemisphere(hemi: str, nodes: dict, edge_index: np.ndarray):
            co, co_info = node_co_filled(stack, nodes, edge_index)
            pm = node_pm(co, cohort, atlas)
            info = {"co": co_info, "pm_maps": int(pm.shape[1])}
            return priors_path(store.root, brain.id, hemi), {"co": co, "pm": pm}, info

        return hemisphere

    return _node_array_stage(
        brain,
        StageId("node-priors", brain.id),
        parameters,
        [*files, *atlas_files],
        prepare,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def compute_node_labels(
    brain: Brain,
    *,
    test_every: int = 5,
    test_offset: int = 4,
    overwrite: bool = False,
    wait_s: float = 0.0,
) -> dict:
    """Stage ``node-labels``: Y and the train/test split on every node of the brain's graphs.

    Reads the graphs and the annotations; every ``test_every``-th annotated section (position
    ``test_offset``) is a test section. Writes ``<brain>/features/labels/<hemi>.h5`` (``y`` int64
    class index, -1 = unlabelled; ``train_mask``, ``test_mask`` bool).
    """
    cohort = _cohort_of(brain)
    store = Derivatives.of(brain)
    values, files = brain_inputs(brain, ("annotation",), transforms=False)
    with SectionStack(brain) as stack:
        annotated = annotated_sections(brain, stack)
    parameters = {
        **values,
        "annotated_sections": annotated,
        "test_every": int(test_every),
        "test_offset": int(test_offset),
    }

    def prepare(stack: SectionStack, measured: dict):
        def hemisphere(hemi: str, nodes: dict, edge_index: np.ndarray):
            y, train, test, info = node_labels(
                stack, nodes, cohort, every=test_every, offset=test_offset
            )
            arrays = {"y": y, "train_mask": train, "test_mask": test}
            return node_labels_path(store.root, brain.id, hemi), arrays, info

        return hemisphere

    return _node_array_stage(
        brain,
        StageId("node-labels", brain.id),
        parameters,
        [*files, cohort.area_table_path],
        prepare,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def encoder_upstream(cohort: Cohort, name: str) -> tuple[list[StageId], list[Path]]:
    """How a stage that uses encoder ``name`` depends on it: on its ``train-encoder`` record when
    cortexgraph trained it, else (a user's own ``encoders/<name>/encoder.pt``) on the file itself."""
    path = encoder_file(cohort, name)
    sid = StageId("train-encoder", None, (name,))
    store = Derivatives.of(cohort)
    if store.record(sid) is not None or not path.is_file():
        return [sid], []
    return [], [path]


def compute_node_cy(
    brain: Brain,
    encoder: str | None = None,
    *,
    device: str | torch.device = "auto",
    amp: bool = True,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress=None,
) -> dict:
    """Stage ``features@<encoder>``: CY of every node of the brain's graphs with one encoder.

    Parameters
    ----------
    brain : the brain.
    encoder : encoder name (``derivatives/cortexgraph/encoders/<name>/encoder.pt``); default
        :func:`default_encoder_name`.
    device, amp : where the encoder runs; mixed precision on GPUs (the result does not depend on
        them beyond floating-point rounding, so they are not part of the key).
    overwrite, wait_s : see :class:`~cortexgraph.derivatives.StageRun`.
    progress : optional callable ``(stage, done, total)``.

    Writes ``<brain>/features/cy-<encoder>/<hemi>.h5`` (``cy`` float32 (N, D), ``cy_measured`` bool).
    """
    cohort = _cohort_of(brain)
    name = check_name(default_encoder_name(brain) if encoder is None else encoder, "encoder name")
    store = Derivatives.of(brain)
    encoder_ids, encoder_files = encoder_upstream(cohort, name)
    values, files = brain_inputs(brain, ("image",), transforms=False)

    def prepare(stack: SectionStack, measured: dict):
        device_t = pick_device(device)
        classifier, preset, enc_info = load_encoder(encoder_file(cohort, name), device_t)
        if brain.spacing_of("image") > preset.spacing_um * 1.01:
            log.warning(
                "encoder %s reads %.1f µm patches; %s has %.1f µm images (upsampled)",
                name,
                preset.spacing_um,
                brain.id,
                brain.image_spacing_um,
            )
        measured.update(encoder_kind=enc_info.get("kind"), preset=enc_info.get("preset"))

        def hemisphere(hemi: str, nodes: dict, edge_index: np.ndarray):
            report = None
            if progress is not None:

                def report(stage, done, total):
                    progress(f"{stage} {hemi}", done, total)

            cy, cy_measured, info = node_cy_filled(
                stack, nodes, edge_index, classifier.encoder, preset, device=device_t, amp=amp,
                progress=report,
            )  # fmt: skip
            arrays = {"cy": cy, "cy_measured": cy_measured}
            return cy_path(store.root, brain.id, name, hemi), arrays, info

        return hemisphere

    return _node_array_stage(
        brain,
        StageId("features", brain.id, (name,)),
        {**values, "encoder": name},
        [*files, *encoder_files],
        prepare,
        upstream=encoder_ids,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def compute_node_features(
    brain: str | Path | Brain,
    encoder: str | None = None,
    *,
    root: str | Path | None = None,
    device: str | torch.device = "auto",
    amp: bool = True,
    test_every: int = 5,
    test_offset: int = 4,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress=None,
) -> dict:
    """The ``features`` command: stages ``features@<encoder>`` (first: it needs the encoder),
    ``node-priors`` and ``node-labels`` (split ``test_every``, ``test_offset``:
    :func:`compute_node_labels`).

    Each stage is reused when its key matches (:mod:`cortexgraph.derivatives`).

    Returns
    -------
    ``{"priors": ..., "labels": ..., "cy": ...}``, each the stage's measurements with ``reused`` and
    ``why`` (each stage's record in ``<brain>/records/`` holds the same measurements).
    """
    if not isinstance(brain, Brain):
        brain = find_brain(brain, root)
    require_clean(brain, "features")  # before anything is written
    # CY first: it needs the encoder, and a missing or stale one must refuse the command before
    # PM, CO and labels are made (none of them depends on CY)
    cy = compute_node_cy(
        brain, encoder, device=device, amp=amp, overwrite=overwrite, wait_s=wait_s,
        progress=progress,
    )  # fmt: skip
    return {
        "priors": compute_node_priors(brain, overwrite=overwrite, wait_s=wait_s),
        "labels": compute_node_labels(
            brain,
            test_every=test_every,
            test_offset=test_offset,
            overwrite=overwrite,
            wait_s=wait_s,
        ),
        "cy": cy,
    }
