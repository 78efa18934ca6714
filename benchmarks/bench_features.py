"""Benchmark: node-feature extraction (`cortexgraph features`) throughput, reading versus computing.

Each repeat runs :func:`cortexgraph.features.nodes.compute_node_features` on one brain's graphs in a
fresh subprocess (so the peak RSS is that run's own) and reports the CY patches per second, the share
of the CY time spent reading patches (HDF5 block reads + cutting) versus encoding them, the time of
CO / PM / Y, and the peak RSS.  A second measurement compares the batched extraction with one
``Raster.read_patch`` call per node on a sample of nodes.  The brain's graphs must exist
(``cortexgraph build-graph``), and so must the encoder (``cortexgraph train-encoder``); outputs are
overwritten.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_features.py COHORT --brain B01 \
        --encoder demo --repeats 3 [--device cpu]
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
import json, resource, sys, time
import torch
from cortexgraph.data.manifest import find_brain
from cortexgraph.features.nodes import compute_node_features
root, brain_id, encoder, device = sys.argv[1:5]
brain = find_brain(brain_id, root)
start_wall, start_cpu = time.perf_counter(), time.process_time()
results = compute_node_features(brain, encoder, device=device, overwrite=True)
report = {
    "wall_s": time.perf_counter() - start_wall,
    "cpu_s": time.process_time() - start_cpu,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    "torch_threads": torch.get_num_threads(),
    "device": device,
    "hemispheres": results,
}
print("REPORT" + json.dumps(report))
"""

COMPARE = r"""
import json, sys, time
import h5py, numpy as np
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.features.nodes import encoder_file
from cortexgraph.features.patches import read_patches
from cortexgraph.features.train import load_encoder
root, brain_id, encoder, sample = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
brain = find_brain(brain_id, root)
_, preset, _ = load_encoder(encoder_file(brain.cohort, encoder))
with h5py.File(brain.derivatives / "graph" / "lh.h5", "r") as h5:
    section = h5["nodes/section"][...]
    point = h5["nodes/point_mm"][...].astype(np.float64)
    valid = h5["nodes/valid"][...]
stack = SectionStack(brain)
s = np.bincount(section[valid]).argmax()  # the section with the most nodes
nodes = np.flatnonzero(valid & (section == s))[:sample]
raster = stack.raster(int(s), "image")
t = time.perf_counter()
batch = read_patches(raster, point[nodes], preset.patch_px, preset.spacing_um)
batched = time.perf_counter() - t
raster.close()
raster = stack.raster(int(s), "image")
t = time.perf_counter()
single = np.stack([raster.read_patch(tuple(p), preset.patch_px, preset.spacing_um, fill=255)
                   for p in point[nodes]])
one_by_one = time.perf_counter() - t
print("REPORT" + json.dumps({
    "section": int(s), "patches": int(len(nodes)), "batched_s": batched,
    "one_by_one_s": one_by_one, "max_abs_diff": float(np.abs(batch - single).max()),
}))
"""


def _child(code: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT"))
    return json.loads(line[len("REPORT") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort")
    parser.add_argument("--brain", default="B01")
    parser.add_argument("--encoder", default=None, help="encoder name (default: by image spacing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare", type=int, default=300, help="nodes for the per-patch check")
    args = parser.parse_args()
    encoder = args.encoder or ""

    reports = [
        _child(CHILD, args.cohort, args.brain, encoder, args.device) for _ in range(args.repeats)
    ]
    rows = []
    for r in reports:
        stages = r["hemispheres"]

        def per_hemi(stage, stages=stages):
            return [stages[stage][h] for h in ("lh", "rh") if h in stages[stage]]

        hemis = per_hemi("cy")
        patches = sum(h["patches"] for h in hemis)
        reading = sum(h["seconds_reading_patches"] for h in hemis)
        encoding = sum(h["seconds_encoding"] for h in hemis)
        read_cpu = sum(h["cpu_seconds_reading_patches"] for h in hemis)
        encode_cpu = sum(h["cpu_seconds_encoding"] for h in hemis)
        rows.append(
            {
                "cy_cpu_s": read_cpu + encode_cpu,
                "reading_cpu_s": read_cpu,
                "encoding_cpu_s": encode_cpu,
                "nodes": sum(h["nodes"] for h in hemis),
                "patches": patches,
                "cy_s": reading + encoding,
                "reading_s": reading,
                "encoding_s": encoding,
                "fill_s": sum(h["seconds_total"] for h in hemis) - reading - encoding,
                "co_s": sum(h["seconds"] for h in per_hemi("priors")),
                "y_s": sum(h["seconds"] for h in per_hemi("labels")),
                "total_s": r["wall_s"],
                "cpu_s": r["cpu_s"],
                "rss": r["peak_rss_gb"],
            }
        )

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"torch threads {reports[0]['torch_threads']}, device {args.device}"
    )
    print(
        f"brain {args.brain}: {rows[0]['nodes']} nodes in 2 graphs, "
        f"{rows[0]['patches']} CY patches, {args.repeats} repeats (median, min-max)"
    )
    print("| quantity | median | min | max |")
    print("|---|---|---|---|")
    for key, label in (
        ("cy_s", "CY patches: reading + encoding, s"),
        ("reading_s", "  reading patches, s"),
        ("encoding_s", "  encoding patches, s"),
        ("cy_cpu_s", "CY patches: reading + encoding, CPU s"),
        ("reading_cpu_s", "  reading patches, CPU s"),
        ("encoding_cpu_s", "  encoding patches, CPU s"),
        ("fill_s", "CY neighbour filling, s"),
        ("co_s", "CO + PM (node-priors), s"),
        ("y_s", "Y and masks, s"),
        ("total_s", "whole `features` run (wall), s"),
        ("cpu_s", "whole run, CPU s"),
    ):
        values = [row[key] for row in rows]
        print(f"| {label} | {med(key):.2f} | {min(values):.2f} | {max(values):.2f} |")
    for label, total, part in (
        ("wall", "cy_s", "reading_s"),
        ("CPU", "cy_cpu_s", "reading_cpu_s"),
    ):
        throughput = [row["patches"] / row[total] for row in rows]
        share = [row[part] / row[total] for row in rows]
        print(
            f"| CY throughput ({label} time), patches/s | {statistics.median(throughput):.0f} | "
            f"{min(throughput):.0f} | {max(throughput):.0f} |"
        )
        print(
            f"| share of CY {label} time reading | {100 * statistics.median(share):.0f}% | "
            f"{100 * min(share):.0f}% | {100 * max(share):.0f}% |"
        )
    print(f"peak RSS (max over repeats): {max(row['rss'] for row in rows):.2f} GB")
    cmp = _child(COMPARE, args.cohort, args.brain, encoder, str(args.compare))
    print(
        f"batched vs one read_patch per node ({cmp['patches']} nodes of section {cmp['section']}): "
        f"{cmp['batched_s']:.3f} s vs {cmp['one_by_one_s']:.3f} s "
        f"({cmp['one_by_one_s'] / max(cmp['batched_s'], 1e-9):.0f}x), "
        f"max |difference| {cmp['max_abs_diff']:.0f} grey levels"
    )


if __name__ == "__main__":
    main()
