"""The ``evaluate`` stage: macro F1 of trained runs, per-area F1, and the GNN paper's two comparisons.

Method: the GNN paper (Schiffer et al., MICCAI 2021; docs/references.md). **Test F1** = macro F1 over the labelled nodes of the
test sections (``test_mask & y >= 0``) of the brains the run was trained on; **transfer F1** = macro
F1 over all labelled nodes (``y >= 0``) of the transfer brain. Macro F1 is the mean of the per-area
F1 over the areas that occur among the true or predicted labels of the evaluated nodes
(:func:`cortexgraph.training.metrics.macro_f1`, equal to scikit-learn's ``f1_score(average="macro")``).

Outputs of :func:`evaluate_run` in ``<run>/evaluation/``::

    metrics.json             test_f1, transfer_f1, node counts, F1 per brain
    per_area_f1.tsv          area_id name n_test f1_test n_transfer f1_transfer (NaN: area absent)
    confusion_test.tsv       confusion matrix over the areas (rows true, columns predicted), test nodes
    confusion_transfer.tsv   the same for the transfer brain
    per_area_f1.png          bar chart of the per-area F1 (test and transfer), area names; an area
                             with no true nodes in a split is a circle (predicted: F1 = 0) or a
                             gray "x" (not predicted either: no value), never a bar of F1 = 0
    confusion_test.png       the test confusion matrix as a picture (row-normalised, area names;
                             rows of areas without nodes in gray)
    confusion_transfer.png   the same for the transfer brain

Outputs of :func:`compare_models` in ``<cohort>/derivatives/cortexgraph/comparisons/``::

    <mode><suffix>.tsv       model layers features run test_f1 transfer_f1 (one row per run)
    <mode><suffix>.png       grouped bar chart: test and transfer F1 per run

(``<suffix>``: the settings, as in run names, :func:`cortexgraph.gnn.stage.run_suffix`).

with ``mode`` ``depth`` (linear, MLP, SAGE, GAT at depths 3/5/7, CY only) or ``features`` (GAT3 and
MLP3 with every non-empty combination of CY, PM, CO).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cortexgraph.data.manifest import DERIVATIVES, find_cohort, format_tsv
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.graphs import node_stages
from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.data import FEATURE_TYPES, features_label, graph_items, load_graphs
from cortexgraph.gnn.stage import (
    cohort_of_run,
    load_run,
    resolve_run,
    run_config,
    run_suffix,
    train_gnn,
)
from cortexgraph.outputs import write_json_atomic, write_text_atomic
from cortexgraph.training.metrics import confusion_matrix, macro_f1, per_class_f1

__all__ = [
    "evaluate_run",
    "evaluate_runs",
    "evaluation_nodes",
    "compare_models",
    "comparison_runs",
    "COMPARISONS",
]

log = logging.getLogger(__name__)

COMPARISONS_DIR = DERIVATIVES / "comparisons"


def comparison_runs(mode: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """The runs of one comparison as ``(model, layers, features)``.

    ``depth``: linear (CY), then MLP, SAGE, GAT at 3, 5, 7 layers, all with CY only (10 runs).
    ``features``: GAT3 and MLP3 with each of the 7 non-empty combinations of CY, PM, CO (14 runs).
    """
    if mode == "depth":
        runs: list[tuple[str, int, tuple[str, ...]]] = [("linear", 0, ("cy",))]
        runs += [(m, d, ("cy",)) for m in ("mlp", "sage", "gat") for d in (3, 5, 7)]
        return runs
    if mode == "features":
        combos = [
            c
            for k in range(1, len(FEATURE_TYPES) + 1)
            for c in itertools.combinations(FEATURE_TYPES, k)
        ]
        return [(m, 3, c) for m in ("gat", "mlp") for c in combos]
    raise CortexgraphError(f"unknown comparison {mode!r}", fix="use depth or features")


COMPARISONS = ("depth", "features")


def evaluation_nodes(graph, transfer: bool):
    """Nodes that are scored: all labelled nodes of a transfer graph, else the labelled test nodes.

    Returns a bool tensor (N,).
    """
    labelled = graph.y >= 0
    return labelled if transfer else labelled & graph.test_mask.bool()


def _score(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, Any]:
    labels = np.arange(k)
    _, f1 = per_class_f1(y_true, y_pred, labels)
    return {
        "macro_f1": macro_f1(y_true, y_pred, labels) if y_true.size else float("nan"),
        "nodes": int(y_true.size),
        "per_class": f1,
        "confusion": confusion_matrix(y_true, y_pred, labels),
    }


def evaluate_run(
    run: str | os.PathLike,
    cohort_root: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    overwrite: bool = False,
    batch_size: int = 8192,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """Score one trained run on test sections and on the transfer brain; write ``evaluation/``.

    Parameters
    ----------
    run : path-like or str
        Run folder or name (:func:`cortexgraph.gnn.stage.resolve_run`).
    cohort_root : path-like, optional
        Default: the run's cohort.
    device : str, optional
    overwrite : bool
        Recompute even when the evaluation record is current.
    batch_size : int
        Scored nodes per forward pass (each computed on its exact k-hop neighbourhood).
    wait_s : float
        Seconds to wait for another process evaluating the same run (its lock) before refusing
        (:class:`~cortexgraph.derivatives.StageRun`).

    Returns
    -------
    dict
        ``run``, ``name``, ``model``, ``layers``, ``features``, ``test_f1``, ``transfer_f1`` (NaN when
        the run has no transfer brain or it has no graph), ``test_nodes``, ``transfer_nodes``,
        ``per_brain`` ({brain: {"f1", "nodes", "role"}}), ``evaluation_dir``.
    """
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.gnn.train import predict_proba

    run_dir = resolve_run(run, cohort_root)
    cohort_root = cohort_of_run(run_dir, cohort_root)
    run_name = run_dir.name
    out_dir = run_dir / "evaluation"
    metrics_path = out_dir / "metrics.json"
    config = run_config(run_dir)
    cohort = Cohort.read(cohort_root)
    store = Derivatives.of(cohort)
    features, encoder = tuple(config["features"]), config.get("encoder")
    transfer = config.get("transfer")
    roles = [(b, "test") for b in config["train_brains"]]
    if transfer:
        if store.record(StageId("build-graph", transfer)) is None:
            log.warning("transfer brain %s has no graph: no transfer F1", transfer)
        else:
            roles.append((transfer, "transfer"))
    upstream = [StageId("train-gnn", None, (run_name,))]
    for brain, _ in roles:
        upstream += node_stages(brain, features, encoder=encoder, labels=True)
    with StageRun(
        store,
        StageId("evaluate", None, (run_name,)),
        parameters={"run": run_name, "roles": roles},
        inputs=[cohort.area_table_path],
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as stage:
        if stage.reuse:
            return json.loads(metrics_path.read_text(encoding="utf-8"))
        result = _evaluate(run_dir, store, cohort, roles, out_dir, device, batch_size, predict_proba)
        stage.commit(
            [p for p in out_dir.iterdir() if p.is_file() and p.name in _EVALUATION_FILES],
            {"test_f1": result["test_f1"], "transfer_f1": result["transfer_f1"]},
        )
    return result


_EVALUATION_FILES = (
    "metrics.json",
    "per_area_f1.tsv",
    "confusion_test.tsv",
    "confusion_transfer.tsv",
    "per_area_f1.png",
    "confusion_test.png",
    "confusion_transfer.png",
)


def _evaluate(run_dir, store, cohort, roles, out_dir, device, batch_size, predict_proba) -> dict:
    """Score the run on each brain's evaluated nodes and write ``evaluation/`` (no record)."""
    model, config = load_run(run_dir)
    areas = cohort.areas
    k = int(config["num_classes"])
    if [int(i) for i in areas.ids] != [int(i) for i in config["area_ids"]]:
        raise CortexgraphError(
            "the cohort's area table differs from the one the run was trained with",
            file=cohort.area_table_path,
            fix="evaluate with the cohort the run was trained on, or retrain the run",
        )
    collected: dict[str, tuple[list, list]] = {"test": ([], []), "transfer": ([], [])}
    per_brain: dict[str, dict[str, Any]] = {}
    for brain, role in roles:
        yt_brain, yp_brain = [], []
        for item in graph_items(store, [brain]):
            load_graphs(store, [item], config["features"], encoder=config.get("encoder"))
            g = item.data
            mask = evaluation_nodes(g, role == "transfer")
            if int(mask.sum()) == 0:
                item.data = None
                continue
            proba = predict_proba([g], model, device=device, batch_size=batch_size, nodes=[mask])[0]
            m = mask.numpy()
            yt_brain.append(g.y.numpy()[m])
            yp_brain.append(proba[m].argmax(1))
            item.data = None
        if yt_brain:
            yt, yp = np.concatenate(yt_brain), np.concatenate(yp_brain)
            collected[role][0].append(yt)
            collected[role][1].append(yp)
            per_brain[brain] = {"role": role, "f1": macro_f1(yt, yp), "nodes": int(yt.size)}

    scores = {}
    for role, (yts, yps) in collected.items():
        yt = np.concatenate(yts) if yts else np.zeros(0, np.int64)
        yp = np.concatenate(yps) if yps else np.zeros(0, np.int64)
        scores[role] = _score(yt, yp, k)

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, area in enumerate(areas.areas):
        n_test = int(scores["test"]["confusion"][i].sum())
        n_transfer = int(scores["transfer"]["confusion"][i].sum())
        rows.append(
            (
                area.id,
                area.name,
                n_test,
                _fmt(scores["test"]["per_class"][i]),
                n_transfer,
                _fmt(scores["transfer"]["per_class"][i]),
            )
        )
    write_text_atomic(
        out_dir / "per_area_f1.tsv",
        format_tsv(("area_id", "name", "n_test", "f1_test", "n_transfer", "f1_transfer"), rows),
    )
    names = [a.name for a in areas.areas]
    for role in ("test", "transfer"):
        cm = scores[role]["confusion"]
        write_text_atomic(
            out_dir / f"confusion_{role}.tsv",
            format_tsv(
                ["true\\pred", *names],
                [[n, *row.tolist()] for n, row in zip(names, cm, strict=True)],
            ),
        )
    result = {
        "run": str(run_dir),
        "name": config["name"],
        "model": config["model"],
        "layers": config["layers"],
        "features": config["features"],
        "encoder": config.get("encoder"),
        "transfer": config.get("transfer"),
        "test_f1": scores["test"]["macro_f1"],
        "transfer_f1": scores["transfer"]["macro_f1"],
        "test_nodes": scores["test"]["nodes"],
        "transfer_nodes": scores["transfer"]["nodes"],
        "per_brain": per_brain,
        "evaluation_dir": str(out_dir),
    }
    splits = {
        "test": f"test sections of {', '.join(b for b, r in roles if r == 'test')}",
        "transfer": f"transfer brain {config.get('transfer')}",
    }
    _plot_per_area(out_dir / "per_area_f1.png", names, scores, config["name"], splits)
    for role in ("test", "transfer"):
        _plot_confusion(
            out_dir / f"confusion_{role}.png",
            scores[role]["confusion"],
            config["name"],
            names,
            splits[role],
        )
    write_json_atomic(out_dir / "metrics.json", result)
    return result


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4f}"


def evaluate_runs(
    runs: Sequence[str | os.PathLike],
    cohort_root: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    overwrite: bool = False,
    wait_s: float = 0.0,
) -> list[dict[str, Any]]:
    """:func:`evaluate_run` for each run, in order."""
    return [
        evaluate_run(r, cohort_root, device=device, overwrite=overwrite, wait_s=wait_s)
        for r in runs
    ]


def _display_name(model: str, layers: int, features: Sequence[str]) -> str:
    head = "Linear" if model == "linear" else f"{model.upper()}{layers}"
    return f"{head}-{features_label(features)}"


def compare_models(
    cohort_root: str | os.PathLike,
    mode: str,
    *,
    transfer: str | None = "B07",
    preset: str = "seeds",
    epochs: int | None = None,
    seed: int = 0,
    device: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    specs: Sequence[tuple[str, int, Sequence[str]]] | None = None,
    wait_s: float = 0.0,
) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Train (or reuse) and evaluate the runs of one of the GNN paper's comparisons; table + bar chart.

    Parameters
    ----------
    cohort_root : path-like
    mode : {"depth", "features"}
        See :func:`comparison_runs`.
    transfer, preset, epochs, seed, device
        Passed to :func:`cortexgraph.gnn.stage.train_gnn` for every run (runs are named by
        :func:`cortexgraph.gnn.stage.default_run_name`, so runs shared by both comparisons, and runs
        trained before with the same settings, are reused).
    overwrite : bool
        Retrain and re-evaluate every run.
    progress : callable, optional
        ``progress(mode, done, total)`` after each run.
    specs : sequence of (model, layers, features), optional
        Run these instead of :func:`comparison_runs` ``(mode)`` (a partial comparison).
    wait_s : float
        Seconds each training and evaluation waits for another process holding its lock.

    Returns
    -------
    (tsv_path, png_path, rows)
        ``<cohort>/derivatives/cortexgraph/comparisons/<mode>.tsv`` / ``.png`` and the rows
        (dicts with model, layers, features, run, test_f1, transfer_f1).
    """
    from cortexgraph.gnn.stage import resolve_preset
    from cortexgraph.training.runtime import pick_device

    preset = resolve_preset(preset, pick_device(device).type)  # "auto": by the machine
    all_specs = comparison_runs(mode)
    specs = all_specs if specs is None else list(specs)
    cohort = find_cohort(cohort_root)
    rows = []
    for i, (model, layers, features) in enumerate(specs):
        run_dir = train_gnn(
            cohort.root,
            model=model,
            layers=layers,
            features=features,
            transfer=transfer,
            epochs=epochs,
            preset=preset,
            seed=seed,
            device=device,
            overwrite=overwrite,
            wait_s=wait_s,
        )
        result = evaluate_run(
            run_dir, cohort.root, device=device, overwrite=overwrite, wait_s=wait_s
        )
        rows.append(
            {
                "label": _display_name(model, layers, features),
                "model": model,
                "layers": layers,
                "features": features_label(features),
                "run": run_dir.name,
                "test_f1": result["test_f1"],
                "transfer_f1": result["transfer_f1"],
            }
        )
        if progress is not None:
            progress(mode, i + 1, len(specs))
    out = cohort.root / COMPARISONS_DIR
    # settings in the file name (as in run names), so comparisons of other settings never mix
    stem = mode + run_suffix(preset, transfer, seed, epochs)
    tsv = out / f"{stem}.tsv"
    write_text_atomic(
        tsv,
        format_tsv(
            ("model", "layers", "features", "run", "test_f1", "transfer_f1"),
            [
                (
                    r["model"],
                    r["layers"],
                    r["features"],
                    r["run"],
                    _fmt(r["test_f1"]),
                    _fmt(r["transfer_f1"]),
                )
                for r in rows
            ],
        ),
    )
    png = out / f"{stem}.png"
    _plot_comparison(png, rows, mode)
    return tsv, png, rows


# ------------------------------------------------------------------------------------ pictures


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    from cortexgraph.outputs import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


_SPLIT_COLOURS = {"test": "#3b75af", "transfer": "#ef8636"}


def _plot_per_area(
    path: Path, names: list[str], scores: dict, title: str, splits: dict[str, str]
) -> None:
    """F1 per area for both splits, area names on the axis. Three cases are drawn apart: a bar (the
    area has true nodes in the split; an F1 of 0 is a sliver), an open circle at 0 (no true nodes,
    but the run predicted the area there: F1 = 0, counted in the macro F1), a gray "x" (the area is
    neither true nor predicted in the split: no value)."""
    test, transfer = scores["test"]["per_class"], scores["transfer"]["per_class"]
    keep = np.flatnonzero(np.isfinite(test) | np.isfinite(transfer))
    plt, fig, ax = _figure(max(7.0, 0.2 * keep.size + 2.5), 4.2)
    if keep.size == 0:
        ax.text(0.5, 0.5, "no scored nodes", ha="center", va="center")
        ax.set_axis_off()
        _save(plt, fig, path)
        return
    x = np.arange(keep.size)
    drawn: set[str] = set()
    for offset, role, values in ((-0.2, "test", test), (0.2, "transfer", transfer)):
        v = values[keep]
        n_true = scores[role]["confusion"].sum(axis=1)[keep]
        colour = _SPLIT_COLOURS[role]
        label = (
            f"{role}: {splits[role]} ({scores[role]['nodes']} nodes, "
            f"macro F1 {_fmt(scores[role]['macro_f1'])})"
        )
        bar = np.isfinite(v) & (n_true > 0)
        ax.bar(x[bar] + offset, np.maximum(v[bar], 0.012), 0.4, label=label, color=colour)
        only_predicted = np.isfinite(v) & (n_true == 0)
        if only_predicted.any():
            text = f"{role}: no true nodes, predicted (F1 = 0)"
            ax.plot(x[only_predicted] + offset, np.full(only_predicted.sum(), 0.03), "o",
                    mfc="none", mec=colour, markersize=4, label=text)  # fmt: skip
        missing = ~np.isfinite(v)
        if missing.any():
            missing_text = None if "x" in drawn else "neither true nor predicted (no value)"
            ax.plot(x[missing] + offset, np.full(missing.sum(), 0.03), "x", color="0.55",
                    markersize=4, label=missing_text)  # fmt: skip
            drawn.add("x")
    ax.set_xticks(x, [names[i] for i in keep], rotation=90, fontsize=6)
    ax.set_xlim(-0.7, keep.size - 0.3)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (an F1 of 0 is drawn as a sliver)", fontsize=8)
    ax.set_title(f"run {title}: F1 per area", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    _save(plt, fig, path)


def _plot_confusion(path: Path, cm: np.ndarray, title: str, names: list[str], split: str) -> None:
    """Row-normalised confusion matrix over the areas that occur (true or predicted), named on
    both axes with the node count of each row; rows of areas without true nodes in gray."""
    rows = cm.sum(1)
    keep = np.flatnonzero((rows > 0) | (cm.sum(0) > 0))
    side = max(4.5, 0.17 * keep.size + 2.2)
    plt, fig, ax = _figure(side + 1.2, side)
    if keep.size == 0:
        ax.text(0.5, 0.5, f"no scored nodes on the {split}", ha="center", va="center")
        ax.set_axis_off()
        _save(plt, fig, path)
        return
    sub = cm[np.ix_(keep, keep)].astype(float)
    totals = sub.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, sub / totals, np.nan)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(normalised), cmap=cmap, vmin=0, vmax=1,
                   interpolation="nearest")  # fmt: skip
    ticks = np.arange(keep.size)
    fontsize = 7 if keep.size <= 30 else 5.5
    ax.set_xticks(ticks, [names[i] for i in keep], rotation=90, fontsize=fontsize)
    ax.set_yticks(
        ticks,
        [f"{names[i]} ({int(rows[i])})" if rows[i] else f"{names[i]} (none)" for i in keep],
        fontsize=fontsize,
    )
    ax.set_xlabel("predicted area")
    ax.set_ylabel("true area (nodes)")
    n = int(cm.sum())
    ax.set_title(f"run {title}\nconfusion on the {split} ({n} nodes), rows normalised;"
                 "\ngray rows: no true nodes of the area", fontsize=8)  # fmt: skip
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("share of the row", fontsize=7)
    _save(plt, fig, path)


def _plot_comparison(path: Path, rows: list[dict], mode: str) -> None:
    plt, fig, ax = _figure(max(6.0, 0.55 * len(rows) + 2), 3.8)
    x = np.arange(len(rows))
    test = np.array([r["test_f1"] for r in rows], float)
    transfer = np.array([r["transfer_f1"] for r in rows], float)
    ax.bar(x - 0.2, np.nan_to_num(test), 0.4, label="test", color="#3b75af")
    ax.bar(x + 0.2, np.nan_to_num(transfer), 0.4, label="transfer", color="#ef8636")
    ax.set_xticks(x, [r["label"] for r in rows], rotation=60, ha="right", fontsize=7)
    top = np.nanmax(np.concatenate([test, transfer, [0.0]]))
    ax.set_ylim(0, min(1.0, max(0.1, 1.15 * top)))
    ax.set_ylabel("macro F1")
    ax.set_title({"depth": "model and depth (CY)", "features": "feature types"}[mode])
    ax.legend(fontsize=7)
    _save(plt, fig, path)
