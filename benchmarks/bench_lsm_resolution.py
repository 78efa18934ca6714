"""LR against HR when the HR patch sees what the published one sees: the reproduction harness's
local models on phantoms of the same seeds at two image spacings.

The publications find the low-resolution local model (LR) ahead of the high-resolution one (HR) and
explain it by context: HR patches at 2 µm cover about 4 mm of tissue, too little to place a patch in
its area. On the demo phantom (100 µm images) the networks keep their input sizes in pixels, so HR
sees 11.1 mm and LR 24 mm, and the harness finds a tie (docs/reproduction-demo.md). The model
preset ``phantom`` scales with the image spacing s (HR at s, LR at 4 s, output at 2 s); at
s = 40 µm HR sees 4.4 mm, the published field, and LR 9.6 mm. This script trains the harness's
LSM-HR, LSM-LR and LSM-MS (hOc1 of B01, ``--allow-long-intervals``, the cohort's seed, the same
iterations) on both phantoms of every (seed, area seed) and scores "LR beats HR" at each spacing.

Commands per cohort pair (one subprocess each, as a user would type them)::

    cortexgraph synth COHORT --preset demo --seed S --area-seed A --profile-variability 0.1
        --transition-mm 1.0                                   (100 µm, when absent)
    cortexgraph synth COHORT_40 --preset demo --seed S --area-seed A --profile-variability 0.1
        --transition-mm 1.0 --params s40.toml                 (40 µm images, B01 only)
    cortexgraph lsm chain B01 --root R --area hOc1 --arch ARCH --iterations N --seed S
        --preset phantom --allow-long-intervals --name lsm-ARCH    (hr, lr, ms; both cohorts)
    cortexgraph lsm evaluate B01 --root R --area hOc1 --name lsm-hr,lsm-lr,lsm-ms

``s40.toml`` sets ``brains = ["B01"]``, ``image_spacing_um = 40``, ``mask_spacing_um = 160`` and
``annotation_spacing_um = 80`` (the ``full`` phantom's mask and annotation spacings).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_lsm_resolution.py OUT --pairs 1:11,2:12,3:11 \\
        [--cohorts DEMO_COHORTS] [--iterations 150]

Outputs: ``OUT/results.json`` (per cohort pair and spacing: median, mean and s.d. of F1 per
model, the patch fields in mm, seconds), ``OUT/s40.toml``, ``OUT/bench_lsm_resolution.log``,
``OUT/logs/<cohort>/``, the runs in each cohort's derivatives, and the page ``--page`` (default
benchmarks/results/lsm_resolution.md; its hand-written reading is kept on rewrites).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_encoder_batch as encoder_bench  # noqa: E402
import reproduce as rp  # noqa: E402

ARCHS = ("hr", "lr", "ms")
RUNS = {f"lsm-{a}": f"lsm-{a}" for a in ARCHS}
SPACINGS_UM = (100.0, 40.0)
FINE_PARAMS = {
    "brains": ["B01"],
    "image_spacing_um": 40.0,
    "mask_spacing_um": 160.0,
    "annotation_spacing_um": 80.0,
}


def fine_params_text() -> str:
    lines = ["# bench_lsm_resolution: the 40 µm phantom (the rest: the demo preset's)"]
    for key, value in FINE_PARAMS.items():
        text = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, list) else value
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def fields_mm(image_spacing_um: float) -> dict[str, float]:
    """The tissue each model's patches cover (mm) with the ``phantom`` preset at this spacing:
    ``hr`` (HR U-Net and MS's HR branch), ``lr`` (LR U-Net), ``ms_lr`` (MS's LR branch)."""
    from cortexgraph.lsm.config import make_config

    hr = make_config("hr", image_spacing_um, preset="phantom")
    lr = make_config("lr", image_spacing_um, preset="phantom")
    ms = make_config("ms", image_spacing_um, preset="phantom")
    return {
        "hr": hr.hr_input_px() * hr.hr_spacing_um / 1000.0,
        "lr": lr.lr_input_px() * lr.lr_spacing_um / 1000.0,
        "ms_lr": ms.lr_input_px() * ms.lr_spacing_um / 1000.0,
    }


def lsm_commands(root: Path, seed: int, iterations: int, area: str) -> list[list[str]]:
    R = ["--root", str(root)]
    common = ["--area", area, "--iterations", str(iterations), "--seed", str(seed),
              "--preset", "phantom", "--allow-long-intervals"]  # fmt: skip
    commands = [["lsm", "chain", rp.LSM_BRAIN, *common, "--arch", a, "--name", RUNS[f"lsm-{a}"], *R]
                for a in ARCHS]  # fmt: skip
    commands.append(["lsm", "evaluate", rp.LSM_BRAIN, "--area", area,
                     "--name", ",".join(RUNS.values()), *R])  # fmt: skip
    return commands


def spacing_key(spacing_um: float) -> str:
    return f"{spacing_um:g}um"


def render_page(results: dict, info: dict, area: str = "hOc1", old_page: str = "") -> str:
    names = sorted(results)
    keys = [spacing_key(s) for s in SPACINGS_UM]
    claim = next(c for c in rp._lsm_claims() if c.key == "lsm-lr-beats-hr")
    lines = [
        "# LR against HR with the published HR field (phantoms at 100 and 40 µm)",
        "",
        "The local models of the reproduction harness (docs/reproduction-demo.md) on phantoms of "
        "the same seeds at two image spacings. The networks and their input sizes in pixels are "
        "the same; the `phantom` model preset scales their spacings with the images, so at 40 µm "
        f"the HR patch covers the published 4 mm. {area} of {rp.LSM_BRAIN}, LSM chains with "
        "`--allow-long-intervals`, the cohort's seed. Mean ± s.d. over cohort pairs; *held* "
        "counts the pairs where LR is ahead.",
        "",
        *rp.budget_run_lines(info, ", ".join(names), "lsm commands"),
        "",
        "## LR beats HR, per image spacing",
        "",
        "| image spacing | HR field | LR field (LR U-Net / MS) | LSM-HR | LSM-LR | LSM-MS "
        "| LR - HR (held) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, key in zip(SPACINGS_UM, keys, strict=True):
        rows = [results[n][key] for n in names if key in results[n]]
        if not rows:
            continue
        f = rows[0]["fields_mm"]
        medians = [rp._pm(*rp.mean_sd([r["lsm"][m]["median"] for r in rows])) for m in RUNS]
        a = rp.aggregate_claim(claim, rows)
        lines.append(
            f"| {s:g} µm | {f['hr']:.1f} mm | {f['lr']:.1f} / {f['ms_lr']:.1f} mm | "
            + " | ".join(medians)
            + f" | {rp._pm(a['margin_mean'], a['margin_sd'])} ({a['held']}/{a['n']}) |"
        )
    lines += [
        "",
        "(median F1 on the left-out annotated sections, as the harness scores the claim; "
        "margin: LSM-LR - LSM-HR.)",
    ]
    lines += rp.table_section("Against the full truth (median F1, mean ± s.d. over pairs)",
                              "image spacing", [m.upper() for m in RUNS])  # fmt: skip
    for s, key in zip(SPACINGS_UM, keys, strict=True):
        rows = [results[n][key] for n in names if key in results[n]]
        if rows:
            cells = [rp._pm(*rp.mean_sd([r["lsm"][m]["truth_median"] for r in rows]))
                     for m in RUNS]  # fmt: skip
            lines.append(f"| {s:g} µm | " + " | ".join(cells) + " |")
    lines += rp.table_section("Per cohort pair: LSM-HR / LSM-LR / LSM-MS median F1 (seconds)",
                              "cohort", [f"{s:g} µm" for s in SPACINGS_UM])  # fmt: skip
    for n in names:
        cells = []
        for key in keys:
            r = results[n].get(key)
            cells.append("n/a" if r is None else " / ".join(
                f"{r['lsm'][m]['median']:.3f}" for m in RUNS) + f" ({r['seconds']:.0f} s)")  # fmt: skip
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", rp.kept_reading(old_page) or encoder_bench._empty_reading(), ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (results.json, cohorts, logs, the log)")
    p.add_argument("--cohorts", type=Path, default=None,
                   help="folder of the 100 µm demo cohorts, <name>/cohort (default OUT/cohorts)")  # fmt: skip
    p.add_argument("--pairs", type=encoder_bench._pairs, default=[(1, 11), (2, 12), (3, 11)],
                   help="SEED:AREA_SEED pairs")  # fmt: skip
    p.add_argument("--spacings", type=rp._ints, default=[100, 40],
                   help="image spacings (µm) to run, of 100 and 40; the page shows every one "
                        "run so far")  # fmt: skip
    p.add_argument("--iterations", type=int, default=150, help="per model (the harness's)")
    p.add_argument("--area", default="hOc1", help="area of the local models")
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/lsm_resolution.md"))
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error("--iterations must be at least 1")
    if not args.spacings or set(args.spacings) - {100, 40}:
        p.error("--spacings takes 100, 40 or both")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    coarse_root = args.cohorts or out / "cohorts"
    with rp.bench_folder(out, "bench_lsm_resolution") as bench:
        if bench is None:
            return 3
        results, loads, seconds = bench.results, [os.getloadavg()[0]], 0.0
        fine_params = out / "s40.toml"
        rp._write_text(fine_params, fine_params_text())
        for seed, area_seed in args.pairs:
            name = rp.cohort_name(seed, area_seed)
            logs = out / "logs" / name
            roots = {
                100.0: coarse_root / name / "cohort",
                40.0: out / "cohorts" / f"{name}-40um" / "cohort",
            }
            for spacing, root in roots.items():
                if int(spacing) not in args.spacings:
                    continue
                key = spacing_key(spacing)
                extra = ["--params", str(fine_params)] if spacing != 100.0 else []
                seconds += rp.ensure_phantom(root, seed, area_seed, bench,
                                             logs / f"synth-{key}.log", extra=extra)  # fmt: skip
                bench.report(f"[{name}] {key}: {', '.join(RUNS.values())}")
                spent = 0.0
                for command in lsm_commands(root, seed, args.iterations, args.area):
                    r = rp.run_command(command, logs / f"lsm-{key}.log", bench.env)
                    spent += r["seconds"]
                    loads.append(r["load"])
                seconds += spent
                earlier = results.get(name, {}).get(key)
                results.setdefault(name, {})[key] = {
                    "cohort": name,
                    "image_spacing_um": spacing,
                    "fields_mm": fields_mm(spacing),
                    "lsm": rp.read_lsm_scores(root, RUNS),
                    **rp.seconds_so_far(earlier, spent),
                }
                rp._write_json(bench.results_path, results)
                got = results[name][key]["lsm"]
                bench.report(f"[{name}] {key}: HR {got['lsm-hr']['median']:.3f}, LR "
                       f"{got['lsm-lr']['median']:.3f}, MS {got['lsm-ms']['median']:.3f} "
                       f"({spent:.0f} s)")  # fmt: skip
        loads.append(os.getloadavg()[0])
        command = "python benchmarks/bench_lsm_resolution.py OUT " + shlex.join(
            ["--cohorts", "DEMO_COHORTS", "--pairs", ",".join(f"{s}:{a}" for s, a in args.pairs),
             "--spacings", ",".join(map(str, args.spacings)), "--iterations", str(args.iterations)]
        )  # fmt: skip
        info = rp.budget_info(command, loads, seconds)
        chosen = {rp.cohort_name(s, a) for s, a in args.pairs}
        old = args.page.read_text(encoding="utf-8") if args.page.is_file() else ""
        page = render_page({c: results[c] for c in sorted(chosen) if c in results}, info,
                           args.area, old)  # fmt: skip
        rp._write_text(args.page, page)
        bench.report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
