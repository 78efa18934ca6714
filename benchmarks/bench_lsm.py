"""Benchmark of local segmentation models: training iterations/s and predicted sections/min.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_lsm.py --cohort COHORT --brain B01 --area hOc1 \\
        --archs hr lr ms --iterations 20 --sections 6 --repeats 3 \\
        [--full-iterations 1 --full-archs ms] [--device cpu]

For each architecture, in a fresh subprocess per run (so ``ru_maxrss`` is that run's peak memory):

* ``train``: the model of the area's first chain interval (two annotated sections), with the preset
  that fits the cohort's images (``make_config``, e.g. ``phantom`` at 100 um), patches read lazily
  from the section rasters; reported: iterations/s (training loop only: sampling + forward + backward
  + step), seconds to load the two sections, peak RSS.
* ``predict``: a freshly initialised model (the cost does not depend on the weights) predicts the
  first ``--sections`` sections of the area's chain within their prediction ROIs (eq. 5.65), 64 px
  output tiles, writing the label images to a temporary folder; reported: sections/min, mean ROI
  size, peak RSS.
* ``--full-iterations N`` adds the published full configuration for ``--full-archs`` (2025 px at 2 um,
  LR 628 / 756 px at 16 um, batch 64 in the publications) on random input at batch 2: seconds per
  iteration, to project the published 3000 iterations on this machine.

The median over ``--repeats`` runs is printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import numpy as np, torch
torch.set_num_threads(max(1, args["threads"]))
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.stack import SectionStack
from cortexgraph.lsm.config import make_config
from cortexgraph.lsm.plan import plan_for_area
from cortexgraph.lsm.data import resolve_area, load_section_data
from cortexgraph.lsm.predict import interval_roi, predict_section
from cortexgraph.lsm.networks import build_lsm, lsm_config
from cortexgraph.lsm.train import patch_batch_sampler, train_lsm, class_weights_from_counts, roi_class_counts

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

out = {}
device = args["device"]
if args["mode"] == "full":
    cfg = lsm_config("full", args["arch"], batch_size=2)
    net = build_lsm(cfg).to(device)
    sizes = cfg.input_px()
    n_out = net.output_size(sizes)
    if cfg.arch == "ms":
        x = (torch.rand(2, 1, sizes[0], sizes[0]), torch.rand(2, 1, sizes[1], sizes[1]))
    else:
        x = torch.rand(2, 1, sizes, sizes)
    y = torch.randint(0, 4, (2, n_out, n_out))
    batch = lambda i: (x, y)
    train_lsm(batch, net, 1, device=device)  # warm-up
    hist = train_lsm(batch, net, args["iterations"], device=device)
    out = {"seconds_per_iteration": hist["seconds"] / args["iterations"], "input_px": sizes,
           "output_px": n_out, "peak_mb": peak_mb()}
    print(json.dumps(out)); sys.exit()

brain = find_brain(args["brain"], args["cohort"])
area = resolve_area(brain, args["area"])
cfg = make_config(args["arch"], brain.image_spacing_um, iterations=args["iterations"])
with SectionStack(brain) as stack:
    plan = plan_for_area(stack, area.id)
    s, t = plan.intervals[0]
    start = time.perf_counter()
    data = [load_section_data(stack, sec, cfg.output_spacing_um, area_id=area.id) for sec in (s, t)]
    load_s = time.perf_counter() - start
    torch.manual_seed(0)
    net = build_lsm(cfg).to(device)
    if args["mode"] == "train":
        n_out = net.output_size(cfg.input_px())
        sampler = patch_batch_sampler([d.image for d in data], [d.classes for d in data],
            [d.roi for d in data], [d.angle_rad for d in data], cfg, n_out,
            np.random.default_rng(0), label_spacing_um=cfg.output_spacing_um)
        weights = class_weights_from_counts(roi_class_counts([d.classes for d in data], [d.roi for d in data]))
        train_lsm(sampler, net, 2, class_weights=weights, device=device)  # warm-up
        hist = train_lsm(sampler, net, args["iterations"], base_lr=cfg.base_lr, class_weights=weights,
                         device=device)
        out = {"iterations_per_s": args["iterations"] / hist["seconds"], "load_s": load_s,
               "batch": cfg.batch_size, "input_px": cfg.input_px(), "output_px": n_out,
               "interval": [s, t], "peak_mb": peak_mb()}
    else:
        from cortexgraph.data.raster import write_raster
        net.eval()
        sections = list(plan.sections[: args["sections"]])
        rois = []
        start = time.perf_counter()
        for u in sections:
            target = load_section_data(stack, u, cfg.output_spacing_um)
            index = plan.interval_of(u)
            a, b = plan.intervals[index]
            da = data[0] if a == s else load_section_data(stack, a, cfg.output_spacing_um, area_id=area.id)
            db = data[1] if b == t else load_section_data(stack, b, cfg.output_spacing_um, area_id=area.id)
            roi = interval_roi(stack, da, db, u, target.shape, cfg)
            classes = predict_section(net, target.image, roi, target.angle_rad, tile_px=64)
            write_raster(f"{args['tmp']}/s{u:04d}.h5", classes, cfg.output_spacing_um, kind="labels")
            rois.append(int(roi.sum()))
        seconds = time.perf_counter() - start
        out = {"sections_per_min": 60 * len(sections) / seconds, "sections": len(sections),
               "roi_px_mean": float(np.mean(rois)), "roi_mm2_mean": float(np.mean(rois)) * (cfg.output_spacing_um / 1000) ** 2,
               "peak_mb": peak_mb()}
print(json.dumps(out))
"""


def run_child(args: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = dict(args, tmp=tmp)
        result = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--brain", default="B01")
    parser.add_argument("--area", default="hOc1")
    parser.add_argument("--archs", nargs="*", default=["hr", "lr", "ms"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--sections", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-iterations", type=int, default=0)
    parser.add_argument("--full-archs", nargs="*", default=["ms"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    base = {
        "cohort": opts.cohort,
        "brain": opts.brain,
        "area": opts.area,
        "iterations": opts.iterations,
        "sections": opts.sections,
        "device": opts.device,
        "threads": opts.threads,
    }
    print(
        "| model | patches (px) | batch | train it/s | load s | train peak MB | sections/min "
        "| ROI mm² | predict peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for arch in opts.archs:
        train = [run_child(dict(base, arch=arch, mode="train")) for _ in range(opts.repeats)]
        pred = [run_child(dict(base, arch=arch, mode="predict")) for _ in range(opts.repeats)]
        print(
            f"| {arch.upper()} | {train[0]['input_px']} -> {train[0]['output_px']} "
            f"| {train[0]['batch']} | {median_of(train, 'iterations_per_s'):.2f} "
            f"| {median_of(train, 'load_s'):.2f} | {max(r['peak_mb'] for r in train):.0f} "
            f"| {median_of(pred, 'sections_per_min'):.1f} | {pred[0]['roi_mm2_mean']:.0f} "
            f"| {max(r['peak_mb'] for r in pred):.0f} |",
            flush=True,
        )
    if opts.full_iterations:
        print("\nFull configuration (random input, batch 2):\n")
        print("| model | patches (px) | output px | s / iteration (batch 2) | peak MB |")
        print("|---|---|---|---|---|")
        for arch in opts.full_archs:
            runs = [
                run_child(dict(base, arch=arch, mode="full", iterations=opts.full_iterations))
                for _ in range(opts.repeats)
            ]
            print(
                f"| {arch.upper()} | {runs[0]['input_px']} | {runs[0]['output_px']} "
                f"| {median_of(runs, 'seconds_per_iteration'):.2f} "
                f"| {max(r['peak_mb'] for r in runs):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
