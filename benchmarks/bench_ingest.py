"""Benchmark: `cortexgraph ingest` of a 20000 x 20000 px scan as a tiled BigTIFF and as an OME-Zarr.

Writes the two synthetic scans tile by tile (a smooth "section" on glass with pixel noise, uint8, 512 px
tiles; zlib in the TIFF, zarr's default compressor in the OME-Zarr), then ingests each in a fresh subprocess (so the peak RSS is
the ingest's own) into a brain of a scratch cohort, and prints seconds, peak RSS, output size and the
machine's load. Nothing outside WORKDIR is written.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ingest.py WORKDIR [--size 20000] [--tile 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from cortexgraph.scans.ingest import ingest_brain
cohort, brain, listing, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
report = ingest_brain(cohort, brain, listing, chunk_px=chunk, overwrite=True)
seconds = time.perf_counter() - start
print("REPORT" + json.dumps({
    "seconds": seconds,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    "written": report.written,
    "shape": list(report.shapes.values())[0],
    "spacing_um": report.spacing_um,
    "format": list(report.formats.values())[0],
}))
"""


def _tile(r0: int, c0: int, rows: int, cols: int, size: int, rng) -> np.ndarray:
    """One tile of the synthetic scan: an ellipse of 'tissue' with a texture on bright glass."""
    yy = (np.arange(r0, r0 + rows)[:, None] + 0.5) / size - 0.5
    xx = (np.arange(c0, c0 + cols)[None, :] + 0.5) / size - 0.5
    inside = (xx / 0.45) ** 2 + (yy / 0.35) ** 2 < 1
    texture = 150 + 40 * np.sin(xx * 300) * np.cos(yy * 220)
    value = np.where(inside, texture, 248.0) + rng.integers(-3, 4, (rows, cols))
    return np.clip(value, 0, 255).astype(np.uint8)


def write_bigtiff(path: Path, size: int, tile: int, spacing_um: float) -> None:
    import tifffile

    rng = np.random.default_rng(0)

    def tiles():
        for r0 in range(0, size, tile):
            for c0 in range(0, size, tile):
                yield _tile(r0, c0, tile, tile, size, rng)

    tifffile.imwrite(
        path,
        tiles(),
        shape=(size, size),
        dtype=np.uint8,
        tile=(tile, tile),
        bigtiff=True,
        compression="zlib",
        metadata={
            "axes": "YX",
            "PhysicalSizeX": spacing_um,
            "PhysicalSizeY": spacing_um,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        },
    )


def write_ome_zarr(path: Path, size: int, tile: int, spacing_um: float) -> None:
    import zarr

    rng = np.random.default_rng(0)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array("0", shape=(size, size), chunks=(tile, tile), dtype="uint8")
    for r0 in range(0, size, tile):
        for c0 in range(0, size, tile):
            rows, cols = min(tile, size - r0), min(tile, size - c0)
            array[r0 : r0 + rows, c0 : c0 + cols] = _tile(r0, c0, rows, cols, size, rng)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [spacing_um, spacing_um]}
                    ],
                }
            ],
        }
    ]


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--chunk-px", type=int, default=2048)
    parser.add_argument("--spacing-um", type=float, default=1.0)
    args = parser.parse_args()
    work = args.workdir
    scans = work / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, writer in (("scan.ome.tif", write_bigtiff), ("scan.ome.zarr", write_ome_zarr)):
        target = scans / name
        if not target.exists():
            start = time.perf_counter()
            writer(target, args.size, args.tile, args.spacing_um)
            made[name] = round(time.perf_counter() - start, 1)
    results = {}
    for brain, name in (("TIFF", "scan.ome.tif"), ("ZARR", "scan.ome.zarr")):
        listing = scans / f"{brain}.tsv"
        listing.write_text(f"section\tscan\n1\t{name}\n")
        load = os.getloadavg()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(work / "cohort"),
                brain,
                str(listing),
                str(args.chunk_px),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in result.stdout.splitlines() if x.startswith("REPORT"))
        report = json.loads(line[len("REPORT") :])
        report["load_before"] = [round(v, 2) for v in load]
        report["scan_bytes"] = _bytes(scans / name)
        report["output_bytes"] = _bytes(work / "cohort" / brain / "images" / "s0001.h5")
        results[brain] = report
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print(
        json.dumps(
            {
                "size": args.size,
                "tile": args.tile,
                "chunk_px": args.chunk_px,
                "scan_writing_s": made,
                "machine": machine,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
