"""The end-to-end job behind ``cortexgraph demo`` (and ``make demo``): the cohort graph of
:mod:`cortexgraph.execution.graph` on a phantom, run on the execution engine.

Every task calls the library function of one stage, so the demo is exactly what a user would run by
hand, stage after stage, on their own data, or with ``cortexgraph run-cohort`` on a cluster. By
default the engine is a local Dask cluster with one worker process per core (at most one per brain);
``engine=EngineOptions(scheduler=ADDRESS)`` runs the same tasks on an existing cluster and
``EngineOptions(workers=0)`` runs them one after the other in this process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from cortexgraph.outputs import write_json_atomic

log = logging.getLogger(__name__)

#: The GNN of the demo: the thesis's best GAT3 on CY+PM+CO (GAT3-CY/PM/CO, Schiffer, PhD thesis,
#: Sect. 7.2.2), sized for 2 CPU cores.
DEMO_GNN = {
    "model": "gat",
    "layers": 3,
    "features": ("cy", "pm", "co"),
    "transfer": "auto",
    "preset": "demo",
}


def run_demo(
    out: str | Path,
    preset: str = "demo",
    seed: int = 0,
    *,
    engine=None,
    progress: Callable | None = None,
) -> list[tuple[str, Path]]:
    """Make a phantom cohort in ``out/cohort`` (reused when complete) and run the pipeline on it.

    Parameters
    ----------
    out : output folder.
    preset : phantom preset.
    seed : seeds the phantom and the learners.
    engine : :class:`~cortexgraph.execution.engine.EngineOptions` (default: a local cluster).
    progress : ``(state, record, done, total)`` per finished task (see
        :func:`~cortexgraph.execution.graph.run_graph`).

    Returns
    -------
    ``[(label, path)]`` of the tables, pictures and data written, in pipeline order.
    Also writes ``out/demo-summary.json`` (seconds per step and per task, the workers and their peak
    memory, check results, build-graph accuracy, GNN scores, projection scores).
    """
    from cortexgraph.data.manifest import DERIVATIVES
    from cortexgraph.execution.engine import EngineOptions, open_engine
    from cortexgraph.execution.graph import CohortSettings, cohort_graph, run_graph
    from cortexgraph.synth.cohort import cohort_brain_ids, is_complete

    out = Path(out)
    cohort_root = out / "cohort"
    options = engine or EngineOptions()
    complete = is_complete(cohort_root, preset, None, seed)
    if complete:
        log.info("reusing the phantom cohort in %s", cohort_root)
    else:
        log.info("making the %s phantom cohort in %s", preset, cohort_root)
    settings = CohortSettings(
        synth_preset=None if complete else preset,
        seed=seed,
        encoder_preset="auto",
        loader_workers=0,
        gnn=dict(DEMO_GNN),
        render=True,
        until="render",
    )
    tasks = cohort_graph(cohort_root, settings, wait_s=options.wait_s, gpu_tasks=options.gpu_tasks)
    brains = cohort_brain_ids(preset)
    with open_engine(
        options, max_parallel=len(brains), local_directory=cohort_root / DERIVATIVES / "engine"
    ) as running:
        log.info("engine: %s", running.describe())
        report = run_graph(tasks, running, cohort_root, progress)
    report.raise_for_failures()
    return _summarise(out, cohort_root, preset, seed, brains, report)


def _summarise(out: Path, cohort_root: Path, preset: str, seed: int, brains, report):
    written: list[tuple[str, Path]] = [("phantom cohort", cohort_root / "cohort.toml")]
    for b in brains:
        written.append(
            (f"{b} build-graph QC picture", Path(report.value(f"build-graph/{b}")["qc_png"]))
        )
    encoder = report.value("train-encoder")
    encoder_path = cohort_root / "derivatives" / "cortexgraph" / "encoders" / encoder / "encoder.pt"
    written.append(("patch encoder (SCL) and its evaluation", encoder_path))
    run = report.value("train-gnn")
    run_dir = cohort_root / "derivatives" / "cortexgraph" / "runs" / run
    written.append(("GNN evaluation (macro F1 tables, charts)", run_dir / "evaluation"))
    for b in brains:
        for path in report.value(f"render/{b}"):
            if path.endswith(".png"):
                written.append((f"{b} surface picture", Path(path)))

    # areal volumes of the GNN's labels and of the true labels (docs/maps3d.md walks through it)
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.maps3d.stage import demo_volumes, format_volume_table

    start = time.perf_counter()
    cohort = Cohort.read(cohort_root)
    names = [a for a in ("hOc1", "hOc2") if any(x.name == a for x in cohort.areas.areas)]
    volumes_tsv, volumes = demo_volumes(cohort, run, names, out=out / "demo-volumes.tsv")
    log.info("areal volumes (mm^3) and pial areas (mm^2):\n%s", format_volume_table(volumes))
    assert volumes_tsv is not None  # written because out= is given
    written.append(("areal volumes, GNN vs true labels", volumes_tsv))
    volume_seconds = time.perf_counter() - start

    steps: dict[str, float] = {"map3d+stats": volume_seconds}
    for key, record in report.results.items():
        step = key.split("/")[0]
        steps[step] = steps.get(step, 0.0) + record["seconds"]
    summary = out / "demo-summary.json"
    write_json_atomic(
        summary,
        {
            "preset": preset,
            "seed": seed,
            "engine": report.engine,
            "seconds": {"total": report.seconds, "task_seconds_per_step": steps},
            "tasks": {
                k: {
                    "seconds": r["seconds"],
                    "cpu_seconds": r["cpu_seconds"],
                    "reused": r["reused"],
                    "worker": f"{r['host']}:{r['pid']}",
                }
                for k, r in report.results.items()
            },
            "workers": report.workers(),
            "check": {b: report.value(f"check/{b}") for b in brains},
            "build_graph_accuracy": {
                b: report.value(f"build-graph/{b}").get("accuracy") for b in brains
            },
            "gnn_scores": report.value("evaluate"),
            "projection": {b: report.value(f"project/{b}") for b in brains},
            "volumes": volumes,
        },
    )
    written.append(("demo summary (seconds per task, workers)", summary))
    return written
