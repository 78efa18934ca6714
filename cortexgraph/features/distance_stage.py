"""The distance pre-training stage: ``cortexgraph train-encoder --method distance``.

Stage ``train-encoder@<name>`` (the same stage as the contrastive encoder, with ``method: distance``
in its key): reads the midsurface graphs of the cohort's brains but the transfer brain (build-graph,
upstream), draws patches at graph nodes and pairs them (:mod:`cortexgraph.features.distance`),
trains the Siamese network and writes, in ``<cohort>/derivatives/cortexgraph/encoders/<name>/``::

    distance.pt     the pre-trained branch (+ its two dense layers, the settings): what
                    ``train-encoder --init NAME`` and ``lsm chain --init-hr NAME`` load
    encoder.pt      branch ``features`` only: the branch with a linear classifier trained on the
                    frozen features (linear evaluation), an encoder like any other (``features
                    --encoder NAME``, the GNN)
    clusters.tsv    branch ``features`` only: Ward clusters of its test-patch features vs areas
    metrics.json    the distance task on held-out pairs (err_dist, median error, Pearson r), the
                    linear evaluation (macro F1 per split), patch and pair counts, history, seconds
    pairs.tsv       every pair: brain, hemisphere, the two patch centres, distance, split

The transfer brain of the preset is left out entirely, so an encoder initialised from this run
can serve a GNN run with that transfer brain (the leak check of ``train-gnn`` reads the preset).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from cortexgraph.data.manifest import Cohort
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.derivatives.layout import graph_path
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.features.distance import (
    BRANCHES,
    COLLAPSE_WARNING,
    DistanceSettings,
    LSMHRBranch,
    SiameseDistanceNet,
    euclidean_distances,
    evaluate_pairs,
    geodesic_distances,
    load_distance,
    matching_state,
    non_oblique_vertices,
    power_law_pairs,
    save_distance,
    split_sections,
    train_siamese,
)
from cortexgraph.features.presets import EncoderPreset

log = logging.getLogger(__name__)

__all__ = [
    "CortexPatches",
    "cortex_patches",
    "lsm_branch_config",
    "train_distance_encoder",
    "encoder_init_state",
    "lsm_hr_init_state",
]


@dataclass
class CortexPatches:
    """Patch centres at midsurface graph nodes, one row per patch.

    ``brains`` lists the brain ids; ``brain`` (N,) indexes it; ``hemi`` (N,) 0 lh / 1 rh;
    ``section`` (N,); ``point_mm`` (N, 2) the centre on the raw section; ``world_mm`` (N, 3) the
    same point in the reconstruction; ``node`` (N,) the graph node; ``coords_mm`` (N, 3) the
    coordinate target; ``test`` (N,) on a test section.
    """

    brains: list[str]
    brain: np.ndarray
    hemi: np.ndarray
    section: np.ndarray
    point_mm: np.ndarray
    world_mm: np.ndarray
    node: np.ndarray
    coords_mm: np.ndarray
    test: np.ndarray

    def __len__(self) -> int:
        return len(self.brain)

    def group(self) -> np.ndarray:
        """One integer per (brain, hemisphere)."""
        return self.brain * 2 + self.hemi


def _read_graph(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return {
            "pos": h5["pos"][...].astype(np.float64),
            "face": h5["face"][...].astype(np.int64),
            "edge_index": h5["edge_index"][...].astype(np.int64),
            "section": h5["nodes/section"][...].astype(np.int64),
            "point_mm": h5["nodes/point_mm"][...].astype(np.float64),
            "valid": h5["nodes/valid"][...].astype(bool),
        }


def cortex_patches(
    cohort: Cohort,
    brain_ids: list[str],
    settings: DistanceSettings,
    *,
    seed: int = 0,
) -> tuple[CortexPatches, dict[tuple[int, int], dict]]:
    """Draw the patches of a distance run from the brains' midsurface graphs (build-graph outputs).

    Candidates are the valid graph nodes mapped to a section with an image where the section plane
    cuts the midsurface at ``90 +- settings.max_oblique_deg`` degrees; every
    ``settings.test_every``-th section of a brain is a test section. Per brain ``patches_per_brain``
    training and ``max(32, patches_per_brain // test_every)`` test patches are drawn without
    replacement (all when there are fewer). Coordinates: distance of the node from the
    interhemispheric plane of the build-graph record, and world y and z centred on the brain's
    candidates.

    Returns the patches and the graphs (``{(brain index, hemi): graph arrays}``, for geodesic
    distances).
    """
    from cortexgraph.data.stack import SectionStack

    store = Derivatives.of(cohort)
    rng = np.random.default_rng([seed, 17])
    rows: list[dict[str, np.ndarray]] = []
    graphs: dict[tuple[int, int], dict] = {}
    for b, brain_id in enumerate(brain_ids):
        brain = cohort.brain(brain_id)
        record = store.require(StageId("build-graph", brain_id))
        midline = float(record.measured.get("midsurfaces", {}).get("midline_x_mm", 0.0))
        with_image = {r.section for r in brain.sections if r.image and not r.missing}
        parts = []
        for h, hemi_name in enumerate(("lh", "rh")):
            path = graph_path(store.root, brain_id, hemi_name)
            if not path.is_file():
                continue
            graph = _read_graph(path)
            graphs[(b, h)] = graph
            ok = (
                graph["valid"]
                & (graph["section"] >= 0)
                & np.isin(graph["section"], list(with_image))
                & non_oblique_vertices(graph["pos"], graph["face"], settings.max_oblique_deg)
            )
            node = np.flatnonzero(ok)
            parts.append((h, node, graph))
        if not parts:
            raise CortexgraphError(
                f"brain {brain_id} has no midsurface graph",
                file=str(graph_path(store.root, brain_id, "lh")),
                fix=f"run `cortexgraph build-graph {brain_id}`",
            )
        sections = np.concatenate([g["section"][n] for _, n, g in parts])
        test_all = split_sections(sections, settings.test_every)
        pos_all = np.vstack([g["pos"][n] for _, n, g in parts])
        centre = pos_all.mean(axis=0) if len(pos_all) else np.zeros(3)
        offset = 0
        picks: dict[bool, list[tuple[int, np.ndarray, dict[str, np.ndarray]]]] = {
            True: [],
            False: [],
        }
        for h, node, graph in parts:
            flags = test_all[offset : offset + len(node)]
            offset += len(node)
            for is_test in (False, True):
                chosen = node[flags == is_test]
                picks[is_test].append((h, chosen, graph))
        want = {False: settings.patches_per_brain,
                True: max(32, settings.patches_per_brain // settings.test_every)}  # fmt: skip
        with SectionStack(brain) as stack:
            for is_test in (False, True):
                pool = [(h, n, g) for h, chosen, g in picks[is_test] for n in chosen]
                if not pool:
                    continue
                take = rng.choice(len(pool), size=min(want[is_test], len(pool)), replace=False)
                take.sort()
                hemi = np.array([pool[i][0] for i in take], dtype=np.int64)
                node = np.array([pool[i][1] for i in take], dtype=np.int64)
                graph_of = [pool[i][2] for i in take]
                section = np.array([g["section"][n] for g, n in zip(graph_of, node, strict=True)])
                point = np.array([g["point_mm"][n] for g, n in zip(graph_of, node, strict=True)])
                surface = np.array([g["pos"][n] for g, n in zip(graph_of, node, strict=True)])
                world = np.empty((len(node), 3))
                for s in np.unique(section):
                    at = section == s
                    world[at] = stack.section_to_world(int(s), point[at])
                coords = np.column_stack(
                    [
                        np.abs(surface[:, 0] - midline),
                        surface[:, 1] - centre[1],
                        surface[:, 2] - centre[2],
                    ]
                )
                rows.append(
                    {
                        "brain": np.full(len(node), b, dtype=np.int64),
                        "hemi": hemi,
                        "section": section.astype(np.int64),
                        "point_mm": point.reshape(-1, 2),
                        "world_mm": world,
                        "node": node,
                        "coords_mm": coords,
                        "test": np.full(len(node), is_test),
                    }
                )
    if not rows:
        raise CortexgraphError(
            "no cortex patches: no valid, non-oblique graph node on a section with an image",
            file=str(cohort.root),
            fix="check build-graph's outputs, or raise --distance-max-oblique-deg",
        )
    merged = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    return CortexPatches(brains=list(brain_ids), **merged), graphs


def _pairs_and_distances(
    patches: CortexPatches,
    graphs: dict[tuple[int, int], dict],
    settings: DistanceSettings,
    seed: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (pairs, distances), "test": (...)}``: pairs of patch rows within each split."""
    out = {}
    for split, flag in (("train", False), ("test", True)):
        rows = np.flatnonzero(patches.test == flag)
        rng = np.random.default_rng([seed, 23, int(flag)])
        local = power_law_pairs(
            patches.group()[rows],
            int(round(settings.pairs_per_patch * len(rows))),
            settings.degree_exponent,
            rng,
        )
        pairs = rows[local] if len(local) else np.zeros((0, 2), dtype=np.int64)
        if settings.distance == "euclidean":
            distance = euclidean_distances(patches.world_mm, pairs)
        else:
            distance = np.empty(len(pairs))
            group = patches.group()[pairs[:, 0]] if len(pairs) else np.zeros(0, int)
            for g in np.unique(group):
                at = np.flatnonzero(group == g)
                a, b = patches.node[pairs[at, 0]], patches.node[pairs[at, 1]]
                if len(np.unique(b)) < len(np.unique(a)):
                    a, b = b, a  # Dijkstra from the end with fewer distinct nodes
                graph = graphs[(int(g) // 2, int(g) % 2)]
                distance[at] = geodesic_distances(graph["pos"], graph["edge_index"], a, b)
            finite = np.isfinite(distance)
            if not finite.all():
                log.info("%d %s pairs on disconnected surface pieces dropped", (~finite).sum(), split)
                pairs, distance = pairs[finite], distance[finite]
        out[split] = (pairs, distance)
    return out


def lsm_branch_config(cohort: Cohort, preset: str = "auto"):
    """The LSM configuration whose E_HR a ``lsm-hr`` branch is (HR architecture, the LSM preset
    for the image spacing of the cohort's first brain, as ``lsm chain`` would choose it)."""
    from cortexgraph.lsm.config import make_config

    return make_config("hr", cohort.brain(cohort.brain_ids[0]).spacing_of("image"), preset=preset)


def _write_pairs(path: Path, patches: CortexPatches, pairs: dict) -> Path:
    from cortexgraph.data.manifest import format_tsv
    from cortexgraph.outputs import write_text_atomic

    lines = []
    for split, (p, d) in pairs.items():
        for (a, b), dist in zip(p.tolist(), d.tolist(), strict=True):
            lines.append(
                (
                    patches.brains[int(patches.brain[a])],
                    ("lh", "rh")[int(patches.hemi[a])],
                    int(patches.section[a]),
                    f"{patches.point_mm[a, 0]:.4f}",
                    f"{patches.point_mm[a, 1]:.4f}",
                    int(patches.section[b]),
                    f"{patches.point_mm[b, 0]:.4f}",
                    f"{patches.point_mm[b, 1]:.4f}",
                    f"{dist:.4f}",
                    split,
                )
            )
    columns = ("brain", "hemisphere", "section_a", "x_a_mm", "y_a_mm", "section_b", "x_b_mm",
               "y_b_mm", "distance_mm", "split")  # fmt: skip
    return write_text_atomic(path, format_tsv(columns, lines))


def train_distance_encoder(
    cohort: Cohort,
    preset: EncoderPreset,
    name: str,
    *,
    settings: DistanceSettings | None = None,
    branch: str = "features",
    lsm_preset: str = "auto",
    seed: int = 0,
    device="auto",
    amp: bool = True,
    overwrite: bool = False,
    cache_mb: float = 1024.0,
    progress=None,
    wait_s: float = 0.0,
) -> Path:
    """Run (or reuse) the distance pre-training stage (module docstring).

    Parameters
    ----------
    cohort : the cohort (its brains need current build-graph records, the transfer brain aside).
    preset : the encoder preset: its encoder is the branch (``branch='features'``), its patches,
        augmentation and linear evaluation are used, its ``transfer_brain`` is left out.
    name : the encoder folder.
    settings : :class:`~cortexgraph.features.distance.DistanceSettings`.
    branch : ``features`` or ``lsm-hr`` (E_HR of the LSM configuration of ``lsm_preset``).
    seed, device, amp, overwrite, cache_mb, progress, wait_s : as for ``train_encoder``.

    Returns
    -------
    Path of ``distance.pt``.
    """
    from cortexgraph.features.dataset import PatchReader, PatchTable, build_patch_table
    from cortexgraph.features.train import (
        _cluster_table,
        _evaluate,
        build_preset_encoder,
        encoders_folder,
        save_encoder,
        train_linear,
    )
    from cortexgraph.lsm.config import config_to_dict
    from cortexgraph.outputs import write_json_atomic
    from cortexgraph.training.checkpoint import plain
    from cortexgraph.training.runtime import pick_device, seed_everything

    settings = settings or DistanceSettings()
    if branch not in BRANCHES:
        raise ParameterError(f"unknown branch {branch!r}", fix=f"use {' or '.join(BRANCHES)}")
    start_all = time.perf_counter()
    store = Derivatives.of(cohort)
    brains = [b for b in cohort.brain_ids if b != preset.transfer_brain]
    if not brains:
        raise CortexgraphError(
            "no brain to pre-train on: the cohort holds only the transfer brain",
            file=str(cohort.root / "cohort.toml"),
            fix="add brains, or pick another transfer brain (--transfer)",
        )
    upstream = [StageId("build-graph", b) for b in brains]
    patches, graphs = cortex_patches(cohort, brains, settings, seed=seed)
    config = lsm_branch_config(cohort, lsm_preset) if branch == "lsm-hr" else None
    spec = {"preset": plain(preset.as_dict())} if config is None else config_to_dict(config)
    brain_values, files = {}, []
    for b, brain_id in enumerate(brains):
        used = sorted({int(s) for s in patches.section[patches.brain == b]})
        values, brain_files = brain_inputs(cohort.brain(brain_id), ("image",), sections=used)
        brain_values[brain_id] = values
        files += brain_files
    out = encoders_folder(cohort, name)
    parameters = {
        "method": "distance",
        "branch": branch,
        "spec": spec,
        "preset": plain(preset.as_dict()),
        "distance": settings.as_dict(),
        "seed": int(seed),
        "brains": brain_values,
    }
    if branch == "features":  # linear evaluation reads the annotations of every brain
        for brain_id in cohort.brain_ids:
            from cortexgraph.data.stack import SectionStack
            from cortexgraph.features.dataset import annotated_sections

            brain = cohort.brain(brain_id)
            with SectionStack(brain) as stack:
                annotated = annotated_sections(brain, stack)
            values, more = brain_inputs(
                brain, ("image", "annotation"), sections=annotated, transforms=False
            )
            parameters.setdefault("annotated", {})[brain_id] = values
            files += more
        files.append(cohort.area_table_path)
    with StageRun(
        store,
        StageId("train-encoder", None, (name,)),
        parameters=parameters,
        inputs=files,
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return out / "distance.pt"
        seconds: dict[str, float] = {}
        device_t = pick_device(device)
        seed_everything(seed)
        t0 = time.perf_counter()
        pairs = _pairs_and_distances(patches, graphs, settings, seed)
        table = PatchTable(
            brains=brains,
            brain=patches.brain,
            section=patches.section,
            centre_mm=patches.point_mm,
            area_id=np.zeros(len(patches), dtype=np.int64),
            label=np.zeros(len(patches), dtype=np.int64),
            split=patches.test.astype(np.int8),
        )
        body: torch.nn.Module
        if config is None:
            reader_preset = preset
            body = build_preset_encoder(preset, seed)
        else:
            from dataclasses import replace

            reader_preset = replace(
                preset, patch_px=int(config.hr_input_px()), spacing_um=float(config.hr_spacing_um)
            )
            torch.manual_seed(seed)
            body = LSMHRBranch(config)
        reader = PatchReader(cohort, table, reader_preset, cache_mb=cache_mb)
        reader.prefetch()
        seconds["patches_and_pairs"] = time.perf_counter() - t0
        net = SiameseDistanceNet(body, settings.embed_dim, seed=seed)
        t0 = time.perf_counter()
        history = train_siamese(
            net, reader, pairs["train"][0], pairs["train"][1], patches.coords_mm, settings,
            seed=seed, device=device_t, progress=progress,
        )  # fmt: skip
        seconds["training"] = time.perf_counter() - t0
        test = evaluate_pairs(net, reader, pairs["test"][0], pairs["test"][1], device=device_t)
        reader.close()
        if test["collapsed"]:
            log.warning(COLLAPSE_WARNING.format(name=name))
        metrics: dict = {
            "name": name,
            "method": "distance",
            "branch": branch,
            "distance": settings.as_dict(),
            "seed": int(seed),
            "brains": brains,
            "held_out": preset.transfer_brain,
            "patches": {"train": int((~patches.test).sum()), "test": int(patches.test.sum())},
            "pairs": {k: int(len(v[0])) for k, v in pairs.items()},
            "distance_mm": {k: float(np.mean(v[1])) if len(v[1]) else None
                            for k, v in pairs.items()},  # fmt: skip
            "test_pairs": test,
            "history": history,
        }
        outputs = [
            save_distance(
                out / "distance.pt", net, branch, spec, settings,
                extra={"test_pairs": test, "held_out": preset.transfer_brain},
            ),  # fmt: skip
            _write_pairs(out / "pairs.tsv", patches, pairs),
        ]
        if branch == "features":
            t0 = time.perf_counter()
            labelled = build_patch_table(cohort, preset)
            lreader = PatchReader(cohort, labelled, preset, cache_mb=cache_mb)
            lreader.prefetch()
            classifier, linear_history = train_linear(
                net.branch, labelled, lreader, preset, len(cohort.areas),
                seed=seed, device=device_t, amp=amp,
            )  # fmt: skip
            scores, split_outputs = _evaluate(
                classifier, lreader, labelled, device_t, amp, preset.eval_batch_size
            )
            lreader.close()
            metrics["linear"] = scores
            metrics["history_linear"] = linear_history
            metrics["clusters"] = _cluster_table(
                out / "clusters.tsv", cohort, {"distance": split_outputs}
            )
            outputs += [
                save_encoder(
                    out / "encoder.pt", classifier, preset, cohort.areas.ids, kind="distance",
                    seed=seed, extra={"macro_f1": {s: v["macro_f1"] for s, v in scores.items()}},
                ),  # fmt: skip
                out / "clusters.tsv",
            ]
            seconds["linear_evaluation"] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - start_all
        metrics["seconds"] = seconds
        outputs.append(write_json_atomic(out / "metrics.json", metrics))
        measured = {
            "method": "distance",
            "branch": branch,
            "test_err_dist_mm": test["err_dist_mm"],
            "test_pearson_r": test["pearson_r"],
            "seconds": seconds,
        }
        if "linear" in metrics:
            measured["linear_macro_f1"] = {s: v["macro_f1"] for s, v in metrics["linear"].items()}
        run.commit(outputs, measured)
    return out / "distance.pt"


def _distance_run(cohort: Cohort, name: str) -> tuple[dict, StageId, Path]:
    """A distance run's payload, its stage id and file; refuses a run that is not current."""
    from cortexgraph.features.train import encoders_folder

    sid = StageId("train-encoder", None, (name,))
    record = Derivatives.of(cohort).require(sid)
    if record.parameters.get("method") != "distance":
        raise ParameterError(
            f"encoder {name} is not a distance pre-training (method "
            f"{record.parameters.get('method', 'scl')})",
            file=str(encoders_folder(cohort, name)),
            fix="train one with `cortexgraph train-encoder --method distance --name NAME`",
        )
    path = encoders_folder(cohort, name) / "distance.pt"
    payload = load_distance(path)
    if payload.get("extra", {}).get("test_pairs", {}).get("collapsed"):
        log.warning("%s (%s)", COLLAPSE_WARNING.format(name=name), path)
    return payload, sid, path


def encoder_init_state(cohort: Cohort, name: str, preset: EncoderPreset) -> tuple[dict, StageId]:
    """Weights for the SCL and CE encoders of ``preset`` from the distance run ``name``
    (``train-encoder --init NAME``), and the run's stage id (an upstream of the encoder).

    Refuses a run whose branch does not have the preset encoder's layers, and one whose held-out
    brain differs from the preset's transfer brain (its weights would carry that brain into the
    encoder: the transfer leak of ``train-gnn``).
    """
    from cortexgraph.features.train import build_preset_encoder

    payload, sid, path = _distance_run(cohort, name)
    held_out = payload.get("extra", {}).get("held_out") or None
    if (held_out or None) != (preset.transfer_brain or None):
        raise ParameterError(
            f"distance run {name} held out {held_out or 'no brain'}, this encoder holds out "
            f"{preset.transfer_brain or 'no brain'}: its weights were learned on sections of the "
            "brain this encoder must not see",
            file=str(path),
            fix=f"pre-train with the same transfer brain (`cortexgraph train-encoder --method "
            f"distance --transfer {preset.transfer_brain} --name ...`)",
        )
    target = build_preset_encoder(preset, seed=None)
    return matching_state(payload["state"], target, what=f"distance run {name}", file=path), sid


def lsm_hr_init_state(cohort: Cohort, name: str, config) -> tuple[dict, StageId]:
    """Weights for the E_HR of an LSM of ``config`` from the distance run ``name``
    (``lsm chain --init-hr NAME``), and the run's stage id."""
    from cortexgraph.lsm.networks import build_lsm

    if not config.uses_hr:
        raise ParameterError(
            "--init-hr initialises the high-resolution branch, which an LR model does not have",
            fix="use --arch hr or ms with --init-hr",
        )
    payload, sid, path = _distance_run(cohort, name)
    target = build_lsm(config).hr_encoder
    assert target is not None  # config.uses_hr (checked above)
    return matching_state(payload["state"], target, what=f"distance run {name}", file=path), sid
