"""Benchmark: the per-section midline field of the mapping stage, multigrid vs the previous SOR.

For ``--sections`` sections spread over a brain's stack (gray matter = tissue class 2 of the mask at
its level-0 spacing), times :func:`cortexgraph.mapping.midline.midline_field` with
``method="multigrid"`` (default) and ``method="sor"`` (the previous implementation: red-black SOR in
numpy from a distance-ratio initial guess, scikit-image skeleton and scipy distance maps of the whole
image), alternating, median of ``--repeats`` per section; then the largest field difference and how
far :func:`refine_points` moves 500 random gray points apart on the two fields.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_midline.py COHORT --brain B07 --sections 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.stack import SectionStack
from cortexgraph.mapping.midline import midline_field, refine_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort")
    parser.add_argument("--brain", default="B07")
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stack = SectionStack(Cohort.read(args.cohort).brain(args.brain))
    chosen = list(stack.sections)
    chosen = [
        chosen[(2 * k + 1) * len(chosen) // (2 * args.sections)] for k in range(args.sections)
    ]
    load0 = os.getloadavg()[0]
    rows, ratios, gaps = [], [], []
    rng = np.random.default_rng(0)
    for s in chosen:
        raster = stack.raster(s, "mask")
        gray = raster.read_level(0) == 2
        spacing = raster.spacing_um
        raster.close()
        times = {"sor": [], "multigrid": []}
        for _ in range(args.repeats):
            for method in times:
                t0 = time.perf_counter()
                field, _, info = midline_field(gray, spacing, method=method)
                times[method].append(time.perf_counter() - t0)
                if method == "sor":
                    sor, sor_info = field, info
                else:
                    mg, mg_info = field, info
        pixels = np.argwhere(gray)
        pick = pixels[rng.choice(len(pixels), min(500, len(pixels)), replace=False)]
        points = (pick[:, ::-1] + rng.random((len(pick), 2))) * spacing / 1000.0
        a, _ = refine_points(points, sor, spacing)
        b, _ = refine_points(points, mg, spacing)
        gap = np.linalg.norm(a - b, axis=1)
        gaps.append(gap)
        t_sor, t_mg = statistics.median(times["sor"]), statistics.median(times["multigrid"])
        ratios.append(t_sor / t_mg)
        rows.append(
            f"| {s} | {gray.shape[0]}x{gray.shape[1]} | {int(gray.sum())} | {sor_info['iterations']} | "
            f"{mg_info['iterations']} | {t_sor:.3f} | {t_mg:.3f} | {t_sor / t_mg:.1f}x | "
            f"{float(np.abs(sor - mg).max()):.1e} | {float(gap.max()) * 1000:.0f} |"
        )
    stack.close()
    every = np.concatenate(gaps)
    print(f"# load {load0:.1f} / {os.getloadavg()[0]:.1f}, spacing {spacing} um")
    print(
        "| section | image px | gray px | SOR sweeps | MG iterations | SOR s | multigrid s | speed-up "
        "| max field diff | max point gap um |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nmedian speed-up {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x); refined points: "
        f"{np.mean(every < 1e-3) * 100:.1f}% within 1 um, max {every.max() * 1000:.0f} um "
        f"(one integration step = {0.5 * spacing:.0f} um)"
    )


if __name__ == "__main__":
    main()
