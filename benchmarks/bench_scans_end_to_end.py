"""End to end from scans: the midsurface built from cortexgraph's own masks and transforms.

A tiny phantom is made as scans only (``cortexgraph synth --scans-only``); one brain goes through
``ingest -> segment -> align --install -> register -> build-graph``, each a ``cortexgraph`` command
run as a subprocess (the commands are printed and recorded). The same ``build-graph`` runs on the
true inputs of the same phantom (the brain folder as the phantom made it, kept under
``ground_truth/<brain>/inputs/``). Both midsurfaces are measured against the phantom's true
midsurface (:func:`cortexgraph.build_graph.accuracy.build_graph_accuracy`: exact point-to-mesh
distance from every built vertex, mm) and against each other (mesh to mesh).

To find where the error comes from, two mixed paths are built too (``--no-split`` skips them):

- ``own_masks_true_transforms``: cortexgraph's masks with the phantom's transforms;
- ``true_masks_own_transforms``: the phantom's masks with cortexgraph's transforms;

and the true inputs with the automatic exclusion (``true_inputs_auto_exclusion``), since a brain
made from scans has no exclusion mask. Every path is its own cohort folder under ``OUT/paths/``.

    python benchmarks/bench_scans_end_to_end.py OUT [--brain B01] [--seed 0] [--no-split]
        [--phantom tiny|published [--slab-mm 12]] [--no-register]

Writes ``OUT/bench_scans_end_to_end.json``: the commands, seconds, machine and load, the segment
Dice and alignment errors, the registration error, and per path and hemisphere the distance to the
true midsurface (mean / median / 95th percentile, mm) and to the true-input midsurface.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

CLI = str(Path(sys.executable).with_name("cortexgraph"))
LOG: list[dict] = []


def run(*args: str) -> float:
    """Run one ``cortexgraph`` command; record it with its seconds and the load."""
    command = [CLI, *args]
    printable = "cortexgraph " + " ".join(args)
    print("$", printable, flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    LOG.append(
        {"command": printable, "seconds": round(seconds, 1), "load_1min": os.getloadavg()[0]}
    )
    if done.returncode not in (0,):
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {printable}")
    return seconds


def published_spec(brain: str, slab_mm: float):
    """The tiny preset cut like the published series: every 15th 20 µm section (0.3 mm apart),
    images at 64 µm/px, masks and annotations at 128 µm, the posterior ``slab_mm`` of ``brain``."""
    from dataclasses import replace

    from cortexgraph.synth.presets import get_preset

    return replace(
        get_preset("tiny"),
        name="published-spacing",
        digitization_step=15,
        image_spacing_um=64.0,
        mask_spacing_um=128.0,
        annotation_spacing_um=128.0,
        coords_spacing_um=640.0,
        slab_posterior_mm=slab_mm,
        brains=(brain,),
    )


def ingest_scans(phantom: Path, scans: Path, brain: str) -> None:
    """A fresh cohort ``scans`` holding only the phantom's scans of ``brain``, ingested
    (:func:`ingest_brain`)."""
    make_cohort_of(scans, phantom, [brain], files=("areas.tsv",))
    ingest_brain(phantom, scans, brain)


def ingest_brain(phantom: Path, cohort: Path, brain: str) -> None:
    """The phantom's scans of ``brain`` copied into ``cohort`` (which lists the brain) and ingested:
    section list, digitization step, shrinkage and base section from the phantom's true
    brain.toml (the base section written into the new brain.toml, so that the reconstruction
    shares the world frame of the true midsurface)."""
    truth_inputs = phantom / "ground_truth" / brain / "inputs"
    meta = tomllib.loads((truth_inputs / "brain.toml").read_text())
    target = cohort / "scans" / brain
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(phantom / "scans" / brain, target)
    if (cohort / brain).exists():
        shutil.rmtree(cohort / brain)
    run(
        "ingest",
        str(cohort),
        brain,
        "--scans",
        str(target),
        "--digitization-step",
        str(meta["digitization_step"]),
        "--shrinkage-factor",
        str(meta["shrinkage_factor"]),
    )
    # the base section of the phantom (the world frame of its true midsurface)
    text = (cohort / brain / "brain.toml").read_text()
    if "base_section" not in text:
        text = text.replace(
            "[spacing_um]", f"base_section = {meta['base_section']}\n\n[spacing_um]"
        )
        (cohort / brain / "brain.toml").write_text(text)


def make_published_phantom(out: Path, brain: str, seed: int, slab_mm: float) -> None:
    """The tiny phantom's brain cut like the published series, reduced to scans.

    Every 15th 20 µm section (0.3 mm apart), images at 64 µm/px (the alignment's working
    resolution), masks at 128 µm, the posterior ``slab_mm`` of the brain: the phantom of
    benchmarks/bench_align.py, then :func:`cortexgraph.scans.strip.strip_to_scans`.
    """
    from cortexgraph.scans.strip import strip_to_scans
    from cortexgraph.synth.cohort import synthesize_cohort

    spec = published_spec(brain, slab_mm)
    print(f"# synthesize_cohort({out}, published spacing, {brain}, seed {seed}) + strip_to_scans")
    t = time.perf_counter()
    root = synthesize_cohort(out, preset=spec, brains=[brain], seed=seed)
    strip_to_scans(root, brains=[brain])
    LOG.append(
        {
            "command": f"synthesize_cohort + strip_to_scans (published spacing, slab {slab_mm} mm)",
            "seconds": round(time.perf_counter() - t, 1),
            "load_1min": os.getloadavg()[0],
        }
    )


def make_cohort(folder: Path, template: Path, brain_folder: Path, brain: str) -> Path:
    """A one-brain cohort at ``folder``: cohort files of ``template``, the given brain folder, and
    the phantom's ground truth of the brain (for the accuracy)."""
    return make_cohort_of(folder, template, [brain], {brain: brain_folder})[brain]


def make_cohort_of(
    folder: Path,
    template: Path,
    brains: list[str],
    brain_folders: dict[str, Path] | None = None,
    files: tuple[str, ...] = ("areas.tsv", "synth.json"),
) -> dict[str, Path]:
    """A cohort at ``folder`` (made anew) listing ``brains``: the cohort ``files`` and atlas of
    ``template``, copies of the given brain folders (a brain without one is listed only, for
    ``ingest``), and the phantom's ground truth of every brain. Returns the brain folders."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in files:
        if (template / name).is_file():
            shutil.copy2(template / name, folder / name)
    shutil.copytree(template / "atlas", folder / "atlas")
    text = (template / "cohort.toml").read_text()
    cohort = tomllib.loads(text)
    listed = "\n".join(f'    "{b}",' for b in cohort["brains"])
    text = text.replace(listed, "\n".join(f'    "{b}",' for b in brains))
    (folder / "cohort.toml").write_text(text)
    (folder / "ground_truth").mkdir()
    for brain in brains:
        if brain_folders and brain in brain_folders:
            shutil.copytree(brain_folders[brain], folder / brain)
        shutil.copytree(template / "ground_truth" / brain, folder / "ground_truth" / brain)
    return {brain: folder / brain for brain in brains}


def swap(brain_folder: Path, source: Path, names: tuple[str, ...]) -> None:
    """Replace files/folders ``names`` of ``brain_folder`` by those of ``source``."""
    for name in names:
        target = brain_folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (source / name).is_dir():
            shutil.copytree(source / name, target)
        else:
            shutil.copy2(source / name, target)


def use_true_masks(brain_folder: Path, truth_inputs: Path) -> None:
    """The phantom's masks (files, spacing and sections.tsv column) in a brain made from scans."""
    import csv

    swap(brain_folder, truth_inputs, ("masks",))
    truth_rows = {
        r["section"]: r
        for r in csv.DictReader((truth_inputs / "sections.tsv").open(), delimiter="\t")
    }
    rows = list(csv.DictReader((brain_folder / "sections.tsv").open(), delimiter="\t"))
    for row in rows:
        row["mask"] = truth_rows.get(row["section"], {}).get("mask", "")
    with (brain_folder / "sections.tsv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    own = tomllib.loads((brain_folder / "brain.toml").read_text())
    true_spacing = tomllib.loads((truth_inputs / "brain.toml").read_text())["spacing_um"]["mask"]
    text = (brain_folder / "brain.toml").read_text()
    text = text.replace(f"mask = {own['spacing_um']['mask']}", f"mask = {true_spacing}")
    (brain_folder / "brain.toml").write_text(text)


def accuracy(cohort: Path, brain: str) -> dict:
    path = cohort / "derivatives" / "cortexgraph" / brain / "qc" / "build-graph-accuracy.json"
    if not path.is_file():
        from cortexgraph.build_graph.accuracy import write_build_graph_accuracy
        from cortexgraph.data.manifest import find_brain

        return write_build_graph_accuracy(find_brain(brain, cohort))
    return json.loads(path.read_text())


def mesh_to_mesh(a: Path, b: Path) -> dict:
    """Distance from every vertex of mesh ``a`` to mesh ``b`` (mm)."""
    from cortexgraph.meshes.distance import point_mesh_distance
    from cortexgraph.meshes.io import read_gifti_surface

    va, _ = read_gifti_surface(a)
    vb, fb = read_gifti_surface(b)
    d = point_mesh_distance(va, vb, fb)
    return {
        "mean_mm": float(d.mean()),
        "median_mm": float(np.median(d)),
        "p95_mm": float(np.percentile(d, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--brain", default="B01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--phantom",
        choices=("tiny", "published"),
        default="tiny",
        help="tiny: the tiny preset (sections 1.2 mm apart, images 160 µm/px); published: the tiny "
        "brain cut like the published series (every 15th 20 µm section, images 64 µm/px).",
    )
    parser.add_argument("--slab-mm", type=float, default=12.0, help="published: posterior slab.")
    parser.add_argument("--no-split", action="store_true", help="Only the scans and true paths.")
    parser.add_argument("--no-register", action="store_true", help="Skip the registration step.")
    args = parser.parse_args()
    out, brain = args.out.resolve(), args.brain
    out.mkdir(parents=True, exist_ok=True)
    phantom = out / "phantom"
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "brain": brain,
        "seed": args.seed,
        "phantom": args.phantom,
    }
    start = time.perf_counter()
    if args.phantom == "published" and not (phantom / "ground_truth" / brain / "inputs").is_dir():
        make_published_phantom(phantom, brain, args.seed, args.slab_mm)
    elif not (phantom / "ground_truth" / brain / "inputs").is_dir():
        run(
            "synth",
            str(phantom),
            "--preset",
            "tiny",
            "--brains",
            brain,
            "--scans-only",
            "--seed",
            str(args.seed),
        )
    truth_inputs = phantom / "ground_truth" / brain / "inputs"
    paths = out / "paths"

    # 1. the scans path
    scans = paths / "scans"
    ingest_scans(phantom, scans, brain)
    run("segment", brain, "--root", str(scans), "--no-qc")
    run("align", brain, "--root", str(scans), "--features", "none", "--install", "--accept-flagged")
    if not args.no_register:
        run("register", brain, "--root", str(scans))
    derivatives = scans / "derivatives" / "cortexgraph" / brain
    dice_rows = [
        line.split("\t") for line in (derivatives / "segment" / "dice.tsv").read_text().splitlines()
    ]
    header, body = dice_rows[0], dice_rows[1:]
    gray = [float(r[header.index("dice_gray")]) for r in body if r[header.index("dice_gray")]]
    result["segment_gray_dice_mean"] = float(np.mean(gray))
    align_report = json.loads((derivatives / "align" / "align.json").read_text())
    result["align"] = {
        k: v for k, v in align_report.get("accuracy", {}).items() if k not in ("per_pair", "drift")
    }
    result["align"]["pairs_flagged"] = align_report.get("pairs_flagged")
    if not args.no_register:
        reg = json.loads((derivatives / "register" / "register.json").read_text())
        result["register_error_against_coords"] = reg.get("error_against_coords")

    # 2. the other paths: true inputs, and the mixed ones
    true_path = make_cohort(paths / "true_inputs", phantom, truth_inputs, brain)
    built = {"scans": scans, "true_inputs": true_path.parent}
    extra: dict[str, tuple[str, ...]] = {"true_inputs": ()}
    if not args.no_split:
        auto = make_cohort(paths / "true_inputs_auto_exclusion", phantom, truth_inputs, brain)
        built["true_inputs_auto_exclusion"] = auto.parent
        extra["true_inputs_auto_exclusion"] = ("--exclusion", "automatic")
        mixed = make_cohort(paths / "own_masks_true_transforms", phantom, scans / brain, brain)
        swap(mixed, truth_inputs, ("transforms.tsv",))
        built["own_masks_true_transforms"] = mixed.parent
        mixed = make_cohort(paths / "true_masks_own_transforms", phantom, scans / brain, brain)
        use_true_masks(mixed, truth_inputs)
        built["true_masks_own_transforms"] = mixed.parent
    for name, cohort in built.items():
        flags = extra.get(name, ())
        seconds = run("build-graph", brain, "--root", str(cohort), "--no-qc-picture", *flags)
        acc = accuracy(cohort, brain)
        result.setdefault("paths", {})[name] = {
            "build_graph_seconds": round(seconds, 1),
            **{h: acc[h] for h in ("lh", "rh") if h in acc},
        }
    reference = built["true_inputs"] / "derivatives" / "cortexgraph" / brain / "meshes"
    for name, cohort in built.items():
        if name == "true_inputs":
            continue
        meshes = cohort / "derivatives" / "cortexgraph" / brain / "meshes"
        for hemi in ("lh", "rh"):
            a, b = meshes / f"midsurface_{hemi}.surf.gii", reference / f"midsurface_{hemi}.surf.gii"
            if a.is_file() and b.is_file():
                result["paths"][name].setdefault("to_true_inputs_mesh", {})[hemi] = mesh_to_mesh(
                    a, b
                )
    result["seconds_total"] = round(time.perf_counter() - start, 1)
    result["commands"] = LOG
    text = json.dumps(result, indent=2)
    (out / "bench_scans_end_to_end.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
