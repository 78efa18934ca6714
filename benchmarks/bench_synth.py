"""Benchmark of the phantom generator: time and peak memory per preset, plus a texture check.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py --presets tiny demo --repeats 1
    python benchmarks/bench_synth.py --classify <cohort folder>

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
    args = parser.parse_args()
    if args.classify is not None:
        print(json.dumps(classify(args.classify), indent=2))
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
