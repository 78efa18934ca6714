"""Benchmark of the 3D area map stage (cortexgraph.maps3d).

Part 1: 11^3 binary median as a box-count majority vote vs scipy.ndimage.median_filter
        (equal outputs are checked), on random binary volumes.
Part 2: end to end map3d on an n^3 volume at 20 um (n = 1260: 2.0 GB of bool), through the library
        path of `cortexgraph map3d` (cortexgraph.maps3d.build.build_area_map + area_surfaces),
        forced out of core: synthetic sections of a spherical-shell "area" cap (known volume and
        pial area) with salt-and-pepper noise and small false-positive blobs, ~20 % of sections
        excluded by QC; assemble -> interpolate -> 11^3 median (blockwise) -> 27 mm^3 components
        (blockwise) -> full-resolution surface (blockwise) + 100 um preview surface -> depth
        look-up -> area report. Volumes live in np.memmap files. Memory is sampled every 0.1 s
        from /proc/self/status: VmRSS (includes the resident pages of the memmaps) and RssAnon
        (the process's own working memory). Median over --runs runs (seeds 0, 1, ...).

    .venv/bin/python benchmarks/bench_maps3d.py --part median --n-median 128 --repeats 5
    .venv/bin/python benchmarks/bench_maps3d.py --part e2e --n 1260 --runs 3 --chunk 128

Part "phantom": the `cortexgraph stats` reports of a phantom cohort against its ground truth;
part "levels": area-map voxels with the 'area' vs the 'zero' cut of the interpolated gap planes;
part "walls": pial area of written maps for several depth thresholds (side-wall contribution);
part "shell": pial area of a spherical-shell sector with the equivolumetric and the Laplace depth
against the closed forms.

    .venv/bin/python benchmarks/bench_maps3d.py --part phantom --root /tmp/demo --brains B01,B07
    .venv/bin/python benchmarks/bench_maps3d.py --part levels --root scratch/tiny \\
        --brains B01,B03,B07 --areas hOc1,Occ1,Occ2
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench_median(n: int, repeats: int, scipy_repeats: int) -> None:
    from scipy import ndimage

    from cortexgraph.maps3d.filters import binary_median_filter

    rng = np.random.default_rng(0)
    mask = rng.random((n, n, n)) < 0.5
    box_times, scipy_times = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours = binary_median_filter(mask, 11)
        box_times.append(time.perf_counter() - t)
    for _ in range(scipy_repeats):
        t = time.perf_counter()
        ref = ndimage.median_filter(mask, size=11)
        scipy_times.append(time.perf_counter() - t)
    assert np.array_equal(ours, ref), "box median differs from scipy"
    tb, ts = float(np.median(box_times)), float(np.median(scipy_times))
    print("| volume | runs (box / scipy) | box-count median s | scipy median_filter s | speed-up |")
    print("|---|---|---|---|---|")
    print(
        f"| {n}^3 bool, size 11 | {repeats} / {scipy_repeats} | {tb:.3f} | {ts:.2f} | {ts / tb:.0f}x |"
    )
    print(f"outputs identical: True; peak RSS {peak_rss_gb():.2f} GB")


# ------------------------------------------------------------------ synthetic cap of a shell

R_OUT, R_IN, CAP_DEG = 11.0, 8.5, 80.0  # mm, mm, polar angle of the cap around +z


class SyntheticSections(Mapping):
    """Lazy section masks: the cap evaluated in each section's own (rotated, shifted) pixel frame."""

    def __init__(self, n, h, matrices, centre, blobs, flip_p, seed):
        self.n, self.h, self.m, self.c = n, h, matrices, centre
        self.blobs, self.flip_p, self.seed = blobs, flip_p, seed

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))

    def __getitem__(self, s):
        rows, cols = np.indices((self.n, self.n), dtype=np.float32)
        m = self.m[s]
        x = m[0, 0] * cols + m[0, 1] * rows + m[0, 2] - self.c[0]
        z = m[1, 0] * cols + m[1, 1] * rows + m[1, 2] - self.c[2]
        y = s * self.h - self.c[1]
        r = np.sqrt(x * x + y * y + z * z)
        cos_polar = np.divide(z, r, out=np.zeros_like(r), where=r > 0)
        sec = (r < R_OUT) & (r >= R_IN) & (cos_polar > math.cos(math.radians(CAP_DEG)))
        for bx, by, bz, br in self.blobs:
            dy = y - by
            if abs(dy) < br:
                sec |= (x - bx) ** 2 + (z - bz) ** 2 < br * br - dy * dy
        rng = np.random.default_rng(self.seed + s)
        sec ^= rng.random(sec.shape, dtype=np.float32) < self.flip_p
        return sec


class MemorySampler:
    """Samples the process's resident memory (/proc/self/status) every ``interval_s`` seconds.

    ``VmRSS`` includes the pages of memory-mapped files the kernel keeps resident (the volume
    memmaps); ``RssAnon`` is the process's own working memory (numpy buffers, dask chunks).
    The peaks are kept per named step (``mark(step)`` starts a step).
    """

    def __init__(self, interval_s: float = 0.1):
        import threading

        self.interval_s = interval_s
        self.step = "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read_gb() -> dict[str, float]:
        out = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024**2
        return out

    def _run(self):
        while not self._stop.is_set():
            self.record()
            self._stop.wait(self.interval_s)

    def record(self):
        now = self.read_gb()
        peak = self.peaks.setdefault(self.step, dict.fromkeys(now, 0.0))
        for key, value in now.items():
            peak[key] = max(peak[key], value)

    def mark(self, step: str):
        self.record()
        self.step = step
        self.record()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.record()


def bench_e2e(n: int, chunk: int, workers: int, workdir: Path, seed: int) -> dict:
    """One end-to-end run through the library path of ``cortexgraph map3d`` (forced out of core)."""
    from cortexgraph.maps3d.build import area_surfaces, build_area_map
    from cortexgraph.maps3d.morphometry import area_report, sample_at_vertices

    h = 0.02 * 1260 / n  # keep the physical size (25.2 mm cube) whatever n is
    shape = (n, n, n)
    affine = np.diag([h, h, h, 1.0])
    centre = np.array([n * h / 2] * 3)
    rng = np.random.default_rng(seed)
    # small rigid in-plane misalignment of each section: pixel (col, row) -> (x_mm, z_mm)
    matrices = {}
    for s in range(n):
        a = np.deg2rad(rng.normal(0, 0.2))
        ox, oz = rng.normal(0, 2 * h, 2)
        matrices[s] = np.array(
            [[h * np.cos(a), -h * np.sin(a), ox], [h * np.sin(a), h * np.cos(a), oz], [0, 0, 1]]
        )
    # 60 false-positive blobs of radius 0.3 mm (0.11 mm^3) outside the shell
    blobs = []
    while len(blobs) < 60:
        p = rng.uniform(-11.5, 11.5, 3)
        if not (R_IN - 1.0 < np.linalg.norm(p) < R_OUT + 1.0):
            blobs.append((p[0], p[1], p[2], 0.3))
    sections = SyntheticSections(n, h, matrices, centre, blobs, flip_p=0.05, seed=seed)
    # QC: exclude ~20 % of sections in runs of 1-3
    excluded = set()
    while len(excluded) < 0.2 * n:
        s0 = int(rng.integers(1, n - 4))
        excluded.update(range(s0, s0 + int(rng.integers(1, 4))))

    times: dict[str, float] = {}
    with MemorySampler() as memory:
        t_all = time.perf_counter()
        mask, info = build_area_map(
            sections,
            matrices,
            shape,
            affine,
            section_y_mm=lambda s: s * h,
            excluded=excluded,
            median_size=11,
            min_component_mm3=27.0,
            memory_budget_gb=0.0,  # force the out-of-core path (np.memmap + dask blocks)
            chunk_vox=chunk,
            num_workers=workers,
            workdir=workdir,
            progress=memory.mark,
        )
        names = {
            "assemble": "assemble (incl. synthesising the sections)",
            "interpolate": "interpolate (linear Laplace, in place)",
            "median": f"median 11^3 (blockwise, {chunk}^3 blocks, {workers} threads)",
            "components": f"components >= 27 mm^3 (blockwise, {chunk}^3 blocks, 26-conn.)",
        }
        for key, label in names.items():
            times[label] = info["seconds"][key]
        memory_steps = {label: key for key, label in names.items()}

        memory.mark("surfaces")
        t = time.perf_counter()
        (verts, faces), (pverts, pfaces) = area_surfaces(
            mask, affine, preview_factor=max(1, round(0.1 / h)), out_of_core=True, chunk_vox=256
        )
        times["surfaces: full (blockwise MC, sigma 1) + 100 um preview"] = time.perf_counter() - t
        memory_steps["surfaces: full (blockwise MC, sigma 1) + 100 um preview"] = "surfaces"

        memory.mark("report")
        t = time.perf_counter()
        # depth volume at the preview grid (0 outside, 1 white matter), trilinear look-up
        factor = max(1, round(0.1 / h))
        scale = np.diag([float(factor)] * 3 + [1.0])
        scale[:3, 3] = (factor - 1) / 2.0  # preview voxel i -> centre of voxels f i .. f i + f - 1
        paff = affine @ scale
        m = math.ceil(n / factor)
        axis = (np.arange(m, dtype=np.float32) * (factor * h) + paff[0, 3]).astype(np.float32)
        depth_vol = np.empty((m, m, m), dtype=np.float32)
        yz = (axis[:, None] - centre[1]) ** 2 + (axis[None, :] - centre[2]) ** 2
        for i in range(m):  # slab by slab: no full-size temporaries
            r = np.sqrt((axis[i] - centre[0]) ** 2 + yz)
            depth_vol[i] = np.clip((R_OUT - r) / (R_OUT - R_IN), 0.0, 1.0)
        depth = sample_at_vertices(depth_vol, paff, verts, order=1)
        row = area_report("cap", mask, affine, verts, faces, depth)
        times["depth look-up + area report"] = time.perf_counter() - t
        memory_steps["depth look-up + area report"] = "report"
        total = time.perf_counter() - t_all

    cosa = math.cos(math.radians(CAP_DEG))
    exact_vol = 2 * math.pi / 3 * (1 - cosa) * (R_OUT**3 - R_IN**3)
    exact_pial = 2 * math.pi * R_OUT**2 * (1 - cosa)
    print(
        f"\nrun {seed}: {n}^3 bool ({n**3 / 1e9:.2f} GB), voxel {h * 1000:.0f} um, "
        f"{len(excluded)} of {n} sections excluded, {workers} threads"
    )
    print("| step | seconds | peak RSS GB | peak anonymous RSS GB |")
    print("|---|---|---|---|")
    for label, seconds in times.items():
        peak = memory.peaks.get(memory_steps[label], {})
        print(
            f"| {label} | {seconds:.1f} | {peak.get('VmRSS', math.nan):.2f} "
            f"| {peak.get('RssAnon', math.nan):.2f} |"
        )
    overall_rss = max(p["VmRSS"] for p in memory.peaks.values())
    overall_anon = max(p["RssAnon"] for p in memory.peaks.values())
    print(f"| **total** | **{total:.1f}** | {overall_rss:.2f} | {overall_anon:.2f} |")
    print(
        f"volume {row['volume_mm3']:.1f} mm^3 (analytic cap {exact_vol:.1f}, "
        f"{row['volume_mm3'] / exact_vol - 1:+.2%}); pial area {row['surface_mm2']:.1f} mm^2 "
        f"(cap's outer sphere {exact_pial:.1f}, {row['surface_mm2'] / exact_pial - 1:+.2%}); "
        f"mesh {len(faces)} triangles, preview {len(pfaces)}",
        flush=True,
    )
    del mask
    return {"total": total, "steps": times, "rss": overall_rss, "anon": overall_anon}


def read_truth(root: Path, brain: str) -> dict[str, dict[str, float]]:
    """Phantom truth per area: volume and pial area, lh + rh and per hemisphere."""
    import csv

    out: dict[str, dict[str, float]] = {}
    path = root / "ground_truth" / brain / "area_measures.tsv"
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            t = out.setdefault(row["name"], {"volume": 0.0, "pial": 0.0})
            t["volume"] += float(row["volume_mm3"])
            t["pial"] += float(row["pial_area_mm2"])
            t[f"volume_{row['hemisphere']}"] = float(row["volume_mm3"])
            t[f"pial_{row['hemisphere']}"] = float(row["pial_area_mm2"])
    return out


def compare_phantom(root: Path, brains: list[str], sources: list[str]) -> None:
    """Tables of `cortexgraph stats` reports (maps3d/<source>/stats.tsv) against the phantom's
    truth: volume and pial area of each area, then the volume per hemisphere."""
    import csv

    reports = {}
    for brain in brains:
        for source in sources:
            path = root / "derivatives/cortexgraph" / brain / "maps3d" / source / "stats.tsv"
            if path.is_file():
                with open(path, encoding="utf-8") as handle:
                    reports[(brain, source)] = list(csv.DictReader(handle, delimiter="\t"))
            else:
                print(f"(no report: {path})")
    print("| brain | area | labels | volume mm^3 | true | diff | pial mm^2 | true | diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (brain, source), rows in reports.items():
        truth = read_truth(root, brain)
        for r in rows:
            if r["hemisphere"] != "both":
                continue
            t = truth[r["area"]]
            vol, pial = float(r["volume_mm3"]), float(r["surface_mm2"])
            print(
                f"| {brain} | {r['area']} | {source} | {vol:.0f} | {t['volume']:.0f} "
                f"| {vol / t['volume'] - 1:+.1%} | {pial:.0f} | {t['pial']:.0f} "
                f"| {pial / t['pial'] - 1:+.1%} |"
            )
    print()
    print("| brain | area | labels | midline x mm | lh mm^3 | true lh | diff | rh mm^3 | true rh | diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (brain, source), rows in reports.items():
        truth = read_truth(root, brain)
        by_area: dict[str, dict[str, dict]] = {}
        for r in rows:
            by_area.setdefault(r["area"], {})[r["hemisphere"]] = r
        for area, hemis in by_area.items():
            t = truth[area]
            cells = []
            for hemi in ("lh", "rh"):
                vol = float(hemis[hemi]["volume_mm3"])
                true = t.get(f"volume_{hemi}", 0.0)
                diff = f"{vol / true - 1:+.1%}" if true else "-"
                cells.append(f"{vol:.0f} | {true:.0f} | {diff}")
            print(
                f"| {brain} | {area} | {source} | {float(hemis['both']['midline_x_mm']):.1f} "
                f"| {cells[0]} | {cells[1]} |"
            )


def shell_sector(voxels_mm: list[float]) -> None:
    """Pial area (depth < 0.25, max over a triangle's vertices) of a spherical-shell sector with the
    equivolumetric and the Laplace depth, against the closed forms (tests/maps3d/test_maps3d_stats)."""
    from cortexgraph.maps3d.morphometry import sample_at_vertices
    from cortexgraph.maps3d.stats import hemisphere_measures
    from cortexgraph.maps3d.surface import mask_surface
    from cortexgraph.meshes.equivolume import equivolumetric_depth
    from cortexgraph.meshes.laplace import solve_laplace_depth

    r1, r2, theta = 12.0, 20.0, math.radians(50.0)
    cap = 2 * math.pi * r2**2 * (1 - math.cos(theta))
    r_cut = {
        "equivolumetric": (r2**3 - 0.25 * (r2**3 - r1**3)) ** (1 / 3),
        "laplace": 1 / (1 / r2 + 0.25 * (1 / r1 - 1 / r2)),
    }
    print(f"sector of a shell, white radius {r1:g} mm, pial {r2:g} mm, within 50 deg of z; "
          f"outer cap {cap:.1f} mm^2")  # fmt: skip
    print("| voxel mm | depth | closed form mm^2 | measured mm^2 | diff | pial cap + wall to r mm |")
    print("|---|---|---|---|---|---|")
    for h in voxels_mm:
        n = int(math.ceil(2 * r2 / h)) + 8
        c = (n - 1) / 2.0
        affine = np.diag([h, h, h, 1.0])
        affine[:3, 3] = -c * h
        g = (np.mgrid[:n, :n, :n] - c) * h
        r = np.sqrt((g**2).sum(0))
        tissue = np.where(r < r1, 1, np.where(r < r2, 2, 0)).astype(np.uint8)
        laplace, _ = solve_laplace_depth(tissue, h, tol=1e-6, max_iter=300)
        models = {"equivolumetric": equivolumetric_depth(tissue, laplace, h)[0], "laplace": laplace}
        sector = (tissue == 2) & (g[2] > r * math.cos(theta))
        verts, faces = mask_surface(sector, affine)
        for name, depth in models.items():
            look = np.where(tissue == 1, 1.0, np.where(tissue == 2, depth, 0.0)).astype(np.float32)
            m = hemisphere_measures(sector, affine, verts, faces, sample_at_vertices(look, affine, verts))
            got = m["both"]["surface_mm2"]
            exact = cap + math.pi * math.sin(theta) * (r2**2 - r_cut[name] ** 2)
            print(f"| {h:g} | {name} | {exact:.1f} | {got:.1f} | {got / exact - 1:+.1%} "
                  f"| {r_cut[name]:.2f} |")  # fmt: skip


def compare_levels(root: Path, brains: list[str], areas: list[str]) -> None:
    """Voxels of area maps (truth labels) with the 'area' and the 'zero' cut of the gap planes."""
    from cortexgraph.data.manifest import find_brain
    from cortexgraph.maps3d.brainmap import map_area

    print("| brain | area | voxels, level 'area' | voxels, level 'zero' | zero vs area |")
    print("|---|---|---|---|---|")
    for brain_id in brains:
        brain = find_brain(brain_id, root)
        for area in areas:
            n = {
                level: int(np.count_nonzero(map_area(brain, area, "truth", level=level).mask))
                for level in ("area", "zero")
            }
            print(
                f"| {brain_id} | {area} | {n['area']} | {n['zero']} "
                f"| {n['zero'] / n['area'] - 1:+.1%} |"
            )


def pial_thresholds(
    root: Path, brain_id: str, area: str, source: str, depth_model: str = "equivolumetric"
) -> None:
    """Pial area of a written map (``cortexgraph map3d``) for several depth thresholds, and the
    mesh area per depth bin: how much the area's side walls add to the method's pial area."""
    import nibabel as nib

    from cortexgraph.data.manifest import find_brain
    from cortexgraph.data.names import slug
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.maps3d.brainmap import read_area_map
    from cortexgraph.maps3d.morphometry import sample_at_vertices, triangle_areas_mm2
    from cortexgraph.maps3d.stats import tissue_depth_volume
    from cortexgraph.meshes.io import read_gifti_surface

    brain = find_brain(brain_id, root)
    out = brain.derivatives / "maps3d" / source
    stem = slug(area)
    _, affine = read_area_map(out / f"{stem}.nii.gz")
    verts, faces = read_gifti_surface(out / f"{stem}.gii")
    exclusion = None
    if brain.exclusion_mask:
        image = nib.load(str(brain.path(brain.exclusion_mask)))
        exclusion = (np.asarray(image.dataobj) > 0, image.affine)
    with SectionStack(brain) as stack:
        depth_vol, depth_aff, _ = tissue_depth_volume(
            stack, round(float(affine[0, 0]), 6), verts.min(0), verts.max(0), exclusion=exclusion,
            depth_model=depth_model,
        )
    depth = sample_at_vertices(depth_vol, depth_aff, verts)[faces].max(axis=1)
    areas = triangle_areas_mm2(verts, faces)
    truth = read_truth(root, brain_id)[area]["pial"]
    print(f"{brain_id} {area} ({source}, {depth_model} depth): true pial area {truth:.0f} mm^2")
    print("| triangle depth below | area mm^2 | vs true pial |")
    print("|---|---|---|")
    for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        a = float(areas[depth < t].sum())
        print(f"| {t:.2f} | {a:.0f} | {a / truth - 1:+.1%} |")
    ok = np.isfinite(depth)
    hist, _ = np.histogram(depth[ok], bins=10, range=(0, 1), weights=areas[ok])
    print("mesh area per depth bin of 0.1 (mm^2): " + ", ".join(f"{v:.0f}" for v in hist))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parts = ["median", "e2e", "all", "phantom", "levels", "walls", "shell"]
    ap.add_argument("--part", choices=parts, default="all")
    ap.add_argument("--root", type=Path, help="phantom cohort (parts phantom, levels)")
    ap.add_argument("--brains", default="B01", help="comma-separated (parts phantom, levels)")
    ap.add_argument("--sources", default="truth,annotation", help="label sources (part phantom)")
    ap.add_argument("--areas", default="hOc1,Occ1,Occ2", help="areas (parts levels, walls)")
    ap.add_argument("--depth-model", default="equivolumetric", help="part walls")
    ap.add_argument("--voxels", default="1.0,0.5,0.35,0.25", help="part shell (mm)")
    ap.add_argument("--n-median", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scipy-repeats", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="end-to-end runs (median reported)")
    ap.add_argument("--n", type=int, default=1260)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.part == "phantom":
        compare_phantom(args.root, args.brains.split(","), args.sources.split(","))
    if args.part == "levels":
        compare_levels(args.root, args.brains.split(","), args.areas.split(","))
    if args.part == "walls":
        for brain in args.brains.split(","):
            for area in args.areas.split(","):
                pial_thresholds(
                    args.root, brain, area, args.sources.split(",")[0], args.depth_model
                )
    if args.part == "shell":
        shell_sector([float(v) for v in args.voxels.split(",")])
    if args.part in ("median", "all"):
        bench_median(args.n_median, args.repeats, args.scipy_repeats)
    if args.part in ("e2e", "all"):
        runs = []
        for i in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix="bench_maps3d_", dir=args.workdir))
            try:
                runs.append(bench_e2e(args.n, args.chunk, args.workers, work, seed=i))
            finally:
                shutil.rmtree(work, ignore_errors=True)
        totals = [r["total"] for r in runs]
        print(f"\nend to end over {len(runs)} runs (seeds 0..{len(runs) - 1}):")
        print("| step | median s | min s | max s |")
        print("|---|---|---|---|")
        for label in runs[0]["steps"]:
            v = [r["steps"][label] for r in runs]
            print(f"| {label} | {np.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
        print(
            f"| **total** | **{np.median(totals):.1f}** | {min(totals):.1f} | {max(totals):.1f} |"
        )
        print(
            f"peak RSS (max over runs) {max(r['rss'] for r in runs):.2f} GB, of which anonymous "
            f"{max(r['anon'] for r in runs):.2f} GB"
        )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
