"""build-graph accuracy on phantoms with distorted sections and erroneous transforms, next to the
default phantom, over several seeds.

The accuracy figures of docs/build-graph.md are measured on the default phantom, whose sections are
rigid copies of the brain and whose supplied transforms are exact to 0.05° / 20 µm: upper bounds for
real data. This script makes the same cohort in several variants (the phantom options of
``cortexgraph synth``), runs the same ``build-graph`` on every brain and collects the accuracy that
``build-graph`` measures itself on a phantom (``qc/build-graph-accuracy.json``: every built vertex to
the true midsurface, mm; share of valid mapped points in true cortex; the automatic exclusion against
the exact mask).

Variants (synth options on top of ``--preset P --seed S``):

* ``default``: none;
* ``distorted``: ``--distortion-scale-sd 0.01 --distortion-warp-mm 0.2`` (every mounted section
  stretched or shrunk by about 1 % per axis and waved by about 0.2 mm; rigid alignment cannot undo
  it);
* ``harder``: ``distorted`` plus ``--transform-noise-deg 0.5 --transform-noise-um 60`` (ten times the
  rotation and three times the translation error of the default supplied transforms; per pair
  about three times the rotation error that ``cortexgraph align`` reaches on the phantom's images);
* ``harder-automatic``: the ``harder`` cohort (made again, identical), built with ``--exclusion
  automatic`` instead of the phantom's exclusion mask. The mask is exact in the world frame; the
  sections stacked with erroneous transforms are not, so the mask no longer covers all the
  non-cortical gray matter it should.

Commands per cohort (one subprocess each, as a user would type them)::

    cortexgraph synth COHORT --preset P --seed S [variant options]
    cortexgraph build-graph BRAINS --root COHORT --no-qc-picture [--exclusion automatic]

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_build_graph_accuracy.py OUT --preset demo \\
        --seeds 0,1,2027 --variants default,distorted,harder,harder-automatic

Outputs: ``OUT/cohorts/<variant>-s<seed>/cohort/`` (stages reuse what is up to date, so a rerun
only adds what is missing), ``OUT/cohorts/<name>/logs/``, ``OUT/results.json`` (the accuracy per
cohort and brain), ``OUT/bench_build_graph_accuracy.log`` and the page ``--page`` (default
benchmarks/results/build_graph_accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce as rp  # noqa: E402

#: synth options of each variant, on top of the preset and seed
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "distorted": ["--distortion-scale-sd", "0.01", "--distortion-warp-mm", "0.2"],
    "harder": [
        "--distortion-scale-sd", "0.01", "--distortion-warp-mm", "0.2",
        "--transform-noise-deg", "0.5", "--transform-noise-um", "60",
    ],
}  # fmt: skip
VARIANTS["harder-automatic"] = VARIANTS["harder"]

#: build-graph options of a variant (default: none, the preset's defaults)
BUILD_GRAPH_OPTIONS: dict[str, list[str]] = {"harder-automatic": ["--exclusion", "automatic"]}

#: brains of each preset (the preset's own list)
BRAINS = {"tiny": ["B01", "B03", "B07"], "demo": ["B01", "B03", "B05", "B07"]}

HEMISPHERES = ("lh", "rh")


def cohort_name(variant: str, seed: int) -> str:
    return f"{variant}-s{seed}"


def accuracy_path(root: Path, brain: str) -> Path:
    """Where ``build-graph`` writes its accuracy on a phantom brain."""
    return root / "derivatives" / "cortexgraph" / brain / "qc" / "build-graph-accuracy.json"


def run_cohort(
    root: Path, preset: str, seed: int, variant: str, brains: Sequence[str], logs: Path, env: dict,
    report,
) -> dict:  # fmt: skip
    """synth (when absent) and build-graph of one cohort. Returns {brain: accuracy}, seconds, load."""
    commands = []
    if not (root / "cohort.toml").is_file() or not (root / "synth.json").is_file():
        if root.exists():
            raise SystemExit(f"error: {root} holds an unfinished phantom; delete it and run again")
        commands.append(
            ["synth", str(root), "--preset", preset, "--seed", str(seed), *VARIANTS[variant]]
        )
    options = BUILD_GRAPH_OPTIONS.get(variant, [])
    commands.append(["build-graph", *brains, "--root", str(root), "--no-qc-picture", *options])
    seconds, loads = 0.0, []
    for args in commands:
        report(f"  {args[0]} ...")
        r = rp.run_command(args, logs / f"{args[0]}.log", env)
        seconds += r["seconds"]
        loads.append(r["load"])
    accuracy = {b: json.loads(accuracy_path(root, b).read_text()) for b in brains}
    warned = {}  # hemispheres with a midsurface piece in gray matter too thick to be cortex
    for b in brains:
        report = json.loads(accuracy_path(root, b).with_name("build-graph.json").read_text())
        warned[b] = sorted(report["midsurfaces"].get("noncortical_pieces", {}))
    return {"accuracy": accuracy, "warned": warned, "seconds": seconds, "load": loads}


def brain_rows(results: dict, names: Sequence[str]) -> list[tuple[str, str, dict]]:
    """(cohort, brain, accuracy) of every brain of the named cohorts, in order."""
    return [(n, b, acc) for n in names for b, acc in sorted(results[n]["accuracy"].items())]


def variant_summary(results: dict, names: Sequence[str]) -> dict[str, tuple[float, float, int]]:
    """Mean ± s.d. over brains x hemispheres of the named cohorts: distance mean, distance p95,
    valid points in true cortex (%), and over brains: cortex removed by the automatic exclusion
    (%) and non-cortical gray removed (%). {measure: (mean, sd, n)}."""
    values: dict[str, list[float]] = {
        "distance_mm_mean": [], "distance_mm_p95": [], "in_cortex_pct": [],
        "cortex_removed_pct": [], "noncortical_removed_pct": [],
    }  # fmt: skip
    for _, _, acc in brain_rows(results, names):
        for hemi in HEMISPHERES:
            if hemi in acc:
                values["distance_mm_mean"].append(acc[hemi]["distance_mm_mean"])
                values["distance_mm_p95"].append(acc[hemi]["distance_mm_p95"])
                values["in_cortex_pct"].append(100 * acc[hemi]["valid_points_in_cortex"])
        ex = acc.get("automatic_exclusion")
        if ex:
            values["cortex_removed_pct"].append(100 * ex["cortex_removed"])
            values["noncortical_removed_pct"].append(100 * ex["noncortical_removed"])
    return {k: (*rp.mean_sd(v), len(v)) for k, v in values.items()}


def _pair(acc: dict, key: str, scale: float = 1.0, digits: int = 3) -> str:
    return " / ".join(
        rp._fmt(scale * acc[h][key], digits) if h in acc else "-" for h in HEMISPHERES
    )


def render_page(results: dict, variants: Sequence[str], seeds: Sequence[int], info: dict) -> str:
    lines = [
        f"# build-graph accuracy on distorted phantoms ({info['preset']} preset)",
        "",
        "The same `build-graph` (the preset's defaults) on phantom cohorts made in several variants: "
        "`default` (rigid sections, supplied transforms exact to 0.05° / 20 µm), `distorted` "
        "(`--distortion-scale-sd 0.01 --distortion-warp-mm 0.2`: every mounted section stretched "
        "or shrunk along the slide's axes and waved), `harder` (distorted, and supplied transforms "
        "with `--transform-noise-deg 0.5 --transform-noise-um 60`), `harder-automatic` (the same "
        "cohort built with `--exclusion automatic` instead of the phantom's exclusion mask, which "
        "is exact in the world frame and so misplaced on sections stacked with erroneous "
        "transforms). Distances: every built vertex "
        "to the true midsurface of the same hemisphere (mm); *in cortex*: valid mapped points whose "
        "pixel carries a true area label; the exclusion columns: the automatic exclusion of "
        "non-cortical gray matter against the phantom's exact mask (voxels within 1 mm of the true "
        "border left out); *warned*: hemispheres for which build-graph reported a midsurface "
        "piece in gray matter too thick to be cortex.",
        "",
        f"* Command: `{info['command']}`",
        f"* Machine: {info['machine']}; no GPU.",
        f"* Load: load average (1 min) {info['load_min']:.1f}-{info['load_max']:.1f} during the "
        "commands",
        f"* Run time: {info['minutes']:.1f} min of command wall time in this invocation (stages "
        "an earlier invocation ran are reused and not counted)",
        f"* Date: {info['date']}",
        "",
        "## Per variant (mean ± s.d. over brains x hemispheres and seeds)",
        "",
        "| variant | seeds | mean distance mm | worst hemisphere mm | p95 distance mm "
        "| valid points in true cortex % | warned | exclusion: cortex removed % "
        "| exclusion: non-cortical removed % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        names = [cohort_name(variant, s) for s in seeds if cohort_name(variant, s) in results]
        if not names:
            continue
        s = variant_summary(results, names)
        rows = brain_rows(results, names)
        worst = max(
            acc[h]["distance_mm_mean"] for _, _, acc in rows for h in HEMISPHERES if h in acc
        )
        hemis = sum(h in acc for _, _, acc in rows for h in HEMISPHERES)
        warned = sum(len(results[n].get("warned", {}).get(b, [])) for n, b, _ in rows)
        lines.append(
            f"| {variant} | {', '.join(n.rsplit('-s', 1)[1] for n in names)} | "
            f"{rp._pm(*s['distance_mm_mean'][:2])} | {rp._fmt(worst)} | "
            f"{rp._pm(*s['distance_mm_p95'][:2], 2)} | {rp._pm(*s['in_cortex_pct'][:2], 1)} | "
            f"{warned} of {hemis} | {rp._pm(*s['cortex_removed_pct'][:2], 2)} | "
            f"{rp._pm(*s['noncortical_removed_pct'][:2], 1)} |"
        )
    lines += [
        "",
        "## Per brain",
        "",
        "| cohort | brain | mean distance mm lh / rh | p95 mm lh / rh | valid points lh / rh "
        "| in true cortex % lh / rh | edges within ±30 % lh / rh | warned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = [cohort_name(v, s) for v in variants for s in seeds if cohort_name(v, s) in results]
    for name, brain, acc in brain_rows(results, names):
        valid = " / ".join(str(acc[h]["valid_points"]) if h in acc else "-" for h in HEMISPHERES)
        lines.append(
            f"| {name} | {brain} | {_pair(acc, 'distance_mm_mean')} | "
            f"{_pair(acc, 'distance_mm_p95', digits=2)} | {valid} | "
            f"{_pair(acc, 'valid_points_in_cortex', 100, 1)} | "
            f"{_pair(acc, 'edges_within_30pct', 100, 1)} | "
            f"{', '.join(results[name].get('warned', {}).get(brain, [])) or '-'} |"
        )
    lines += ["", "## Seconds per cohort", "", "| cohort | seconds (synth + build-graph) |"]
    lines += ["|---|---|"] + [f"| {n} | {results[n]['seconds']:.0f} |" for n in names]
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (cohorts, logs, results.json)")
    p.add_argument("--preset", default="demo", choices=sorted(BRAINS), help="phantom preset")
    p.add_argument("--seeds", type=rp._ints, default=[0, 2027], help="phantom seeds, e.g. 0,2027")
    p.add_argument(
        "--variants", default="default,distorted,harder,harder-automatic", help="variants to run"
    )
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/build_graph_accuracy.md"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if not variants or unknown:
        raise SystemExit(f"error: --variants {args.variants!r}: choose from {', '.join(VARIANTS)}")
    out: Path = args.out
    with rp.bench_folder(out, "bench_build_graph_accuracy") as bench:
        if bench is None:
            return 3
        results = bench.results
        loads, seconds = [os.getloadavg()[0]], 0.0
        for seed in args.seeds:
            for variant in variants:
                name = cohort_name(variant, seed)
                folder = out / "cohorts" / name
                bench.report(f"[{name}] synth and build-graph")
                r = run_cohort(
                    folder / "cohort", args.preset, seed, variant, BRAINS[args.preset],
                    folder / "logs", bench.env, bench.report,
                )  # fmt: skip
                r["preset"] = args.preset
                seconds += r["seconds"]
                loads += r["load"]
                if name in results and results[name].get("seconds", 0) > r["seconds"]:
                    r["seconds"] = results[name]["seconds"]  # keep the run that computed it
                results[name] = r
                rp._write_json(bench.results_path, results)
                for brain, acc in sorted(r["accuracy"].items()):
                    bench.report(
                        f"[{name}] {brain}: mean distance {_pair(acc, 'distance_mm_mean')} mm"
                    )
        loads.append(os.getloadavg()[0])
        command = "OMP_NUM_THREADS=1 python benchmarks/bench_build_graph_accuracy.py OUT " + (
            shlex.join(["--preset", args.preset, "--seeds", ",".join(map(str, args.seeds)),
                        "--variants", ",".join(variants)])
        )  # fmt: skip
        info = {
            "command": command,
            "preset": args.preset,
            "machine": rp.machine_description(),
            "load_min": min(loads),
            "load_max": max(loads),
            "minutes": seconds / 60.0,
            "date": time.strftime("%Y-%m-%d"),
        }
        page = render_page(results, variants, args.seeds, info)
        rp._write_text(args.page, page)
        bench.report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
