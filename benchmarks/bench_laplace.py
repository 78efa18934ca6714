"""Benchmark: cortexgraph's matrix-free multigrid Laplace solver vs scipy CG (Jacobi) on MNI152.

Labels: nilearn's MNI152 2009 GM/WM templates (1 mm), resampled trilinearly to the chosen voxel
size, thresholded (gm > 0.5 & gm >= wm -> 2 cortex, wm > 0.5 -> 1 white, else 0). Both solvers
solve the same discrete system (``cortexgraph.meshes.laplace.laplace_system``) to the same relative
residual ``||b - A x|| / ||b|| <= 1e-5``. scipy: CG, float64 CSR matrix, Jacobi preconditioner,
x0 = 0; its time is split into assembly and solve. Ours: setup (crop, index tables, multigrid
hierarchy) and solve. Run with OMP_NUM_THREADS=1 for a one-core comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_laplace.py --voxel-mm 0.5 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import platform
import resource
import statistics
import time

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse.linalg as spla
import torch

from cortexgraph.meshes.laplace import laplace_system, solve_laplace_depth


def mni_labels(voxel_mm: float) -> np.ndarray:
    """MNI152 tissue labels at ``voxel_mm`` (trilinear resampling of the 1 mm templates)."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    gm = np.asarray(load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    scale = voxel_mm  # new voxel (i') sits at old voxel coordinate scale * i' + (scale - 1) / 2
    shape = tuple(int(round(s / scale)) for s in gm.shape)
    offset = (scale - 1.0) / 2.0
    if scale != 1.0:
        gm = ndi.affine_transform(gm, np.full(3, scale), offset=offset, output_shape=shape, order=1)
        wm = ndi.affine_transform(wm, np.full(3, scale), offset=offset, output_shape=shape, order=1)
    labels = np.zeros(gm.shape, dtype=np.uint8)
    labels[wm > 0.5] = 1
    labels[(gm > 0.5) & (gm >= wm)] = 2
    return labels


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-mm", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--skip-scipy", action="store_true")
    args = parser.parse_args()

    labels = mni_labels(args.voxel_mm)
    print(
        f"# MNI152 labels at {args.voxel_mm} mm: shape {labels.shape}, "
        f"cortex voxels {(labels == 2).sum()}, torch threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}"
    )
    rss0 = peak_rss_gb()

    ours = []
    for _ in range(args.repeats):
        depth, info = solve_laplace_depth(labels, args.voxel_mm, tol=args.tol)
        ours.append(info)
    rss_ours = peak_rss_gb()
    med = {
        k: statistics.median(i[k] for i in ours)
        for k in ("setup_seconds", "solve_seconds", "seconds")
    }
    print(
        f"ours: unknowns {ours[0]['unknowns']}, levels {ours[0]['levels']}, "
        f"iterations {ours[0]['iterations']}, residual {ours[0]['residual']:.2e}"
    )

    rows = [
        (
            "multigrid-PCG float32 (ours)",
            med["setup_seconds"],
            med["solve_seconds"],
            med["seconds"],
            ours[0]["iterations"],
            ours[0]["residual"],
            rss_ours,
        )
    ]
    if not args.skip_scipy:
        assemble_s, solve_s, iters = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            a, b, index = laplace_system(labels, args.voxel_mm)
            inv_diag = 1.0 / a.diagonal()
            precond = spla.LinearOperator(
                a.shape, matvec=functools.partial(np.multiply, inv_diag), dtype=np.float64
            )
            t1 = time.perf_counter()
            count = [0]

            def tick(_xk, count=count):
                count[0] += 1

            x, flag = spla.cg(a, b, rtol=args.tol, atol=0.0, M=precond, callback=tick)
            t2 = time.perf_counter()
            assemble_s.append(t1 - t0)
            solve_s.append(t2 - t1)
            iters.append(count[0])
        residual = float(np.linalg.norm(b - a @ x) / np.linalg.norm(b))
        diff = float(np.abs(depth[tuple(index.T)] - x).max())
        rows.append(
            (
                "scipy CG + Jacobi float64",
                statistics.median(assemble_s),
                statistics.median(solve_s),
                statistics.median(assemble_s) + statistics.median(solve_s),
                iters[0],
                residual,
                peak_rss_gb(),
            )
        )
        print(f"scipy cg flag {flag}; max |depth_ours - depth_scipy| = {diff:.2e}")

    print(
        "\n| solver | setup/assembly s | solve s | total s | iterations | rel. residual "
        "| peak RSS GB (process) |\n|---|---|---|---|---|---|---|"
    )
    for name, s0, s1, s2, it, res, rss in rows:
        print(f"| {name} | {s0:.2f} | {s1:.2f} | {s2:.2f} | {it} | {res:.1e} | {rss:.2f} |")
    if len(rows) == 2:
        print(
            f"\nspeed-up solve: {rows[1][2] / rows[0][2]:.1f}x, total: "
            f"{rows[1][3] / rows[0][3]:.1f}x (median of {args.repeats}; labels alone "
            f"{rss0:.2f} GB RSS)"
        )


if __name__ == "__main__":
    main()
