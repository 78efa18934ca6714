"""SCL against CE with more positives per anchor, more steps and a higher temperature: the
reproduction harness's encoder experiment rerun with other batch, epoch and temperature settings
on the same phantom cohorts.

The reproduction harness (benchmarks/reproduce.py) finds the CE baseline ahead of the SCL encoder's
linear evaluation in every demo cohort. docs/features.md names the suspects: the budget, the batch
(128 patches of about 36 areas give an anchor about 2.6 positives; the published 2048 patches of
113 areas about 17) and the temperature. This script separates them. Each variant is one
``train-encoder`` run per cohort with the demo preset and a parameters file that changes only the
named fields; the cohort's seed is the training seed, as in the harness:

=============  ==================================================================================
variant        what changes (the preset: batch 128, 30 SCL + 6 linear epochs, CE 36, tau 0.07)
=============  ==================================================================================
preset         nothing (the harness's encoder)
tau0.2         temperature 0.2 (the SCL loss only: the CE run is the preset's, and must score
               the same: a check of determinism)
e120           120 SCL epochs, CE 126: four times the patches and the steps
b512-e120      batch 512 and 120 SCL epochs (CE 126), linear evaluation 24 epochs: the preset's
               number of SCL steps (810; 840 with the rounding of the last batch) with four times the patches per step, so about 13
               positives per anchor instead of 2.6, at the compute of e120
e240           240 SCL epochs, CE 246: eight times the preset's budget
=============  ==================================================================================

Comparisons: ``b512-e120`` against ``preset`` doubles as "the same steps, more positives", and
against ``e120`` as "the same patches, fewer, larger batches".

Commands per cohort and variant (one subprocess each, as a user would type them)::

    cortexgraph synth COHORT --preset demo --seed S --area-seed A --profile-variability 0.1
        --transition-mm 1.0                                          (only when absent)
    cortexgraph train-encoder --root COHORT --seed S --name enc-VARIANT --params VARIANT.toml

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_encoder_batch.py OUT --seeds 1,2,3 \\
        --area-seeds 11 [--cohorts REPRODUCTION_OUT/cohorts] [--variants preset,tau0.2,...]

``--pairs 1:11,2:12,3:11`` picks (seed, area seed) pairs instead of every combination.

Outputs: ``OUT/results.json`` (per cohort and variant: macro F1 of SCL + linear and CE on
training, test and transfer patches, the last SCL loss, steps, positives per anchor, seconds),
``OUT/params/<variant>.toml``, ``OUT/bench_encoder_batch.log``, ``OUT/logs/<cohort>/`` and the page
``--page`` (default benchmarks/results/encoder_batch.md). A rerun reuses finished runs (the
encoder's stage record) and keeps the page's hand-written reading.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce as rp  # noqa: E402

#: the parameters file of each variant: preset fields that differ from the scale's encoder preset
VARIANTS: dict[str, dict[str, float | int]] = {
    "preset": {},
    "tau0.2": {"temperature": 0.2},
    "e120": {"scl_epochs": 120},
    "b512-e120": {"batch_size": 512, "scl_epochs": 120, "linear_epochs": 24},
    "e240": {"scl_epochs": 240},
}
SPLITS = ("train", "test", "transfer")


def params_text(fields: dict[str, float | int]) -> str:
    """A ``train-encoder --params`` file that sets ``fields`` (the rest: the preset's)."""
    lines = ["# bench_encoder_batch variant: only these fields differ from the preset"]
    lines += [f"{k} = {v!r}" for k, v in sorted(fields.items())]
    return "\n".join(lines) + "\n"


def encoder_args(root: Path, seed: int, variant: str, params: Path) -> list[str]:
    return ["train-encoder", "--root", str(root), "--seed", str(seed),
            "--name", f"enc-{variant}", "--params", str(params)]  # fmt: skip


def read_run(metrics: dict) -> dict:
    """What the page needs from an encoder run's ``metrics.json``."""
    preset = metrics["preset"]
    areas = int(metrics["training_areas"])
    batch = int(preset["batch_size"])
    per_epoch = int(metrics["training_patches_per_epoch"])
    steps_per_epoch = max(1, round(per_epoch / batch))  # features.train._batches
    scl_losses = [float(h["loss"]) for h in metrics["history"]["scl"]]
    return {
        "scl": {s: float(metrics["scl_linear"][s]["macro_f1"]) for s in SPLITS},
        "ce": {s: float(metrics["ce"][s]["macro_f1"]) for s in SPLITS},
        "scl_last_loss": scl_losses[-1] if scl_losses else float("nan"),
        "scl_steps": steps_per_epoch * int(preset["scl_epochs"]),
        "ce_steps": steps_per_epoch
        * int(preset["ce_epochs"] or preset["scl_epochs"] + preset["linear_epochs"]),
        "batch": batch,
        "temperature": float(preset["temperature"]),
        "training_areas": areas,
        "positives_per_anchor": batch / areas - 1.0,
        "train_seconds": float(metrics["seconds"]["total"]),
    }


def render_page(results: dict, variants: Sequence[str], info: dict, old_page: str = "") -> str:
    names = sorted(results)
    claim_list = [c for c in rp._encoder_claims() if c.key.startswith("encoder-scl-beats-ce")]
    lines = [
        "# SCL against CE: positives per anchor, steps and temperature (demo phantom)",
        "",
        "The encoder experiment of the reproduction harness (docs/reproduction-demo.md) rerun with "
        "other settings of the demo encoder preset on phantom cohorts of the harness's kind. "
        "Each variant changes only the named fields (`benchmarks/bench_encoder_batch.py` lists "
        "them); everything else is the preset's: the base-4 encoder, 40 px patches at 100 µm, "
        "96 training patches per area and epoch, LARS, the published augmentation, "
        "linear evaluation of the frozen SCL encoder, the CE baseline on the same batches. "
        "Mean ± s.d. over cohorts; *held* counts the cohorts where SCL is ahead.",
        "",
        *rp.budget_run_lines(info, ", ".join(names), "train-encoder runs"),
        "",
        "## SCL beats CE, per variant",
        "",
    ]
    lines += rp.budget_claim_table(
        {n: {v: {"encoder": r} for v, r in results[n].items()} for n in names},
        variants, claim_list, "",
    )  # fmt: skip
    columns = ["batch", "tau", "positives per anchor", "SCL steps", "CE steps", "last SCL loss"]
    columns += [f"{m} {s}" for m in ("SCL", "CE") for s in SPLITS]
    lines += rp.table_section("Settings and macro F1 per variant (mean ± s.d. over cohorts)",
                              "variant", columns)  # fmt: skip
    for v in variants:
        rows = [results[n][v] for n in names if v in results[n]]
        if not rows:
            continue
        first = rows[0]
        cells = [str(first["batch"]), f"{first['temperature']:g}",
                 rp._pm(*rp.mean_sd([r["positives_per_anchor"] for r in rows]), digits=1),
                 rp._pm(*rp.mean_sd([r["scl_steps"] for r in rows]), digits=0),
                 rp._pm(*rp.mean_sd([r["ce_steps"] for r in rows]), digits=0),
                 rp._pm(*rp.mean_sd([r["scl_last_loss"] for r in rows]), digits=2)]  # fmt: skip
        cells += [
            rp._pm(*rp.mean_sd([r[m][s] for r in rows])) for m in ("scl", "ce") for s in SPLITS
        ]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += rp.table_section("Per cohort: SCL test / CE test (train-encoder seconds)", "cohort",
                              list(variants))  # fmt: skip
    for n in names:
        cells = []
        for v in variants:
            r = results[n].get(v)
            cells.append("n/a" if r is None else
                         f"{r['scl']['test']:.3f} / {r['ce']['test']:.3f} ({r['train_seconds']:.0f} s)")  # fmt: skip
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", rp.kept_reading(old_page) or _empty_reading(), ""]
    return "\n".join(lines)


def _empty_reading() -> str:
    return f"{rp.READING_START}\n(no reading written yet)\n{rp.READING_END}"


def _pairs(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        seed, _, area_seed = item.partition(":")
        if not (seed.strip().isdigit() and area_seed.strip().isdigit()):
            raise argparse.ArgumentTypeError(f"not SEED:AREA_SEED: {item!r}")
        out.append((int(seed), int(area_seed)))
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="work folder (results.json, params, logs, the log)")
    p.add_argument("--cohorts", type=Path, default=None,
                   help="folder of the cohorts, <name>/cohort (default OUT/cohorts)")  # fmt: skip
    p.add_argument("--seeds", type=rp._ints, default=[1, 2, 3], help="phantom seeds")
    p.add_argument("--area-seeds", type=rp._ints, default=[11], help="area seeds")
    p.add_argument("--pairs", type=_pairs, default=None,
                   help="SEED:AREA_SEED pairs instead of every seed x area seed")  # fmt: skip
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS),
                   help=f"comma-separated, of {', '.join(VARIANTS)}")  # fmt: skip
    p.add_argument("--page", type=Path, default=Path("benchmarks/results/encoder_batch.md"))
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    cohorts = args.cohorts or out / "cohorts"
    pairs = args.pairs or [(s, a) for s in args.seeds for a in args.area_seeds]
    with rp.bench_folder(out, "bench_encoder_batch") as bench:
        if bench is None:
            return 3
        results, loads, seconds = bench.results, [os.getloadavg()[0]], 0.0
        for variant in args.variants:
            rp._write_text(out / "params" / f"{variant}.toml", params_text(VARIANTS[variant]))
        for seed, area_seed in pairs:
            name = rp.cohort_name(seed, area_seed)
            root, logs = cohorts / name / "cohort", out / "logs" / name
            seconds += rp.ensure_phantom(root, seed, area_seed, bench, logs / "synth.log")
            for variant in args.variants:
                bench.report(f"[{name}] {variant}")
                params = out / "params" / f"{variant}.toml"
                r = rp.run_command(encoder_args(root, seed, variant, params),
                                   logs / f"{variant}.log", bench.env)  # fmt: skip
                seconds += r["seconds"]
                loads.append(r["load"])
                metrics_path = root / "derivatives/cortexgraph/encoders" / f"enc-{variant}"
                metrics = json.loads((metrics_path / "metrics.json").read_text())
                results.setdefault(name, {})[variant] = read_run(metrics)
                rp._write_json(bench.results_path, results)
                got = results[name][variant]
                bench.report(f"[{name}] {variant}: SCL test {got['scl']['test']:.3f}, CE test "
                       f"{got['ce']['test']:.3f} ({r['seconds']:.0f} s)")  # fmt: skip
        loads.append(os.getloadavg()[0])
        command = "python benchmarks/bench_encoder_batch.py OUT " + shlex.join(
            ["--pairs", ",".join(f"{s}:{a}" for s, a in pairs),
             "--variants", ",".join(args.variants)]
        )  # fmt: skip
        info = rp.budget_info(command, loads, seconds)
        chosen = {rp.cohort_name(s, a) for s, a in pairs}
        old = args.page.read_text(encoding="utf-8") if args.page.is_file() else ""
        page = render_page({c: results[c] for c in sorted(chosen) if c in results},
                           args.variants, info, old)  # fmt: skip
        rp._write_text(args.page, page)
        bench.report(f"page written: {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
