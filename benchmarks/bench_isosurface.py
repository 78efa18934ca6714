"""Benchmark: VTK flying edges vs scikit-image Lewiner marching cubes (cortexgraph wrappers).

Volumes: a smooth synthetic "gyrified sphere" field at 128^3, 256^3 and 384^3 (float32), and the
MNI152 cortical depth field at 1 mm (NaN outside cortex, so the NaN/mask path is timed too).
Median wall time of ``--repeats`` runs of ``extract_isosurface`` (including the NaN handling,
orientation check and affine), triangle counts, and peak traced Python memory per call.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_isosurface.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from cortexgraph.meshes.isosurface import extract_isosurface


def gyrified_sphere(n: int) -> np.ndarray:
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    r = np.sqrt(x**2 + y**2 + z**2)
    return (r + 0.05 * np.sin(12 * x) * np.sin(12 * y) * np.sin(12 * z)).astype(np.float32)


def mni_depth() -> np.ndarray:
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    from cortexgraph.meshes.laplace import solve_laplace_depth

    gm = np.asarray(load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    labels = np.zeros(gm.shape, dtype=np.uint8)
    labels[wm > 0.5] = 1
    labels[(gm > 0.5) & (gm >= wm)] = 2
    depth, _ = solve_laplace_depth(labels, 1.0)
    return depth


def time_one(volume: np.ndarray, level: float, method: str, repeats: int):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vertices, faces = extract_isosurface(volume, level, np.eye(4), method=method)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    extract_isosurface(volume, level, np.eye(4), method=method)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), len(faces), peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 384])
    args = parser.parse_args()
    cases = [(f"gyrified sphere {n}^3", gyrified_sphere(n), 0.6) for n in args.sizes]
    cases.append(("MNI152 depth 1 mm (NaN outside cortex)", mni_depth(), 0.5))
    print("| volume | method | median s | triangles | peak traced MB |")
    print("|---|---|---|---|---|")
    for name, volume, level in cases:
        results = {}
        for method in ("flying_edges", "lewiner"):
            seconds, n_faces, peak = time_one(volume, level, method, args.repeats)
            results[method] = seconds
            print(f"| {name} | {method} | {seconds:.3f} | {n_faces} | {peak:.0f} |")
        print(f"| {name} | speed-up | {results['lewiner'] / results['flying_edges']:.2f}x | | |")


if __name__ == "__main__":
    main()
