"""Benchmark: are both hemispheres of a whole phantom brain found, and how accurate is each midsurface?

For each seed: one whole brain (no posterior slab) at the tiny preset's resolution (every 60th
section, 160 µm/px) from ``cortexgraph synth --preset tiny --params`` (``slab_posterior_mm = false``),
then ``cortexgraph build-graph``
with the default ``--hemispheres auto``; the report lists the hemispheres found, the fissure plane,
its dip ratio (``reconstruct.hemispheres.fissure_dip``), the share of the cortex left of it, and the
mean distance of each hemisphere's midsurface to the phantom's true one.

    python benchmarks/bench_hemispheres.py OUT --seeds 0,1,2 [--voxel-mm 1.2] [--md FILE]
    python benchmarks/bench_hemispheres.py OUT --seeds 0 --slabs   # the preset's posterior slabs

OUT is a work folder (outside the repository); a cohort per seed is written there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def phantom(out: Path, seed: int, slabs: bool) -> Path:
    """A cohort at the tiny preset's resolution in ``out``: one whole brain (B07; ``cortexgraph synth
    OUT --preset tiny --brains B07 --seed S --params whole.toml`` with ``slab_posterior_mm = false``),
    or with ``slabs`` the preset's posterior slabs of B01, B03 and B07."""
    if not (out / "synth.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "cortexgraph.cli.main", "synth", str(out), "--preset", "tiny"]
        argv += ["--seed", str(seed), "--overwrite"]  # an unfinished phantom is replaced
        if not slabs:
            params = out.parent / "whole.toml"
            params.write_text("slab_posterior_mm = false  # the whole brain\n")
            argv += ["--brains", "B07", "--params", str(params)]
        subprocess.run(argv, check=True, capture_output=True)
    return out


def build(root: Path, brain: str, voxel_mm: float) -> dict:
    """``cortexgraph build-graph BRAIN`` with automatic hemispheres; the measures of its reports."""
    argv = [sys.executable, "-m", "cortexgraph.cli.main", "build-graph", brain, "--root", str(root)]
    argv += ["--voxel-mm", str(voxel_mm), "--edge-mm", str(voxel_mm)]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - start
    qc = root / "derivatives" / "cortexgraph" / brain / "qc"
    report = json.loads((qc / "build-graph.json").read_text())["midsurfaces"]
    accuracy = json.loads((qc / "build-graph-accuracy.json").read_text())
    row = {
        "wall_s": wall,
        "hemispheres": report["hemispheres"],
        "midline_x_mm": report["midline_x_mm"],
        "dip": report["fissure"].get("fissure_tissue_ratio"),
        "left": report["fissure"].get("cortex_left_fraction"),
    }
    for hemi in ("lh", "rh"):
        if hemi in accuracy:
            row[f"{hemi}_mean_mm"] = accuracy[hemi]["distance_mm_mean"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--voxel-mm", type=float, default=1.2)
    parser.add_argument("--md", type=Path, default=None, help="append a table to this file")
    parser.add_argument(
        "--slabs", action="store_true", help="the tiny preset's posterior slabs (B01, B03, B07)"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    lines = [
        "| seed | brain | hemispheres found | plane x mm | dip ratio | cortex left | lh mean mm | rh mean mm "
        "| build-graph s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in [int(s) for s in args.seeds.split(",")]:
        folder = args.out / (f"slabs{seed}" if args.slabs else f"seed{seed}")
        root = phantom(folder, seed, args.slabs)
        for brain in ("B01", "B03", "B07") if args.slabs else ("B07",):
            row = build(root, brain, args.voxel_mm)
            lines.append(
                f"| {seed} | {brain} | {' '.join(row['hemispheres'])} | {row['midline_x_mm']:.1f} | "
                f"{row['dip']:.2f} | {row['left']:.2f} | {row.get('lh_mean_mm', float('nan')):.3f} "
                f"| {row.get('rh_mean_mm', float('nan')):.3f} | {row['wall_s']:.0f} |"
            )
            print(lines[-1], flush=True)
    if args.md is not None:
        with args.md.open("a") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
