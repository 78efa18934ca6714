"""Benchmark: the demo cohort end to end (`cortexgraph demo`), serial vs a local Dask cluster.

Each mode runs `cortexgraph demo OUT` from scratch (the phantom included) in a fresh subprocess and
records wall time, CPU time of the whole process tree, the load average before and after, and the
peak resident memory of every worker process (from OUT/demo-summary.json); the per-task seconds of
the runs are written to a JSON file for the cluster projection (docs/scaling.md).

Modes: ``workers2`` (the engine, 2 worker processes: what `make demo` does on 2 cores), ``serial``
(the engine with --workers 0: every task in one process, one after the other) and ``reference``
(`cortexgraph demo` of another checkout, e.g. the commit before the engine: its process pool).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cohort.py OUT --modes workers2,reference,serial \
        [--reference-root /path/to/old/checkout] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run_mode(mode: str, out: Path, reference_root: Path | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = reference_root if mode == "reference" else HERE
    env["PYTHONPATH"] = str(root)
    command = [sys.executable, "-m", "cortexgraph.cli.main", "demo", str(out)]
    if mode == "workers2":
        command += ["--workers", "2"]
    elif mode == "serial":
        command += ["--workers", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=str(root))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-4000:]}")
    summary = json.loads((out / "demo-summary.json").read_text())
    return {
        "mode": mode,
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "peak_rss_largest_child_gb": after.ru_maxrss / 1e6,
        "workers": summary.get("workers"),
        "tasks": summary.get("tasks"),
        "seconds": summary.get("seconds"),
        "engine": summary.get("engine"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--modes", default="workers2,reference,serial")
    parser.add_argument("--reference-root", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    results = []
    for mode in args.modes.split(","):
        if mode == "reference" and args.reference_root is None:
            raise SystemExit("--reference-root is needed for the reference mode")
        result = run_mode(mode, args.out / mode, args.reference_root)
        results.append(result)
        workers = result["workers"] or {}
        peaks = ", ".join(f"{w['peak_rss_mb'] / 1024:.2f}" for w in workers.values()) or "-"
        print(
            f"{mode:>9}: wall {result['wall_s']:6.0f} s, CPU {result['cpu_s']:6.0f} s, load "
            f"{result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f}, worker peak RSS GB "
            f"[{peaks}], largest process {result['peak_rss_largest_child_gb']:.2f} GB",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    by_mode = {r["mode"]: r for r in results}
    if "serial" in by_mode and "workers2" in by_mode:
        speedup = by_mode["serial"]["wall_s"] / by_mode["workers2"]["wall_s"]
        print(f"speed-up serial -> 2 workers: {speedup:.2f}x, efficiency {speedup / 2:.0%}")
    if "reference" in by_mode and "workers2" in by_mode:
        ratio = by_mode["reference"]["wall_s"] / by_mode["workers2"]["wall_s"]
        print(f"reference / 2 workers: {ratio:.2f}")


if __name__ == "__main__":
    main()
