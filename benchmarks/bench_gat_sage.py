"""GAT against SAGE on the phantom: which of the method's settings puts GAT below SAGE.

The reproduction harness (benchmarks/reproduce.py, docs/reproduction-demo.md) finds SAGE ahead of
GAT at some depth in every demo cohort, and a 16 times longer budget did not change that on the
tiny cohorts (benchmarks/results/gnn_epochs.md). The two layers are trained with different
regularisers in the method (GNN paper, Sect. 2.3; thesis Sect. 7.1.4): GAT with attention
dropout 0.5 on all neighbours, SAGE on 3 sampled neighbours per node and layer. This script
trains the harness's CY-only GAT and SAGE models on the harness's own cohorts with one of those
settings changed at a time, over several learner seeds, and scores them as ``evaluate`` does
(macro F1 over the labelled test nodes of the training brains, and over all labelled nodes of
the transfer brain B07):

* ``gat``: the method (attention dropout 0.5, all neighbours); ``sage``: the method (3 sampled
  neighbours);
* ``gat-ad0``: GAT without attention dropout; ``gat-ad25``: attention dropout 0.25;
* ``gat-h4``: GAT with 4 attention heads of 16 channels (the width stays 64);
* ``gat-f3``: GAT on 3 sampled neighbours, as SAGE; ``gat-ad0-f3``: both changes, so that GAT
  is regularised exactly as SAGE is;
* ``gat-mean``, ``gat-mean-f3``: ``gat-ad0`` and ``gat-ad0-f3`` with their attention fixed at
  the mean of the neighbours (attention vectors zero and not trained): the function of a SAGE
  layer, with the GAT layer's parameters and initialisation; they separate what learned attention
  does from what the rest of the GAT layer does;
* ``sage-full``: SAGE on all neighbours, as GAT.

For every GAT at one of ``--attention-depths`` it also measures what the trained attention does
(:func:`attention_summary`: how far each node's attention is from the plain mean, whether it
favours neighbours of the node's own area at area borders, and the F1 of the same model with its
attention replaced by the mean), and per cohort how many scored nodes have neighbours of two
areas at all (:func:`neighbourhoods`).

Everything else is ``train-gnn --preset demo`` (width 64, 6 epochs, batches of 512, LARS at rate
0.3): the models are built and trained with the library functions ``train-gnn`` calls
(:class:`cortexgraph.gnn.models.NodeClassifier`,
:func:`cortexgraph.gnn.train.train_node_classifier`), in memory; nothing is written into the
cohorts. With the learner seed equal to the cohort's phantom seed, ``gat`` and ``sage`` are the
harness's own GAT/SAGE runs, and the page compares their F1 with the harness's comparison table.

Usage::

    python benchmarks/bench_gat_sage.py OUT --harness REPRO_OUT --depths 3,5 \\
        --learner-seeds 1,2,3 --variants gat,gat-ad0,sage,sage-full --jobs 2

``REPRO_OUT`` is the work folder of ``benchmarks/reproduce.py --scale demo`` (its finished
cohorts, read only). Outputs: ``OUT/results.json`` (one entry per cohort, variant, depth and
learner seed: test and transfer F1, seconds; a rerun adds only what is missing),
``OUT/invocations.json`` (runs and load range of every invocation that trained runs; the page's
load), ``OUT/neighbourhoods.json`` (per cohort, how mixed the scored nodes' neighbourhoods are),
``OUT/bench_gat_sage.log``, and the page ``--page`` (default benchmarks/results/gat_sage.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce as rp  # noqa: E402

#: variant -> (layer kind, NodeClassifier keyword arguments, fanout, description)
VARIANTS: dict[str, tuple[str, dict, int | None, str]] = {
    "gat": ("gat", {}, None, "GAT, the method: attention dropout 0.5, all neighbours"),
    "gat-ad0": ("gat", {"attention_dropout": 0.0}, None, "GAT without attention dropout"),
    "gat-ad25": ("gat", {"attention_dropout": 0.25}, None, "GAT, attention dropout 0.25"),
    "gat-h4": ("gat", {"heads": 4}, None, "GAT with 4 heads of 16 channels"),
    "gat-f3": ("gat", {}, 3, "GAT on 3 sampled neighbours per node and layer"),
    "gat-ad0-f3": (
        "gat",
        {"attention_dropout": 0.0},
        3,
        "GAT without attention dropout, on 3 sampled neighbours (regularised as SAGE)",
    ),
    "gat-mean": (
        "gat",
        {"attention_dropout": 0.0, "mean_attention": True},
        None,
        "GAT whose attention is fixed at the mean (not trained), without attention dropout, on all "
        "neighbours: the function of a SAGE layer with the GAT layer's parameters and "
        "initialisation",
    ),
    "gat-mean-f3": (
        "gat",
        {"attention_dropout": 0.0, "mean_attention": True},
        3,
        "GAT whose attention is fixed at the mean (not trained), without attention dropout, on 3 "
        "sampled neighbours: the function of a SAGE layer with the GAT layer's parameters and "
        "initialisation",
    ),
    "sage": ("sage", {}, 3, "SAGE, the method: 3 sampled neighbours"),
    "sage-full": ("sage", {}, None, "SAGE on all neighbours"),
}
GNN_PRESET = "demo"

_GRAPHS: dict[str, tuple] = {}  # cohort root -> (train items, transfer items, classes), per worker


def _cohort_graphs(root: str) -> tuple:
    """The CY graphs of a harness cohort: training brains, transfer brain, number of areas."""
    if root not in _GRAPHS:
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.derivatives import Derivatives
        from cortexgraph.gnn.data import default_encoder, graph_items, load_graphs

        cohort = find_cohort(root)
        store = Derivatives.of(cohort)
        train = [b for b in cohort.brain_ids if b != rp.TRANSFER]
        encoder = default_encoder(store, train)
        items = load_graphs(store, graph_items(store, train), ["cy"], encoder=encoder)
        held = load_graphs(store, graph_items(store, [rp.TRANSFER]), ["cy"], encoder=encoder)
        _GRAPHS[root] = (items, held, len(cohort.areas.ids))
    return _GRAPHS[root]


def run_variant(
    root: str, variant: str, depth: int, seed: int, attention_depths: Sequence[int] = ()
) -> dict:
    """Train one variant as ``train-gnn --preset demo`` would and score it as ``evaluate`` does.
    Returns test_f1, transfer_f1, seconds (training), wall_seconds (training and scoring),
    cpu_seconds, and for a GAT at one of ``attention_depths`` what its attention does
    (``attention``: :func:`attention_summary`)."""
    import torch

    from cortexgraph.gnn.models import NodeClassifier
    from cortexgraph.gnn.stage import PRESETS
    from cortexgraph.gnn.train import train_node_classifier

    kind, options, fanout, _ = VARIANTS[variant]
    options = dict(options)
    fixed_mean = options.pop("mean_attention", False)
    items, held, k = _cohort_graphs(root)
    graphs = [item.data for item in items]
    preset = PRESETS[GNN_PRESET]
    torch.manual_seed(seed)  # as train_gnn does: the learner seed fixes the initialisation
    net = NodeClassifier(
        {"cy": int(graphs[0].x_cy.shape[1])}, k, kind=kind, num_layers=depth,
        hidden=preset["hidden"], **options,
    )  # fmt: skip
    if fixed_mean:  # attention vectors at zero and frozen: every neighbour weighted 1 / degree
        for layer in net.layers:
            layer.att.data.zero_()
            layer.att.requires_grad_(False)
    start, cpu0 = time.perf_counter(), time.process_time()
    history = train_node_classifier(
        graphs, net, epochs=preset["epochs"], batch_size=preset["batch_size"], lr=preset["lr"],
        fanout=fanout, seed=seed, device="cpu", use_pyg=False,
    )  # fmt: skip
    seconds, cpu = sum(history["seconds"]), time.process_time() - cpu0
    result: dict = {**_scores(net, items, held, k), "seconds": seconds}
    if kind == "gat" and depth in attention_depths:
        result["attention"] = attention_summary(net, items, held, k)
    wall = time.perf_counter() - start
    return {**result, "wall_seconds": wall, "cpu_seconds": cpu}


def _scores(net, items, held, k: int) -> dict:
    """Macro F1 over the labelled test nodes of the training brains (``test_f1``) and over all
    labelled nodes of the transfer brain (``transfer_f1``), as ``evaluate`` scores a run."""
    import numpy as np

    from cortexgraph.gnn.evaluate import evaluation_nodes
    from cortexgraph.gnn.train import predict_proba
    from cortexgraph.training.metrics import macro_f1

    scores = {}
    for split, group in (("test", items), ("transfer", held)):
        y_true, y_pred = [], []
        for item in group:
            mask = evaluation_nodes(item.data, split == "transfer")
            proba = predict_proba([item.data], net, device="cpu", nodes=[mask])[0]
            m = mask.numpy()
            y_true.append(item.data.y.numpy()[m])
            y_pred.append(proba[m].argmax(1))
        scores[f"{split}_f1"] = macro_f1(
            np.concatenate(y_true), np.concatenate(y_pred), np.arange(k)
        )
    return scores


def attention_summary(net, items, held, k: int) -> dict:
    """What a trained GAT attends to, on the labelled test nodes of the training brains:

    * ``entropy``: per layer, the mean normalised entropy of a node's attention over its
      neighbours (1: the plain mean; :func:`cortexgraph.gnn.attention.normalised_entropy`);
    * ``border_excess``: per layer, at border nodes (labelled neighbours of their own area and of
      another), the attention share on their own area minus that share under the mean
      (:func:`cortexgraph.gnn.attention.same_label_attention`); ``border_nodes``: how many;
    * ``test_f1`` / ``transfer_f1``: the model scored with every layer's attention replaced by
      the mean (:func:`cortexgraph.gnn.attention.mean_attention`), everything else as trained.
    """
    import numpy as np

    from cortexgraph.gnn.attention import (
        attention_per_layer,
        mean_attention,
        normalised_entropy,
        same_label_attention,
    )
    from cortexgraph.gnn.evaluate import evaluation_nodes

    entropy: list[list[float]] = []
    excess: list[list[float]] = []
    border = 0
    for item in items:
        graph = item.data
        source, target = graph.edge_index.numpy()
        labels = graph.y.numpy()
        scored = evaluation_nodes(graph, False).numpy()
        for layer, alpha in enumerate(attention_per_layer(net, graph)):
            if len(entropy) <= layer:
                entropy.append([])
                excess.append([])
            ratio = normalised_entropy(target, alpha, graph.num_nodes)[scored]
            entropy[layer] += ratio[np.isfinite(ratio)].tolist()
            attended, uniform = same_label_attention(source, target, alpha, labels)
            at_border = scored & (uniform > 0) & (uniform < 1)
            excess[layer] += (attended - uniform)[at_border].tolist()
            border += int(at_border.sum()) if layer == 0 else 0
    with mean_attention(net):
        scores = _scores(net, items, held, k)
    return {
        "entropy": [float(np.mean(v)) for v in entropy],
        "border_excess": [float(np.mean(v)) if v else float("nan") for v in excess],
        "border_nodes": border,
        **scores,
    }


def neighbourhoods(root: str) -> dict:
    """How mixed the neighbourhoods of a cohort's scored nodes are (labelled test nodes of the
    training brains): ``test_nodes``, ``border_nodes`` (labelled neighbours of their own area
    and of another: where weighting neighbours could matter), ``same_area_share`` (mean share of
    a node's labelled neighbours in its own area) and ``mean_degree``."""
    import numpy as np

    from cortexgraph.gnn.attention import same_label_attention
    from cortexgraph.gnn.evaluate import evaluation_nodes

    items, _, _ = _cohort_graphs(root)
    shares, degrees = [], []
    for item in items:
        graph = item.data
        source, target = graph.edge_index.numpy()
        scored = evaluation_nodes(graph, False).numpy()
        _, share = same_label_attention(source, target, np.ones(source.size), graph.y.numpy())
        shares.append(share[scored])
        degrees.append(np.bincount(target, minlength=graph.num_nodes)[scored])
    share, degree = np.concatenate(shares), np.concatenate(degrees)
    return {
        "test_nodes": int(share.size),
        "border_nodes": int(((share > 0) & (share < 1)).sum()),
        "same_area_share": float(np.nanmean(share)),
        "mean_degree": float(degree.mean()),
    }


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def task_key(cohort: str, variant: str, depth: int, seed: int) -> str:
    return f"{cohort}/{variant}/{depth}/{seed}"


# ------------------------------------------------------------------------------------ the page


def _values(results: dict, cohorts, variant: str, depth: int, seeds, field: str) -> list[float]:
    return [results[task_key(c, variant, depth, s)][field] for c in cohorts for s in seeds
            if task_key(c, variant, depth, s) in results]  # fmt: skip


def _margins(results, cohorts, seeds, left: str, right: str, depths) -> list[float]:
    """Per cohort and learner seed: the smallest test-F1 margin left - right over ``depths``."""
    out = []
    for c in cohorts:
        for s in seeds:
            keys = [(task_key(c, left, d, s), task_key(c, right, d, s)) for d in depths]
            if all(a in results and b in results for a, b in keys):
                out.append(min(results[a]["test_f1"] - results[b]["test_f1"] for a, b in keys))
    return out


def _held(values: Sequence[float]) -> str:
    return f"{sum(v > 0 for v in values)}/{len(values)}"


def harness_check(results: dict, harness: Path, cohorts, depths) -> list[str]:
    """Lines comparing ``gat``/``sage`` at learner seed = phantom seed with the harness's table."""
    diffs, n = [], 0
    for c in cohorts:
        seed = int(c.split("-")[0][1:])
        table = harness / "cohorts" / c / "cohort/derivatives/cortexgraph/comparisons"
        path = table / f"depth-{GNN_PRESET}-s{seed}.tsv"
        if not path.is_file():
            continue
        stored = rp.read_comparison(path)
        for variant, label in (("gat", "GAT"), ("sage", "SAGE")):
            for d in depths:
                key = task_key(c, variant, d, seed)
                if key in results and f"{label}{d}-CY" in stored:
                    n += 1
                    for split in ("test_f1", "transfer_f1"):
                        diffs.append(abs(results[key][split] - stored[f"{label}{d}-CY"][split]))
    if not n:
        return ["No run here has the learner seed of its cohort's harness runs."]
    return [
        f"The `gat` and `sage` runs whose learner seed is the cohort's phantom seed are the "
        f"harness's own GAT/SAGE runs: {n} runs, largest difference from the harness's comparison "
        f"tables {max(diffs):.4f} F1."
    ]


def render_page(
    results: dict, args: argparse.Namespace, cohorts, info: dict, reading: str = ""
) -> str:
    """The page; ``reading`` (:func:`reproduce.kept_reading` of the previous page, the
    hand-written reading of the numbers) goes after the first table."""
    depths, seeds, variants = args.depths, args.learner_seeds, args.variants
    n_runs = len(cohorts) * len(seeds)
    lines = [
        "# GAT against SAGE: attention dropout and neighbour sampling (demo phantom)",
        "",
        "The harness's CY-only GAT and SAGE models (docs/reproduction-demo.md) retrained on its "
        "cohorts with one setting changed at a time, over several learner seeds. Everything else "
        f"is `train-gnn --preset {GNN_PRESET}` (width 64, 6 epochs, batches of 512, LARS at rate "
        "0.3), transfer brain B07. Mean ± s.d. over cohorts x learner seeds "
        f"({len(cohorts)} x {len(seeds)} = {n_runs} runs per cell).",
        "",
        *rp.budget_run_lines(
            info, ", ".join(cohorts), "training runs",
            f"over every invocation (the training runs' own wall time, divided by the {args.jobs} "
            "run at a time)",
        ),  # fmt: skip
        f"* Learner seeds: {', '.join(map(str, seeds))}",
        "",
        "## The variants",
        "",
        "| variant | what changes |",
        "|---|---|",
        *[f"| `{v}` | {VARIANTS[v][3]} |" for v in variants],
        "",
        "## Test macro F1 per variant and depth",
        "",
        "| variant | " + " | ".join(f"depth {d}" for d in depths) + " | transfer F1, depth "
        f"{depths[0]} |",
        "|---|" + "---|" * (len(depths) + 1),
    ]
    for v in variants:
        cells = [rp._pm(*rp.mean_sd(_values(results, cohorts, v, d, seeds, "test_f1")))
                 for d in depths]  # fmt: skip
        transfer = rp.mean_sd(_values(results, cohorts, v, depths[0], seeds, "transfer_f1"))
        lines.append(f"| `{v}` | " + " | ".join(cells) + f" | {rp._pm(*transfer)} |")
    if reading:
        lines += ["", reading]
    pairs = [(a, b) for a in variants if VARIANTS[a][0] == "gat"
             for b in variants if VARIANTS[b][0] == "sage"]  # fmt: skip
    lines += [
        "",
        f"## GAT above SAGE at every depth ({', '.join(map(str, depths))})",
        "",
        "Per cohort and learner seed, the smallest test-F1 margin GAT - SAGE over the depths (the "
        "harness's claim, restricted to these depths); *held*: runs with a positive margin.",
        "",
        "| GAT variant | SAGE variant | smallest margin | held |",
        "|---|---|---|---|",
    ]
    for a, b in pairs:
        m = _margins(results, cohorts, seeds, a, b, depths)
        lines.append(f"| `{a}` | `{b}` | {rp._pm(*rp.mean_sd(m))} | {_held(m)} |")
    depth_columns = [f"depth {d}" for d in depths]
    lines += rp.table_section(
        "GAT - SAGE at each depth (test F1, paired by cohort and learner seed)",
        "GAT variant - SAGE variant", depth_columns,
    )  # fmt: skip
    lines += [_change_row(results, cohorts, seeds, depths, b, a, f"`{a}` - `{b}`")
              for a, b in pairs]  # fmt: skip
    lines += [
        "",
        "(mean ± s.d.; in brackets the runs where GAT is ahead. For two equally good models the "
        "smallest margin over several depths is negative in the mean, the per-depth margins "
        "are not.)",
    ]
    lines += rp.table_section(
        "What one change does (test F1, paired by cohort, learner seed and depth)",
        "change", depth_columns,
    )  # fmt: skip
    for base, changed in (("gat", v) for v in variants if v != "gat" and VARIANTS[v][0] == "gat"):
        lines.append(_change_row(results, cohorts, seeds, depths, base, changed))
    for learned, mean in (("gat-ad0", "gat-mean"), ("gat-ad0-f3", "gat-mean-f3")):
        if learned in variants and mean in variants:  # learned attention vs the mean
            lines.append(_change_row(results, cohorts, seeds, depths, learned, mean))
    if "sage" in variants and "sage-full" in variants:
        lines.append(_change_row(results, cohorts, seeds, depths, "sage", "sage-full"))
    lines += [
        "",
        "(mean ± s.d. of changed - base; in brackets the pairs where the change raised F1.)",
        "",
        "## Learner seeds against cohorts",
        "",
        "The spread of test F1 over learner seeds within a cohort (mean of the per-cohort s.d.) "
        "next to the spread over cohorts (s.d. of the per-cohort means).",
        "",
        "| variant | depth | s.d. over learner seeds | s.d. over cohorts |",
        "|---|---|---|---|",
    ]
    for v in variants:
        for d in depths:
            within, means = [], []
            for c in cohorts:
                vals = _values(results, [c], v, d, seeds, "test_f1")
                if vals:
                    within.append(rp.mean_sd(vals)[1])
                    means.append(rp.mean_sd(vals)[0])
            lines.append(
                f"| `{v}` | {d} | {rp._fmt(rp.mean_sd(within)[0])} | "
                f"{rp._fmt(rp.mean_sd(means)[1])} |"
            )
    lines += _attention_section(results, cohorts, seeds, variants, args.attention_depths)
    lines += _neighbourhood_section(getattr(args, "neighbourhoods", {}), cohorts)
    lines += ["", "## Check against the harness", "", *harness_check(results, args.harness,
                                                                     cohorts, depths)]  # fmt: skip
    lines += rp.table_section(
        "Seconds per training run (median over cohorts and learner seeds; one thread)",
        "variant", depth_columns,
    )  # fmt: skip
    for v in variants:
        cells = []
        for d in depths:
            vals = sorted(_values(results, cohorts, v, d, seeds, "seconds"))
            cells.append(f"{vals[len(vals) // 2]:.0f}" if vals else "n/a")
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _attention_section(results, cohorts, seeds, variants, depths) -> list[str]:
    """What the GATs' attention does: entropy, border share, and F1 with the mean instead."""
    gats = [v for v in variants if VARIANTS[v][0] == "gat"]
    rows = []
    for v in gats:
        for d in depths:
            runs = [results[task_key(c, v, d, s)] for c in cohorts for s in seeds
                    if "attention" in results.get(task_key(c, v, d, s), {})]  # fmt: skip
            if not runs:
                continue
            att = [r["attention"] for r in runs]

            def cell(values: list[float]) -> str:
                return rp._pm(*rp.mean_sd(values))

            per_layer = " / ".join(
                rp._fmt(rp.mean_sd([a["entropy"][i] for a in att])[0]) for i in range(d)
            )
            excess = [float(sum(a["border_excess"]) / d) for a in att]
            drop = [a["test_f1"] - r["test_f1"] for a, r in zip(att, runs, strict=True)]
            drop_t = [a["transfer_f1"] - r["transfer_f1"] for a, r in zip(att, runs, strict=True)]
            rows.append(
                f"| `{v}` | {d} | {len(runs)} | {per_layer} | {cell(excess)} | "
                f"{cell([r['test_f1'] for r in runs])} | {cell(drop)} ({_held(drop)}) | "
                f"{cell(drop_t)} ({_held(drop_t)}) |"
            )
    if not rows:
        return []
    return [
        "",
        "## What the attention does",
        "",
        "Measured on the labelled test nodes of the training brains after training "
        "(`cortexgraph.gnn.attention`). *Entropy*: a node's attention over its neighbours, as a "
        "fraction of the entropy of the plain mean (1: every neighbour weighted 1/degree), mean "
        "over nodes, per layer. *Border excess*: at nodes with labelled neighbours of their own "
        "area and of another, the attention share on their own area minus the share those "
        "neighbours have under the mean (positive: attention favours the node's own area), mean "
        "over the layers. *Mean instead*: the same trained model with every layer's attention "
        "replaced by the mean of the neighbours (a GAT layer then computes what a SAGE layer "
        "does), F1 change against the learned attention; in brackets the runs where the mean "
        "scored higher.",
        "",
        "| variant | depth | runs | entropy per layer | border excess | test F1 | "
        "mean instead: test F1 change | mean instead: transfer F1 change |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _neighbourhood_section(found: dict, cohorts) -> list[str]:
    """Per cohort: how many scored nodes have neighbours of two areas (:func:`neighbourhoods`)."""
    rows = []
    for c in cohorts:
        if (n := found.get(c)) is not None:
            percent = 100 * n["border_nodes"] / max(n["test_nodes"], 1)
            rows.append(
                f"| {c} | {n['test_nodes']} | {n['border_nodes']} ({percent:.1f} %) | "
                f"{n['same_area_share']:.3f} | {n['mean_degree']:.2f} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Where attention could matter",
        "",
        "The scored nodes of each cohort (labelled test nodes of the training brains): how many "
        "are border nodes (labelled neighbours of their own area and of another), the mean share "
        "of a node's labelled neighbours in its own area, and the mean number of neighbours.",
        "",
        "| cohort | test nodes | border nodes | own-area share of neighbours | mean degree |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _change_row(
    results, cohorts, seeds, depths, base: str, changed: str, label: str = ""
) -> str:
    """A table row: per depth, mean ± s.d. of ``changed`` - ``base`` test F1 over paired runs and
    how many are positive; labelled ``label`` (default: base -> changed)."""
    cells = []
    for d in depths:
        diffs = [results[task_key(c, changed, d, s)]["test_f1"]
                 - results[task_key(c, base, d, s)]["test_f1"]
                 for c in cohorts for s in seeds
                 if task_key(c, changed, d, s) in results and task_key(c, base, d, s) in results]  # fmt: skip
        cells.append(f"{rp._pm(*rp.mean_sd(diffs))} ({_held(diffs)})")
    return f"| {label or f'`{base}` -> `{changed}`'} | " + " | ".join(cells) + " |"


# ---------------------------------------------------------------------------------------- main


def _missing(results: dict, args: argparse.Namespace, c: str, v: str, d: int, s: int) -> bool:
    """A run to do: not in ``results``, or a GAT at an attention depth stored without its
    attention summary (the run is repeated; same learner seed, same model)."""
    stored = results.get(task_key(c, v, d, s))
    if stored is None:
        return True
    return VARIANTS[v][0] == "gat" and d in args.attention_depths and "attention" not in stored


def harness_cohorts(harness: Path, names: Sequence[str] | None) -> list[str]:
    """The finished cohorts of a reproduce.py work folder (``results.json`` complete)."""
    found = []
    for folder in sorted((harness / "cohorts").glob("s*-a*")):
        path = folder / "results.json"
        if path.is_file() and json.loads(path.read_text()).get("complete"):
            found.append(folder.name)
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit(
                f"error: {', '.join(missing)}: not a finished cohort of {harness} "
                f"(finished: {', '.join(found) or 'none'}); run benchmarks/reproduce.py first"
            )
        return list(names)
    if not found:
        raise SystemExit(
            f"error: {harness} has no finished cohort; run `python benchmarks/reproduce.py "
            f"{harness} --scale demo` first"
        )
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (results.json, log)")
    p.add_argument("--harness", type=Path, required=True, help="reproduce.py work folder")
    p.add_argument("--cohorts", default="", help="cohort names, e.g. s1-a11 (default: all)")
    p.add_argument("--depths", type=rp._ints, default=[3, 5], help="GNN depths, e.g. 3,5,7")
    p.add_argument("--learner-seeds", type=rp._ints, default=[1, 2, 3], help="e.g. 1,2,3")
    p.add_argument("--variants", default="gat,gat-ad0,sage,sage-full",
                   help=f"comma-separated, of {', '.join(VARIANTS)}")  # fmt: skip
    p.add_argument("--attention-depths", type=rp._ints, default=[3],
                   help="depths at which a GAT's attention is measured, e.g. 3,5")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time (one thread each)")
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/gat_sage.md"))
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        p.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(VARIANTS)}")  # fmt: skip
    if any(d < 1 for d in args.depths) or args.jobs < 1:
        p.error("--depths and --jobs must be >= 1")
    args.attention_depths = [d for d in args.attention_depths if d in args.depths]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.cohorts.split(",") if n.strip()]
    cohorts = harness_cohorts(args.harness, names)
    with rp.bench_folder(args.out, "bench_gat_sage") as bench:
        if bench is None:
            return 3
        report, results = bench.report, bench.results
        todo = [(c, v, d, s) for c in cohorts for s in args.learner_seeds for d in args.depths
                for v in args.variants if _missing(results, args, c, v, d, s)]  # fmt: skip
        report(f"{len(todo)} training runs to do, {args.jobs} at a time")
        loads = [os.getloadavg()[0]]
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_one_thread) as pool:
            futures = {
                pool.submit(run_variant, str(args.harness / "cohorts" / c / "cohort"), v, d, s,
                            args.attention_depths):
                (c, v, d, s) for c, v, d, s in todo
            }  # fmt: skip
            try:
                for done, future in enumerate(cf.as_completed(futures), 1):
                    c, v, d, s = futures[future]
                    r = future.result()
                    results[task_key(c, v, d, s)] = r
                    rp._write_json(bench.results_path, results)
                    loads.append(os.getloadavg()[0])
                    report(f"[{done}/{len(todo)}] {c} {v}{d} seed {s}: test {r['test_f1']:.3f} "
                           f"transfer {r['transfer_f1']:.3f} ({r['seconds']:.0f} s)")  # fmt: skip
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        command = "python benchmarks/bench_gat_sage.py OUT --harness REPRO_OUT " + shlex.join(
            ["--depths", ",".join(map(str, args.depths)),
             "--learner-seeds", ",".join(map(str, args.learner_seeds)),
             "--variants", ",".join(args.variants),
             "--attention-depths", ",".join(map(str, args.attention_depths)),
             "--jobs", str(args.jobs)]
        )  # fmt: skip
        chosen = {task_key(c, v, d, s) for c in cohorts for v in args.variants
                  for d in args.depths for s in args.learner_seeds}  # fmt: skip
        # the load of every invocation that trained runs, so that a rerun which finds every run
        # done does not put its own idle reading on the page
        invocations_path = args.out / "invocations.json"
        invocations = json.loads(invocations_path.read_text()) if invocations_path.is_file() else []
        if todo:
            invocations.append({"runs": len(todo), "load_min": min(loads),
                                "load_max": max(loads), "date": time.strftime("%Y-%m-%d")})  # fmt: skip
            rp._write_json(invocations_path, invocations)
        loads = [x for i in invocations for x in (i["load_min"], i["load_max"])] or loads
        found_path = args.out / "neighbourhoods.json"
        found = json.loads(found_path.read_text()) if found_path.is_file() else {}
        for c in cohorts:
            if c not in found:
                found[c] = neighbourhoods(str(args.harness / "cohorts" / c / "cohort"))
                rp._write_json(found_path, found)
        args.neighbourhoods = found
        done = [r for k, r in results.items() if k in chosen]
        seconds = sum(r["wall_seconds"] for r in done) / args.jobs
        info = rp.budget_info(command, loads, seconds)
        previous = args.page.read_text(encoding="utf-8") if args.page.is_file() else ""
        page = render_page(results, args, cohorts, info, rp.kept_reading(previous))
        rp._write_text(args.page, page)
        report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
