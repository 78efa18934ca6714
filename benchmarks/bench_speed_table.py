"""Benchmark: every ratio of the speed table of issue 19, side by side in one run.

Rows (ours vs the peer, each measured in its own subprocess so that peak RSS is its own; the
repeats alternate ours and the peers so both see the same machine load):

1. **Laplace**, MNI152 cortex at 0.5 mm (``bench_laplace.mni_labels``; 8.7 M unknowns), relative
   residual 1e-5: cortexgraph's multigrid-PCG (setup = crop, assembly, hierarchy) vs scipy CG with a
   Jacobi preconditioner on the assembled float64 CSR matrix (setup = ``laplace_system``, which uses
   our compiled assembly, plus the Jacobi diagonal) vs pyamg's smoothed aggregation as a CG
   preconditioner (setup = ``laplace_system`` + ``smoothed_aggregation_solver``). Setup + solve,
   solve only, and peak RSS.
2. **Isosurface** of a finite 512^3 float32 field (``bench_isosurface.gyrified_sphere``): our
   ``extract_isosurface`` (world mm float64 vertices, int64 faces, orientation; with its finiteness
   check, and with ``check_finite=False``) vs a bare ``vtkFlyingEdges3D`` (same settings, no copy,
   output arrays as numpy views).
3. **11^3 binary median** of a random 200^3 boolean volume: ``binary_median_filter`` and its dask
   version vs ``scipy.ndimage.median_filter`` (outputs compared).
4. **GAT3 forward + backward**, full batch on a torus grid (``--gat-nodes``, default 20k), CY 2048 +
   PM 152 + CO 3 float32, width 512, 113 classes, one thread, training mode, cross-entropy on all
   nodes: our ``NodeClassifier`` vs the same architecture written as a plain PyG ``GATv2Conv`` stack
   without input dropout / noise, and the same stack with the method's input regularisation
   (dropout 0.5 on CY and PM, noise 0.1 on CO: the work our model does in training). At these input widths one pass costs about 30 MFLOP per node (about
   1 s per 1000 nodes on one core), so 200k nodes take minutes per pass; the ratio does not depend
   on the node count (both sides do the same per-node and per-edge work).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_speed_table.py --repeats 3

``--only laplace,iso,median,gat`` picks rows; ``--laplace-mm 1.0`` / ``--iso-n 256`` /
``--gat-nodes 50000`` make a quick run. Needs pyamg (``pip install -e .[bench]``). Prints one
markdown table with medians, the ratios, and the load average before and after each row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FEATURES = {"cy": 2048, "pm": 152, "co": 3}
NUM_CLASSES = 113


def _rss_gb() -> float:
    """Peak RSS of this process image (VmHWM). ``ru_maxrss`` would not do: Linux carries the
    parent's high-water mark at fork over the exec of a subprocess."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# ---------------------------------------------------------------------------------- workers


def _laplace_worker(method: str, labels_path: str, voxel_mm: float, tol: float) -> dict:
    import functools

    import scipy.sparse.linalg as spla

    from cortexgraph.meshes.laplace import laplace_system, solve_laplace_depth

    labels = np.load(labels_path)
    base = _rss_gb()
    if method == "ours":
        # the first call in a process loads the compiled kernels from Numba's cache (like an
        # import); a 12^3 solve does that before the clock starts, and is reported
        tiny = np.zeros((12, 12, 12), dtype=labels.dtype)
        tiny[2:10, 2:10, 2:10] = 2
        tiny[5:7, 5:7, 5:7] = 1
        t_warm = time.perf_counter()
        solve_laplace_depth(tiny, voxel_mm)
        warmup = time.perf_counter() - t_warm
        _, info = solve_laplace_depth(labels, voxel_mm, tol=tol)
        return {
            "setup_s": info["setup_seconds"],
            "solve_s": info["solve_seconds"],
            "total_s": info["seconds"],
            "iterations": info["iterations"],
            "residual": info["residual"],
            "warmup_s": warmup,
            "labels_rss_gb": base,
            "peak_rss_gb": _rss_gb(),
        }
    t0 = time.perf_counter()
    a, b, _ = laplace_system(labels, voxel_mm)
    del labels
    count = [0]

    def tick(_xk):
        count[0] += 1

    if method == "scipy":
        inv_diag = 1.0 / a.diagonal()
        precond = spla.LinearOperator(
            a.shape, matvec=functools.partial(np.multiply, inv_diag), dtype=np.float64
        )
        t1 = time.perf_counter()
        x, flag = spla.cg(a, b, rtol=tol, atol=0.0, M=precond, callback=tick)
    else:
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(a, symmetry="symmetric")
        t1 = time.perf_counter()
        residuals: list[float] = []
        x = ml.solve(b, tol=tol, accel="cg", maxiter=500, residuals=residuals)
        count[0] = len(residuals) - 1
    t2 = time.perf_counter()
    residual = float(np.linalg.norm(b - a @ x) / np.linalg.norm(b))
    return {
        "setup_s": t1 - t0,
        "solve_s": t2 - t1,
        "total_s": t2 - t0,
        "iterations": count[0],
        "residual": residual,
        "labels_rss_gb": base,
        "peak_rss_gb": _rss_gb(),
    }


def _gat_worker(method: str, nodes: int, repeats: int) -> dict:
    import torch
    from torch import nn
    from torch_geometric.nn import GATv2Conv

    from cortexgraph.gnn.models import (
        DEFAULT_INPUT_DROPOUT,
        DEFAULT_INPUT_NOISE_SIGMA,
        NodeClassifier,
    )
    from cortexgraph.gnn.synthetic import synthetic_mesh_graph

    side = int(np.sqrt(nodes))
    graph = synthetic_mesh_graph(side, side, FEATURES, num_classes=NUM_CLASSES, seed=0)
    x = {name: getattr(graph, f"x_{name}") for name in FEATURES}
    target = torch.randint(
        0, NUM_CLASSES, (graph.num_nodes,), generator=torch.Generator().manual_seed(0)
    )

    class PygStack(nn.Module):
        """The same architecture as NodeClassifier(kind="gat"), written as a plain PyG stack."""

        def __init__(self, hidden: int = 512, layers: int = 3, regularise: bool = False) -> None:
            super().__init__()
            # regularise: the method's input regularisation, as NodeClassifier does it in training
            self.input_dropout = DEFAULT_INPUT_DROPOUT if regularise else {}
            self.input_noise = DEFAULT_INPUT_NOISE_SIGMA if regularise else {}
            self.enc = nn.ModuleDict(
                {
                    k: nn.Sequential(
                        nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()
                    )
                    for k, d in FEATURES.items()
                }
            )
            dims = [hidden * len(FEATURES)] + [hidden] * layers
            self.convs = nn.ModuleList(
                GATv2Conv(dims[i], hidden, dropout=0.5, add_self_loops=False, residual=True)
                for i in range(layers)
            )
            self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
            self.cls = nn.Linear(hidden, NUM_CLASSES)

        def forward(self, feats, edge_index):
            feats = dict(feats)
            for k in FEATURES:
                if self.training and self.input_dropout.get(k, 0.0) > 0:
                    feats[k] = nn.functional.dropout(feats[k], self.input_dropout[k], True)
                if self.training and self.input_noise.get(k, 0.0) > 0:
                    feats[k] = feats[k] + self.input_noise[k] * torch.randn_like(feats[k])
            h = torch.cat([self.enc[k](feats[k]) for k in FEATURES], 1)
            for conv, norm in zip(self.convs, self.norms, strict=True):
                h = nn.functional.dropout(
                    torch.relu(norm(conv(h, edge_index))), 0.25, self.training
                )
            return self.cls(h)

    torch.manual_seed(0)
    model = (
        NodeClassifier(FEATURES, NUM_CLASSES, kind="gat", num_layers=3)
        if method == "ours"
        else PygStack(regularise=method == "pyg-reg")
    )
    model.train()
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        logits = model(x, graph.edge_index)
        loss = nn.functional.cross_entropy(logits, target)
        loss.backward()
        times.append(time.perf_counter() - t0)
    return {"seconds": times[1:], "peak_rss_gb": _rss_gb(), "nodes": int(graph.num_nodes)}


def _worker_main(args) -> None:
    if args.worker.startswith("laplace-"):
        result = _laplace_worker(args.worker[8:], args.labels, args.laplace_mm, args.tol)
    else:
        result = _gat_worker(args.worker[4:], args.gat_nodes, args.repeats)
    print("RESULT " + json.dumps(result))


def _subprocess(worker: str, args, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{worker} failed:\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _load() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------- rows


def row_laplace(args, tmp: Path) -> list[str]:
    sys.path.insert(0, str(HERE))
    from bench_laplace import mni_labels

    labels_path = tmp / "labels.npy"
    np.save(labels_path, mni_labels(args.laplace_mm))
    extra = [
        "--labels",
        str(labels_path),
        "--laplace-mm",
        str(args.laplace_mm),
        "--tol",
        str(args.tol),
    ]
    load0 = _load()
    runs: dict[str, list[dict]] = {"ours": [], "scipy": [], "pyamg": []}
    for _ in range(args.repeats):
        for method in runs:
            runs[method].append(_subprocess(f"laplace-{method}", args, extra))
            print(f"# laplace {method}: {runs[method][-1]}", flush=True)
    med = {
        m: {
            k: statistics.median(r[k] for r in rs)
            for k in ("setup_s", "solve_s", "total_s", "peak_rss_gb")
        }
        for m, rs in runs.items()
    }
    load = f"{load0:.1f} / {_load():.1f}"
    o, s, p = med["ours"], med["scipy"], med["pyamg"]
    unknowns = f"{args.laplace_mm} mm"
    return [
        f"| Laplace, MNI cortex at {unknowns}, setup + solve | {o['total_s']:.2f} s (setup {o['setup_s']:.2f}, "
        f"{runs['ours'][0]['iterations']} it.; loading the compiled kernels in a fresh process "
        f"{statistics.median(r['warmup_s'] for r in runs['ours']):.2f} s more) | scipy CG + Jacobi {s['total_s']:.1f} s (assembly "
        f"{s['setup_s']:.1f}, {runs['scipy'][0]['iterations']} it.); pyamg SA-CG {p['total_s']:.1f} s "
        f"(setup {p['setup_s']:.1f}, {runs['pyamg'][0]['iterations']} it.) | "
        f"{s['total_s'] / o['total_s']:.1f}x; {p['total_s'] / o['total_s']:.1f}x | >= 10x vs scipy | {load} |",
        f"| same, solve only | {o['solve_s']:.2f} s | scipy {s['solve_s']:.1f} s; pyamg {p['solve_s']:.1f} s | "
        f"{s['solve_s'] / o['solve_s']:.1f}x; {p['solve_s'] / o['solve_s']:.1f}x | | {load} |",
        f"| Laplace peak memory (process; labels alone {runs['ours'][0]['labels_rss_gb']:.2f}) | "
        f"{o['peak_rss_gb']:.2f} GB | {s['peak_rss_gb']:.2f} / {p['peak_rss_gb']:.2f} GB | | <= 2 GB | {load} |",
    ]


def row_isosurface(args) -> list[str]:
    sys.path.insert(0, str(HERE))
    from bench_isosurface import gyrified_sphere
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

    from cortexgraph.meshes.isosurface import extract_isosurface

    def raw(volume, level):
        image = vtkImageData()
        image.SetDimensions(volume.shape[2], volume.shape[1], volume.shape[0])
        scalars = numpy_support.numpy_to_vtk(volume.reshape(-1), deep=False)
        image.GetPointData().SetScalars(scalars)
        contour = vtkFlyingEdges3D()
        contour.SetInputData(image)
        contour.SetValue(0, level)
        contour.ComputeNormalsOff()
        contour.ComputeGradientsOff()
        contour.ComputeScalarsOff()
        contour.InterpolateAttributesOff()
        contour.Update()
        poly = contour.GetOutput()
        points = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())
        faces = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
        return points, faces

    volume = gyrified_sphere(args.iso_n)
    level = 0.6
    fns = {
        "vtk": lambda: raw(volume, level),
        "ours": lambda: extract_isosurface(volume, level),
        "ours_nocheck": lambda: extract_isosurface(volume, level, check_finite=False),
    }
    load0 = _load()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats + 1):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out = fn()
            times[k].append(time.perf_counter() - t0)
            assert len(out[1]) > 0
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    load = f"{load0:.1f} / {_load():.1f}"
    return [
        f"| isosurface {args.iso_n}^3 | {med['ours']:.3f} s ({med['ours_nocheck']:.3f} s with "
        f"check_finite=False) | raw vtkFlyingEdges3D {med['vtk']:.3f} s | {med['vtk'] / med['ours']:.2f}x "
        f"({med['vtk'] / med['ours_nocheck']:.2f}x) | >= 1x | {load} |"
    ]


def row_median(args) -> list[str]:
    from scipy import ndimage

    from cortexgraph.maps3d.filters import binary_median_filter, binary_median_filter_chunked

    rng = np.random.default_rng(0)
    n = args.median_n
    mask = rng.random((n, n, n)) < 0.5
    load0 = _load()
    ours, chunked, peer = [], [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        a = binary_median_filter(mask, 11)
        t1 = time.perf_counter()
        c = binary_median_filter_chunked(mask, 11, chunks=n // 2).compute(scheduler="synchronous")
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        chunked.append(t2 - t1)
        if r < args.scipy_median_repeats:
            t3 = time.perf_counter()
            ref = ndimage.median_filter(mask, size=11)
            peer.append(time.perf_counter() - t3)
            assert np.array_equal(a, ref) and np.array_equal(c, ref)
    o, c, s = (statistics.median(v) for v in (ours, chunked, peer))
    load = f"{load0:.1f} / {_load():.1f}"
    return [
        f"| 11^3 binary median {n}^3 | {o:.3f} s (chunked {c:.3f} s) | scipy median_filter {s:.1f} s | "
        f"{s / o:.0f}x / {s / c:.0f}x | met | {load} |"
    ]


def row_gat(args) -> list[str]:
    load0 = _load()
    # one timed pass per subprocess (after a warm-up pass), the methods taking turns, so that a
    # change of the machine's load falls on all of them alike
    extra = ["--gat-nodes", str(args.gat_nodes), "--repeats", "1"]
    methods = ("ours", "pyg", "pyg-reg")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for method in methods:
            runs[method].append(_subprocess(f"gat-{method}", args, extra))
    seconds = {m: [r["seconds"][0] for r in runs[m]] for m in methods}
    rss = {m: max(r["peak_rss_gb"] for r in runs[m]) for m in methods}
    print("".join(f"# gat {m} {seconds[m]} s, {rss[m]:.2f} GB\n" for m in methods), end="", flush=True)
    o, p, q = (statistics.median(seconds[m]) for m in methods)
    nodes = runs["ours"][0]["nodes"]
    load = f"{load0:.1f} / {_load():.1f}"
    return [
        f"| GAT3 forward+backward, {nodes:,} nodes | {o:.1f} s ({rss['ours']:.1f} GB) | "
        f"PyG GATv2Conv stack {p:.1f} s ({rss['pyg']:.1f} GB); the same stack with the "
        f"method's input dropout and noise {q:.1f} s ({rss['pyg-reg']:.1f} GB) | "
        f"{p / o:.2f}x; {q / o:.2f}x | >= 1x | {load} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="laplace,iso,median,gat")
    parser.add_argument("--laplace-mm", type=float, default=0.5)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--iso-n", type=int, default=512)
    parser.add_argument("--median-n", type=int, default=200)
    parser.add_argument("--scipy-median-repeats", type=int, default=1)
    parser.add_argument("--gat-nodes", type=int, default=20_000)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--labels", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker_main(args)
        return
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"repeats {args.repeats} (medians)",
        flush=True,
    )
    rows = []
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "laplace" in only:
            rows += row_laplace(args, Path(tmp))
        if "iso" in only:
            rows += row_isosurface(args)
        if "median" in only:
            rows += row_median(args)
        if "gat" in only:
            rows += row_gat(args)
    print("\n| metric | cortexgraph | peer | ratio | goal | load before / after |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
