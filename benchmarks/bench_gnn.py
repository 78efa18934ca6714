"""Benchmark GNN training throughput on a synthetic mesh graph of realistic size.

Graph: a triangulated torus grid (every vertex has degree 6), by default 872 x 872 = 760,384 nodes and
4,562,304 directed edges, like one hemisphere midsurface graph of the method (Schiffer, PhD thesis,
Sect. 7.1.2: on average 760 000 nodes, 4.5 million edges, node degree 6). Node features CY 2048 + PM 152 + CO 3, stored as float16 (760k x 2203 x 2 B = 3.35 GB;
float32 would need 6.7 GB). 113 classes. A random ``--labelled-fraction`` of the nodes is labelled,
80 % of those are training nodes (random nodes are the worst case for neighbourhood overlap; real
labels lie along annotated sections, whose neighbourhoods overlap more).

What is timed is the real training loop, :func:`cortexgraph.gnn.train.train_node_classifier`
(sampling, feature gathering, forward, backward, LARS step). On CPU an epoch over all labelled nodes
would take many minutes, so the training mask is restricted to ``--batches`` x 2048 nodes and the epoch
time for all labelled nodes is extrapolated from the measured labelled nodes/s (stated in the table).
On CUDA (used whenever ``torch.cuda.is_available()``) full epochs are run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_gnn.py              # defaults
    .venv/bin/python benchmarks/bench_gnn.py --nodes 200000 --batches 2     # smaller, quicker

Prints a markdown table: model, device, labelled nodes/s (median over epochs after the first),
seconds per epoch, extrapolated minutes for 100 epochs x 16 graphs, CPU seconds per epoch, peak memory.

``--stage-demo`` times the stages instead, as ``make demo`` runs them: synthetic graph files of the
demo's size (4 brains x 2 hemispheres x ~30k nodes, CY 256 + PM 100 + CO 3, written by
:func:`cortexgraph.gnn.synthetic.write_synthetic_cohort` into a temporary cohort) ->
:func:`cortexgraph.gnn.stage.train_gnn` (GAT3-CY/PM/CO, ``preset="demo"``) ->
:func:`cortexgraph.gnn.evaluate.evaluate_run` -> :func:`cortexgraph.gnn.stage.predict_brain` for the
4 brains; wall and CPU seconds per repeat (median), F1 and peak memory:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_gnn.py --stage-demo --repeats 3

``--preset-sweep`` trains the settings of ``SWEEP`` on the same graphs (how the demo preset was
chosen): train wall / CPU seconds, test and transfer F1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import time

import torch

from cortexgraph.gnn.models import NodeClassifier
from cortexgraph.gnn.sampler import build_csr, sample_subgraph
from cortexgraph.gnn.synthetic import synthetic_mesh_graph
from cortexgraph.gnn.train import train_node_classifier

FEATURES = {"cy": 2048, "pm": 152, "co": 3}
NUM_CLASSES = 113


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def _bench_sampler(graph, repeats: int, device: torch.device) -> list[str]:
    csr = build_csr(graph.edge_index, graph.num_nodes).to(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for fanout in (None, 3):
        times, sizes = [], []
        for r in range(repeats + 1):
            seeds = torch.randperm(graph.num_nodes, generator=gen)[:2048].to(device)
            t0 = time.perf_counter()
            nodes, edges, _ = sample_subgraph(csr, seeds, 3, fanout, gen)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:  # first call is a warm-up
                times.append(time.perf_counter() - t0)
                sizes.append((nodes.numel(), edges.shape[1]))
        n, e = sizes[0]
        rows.append(
            f"| sampler 3 hops, fanout {fanout} | {device.type} | 2048 seeds -> {n} nodes, "
            f"{e} edges | {1e3 * statistics.median(times):.1f} ms per batch |"
        )
    return rows


def bench_stage_demo(args) -> None:
    """Time train-gnn + evaluate of the demo preset on demo-sized synthetic graph files."""
    import tempfile
    from pathlib import Path

    from cortexgraph.gnn.evaluate import evaluate_run
    from cortexgraph.gnn.stage import PRESETS, predict_brain, read_history, train_gnn

    rows, cols = args.demo_grid
    with tempfile.TemporaryDirectory(prefix="bench-gnn-") as tmp:
        t0 = time.perf_counter()
        root = _demo_cohort(Path(tmp) / "cohort", rows, cols)
        print(
            f"graphs: 4 brains x 2 hemispheres x {rows * cols} nodes, CY 256 + PM 100 + CO 3, "
            f"60 areas, written in {time.perf_counter() - t0:.1f} s; preset demo = "
            f"{PRESETS['demo']}; threads {torch.get_num_threads()}",
            flush=True,
        )
        table = [
            "| repeat | train wall s | train CPU s | evaluate wall s | evaluate CPU s | "
            "train + evaluate wall s | predict 4 brains wall s | predict CPU s | test F1 | "
            "transfer F1 | train nodes/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        totals = []
        for r in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            run = train_gnn(root, preset="demo", device="cpu", name=f"demo-{r}")
            w1, c1 = time.perf_counter(), time.process_time()
            result = evaluate_run(run, device="cpu")
            w2, c2 = time.perf_counter(), time.process_time()
            for brain in ("B01", "B03", "B05", "B07"):
                predict_brain(run, brain, root, device="cpu")
            w3, c3 = time.perf_counter(), time.process_time()
            hist = read_history(run)
            rate = statistics.median(hist["nodes_per_s"])
            if r == 0:
                config = json.loads((run / "config.json").read_text())
                print(
                    f"training nodes per epoch: {sum(config['train_nodes'].values())} "
                    f"({config['train_nodes']}); test nodes {result['test_nodes']}, transfer "
                    f"nodes {result['transfer_nodes']}",
                    flush=True,
                )
            totals.append(w2 - w0)
            table.append(
                f"| {r + 1} | {w1 - w0:.1f} | {c1 - c0:.1f} | {w2 - w1:.1f} | {c2 - c1:.1f} | "
                f"{w2 - w0:.1f} | {w3 - w2:.1f} | {c3 - c2:.1f} | {result['test_f1']:.3f} | "
                f"{result['transfer_f1']:.3f} | {rate:,.0f} |"
            )
            print(table[-1], flush=True)
        print()
        print("\n".join(table))
        print(
            f"\nmedian total wall {statistics.median(totals):.1f} s; peak RSS {_peak_rss_gb():.2f} GB"
        )


SWEEP = (  # (model, hidden, epochs, batch_size, lr): the choice of the demo preset
    ("gat", 64, 6, 1024, 0.1),
    ("gat", 64, 6, 1024, 0.3),
    ("gat", 64, 6, 1024, 1.0),
    ("gat", 64, 6, 512, 0.3),
    ("gat", 32, 6, 1024, 0.3),
    ("mlp", 64, 6, 1024, 0.3),
    ("gat", 512, 1, 2048, 0.008),
)


def _demo_cohort(root, rows: int, cols: int):
    from cortexgraph.gnn.synthetic import write_synthetic_cohort

    return write_synthetic_cohort(
        root,
        ("B01", "B03", "B05", "B07"),
        rows=rows,
        cols=cols,
        num_areas=60,
        cy_dim=256,
        pm_dim=100,
        seed=0,
    )


def bench_preset_sweep(args) -> None:
    """Train CPU seconds and F1 of a few settings on the demo-sized graphs (``SWEEP``)."""
    import tempfile
    from pathlib import Path

    from cortexgraph.gnn.evaluate import evaluate_run
    from cortexgraph.gnn.stage import train_gnn

    rows, cols = args.demo_grid
    table = [
        "| model | width | epochs | batch | lr | train wall s | train CPU s | test F1 | transfer F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-gnn-") as tmp:
        root = _demo_cohort(Path(tmp) / "cohort", rows, cols)
        for model, hidden, epochs, batch, lr in SWEEP:
            w0, c0 = time.perf_counter(), time.process_time()
            run = train_gnn(
                root,
                model=model,
                layers=3,
                preset="demo",
                hidden=hidden,
                epochs=epochs,
                batch_size=batch,
                lr=lr,
                device="cpu",
                name=f"{model}-{hidden}-{epochs}-{batch}-{lr}",
            )
            w1, c1 = time.perf_counter(), time.process_time()
            result = evaluate_run(run, device="cpu")
            table.append(
                f"| {model.upper()}3 | {hidden} | {epochs} | {batch} | {lr} | {w1 - w0:.1f} | "
                f"{c1 - c0:.1f} | {result['test_f1']:.3f} | {result['transfer_f1']:.3f} |"
            )
            print(table[-1], flush=True)
    print()
    print("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=760_000, help="approximate node count")
    parser.add_argument("--labelled-fraction", type=float, default=0.1)
    parser.add_argument("--models", default="gat3,sage3", help="comma list of <kind><layers>")
    parser.add_argument("--batches", type=int, default=2, help="CPU: training batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed (first is warm-up)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--graphs", type=int, default=16, help="graphs in the extrapolated goal")
    parser.add_argument(
        "--stage-demo", action="store_true", help="time train-gnn + evaluate at the demo's size"
    )
    parser.add_argument("--repeats", type=int, default=3, help="--stage-demo: repeats")
    parser.add_argument(
        "--demo-grid", type=int, nargs=2, default=(170, 176), help="--stage-demo: rows cols"
    )
    parser.add_argument(
        "--preset-sweep", action="store_true", help="the settings behind the demo preset (SWEEP)"
    )
    args = parser.parse_args()
    if args.preset_sweep:
        bench_preset_sweep(args)
        return
    if args.stage_demo:
        bench_stage_demo(args)
        return

    device = torch.device(
        "cuda"
        if (args.device == "auto" and torch.cuda.is_available())
        else ("cpu" if args.device == "auto" else args.device)
    )
    side = int(math.sqrt(args.nodes))
    t0 = time.perf_counter()
    graph = synthetic_mesh_graph(
        side,
        side,
        FEATURES,
        num_classes=NUM_CLASSES,
        labelled_fraction=args.labelled_fraction,
        test_fraction=0.2,
        feature_dtype=torch.float16,
        seed=0,
    )
    build_s = time.perf_counter() - t0
    n_train_full = int(graph.train_mask.sum())
    print(
        f"graph: {graph.num_nodes} nodes, {graph.edge_index.shape[1]} directed edges, "
        f"{n_train_full} labelled training nodes, features float16 "
        f"({graph.num_nodes * sum(FEATURES.values()) * 2 / 1e9:.2f} GB), built in {build_s:.1f} s"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )

    if device.type == "cpu":
        # restrict training to the first `batches` x batch_size training nodes (see docstring)
        keep = torch.nonzero(graph.train_mask).reshape(-1)[: args.batches * args.batch_size]
        graph.train_mask = torch.zeros_like(graph.train_mask)
        graph.train_mask[keep] = True

    rows = ["| what | device | size | result |", "|---|---|---|---|"]
    rows += _bench_sampler(graph, 3, device)
    table = [
        "| model | device | labelled nodes/s | s per epoch (1 graph, "
        f"{n_train_full} train nodes) | min for 100 epochs x {args.graphs} graphs | "
        "CPU s per epoch (all threads) | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in args.models.split(","):
        kind, layers = spec.rstrip("0123456789"), int(spec[len(spec.rstrip("0123456789")) :])
        torch.manual_seed(0)
        model = NodeClassifier(FEATURES, NUM_CLASSES, kind=kind, num_layers=layers)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        hist = train_node_classifier(
            [graph],
            model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=0,
            device=device,
        )
        rates = hist["nodes_per_s"][1:] or hist["nodes_per_s"]
        rate = statistics.median(rates)
        cpu_s = statistics.median(hist["cpu_seconds"][1:] or hist["cpu_seconds"])
        per_node_cpu = cpu_s / max(1, int(graph.train_mask.sum()))
        epoch_s = n_train_full / rate
        goal_min = epoch_s * 100 * args.graphs / 60
        mem = (
            f"{torch.cuda.max_memory_allocated(device) / 1e9:.1f} GB GPU, "
            if device.type == "cuda"
            else ""
        ) + f"{_peak_rss_gb():.1f} GB RSS"
        table.append(
            f"| {kind.upper()}{layers} | {device.type} | {rate:,.0f} | {epoch_s:,.1f}"
            f"{' (extrapolated)' if device.type == 'cpu' else ''} | {goal_min:,.1f} | "
            f"{per_node_cpu * n_train_full:,.0f} | {mem} |"
        )
        print(
            f"{spec}: per-epoch nodes/s {[round(r) for r in hist['nodes_per_s']]}, "
            f"loss {[round(v, 3) for v in hist['loss']]}",
            flush=True,
        )
    print()
    print("\n".join(rows))
    print()
    print("\n".join(table))


if __name__ == "__main__":
    main()
