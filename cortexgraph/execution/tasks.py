"""Task functions of the cohort graph: one stage execution each, by its library entry point.

Every function takes the cohort folder and plain values (strings, numbers, dicts) so it can be
shipped to any worker, calls the stage's library function (which takes the stage lock, reuses
current outputs, writes its files atomically and records them: docs/derivatives.md) and returns a
small JSON-like summary. None of them writes an output file itself.

``wait_s`` is how long a stage waits for its lock when another process (another cohort run, a user's
command) runs the same stage on the same brain; it then reuses that run's outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cohort(cohort_root: str):
    from cortexgraph.data.manifest import Cohort

    return Cohort.read(cohort_root)


def _brain(cohort_root: str, brain_id: str):
    return _cohort(cohort_root).brain(brain_id)


def synth_prepare(cohort_root: str, preset: str, brains: list[str] | None, seed: int) -> list[str]:
    """Cohort-level files of a phantom (:func:`cortexgraph.synth.cohort.prepare_cohort`). The
    graph makes a phantom only where none is complete (``cortexgraph demo``): an unfinished or
    other phantom in ``cohort_root`` is replaced, anything else refused."""
    from cortexgraph.synth.cohort import prepare_cohort

    return prepare_cohort(cohort_root, preset, brains, seed, overwrite=True)


def synth_brain(
    cohort_root: str, brain_id: str, preset: str, brains: list[str] | None, seed: int
) -> str:
    """One phantom brain (:func:`cortexgraph.synth.cohort.synthesize_brain`), sections in this
    process (the engine runs brains in parallel)."""
    from cortexgraph.synth.cohort import synthesize_brain
    from cortexgraph.synth.presets import get_preset

    spec = get_preset(preset).with_brains(brains)
    return str(synthesize_brain(cohort_root, brain_id, spec, seed, workers=1))


def synth_finish(cohort_root: str, preset: str, brains: list[str] | None, seed: int) -> str:
    """``synth.json``, after every brain (:func:`cortexgraph.synth.cohort.finish_cohort`)."""
    from cortexgraph.synth.cohort import finish_cohort

    return str(finish_cohort(cohort_root, preset, brains, seed))


def check(cohort_root: str, brain_id: str) -> list[str]:
    """``cortexgraph check``: CortexgraphError naming the first problem of a brain with problems
    (:func:`cortexgraph.data.check.require_clean`); [] for a clean brain."""
    from cortexgraph.data.check import require_clean

    require_clean(_brain(cohort_root, brain_id), "the cohort run")
    return []


def build_graph(cohort_root: str, brain_id: str, phantom: bool, wait_s: float) -> dict:
    """``build-graph`` of a brain; on a phantom also its accuracy against the ground truth."""
    from cortexgraph.build_graph import build_graph as run_build_graph
    from cortexgraph.build_graph import build_graph_outputs

    brain = _brain(cohort_root, brain_id)
    report = run_build_graph(brain, check=False, wait_s=wait_s)
    result: dict[str, Any] = {
        "qc_png": str(build_graph_outputs(brain)["qc_png"]),
        "why": report.get("why"),
    }
    if phantom:
        from cortexgraph.build_graph.accuracy import write_build_graph_accuracy

        result["accuracy"] = write_build_graph_accuracy(brain)
    return result


def train_encoder(
    cohort_root: str,
    preset: str,
    seed: int,
    overrides: dict | None,
    loader_workers: int | None,
    device: str,
) -> str:
    """``train-encoder``; returns the encoder's name."""
    from cortexgraph.features.train import train_encoder as run_train_encoder

    path = run_train_encoder(
        cohort_root,
        preset=preset,
        seed=seed,
        device=device,
        overrides=overrides or None,
        loader_workers=loader_workers,
    )
    return Path(path).parent.name


def features(cohort_root: str, brain_id: str, encoder: str, device: str, wait_s: float) -> dict:
    """Node features of a brain (``node-priors``, ``node-labels``, ``features@<encoder>``)."""
    from cortexgraph.features.nodes import compute_node_features

    report = compute_node_features(
        _brain(cohort_root, brain_id), encoder, device=device, wait_s=wait_s
    )
    return {"encoder": encoder, "why": {k: v.get("why") for k, v in report.items()}}


def train_gnn(
    cohort_root: str, settings: dict, encoder: str | None, device: str, wait_s: float
) -> str:
    """``train-gnn`` with ``settings`` (keyword arguments of :func:`~cortexgraph.gnn.stage.train_gnn`);
    returns the run name."""
    from cortexgraph.gnn.stage import train_gnn as run_train_gnn

    kwargs = dict(settings)
    if "cy" in kwargs.get("features", ()):
        kwargs["encoder"] = encoder
    run = run_train_gnn(cohort_root, device=device, wait_s=wait_s, **kwargs)
    return Path(run).name


def evaluate(cohort_root: str, run: str, device: str) -> dict:
    """``evaluate`` of a model run (macro F1 tables and charts)."""
    from cortexgraph.gnn.evaluate import evaluate_run
    from cortexgraph.gnn.stage import resolve_run

    return evaluate_run(resolve_run(run, cohort_root), cohort_root, device=device)


def predict(cohort_root: str, brain_id: str, run: str, device: str, wait_s: float) -> list[str]:
    """``predict@<run>`` of a brain."""
    from cortexgraph.gnn.stage import predict_brain, resolve_run

    paths = predict_brain(
        resolve_run(run, cohort_root), brain_id, cohort_root, device=device, wait_s=wait_s
    )
    return [str(p) for p in paths]


def project(cohort_root: str, brain_id: str, run: str, wait_s: float) -> dict:
    """``project@gnn-<run>`` of a brain: the run's labels painted onto the sections."""
    from cortexgraph.mapping.project import project_brain

    return project_brain(_brain(cohort_root, brain_id), run, wait_s=wait_s)


def render(cohort_root: str, brain_id: str, run: str, wait_s: float) -> list[str]:
    """Surface pictures of a brain coloured by the run's labels."""
    from cortexgraph.render.brain import render_brain

    paths = render_brain(_brain(cohort_root, brain_id), "pred", run=run, wait_s=wait_s)
    return [str(p) for p in paths]


def map3d(cohort_root: str, brain_id: str, area: str, source: str, wait_s: float) -> dict:
    """``map3d@<source>@<area>`` then ``stats@<source>@<area>`` of a brain."""
    from cortexgraph.maps3d.stage import map3d_area
    from cortexgraph.maps3d.stats_stage import stats_area
    from cortexgraph.outputs import plain_json

    brain = _brain(cohort_root, brain_id)
    built = map3d_area(brain, area, source, wait_s=wait_s)
    measured = stats_area(brain, area, source, wait_s=wait_s)
    return {"map3d": plain_json(built), "stats": plain_json(measured)}


def stats_table(cohort_root: str, brain_id: str, source: str, wait_s: float) -> str | None:
    """``stats-table@<source>`` of a brain (every measured area in one table)."""
    from cortexgraph.maps3d.stats_stage import stats_table as run_stats_table

    path = run_stats_table(_brain(cohort_root, brain_id), source, wait_s=wait_s)
    return None if path is None else str(path)


def _lsm_run(
    cohort_root: str, brain_id: str, area: str, settings: dict, device: str, wait_s: float
):
    """The :class:`~cortexgraph.lsm.stages.LSMRun` of a brain's area with ``settings`` (keyword
    arguments of LSMRun: arch, name, preset, iterations, seed, step, extent, interval, ...)."""
    from cortexgraph.lsm.data import resolve_area
    from cortexgraph.lsm.stages import LSMRun
    from cortexgraph.training.runtime import pick_device

    brain = _brain(cohort_root, brain_id)
    options = dict(settings)
    for key in ("extent", "interval"):
        if options.get(key) is not None:
            options[key] = tuple(int(v) for v in options[key])
    if device in (None, "auto"):
        device = pick_device("auto").type
    return LSMRun(
        brain=brain, area=resolve_area(brain, area), device=device, wait_s=wait_s, **options
    )


def lsm_plan(
    cohort_root: str, brain_id: str, area: str, settings: dict, device: str, wait_s: float
) -> dict:
    """``lsm-plan@<run>@<area>`` of a brain; returns the plan's ``intervals`` and ``sections``."""
    from cortexgraph.lsm.stages import plan_stage

    plan = plan_stage(_lsm_run(cohort_root, brain_id, area, settings, device, wait_s))
    return {
        "intervals": [list(p) for p in plan.intervals],
        "sections": [int(s) for s in plan.sections],
    }


def lsm_train(
    cohort_root: str,
    brain_id: str,
    area: str,
    settings: dict,
    device: str,
    wait_s: float,
    plan: dict,
    interval: list[int] | None = None,
) -> list[str]:
    """``lsm-train@<run>@<area>@<interval>`` of a brain after its plan task (``plan``: its return
    value): the model of ``interval``; with ``interval`` None every model of the plan (an LSM run
    whose intervals were not known when the graph was made) or the GSM of a gsm run. Returns the
    model files."""
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.layout import plan_id
    from cortexgraph.lsm.stages import _output, read_plan, train_stage

    run = _lsm_run(cohort_root, brain_id, area, settings, device, wait_s)
    chain = read_plan(run.store, run.store.require(plan_id(brain_id, run.run_name, run.area)))
    if run.kind == "gsm":
        intervals: list[tuple[int, int] | None] = [None]
    elif interval is None:
        intervals = list(chain.intervals)
    else:
        wanted = (int(interval[0]), int(interval[1]))
        if wanted not in chain.intervals:
            raise CortexgraphError(
                f"interval {wanted[0]}-{wanted[1]} is not in the plan of {run.run_name} for "
                f"{run.area.name} on {brain_id} (its intervals: "
                + ", ".join(f"{s}-{t}" for s, t in chain.intervals)
                + "); the annotations changed after the task graph was made",
                fix="run the same command again: the graph is made from the current plan",
            )
        intervals = [wanted]
    return [str(_output(run.store, train_stage(run, chain, iv), "model.pt")) for iv in intervals]


def lsm_predict(
    cohort_root: str, brain_id: str, area: str, settings: dict, device: str, wait_s: float
) -> list[str]:
    """``lsm-predict@<run>@<area>`` of a brain: every section of the plan, each with the model of
    its interval (sections whose key is unchanged are kept). Returns the prediction files."""
    from cortexgraph.lsm.stages import predict_stage

    paths = predict_stage(_lsm_run(cohort_root, brain_id, area, settings, device, wait_s))
    return [str(p) for p in paths]
