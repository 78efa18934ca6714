"""Siamese 3D-distance pre-training on a phantom: what it gives the encoder and the local models.

Part "encoders" (docs/features.md): for each seed, on a phantom cohort whose brains have build-graph
outputs, trains with the library path of `cortexgraph train-encoder`
  * the SCL encoder and its CE baseline (`train-encoder --name scl-s<seed>`),
  * the distance pre-training (`--method distance --name dist-s<seed>`, features branch, Euclidean
    distances) with its linear evaluation,
  * SCL and CE started from it (`--init dist-s<seed> --name init-s<seed>`; CE from the distance
    weights is the contrastive paper's "distance" baseline),
  * a linear classifier on the frozen, randomly initialised encoder (batch-norm statistics
    recomputed on the training patches), the floor,
and prints macro F1 on test and transfer patches (mean and sd over seeds) and the Ward-cluster
agreement (ARI) of the test features.

Part "lsm" (docs/lsm.md): for each seed, the distance pre-training of the LSM high-resolution encoder
(`--method distance --branch lsm-hr --name dist-hr-s<seed>`, fewer patches and epochs than the
default: CPU budget) and the MS chains of the given areas on one brain with and without it
(`lsm chain --arch ms --iterations 150 --allow-long-intervals [--init-hr dist-hr-s<seed>]`), scored by
`lsm evaluate` (F1 on the left-out annotated sections and against the phantom's truth).

    cortexgraph synth DEMO --preset demo && cortexgraph build-graph B01 B03 B05 B07 --root DEMO
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_distance.py --part encoders --root DEMO
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_distance.py --part lsm --root DEMO \\
        --brain B01 --areas hOc1,hOc2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _stats(values) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return "-"
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def random_linear(cohort, preset_name: str, seed: int) -> dict:
    """Linear evaluation on the frozen, randomly initialised encoder of a preset."""
    from cortexgraph.features.dataset import PatchReader, build_patch_table
    from cortexgraph.features.presets import get_preset
    from cortexgraph.features.train import (
        _evaluate,
        build_preset_encoder,
        recompute_batch_norm,
        train_linear,
    )

    preset = get_preset(preset_name)
    table = build_patch_table(cohort, preset)
    reader = PatchReader(cohort, table, preset, cache_mb=1024)
    reader.prefetch()
    encoder = build_preset_encoder(preset, seed)
    recompute_batch_norm(encoder, table, reader, preset, seed=seed, device="cpu", amp=False)
    classifier, _ = train_linear(
        encoder, table, reader, preset, len(cohort.areas), seed=seed, device="cpu", amp=False
    )
    scores, _ = _evaluate(classifier, reader, table, "cpu", False, preset.eval_batch_size)
    reader.close()
    return {split: v["macro_f1"] for split, v in scores.items()}


def encoders(root: Path, seeds: list[int], preset: str, distance: dict) -> dict:
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.features.train import encoders_folder, train_encoder

    cohort = Cohort.read(root)
    rows: dict[str, list[dict]] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        train_encoder(cohort, preset, f"scl-s{seed}", seed=seed, device="cpu")
        t1 = time.perf_counter()
        train_encoder(cohort, preset, f"dist-s{seed}", seed=seed, device="cpu",
                      method="distance", distance=distance)  # fmt: skip
        t2 = time.perf_counter()
        train_encoder(cohort, preset, f"init-s{seed}", seed=seed, device="cpu",
                      init=f"dist-s{seed}")  # fmt: skip
        t3 = time.perf_counter()
        rand = random_linear(cohort, preset, seed)
        t4 = time.perf_counter()

        def metrics(name):
            return json.loads((encoders_folder(cohort, name) / "metrics.json").read_text())

        scl, dist, init = metrics(f"scl-s{seed}"), metrics(f"dist-s{seed}"), metrics(f"init-s{seed}")

        def f1(block):
            return {s: block[s]["macro_f1"] for s in ("test", "transfer") if s in block}

        entries = {
            "random init, linear": (rand, None),
            "distance, linear": (f1(dist["linear"]), dist["clusters"].get("distance")),
            "SCL, linear": (f1(scl["scl_linear"]), scl["clusters"].get("scl")),
            "SCL from distance, linear": (f1(init["scl_linear"]), init["clusters"].get("scl")),
            "CE (scratch)": (f1(scl["ce"]), scl["clusters"].get("ce")),
            "CE from distance": (f1(init["ce"]), init["clusters"].get("ce")),
        }
        for name, (scores, clusters) in entries.items():
            rows.setdefault(name, []).append(
                {**scores, "ari": None if clusters is None else clusters["ari"]}
            )
        rows.setdefault("_distance", []).append(dist["test_pairs"])
        print(
            f"seed {seed}: SCL+CE {t1 - t0:.0f} s, distance {t2 - t1:.0f} s, init SCL+CE "
            f"{t3 - t2:.0f} s, random linear {t4 - t3:.0f} s; distance test pairs: "
            f"mean error {dist['test_pairs']['err_dist_mm']:.2f} mm of {dist['test_pairs']['true_mean_mm']:.1f} mm, "
            f"r {dist['test_pairs']['pearson_r']:.3f}",
            flush=True,
        )
    print(f"\nmacro F1, mean +- sd over seeds {seeds} ({preset} preset)")
    print("| encoder | test | transfer | Ward clusters vs areas (ARI, test) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        if name.startswith("_"):
            continue
        print(
            f"| {name} | {_stats(v.get('test') for v in values)} | "
            f"{_stats(v.get('transfer') for v in values)} | {_stats(v['ari'] for v in values)} |"
        )
    d = rows["_distance"]
    print(
        f"\ndistance task on held-out pairs: mean error {_stats(x['err_dist_mm'] for x in d)} mm "
        f"(true mean {_stats(x['true_mean_mm'] for x in d)} mm), Pearson r "
        f"{_stats(x['pearson_r'] for x in d)}"
    )
    return rows


def lsm(root: Path, brain_id: str, areas: list[str], seeds: list[int], iterations: int,
        distance: dict) -> dict:  # fmt: skip
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.features.train import train_encoder
    from cortexgraph.lsm.data import resolve_area
    from cortexgraph.lsm.stages import LSMRun, evaluate_runs, run_chain

    cohort = Cohort.read(root)
    brain = cohort.brain(brain_id)
    results: dict[str, list[dict]] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        train_encoder(cohort, "auto", f"dist-hr-s{seed}", seed=seed, device="cpu",
                      method="distance", branch="lsm-hr", distance=distance)  # fmt: skip
        t1 = time.perf_counter()
        names = {"random init": f"lsm-ms-s{seed}", "distance init": f"lsm-ms-dist-s{seed}"}
        for label, name in names.items():
            for area in areas:
                run = LSMRun(
                    brain=brain, area=resolve_area(brain, area), arch="ms", name=name,
                    iterations=iterations, seed=seed, allow_long_intervals=True,
                    init_hr=f"dist-hr-s{seed}" if label == "distance init" else None,
                )  # fmt: skip
                run_chain(run)
        t2 = time.perf_counter()
        summaries, _ = evaluate_runs(brain, list(names.values()))
        for label, name in names.items():
            (summary,) = [s for s in summaries if s["run"] == name]
            test = [f for a in summary["areas"] for f in a["test_f1"]]
            truth = [f for a in summary["areas"] for f in a["truth_f1"]]
            results.setdefault(label, []).append(
                {"test_median": float(np.median(test)), "test_mean": float(np.mean(test)),
                 "truth_median": float(np.median(truth)), "truth_mean": float(np.mean(truth)),
                 "test_sections": len(test), "truth_sections": len(truth)}  # fmt: skip
            )
        print(f"seed {seed}: distance pre-training {t1 - t0:.0f} s, chains {t2 - t1:.0f} s",
              flush=True)  # fmt: skip
    print(f"\nMS LSMs of {', '.join(areas)} on {brain_id}, {iterations} iterations, mean +- sd over "
          f"seeds {seeds}")  # fmt: skip
    print("| E_HR | test median F1 | test mean F1 | truth median F1 | truth mean F1 |")
    print("|---|---|---|---|---|")
    for label, values in results.items():
        print(
            f"| {label} | {_stats(v['test_median'] for v in values)} | "
            f"{_stats(v['test_mean'] for v in values)} | {_stats(v['truth_median'] for v in values)} "
            f"| {_stats(v['truth_mean'] for v in values)} |"
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=["encoders", "lsm"], required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--brain", default="B01")
    ap.add_argument("--areas", default="hOc1,hOc2")
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--distance-patches", type=int, default=None)
    ap.add_argument("--distance-epochs", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    distance = {
        k: v
        for k, v in (("patches_per_brain", args.distance_patches), ("epochs", args.distance_epochs))
        if v is not None
    }
    if args.part == "encoders":
        rows = encoders(args.root, seeds, args.preset, distance)
    else:
        rows = lsm(args.root, args.brain, args.areas.split(","), seeds, args.iterations, distance)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
