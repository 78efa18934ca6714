"""Benchmark of the phantom generator: time and peak memory per preset, plus a texture check.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py --presets tiny demo --repeats 1
    python benchmarks/bench_synth.py --classify <cohort folder>
    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py --sections full --count 6 --repeats 3 \
        [--code-roots OLD_CHECKOUT .] [--template-cache FILE] [--save DIR] [--profile FILE]
    python benchmarks/bench_synth.py --compare DIR_OLD DIR_NEW

``--sections PRESET`` renders a fixed sample of ``--count`` sections of one brain (``--brain``,
default B07), spread evenly over its stack of available sections, in one process, exactly as
``cortexgraph synth`` renders each section (``cortexgraph.synth.cohort._section_job``: mask, image,
coordinates, true labels, annotation, written to HDF5), and reports the **process CPU seconds per
section** (``time.process_time``, robust to other jobs on the machine), the wall seconds, and the peak
resident memory of the process (which holds the template). The template, brain and section plan are
built before the clock starts (once per process; ``--template-cache`` pickles the template to a file
so that repeated runs skip its ~1 min build). ``--code-roots`` runs the same sample once per given
checkout (via ``PYTHONPATH``), alternating between them for ``--repeats`` rounds, so an old and a new
version are timed side by side under the same load. ``--save`` keeps the level-0 rasters of every
sampled section (``DIR/<code root index>/sNNNN.npz``) and ``--compare`` reports their differences
(image intensities, tissue-mask agreement and Dice per class, true-label agreement, coordinates).

Each preset is generated in a fresh subprocess (so the template cache does not carry over and the peak
resident memory, ``ru_maxrss`` of the child or of its largest worker process, belongs to that run alone). ``--classify`` trains a simple
classifier (a random forest on stain-normalised optical-density statistics of 1.3 mm cortex patches:
mean, s.d., 10/50/90th percentiles, and the mean of 5 depth bands from pia to white matter, depth
estimated from the tissue mask) on the annotated sections of all brains
but B07 and scores it on the annotated sections of B07: the phantom should be learnable (well above
chance) but not trivial.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
from cortexgraph.synth.cohort import synthesize_cohort
start = time.perf_counter()
synthesize_cohort(sys.argv[1], preset=sys.argv[2], seed=0)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds,
                  "peak_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}))
"""


def run_preset(name: str, repeats: int) -> dict:
    times, peaks, size_mb, files = [], [], 0.0, 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / name
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(out), name],
                capture_output=True,
                text=True,
                check=True,
            )
            record = json.loads(result.stdout.strip().splitlines()[-1])
            times.append(record["seconds"])
            peaks.append(record["peak_mb"])
            paths = [p for p in out.rglob("*") if p.is_file()]
            files = len(paths)
            size_mb = sum(p.stat().st_size for p in paths) / 2**20
    return {
        "preset": name,
        "median_s": float(np.median(times)),
        "peak_mb": max(peaks),
        "files": files,
        "size_mb": size_mb,
        "runs": repeats,
    }


SECTIONS_CHILD = r"""
import hashlib, json, os, pickle, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
from cortexgraph.data.raster import Raster
from cortexgraph.synth import cohort as synth_cohort
from cortexgraph.synth.areas import brain_profiles, depth_profiles, transition_widths_mm
from cortexgraph.synth.deform import brain_rng, make_brain
from cortexgraph.synth.presets import get_preset
from cortexgraph.synth.render import sample_section
from cortexgraph.synth.sectioning import plan_sections
from cortexgraph.synth.template import build_template

preset, brain_id, count, cache, save, profile = sys.argv[1:7]
spec = get_preset(preset)
seed = 0
start = time.process_time()
if cache and Path(cache).exists():
    with open(cache, "rb") as handle:
        template = pickle.load(handle)
else:
    template = build_template(spec.template_mm, spec.area_seed)
    if cache:
        with open(cache, "wb") as handle:
            pickle.dump(template, handle, protocol=pickle.HIGHEST_PROTOCOL)
template_cpu = time.process_time() - start
layout = template.layout
profiles = brain_profiles(layout.profiles, brain_rng(seed, brain_id, 8), spec.profile_variability)
luts = depth_profiles(profiles, len(layout.areas))
luts["transition_mm"] = transition_widths_mm(len(layout.areas), spec.transition_mm, spec.area_seed)
brain = make_brain(template, spec, brain_id, seed)
geometry = plan_sections(template, brain, spec, seed)
available = geometry.available
# the middle section of each of count equal parts of the stack (a fair sample of its mean cost)
picks = [available[int((k + 0.5) * len(available) / int(count))] for k in range(int(count))]
tmp = tempfile.mkdtemp(prefix="bench-synth-")
root, truth_root = Path(tmp) / brain_id, Path(tmp) / "ground_truth" / brain_id
synth_cohort._STATE.update(template=template, brain=brain, geometry=geometry, spec=spec, seed=seed,
                           luts=luts, names={a.id: a.name for a in layout.areas}, root=root,
                           truth_root=truth_root, cohort=None)
# one-time costs before the clock: compiled kernels (numba) load or compile on the first call
c0 = time.process_time()
sample_section(template, brain, geometry, picks[0], spec.coords_spacing_um)
setup_cpu = time.process_time() - c0
profiler = None
if profile:
    import cProfile
    profiler = cProfile.Profile(time.process_time)  # CPU seconds, not wall
cpu, wall, digests = [], [], {}
for n in picks:
    c0, w0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    record = synth_cohort._section_job(n)
    if profiler is not None:
        profiler.disable()
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)
    arrays = {}
    for kind, rel in (("mask", record.mask), ("image", record.image), ("coords", record.coords),
                      ("annotation", record.annotation)):
        if rel:
            arrays[kind] = Raster(root / rel).read_level(0)
    arrays["labels"] = Raster(truth_root / "labels" / f"s{n:04d}.h5").read_level(0)
    digest = hashlib.sha256()
    for kind in sorted(arrays):
        digest.update(kind.encode())
        digest.update(np.ascontiguousarray(arrays[kind]).tobytes())
    digests[str(n)] = digest.hexdigest()[:16]
    if save:
        Path(save).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(Path(save) / f"s{n:04d}.npz", **arrays)
if profiler is not None:
    profiler.dump_stats(profile)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"sections": picks, "cpu_s": cpu, "wall_s": wall, "digests": digests,
                  "template_cpu_s": template_cpu, "warmup_cpu_s": setup_cpu, "peak_mb": peak_mb,
                  "image_px": [int(v) for v in geometry.raster_shape(spec.image_spacing_um)]}))
"""


def run_sections(
    preset: str,
    brain: str,
    count: int,
    repeats: int,
    code_roots: list[Path],
    cache: Path | None,
    save: Path | None,
    profile: Path | None,
) -> list[dict]:
    """Time a fixed sample of sections per code root (module docstring); one row per code root."""
    import os

    runs: dict[int, list[dict]] = {k: [] for k in range(len(code_roots))}
    for repeat in range(repeats):
        for k, code_root in enumerate(code_roots):
            env = dict(os.environ, PYTHONPATH=str(code_root.resolve()))
            out = str(save / str(k)) if save is not None and repeat == 0 else ""
            prof = str(profile) + f".{k}" if profile is not None and repeat == 0 else ""
            cache_arg = str(cache) if cache is not None else ""
            result = subprocess.run(
                [sys.executable, "-c", SECTIONS_CHILD, preset, brain, str(count), cache_arg,
                 out, prof],
                capture_output=True, text=True, env=env, cwd=str(code_root.resolve()),
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"section benchmark failed in {code_root}:\n{result.stderr}")
            runs[k].append(json.loads(result.stdout.strip().splitlines()[-1]))
    rows = []
    for k, code_root in enumerate(code_roots):
        per_run = [float(np.mean(r["cpu_s"])) for r in runs[k]]
        rows.append({
            "code_root": str(code_root),
            "sections": runs[k][0]["sections"],
            "image_px": runs[k][0]["image_px"],
            "cpu_s_per_section_median": float(np.median(per_run)),
            "cpu_s_per_section_runs": per_run,
            "cpu_s_by_section_median": [
                float(np.median([r["cpu_s"][i] for r in runs[k]]))
                for i in range(len(runs[k][0]["cpu_s"]))
            ],
            "wall_s_per_section_median": float(np.median([np.mean(r["wall_s"]) for r in runs[k]])),
            "peak_mb": max(r["peak_mb"] for r in runs[k]),
            "warmup_cpu_s": [round(r["warmup_cpu_s"], 2) for r in runs[k]],
            "digests": runs[k][0]["digests"],
            "deterministic": all(r["digests"] == runs[k][0]["digests"] for r in runs[k]),
        })  # fmt: skip
    return rows


def compare_saved(old_dir: Path, new_dir: Path) -> dict:
    """Differences between the level-0 rasters of two ``--save`` folders (same sections)."""
    names = sorted(p.name for p in old_dir.glob("s*.npz"))
    if not names:
        raise SystemExit(f"no sNNNN.npz in {old_dir}: run --sections with --save first")
    image_abs, image_tissue_abs, max_image = [], [], 0
    mask_same = mask_total = label_same = label_total = 0
    dice_parts = {1: [0, 0], 2: [0, 0]}
    coords_max = 0.0
    annotation_same = annotation_total = 0
    for name in names:
        a, b = np.load(old_dir / name), np.load(new_dir / name)
        ia, ib = a["image"].astype(np.int16), b["image"].astype(np.int16)
        diff = np.abs(ia - ib)
        max_image = max(max_image, int(diff.max()))
        image_abs.append(diff.ravel())
        tissue = (
            a["mask"]
            .repeat(ia.shape[0] // a["mask"].shape[0], 0)
            .repeat(ia.shape[1] // a["mask"].shape[1], 1)[: ia.shape[0], : ia.shape[1]]
            > 0
        )
        image_tissue_abs.append(diff[tissue])
        mask_same += int((a["mask"] == b["mask"]).sum())
        mask_total += a["mask"].size
        for cls in (1, 2):
            ma, mb = a["mask"] == cls, b["mask"] == cls
            dice_parts[cls][0] += 2 * int((ma & mb).sum())
            dice_parts[cls][1] += int(ma.sum() + mb.sum())
        on = (a["labels"] > 0) | (b["labels"] > 0)
        label_same += int((a["labels"][on] == b["labels"][on]).sum())
        label_total += int(on.sum())
        ca, cb = a["coords"], b["coords"]
        both = np.isfinite(ca) & np.isfinite(cb)
        if both.any():
            coords_max = max(coords_max, float(np.abs(ca[both] - cb[both]).max()))
        if "annotation" in a.files and "annotation" in b.files:
            on = (a["annotation"] > 0) | (b["annotation"] > 0)
            annotation_same += int((a["annotation"][on] == b["annotation"][on]).sum())
            annotation_total += int(on.sum())
    every = np.concatenate(image_abs)
    tissue_diff = np.concatenate(image_tissue_abs)
    return {
        "sections": len(names),
        "image_max_abs": max_image,
        "image_mean_abs": float(every.mean()),
        "image_mean_abs_on_tissue": float(tissue_diff.mean()) if tissue_diff.size else 0.0,
        "image_identical_fraction": float((every == 0).mean()),
        "mask_agreement": mask_same / max(mask_total, 1),
        "mask_dice_white": dice_parts[1][0] / max(dice_parts[1][1], 1),
        "mask_dice_gray": dice_parts[2][0] / max(dice_parts[2][1], 1),
        "label_agreement_on_cortex": label_same / max(label_total, 1),
        "annotation_agreement": annotation_same / max(annotation_total, 1),
        "coords_max_abs": coords_max,
    }


def patch_features(image: np.ndarray, depth_rank: np.ndarray) -> np.ndarray:
    """Intensity statistics of one patch (see module docstring)."""
    values = image.astype(np.float32).ravel()
    bands = [
        values[depth_rank == k].mean() if np.any(depth_rank == k) else values.mean()
        for k in range(5)
    ]
    return np.array([values.mean(), values.std(), *np.percentile(values, [10, 50, 90]), *bands])


def classify(
    cohort_root: Path, patch_mm: float = 1.3, per_section: int = 60, seed: int = 0
) -> dict:
    """Train on the annotated sections of every brain but B07, test on B07 (module docstring)."""
    from scipy import ndimage
    from sklearn.ensemble import RandomForestClassifier

    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.raster import Raster

    cohort = Cohort.read(cohort_root)
    rng = np.random.default_rng(seed)
    data = {"train": ([], []), "test": ([], [])}
    for brain in cohort.brains:
        split = "test" if brain.id == "B07" else "train"
        for n in brain.annotated_sections:
            record = brain.section(n)
            image_raster = Raster(brain.path(record.image))
            image = image_raster.read_level(0).astype(np.float32)
            spacing_mm = image_raster.spacing_um / 1000.0
            labels = Raster(brain.path(record.annotation)).read_at_spacing(image_raster.spacing_um)
            labels = labels[: image.shape[0], : image.shape[1]]
            mask = Raster(brain.path(record.mask)).read_at_spacing(image_raster.spacing_um)
            mask = mask[: image.shape[0], : image.shape[1]]
            # depth proxy from the tissue mask: distance to glass vs distance to white matter
            to_glass = ndimage.distance_transform_edt(mask > 0)
            to_white = ndimage.distance_transform_edt(mask != 1)
            depth = to_glass / np.maximum(to_glass + to_white, 1e-6)
            # stain normalisation: optical density relative to the section's white matter
            od = -np.log(np.maximum(image, 1.0) / 250.0)
            white_od = np.median(od[mask == 1]) if np.any(mask == 1) else 1.0
            image = od / max(white_od, 1e-3)
            half = max(2, int(round(patch_mm / spacing_mm / 2)))
            rows, cols = np.nonzero(labels > 0)
            inner = (
                (rows >= half)
                & (cols >= half)
                & (rows < image.shape[0] - half)
                & (cols < image.shape[1] - half)
            )
            rows, cols = rows[inner], cols[inner]
            if len(rows) == 0:
                continue
            pick = rng.choice(len(rows), min(per_section, len(rows)), replace=False)
            for r, c in zip(rows[pick], cols[pick], strict=True):
                window = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
                cortex = mask[window] == 2
                if cortex.sum() < 4:
                    continue
                rank = np.minimum((depth[window][cortex] * 5).astype(int), 4)
                data[split][0].append(patch_features(image[window][cortex], rank))
                data[split][1].append(int(labels[r, c]))
    x_train, y_train = np.array(data["train"][0]), np.array(data["train"][1])
    x_test, y_test = np.array(data["test"][0]), np.array(data["test"][1])
    keep = np.isin(y_test, np.unique(y_train))
    x_test, y_test = x_test[keep], y_test[keep]
    model = RandomForestClassifier(n_estimators=200, min_samples_leaf=3, random_state=seed)
    predicted = model.fit(x_train, y_train).predict(x_test)
    classes, counts = np.unique(y_test, return_counts=True)
    majority = counts.max() / counts.sum()
    return {
        "train_patches": len(y_train),
        "test_patches": len(y_test),
        "classes": len(classes),
        "accuracy": float((predicted == y_test).mean()),
        "chance_uniform": 1.0 / len(classes),
        "chance_majority": float(majority),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=["tiny"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classify", type=Path, default=None)
    parser.add_argument("--sections", default=None, help="preset whose sections are sampled")
    parser.add_argument("--brain", default="B07")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--code-roots", nargs="*", type=Path, default=None)
    parser.add_argument("--template-cache", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--compare", nargs=2, type=Path, default=None)
    args = parser.parse_args()
    if args.classify is not None:
        print(json.dumps(classify(args.classify), indent=2))
        return
    if args.compare is not None:
        print(json.dumps(compare_saved(*args.compare), indent=2))
        return
    if args.sections is not None:
        roots = args.code_roots or [Path(__file__).resolve().parent.parent]
        rows = run_sections(
            args.sections, args.brain, args.count, args.repeats, roots, args.template_cache,
            args.save, args.profile,
        )  # fmt: skip
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':8} {'median s':>9} {'peak MB':>8} {'files':>6} {'MB':>7} runs")
    for name in args.presets:
        row = run_preset(name, args.repeats)
        print(
            f"{row['preset']:8} {row['median_s']:9.1f} {row['peak_mb']:8.0f} {row['files']:6d} "
            f"{row['size_mb']:7.1f} {row['runs']}"
        )


if __name__ == "__main__":
    main()
