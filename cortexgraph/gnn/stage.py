"""The ``train-gnn`` and ``predict`` stages: train a node classifier over a cohort's graphs, apply it.

Method: the GNN paper (Schiffer et al., MICCAI 2021; docs/references.md). One model is trained over the graphs of all brains except
the transfer brain (default B07, held out entirely), both hemispheres, together: an epoch is one
pass over all labelled training nodes (``train_mask & y >= 0``) of all these graphs.

Outputs of :func:`train_gnn` (stage ``train-gnn@<name>``) in
``<cohort>/derivatives/cortexgraph/runs/<name>/``::

    model.pt               the trained model (weights + NodeClassifier configuration + area ids)
    config.json            every setting of the run (with the encoder whose CY it uses), the graphs it
                           used and their node counts
    history.tsv            one row per epoch: epoch loss train_acc seconds nodes_per_s
    checkpoints/           the training state after the last finished epoch (resumes an interrupted
                           run of the same key; not an output)

and its record ``derivatives/cortexgraph/records/train-gnn@<name>.json``.

:func:`predict_brain` (stage ``predict@<name>`` of a brain) writes
``<brain>/predictions/<name>/<hemi>.h5`` with ``proba`` float32 (N, K) and ``pred`` int64 (N,); the
graph file is not touched.

Presets (``preset=``): ``"seeds"`` is the method (width 512, 100 epochs, batches of 2048 output nodes,
LARS at a constant learning rate of 0.008); ``"demo"`` is sized for the demo phantom on a 2-core CPU
(see ``PRESETS``; docs/gnn.md gives its measured time); ``"auto"`` takes ``seeds`` on a GPU and
``demo`` on a CPU, and the run is named by the preset it took.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cortexgraph.data.manifest import DERIVATIVES, format_tsv, read_tsv
from cortexgraph.data.names import check_name, is_name
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.graphs import node_stages
from cortexgraph.derivatives.layout import prediction_path, write_node_arrays
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.gnn.data import (
    default_encoder,
    feature_dims,
    graph_items,
    load_graphs,
    parse_features,
    training_stages,
)
from cortexgraph.outputs import atomic_path, write_json_atomic, write_text_atomic

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

#: graph size (nodes) from which ``predict`` on a CPU computes a GAT or SAGE model layer by layer
#: (:func:`cortexgraph.gnn.inference.layerwise_proba`: bounded memory, float16 activations) instead
#: of exact k-hop batches (a whole brain's hemisphere at 0.3 mm has about 430k nodes; k-hop batches
#: of both hemispheres of one peaked at 11.5 GB, benchmarks/results/full_brain.md)
LAYERWISE_MIN_NODES = 200_000

#: Training settings per preset. ``seeds``: the published settings (GNN paper). ``demo``: a narrower
#: network, fewer epochs and smaller batches (more steps per epoch) with a larger learning rate, so
#: the demo phantom trains in about a minute on two CPU cores.
PRESETS: dict[str, dict[str, Any]] = {
    "seeds": {"hidden": 512, "epochs": 100, "batch_size": 2048, "lr": 0.008},
    "demo": {"hidden": 64, "epochs": 6, "batch_size": 512, "lr": 0.3},
}


# -- preset by machine, and a run-time estimate ------------------------------------------------------
#: ``--preset auto``: the method's settings on a GPU, the small ``demo`` settings on a CPU (the
#: method's take hours per run there: ~190 CPU-s per GAT3 epoch on demo-sized graphs).
AUTO_PRESET = {"cuda": "seeds", "cpu": "demo"}

#: Training throughput on a CPU (labelled training nodes per second, one thread) at widths 64 and
#: 512, 3 layers, measured on a 2-core x86_64 VM (benchmarks/results/gnn.md: GAT3 137 at width 512 on
#: seeds-sized graphs, 117 on demo-sized ones; GAT3 ~2,100 at width 64; SAGE3 423, MLP3 5,179 at width
#: 512; MLP3 ~53,000 at width 64). Used only for the estimate printed before training.
CPU_NODES_PER_S: dict[str, dict[int, float]] = {
    "gat": {64: 1500.0, 512: 120.0},
    "sage": {64: 5000.0, 512: 420.0},
    "mlp": {64: 50000.0, 512: 5000.0},
    "linear": {64: 100000.0, 512: 100000.0},
}


def resolve_preset(preset: str, device_type: str) -> str:
    """``auto`` -> :data:`AUTO_PRESET` of the device type (``cuda`` or ``cpu``); others unchanged."""
    if preset != "auto":
        return preset
    return AUTO_PRESET["cuda" if device_type == "cuda" else "cpu"]


def estimate_train_seconds(
    model: str, layers: int, hidden: int, epochs: int, train_nodes: int, device_type: str
) -> float | None:
    """Rough wall time (s) of training on a CPU (:data:`CPU_NODES_PER_S`, interpolated log-log in
    the width; GNN cost grows with the neighbourhood, about (layers / 3)^2, MLP cost with layers / 3);
    None on a GPU (not measured yet) or without training nodes. Within a factor of ~2 on an idle
    machine of that class; one thread."""
    if device_type != "cpu" or train_nodes <= 0 or model not in CPU_NODES_PER_S:
        return None
    table = CPU_NODES_PER_S[model]
    slope = np.log(table[512] / table[64]) / np.log(512 / 64)
    rate = table[64] * (max(int(hidden), 1) / 64) ** slope
    depth = max(int(layers), 1) / 3
    rate /= depth**2 if model in ("gat", "sage") else depth
    return float(epochs) * float(train_nodes) / rate


def _training_nodes(store: Derivatives, brains: Sequence[str]) -> int:
    """Labelled training nodes of these brains, from their node-labels records (0 if unknown)."""
    total = 0
    for brain in brains:
        record = store.record(StageId("node-labels", brain))
        for value in (record.measured if record else {}).values():
            if isinstance(value, dict):
                total += int(value.get("train_nodes", 0))
    return total


def _announce(preset: str, requested: str, settings: dict, model: str, layers: int,
              train_nodes: int, device_type: str) -> None:  # fmt: skip
    """Log the preset chosen and the estimated training time before training starts."""
    seconds = estimate_train_seconds(
        model, layers, settings["hidden"], settings["epochs"], train_nodes, device_type
    )
    why = f" (auto on {device_type})" if requested == "auto" else ""
    estimate = (
        f"; about {_duration(seconds)} on this CPU (rough, from measured throughput; "
        f"{train_nodes} training nodes x {settings['epochs']} epochs)"
        if seconds is not None
        else ""
    )
    log.info(
        "train-gnn: preset %s%s: width %d, %d epochs, batches of %d%s",
        preset, why, settings["hidden"], settings["epochs"], settings["batch_size"], estimate,
    )  # fmt: skip
    if seconds is not None and seconds > 3600 and preset != "demo":
        log.warning(
            "train-gnn: preset %s on a CPU takes about %s: use a GPU, or --preset demo (width 64, "
            "6 epochs) to try the pipeline",
            preset,
            _duration(seconds),
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.0f} years"

def run_suffix(
    preset: str = "seeds",
    transfer: str | None = "B07",
    seed: int = 0,
    epochs: int | None = None,
    overrides: dict | None = None,
) -> str:
    """The part of a default run name that names its settings: ``-<preset>``, ``-e<epochs>``,
    ``-t<transfer>``, ``-s<seed>`` when they differ from seeds / the preset's epochs / B07 / 0, and
    ``-x<6 hex>`` (a hash of ``overrides``: width, batch size, learning rate, encoder... set apart
    from the preset) when there are any."""
    suffix = ""
    if preset != "seeds":
        suffix += f"-{preset}"
    if epochs is not None and preset in PRESETS and int(epochs) != PRESETS[preset]["epochs"]:
        suffix += f"-e{int(epochs)}"
    if transfer != "B07":
        suffix += f"-t{transfer or 'none'}"
    if seed:
        suffix += f"-s{seed}"
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    if extra:
        import hashlib
        import json

        text = json.dumps(extra, sort_keys=True, default=str)
        suffix += "-x" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return suffix


def default_run_name(
    model: str, layers: int, features: Sequence[str], *settings: Any, **named_settings: Any
) -> str:
    """``<model><layers>-<features>`` (e.g. ``gat3-cy-pm-co``, ``linear-cy``) followed by
    :func:`run_suffix` of the other arguments (``preset``, ``transfer``, ``seed``, ``epochs``,
    ``overrides``, by position or name, with its defaults), so runs of other settings never share a
    folder."""
    name = f"{model}{'' if model == 'linear' else layers}-{'-'.join(parse_features(features))}"
    return name + run_suffix(*settings, **named_settings)


def resolve_run(run: str | os.PathLike, cohort_root: str | os.PathLike | None = None) -> Path:
    """The folder of a model run, from its name (``<cohort>/derivatives/cortexgraph/runs/<name>``) or
    from the folder's path.

    ``cohort_root`` defaults to ``$CORTEXGRAPH_ROOT``. Raises CortexgraphError when neither exists,
    and for a name that is not a valid run name (names.NAME_RULE).
    """
    candidates = []
    root = cohort_root or os.environ.get("CORTEXGRAPH_ROOT")
    text = str(run)
    if root and is_name(text):
        candidates.append(Path(root) / RUNS_DIR / text)
    candidates.append(Path(text))
    for folder in candidates:
        if (folder / "config.json").is_file():
            folder = folder.resolve()
            check_name(folder.name, "run name", file=folder)
            return folder
    raise CortexgraphError(
        f"run {text!r} not found (looked for config.json in: "
        f"{', '.join(str(c) for c in candidates)})",
        fix="train it with `cortexgraph train-gnn`, pass --root <cohort>, or give the run folder",
    )


def run_settings(cohort_root: str | os.PathLike, run: str | None) -> dict | None:
    """The ``config.json`` of a model run of the cohort (its training and transfer brains...), or
    None when there is no such run (pictures and reports then leave the run's roles out)."""
    if not run:
        return None
    try:
        return run_config(resolve_run(run, cohort_root))
    except (CortexgraphError, OSError, ValueError):
        return None


def run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` of a run folder."""
    import json

    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CortexgraphError(f"cannot read the run configuration ({exc})", file=path) from None


def cohort_of_run(run_dir: str | os.PathLike, cohort_root: str | os.PathLike | None = None) -> Path:
    """The cohort a run belongs to: the folder holding ``derivatives/cortexgraph/runs/<name>``.

    A run folder outside that layout, or outside ``cohort_root`` when given, is refused: a run's
    outputs always go to the cohort it was trained on.
    """
    run_dir = Path(run_dir).resolve()
    parents = run_dir.parents
    guess = parents[len(RUNS_DIR.parts)] if len(parents) > len(RUNS_DIR.parts) else None
    if (
        guess is None
        or run_dir.parent != (guess / RUNS_DIR)
        or not (guess / "cohort.toml").is_file()
        or (cohort_root is not None and guess != Path(cohort_root).resolve())
    ):
        raise CortexgraphError(
            "this run folder is not in the runs folder of "
            + ("the cohort given" if cohort_root is not None else "a cohort"),
            file=run_dir,
            fix="give the run by name with --root <cohort>, or the folder "
            "<cohort>/derivatives/cortexgraph/runs/<name>",
        )
    return guess


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


def _named_encoder(store: Derivatives, brains: Sequence[str], encoder: str) -> str | None:
    """``encoder`` when the default encoder of ``brains`` would be another (or none), else None."""
    try:
        return None if default_encoder(store, brains) == encoder else encoder
    except CortexgraphError:
        return encoder


def _refuse_transfer_leak(store: Derivatives, encoder: str, transfer: str | None) -> None:
    """A run's transfer brain must be the brain its encoder held out: otherwise the transfer brain is
    scored with features learned from its own sections. Nothing to check without a transfer brain."""
    if not transfer:
        return
    record = store.record(StageId("train-encoder", None, (encoder,)))
    if record is None:
        log.warning(
            "encoder %s has no train-encoder record (trained elsewhere): cannot check that it "
            "never saw the transfer brain %s",
            encoder,
            transfer,
        )
        return
    held_out = record.parameters.get("preset", {}).get("transfer_brain") or None
    if held_out != transfer:
        seen = f"held out {held_out}" if held_out else "held out no brain"
        raise ParameterError(
            f"encoder {encoder} {seen} and was trained on sections of {transfer}; a run with "
            f"transfer brain {transfer} would score {transfer} with features learned from it",
            file=str(store.record_path(StageId("train-encoder", None, (encoder,)))),
            fix=f"train an encoder that holds out {transfer} (`cortexgraph train-encoder "
            f"--transfer {transfer} --name {encoder}-t{transfer}`), compute features with it, "
            f"and pass --encoder {encoder}-t{transfer}",
        )


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
    encoder: str | None = None,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train a node classifier over the graphs of a cohort; return its run folder.

    Parameters
    ----------
    cohort_root : path-like
        The cohort (``cohort.toml``, ``areas.tsv``; graphs and node features in its derivatives).
    model : {"gat", "sage", "mlp", "linear"}
    layers : int
        GNN / FC layers after the input projections (3, 5 or 7 in the method; ignored for linear).
    features : str or sequence of str
        Non-empty subset of cy, pm, co (``"cy,pm,co"``).
    transfer : str or None
        Brain held out entirely (never trained on); None trains on every brain.
    epochs : int, optional
        Default: the preset's.
    name : str, optional
        Run name (folder ``runs/<name>``); default :func:`default_run_name`.
    preset : {"seeds", "demo", "auto"}
        Default width, epochs, batch size and learning rate (``PRESETS``); explicit arguments win.
        ``auto``: ``seeds`` on a GPU, ``demo`` on a CPU (:func:`resolve_preset`). The preset and an
        estimate of the training time are logged before training.
    hidden, batch_size, lr : optional
        Override the preset (width of every layer; output nodes per step; LARS learning rate).
    full_batch : bool
        One step per epoch on the union of all training graphs instead of mini-batches.
    sampler : {"auto", "own", "pyg"}
        Neighbourhood sampling: this package's torch sampler or PyG's ``NeighborLoader`` (needs
        pyg-lib); "auto" takes PyG when pyg-lib is installed and training runs on the CPU.
    seed : int
        Seeds initialisation, dropout, sampling and batch order (same seed = same model).
    device : str, optional
        "cpu", "cuda" or "auto" (default: CUDA when available). Under ``torchrun`` every process
        trains on its GPU with DistributedDataParallel; rank 0 writes the files.
    amp : bool
        Mixed precision on CUDA.
    encoder : str, optional
        The encoder whose CY features to use (default: the only encoder with CY on every training
        brain). Recorded in the run, and used again by ``predict``.
    overwrite : bool
        Retrain even when the run is current.
    wait_s : float
        How long to wait for the run's lock.
    progress : callable, optional
        Called with each epoch's record (epoch, loss, train_acc, seconds, nodes_per_s).

    Returns
    -------
    pathlib.Path
        The run folder (module docstring). A run whose key matches (same settings, same area table,
        same upstream features) is reused; otherwise it is retrained, and the log says why.
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
    requested_encoder = encoder
    if model not in KINDS:
        raise ParameterError(f"unknown model {model!r}", fix=f"use one of {', '.join(KINDS)}")
    requested_preset = preset
    preset = resolve_preset(preset, pick_device(device).type)
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown preset {preset!r}", fix=f"use one of {', '.join(PRESETS)} or auto"
        )
    if sampler not in ("auto", "own", "pyg"):
        raise ParameterError(f"unknown sampler {sampler!r}", fix="use auto, own or pyg")
    features = parse_features(features)
    settings = dict(PRESETS[preset])
    for key, value in (("hidden", hidden), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            settings[key] = value
    for key in ("hidden", "epochs", "batch_size"):
        if isinstance(settings[key], bool) or not isinstance(settings[key], int) or settings[key] < 1:
            raise ParameterError(f"{key} must be an integer >= 1, got {settings[key]!r}")
    if not (isinstance(settings["lr"], int | float) and 0 < settings["lr"] < float("inf")):
        raise ParameterError(f"lr must be a finite number > 0, got {settings['lr']!r}")
    layers = int(layers)
    if model != "linear" and not 1 <= layers <= 64:
        raise ParameterError(f"layers must be in 1..64, got {layers}")

    cohort = find_cohort(cohort_root)
    cohort_root = cohort.root
    store = Derivatives.of(cohort)
    init_distributed_from_env()  # a no-op unless started by torchrun
    if transfer and transfer not in cohort.brain_ids:
        raise ParameterError(
            f"transfer brain {transfer!r} is not in the cohort ({', '.join(cohort.brain_ids)})",
            file=cohort.manifest_path,
            fix="pick one of the cohort's brains with --transfer, or --transfer none",
        )
    train_brains = [b for b in cohort.brain_ids if b != transfer]
    if not train_brains:
        raise ParameterError("no brain left to train on", fix="choose another transfer brain")
    if "cy" in features:
        encoder = check_name(
            default_encoder(store, train_brains) if encoder is None else encoder, "encoder name"
        )
        _refuse_transfer_leak(store, encoder, transfer)
    else:
        encoder = None
    overrides = {
        "hidden": hidden,
        "batch_size": batch_size,
        "lr": lr,
        "full_batch": full_batch or None,
        "sampler": None if sampler == "auto" else sampler,
        # an encoder named only when it is not the one the default would pick
        "encoder": None if encoder is None or not requested_encoder
        else _named_encoder(store, train_brains, encoder),
    }
    run_name = check_name(
        default_run_name(model, layers, features, preset, transfer, seed, epochs, overrides)
        if name is None
        else name,
        "run name",
    )
    run_dir = Path(cohort_root) / RUNS_DIR / run_name
    area_ids = [int(i) for i in cohort.areas.ids]
    num_classes = len(area_ids)

    device_t = pick_device(device)
    use_pyg = sampler == "pyg" or (
        sampler == "auto" and pyg_sampler_available() and device_t.type == "cpu"
    )
    settings_record = {
        "model": model,
        "layers": layers if model != "linear" else 0,
        "features": list(features),
        "encoder": encoder,
        "transfer": transfer or None,
        "train_brains": train_brains,
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
        "area_ids": area_ids,
    }
    sid = StageId("train-gnn", None, (run_name,))
    with StageRun(
        store,
        sid,
        parameters=settings_record,
        inputs=[cohort.area_table_path],
        upstream=training_stages(train_brains, features, encoder, labels=True),
        overwrite=overwrite,
        wait_s=wait_s,
        follower=not is_main_process(),
    ) as run:
        if run.reuse:
            log.info("run %s is up to date (%s)", run_name, run_dir)
            return run_dir
        _announce(preset, requested_preset, settings, model, layers,
                  _training_nodes(store, train_brains), device_t.type)  # fmt: skip
        items = graph_items(store, train_brains)
        dims = feature_dims(store, items[0], features, encoder)
        for item in items[1:]:
            other = feature_dims(store, item, features, encoder)
            if other != dims:
                raise CortexgraphError(
                    f"feature widths {other} of {item.key} differ from {dims} of {items[0].key}",
                    fix="compute the features of all brains with the same encoder and atlas",
                )
        config: dict[str, Any] = {
            "name": run_name,
            **settings_record,
            "feature_dims": dims,
            "num_classes": num_classes,
            "train_graphs": [item.key for item in items],
            "device": str(device_t),
            "amp": bool(amp),
            "key": run.key,
        }
        checkpoints = run_dir / "checkpoints"
        if is_main_process():
            key_file = checkpoints / "KEY"
            resumable = key_file.is_file() and key_file.read_text().strip() == run.key
            if not resumable:  # checkpoints of other settings must not be resumed
                shutil.rmtree(checkpoints, ignore_errors=True)
                checkpoints.mkdir(parents=True, exist_ok=True)
                write_text_atomic(key_file, run.key + "\n")
        barrier()

        load_start = time.perf_counter()
        load_graphs(store, items, features, encoder=encoder)
        graphs = [item.data for item in items]
        for item in items:
            if int(item.data.y.max()) >= num_classes:
                raise CortexgraphError(
                    f"class index {int(item.data.y.max())} >= number of areas {num_classes} in "
                    f"{item.key}",
                    fix="the graph was labelled with another area table; rerun `cortexgraph features`",
                )
        load_seconds = time.perf_counter() - load_start

        torch.manual_seed(seed)
        net = NodeClassifier(
            dims, num_classes, kind=model, num_layers=max(layers, 1), hidden=config["hidden"]
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

        from cortexgraph.training.checkpoint import plain

        payload = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "model_config": plain(net.config),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "features": list(features),
            "encoder": encoder,
            "area_ids": area_ids,
            "epochs": len(history["epoch"]),
            "key": run.key,
        }
        with atomic_path(run_dir / "model.pt") as tmp:
            with open(tmp, "wb") as handle:  # a file object: the archive names no file
                torch.save(payload, handle)
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
        run.commit(
            [run_dir / "model.pt", run_dir / "history.tsv", run_dir / "config.json"], measured
        )
    return run_dir


def predict_brain(
    run: str | os.PathLike,
    brain: str,
    cohort_root: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    batch_size: int = 8192,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Stage ``predict@<run>`` of a brain: per-node class probabilities and labels of a trained run.

    Parameters
    ----------
    run : path-like or str
        Run folder or run name (see :func:`resolve_run`).
    brain : str
        Brain id; every hemisphere graph of its build-graph record is processed.
    cohort_root : path-like, optional
        Default: the run's cohort.
    device : str, optional
    batch_size : int
        Output nodes per forward pass (each on its exact k-hop neighbourhood; same result as one
        whole-graph pass, so not part of the stage key). On a CPU, a GAT or SAGE graph of at least
        ``LAYERWISE_MIN_NODES`` nodes is computed layer by layer instead (bounded memory; float16
        activations, within 5e-3 of the exact pass); the record's ``method`` says which.
    overwrite, wait_s : see :class:`~cortexgraph.derivatives.StageRun`.
    progress : callable (stage, done, total), optional
        Called after every batch, ``stage`` = ``predict <hemi>``.

    Returns
    -------
    list of pathlib.Path
        ``<brain>/predictions/<run>/<hemi>.h5``: node arrays ``proba`` float32 (N, K) (softmax over
        the cohort's areas, class index = rank of the area id) and ``pred`` int64 (N,) = argmax.
    """
    from cortexgraph.gnn.train import predict_proba
    from cortexgraph.training.runtime import pick_device

    run_dir = resolve_run(run, cohort_root)
    cohort_root = cohort_of_run(run_dir, cohort_root)
    store = Derivatives(cohort_root)
    run_name = run_dir.name
    check_name(brain, "brain id")
    config = run_config(run_dir)
    features = tuple(config["features"])
    encoder = config.get("encoder")
    sid = StageId("predict", brain, (run_name,))
    with StageRun(
        store,
        sid,
        parameters={"run": run_name},
        upstream=[
            StageId("train-gnn", None, (run_name,)),
            *node_stages(brain, features, encoder=encoder),
        ],
        overwrite=overwrite,
        wait_s=wait_s,
    ) as stage:
        if stage.reuse:
            return stage.reused_outputs()
        model, config = load_run(run_dir)
        graph_key = stage.upstream_records[f"{brain}/build-graph"].key
        written, measured = [], {}
        on_cpu = pick_device(device).type == "cpu"
        for item in graph_items(store, [brain]):
            load_graphs(store, [item], features, encoder=encoder, labels=False)
            layerwise = (
                on_cpu
                and model.kind in ("gat", "sage")
                and int(item.data.num_nodes) >= LAYERWISE_MIN_NODES
            )
            report = None
            if progress is not None:
                report = functools.partial(progress, f"predict {item.hemi}")
            proba = predict_proba(
                [item.data], model, batch_size=batch_size, device=device, layerwise=layerwise,
                progress=report,
            )[0]  # fmt: skip
            pred = proba.argmax(1).astype(np.int64)
            item.data = None
            out = prediction_path(store.root, brain, run_name, item.hemi)
            write_node_arrays(out, graph_key, len(pred), proba=proba.astype(np.float32), pred=pred)
            written.append(out)
            measured[item.hemi] = {
                "nodes": int(proba.shape[0]),
                "classes": int(proba.shape[1]),
                "method": "layerwise" if layerwise else "k-hop",
            }
        stage.commit(written, measured)
    return written
