"""Benchmark of ``cortexgraph align`` (and optionally ``register``) against a phantom's exact transforms.

The phantom is made like the published data sets (every 15th 20 µm section, 0.3 mm apart) with images
at 64 µm/px, the working resolution of the alignment, on the posterior slab of one brain::

    python benchmarks/bench_align.py OUT [--slab-mm 12] [--features none|sift|orb] [--register]
    python benchmarks/bench_align.py OUT_FLOOR --floor      # the same phantom without misalignment

Prints and writes ``OUT/bench_align.json``: per-pair rotation and translation errors (median, worst),
the drift to the base section, flagged pairs, seconds, and the method error on pairs made from one
section and a known rigid transform (no anatomy change between the two images).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def make_phantom(out: Path, slab_mm: float, misaligned: bool = True) -> Path:
    from cortexgraph.synth.cohort import prepare_cohort, synthesize_brain
    from cortexgraph.synth.presets import get_preset

    spec = replace(
        get_preset("tiny"),
        name="seedlike",
        digitization_step=15,
        image_spacing_um=64.0,
        mask_spacing_um=128.0,
        annotation_spacing_um=128.0,
        coords_spacing_um=640.0,
        slab_posterior_mm=slab_mm,
        brains=("B01",),
    )
    if not misaligned:
        spec = replace(spec, misalignment_deg=0.0, misalignment_mm=0.0, mirrored_fraction=0.0)
    if not (out / "B01" / "transforms.tsv").is_file():
        prepare_cohort(out, spec, ["B01"], 0)
        synthesize_brain(out, "B01", spec, 0)
    return out


def method_error(brain, params, sections, rng) -> list[dict]:
    """Known rigid transforms applied to real section images: the method's own error."""
    from scipy import ndimage

    from cortexgraph.data.raster import Raster
    from cortexgraph.data.transforms import rigid_matrix, rotation_about
    from cortexgraph.scans.align import align_pair, matrix_difference, prepare_image

    rows = []
    for section in sections:
        with Raster(brain.path(brain.section(section).image)) as raster:
            image = raster.read_level(0).astype(np.float32)
            spacing, extent = raster.spacing_um, raster.extent_mm
        angle = rng.normal(0, 5.0)
        shift = rng.normal(0, 3.0, size=2)
        truth = rigid_matrix(0.0, *shift) @ rotation_about(
            np.deg2rad(angle), (extent[0] / 2, extent[1] / 2)
        )
        s = spacing / 1000.0
        scale = np.array([[s, 0, 0.5 * s], [0, s, 0.5 * s], [0, 0, 1.0]])
        inv = np.linalg.inv(scale) @ np.linalg.inv(truth) @ scale
        moved = ndimage.affine_transform(
            image,
            np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]]),
            offset=(inv[1, 2], inv[0, 2]),
            order=3,
            cval=250.0,
        )
        a = prepare_image(image, spacing, extent, params)
        b = prepare_image(moved, spacing, extent, params)
        result = align_pair(a, b, params)
        centre = (np.argwhere(a.image > 0)[:, ::-1].mean(0) + 0.5) * s
        deg, dist = matrix_difference(result.matrix_mm, truth, centre)
        rows.append(
            {"section": section, "rotation_error_deg": deg, "translation_error_um": dist * 1000}
        )
    return rows


def anatomy_floor(out: Path, slab_mm: float) -> dict:
    """The error left when there is nothing to correct: the same phantom without misalignment.

    The exact transforms are the identity; 8 anterior and 6 middle pairs are aligned from their
    images (search + refinement) and compared with them at the moving section's tissue centroid.
    What remains is the change of the anatomy between the two sections that the registration
    follows.
    """
    from cortexgraph.data.manifest import find_brain
    from cortexgraph.scans.align import (
        AlignParameters,
        _prepare,
        align_pair,
        matrix_difference,
        read_transform_table,
    )

    make_phantom(out, slab_mm, misaligned=False)
    brain = find_brain("B01", out)
    truth = read_transform_table(out / "ground_truth" / "B01" / "transforms.tsv")
    params = AlignParameters(features="none", detect_mirrored=False)
    keys = sorted(truth)
    picks = keys[-8:] + keys[len(keys) // 2 - 3 : len(keys) // 2 + 3]
    rows = []
    for moving, fixed in picks:
        a = _prepare(brain, fixed, params, False)
        b = _prepare(brain, moving, params, False)
        result = align_pair(a, b, params)
        s = a.spacing_um / 1000.0
        centre = (np.argwhere(b.image > 0)[:, ::-1].mean(0) + 0.5) * s
        deg, dist = matrix_difference(result.matrix_mm, truth[(moving, fixed)], centre)
        rows.append(
            {
                "moving": moving,
                "fixed": fixed,
                "rotation_error_deg": deg,
                "translation_error_um": dist * 1000,
            }
        )
    um = [r["translation_error_um"] for r in rows]
    return {
        "pairs": rows,
        "translation_error_um_median": float(np.median(um)),
        "translation_error_px_median": float(np.median(um) / 64.0),
        "rotation_error_deg_median": float(np.median([r["rotation_error_deg"] for r in rows])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--slab-mm", type=float, default=12.0)
    parser.add_argument("--features", default="none")
    parser.add_argument("--register", action="store_true")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="Only the anatomy floor: the phantom without misalignment (in OUT), 14 pairs.",
    )
    args = parser.parse_args()
    if args.floor:
        text = json.dumps(anatomy_floor(args.out, args.slab_mm), indent=2)
        (args.out / "bench_align_floor.json").write_text(text)
        print(text)
        return

    from cortexgraph.data.manifest import find_brain
    from cortexgraph.scans.align import AlignParameters, run_align

    start = time.perf_counter()
    make_phantom(args.out, args.slab_mm)
    made = time.perf_counter() - start
    brain = find_brain("B01", args.out)
    params = AlignParameters(features=args.features)
    start = time.perf_counter()
    report = run_align(brain, params, overwrite=True)
    seconds = time.perf_counter() - start
    accuracy = report["accuracy"]
    rng = np.random.default_rng(0)
    picks = brain.available_sections[:: max(1, len(brain.available_sections) // 6)][:6]
    method = method_error(brain, params, picks, rng)
    out = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
        },
        "phantom_seconds": made,
        "align_seconds": seconds,
        "pairs": report["pairs"],
        "pairs_flagged": report["pairs_flagged"],
        "flagged": report["flagged"],
        "mirror_changes": report["mirror_changes"],
        "accuracy": {k: v for k, v in accuracy.items() if k not in ("per_pair", "drift")},
        "method_error": {
            "rotation_error_deg_median": float(
                np.median([r["rotation_error_deg"] for r in method])
            ),
            "rotation_error_deg_max": float(np.max([r["rotation_error_deg"] for r in method])),
            "translation_error_um_median": float(
                np.median([r["translation_error_um"] for r in method])
            ),
            "translation_error_um_max": float(np.max([r["translation_error_um"] for r in method])),
        },
    }
    if args.register:
        from cortexgraph.scans.register import run_register

        tiny = args.out.parent / "tiny"
        if not (tiny / "synth.json").is_file():
            from cortexgraph.synth.cohort import synthesize_cohort

            synthesize_cohort(tiny, preset="tiny", seed=0)
        result = run_register(find_brain("B01", tiny), overwrite=True)
        out["register_tiny_B01"] = {
            "error_against_coords": result["error_against_coords"],
            "seconds": result["seconds"],
        }
    text = json.dumps(out, indent=2)
    (args.out / "bench_align.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
