"""Local-model orderings against the training budget: the reproduction harness's LSM / GSM
experiment at several iteration counts on the same phantom cohorts.

At the ``demo`` scale the reproduction harness (benchmarks/reproduce.py) trains every local and
global model 150 iterations (published: 3000) and finds that the worst LSM does not beat the best
GSM and that the LSMs do not vary less than the GSMs. This script tests whether that is a
property of the models on the phantom or of the budget: for every cohort it runs exactly the
harness's ``lsm chain`` / ``lsm gsm`` / ``lsm evaluate`` / ``stats`` commands at each iteration
count (HR, LR and MS; hOc1 of B01; the cohort's seed; the hOc1 volume of the LSM-MS map), and
scores the harness's local-model and volume claims (:func:`reproduce._lsm_claims`,
:func:`reproduce._volume_claims`) per count.

Commands per cohort and iteration count N (one subprocess each, as a user would type them; the
runs are named ``lsm-<arch>`` / ``gsm-<arch>`` at the harness's count, so the harness's own runs
are reused, and ``lsm-<arch>-iN`` / ``gsm-<arch>-iN`` otherwise)::

    cortexgraph synth COHORT --preset demo --seed S --area-seed A --profile-variability 0.1
        --transition-mm 1.0                                          (only when absent)
    cortexgraph lsm chain B01 --root COHORT --area hOc1 --arch ARCH --iterations N --seed S
        --preset phantom --allow-long-intervals --name lsm-ARCH[-iN]  (every architecture)
    cortexgraph lsm gsm B01 --root COHORT ... --name gsm-ARCH[-iN]
    cortexgraph lsm evaluate B01 --root COHORT --area hOc1 --name RUNS
    cortexgraph stats B01 --root COHORT --labels truth|lsm-ms[-iN] --area hOc1 --reference none

Usage (on the reproduction harness's cohorts)::

    OMP_NUM_THREADS=1 python benchmarks/bench_lsm_iterations.py OUT \\
        --cohorts REPRODUCTION_OUT/cohorts --seeds 1,2,3 --area-seeds 11,12 --iterations 150,600

Outputs: ``OUT/results.json`` (per cohort and iteration count: median, mean and s.d. of F1 on the
left-out sections and against the full truth, per model), ``OUT/bench_lsm_iterations.log``,
``OUT/logs/<cohort>/`` (the commands' output), the runs in each cohort's derivatives, and the page
``--page`` (default benchmarks/results/lsm_iterations.md).
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

ARCHS = ("hr", "lr", "ms")


def run_names(iterations: int, default_iterations: int) -> dict[str, str]:
    """``{"lsm-ms": run name}`` for every kind and architecture at an iteration count: the
    harness's names at its own count, ``<kind>-<arch>-i<N>`` otherwise."""
    suffix = "" if iterations == default_iterations else f"-i{iterations}"
    return {f"{k}-{a}": f"{k}-{a}{suffix}" for k in ("lsm", "gsm") for a in ARCHS}


def lsm_commands(
    root: Path, seed: int, iterations: int, names: dict[str, str], area: str, preset: str
) -> list[list[str]]:
    """The harness's LSM commands at ``iterations``, one run per kind and architecture."""
    R = ["--root", str(root)]
    common = ["--area", area, "--iterations", str(iterations), "--seed", str(seed)]
    common += ["--preset", preset]
    commands = []
    for arch in ARCHS:
        commands.append(["lsm", "chain", rp.LSM_BRAIN, *common, "--arch", arch,
                         "--allow-long-intervals", "--name", names[f"lsm-{arch}"], *R])  # fmt: skip
        commands.append(["lsm", "gsm", rp.LSM_BRAIN, *common, "--arch", arch,
                         "--name", names[f"gsm-{arch}"], *R])  # fmt: skip
    runs = ",".join(names.values())
    commands.append(["lsm", "evaluate", rp.LSM_BRAIN, "--area", area, "--name", runs, *R])
    for labels in ("truth", names["lsm-ms"]):  # the volumes, as the harness measures them
        commands.append(rp.stats_args(root, rp.LSM_BRAIN, labels, area))
    return commands


def volume_sources(names: dict[str, str]) -> list[tuple[str, str, str]]:
    """The maps whose volumes are read (:func:`reproduce.read_volumes`): the true labels and the
    LSM-MS run of this iteration count."""
    return [(rp.LSM_BRAIN, "truth", "truth"), (rp.LSM_BRAIN, names["lsm-ms"], "lsm-ms")]


def render_page(results: dict, iterations: Sequence[int], info: dict, area: str = "hOc1") -> str:
    names = sorted(results)
    claim_list = rp._lsm_claims() + rp._volume_claims(area)
    lines = [
        "# Local-model orderings against the training budget (demo phantom)",
        "",
        "The local-model experiment of the reproduction harness (docs/reproduction-demo.md) rerun "
        "on the same cohorts with more training iterations per model. Everything else is the "
        f"harness's: {area} of {rp.LSM_BRAIN}, HR / LR / MS, LSM chains with "
        "`--allow-long-intervals`, the GSM on all of the chain's training sections, preset `auto` "
        "(`phantom` at the demo's 100 µm), the cohort's seed. Mean ± s.d. over cohorts; *held* "
        "counts the cohorts where the ordering holds.",
        "",
        *rp.budget_run_lines(info, ", ".join(names), "commands"),
        "",
        "## The orderings per iteration count",
        "",
    ]
    lines += rp.budget_claim_table(results, iterations, claim_list, "iterations")
    lines += [
        "",
        "## Median F1 per model and iteration count (mean ± s.d. over cohorts)",
        "",
        "| model | "
        + " | ".join(f"{n} it.: left-out / truth / s.d. left-out" for n in iterations)
        + " |",
        "|---|" + "---|" * len(iterations),
    ]
    for source in [f"{k}-{a}" for k in ("gsm", "lsm") for a in ARCHS]:
        cells = []
        for n in iterations:
            rows = [results[c][str(n)]["lsm"][source] for c in names if str(n) in results[c]]
            cells.append(
                " / ".join(
                    rp._pm(*rp.mean_sd([rp._float(r[k]) for r in rows]))
                    for k in ("median", "truth_median", "std")
                )
            )
        lines.append(f"| {source.upper()} | " + " | ".join(cells) + " |")
    cells = []
    for n in iterations:
        rows = [results[c][str(n)] for c in names if "volumes" in results[c].get(str(n), {})]
        errors = [rp._volume_error_pct(r, rp.LSM_BRAIN, "lsm-ms") for r in rows]
        cells.append(f"{rp._pm(*rp.mean_sd(errors), digits=1)} %" if errors else "n/a")
    lines.append(f"| LSM-MS {area} volume error ({rp.LSM_BRAIN}) | " + " | ".join(cells) + " |")
    lines += rp.budget_seconds_section(
        results, iterations, "iterations",
        "Seconds per cohort (all six runs, the evaluation and the volumes)",
        "commands (the harness's runs are reused at its own count)",
    )  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (results.json, logs, the log)")
    p.add_argument("--cohorts", type=Path, default=None,
                   help="folder of the cohorts, <name>/cohort (default OUT/cohorts; the "
                        "reproduction harness's OUT/cohorts reuses its runs)")  # fmt: skip
    p.add_argument("--scale", choices=sorted(rp.SCALES), default="demo", help="phantom preset")
    p.add_argument("--seeds", type=rp._ints, default=[1, 2, 3], help="phantom seeds")
    p.add_argument("--area-seeds", type=rp._ints, default=[11, 12], help="area seeds")
    p.add_argument("--iterations", type=rp._ints, default=[150, 600], help="per model")
    p.add_argument("--area", default="hOc1", help="area of the local models")
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/lsm_iterations.md"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    cohorts = args.cohorts or out / "cohorts"
    scale = rp.SCALES[args.scale]
    default_iterations = int(scale["lsm_iterations"])
    with rp.bench_folder(out, "bench_lsm_iterations") as bench:
        if bench is None:
            return 3
        report, env, results = bench.report, bench.env, bench.results
        loads, seconds = [os.getloadavg()[0]], 0.0
        for seed in args.seeds:
            for area_seed in args.area_seeds:
                name = rp.cohort_name(seed, area_seed)
                root, logs = cohorts / name / "cohort", out / "logs" / name
                seconds += rp.ensure_phantom(root, seed, area_seed, bench, logs / "synth.log",
                                             scale=args.scale)  # fmt: skip
                for n in args.iterations:
                    names = run_names(n, default_iterations)
                    report(f"[{name}] {n} iterations: {', '.join(names.values())}")
                    spent = 0.0
                    for command in lsm_commands(
                        root, seed, n, names, args.area, scale["lsm_preset"]
                    ):
                        r = rp.run_command(command, logs / f"lsm-i{n}.log", env)
                        spent += r["seconds"]
                        loads.append(r["load"])
                    seconds += spent
                    earlier = results.get(name, {}).get(str(n))
                    results.setdefault(name, {})[str(n)] = {
                        "cohort": name,
                        "lsm": rp.read_lsm_scores(root, names),
                        "volumes": rp.read_volumes(root, volume_sources(names), args.area),
                        **rp.seconds_so_far(earlier, spent),
                    }
                    rp._write_json(bench.results_path, results)
                    report(f"[{name}] {n} iterations: done in {spent:.0f} s")
        loads.append(os.getloadavg()[0])
        command = "python benchmarks/bench_lsm_iterations.py OUT " + shlex.join(
            ["--cohorts", "REPRODUCTION_OUT/cohorts", "--scale", args.scale,
             "--seeds", ",".join(map(str, args.seeds)),
             "--area-seeds", ",".join(map(str, args.area_seeds)),
             "--iterations", ",".join(map(str, args.iterations))]
        )  # fmt: skip
        info = rp.budget_info(command, loads, seconds)
        chosen = {rp.cohort_name(s, a) for s in args.seeds for a in args.area_seeds}
        page = render_page({c: results[c] for c in sorted(chosen) if c in results},
                           args.iterations, info, args.area)  # fmt: skip
        rp._write_text(args.page, page)
        report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
