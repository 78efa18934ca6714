"""Benchmark: whole-graph GNN prediction with bounded memory (layer-wise inference).

Graph: a triangulated torus grid (degree 6), by default 872 x 872 = 760,384 nodes (one hemisphere of
the published brains, Schiffer, PhD thesis, Sect. 7.1.2), node features CY 2048 + PM 152 + CO 3 (standard normal noise) written as float16 to an
HDF5 graph-like file in row blocks (3.35 GB on disk), 113 classes, GAT3 at width 512 (random weights:
the cost does not depend on them). Every measurement runs in a fresh subprocess, so its peak RSS
(``VmHWM``) is that method's alone:

* ``layerwise``: :func:`cortexgraph.gnn.inference.layerwise_proba` reading the features from the file
  range by range (float16 activations);
* ``khop``: :func:`cortexgraph.gnn.train.predict_proba` (node batches on exact k-hop neighbourhoods,
  features in memory as float16), at ``--compare-nodes`` only;
* ``full``: one whole-graph forward pass (features in memory), at ``--compare-nodes`` only.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_predict.py --nodes 760000 --compare-nodes 100000

Prints a markdown table: method, nodes, wall s, CPU s, peak RSS GB, load average before/after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = {"cy": 2048, "pm": 152, "co": 3}
NUM_CLASSES = 113
WIDTH = 512


def _peak_rss_gb() -> float:
    """Peak RSS of this process image (VmHWM). ``ru_maxrss`` would not do: Linux carries the
    parent's high-water mark at fork over the exec of a subprocess (an upper bound, then)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _write_graph(path: Path, side: int, seed: int = 0, block: int = 32768) -> None:
    """Edges and float16 features of a side x side torus grid, written block by block."""
    import h5py

    from cortexgraph.gnn.synthetic import triangulated_grid_edges

    n = side * side
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        h5["edge_index"] = triangulated_grid_edges(side, side, True).numpy().astype(np.int32)
        nodes = h5.create_group("nodes")
        for name, dim in FEATURES.items():
            ds = nodes.create_dataset(
                name, shape=(n, dim), dtype=np.float16, chunks=(min(block, n), dim)
            )
            for a in range(0, n, block):
                b = min(a + block, n)
                ds[a:b] = rng.standard_normal((b - a, dim), dtype=np.float32).astype(np.float16)


def _model(kind: str, layers: int):
    import torch

    from cortexgraph.gnn.models import NodeClassifier

    torch.manual_seed(0)
    return NodeClassifier(FEATURES, NUM_CLASSES, kind=kind, num_layers=layers, hidden=WIDTH).eval()


def _worker(args) -> None:
    import h5py
    import torch

    wall0, cpu0 = time.perf_counter(), time.process_time()
    model = _model(args.kind, args.layers)
    with h5py.File(args.graph, "r") as h5:
        edge_index = torch.from_numpy(h5["edge_index"][...].astype(np.int64))
        n = int(h5["nodes/cy"].shape[0])
        if args.worker == "layerwise":
            from cortexgraph.gnn.inference import layerwise_proba

            feats = {name: h5["nodes"][name] for name in FEATURES}
            proba = layerwise_proba(model, feats, edge_index, n, batch_size=args.batch_size)
        else:
            from torch_geometric.data import Data

            data = Data(edge_index=edge_index, num_nodes=n)
            for name in FEATURES:
                setattr(data, f"x_{name}", torch.from_numpy(h5["nodes"][name][...]))
            if args.worker == "khop":
                from cortexgraph.gnn.train import predict_proba

                proba = predict_proba(
                    [data], model, batch_size=args.batch_size, device="cpu", amp=False
                )[0]
            else:
                with torch.no_grad():
                    x = {name: getattr(data, f"x_{name}").float() for name in FEATURES}
                    proba = torch.softmax(model(x, edge_index), 1).numpy()
    result = {
        "method": args.worker,
        "nodes": n,
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "peak_rss_gb": _peak_rss_gb(),
        "checksum": float(np.nansum(proba[:1000])),
    }
    print("RESULT " + json.dumps(result))


def _run(mode: str, graph: Path, args) -> dict:
    load0 = os.getloadavg()[0]
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--graph",
        str(graph),
        "--kind",
        args.kind,
        "--layers",
        str(args.layers),
        "--batch-size",
        str(args.batch_size if mode != "khop" else args.khop_batch_size),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    result["load"] = f"{load0:.1f} / {os.getloadavg()[0]:.1f}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=760_000)
    parser.add_argument("--compare-nodes", type=int, default=0, help="also run khop and full here")
    parser.add_argument("--kind", default="gat")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--khop-batch-size", type=int, default=8192)
    parser.add_argument("--workdir", default=None, help="where the graph files go (default: tmp)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--graph", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, model {args.kind.upper()}{args.layers}"
        f" width {WIDTH}, features {FEATURES} float16"
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        plan = [(args.nodes, ["layerwise"])]
        if args.compare_nodes:
            plan.insert(0, (args.compare_nodes, ["layerwise", "khop", "full"]))
        for nodes, modes in plan:
            side = int(math.sqrt(nodes))
            graph = Path(tmp) / f"grid{side}.h5"
            t0 = time.perf_counter()
            _write_graph(graph, side)
            print(f"# wrote {side * side} nodes in {time.perf_counter() - t0:.0f} s", flush=True)
            for mode in modes:
                rows.append(_run(mode, graph, args))
                print(f"# {rows[-1]}", flush=True)
            graph.unlink()
    print("\n| method | nodes | wall s | CPU s | peak RSS GB | load before / after |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['nodes']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['peak_rss_gb']:.2f} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
