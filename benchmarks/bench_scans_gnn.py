"""End to end from scans: the GNN macro F1 of a cohort made from scans against its true inputs.

Every brain of a tiny phantom made as scans only (``cortexgraph synth OUT --preset tiny
--scans-only``) goes through the scans path of benchmarks/bench_scans_end_to_end.py::

    cortexgraph ingest COHORT BRAIN --scans COHORT/scans/BRAIN --digitization-step N
        --shrinkage-factor F                      (base_section of the phantom written after it)
    cortexgraph segment BRAIN --root COHORT --no-qc
    cortexgraph align BRAIN --root COHORT --features none --install --accept-flagged
    cortexgraph register BRAIN --root COHORT --install

(``--install`` copies the coordinate maps into the brain folder, ``coords-registered/`` and the
``coords`` column of sections.tsv, where the CO and PM features read them; the measured runs of
results/scans_end_to_end.md copied the same files into ``coords/`` with a function of this
script, before ``register --install`` existed) and gets one input that the scans cannot give:

* the **annotations** of the phantom (``ground_truth/BRAIN/inputs/annotations/``: an expert's work
  on the images, docs/scans-in.md), copied unchanged with their ``annotation`` / ``contours``
  columns and ``spacing_um.annotation``. They are in the pixel frame of the scan (the phantom
  samples the image, the mask and the annotation of a section at the same raw coordinates,
  mirrored scans included), so a mirrored scan's annotation is mirrored like the scan and needs no
  flip: the ``mirrored`` flag that ``align --install`` writes un-mirrors image, mask and annotation
  alike. ``annotation_frame`` in the output checks this (share of annotated pixels inside the own
  tissue mask, as stored and flipped left-right).

The true inputs are the brain folders as the phantom made them (``ground_truth/BRAIN/inputs/``:
true masks, the stored transforms, true coordinate maps, the exact exclusion mask). Both cohorts
(``OUT/s<seed>/paths/true_inputs``, ``OUT/s<seed>/paths/scans``) then run the same commands::

    cortexgraph build-graph B01 B03 B07 --root COHORT --no-qc-picture
    cortexgraph train-encoder --root COHORT --preset tiny --name tiny-s<t> --seed <t>
    cortexgraph features BRAIN --root COHORT --encoder tiny-s<t>          (every brain)
    cortexgraph train-gnn --root COHORT --model gat --layers 3 --features cy,pm,co --preset demo
        --transfer B07 --encoder tiny-s<t> --seed <t> --name gat3-cy-pm-co-s<t>
    cortexgraph evaluate gat3-cy-pm-co-s<t> --root COHORT

(GAT3 with CY+PM+CO is train-gnn's default model; ``--preset demo`` is what ``auto`` takes on a
CPU; B07 the phantom's transfer brain), for every training seed ``t``; test and transfer macro F1
are read from ``runs/<name>/evaluation/metrics.json``.

``--split`` adds mixed paths to find which input moves the F1 (each its own cohort):

* ``scans_true_coords``: the scans path with the phantom's coordinate maps (registration out);
* ``own_masks_true_transforms``: own masks with the phantom's transforms, mirror flags and
  coordinate maps;
* ``true_masks_own_transforms``: the phantom's masks with own transforms, mirror flags and the
  phantom's coordinate maps.

    OMP_NUM_THREADS=1 python benchmarks/bench_scans_gnn.py OUT [--seeds 0,1] [--train-seeds 0,1]
        [--split]

Writes ``OUT/bench_scans_gnn.json`` (after every cohort): the commands with seconds and load, the
machine, per phantom seed the segment Dice, alignment and registration errors, the mirror flags
found, the annotation frame check, and per path the midsurface accuracy of every brain and per
training seed the encoder's and the GNN's test and transfer macro F1; and ``OUT/bench_scans_gnn.md``,
the table. A rerun with the same OUT reuses the phantoms, the scans path and the stages' outputs;
one with other ``--seeds`` keeps the results of the earlier phantoms in both files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scans_end_to_end as e2e  # noqa: E402

BRAINS = ("B01", "B03", "B07")
TRANSFER = "B07"
GNN_OPTIONS = ("--model", "gat", "--layers", "3", "--features", "cy,pm,co", "--preset", "demo")
SPLIT_PATHS = ("scans_true_coords", "own_masks_true_transforms", "true_masks_own_transforms")


def make_phantom(phantom: Path, seed: int) -> None:
    """The tiny phantom as scans only (reused when complete)."""
    done = (phantom / "synth.json").is_file() and all(
        (phantom / "scans" / b / "sections.tsv").is_file() for b in BRAINS
    )
    if done:
        return
    if phantom.exists():
        shutil.rmtree(phantom)
    e2e.run("synth", str(phantom), "--preset", "tiny", "--scans-only", "--seed", str(seed))


def truth_rows(truth_inputs: Path) -> dict[int, dict[str, str]]:
    with (truth_inputs / "sections.tsv").open() as handle:
        return {int(r["section"]): r for r in csv.DictReader(handle, delimiter="\t")}


def edit_brain(cohort: Path, brain_id: str, columns: dict[str, dict[int, str]], spacing: dict):
    """Set sections.tsv columns (``{column: {section: value}}``; sections not given get "") and
    ``[spacing_um]`` entries of a brain in ``cohort``."""
    from cortexgraph.data.manifest import Cohort

    brain = Cohort.read(cohort).brain(brain_id)
    records = [
        replace(r, **{c: values.get(r.section, "") for c, values in columns.items()})
        for r in brain.sections
    ]
    for role, value in spacing.items():
        setattr(brain, f"{role}_spacing_um", value)
    brain.write_manifest()
    brain.write_sections(records)


def copy_truth_files(
    cohort: Path, brain: str, truth_inputs: Path, folder: str, columns: tuple[str, ...], role: str
) -> None:
    """The phantom's ``folder`` of ``brain`` (its true inputs), unchanged, into the brain folder of
    ``cohort``, with the sections.tsv ``columns`` that name its files and ``[spacing_um] role``."""
    target = cohort / brain / folder
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(truth_inputs / folder, target)
    rows = truth_rows(truth_inputs)
    meta = tomllib.loads((truth_inputs / "brain.toml").read_text())
    edit_brain(
        cohort,
        brain,
        {c: {s: r[c] for s, r in rows.items()} for c in columns},
        {role: meta["spacing_um"][role]},
    )


def add_annotations(cohort: Path, brain: str, truth_inputs: Path) -> None:
    """The phantom's annotations of ``brain``, unchanged, into its brain folder (module docstring)."""
    copy_truth_files(
        cohort, brain, truth_inputs, "annotations", ("annotation", "contours"), "annotation"
    )


def use_true_coords(cohort: Path, brain: str, truth_inputs: Path) -> None:
    """The phantom's coordinate maps in a brain made from scans."""
    copy_truth_files(cohort, brain, truth_inputs, "coords", ("coords",), "coords")


def use_true_mirrors(cohort: Path, brain: str, truth_inputs: Path) -> None:
    """The phantom's mirror flags (the phantom's transforms act on sections un-mirrored by them)."""
    from cortexgraph.data.manifest import Cohort

    rows = truth_rows(truth_inputs)
    b = Cohort.read(cohort).brain(brain)
    records = [
        replace(r, mirrored=rows.get(r.section, {}).get("mirrored", "0") == "1") for r in b.sections
    ]
    b.write_sections(records)


def annotation_frame(cohort: Path, brain: str, truth_inputs: Path) -> list[dict]:
    """Per annotated section: share of annotated pixels inside the own tissue mask, as stored and
    flipped left-right, and whether the scan is mirrored (truth) / found mirrored (align)."""
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.raster import Raster

    rows = truth_rows(truth_inputs)
    b = Cohort.read(cohort).brain(brain)
    out = []
    for r in b.sections:
        if r.missing or not r.annotation:
            continue
        with Raster(b.path(r.annotation, section=r.section)) as raster:
            labels = raster.read_level(0) > 0
            spacing = raster.spacing_um
        with Raster(b.path(r.mask, section=r.section)) as raster:
            tissue = raster.read_at_spacing(spacing) > 0
        rr, cc = min(labels.shape[0], tissue.shape[0]), min(labels.shape[1], tissue.shape[1])
        labels, tissue = labels[:rr, :cc], tissue[:rr, :cc]
        n = int(labels.sum())
        if not n:
            continue
        out.append(
            {
                "section": r.section,
                "mirrored_truth": rows[r.section]["mirrored"] == "1",
                "mirrored_found": r.mirrored,
                "in_own_mask": round(float((labels & tissue).sum() / n), 3),
                "in_own_mask_flipped": round(float((labels[:, ::-1] & tissue).sum() / n), 3),
            }
        )
    return out


def scans_cohort(phantom: Path, cohort: Path, result: dict) -> None:
    """Every brain through the scans path, with coordinate maps and annotations installed."""
    if not (cohort / "cohort.toml").is_file():
        e2e.make_cohort_of(cohort, phantom, list(BRAINS))
    for brain in BRAINS:
        truth_inputs = phantom / "ground_truth" / brain / "inputs"
        marker = cohort / f".scans-done-{brain}"
        if not marker.is_file():
            e2e.ingest_brain(phantom, cohort, brain)
            e2e.run("segment", brain, "--root", str(cohort), "--no-qc")
            e2e.run(
                "align", brain, "--root", str(cohort), "--features", "none", "--install",
                "--accept-flagged",
            )  # fmt: skip
            e2e.run("register", brain, "--root", str(cohort), "--install")
            add_annotations(cohort, brain, truth_inputs)
            marker.write_text("done\n")
        derivatives = cohort / "derivatives" / "cortexgraph" / brain
        with (derivatives / "segment" / "dice.tsv").open() as handle:
            dice = [
                float(r["dice_gray"])
                for r in csv.DictReader(handle, delimiter="\t")
                if r["dice_gray"]
            ]
        align = json.loads((derivatives / "align" / "align.json").read_text())
        reg = json.loads((derivatives / "register" / "register.json").read_text())
        rows = truth_rows(truth_inputs)
        from cortexgraph.data.manifest import Cohort

        found = {r.section for r in Cohort.read(cohort).brain(brain).sections if r.mirrored}
        result.setdefault("scans", {})[brain] = {
            "segment_gray_dice_mean": float(np.mean(dice)),
            "align": {
                **{
                    k: v
                    for k, v in align.get("accuracy", {}).items()
                    if k not in ("per_pair", "drift")
                },
                "pairs_flagged": align.get("pairs_flagged"),
            },
            "register_error_against_coords": reg.get("error_against_coords"),
            "mirrored_truth": sorted(s for s, r in rows.items() if r["mirrored"] == "1"),
            "mirrored_found": sorted(found),
            "annotation_frame": annotation_frame(cohort, brain, truth_inputs),
        }


def make_path(name: str, phantom: Path, scans: Path, folder: Path) -> None:
    """The cohort of one path (reused when made)."""
    if (folder / ".made").is_file():
        return
    truths = {b: phantom / "ground_truth" / b / "inputs" for b in BRAINS}
    if name == "true_inputs":
        e2e.make_cohort_of(folder, phantom, list(BRAINS), truths)
    else:
        e2e.make_cohort_of(folder, phantom, list(BRAINS), {b: scans / b for b in BRAINS})
        for b in BRAINS:
            if name == "own_masks_true_transforms":
                e2e.swap(folder / b, truths[b], ("transforms.tsv",))
                use_true_mirrors(folder, b, truths[b])
            if name == "true_masks_own_transforms":
                e2e.use_true_masks(folder / b, truths[b])
            use_true_coords(folder, b, truths[b])
    (folder / ".made").write_text("done\n")


def gnn_path(cohort: Path, train_seeds: list[int], out: dict) -> None:
    """build-graph, then per training seed encoder, features, GAT3 and its evaluation."""
    start = time.perf_counter()
    e2e.run("build-graph", *BRAINS, "--root", str(cohort), "--no-qc-picture")
    out["midsurface"] = {}
    for brain in BRAINS:
        acc = e2e.accuracy(cohort, brain)
        out["midsurface"][brain] = {
            h: {
                k: acc[h][k]
                for k in (
                    "distance_mm_mean",
                    "distance_mm_median",
                    "distance_mm_p95",
                    "valid_points",
                )
            }
            for h in ("lh", "rh")
            if h in acc
        }
    R = ("--root", str(cohort))
    for t in train_seeds:
        encoder, run_name = f"tiny-s{t}", f"gat3-cy-pm-co-s{t}"
        e2e.run("train-encoder", *R, "--preset", "tiny", "--name", encoder, "--seed", str(t))
        metrics = json.loads(
            (cohort / "derivatives/cortexgraph/encoders" / encoder / "metrics.json").read_text()
        )
        for brain in BRAINS:
            e2e.run("features", brain, *R, "--encoder", encoder)
        e2e.run(
            "train-gnn", *R, *GNN_OPTIONS, "--transfer", TRANSFER, "--encoder", encoder,
            "--seed", str(t), "--name", run_name,
        )  # fmt: skip
        e2e.run("evaluate", run_name, *R)
        scores = json.loads(
            (
                cohort / "derivatives/cortexgraph/runs" / run_name / "evaluation/metrics.json"
            ).read_text()
        )
        out.setdefault("train_seeds", {})[str(t)] = {
            "gnn_test_f1": scores["test_f1"],
            "gnn_transfer_f1": scores["transfer_f1"],
            "test_nodes": scores["test_nodes"],
            "transfer_nodes": scores["transfer_nodes"],
            "per_brain": scores["per_brain"],
            "encoder_scl_test_f1": metrics["scl_linear"]["test"]["macro_f1"],
            "encoder_scl_transfer_f1": metrics["scl_linear"]["transfer"]["macro_f1"],
        }
    out["seconds"] = round(time.perf_counter() - start, 1)


def summary(result: dict) -> str:
    """Markdown table: per path mean (sd) over phantom and training seeds, and the difference to
    the true inputs paired by phantom and training seed."""
    paths: dict[str, dict[tuple[int, str], dict]] = {}
    for seed, per_seed in result["phantoms"].items():
        for name, p in per_seed.get("paths", {}).items():
            for t, r in p.get("train_seeds", {}).items():
                paths.setdefault(name, {})[(int(seed), t)] = r
    lines = [
        "| path | runs | GNN test F1 | GNN transfer F1 | test F1 - true | transfer F1 - true "
        "| encoder SCL test F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    truth = paths.get("true_inputs", {})

    def ms(values: list[float]) -> str:
        v = np.asarray(values, float)
        if not v.size:
            return "-"
        sd = f" ± {v.std(ddof=1):.3f}" if v.size > 1 else ""
        return f"{v.mean():.3f}{sd}"

    for name, runs in paths.items():
        keys = sorted(runs)
        test = [runs[k]["gnn_test_f1"] for k in keys]
        transfer = [runs[k]["gnn_transfer_f1"] for k in keys]
        shared = [k for k in keys if k in truth]
        d_test = [runs[k]["gnn_test_f1"] - truth[k]["gnn_test_f1"] for k in shared]
        d_tr = [runs[k]["gnn_transfer_f1"] - truth[k]["gnn_transfer_f1"] for k in shared]
        enc = [runs[k]["encoder_scl_test_f1"] for k in keys]
        lines.append(
            f"| {name} | {len(keys)} | {ms(test)} | {ms(transfer)} | "
            f"{ms(d_test) if name != 'true_inputs' else ''} | "
            f"{ms(d_tr) if name != 'true_inputs' else ''} | {ms(enc)} |"
        )
    lines += [
        "",
        "| phantom seed | training seed | path | test F1 | transfer F1 |",
        "|---|---|---|---|---|",
    ]
    for name, runs in paths.items():
        for (seed, t), r in sorted(runs.items()):
            lines.append(
                f"| {seed} | {t} | {name} | {r['gnn_test_f1']:.3f} | {r['gnn_transfer_f1']:.3f} |"
            )
    lines += [
        "",
        "| phantom seed | path | midsurface mean distance to the truth, mm (B01, B03, B07; lh / rh) |",
        "|---|---|---|",
    ]
    for seed, per_seed in result["phantoms"].items():
        for name, p in per_seed.get("paths", {}).items():
            cells = [
                " / ".join(
                    f"{hemis[h]['distance_mm_mean']:.2f}"
                    if "distance_mm_mean" in hemis.get(h, {})
                    else "-"
                    for h in ("lh", "rh")
                )
                for hemis in p.get("midsurface", {}).values()
            ]
            lines.append(f"| {seed} | {name} | {', '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0,1", help="Phantom seeds (comma-separated).")
    parser.add_argument("--train-seeds", default="0,1", help="Encoder and GNN seeds.")
    parser.add_argument("--split", action="store_true", help="Also the mixed paths.")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    train_seeds = [int(s) for s in args.train_seeds.split(",")]
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "brains": list(BRAINS),
        "transfer": TRANSFER,
        "gnn_options": list(GNN_OPTIONS),
        "phantoms": {},
        "commands": e2e.LOG,
    }
    previous = out / "bench_scans_gnn.json"
    if previous.is_file():  # the commands of earlier invocations on this OUT (a rerun reuses them)
        earlier = json.loads(previous.read_text())
        result["earlier_invocations"] = [
            *earlier.get("earlier_invocations", []),
            {k: earlier.get(k) for k in ("argv", "commands", "seconds_total")},
        ]
        # phantoms of earlier invocations that this one does not run stay in the results
        for seed, per_seed in earlier.get("phantoms", {}).items():
            if int(seed) not in seeds:
                result["phantoms"][seed] = per_seed
    result["argv"] = sys.argv[1:]
    start = time.perf_counter()

    def save() -> None:
        result["seconds_total"] = round(time.perf_counter() - start, 1)
        (out / "bench_scans_gnn.json").write_text(json.dumps(result, indent=2))
        (out / "bench_scans_gnn.md").write_text(summary(result))

    names = ["true_inputs", "scans", *(SPLIT_PATHS if args.split else ())]
    for seed in seeds:
        folder = out / f"s{seed}"
        phantom = folder / "phantom"
        per_seed = result["phantoms"].setdefault(str(seed), {})
        make_phantom(phantom, seed)
        scans = folder / "paths" / "scans"
        scans_cohort(phantom, scans, per_seed)
        save()
        for name in names:
            cohort = scans if name == "scans" else folder / "paths" / name
            if name != "scans":
                make_path(name, phantom, scans, cohort)
            gnn_path(cohort, train_seeds, per_seed.setdefault("paths", {}).setdefault(name, {}))
            save()
    save()
    print(summary(result))


if __name__ == "__main__":
    main()
