"""GNN orderings against the training budget: the GNN comparisons of the reproduction harness at
several epoch counts on the same phantom cohorts.

On the ``tiny`` phantom the reproduction harness (benchmarks/reproduce.py, docs/reproduction.md)
finds that GAT loses to SAGE and loses with depth. The GNN preset it uses (``--preset demo``:
width 64, 6 epochs, batches of 512, rate 0.3) was sized for the ``demo`` phantom; a tiny cohort
has about 2,000 labelled training nodes, so 6 epochs are about 25 optimisation steps. This script
tests whether the orderings are a property of the models or of that budget: for every cohort it
builds exactly the harness's inputs, then runs ``evaluate --compare MODE --epochs E`` for every
epoch count, and scores the harness's GNN claims (:func:`reproduce._gnn_claims`) per epoch count.

Commands per cohort (one subprocess each, as a user would type them)::

    cortexgraph synth COHORT --preset tiny --seed S --area-seed A --profile-variability 0.1
        --transition-mm 1.0
    cortexgraph build-graph B01 B03 B07 --root COHORT --no-qc-picture
    cortexgraph train-encoder --root COHORT --seed S
    cortexgraph features BRAIN --root COHORT                       (every brain)
    cortexgraph evaluate --root COHORT --compare MODE --preset demo --seed S --transfer B07
        --epochs E                                                 (every mode and epoch count)

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_gnn_epochs.py OUT \\
        --seeds 2,3 --area-seeds 11 --epochs 6,24,100

Outputs: ``OUT/cohorts/s<seed>-a<area seed>/cohort/`` (the cohorts; stages reuse what is up to
date, so a rerun only adds what is missing), ``OUT/cohorts/<name>/logs/``, ``OUT/results.json``
(every comparison's F1 per cohort and epoch count), ``OUT/bench_gnn_epochs.log``, and the page
``--page`` (default benchmarks/results/gnn_epochs.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce as rp  # noqa: E402

SCALE = "tiny"
BRAINS = rp.SCALES[SCALE]["brains"]
GNN_PRESET = "demo"


def prepare_cohort(root: Path, seed: int, area_seed: int, logs: Path, env: dict, report) -> float:
    """synth (when absent), build-graph, train-encoder and features, as the harness runs them.
    Returns the seconds the commands took."""
    seconds = 0.0
    R = ["--root", str(root)]
    commands = []
    if not (root / "cohort.toml").is_file() or not (root / "synth.json").is_file():
        if root.exists():
            raise SystemExit(f"error: {root} holds an unfinished phantom; delete it and run again")
        commands.append(rp.synth_args(root, seed, area_seed, rp.Settings(scale=SCALE)))
    commands.append(["build-graph", *BRAINS, *R, "--no-qc-picture"])
    commands.append(["train-encoder", *R, "--seed", str(seed)])
    commands += [["features", b, *R] for b in BRAINS]
    for args in commands:
        report(f"  {args[0]} ...")
        seconds += rp.run_command(args, logs / "prepare.log", env)["seconds"]
    return seconds


def compare(root: Path, seed: int, mode: str, epochs: int, logs: Path, env: dict) -> dict:
    """One ``evaluate --compare`` run: {label: {run, test_f1, transfer_f1}}, seconds, load."""
    args, table = rp.comparison_args(root, mode, GNN_PRESET, seed, epochs)
    r = rp.run_command(args, logs / f"compare-{mode}-e{epochs}.log", env)
    return {"gnn": rp.read_comparison(table), "seconds": r["seconds"], "load": r["load"]}


def gnn_claims_for(modes: Sequence[str]) -> list[rp.Claim]:
    """The harness's GNN claims that the given comparison modes can test."""
    out = []
    for claim in rp._gnn_claims():
        depth_only = claim.key in ("gnn-gnn-beats-mlp-depth", "gnn-mlp-not-above-linear",
                                   "gnn-gat-above-sage", "gnn-gat-stable-depth")  # fmt: skip
        if (depth_only and "depth" in modes) or (not depth_only and "features" in modes):
            out.append(claim)
    return out


def render_page(results: dict, epochs: Sequence[int], modes: Sequence[str], info: dict) -> str:
    names = sorted(results)
    claim_list = gnn_claims_for(modes)
    lines = [
        "# GNN orderings against the training budget (tiny phantom)",
        "",
        "The GNN comparisons of the reproduction harness (docs/reproduction.md) rerun on the same "
        "cohorts with more epochs. Everything else is the harness's: `--preset demo` (width 64, "
        "batches of 512, rate 0.3), the cohort's seed for the learners, transfer brain B07. "
        "Mean ± s.d. over cohorts; *held* counts the cohorts where the ordering holds.",
        "",
        *rp.budget_run_lines(info, ", ".join(names), "comparisons"),
        "",
        "## The orderings per epoch count",
        "",
    ]
    lines += rp.budget_claim_table(results, epochs, claim_list, "epochs")
    lines += rp.table_section(
        "Test macro F1 per model and epoch count (mean ± s.d. over cohorts)",
        "model", [f"{e} epochs" for e in epochs],
    )  # fmt: skip
    labels = sorted(
        {lab for n in names for e in epochs for lab in results[n].get(str(e), {}).get("gnn", {})}
    )
    for label in labels:
        cells = []
        for e in epochs:
            vals = [results[n][str(e)]["gnn"][label]["test_f1"] for n in names
                    if label in results[n].get(str(e), {}).get("gnn", {})]  # fmt: skip
            cells.append(rp._pm(*rp.mean_sd(vals)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += rp.budget_seconds_section(
        results, epochs, "epochs", "Seconds per comparison (sum over modes)",
        "`evaluate --compare` commands",
    )  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (cohorts, logs, results.json)")
    p.add_argument("--seeds", type=rp._ints, default=[2, 3], help="phantom seeds, e.g. 2,3")
    p.add_argument("--area-seeds", type=rp._ints, default=[11], help="area seeds, e.g. 11,12")
    p.add_argument("--epochs", type=rp._ints, default=[6, 24, 100], help="epoch counts")
    p.add_argument("--modes", default="depth,features", help="comparisons: depth, features")
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/gnn_epochs.md"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("depth", "features") for m in modes):
        raise SystemExit(f"error: --modes {args.modes!r}: give depth, features or both")
    out: Path = args.out
    with rp.bench_folder(out, "bench_gnn_epochs") as bench:
        if bench is None:
            return 3
        report, env, results = bench.report, bench.env, bench.results
        results_path = bench.results_path
        loads, seconds = [os.getloadavg()[0]], 0.0
        for seed in args.seeds:
            for area_seed in args.area_seeds:
                name = rp.cohort_name(seed, area_seed)
                folder = out / "cohorts" / name
                root, logs = folder / "cohort", folder / "logs"
                report(f"[{name}] preparing the cohort")
                seconds += prepare_cohort(root, seed, area_seed, logs, env, report)
                for e in args.epochs:
                    merged: dict = {"gnn": {}, "seconds": 0.0}
                    for mode in modes:
                        report(f"[{name}] compare {mode}, {e} epochs")
                        r = compare(root, seed, mode, e, logs, env)
                        merged["gnn"].update(r["gnn"])
                        merged["seconds"] += r["seconds"]
                        loads.append(r["load"])
                    merged["cohort"] = name
                    seconds += merged["seconds"]
                    earlier = results.get(name, {}).get(str(e))
                    merged.update(rp.seconds_so_far(earlier, merged["seconds"]))
                    results.setdefault(name, {})[str(e)] = merged
                    rp._write_json(results_path, results)
        loads.append(os.getloadavg()[0])
        command = "python benchmarks/bench_gnn_epochs.py OUT " + shlex.join(
            ["--seeds", ",".join(map(str, args.seeds)),
             "--area-seeds", ",".join(map(str, args.area_seeds)),
             "--epochs", ",".join(map(str, args.epochs)), "--modes", ",".join(modes)]
        )  # fmt: skip
        info = rp.budget_info(command, loads, seconds)
        chosen = {rp.cohort_name(s, a) for s in args.seeds for a in args.area_seeds}
        page = render_page({n: results[n] for n in sorted(chosen)}, args.epochs, modes, info)
        rp._write_text(args.page, page)
        report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
