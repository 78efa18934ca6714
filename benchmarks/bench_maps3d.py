"""Benchmark of the 3D area map stage (cortexgraph.maps3d).

Part 1: 11^3 binary median as a box-count majority vote vs scipy.ndimage.median_filter
        (equal outputs are checked), on random binary volumes.
Part 2: end to end map3d on an n^3 volume at 20 um (n = 1260: 2.0 GB of bool), out of core:
        synthetic sections of a spherical-shell "area" cap (known volume and pial area) with
        salt-and-pepper noise and small false-positive blobs, ~20 % of sections excluded by QC;
        assemble -> interpolate -> 11^3 median (dask, chunked) -> 27 mm^3 components (dask,
        chunked) -> full-resolution surface (chunked) + 100 um preview surface -> depth look-up
        -> area report. Volumes live in np.memmap files; peak memory is reported as the peak
        resident set, which includes the memmap pages the kernel keeps resident.

    .venv/bin/python benchmarks/bench_maps3d.py --part median --n-median 128 --repeats 3
    .venv/bin/python benchmarks/bench_maps3d.py --part e2e --n 1260 --repeats 1
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench_median(n: int, repeats: int, scipy_repeats: int) -> None:
    from scipy import ndimage

    from cortexgraph.maps3d.filters import binary_median_filter

    rng = np.random.default_rng(0)
    mask = rng.random((n, n, n)) < 0.5
    box_times, scipy_times = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours = binary_median_filter(mask, 11)
        box_times.append(time.perf_counter() - t)
    for _ in range(scipy_repeats):
        t = time.perf_counter()
        ref = ndimage.median_filter(mask, size=11)
        scipy_times.append(time.perf_counter() - t)
    assert np.array_equal(ours, ref), "box median differs from scipy"
    tb, ts = float(np.median(box_times)), float(np.median(scipy_times))
    print("| volume | runs (box / scipy) | box-count median s | scipy median_filter s | speed-up |")
    print("|---|---|---|---|---|")
    print(
        f"| {n}^3 bool, size 11 | {repeats} / {scipy_repeats} | {tb:.3f} | {ts:.2f} | {ts / tb:.0f}x |"
    )
    print(f"outputs identical: True; peak RSS {peak_rss_gb():.2f} GB")


# ------------------------------------------------------------------ synthetic cap of a shell

R_OUT, R_IN, CAP_DEG = 11.0, 8.5, 80.0  # mm, mm, polar angle of the cap around +z


class SyntheticSections(Mapping):
    """Lazy section masks: the cap evaluated in each section's own (rotated, shifted) pixel frame."""

    def __init__(self, n, h, matrices, centre, blobs, flip_p, seed):
        self.n, self.h, self.m, self.c = n, h, matrices, centre
        self.blobs, self.flip_p, self.seed = blobs, flip_p, seed

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))

    def __getitem__(self, s):
        rows, cols = np.indices((self.n, self.n), dtype=np.float32)
        m = self.m[s]
        x = m[0, 0] * cols + m[0, 1] * rows + m[0, 2] - self.c[0]
        z = m[1, 0] * cols + m[1, 1] * rows + m[1, 2] - self.c[2]
        y = s * self.h - self.c[1]
        r = np.sqrt(x * x + y * y + z * z)
        cos_polar = np.divide(z, r, out=np.zeros_like(r), where=r > 0)
        sec = (r < R_OUT) & (r >= R_IN) & (cos_polar > math.cos(math.radians(CAP_DEG)))
        for bx, by, bz, br in self.blobs:
            dy = y - by
            if abs(dy) < br:
                sec |= (x - bx) ** 2 + (z - bz) ** 2 < br * br - dy * dy
        rng = np.random.default_rng(self.seed + s)
        sec ^= rng.random(sec.shape, dtype=np.float32) < self.flip_p
        return sec


def bench_e2e(n: int, chunk: int, workers: int, workdir: Path, seed: int) -> dict:
    import dask
    import dask.array as da

    from cortexgraph.maps3d.assemble import assemble_area_volume
    from cortexgraph.maps3d.filters import (
        binary_median_filter_chunked,
        remove_small_components_chunked,
    )
    from cortexgraph.maps3d.interpolate import interpolate_missing_sections
    from cortexgraph.maps3d.morphometry import area_report, sample_at_vertices
    from cortexgraph.maps3d.surface import mask_surface, mask_surface_chunked

    h = 0.02 * 1260 / n  # keep the physical size (25.2 mm cube) whatever n is
    shape = (n, n, n)
    affine = np.diag([h, h, h, 1.0])
    centre = np.array([n * h / 2] * 3)
    rng = np.random.default_rng(seed)
    # small rigid in-plane misalignment of each section: pixel (col, row) -> (x_mm, z_mm)
    matrices = {}
    for s in range(n):
        a = np.deg2rad(rng.normal(0, 0.2))
        ox, oz = rng.normal(0, 2 * h, 2)
        matrices[s] = np.array(
            [[h * np.cos(a), -h * np.sin(a), ox], [h * np.sin(a), h * np.cos(a), oz], [0, 0, 1]]
        )
    # 60 false-positive blobs of radius 0.3 mm (0.11 mm^3) outside the shell
    blobs = []
    while len(blobs) < 60:
        p = rng.uniform(-11.5, 11.5, 3)
        if not (R_IN - 1.0 < np.linalg.norm(p) < R_OUT + 1.0):
            blobs.append((p[0], p[1], p[2], 0.3))
    sections = SyntheticSections(n, h, matrices, centre, blobs, flip_p=0.05, seed=seed)
    # QC: exclude ~20 % of sections in runs of 1-3
    excluded = set()
    while len(excluded) < 0.2 * n:
        s0 = int(rng.integers(1, n - 4))
        excluded.update(range(s0, s0 + int(rng.integers(1, 4))))

    times, rss = {}, {}
    dask.config.set(scheduler="threads", num_workers=workers)
    a_path, b_path = workdir / "a.npy", workdir / "b.npy"
    vol_a = np.lib.format.open_memmap(a_path, mode="w+", dtype=bool, shape=shape)
    vol_b = np.lib.format.open_memmap(b_path, mode="w+", dtype=bool, shape=shape)

    t = time.perf_counter()
    _, known = assemble_area_volume(
        sections,
        matrices,
        shape,
        affine,
        section_y_mm=lambda s: s * h,
        excluded=excluded,
        out=vol_a,
    )
    times["assemble (incl. synthesising sections)"] = time.perf_counter() - t
    rss["assemble (incl. synthesising sections)"] = peak_rss_gb()

    t = time.perf_counter()
    interpolate_missing_sections(vol_a, known, voxel_size_mm=h, out=vol_a)
    times["interpolate (linear Laplace, in place)"] = time.perf_counter() - t
    rss["interpolate (linear Laplace, in place)"] = peak_rss_gb()

    t = time.perf_counter()
    med = binary_median_filter_chunked(da.from_array(vol_a, chunks=chunk), 11)
    da.store(med, vol_b, lock=False)
    times[f"median 11^3 (dask, chunks {chunk}^3)"] = time.perf_counter() - t
    rss[f"median 11^3 (dask, chunks {chunk}^3)"] = peak_rss_gb()

    t = time.perf_counter()
    clean = remove_small_components_chunked(
        da.from_array(vol_b, chunks=chunk), 27.0, voxel_size_mm=h
    )
    da.store(clean, vol_a, lock=False)
    times["components >= 27 mm^3 (dask, 26-conn.)"] = time.perf_counter() - t
    rss["components >= 27 mm^3 (dask, 26-conn.)"] = peak_rss_gb()

    t = time.perf_counter()
    verts, faces = mask_surface_chunked(vol_a, affine, chunk_vox=chunk)
    times["surface full resolution (chunked MC, sigma 1)"] = time.perf_counter() - t
    rss["surface full resolution (chunked MC, sigma 1)"] = peak_rss_gb()

    t = time.perf_counter()
    factor = max(1, round(0.1 / h))
    pverts, pfaces = mask_surface(vol_a, affine, downsample=factor)
    times[f"surface preview ({factor * h * 1000:.0f} um)"] = time.perf_counter() - t
    rss[f"surface preview ({factor * h * 1000:.0f} um)"] = peak_rss_gb()

    t = time.perf_counter()
    # depth volume at the preview grid (0 outside, 1 white matter), trilinear look-up
    scale = np.diag([float(factor)] * 3 + [1.0])
    scale[:3, 3] = (
        factor - 1
    ) / 2.0  # preview voxel i -> centre of original voxels f i .. f i + f - 1
    paff = affine @ scale
    m = math.ceil(n / factor)
    g = np.indices((m, m, m), dtype=np.float32) * (factor * h) + paff[0, 3]
    r = np.sqrt(sum((g[i] - centre[i]) ** 2 for i in range(3)))
    depth_vol = np.clip((R_OUT - r) / (R_OUT - R_IN), 0.0, 1.0)
    depth = sample_at_vertices(depth_vol, paff, verts, order=1)
    row = area_report("cap", da.from_array(vol_a, chunks=chunk), affine, verts, faces, depth)
    times["depth look-up + area report"] = time.perf_counter() - t
    rss["depth look-up + area report"] = peak_rss_gb()

    cosa = math.cos(math.radians(CAP_DEG))
    exact_vol = 2 * math.pi / 3 * (1 - cosa) * (R_OUT**3 - R_IN**3)
    exact_pial = 2 * math.pi * R_OUT**2 * (1 - cosa)
    print(
        f"\nend to end, {n}^3 bool ({n**3 / 1e9:.2f} GB), voxel {h * 1000:.0f} um, "
        f"{len(excluded)} of {n} sections excluded, {workers} dask threads"
    )
    print("| step | seconds | peak RSS so far, GB |")
    print("|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} | {rss[k]:.2f} |")
    print(f"| **total** | **{sum(times.values()):.1f}** |")
    print(f"\npeak RSS {peak_rss_gb():.2f} GB (includes resident memmap pages)")
    print(
        f"volume {row['volume_mm3']:.1f} mm^3 (analytic cap {exact_vol:.1f}, "
        f"{row['volume_mm3'] / exact_vol - 1:+.2%})"
    )
    print(
        f"pial area {row['surface_mm2']:.1f} mm^2 (analytic {exact_pial:.1f}, "
        f"{row['surface_mm2'] / exact_pial - 1:+.2%}); mesh {len(verts)} vertices, "
        f"{len(faces)} triangles; preview mesh {len(pfaces)} triangles"
    )
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=["median", "e2e", "all"], default="all")
    ap.add_argument("--n-median", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy-repeats", type=int, default=1)
    ap.add_argument("--n", type=int, default=1260)
    ap.add_argument("--chunk", type=int, default=252)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.part in ("median", "all"):
        bench_median(args.n_median, args.repeats, args.scipy_repeats)
    if args.part in ("e2e", "all"):
        runs = []
        for i in range(args.repeats):
            work = Path(tempfile.mkdtemp(prefix="bench_maps3d_", dir=args.workdir))
            try:
                runs.append(bench_e2e(args.n, args.chunk, args.workers, work, seed=i))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        if len(runs) > 1:
            totals = [sum(r.values()) for r in runs]
            print(
                f"\ntotal over {len(runs)} runs: median {np.median(totals):.1f} s "
                f"(min {min(totals):.1f}, max {max(totals):.1f})"
            )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
