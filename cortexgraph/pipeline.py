"""The end-to-end job behind ``cortexgraph demo`` (and ``make demo``).

Each step calls the library function of one stage, so the demo is exactly what a user would run by
hand, stage after stage, on their own data.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from cortexgraph.data.check import check_brain
from cortexgraph.data.manifest import Cohort
from cortexgraph.errors import CortexgraphError
from cortexgraph.outputs import write_json_atomic

log = logging.getLogger(__name__)


def _build_graph_with_accuracy(cohort_root: Path, brain_id: str) -> dict:
    """build-graph for one brain of a phantom cohort, then its accuracy (run in a worker process)."""
    import torch

    from cortexgraph.build_graph import build_graph
    from cortexgraph.synth.accuracy import write_build_graph_accuracy

    torch.set_num_threads(1)
    brain = Cohort.read(cohort_root).brain(brain_id)
    build_graph(brain, check=False)
    return write_build_graph_accuracy(brain)


def run_demo(out: str | Path, preset: str = "demo", seed: int = 0) -> list[tuple[str, Path]]:
    """Make a phantom cohort in ``out/cohort`` (reused if present) and run the pipeline on it.

    Returns
    -------
    ``[(label, path)]`` of the tables, pictures and data written, in pipeline order.
    Also writes ``out/demo-summary.json`` (seconds per stage, check results).
    """
    from cortexgraph.synth.cohort import synthesize_cohort

    out = Path(out)
    cohort_root = out / "cohort"
    written: list[tuple[str, Path]] = []
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    if not (cohort_root / "cohort.toml").is_file():
        log.info("making the %s phantom cohort in %s", preset, cohort_root)
        synthesize_cohort(cohort_root, preset=preset, seed=seed)
    else:
        log.info("reusing the phantom cohort in %s", cohort_root)
    seconds["synth"] = time.perf_counter() - start
    written.append(("phantom cohort", cohort_root / "cohort.toml"))

    cohort = Cohort.read(cohort_root)
    start = time.perf_counter()
    check_results = {}
    for brain in cohort.brains:
        problems = check_brain(brain)
        check_results[brain.id] = [str(p) for p in problems]
        if problems:
            raise CortexgraphError(
                f"brain {brain.id} of the phantom fails check: {problems[0]}",
                fix="report this as a bug of the phantom generator",
            )
    seconds["check"] = time.perf_counter() - start

    from cortexgraph.build_graph import build_graph_outputs

    start = time.perf_counter()
    accuracy = {}
    workers = max(1, min(2, os.cpu_count() or 1, len(cohort.brains)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        jobs = {
            b.id: pool.submit(_build_graph_with_accuracy, cohort.root, b.id) for b in cohort.brains
        }
        for brain in cohort.brains:
            accuracy[brain.id] = jobs[brain.id].result()
            log.info("build-graph %s done", brain.id)
            written.append(
                (f"{brain.id} build-graph QC picture", build_graph_outputs(brain)["qc_png"])
            )
    seconds["build-graph"] = time.perf_counter() - start

    # features: encoder trained on the annotated patches, then CY/CO/PM/Y on every graph node
    from cortexgraph.features.nodes import compute_node_features
    from cortexgraph.features.train import train_encoder

    start = time.perf_counter()
    encoder = train_encoder(cohort, preset="auto", seed=seed)
    written.append(("patch encoder (SCL) and its evaluation", encoder))
    encoder_name = encoder.parent.name
    for brain in cohort.brains:
        compute_node_features(brain, encoder_name)
    seconds["features"] = time.perf_counter() - start

    # GNN: the seeds' default GAT3 on CY+PM+CO, transfer brain B07 held out
    from cortexgraph.gnn.evaluate import evaluate_run
    from cortexgraph.gnn.stage import predict_brain, train_gnn

    start = time.perf_counter()
    transfer = "B07" if any(b.id == "B07" for b in cohort.brains) else None
    run = train_gnn(
        cohort.root,
        model="gat",
        layers=3,
        features=("cy", "pm", "co"),
        transfer=transfer,
        preset="demo",
        seed=seed,
        encoder=encoder_name,
    )
    run_name = Path(run).name
    seconds["train-gnn"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = evaluate_run(run, cohort.root)
    written.append(("GNN evaluation (macro F1 tables, charts)", Path(run) / "evaluation"))
    for brain in cohort.brains:
        predict_brain(run, brain.id, cohort.root)
    seconds["evaluate+predict"] = time.perf_counter() - start

    # back to sections and onto surfaces
    from cortexgraph.mapping.project import project_brain
    from cortexgraph.render.brain import render_brain

    start = time.perf_counter()
    projection = {}
    for brain in cohort.brains:
        projection[brain.id] = project_brain(brain, run_name)
    seconds["project"] = time.perf_counter() - start
    start = time.perf_counter()
    for brain in cohort.brains:
        for path in render_brain(brain, "pred", run=run_name):
            if path.suffix == ".png":
                written.append((f"{brain.id} surface picture", path))
    seconds["render"] = time.perf_counter() - start

    # areal volumes of the GNN's labels and of the true labels (docs/maps3d.md walks through it)
    from cortexgraph.maps3d.stage import demo_volumes, format_volume_table

    start = time.perf_counter()
    names = [a for a in ("hOc1", "hOc2") if any(x.name == a for x in cohort.areas.areas)]
    volumes_tsv, volumes = demo_volumes(cohort, run_name, names, out=out / "demo-volumes.tsv")
    log.info("areal volumes (mm^3) and pial areas (mm^2):\n%s", format_volume_table(volumes))
    written.append(("areal volumes, GNN vs true labels", volumes_tsv))
    seconds["map3d+stats"] = time.perf_counter() - start

    summary = out / "demo-summary.json"
    write_json_atomic(
        summary,
        {
            "preset": preset,
            "seed": seed,
            "seconds": seconds,
            "check": check_results,
            "build_graph_accuracy": accuracy,
            "gnn_scores": scores,
            "projection": projection,
            "volumes": volumes,
        },
    )
    written.append(("demo summary (seconds per stage)", summary))
    return written
