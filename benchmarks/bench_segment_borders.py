"""Where the masks of ``cortexgraph segment`` differ from the truth, per border, and what it does to the midsurface.

The published-cutting phantom of benchmarks/bench_scans_end_to_end.py (every 15th 20 µm section,
images 64 µm/px, the posterior 12 mm; made as scans and ingested; reused when ``OUT/phantom`` and
``OUT/scans`` exist) is segmented with each parameter variant (``--variant NAME:field=value,...``;
always ``default``, the current :class:`~cortexgraph.scans.segment.SegmentParameters`). The truth
is sampled again at the masks' 64 µm (the phantom's own sampling of its anatomy at the image pixel
centres, with the tissue its artefacts removed; its stored masks are at 128 µm), so both masks
share one grid. Per section and border, signed (µm; positive = our border outward of the true one
for the pial border, our border inside the true white matter, i.e. our gray thicker, for the
gray/white border):

- ``*_signed_um``: mean (clipped at ±5 px) and median over our border's pixel edges of the true
  border's signed distance (``scipy.ndimage.distance_transform_edt`` on both sides, half a pixel
  between the centres of a border pair), and the reverse (true border edges to ours);
- ``*_area_shift_um``: the area difference over the true border's length (the mean normal shift);
- ``*_length_ratio``: our border's length over the true one's (ragged borders are longer);
- false white pieces (8-connected white pieces of our mask with less than half their pixels in
  true white matter): count, area, median distance to the background and median cortical depth
  (0 pia, 1 white matter), and the true white matter we label gray; gray components and holes.

With ``--build-graph`` every variant's masks go through ``build-graph`` with the phantom's true
transforms, and the distance of the midsurface to the true one is measured (as
``own_masks_true_transforms`` of bench_scans_end_to_end.py); ``--split VARIANT`` adds, for that
variant, masks mixed from the truth and ours (true tissue with our gray/white split, our tissue with
the true split, ours with the false white pieces gray, the 64 µm truth) to say which border the
error comes from.

    python benchmarks/bench_segment_borders.py OUT [--variant NAME:field=value,...] [--build-graph]
        [--split VARIANT] [--brain B01] [--seed 0] [--slab-mm 12]

Writes ``OUT/bench_segment_borders.json`` and prints a table per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scans_end_to_end as e2e  # noqa: E402

SPACING_UM = 64.0


published_spec = e2e.published_spec


def true_masks_at(spacing_um: float, brain: str, seed: int, slab_mm: float) -> dict[int, dict]:
    """Per section the phantom's tissue classes sampled at ``spacing_um`` (pixel centres, as the
    phantom samples its rasters) with its artefacts' removed tissue, and the cortical depth."""
    from cortexgraph.synth.cohort import _template
    from cortexgraph.synth.deform import brain_rng, make_brain
    from cortexgraph.synth.render import draw_artefacts, raw_axes, sample_section
    from cortexgraph.synth.sectioning import plan_sections

    spec = published_spec(brain, slab_mm)
    template = _template(spec.template_mm, spec.area_seed)
    model = make_brain(template, spec, brain, seed)
    geometry = plan_sections(template, model, spec, seed)
    out = {}
    for n in geometry.available:
        coarse = sample_section(
            template, model, geometry, n, spec.mask_spacing_um, keep_template_mm=False
        )
        rng = brain_rng(seed, model.brain_id, 5, n)  # the artefacts' stream of synth
        artefacts = draw_artefacts(
            rng, coarse.tissue, spec.mask_spacing_um, spec.artefacts_per_section
        )
        fine = sample_section(template, model, geometry, n, spacing_um, keep_template_mm=False)
        mask = fine.tissue.copy()
        shape = geometry.raster_shape(spacing_um)
        mask[artefacts.removed_on_grid(*raw_axes(shape, spacing_um))] = 0
        out[n] = {"mask": mask, "depth": fine.depth}
    return out


# -- border measures ---------------------------------------------------------------------------------


def signed_distance(region: np.ndarray) -> np.ndarray:
    """Signed distance (px) of every pixel centre to the border of ``region`` (positive outside);
    the border lies half a pixel from the centres of a border pair."""
    inside = ndimage.distance_transform_edt(region)
    outside = ndimage.distance_transform_edt(~region)
    return np.where(region, -(inside - 0.5), outside - 0.5)


def edge_values(a: np.ndarray, b: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``field`` at the midpoints of the 4-adjacent pixel pairs (p in ``a``, q in ``b``)."""
    values = []
    for axis in (0, 1):
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        for p, q in ((tuple(lo), tuple(hi)), (tuple(hi), tuple(lo))):
            pair = a[p] & b[q]
            values.append(0.5 * (field[p][pair] + field[q][pair]))
    return np.concatenate(values)


def border_shift(ours: np.ndarray, truth: np.ndarray, rest_ours, rest_truth) -> dict:
    """Signed shift (px, positive = ``ours`` larger) of the border of region ``ours`` (against
    ``rest_ours``) from that of ``truth`` (against ``rest_truth``)."""
    from skimage.measure import perimeter

    forward = edge_values(ours, rest_ours, signed_distance(truth))
    reverse = -edge_values(truth, rest_truth, signed_distance(ours))
    length = perimeter(truth)
    return {
        "mean": float(np.mean(np.clip(forward, -5, 5))) if forward.size else np.nan,
        "median": float(np.median(forward)) if forward.size else np.nan,
        "reverse_mean": float(np.mean(np.clip(reverse, -5, 5))) if reverse.size else np.nan,
        "far": float(np.mean(np.abs(forward) > 5)) if forward.size else np.nan,
        "area_shift": float((ours.sum() - truth.sum()) / length) if length else np.nan,
        "length_ratio": float(perimeter(ours) / length) if length else np.nan,
    }


def false_white_pieces(ours: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Our white pieces (8-connected) with less than half their pixels in true white matter."""
    labels, count = ndimage.label(ours == 1, structure=np.ones((3, 3)))
    if not count:
        return np.zeros(ours.shape, bool)
    share = ndimage.mean(truth == 1, labels, np.arange(1, count + 1))
    return np.concatenate([[False], np.asarray(share) < 0.5])[labels]


def measure_section(ours: np.ndarray, truth: np.ndarray, depth: np.ndarray) -> dict:
    um = SPACING_UM
    tissue_o, tissue_t = ours > 0, truth > 0
    row: dict = {}
    pial = border_shift(tissue_o, tissue_t, ~tissue_o, ~tissue_t)
    row |= {f"pial_{k}": v for k, v in pial.items()}
    white_o, white_t = ours == 1, truth == 1
    if white_o.sum() > 100 and white_t.sum() > 100:
        # positive = our white smaller = our gray/white border inside the true white matter
        gw = border_shift(white_o, white_t, ours == 2, truth == 2)
        row |= {
            f"gw_{k}": (-v if k in ("mean", "median", "reverse_mean", "area_shift") else v)
            for k, v in gw.items()
        }
    for key in list(row):
        if key.endswith(("mean", "median", "area_shift")):
            row[
                key.replace("_mean", "_mean_um")
                .replace("_median", "_median_um")
                .replace("area_shift", "area_shift_um")
            ] = row.pop(key) * um
    false = false_white_pieces(ours, truth)
    labels, count = ndimage.label(false, structure=np.ones((3, 3)))
    to_background = ndimage.distance_transform_edt(tissue_o) * um
    cortex = np.isfinite(depth)
    row |= {
        "false_white_pieces": int(count),
        "false_white_mm2": float(false.sum() * (um / 1000) ** 2),
        "false_white_median_to_background_um": (
            float(np.median(to_background[false])) if count else None
        ),
        "false_white_median_depth": (
            float(np.median(depth[false & cortex])) if (false & cortex).any() else None
        ),
        "missed_white_mm2": float((white_t & ~white_o).sum() * (um / 1000) ** 2),
        "gray_components": [
            int(ndimage.label(truth == 2, structure=np.ones((3, 3)))[1]),
            int(ndimage.label(ours == 2, structure=np.ones((3, 3)))[1]),
        ],
        "holes": [int(ndimage.label(~tissue_t)[1] - 1), int(ndimage.label(~tissue_o)[1] - 1)],
    }
    from cortexgraph.scans.segment import dice_per_class

    row |= {f"dice_{k}": v for k, v in dice_per_class(ours, truth).items()}
    return row


def summarize(rows: dict[int, dict]) -> dict:
    keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, float)]
    keys += [k for r in rows.values() for k in r if k.startswith("gw_") and k not in keys]
    keys = list(dict.fromkeys(keys))
    out = {}
    for key in keys:
        values = [r[key] for r in rows.values() if r.get(key) is not None]
        values = [v for v in values if np.isfinite(v)]
        if values:
            out[key] = {"mean": float(np.mean(values)), "median": float(np.median(values))}
    out["false_white_pieces"] = int(sum(r["false_white_pieces"] for r in rows.values()))
    out["false_white_mm2"] = float(sum(r["false_white_mm2"] for r in rows.values()))
    out["sections_with_false_white"] = [n for n, r in rows.items() if r["false_white_pieces"]]
    return out


# -- the runs ------------------------------------------------------------------------------------------


def parse_variant(text: str) -> tuple[str, dict]:
    from cortexgraph.scans.segment import SegmentParameters

    name, _, assignments = text.partition(":")
    types = {f.name: f.type for f in fields(SegmentParameters)}
    values: dict = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown SegmentParameters field {key!r}")
        default = getattr(SegmentParameters(), key)
        if isinstance(default, bool):
            values[key] = value.lower() in ("1", "true", "yes")
        else:
            values[key] = type(default)(value)
    return name, values


def ingested(out: Path, brain: str, seed: int, slab_mm: float) -> tuple[Path, Path]:
    """The phantom (made once) and the ingested scans cohort (``OUT/scans``, made once)."""
    phantom = out / "phantom"
    if not (phantom / "ground_truth" / brain / "inputs").is_dir():
        e2e.make_published_phantom(phantom, brain, seed, slab_mm)
    scans = out / "scans"
    if not (scans / brain / "brain.toml").is_file():
        e2e.ingest_scans(phantom, scans, brain)
    return phantom, scans


def read_masks(brain_folder: Path) -> dict[int, np.ndarray]:
    from cortexgraph.data.raster import Raster

    out = {}
    for path in sorted((brain_folder / "masks").glob("s*.h5")):
        with Raster(path) as raster:
            out[int(path.stem[1:])] = raster.read_level(0)
    return out


def write_masks(brain_folder: Path, masks: dict[int, np.ndarray]) -> None:
    from cortexgraph.data.raster import write_raster
    from cortexgraph.scans.segment import SOURCE

    for n, mask in masks.items():
        write_raster(
            brain_folder / "masks" / f"s{n:04d}.h5",
            mask.astype(np.uint8),
            SPACING_UM,
            kind="labels",
            attrs={"section": n, "source": SOURCE},
        )


def build_and_measure(phantom: Path, source: Path, folder: Path, brain: str, masks=None) -> dict:
    """build-graph of the brain folder ``source`` (its masks, or ``masks``) with the phantom's true
    transforms; the midsurface's distance to the true one and its vertices per hemisphere."""
    truth_inputs = phantom / "ground_truth" / brain / "inputs"
    brain_folder = e2e.make_cohort(folder, phantom, source, brain)
    e2e.swap(brain_folder, truth_inputs, ("transforms.tsv",))
    if masks is not None:
        write_masks(brain_folder, masks)
    seconds = e2e.run("build-graph", brain, "--root", str(folder), "--no-qc-picture")
    acc = e2e.accuracy(folder, brain)
    out: dict = {"build_graph_seconds": round(seconds, 1)}
    for hemi in ("lh", "rh"):
        if hemi in acc:
            a = acc[hemi]
            out[hemi] = {
                "mean_mm": round(a["distance_mm_mean"], 4),
                "median_mm": round(a["distance_mm_median"], 4),
                "p95_mm": round(a["distance_mm_p95"], 4),
                "valid_points": a["valid_points"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--brain", default="B01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slab-mm", type=float, default=12.0)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:field=value,... (SegmentParameters fields); 'default' always runs.",
    )
    parser.add_argument("--build-graph", action="store_true", help="Midsurface per variant.")
    parser.add_argument(
        "--split",
        metavar="VARIANT",
        help="Mixed masks of this variant's and the true masks (with --build-graph).",
    )
    args = parser.parse_args()
    from cortexgraph.data.manifest import find_brain
    from cortexgraph.scans.segment import SegmentParameters, segment_brain

    out, brain = args.out.resolve(), args.brain
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    phantom, scans = ingested(out, brain, args.seed, args.slab_mm)
    t = time.perf_counter()
    truth = true_masks_at(SPACING_UM, brain, args.seed, args.slab_mm)
    print(f"# truth at {SPACING_UM:g} um: {len(truth)} sections, {time.perf_counter() - t:.0f} s")
    variants = dict([("default", {})] + [parse_variant(v) for v in args.variant])
    result: dict = {
        "brain": brain,
        "seed": args.seed,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "defaults": asdict(SegmentParameters()),
        "variants": {},
    }
    split_masks: dict[int, np.ndarray] = {}
    for name, values in variants.items():
        folder = out / "variants" / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(scans, folder, ignore=shutil.ignore_patterns("derivatives", "scans"))
        params = replace(SegmentParameters(), **values)
        t = time.perf_counter()
        segment_brain(find_brain(brain, folder), params, qc=False, overwrite=True)
        seconds = time.perf_counter() - t
        masks = read_masks(folder / brain)
        if name == args.split:
            split_masks = masks
        rows = {
            n: measure_section(masks[n], truth[n]["mask"], truth[n]["depth"])
            for n in sorted(masks)
            if n in truth
        }
        entry: dict = {
            "parameters": values,
            "segment_seconds": round(seconds, 1),
            "summary": summarize(rows),
            "sections": rows,
        }
        if args.build_graph:
            entry["midsurface"] = build_and_measure(
                phantom, folder / brain, out / "paths" / name, brain
            )
        result["variants"][name] = entry
        print_variant(name, entry)
    if args.build_graph and args.split:
        own = out / "variants" / args.split / brain
        mixed = {
            "truth_64um": {n: truth[n]["mask"] for n in split_masks},
            "true_tissue_our_split": {
                n: np.where(truth[n]["mask"] > 0, np.where(m == 1, 1, 2), 0)
                for n, m in split_masks.items()
            },
            "our_tissue_true_split": {
                n: np.where(m > 0, np.where(truth[n]["mask"] == 1, 1, 2), 0)
                for n, m in split_masks.items()
            },
            "ours_false_white_gray": {
                n: np.where(false_white_pieces(m, truth[n]["mask"]), 2, m)
                for n, m in split_masks.items()
            },
        }
        result["split"] = {}
        for name, masks in mixed.items():
            result["split"][name] = build_and_measure(
                phantom, own, out / "paths" / f"split_{name}", brain, masks
            )
            print(name, json.dumps(result["split"][name]))
    result["seconds_total"] = round(time.perf_counter() - start, 1)
    result["commands"] = e2e.LOG
    (out / "bench_segment_borders.json").write_text(json.dumps(result, indent=1, default=float))


def print_variant(name: str, entry: dict) -> None:
    s = entry["summary"]

    def f(key: str) -> str:
        if key not in s:
            return "-"
        a, b = s[key]["mean"], s[key]["median"]
        return f"{a:.3f} / {b:.3f}" if abs(a) < 10 else f"{a:.1f} / {b:.1f}"

    print(f"## {name} {entry['parameters']} (segment {entry['segment_seconds']} s)")
    print(
        f"  pial: signed mean {f('pial_mean_um')} um (over sections: mean / median), median "
        f"{f('pial_median_um')}, reverse {f('pial_reverse_mean_um')}, area shift "
        f"{f('pial_area_shift_um')}, length ratio {f('pial_length_ratio')}"
    )
    print(
        f"  gray/white: signed mean {f('gw_mean_um')} um, median {f('gw_median_um')}, reverse "
        f"{f('gw_reverse_mean_um')}, area shift {f('gw_area_shift_um')}, length ratio "
        f"{f('gw_length_ratio')}, far {f('gw_far')}"
    )
    print(
        f"  false white pieces {s['false_white_pieces']} ({s['false_white_mm2']:.1f} mm2) in "
        f"{len(s['sections_with_false_white'])} sections; missed white {f('missed_white_mm2')} "
        f"mm2/section; Dice gray {f('dice_gray')}, white {f('dice_white')}"
    )
    if "midsurface" in entry:
        print("  midsurface (true transforms):", json.dumps(entry["midsurface"]))


if __name__ == "__main__":
    main()
