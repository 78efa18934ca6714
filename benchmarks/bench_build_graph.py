"""Benchmark: `cortexgraph build-graph` stage by stage, with phantom accuracy.

Each repeat runs build-graph in a fresh subprocess (so the peak RSS is that run's own) on a copy-free
cohort: outputs go to the cohort's derivatives and are overwritten. Prints per-stage seconds (median over
repeats), peak RSS, mesh sizes and the accuracy against the phantom's ground truth.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_build_graph.py COHORT --brain B01 --repeats 3 \
        [--voxel-mm 0.3 --edge-mm 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys
from cortexgraph.build_graph import BuildGraphParameters, build_graph
from cortexgraph.data.manifest import find_brain
root, brain_id, voxel, edge = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
params = BuildGraphParameters(
    voxel_size_mm=float(voxel) if voxel != "none" else None,
    target_edge_mm=float(edge) if edge != "none" else None,
)
report = build_graph(find_brain(brain_id, root), params, overwrite=True)
report["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print("REPORT" + json.dumps(report))
"""


def run_once(root: str, brain: str, voxel: str, edge: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, root, brain, voxel, edge],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort")
    parser.add_argument("--brain", default="B01")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voxel-mm", default="none")
    parser.add_argument("--edge-mm", default="none")
    args = parser.parse_args()

    reports = [
        run_once(args.cohort, args.brain, args.voxel_mm, args.edge_mm) for _ in range(args.repeats)
    ]
    stages = list(reports[0]["seconds"])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"brain {args.brain}, voxel {reports[0]['reconstruct']['stack']['voxel_size_mm']} mm, "
        f"target edge {reports[0]['target_edge_mm']} mm, {args.repeats} repeats"
    )
    print("| stage | median s | min s | max s |")
    print("|---|---|---|---|")
    for stage in stages:
        values = [r["seconds"][stage] for r in reports]
        print(
            f"| {stage} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    print(f"peak RSS (max over repeats): {max(r['peak_rss_gb'] for r in reports):.2f} GB")
    shape = reports[0]["reconstruct"]["stack"]["shape"]
    print(
        f"volume {shape} voxels, cortex {reports[0]['reconstruct']['voxels_cortex']} voxels, "
        f"Laplace {reports[0]['laplace']['iterations']} iterations, "
        f"residual {reports[0]['laplace']['residual']:.1e}"
    )
    for hemi in ("lh", "rh"):
        mesh = reports[0]["midsurfaces"][hemi]
        mapped = reports[0]["mapping"][hemi]
        print(
            f"{hemi}: {mesh['vertices']} nodes, {mesh['edges']} edges, edge "
            f"{mesh['edge_mm_mean']:.3f} +- {mesh['edge_mm_std']:.3f} mm, "
            f"{100 * mesh['edges_within_30pct']:.1f}% within 30%, "
            f"{mapped['nodes_valid']} valid mapped nodes"
        )
    from cortexgraph.build_graph import BuildGraphParameters
    from cortexgraph.build_graph.accuracy import build_graph_accuracy, truth_folder
    from cortexgraph.data.manifest import find_brain

    brain = find_brain(args.brain, args.cohort)
    if truth_folder(brain) is not None:
        voxel = None if args.voxel_mm == "none" else float(args.voxel_mm)
        accuracy = build_graph_accuracy(brain, BuildGraphParameters(voxel_size_mm=voxel))
        print("accuracy:", json.dumps(accuracy, indent=1))


if __name__ == "__main__":
    main()
