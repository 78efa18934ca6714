"""Benchmark: Siamese 3D-distance pre-training against supervised contrastive learning, the CE
baseline and random initialisation, for the patch encoder and the LSMs' high-resolution branch.

The contrastive paper (Schiffer et al. 2021, ISBI, Table 1) compares, with the same encoder:
*contrastive* (SCL, then a linear classifier on frozen features), *scratch* (cross-entropy from
random weights) and *distance* (cross-entropy started from the Siamese 3D-distance network of
Spitzer et al. 2018); on held-out sections it reports F1 50.5 / 43.3 / 27.3, and on an unseen
brain 25.0 / 22.9 / 10.8: distance initialisation was *worse* than random initialisation. The
LSM paper (Schiffer et al. 2021, NeuroImage) initialises the high-resolution encoder of its local
models from the same network without an ablation.

For each phantom cohort (``--seeds`` x ``--area-seeds``) and each training seed
(``--train-seeds``), this script runs through the ``cortexgraph`` command line:

1. ``synth``, ``build-graph`` (once per cohort; reused when complete);
2. ``train-encoder --name scratch-kK``: SCL + linear evaluation and the CE baseline, random init;
3. ``train-encoder --method distance --name distance-kK``: the Siamese pre-training (its own
   distance error and the linear evaluation of its frozen features);
4. ``train-encoder --init distance-kK --name init-kK``: SCL and CE started from it (the CE model
   is the paper's "distance" baseline);
5. ``train-encoder --method distance --branch lsm-hr --name distance-hr-kH`` once per cohort
   (``--hr-seed H``, default the first training seed: on a CPU it is the costly step), and per
   training seed two ``lsm chain B01 --area hOc1 --arch hr`` runs, without and with ``--init-hr
   distance-hr-kH``, then ``lsm evaluate`` (median F1 on left-out sections and against the full
   ground truth).

It writes ``OUT/results.json`` (every number, every command with its seconds and load, rewritten
after each step; a rerun continues) and the page ``--page`` (default
benchmarks/results/pretraining.md): mean +- sample s.d. over all (cohort, training seed) runs and
how many runs hold each ordering.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_pretraining.py OUT --scale demo \
        --seeds 1 --area-seeds 11 --train-seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import (  # noqa: E402  (the harness's runner, reused as is)
    SCALES,
    Reporter,
    _write_json,
    _write_text,
    cohort_name,
    exclusive_folder,
    machine_description,
    mean_sd,
    run_command,
)

LSM_BRAIN = "B01"
AREA = "hOc1"

#: the measured quantities: key -> (label, where it comes from)
ENCODER_ROWS = [
    ("contrastive", "SCL, linear evaluation (random init)"),
    ("scratch", "CE from random weights (the paper's *scratch*)"),
    ("distance_ce", "CE from the distance pre-training (the paper's *distance*)"),
    ("distance_scl", "SCL from the distance pre-training, linear evaluation"),
    ("distance_linear", "distance pre-training alone, linear evaluation of its frozen features"),
]

#: what makes a cohort's runs comparable: runs of one OUT folder share them (other seeds, training
#: seeds and --no-lsm may be added by later invocations)
SETTINGS = ("scale", "profile_variability", "transition_mm", "lsm_iterations", "hr_seed")

#: published orderings (left beats right), test and transfer splits each
ORDERINGS = [
    ("contrastive", "scratch", "SCL features beat CE from random weights"),
    ("scratch", "distance_ce", "CE from random weights beats CE from the distance pre-training"),
    ("contrastive", "distance_ce", "SCL features beat CE from the distance pre-training"),
]


def _macro_f1(metrics: dict, key: str) -> dict[str, float]:
    return {s: float(metrics[key][s]["macro_f1"]) for s in ("train", "test", "transfer")}


def _encoder_metrics(root: Path, name: str) -> dict:
    path = root / "derivatives/cortexgraph/encoders" / name / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _lsm_summary(root: Path, run: str) -> dict:
    path = root / f"derivatives/cortexgraph/{LSM_BRAIN}/lsm/{run}/evaluation/summary.json"
    row = json.loads(path.read_text(encoding="utf-8"))["table"][0]
    return {k: row[k] for k in ("n", "median", "mean", "std", "truth_n", "truth_median", "truth_mean")}


def run_cohort(folder: Path, seed: int, area_seed: int, args, env, report, results: dict) -> None:
    """Every step of one cohort; fills ``results['runs']`` and rewrites results.json per step."""
    scale = SCALES[args.scale]
    name = cohort_name(seed, area_seed)
    root = folder / name / "cohort"
    logs = folder / name / "logs"
    R = ["--root", str(root)]
    steps = results.setdefault("steps", {})

    def step(label: str, argv: list[str]) -> None:
        key = f"{name}/{label}"
        if steps.get(key, {}).get("done"):
            return
        report(f"[{name}] {label}")
        r = run_command(argv, logs / f"{label}.log", env)
        steps[key] = {
            "done": True,
            "seconds": r["seconds"],
            "load": r["load"],
            "command": "cortexgraph " + shlex.join(str(a) for a in argv),
        }
        report(f"[{name}] {label}: {r['seconds']:.0f} s (load {r['load']:.1f})")
        _write_json(folder / "results.json", results)

    if not (root / "cohort.toml").is_file() or not (root / "synth.json").is_file():
        if root.exists():  # an interrupted synth: the generator wants a fresh folder
            shutil.rmtree(root)
        for key in [k for k in steps if k.startswith(f"{name}/")]:  # a new cohort: redo them all
            del steps[key]
    synth = ["synth", str(root), "--preset", args.scale, "--seed", str(seed)]
    synth += ["--area-seed", str(area_seed), "--profile-variability", str(args.profile_variability)]
    synth += ["--transition-mm", str(args.transition_mm)]
    step("synth", synth)
    step("build-graph", ["build-graph", *scale["brains"], *R, "--no-qc-picture"])

    iterations = args.lsm_iterations or scale["lsm_iterations"]
    for k in args.train_seeds:
        K = ["--seed", str(k)]
        step(f"scratch-k{k}", ["train-encoder", *R, "--name", f"scratch-k{k}", *K])
        step(f"distance-k{k}", ["train-encoder", *R, "--method", "distance",
                                "--name", f"distance-k{k}", *K])
        step(f"init-k{k}", ["train-encoder", *R, "--init", f"distance-k{k}",
                            "--name", f"init-k{k}", *K])
        scratch = _encoder_metrics(root, f"scratch-k{k}")
        distance = _encoder_metrics(root, f"distance-k{k}")
        init = _encoder_metrics(root, f"init-k{k}")
        run = {
            "cohort": name,
            "train_seed": k,
            "contrastive": _macro_f1(scratch, "scl_linear"),
            "scratch": _macro_f1(scratch, "ce"),
            "distance_ce": _macro_f1(init, "ce"),
            "distance_scl": _macro_f1(init, "scl_linear"),
            "distance_linear": _macro_f1(distance, "linear"),
            "distance_task": {
                "err_dist_mm": distance.get("test_pairs", {}).get("err_dist_mm"),
                "pearson_r": distance.get("test_pairs", {}).get("pearson_r"),
                "true_mean_mm": distance["distance_mm"]["test"],
            },
        }
        if not args.no_lsm:
            # one E_HR pre-training per cohort (seed --hr-seed; it is the costly step on a CPU),
            # the local models of every training seed start from it
            hr_name = f"distance-hr-k{args.hr_seed}"
            step(hr_name, ["train-encoder", *R, "--method", "distance", "--branch", "lsm-hr",
                           "--name", hr_name, "--seed", str(args.hr_seed)])
            lsm = ["lsm", "chain", LSM_BRAIN, "--area", AREA, "--arch", "hr", "--iterations",
                   str(iterations), *K, "--allow-long-intervals", *R]
            step(f"lsm-scratch-k{k}", [*lsm, "--name", f"lsm-hr-scratch-k{k}"])
            step(f"lsm-init-k{k}", [*lsm, "--name", f"lsm-hr-init-k{k}", "--init-hr", hr_name])
            step(f"lsm-evaluate-k{k}", ["lsm", "evaluate", LSM_BRAIN, "--area", AREA, "--name",
                                        f"lsm-hr-scratch-k{k},lsm-hr-init-k{k}", *R])
            run["lsm_scratch"] = _lsm_summary(root, f"lsm-hr-scratch-k{k}")
            run["lsm_init"] = _lsm_summary(root, f"lsm-hr-init-k{k}")
            hr = _encoder_metrics(root, hr_name)
            run["distance_hr_task"] = {
                "err_dist_mm": hr.get("test_pairs", {}).get("err_dist_mm"),
                "pearson_r": hr.get("test_pairs", {}).get("pearson_r"),
            }
        runs = results.setdefault("runs", [])
        runs[:] = [r for r in runs if not (r["cohort"] == name and r["train_seed"] == k)]
        runs.append(run)
        _write_json(folder / "results.json", results)


# ------------------------------------------------------------------------------------ the page


def _pm(values) -> str:
    m, s = mean_sd(values)
    return f"{m:.3f} ± {s:.3f}" if s == s else f"{m:.3f}"


def render_page(results: dict, command: str) -> str:
    runs = results.get("runs", [])
    n = len(runs)
    cohorts = sorted({r["cohort"] for r in runs})
    lines = [
        "# Distance pre-training against SCL, CE and random initialisation "
        f"(`{results['settings']['scale']}` phantom)",
        "",
        "Command(s) (from the repository root; a rerun reuses finished steps, and runs of "
        "several invocations accumulate in one results.json):",
        "",
        *[f"    {c}" for c in results.get("invocations", [command])],
        "",
        f"Machine: {results['machine']}; no GPU. Load: 1-minute load average "
        f"{results['load_min']:.1f}-{results['load_max']:.1f} during the commands (the "
        "machine was shared; seconds are upper bounds). Date: " + results["date"] + ".",
        "",
        f"Runs: {n} = {len(cohorts)} phantom cohort(s) ({', '.join(cohorts)}; seed and area "
        f"seed; `--profile-variability {results['settings']['profile_variability']} "
        f"--transition-mm {results['settings']['transition_mm']}`, scale `{results['settings']['scale']}`) "
        f"x training seeds {sorted({r['train_seed'] for r in runs})}. Mean ± sample s.d. over the runs; "
        "'held' counts the runs in which the ordering holds.",
        "",
        "## Patch encoder: macro F1 of the patch classifiers",
        "",
        "| model | test | transfer brain | train |",
        "|---|---|---|---|",
    ]
    for key, label in ENCODER_ROWS:
        lines.append(
            f"| {label} | "
            + " | ".join(_pm([r[key][s] for r in runs]) for s in ("test", "transfer", "train"))
            + " |"
        )
    lines += [
        "",
        "Published (contrastive paper, weighted F1 in %, held-out sections / unseen brain): "
        "contrastive 50.49 / 25.03, scratch 43.31 / 22.85, distance 27.27 / 10.77.",
        "",
        "| published ordering | split | left − right, mean ± s.d. | held |",
        "|---|---|---|---|",
    ]
    for left, right, label in ORDERINGS:
        for split in ("test", "transfer"):
            diffs = [r[left][split] - r[right][split] for r in runs]
            held = sum(d > 0 for d in diffs)
            lines.append(f"| {label} | {split} | {_pm(diffs)} | {held}/{n} |")
    task = [r["distance_task"] for r in runs]
    lines += [
        "",
        "The distance task itself (held-out pairs, `features` branch): mean absolute error "
        f"{_pm([t['err_dist_mm'] for t in task])} mm against a mean true distance of "
        f"{_pm([t['true_mean_mm'] for t in task])} mm; Pearson r {_pm([t['pearson_r'] for t in task])}.",
    ]
    lsm_runs = [r for r in runs if "lsm_scratch" in r]
    if lsm_runs:
        m = len(lsm_runs)
        lines += [
            "",
            f"## Local models: LSM-HR on {AREA} of {LSM_BRAIN}, without and with the pre-trained E_HR",
            "",
            f"One `lsm-hr` distance pre-training per cohort (seed {results['settings']['hr_seed']}); "
            f"the local models of each training seed start from it. Runs: {m}.",
            "",
            "| E_HR | median F1, left-out sections | median F1, full truth | mean F1, full truth |",
            "|---|---|---|---|",
        ]
        for key, label in (("lsm_scratch", "random init"), ("lsm_init", "`--init-hr` distance")):
            lines.append(
                f"| {label} | {_pm([r[key]['median'] for r in lsm_runs])} | "
                f"{_pm([r[key]['truth_median'] for r in lsm_runs])} | "
                f"{_pm([r[key]['truth_mean'] for r in lsm_runs])} |"
            )
        for stat, label in (("median", "left-out sections"), ("truth_median", "full truth")):
            diffs = [r["lsm_init"][stat] - r["lsm_scratch"][stat] for r in lsm_runs]
            held = sum(d > 0 for d in diffs)
            lines.append("")
            lines.append(
                f"Pre-trained minus random, median F1 on {label}: {_pm(diffs)} "
                f"(pre-trained better in {held}/{m} runs)."
            )
        hr = list({r["cohort"]: r["distance_hr_task"] for r in lsm_runs}.values())  # one per cohort
        lines.append("")
        lines.append(
            "The `lsm-hr` distance task: mean absolute error "
            f"{_pm([t['err_dist_mm'] for t in hr])} mm, Pearson r {_pm([t['pearson_r'] for t in hr])}."
        )
    lines += ["", "## Per run", ""]
    head = ["run", *[k for k, _ in ENCODER_ROWS]]
    lines += ["| " + " | ".join(head) + " (test / transfer) |", "|---" * len(head) + "|"]
    for r in runs:
        cells = [f"{r['cohort']} k{r['train_seed']}"]
        cells += [f"{r[k]['test']:.3f} / {r[k]['transfer']:.3f}" for k, _ in ENCODER_ROWS]
        lines.append("| " + " | ".join(cells) + " |")
    seconds: dict[str, float] = {}
    for key, s in results.get("steps", {}).items():
        label = key.split("/", 1)[1].split("-k")[0]
        seconds[label] = seconds.get(label, 0.0) + s["seconds"]
    lines += ["", "Command wall time by step, summed over the runs (s): "
              + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (cohorts, logs, results.json)")
    p.add_argument("--scale", choices=sorted(SCALES), default="demo")
    p.add_argument("--seeds", default="1", help="phantom seeds, comma-separated")
    p.add_argument("--area-seeds", default="11", help="phantom area seeds, comma-separated")
    p.add_argument("--train-seeds", default="0,1,2", help="training seeds, comma-separated")
    p.add_argument("--profile-variability", type=float, default=0.1)
    p.add_argument("--transition-mm", type=float, default=1.0)
    p.add_argument("--lsm-iterations", type=int, default=None)
    p.add_argument("--no-lsm", action="store_true", help="encoder comparison only")
    p.add_argument("--hr-seed", type=int, default=None,
                   help="seed of the one lsm-hr pre-training per cohort (default: first training seed)")
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/pretraining.md"))
    args = p.parse_args(argv)
    args.train_seeds = [int(x) for x in args.train_seeds.split(",")]
    if args.hr_seed is None:
        args.hr_seed = args.train_seeds[0]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_folder(out, "bench_pretraining") as held:
        return _run(args, out) if held else 3


def _run(args: argparse.Namespace, out: Path) -> int:
    report = Reporter(out / "bench_pretraining.log")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    settings = {k: getattr(args, k) for k in SETTINGS}
    earlier = results.get("settings") or (
        {k: results["args"].get(k) for k in SETTINGS} if "args" in results else None
    )
    if earlier not in (None, settings):
        changed = ", ".join(f"{k} {earlier.get(k)} -> {settings[k]}" for k in SETTINGS
                            if earlier.get(k) != settings[k])  # fmt: skip
        print(f"error: {results_path} holds runs made with other settings ({changed}); their "
              "finished steps would be reused and the runs mixed on one page. Fix: give another "
              "OUT folder, or the same settings.", file=sys.stderr)  # fmt: skip
        return 2
    results.pop("args", None)
    results["settings"] = settings
    env = dict(os.environ)
    for seed in [int(x) for x in args.seeds.split(",")]:
        for area_seed in [int(x) for x in args.area_seeds.split(",")]:
            run_cohort(out, seed, area_seed, args, env, report, results)
    loads = [s["load"] for s in results["steps"].values() if s.get("load")]
    results["load_min"], results["load_max"] = min(loads), max(loads)
    results["machine"] = machine_description()
    results["date"] = time.strftime("%Y-%m-%d")
    _write_json(results_path, results)
    argv_shown = ["OMP_NUM_THREADS=" + env.get("OMP_NUM_THREADS", "?"), ".venv/bin/python",
                  "benchmarks/bench_pretraining.py", "OUT", "--scale", args.scale, "--seeds",
                  args.seeds, "--area-seeds", args.area_seeds, "--train-seeds",
                  ",".join(map(str, args.train_seeds))]
    if args.lsm_iterations:
        argv_shown += ["--lsm-iterations", str(args.lsm_iterations)]
    if args.no_lsm:
        argv_shown.append("--no-lsm")
    shown = " ".join(argv_shown)
    invocations = results.setdefault("invocations", [])
    if shown not in invocations:
        invocations.append(shown)
    _write_json(results_path, results)
    _write_text(args.page, render_page(results, shown))
    report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
