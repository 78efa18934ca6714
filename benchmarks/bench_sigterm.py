"""SIGTERM at random times into a running stage: how its exit statuses fall.

A cluster scheduler ends a job at its time limit with SIGTERM. A stage command must then exit 143
with "terminated", its lock released and nothing half-written (tests/derivatives and
tests/cli/test_sigterm.py check single cases). This script tries many moments: it runs
``cortexgraph build-graph BRAIN --root COHORT --overwrite --no-qc-picture`` ``--tries`` times,
sends SIGTERM a random delay (uniform in ``[0, --max-delay]`` s) after the stage's lock appears,
and counts the exit statuses with the last line each printed. 143 is a termination; 0 or -15 mean
the stage had finished (its outputs written) before the signal, the handler already gone; anything
else is a fault.

``--overwrite`` recomputes the brain's build-graph: run it on a copy of a cohort (a tiny phantom
builds in seconds)::

    cortexgraph synth /tmp/sigterm --preset tiny
    python benchmarks/bench_sigterm.py /tmp/sigterm B03 --tries 40 --max-delay 2.5 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def one_try(cohort: Path, brain: str, delay_s: float, lock: Path) -> tuple[int, str]:
    """One run stopped ``delay_s`` after its lock appeared: (exit status, its last output line)."""
    argv = [sys.executable, "-m", "cortexgraph.cli.main", "build-graph", brain]
    argv += ["--root", str(cohort), "--overwrite", "--no-qc-picture"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    while not lock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return proc.returncode, (lines[-1] if lines else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cohort", type=Path, help="a cohort whose build-graph may be recomputed")
    p.add_argument("brain", help="brain id")
    p.add_argument("--tries", type=int, default=40)
    p.add_argument("--max-delay", type=float, default=2.5, help="seconds after the lock")
    p.add_argument("--seed", type=int, default=1, help="seed of the delays")
    args = p.parse_args(argv)
    from cortexgraph.derivatives import Derivatives, StageId

    lock = StageId("build-graph", args.brain).lock_path(Derivatives(args.cohort).root)
    rng = random.Random(args.seed)
    counts: collections.Counter = collections.Counter()
    faults = []
    for i in range(args.tries):
        delay = rng.uniform(0.0, args.max_delay)
        status, last = one_try(args.cohort, args.brain, delay, lock)
        counts[status] += 1
        print(f"{i + 1:3d}  delay {delay:5.2f} s  exit {status:4d}  {last[:110]}", flush=True)
        if status not in (143, 0, -15):
            faults.append((delay, status, last))
    print("exit statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    for delay, status, last in faults:
        print(f"FAULT after {delay:.2f} s: exit {status}: {last}")
    return 1 if faults else 0


if __name__ == "__main__":
    raise SystemExit(main())
