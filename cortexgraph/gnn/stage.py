"""The ``train-gnn`` and ``predict`` stages: train a node classifier over a cohort's graphs, apply it.

Method: graph-pipeline.md sections 7-9. One model is trained over the graphs of all brains except
the transfer brain (default B07, held out entirely), both hemispheres, together: an epoch is one
pass over all labelled training nodes (``train_mask & y >= 0``) of all these graphs.

Outputs of :func:`train_gnn` in ``<cohort>/derivatives/cortexgraph/runs/<name>/``::

    model.pt               the trained model (weights + NodeClassifier configuration + area ids)
    model.pt.prov.json     provenance: command, parameters, input graph files, seconds
    config.json            every setting of the run, the graphs it used and their node counts
    history.tsv            one row per epoch: epoch loss train_acc seconds nodes_per_s
    checkpoints/last.pt    the training state after the last finished epoch (resume)

:func:`predict_brain` adds the node arrays ``proba`` float32 (N, K) and ``pred`` int64 (N,) to each
hemisphere graph of a brain, and ``<brain>/graph/<hemi>.predict.prov.json`` naming the run.

Presets (``preset=``): ``"seeds"`` is the method (width 512, 100 epochs, batches of 2048 output nodes,
LARS at a constant learning rate of 0.008); ``"demo"`` is sized for the demo phantom on a 2-core CPU
(see ``PRESETS``; docs/gnn.md gives its measured time).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cortexgraph.data.manifest import DERIVATIVES, format_tsv, read_tsv
from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.data import (
    GraphItem,
    find_graph_files,
    load_graphs,
    parse_features,
    read_feature_dims,
)
from cortexgraph.outputs import (
    atomic_path,
    write_json_atomic,
    write_provenance,
    write_text_atomic,
)

__all__ = [
    "PRESETS",
    "RUNS_DIR",
    "train_gnn",
    "predict_brain",
    "default_run_name",
    "resolve_run",
    "load_run",
    "run_config",
]

log = logging.getLogger(__name__)

RUNS_DIR = DERIVATIVES / "runs"
MODEL_FORMAT = "cortexgraph-node-classifier"
MODEL_VERSION = 1

#: Training settings per preset. ``seeds``: graph-pipeline.md sections 8-9. ``demo``: a narrower
#: network, fewer epochs and smaller batches (more steps per epoch) with a larger learning rate, so
#: the demo phantom trains in about a minute on two CPU cores.
PRESETS: dict[str, dict[str, Any]] = {
    "seeds": {"hidden": 512, "epochs": 100, "batch_size": 2048, "lr": 0.008},
    "demo": {"hidden": 64, "epochs": 6, "batch_size": 512, "lr": 0.3},
}

# settings that define a run: an existing run with other values is never silently reused
_SIGNATURE_KEYS = (
    "model",
    "layers",
    "features",
    "transfer",
    "train_graphs",
    "hidden",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "trust_coefficient",
    "fanout",
    "full_batch",
    "seed",
    "num_classes",
    "feature_dims",
)


def default_run_name(
    model: str,
    layers: int,
    features: Sequence[str],
    preset: str = "seeds",
    transfer: str | None = "B07",
    seed: int = 0,
    epochs: int | None = None,
) -> str:
    """``<model><layers>-<features>`` (e.g. ``gat3-cy-pm-co``, ``linear-cy``), with ``-<preset>``,
    ``-e<epochs>``, ``-t<transfer>`` and ``-s<seed>`` appended when they differ from seeds / the
    preset's epochs / B07 / 0 (so runs of other settings never share a folder)."""
    name = f"{model}{'' if model == 'linear' else layers}-{'-'.join(parse_features(features))}"
    if preset != "seeds":
        name += f"-{preset}"
    if epochs is not None and preset in PRESETS and int(epochs) != PRESETS[preset]["epochs"]:
        name += f"-e{int(epochs)}"
    if transfer != "B07":
        name += f"-t{transfer or 'none'}"
    if seed:
        name += f"-s{seed}"
    return name


def resolve_run(run: str | os.PathLike, cohort_root: str | os.PathLike | None = None) -> Path:
    """A run folder from a path or from a name under ``<cohort>/derivatives/cortexgraph/runs``.

    ``cohort_root`` defaults to ``$CORTEXGRAPH_ROOT``. Raises CortexgraphError when neither exists.
    """
    candidates = []
    root = cohort_root or os.environ.get("CORTEXGRAPH_ROOT")
    if root:
        candidates.append(Path(root) / RUNS_DIR / str(run))
    candidates.append(Path(run))
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder.resolve()
    raise CortexgraphError(
        f"run {str(run)!r} not found (looked for config.json in: "
        f"{', '.join(str(c) for c in candidates)})",
        fix="train it with `cortexgraph train-gnn`, pass --root <cohort>, or give the run folder",
    )


def run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` of a run folder."""
    import json

    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CortexgraphError(f"cannot read the run configuration ({exc})", file=path) from None


def cohort_of_run(run_dir: str | os.PathLike, cohort_root: str | os.PathLike | None = None) -> Path:
    """The cohort a run belongs to: ``cohort_root`` if given, else the folder holding
    ``derivatives/cortexgraph/runs/<name>``, else the one stored in its config."""
    if cohort_root is not None:
        return Path(cohort_root)
    run_dir = Path(run_dir).resolve()
    parents = run_dir.parents
    if len(parents) > len(RUNS_DIR.parts):
        guess = parents[len(RUNS_DIR.parts)]
        if (guess / "cohort.toml").is_file():
            return guess
    stored = Path(run_config(run_dir).get("cohort_root", ""))
    if (stored / "cohort.toml").is_file():
        return stored
    raise CortexgraphError(
        "cannot find the cohort of this run", file=run_dir, fix="pass --root <cohort folder>"
    )


def load_run(run_dir: str | os.PathLike, map_location: str = "cpu"):
    """The trained model of a run (evaluation mode) and its ``config.json``.

    Returns
    -------
    (NodeClassifier, dict)
    """
    import torch

    from cortexgraph.gnn.models import NodeClassifier

    run_dir = Path(run_dir)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise CortexgraphError(
            "run has no model.pt (training unfinished?)",
            file=run_dir,
            fix="finish it with `cortexgraph train-gnn` (same options; it resumes)",
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CortexgraphError(f"cannot read the model ({exc})", file=path) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise CortexgraphError("not a cortexgraph node-classifier file", file=path)
    cfg = dict(payload["model_config"])
    model = NodeClassifier(
        cfg.pop("feature_dims"),
        cfg.pop("num_classes"),
        kind=cfg.pop("kind"),
        num_layers=cfg.pop("num_layers"),
        hidden=cfg.pop("hidden"),
        **cfg,
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, run_config(run_dir)


def _write_history(path: Path, history: dict[str, list]) -> None:
    from cortexgraph.gnn.train import HISTORY_KEYS

    rows = []
    for i in range(len(history["epoch"])):
        rows.append(
            [
                int(history["epoch"][i]),
                *(f"{float(history[k][i]):.6g}" for k in HISTORY_KEYS[1:]),
            ]
        )
    write_text_atomic(path, format_tsv(HISTORY_KEYS, rows))


def read_history(run_dir: str | os.PathLike) -> dict[str, list[float]]:
    """``history.tsv`` of a run as columns of floats."""
    rows = read_tsv(Path(run_dir) / "history.tsv", ("epoch", "loss"))
    if not rows:
        return {"epoch": [], "loss": []}
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def _signature(config: dict) -> dict:
    return {k: config.get(k) for k in _SIGNATURE_KEYS}


def train_gnn(
    cohort_root: str | os.PathLike,
    *,
    model: str = "gat",
    layers: int = 3,
    features: str | Sequence[str] = ("cy", "pm", "co"),
    transfer: str | None = "B07",
    epochs: int | None = None,
    name: str | None = None,
    preset: str = "seeds",
    hidden: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    full_batch: bool = False,
    sampler: str = "auto",
    seed: int = 0,
    device: str | None = None,
    amp: bool = True,
    overwrite: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train a node classifier over the graphs of a cohort; return its run folder.

    Parameters
    ----------
    cohort_root : path-like
        The cohort (``cohort.toml``, ``areas.tsv``; graphs in ``derivatives/cortexgraph/<brain>/graph``).
    model : {"gat", "sage", "mlp", "linear"}
    layers : int
        GNN / FC layers after the input projections (3, 5 or 7 in the method; ignored for linear).
    features : str or sequence of str
        Non-empty subset of cy, pm, co (``"cy,pm,co"``).
    transfer : str or None
        Brain held out entirely (never trained on); None trains on every brain.
    epochs : int, optional
        Default: the preset's. A run that stopped early resumes up to this number; a finished run
        given more epochs (same ``name``) continues training.
    name : str, optional
        Run folder name; default :func:`default_run_name` (which includes ``epochs`` when it differs
        from the preset's, so the default-named run of another length is a new run).
    preset : {"seeds", "demo"}
        Default width, epochs, batch size and learning rate (``PRESETS``); explicit arguments win.
    hidden, batch_size, lr : optional
        Override the preset (width of every layer; output nodes per step; LARS learning rate).
    full_batch : bool
        One step per epoch on the union of all training graphs instead of mini-batches (graphs
        that fit in memory).
    sampler : {"auto", "own", "pyg"}
        Neighbourhood sampling: this package's torch sampler or PyG's ``NeighborLoader`` (needs
        pyg-lib); "auto" takes PyG when pyg-lib is installed and training runs on the CPU (on a GPU the
        own sampler runs on the device, next to the data).
    seed : int
        Seeds initialisation, dropout, sampling and batch order (same seed = same model).
    device : str, optional
        "cpu", "cuda" or "auto" (default: CUDA when available). Under ``torchrun`` every process
        trains on its GPU with DistributedDataParallel; rank 0 writes the files.
    amp : bool
        Mixed precision on CUDA.
    overwrite : bool
        Retrain from scratch even if the run exists (its folder is emptied first).
    progress : callable, optional
        Called with each epoch's record (epoch, loss, train_acc, seconds, nodes_per_s).

    Returns
    -------
    pathlib.Path
        The run folder (see the module docstring for its files). An existing finished run with the
        same settings is reused; one with other settings raises CortexgraphError unless
        ``overwrite``.
    """
    import torch

    from cortexgraph.data.manifest import find_cohort
    from cortexgraph.gnn.models import KINDS, NodeClassifier
    from cortexgraph.gnn.sampler import pyg_sampler_available
    from cortexgraph.gnn.train import train_node_classifier
    from cortexgraph.training.runtime import (
        barrier,
        init_distributed_from_env,
        is_main_process,
        pick_device,
    )

    started = time.perf_counter()
    if model not in KINDS:
        raise CortexgraphError(f"unknown model {model!r}", fix=f"use one of {', '.join(KINDS)}")
    if preset not in PRESETS:
        raise CortexgraphError(f"unknown preset {preset!r}", fix=f"use one of {', '.join(PRESETS)}")
    if sampler not in ("auto", "own", "pyg"):
        raise CortexgraphError(f"unknown sampler {sampler!r}", fix="use auto, own or pyg")
    features = parse_features(features)
    settings = dict(PRESETS[preset])
    for key, value in (
        ("hidden", hidden),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("lr", lr),
    ):
        if value is not None:
            settings[key] = value
    layers = int(layers)
    if model != "linear" and layers < 1:
        raise CortexgraphError(f"layers must be >= 1, got {layers}")

    cohort = find_cohort(cohort_root)
    cohort_root = cohort.root
    init_distributed_from_env()  # a no-op unless started by torchrun
    if transfer and transfer not in cohort.brain_ids:
        raise CortexgraphError(
            f"transfer brain {transfer!r} is not in the cohort ({', '.join(cohort.brain_ids)})",
            file=cohort.manifest_path,
            fix="pick one of the cohort's brains with --transfer",
        )
    train_brains = [b for b in cohort.brain_ids if b != transfer]
    if not train_brains:
        raise CortexgraphError("no brain left to train on", fix="choose another transfer brain")
    items = find_graph_files(cohort_root, train_brains)
    feature_dims = read_feature_dims(items[0].path, features)
    for item in items[1:]:
        dims = read_feature_dims(item.path, features)
        if dims != feature_dims:
            raise CortexgraphError(
                f"feature widths {dims} differ from {feature_dims} of {items[0].key}",
                file=item.path,
                fix="compute the features of all brains with the same encoder and atlas",
            )
    area_ids = [int(i) for i in cohort.areas.ids]
    num_classes = len(area_ids)
    run_name = name or default_run_name(model, layers, features, preset, transfer, seed, epochs)
    run_dir = Path(cohort_root) / RUNS_DIR / run_name

    device_t = pick_device(device)
    use_pyg = sampler == "pyg" or (
        sampler == "auto" and pyg_sampler_available() and device_t.type == "cpu"
    )
    config = {
        "name": run_name,
        "cohort_root": str(Path(cohort_root).resolve()),
        "model": model,
        "layers": layers if model != "linear" else 0,
        "features": list(features),
        "feature_dims": feature_dims,
        "num_classes": num_classes,
        "area_ids": area_ids,
        "transfer": transfer or None,
        "train_brains": train_brains,
        "train_graphs": [item.key for item in items],
        "preset": preset,
        "hidden": int(settings["hidden"]),
        "epochs": int(settings["epochs"]),
        "batch_size": int(settings["batch_size"]),
        "lr": float(settings["lr"]),
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "trust_coefficient": 0.02,
        "fanout": 3 if model == "sage" else None,
        "full_batch": bool(full_batch),
        "seed": int(seed),
        "sampler": "pyg" if use_pyg else "own",
        "device": str(device_t),
        "amp": bool(amp),
    }

    checkpoints = run_dir / "checkpoints"
    if (run_dir / "config.json").is_file() and not overwrite:
        old = run_config(run_dir)
        if _signature(old) != _signature(config):
            changed = [k for k in _SIGNATURE_KEYS if old.get(k) != config.get(k)]
            raise CortexgraphError(
                f"run {run_name!r} exists with other settings ({', '.join(changed)})",
                file=run_dir / "config.json",
                fix="pass --overwrite to retrain it, or --name to train a new run",
            )
        if (run_dir / "model.pt").is_file() and int(old.get("epochs", -1)) == config["epochs"]:
            log.info("reusing the trained run %s", run_dir)
            return run_dir
        if int(old.get("epochs_done", 0)) > config["epochs"]:
            raise CortexgraphError(
                f"run {run_name!r} already trained {old['epochs_done']} epochs, more than "
                f"{config['epochs']}",
                file=run_dir / "config.json",
                fix="ask for at least as many epochs, or --overwrite",
            )
    elif overwrite and run_dir.exists() and is_main_process():
        for child in ("model.pt", "model.pt.prov.json", "history.tsv", "config.json"):
            (run_dir / child).unlink(missing_ok=True)
        for child in ("checkpoints", "evaluation"):
            shutil.rmtree(run_dir / child, ignore_errors=True)

    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", {**config, "epochs_done": 0})
    barrier()

    load_start = time.perf_counter()
    load_graphs(items, features)
    graphs = [item.data for item in items]
    for item in items:
        y = item.data.y
        if int(y.max()) >= num_classes:
            raise CortexgraphError(
                f"class index {int(y.max())} >= number of areas {num_classes}",
                file=item.path,
                fix="the graph was labelled with another area table; rerun `cortexgraph features`",
            )
    load_seconds = time.perf_counter() - load_start

    torch.manual_seed(seed)
    net = NodeClassifier(
        feature_dims, num_classes, kind=model, num_layers=max(layers, 1), hidden=config["hidden"]
    )
    history = train_node_classifier(
        graphs,
        net,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        lr=config["lr"],
        momentum=config["momentum"],
        weight_decay=config["weight_decay"],
        trust_coefficient=config["trust_coefficient"],
        fanout=config["fanout"],
        full_batch=full_batch,
        seed=seed,
        checkpoint_dir=checkpoints,
        resume=True,
        progress=progress,
        device=device_t,
        amp=amp,
        use_pyg=use_pyg,
    )
    if not is_main_process():
        return run_dir

    from cortexgraph.gnn.train import _plain

    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model_config": _plain(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "features": list(features),
        "area_ids": area_ids,
        "epochs": len(history["epoch"]),
    }
    with atomic_path(run_dir / "model.pt") as tmp:
        torch.save(payload, tmp)
    _write_history(run_dir / "history.tsv", history)
    n_train = [int((item.data.train_mask & (item.data.y >= 0)).sum()) for item in items]
    measured = {
        "epochs_done": len(history["epoch"]),
        "train_nodes": dict(zip([i.key for i in items], n_train, strict=True)),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "final_train_acc": history["train_acc"][-1] if history["train_acc"] else None,
        "train_seconds": float(sum(history["seconds"])),
        "load_seconds": load_seconds,
        "total_seconds": time.perf_counter() - started,
        "nodes_per_s": float(np.median(history["nodes_per_s"])) if history["epoch"] else None,
    }
    write_json_atomic(run_dir / "config.json", {**config, **measured})
    write_provenance(
        run_dir / "model.pt",
        {k: config[k] for k in config if k not in ("cohort_root",)},
        inputs=_provenance_inputs(items),
        measured=measured,
    )
    return run_dir


def _provenance_inputs(items: Sequence[GraphItem], max_bytes: int = 2 << 30) -> list[Path]:
    """Graph files (checksummed) when together below ``max_bytes``, else their folders (listed)."""
    files = [item.path for item in items]
    if sum(f.stat().st_size for f in files) <= max_bytes:
        return files
    return sorted({f.parent for f in files})


def predict_brain(
    run: str | os.PathLike,
    brain: str,
    cohort_root: str | os.PathLike | None = None,
    *,
    hemis: Sequence[str] | None = None,
    device: str | None = None,
    batch_size: int = 8192,
) -> list[Path]:
    """Write per-node class probabilities and labels of a trained run into a brain's graph files.

    Parameters
    ----------
    run : path-like or str
        Run folder or run name (see :func:`resolve_run`).
    brain : str
        Brain id; every existing hemisphere graph ``<brain>/graph/<hemi>.h5`` is processed.
    cohort_root : path-like, optional
        Default: the run's cohort.
    hemis : sequence of str, optional
        Restrict to these hemispheres.
    device : str, optional
    batch_size : int
        Output nodes per forward pass (each on its exact k-hop neighbourhood; same result as one
        whole-graph pass).

    Returns
    -------
    list of pathlib.Path
        The graph files written. Each gets node arrays ``proba`` float32 (N, K) (softmax over the
        cohort's areas, class index = rank of the area id) and ``pred`` int64 (N,) = argmax, plus
        ``<hemi>.predict.prov.json`` beside it.
    """
    from cortexgraph.gnn.train import predict_proba
    from cortexgraph.meshes.graph import append_node_arrays

    run_dir = resolve_run(run, cohort_root)
    cohort_root = cohort_of_run(run_dir, cohort_root)
    model, config = load_run(run_dir)
    items = find_graph_files(cohort_root, [brain])
    if hemis is not None:
        items = [item for item in items if item.hemi in hemis]
        if not items:
            raise CortexgraphError(f"brain {brain} has no graph for hemispheres {list(hemis)}")
    written = []
    for item in items:
        load_graphs([item], config["features"], labels=False)
        proba = predict_proba([item.data], model, batch_size=batch_size, device=device)[0]
        pred = proba.argmax(1).astype(np.int64)
        item.data = None
        append_node_arrays(item.path, proba=proba.astype(np.float32), pred=pred)
        write_provenance(
            item.path.with_name(f"{item.hemi}.predict"),
            {"run": config["name"], "run_dir": str(run_dir), "features": config["features"]},
            inputs=[run_dir / "model.pt"],
            measured={"nodes": int(proba.shape[0]), "classes": int(proba.shape[1])},
        )
        written.append(item.path)
    return written
