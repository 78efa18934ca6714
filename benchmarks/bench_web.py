"""Benchmark of the web app (`cortexgraph serve`): tile latency and annotation round trip over HTTP.

A cohort of one brain with one section image of ``--size`` x ``--size`` px (uint8, 2 um, written by
cortexgraph.data.raster.write_raster: 2048 px chunks, gzip 1, pyramid down to < 256 px) and its mask
and annotation is served by uvicorn on 127.0.0.1 in this process (one worker, as `cortexgraph serve`);
requests come from httpx over TCP, one at a time (as one browser tab; the browser asks for up to six
tiles at once, which only adds queueing here).

* tiles: ``--tiles`` random 256 px tiles at each of several zoom levels (0 = full resolution, k = 2^k
  times smaller), **cold** (first request: read from the HDF5 pyramid and JPEG-encoded; the app's
  tile cache and open files are dropped before each level; the file stays in the OS page cache, as
  on a workstation that served it before) and **warm** (the same tiles again: the app's tile cache);
  median and 95th percentile in ms;
* annotation round trip: GET the section's annotation, PUT it back with one more 200-vertex polygon
  (validation, rasterisation, atomic writes, history), GET again; ``--saves`` times;
* ``--during-job COHORT``: the tile measurement repeated while a local-model job trains on brain B01
  of a phantom cohort (e.g. ``cortexgraph synth /tmp/tiny --preset tiny``), started through the app's
  job endpoint as from the browser (``--job-iterations``), then cancelled: is the page responsive
  while a job trains?

    .venv/bin/python benchmarks/bench_web.py --size 16384 --tiles 60 --saves 20
    .venv/bin/python benchmarks/bench_web.py --size 16384 --tiles 60 --saves 0 --during-job /tmp/tiny
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_cohort(folder: Path, size: int) -> Path:
    """One brain, one section: a textured image of size x size px at 2 um, mask and annotation."""
    from cortexgraph.data.manifest import Area, AreaTable, Brain, Cohort, SectionRecord
    from cortexgraph.data.raster import write_raster

    root = folder / "cohort"
    cohort = Cohort(root=root, name="bench", section_thickness_um=20.0, brain_ids=["B01"])
    root.mkdir(parents=True)
    cohort.write_manifest()
    AreaTable([Area(1, "A1", "#d62728"), Area(2, "A2", "#1f77b4")]).write(root / "areas.tsv")
    brain = Brain(id="B01", root=root / "B01", cohort=cohort, shrinkage_factor=1.0,
                  digitization_step=1, image_spacing_um=2.0, mask_spacing_um=16.0,
                  annotation_spacing_um=16.0, coords_spacing_um=64.0)  # fmt: skip
    brain.root.mkdir()
    brain.write_manifest()
    rng = np.random.default_rng(0)
    # cell-like texture: a coarse random field upsampled plus fine noise (compresses like a scan)
    coarse = rng.integers(90, 230, (size // 64 + 1, size // 64 + 1)).astype(np.uint8)
    image = np.repeat(np.repeat(coarse, 64, 0), 64, 1)[:size, :size]
    image = image - rng.integers(0, 40, (size, size), dtype=np.uint8) // 2
    write_raster(brain.root / "images/s0001.h5", image, 2.0, kind="intensity")
    small = size // 8
    yy, xx = np.mgrid[0:small, 0:small]
    disc = (yy - small / 2) ** 2 + (xx - small / 2) ** 2 < (0.4 * small) ** 2
    write_raster(
        brain.root / "masks/s0001.h5", np.where(disc, 2, 0).astype(np.uint8), 16.0, kind="labels"
    )
    write_raster(brain.root / "annotations/s0001.h5", np.where(disc & (xx < small / 2), 1, 0).astype(np.uint16),
                 16.0, kind="labels")  # fmt: skip
    brain.write_sections([SectionRecord(1, image="images/s0001.h5", mask="masks/s0001.h5",
                                        annotation="annotations/s0001.h5")])  # fmt: skip
    (brain.root / "transforms.tsv").write_text(
        "moving\tfixed\tm00\tm01\tm02\tm10\tm11\tm12\tm20\tm21\tm22\n"
    )
    return root


class Server:
    def __init__(self, root: Path, **settings) -> None:
        import uvicorn

        from cortexgraph.web.app import create_app
        from cortexgraph.web.state import WebSettings

        self.app = create_app(root, settings=WebSettings(root=root, **settings))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def percentiles(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), float(np.percentile(values, 95))


def bench_tiles(http, server, brain: str, section: int, levels: list[int], n: int, seed: int):
    state = server.app.state.web
    info = http.get(f"/api/brains/{brain}/sections/{section}/image").json()
    rows = []
    rng = np.random.default_rng(seed)
    for k in levels:
        level = info["max_level"] - k
        if level < 0:
            continue
        ny = math.ceil(math.ceil(info["height"] / 2**k) / 256)
        nx = math.ceil(math.ceil(info["width"] / 2**k) / 256)
        count = min(n, nx * ny)
        flat = rng.choice(nx * ny, size=count, replace=False)
        tiles = [(int(i % nx), int(i // nx)) for i in flat]
        state.tiles.clear()
        state.pool.close()
        timings = {}
        for phase in ("cold", "warm"):
            times = []
            for x, y in tiles:
                t = time.perf_counter()
                response = http.get(
                    f"/api/brains/{brain}/sections/{section}/image/{level}/{x}_{y}.jpg"
                )
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200, response.text
            timings[phase] = percentiles(times)
        rows.append((k, count, *timings["cold"], *timings["warm"]))
    return rows


def bench_annotations(http, saves: int):
    times = []
    base = "/api/brains/B01/sections/1/annotation"
    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    for i in range(saves):
        t = time.perf_counter()
        current = http.get(base).json()
        width = current["extent_mm"][0]  # the annotation covers the left half of the disc
        cx, cy, r = width * (0.56 + 0.06 * (i % 5)), width * 0.5, width * 0.02
        ring = [[cx + r * np.cos(a), cy + r * np.sin(a)] for a in angles]
        ring.append(ring[0])
        polygon = {"type": "Feature", "properties": {"area_id": 2},
                   "geometry": {"type": "Polygon", "coordinates": [ring]}}  # fmt: skip
        features = [f for f in current["geojson"]["features"] if f["properties"]["area_id"] == 1]
        body = {"type": "FeatureCollection", "features": features + [polygon]}
        response = http.put(base, content=json.dumps(body),
                            headers={"If-Match": current["version"], "X-Requested-With": "cortexgraph"})  # fmt: skip
        assert response.status_code == 200, response.text
        http.get(base).json()
        times.append((time.perf_counter() - t) * 1000)
    return percentiles(times)


def table(rows, title: str) -> str:
    lines = [f"{title}", "", "| zoom (2^k smaller) | tiles | cold median ms | cold p95 ms | warm median ms | warm p95 ms |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for k, count, cm, cp, wm, wp in rows:
        lines.append(f"| {k} | {count} | {cm:.1f} | {cp:.1f} | {wm:.2f} | {wp:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--tiles", type=int, default=60)
    parser.add_argument("--levels", default="0,1,2,4,6")
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--during-job", type=Path, default=None)
    parser.add_argument("--job-iterations", type=int, default=3000)
    parser.add_argument("--keep", type=Path, default=None, help="reuse / keep the cohort here")
    args = parser.parse_args()
    import httpx

    levels = [int(v) for v in args.levels.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        root = args.keep / "cohort" if args.keep else None
        if root is None or not root.is_dir():
            t = time.perf_counter()
            root = make_cohort(args.keep or workdir, args.size)
            print(f"cohort written in {time.perf_counter() - t:.1f} s: {root}")
        print(f"load average at start: {os.getloadavg()}")
        with (
            Server(root) as server,
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http,
        ):
            rows = bench_tiles(http, server, "B01", 1, levels, args.tiles, 0)
            print(table(rows, f"tiles of a {args.size} x {args.size} px image (256 px JPEG)"))
            if args.saves:
                med, p95 = bench_annotations(http, args.saves)
                print(
                    f"\nannotation round trip (GET, PUT 200-vertex polygon, GET), {args.saves} saves: "
                    f"median {med:.1f} ms, p95 {p95:.1f} ms"
                )
        if args.during_job:
            from cortexgraph.data.manifest import find_brain
            from cortexgraph.execution.service import stop_service
            from cortexgraph.web.lsm_adapter import job_status, launcher_of

            job_root = args.during_job
            brain = find_brain("B01", job_root)
            with Server(root) as big, Server(job_root, job_defaults={"arch": "hr", "preset": "auto",
                        "iterations": args.job_iterations, "seed": 0}) as phantom, \
                    httpx.Client(base_url=f"http://127.0.0.1:{big.port}") as http, \
                    httpx.Client(base_url=f"http://127.0.0.1:{phantom.port}") as jobs:  # fmt: skip
                started = jobs.post("/api/brains/B01/jobs", json={"area": "hOc1", "sections": [602, 842]},
                                    headers={"X-Requested-With": "cortexgraph"}).json()  # fmt: skip
                deadline = time.monotonic() + 120
                while "train" not in job_status(brain, started["id"]).get("progress", {}):
                    assert time.monotonic() < deadline, job_status(brain, started["id"])
                    time.sleep(0.5)
                print(f"\njob {started['id']} training (load average {os.getloadavg()})")
                rows = bench_tiles(http, big, "B01", 1, levels, args.tiles, 1)
                progress = job_status(brain, started["id"]).get("progress")
                print(table(rows, f"tiles while the job trains (job progress after: {progress})"))
                print(f"job still running: {job_status(brain, started['id'])['state']}")
                launcher_of(brain).cancel(started["id"])
            stop_service(job_root)  # the cohort's engine (the server in this process started it)
        print(f"\npeak RSS of the benchmark process (server + client): {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
