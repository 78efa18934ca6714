"""Morphometry of area maps: cortical depth of the brain, per-hemisphere volume and pial area, report.

Schiffer et al. 2021, NeuroImage, Sect. 2.8; Schiffer, PhD thesis, Sect. 5.2.6:

* **Depth field** (:func:`tissue_depth_volume`): the tissue volume is stacked on the map's lattice
  (:func:`cortexgraph.reconstruct.volume.stack_tissue_volume`, same origin and voxel size), the
  planes between sections are filled by the same interpolation as the area maps (tissue and white
  matter separately, from the section planes only), non-cortical gray matter of the brain's
  exclusion mask becomes background, and the project's Laplace solver
  (:func:`cortexgraph.meshes.laplace.solve_laplace_depth`) gives the Laplace depth in the cortex.
  The method's cortical depth is the equivolumetric one (Bok 1929, by the procedure of Leprince et
  al. 2015): :func:`cortexgraph.meshes.equivolume.equivolumetric_depth` turns the Laplace field
  into the volume fraction along its field lines (default ``depth_model='equivolumetric'``;
  ``'laplace'`` keeps the potential). Both run 0 pial .. 1 white; as in the method the depth
  volume is 0 outside the brain and 1 in white matter. Only a box around the maps is solved (plus
  ``margin_mm``; zero flux on the box faces).
* **Volume** = voxel count x voxel volume; **pial surface area** = area of the map surface's
  triangles whose depth (maximum over the three vertices, trilinear look-up) is below 0.25.
* **Hemispheres**: a voxel or triangle (centroid) belongs to ``lh`` when its world x is below
  ``midline_x_mm``, else ``rh``; ``both`` is the whole map. ``cortexgraph stats`` takes the
  interhemispheric plane of the brain's build-graph record (the plane its midsurfaces were split
  at) unless ``--midline-x-mm`` is given; a brain of one hemisphere (brain.toml ``hemispheres``,
  or build-graph found one) is not split. A plane cannot follow a tilted or curved fissure, so the
  per-hemisphere split of medial areas is approximate; ``both`` is not affected. When an area of a
  two-hemisphere brain lands entirely on one side, ``stats`` warns and writes why into the
  ``note`` column and the record (it does not refuse: a label source may cover one hemisphere on
  purpose, as the one-hemisphere annotations of the Allen brain in the LSM paper).
* **Shrinkage**: volume x f, area x f^(2/3), f = the brain's ``shrinkage_factor`` (brain.toml).
* **z-scores** against a reference population that matches the cohort
  (``cortexgraph.maps3d.stats_stage.reference_for``): for a cohort of human brains the shipped table
  (:func:`cortexgraph.maps3d.morphometry.load_reference_table`: the published hOc1/hOc2/hOc5 values of
  five male brains, thesis Tables 5.2/5.3); for a phantom cohort the phantom's own population (the exact, shrinkage-
  corrected measures of its other brains, :func:`~cortexgraph.maps3d.morphometry.
  population_reference_table`), never the human values; or a user table, or none. The
  ``reference`` column names it. Rows without a ``hemisphere`` column are compared with the
  ``both`` row; a user table may add ``hemisphere`` (lh, rh, both).

Outputs (:func:`write_report`, :func:`area_picture`) in ``<brain derivatives>/maps3d/``:
``<area>_<source>_stats.tsv`` (one row per hemisphere), ``stats_<source>.tsv`` (all areas of the
source measured so far) and ``<area>_<source>.png``.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cortexgraph.data.stack import SectionStack
from cortexgraph.maps3d.interpolate import interpolate_missing_sections
from cortexgraph.maps3d.morphometry import (
    load_reference_table,
    triangle_areas_mm2,
)

__all__ = [
    "REPORT_COLUMNS",
    "tissue_depth_volume",
    "hemisphere_measures",
    "morphometry_rows",
    "write_report",
    "merge_reports",
    "area_picture",
]

HEMISPHERES = ("lh", "rh", "both")

REPORT_COLUMNS = (
    "brain",
    "source",
    "area_id",
    "area",
    "hemisphere",
    "midline_x_mm",
    "voxel_size_mm",
    "n_voxels",
    "volume_mm3",
    "volume_corrected_mm3",
    "volume_z",
    "surface_mm2",
    "surface_corrected_mm2",
    "surface_z",
    "mesh_area_mm2",
    "n_triangles",
    "n_pial_triangles",
    "n_triangles_no_depth",
    "f_volume",
    "f_area",
    "max_depth",
    "depth_model",
    "reference",
    "note",
)


def tissue_depth_volume(
    stack: SectionStack,
    voxel_size_mm: float,
    box_min_mm: Sequence[float],
    box_max_mm: Sequence[float],
    *,
    margin_mm: float = 4.0,
    exclusion: tuple[np.ndarray, np.ndarray] | None = None,
    tol: float = 1e-5,
    tissue: tuple[np.ndarray, np.ndarray] | None = None,
    depth_model: str = "equivolumetric",
    interpolation: str = "laplace",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Cortical depth volume (0 outside, (0, 1) cortex, 1 white) around a world box.

    Parameters
    ----------
    stack : the brain's sections.
    voxel_size_mm : voxel edge (mm) of the tissue lattice (use the maps' voxel size).
    box_min_mm, box_max_mm : (3,) world box to cover (e.g. the bounding box of the map surfaces).
    margin_mm : added on every side of the box before solving.
    exclusion : optional ``(mask, affine)`` of non-cortical gray matter (world mm), e.g. the
        brain's ``exclusion.nii.gz``; its gray voxels become background.
    tol : relative residual of the Laplace solver.
    tissue : optional ``(volume, affine)`` from ``stack_tissue_volume(stack, voxel_size_mm)``,
        to reuse one stacked volume for several boxes (computed when not given).
    depth_model : ``'equivolumetric'`` (the method's, default) or ``'laplace'``.
    interpolation : gap filling of the tissue planes between sections (``'laplace'``, ``'linear'``;
        :func:`cortexgraph.maps3d.interpolate.interpolate_missing_sections`).

    Returns
    -------
    depth : 3D ndarray of float32
        0 background, 1 white matter, the cortical depth in the cortex; NaN on cortex voxels
        without a pial or white neighbour anywhere in their component.
    affine : (4, 4) ndarray
        Voxel-to-world affine of ``depth`` (on the tissue lattice).
    info : dict
        Box, tissue stacking and solver information (iterations, residual, unknowns, seconds).
    """
    from cortexgraph.meshes.equivolume import DEPTH_MODELS, equivolumetric_depth
    from cortexgraph.meshes.laplace import solve_laplace_depth
    from cortexgraph.reconstruct.clean import exclude_noncortical, resample_mask_to_grid
    from cortexgraph.reconstruct.volume import stack_tissue_volume

    start = time.perf_counter()
    if depth_model not in DEPTH_MODELS:
        raise ValueError(f"depth_model must be one of {DEPTH_MODELS}, got {depth_model!r}")
    h = float(voxel_size_mm)
    if tissue is None:
        volume, affine, _ = stack_tissue_volume(stack, h)
    else:
        volume, affine = tissue
        if not np.allclose(np.abs(np.diag(affine)[:3]), h, rtol=1e-6):
            raise ValueError(f"tissue volume has voxels {np.diag(affine)[:3]}, not {h} mm")
    origin = affine[:3, 3]
    lo = np.floor((np.asarray(box_min_mm, float) - margin_mm - origin) / h).astype(int)
    hi = np.ceil((np.asarray(box_max_mm, float) + margin_mm - origin) / h).astype(int)
    nx, ny, nz = (int(n) for n in hi - lo + 1)
    shape = (nx, ny, nz)
    # the part of the stacked volume inside the box; y outside it repeats the end planes,
    # x and z outside it are background
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi + 1, volume.shape)
    sub = np.zeros(shape, dtype=np.uint8)
    if np.all(src_hi > src_lo):
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(src_lo, src_hi, lo, strict=True))
        sub[dst] = volume[tuple(slice(a, b) for a, b in zip(src_lo, src_hi, strict=True))]
    sub_affine = affine.copy()
    sub_affine[:3, 3] = origin + h * lo

    # known planes: the section planes inside the box; the rest is interpolated (and the planes
    # beyond the first/last section repeat it)
    known = np.zeros(shape[1], dtype=bool)
    for s in stack.sections:
        j = int(np.rint((stack.plane_y_mm(s) - sub_affine[1, 3]) / h))
        if 0 <= j < shape[1]:
            known[j] = True
    if known.any():
        tissue_mask = interpolate_missing_sections(
            sub > 0, known, voxel_size_mm=h, extend_planes=shape[1], method=interpolation
        )
        white = interpolate_missing_sections(
            sub == 1, known, voxel_size_mm=h, extend_planes=shape[1], method=interpolation
        )
        labels = np.where(white, 1, np.where(tissue_mask, 2, 0)).astype(np.uint8)
    else:
        labels = sub
    info: dict = {
        "box_index_lo": lo.tolist(),
        "shape": list(shape),
        "voxel_size_mm": h,
        "known_planes": int(known.sum()),
    }
    if exclusion is not None:
        excl = resample_mask_to_grid(exclusion[0], exclusion[1], shape, sub_affine)
        labels, ex_info = exclude_noncortical(labels, excl)
        info.update(ex_info)
    depth, solve_info = solve_laplace_depth(labels, h, tol=tol)
    info["depth_model"] = depth_model
    if depth_model == "equivolumetric":
        depth, eq_info = equivolumetric_depth(labels, depth, h)
        info["equivolumetric"] = eq_info
    out = np.where(labels == 1, np.float32(1.0), np.float32(0.0))
    cortex = labels == 2
    out[cortex] = depth[cortex]
    info["laplace"] = {
        k: solve_info[k] for k in ("iterations", "residual", "unknowns", "unconstrained_voxels")
    }
    info["seconds"] = time.perf_counter() - start
    return out.astype(np.float32), sub_affine, info


def _hemisphere_of_x(x_mm: np.ndarray, midline_x_mm: float) -> np.ndarray:
    return np.where(np.asarray(x_mm) < midline_x_mm, 0, 1)


def hemisphere_measures(
    mask,
    affine: np.ndarray,
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    depth_at_vertices: np.ndarray,
    *,
    midline_x_mm: float = 0.0,
    max_depth: float = 0.25,
) -> dict[str, dict[str, float]]:
    """Volume and pial surface area of an area map, per hemisphere and in total.

    Parameters
    ----------
    mask : 3D array of bool (ndarray or memmap; read in slabs along axis 0)
    affine : (4, 4) ndarray
        Voxel-to-world affine; world x must depend on voxel axis 0 only (the maps' lattice).
    vertices_mm, faces : surface of the map (world mm).
    depth_at_vertices : (n,) depth per vertex (NaN = unknown: the triangle is not pial).
    midline_x_mm : hemispheres split at world ``x = midline_x_mm`` (lh below).
    max_depth : pial triangles have depth (max over vertices) below this.

    Returns
    -------
    ``{hemisphere: {n_voxels, volume_mm3, surface_mm2, mesh_area_mm2, n_triangles,
    n_pial_triangles, n_triangles_no_depth}}`` for ``lh``, ``rh`` and ``both``.
    """
    affine = np.asarray(affine, dtype=float)
    if abs(affine[0, 1]) + abs(affine[0, 2]) > 1e-9 * abs(affine[0, 0]):
        raise ValueError("world x must depend on voxel axis 0 only")
    voxel_mm3 = abs(float(np.linalg.det(affine[:3, :3])))
    nx = mask.shape[0]
    per_plane = np.zeros(nx, dtype=np.int64)
    for i in range(0, nx, 64):
        per_plane[i : i + 64] = np.count_nonzero(
            np.asarray(mask[i : i + 64]).reshape(min(64, nx - i), -1), axis=1
        )
    plane_x = affine[0, 0] * np.arange(nx) + affine[0, 3]
    hemi_plane = _hemisphere_of_x(plane_x, midline_x_mm)

    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    depth = np.asarray(depth_at_vertices, dtype=float)
    areas = triangle_areas_mm2(vertices_mm, faces)
    if len(faces):
        tri_depth = depth[faces].max(axis=1)
        centroid_x = np.asarray(vertices_mm, dtype=float)[faces, 0].mean(axis=1)
    else:
        tri_depth = np.zeros(0)
        centroid_x = np.zeros(0)
    pial = tri_depth < max_depth  # NaN compares False
    no_depth = np.isnan(tri_depth)
    hemi_tri = _hemisphere_of_x(centroid_x, midline_x_mm)
    out = {}
    for h, name in enumerate(HEMISPHERES):
        planes = np.ones(nx, bool) if name == "both" else hemi_plane == h
        tris = np.ones(len(faces), bool) if name == "both" else hemi_tri == h
        n_vox = int(per_plane[planes].sum())
        out[name] = {
            "n_voxels": n_vox,
            "volume_mm3": n_vox * voxel_mm3,
            "surface_mm2": float(areas[tris & pial].sum()),
            "mesh_area_mm2": float(areas[tris].sum()),
            "n_triangles": int(tris.sum()),
            "n_pial_triangles": int((tris & pial).sum()),
            "n_triangles_no_depth": int((tris & no_depth).sum()),
        }
    return out


def _reference(table: Mapping, area: str, quantity: str, hemisphere: str):
    if hemisphere == "both":
        return table.get((area, quantity))
    return table.get((area, quantity, hemisphere))


def morphometry_rows(
    measures: Mapping[str, Mapping[str, float]],
    *,
    brain: str,
    source: str,
    area_id: int,
    area: str,
    voxel_size_mm: float,
    f_volume: float,
    reference_table: Mapping | str | Path | None = None,
    max_depth: float = 0.25,
    midline_x_mm: float = 0.0,
    depth_model: str = "equivolumetric",
    reference: str = "shipped reference_values.tsv",
    notes: Mapping[str, str] | None = None,
) -> list[dict]:
    """Report rows (:data:`REPORT_COLUMNS`) from :func:`hemisphere_measures`.

    Shrinkage correction: volume x ``f_volume``, area x ``f_volume^(2/3)``; z = (corrected - mean)
    / sd from ``reference_table`` (NaN where the table has no value for the area, quantity and
    hemisphere; an empty mapping gives no z-scores). ``reference`` names the population in the
    ``reference`` column, ``notes`` (per hemisphere) fill the ``note`` column.
    """
    table = (
        load_reference_table(reference_table)
        if reference_table is None or isinstance(reference_table, str | Path)
        else reference_table
    )
    f_area = f_volume ** (2.0 / 3.0)
    rows = []
    for hemi in HEMISPHERES:
        m = measures[hemi]
        volume_c = m["volume_mm3"] * f_volume
        surface_c = m["surface_mm2"] * f_area
        z = {}
        for quantity, value in (("volume", volume_c), ("surface", surface_c)):
            ref = _reference(table, area, quantity, hemi)
            ok = ref is not None and ref["sd"] > 0 and not math.isnan(ref["mean"])
            z[quantity] = (value - ref["mean"]) / ref["sd"] if ok else math.nan
        rows.append(
            {
                "brain": brain,
                "source": source,
                "area_id": int(area_id),
                "area": area,
                "hemisphere": hemi,
                "midline_x_mm": float(midline_x_mm),
                "voxel_size_mm": float(voxel_size_mm),
                "n_voxels": m["n_voxels"],
                "volume_mm3": m["volume_mm3"],
                "volume_corrected_mm3": volume_c,
                "volume_z": z["volume"],
                "surface_mm2": m["surface_mm2"],
                "surface_corrected_mm2": surface_c,
                "surface_z": z["surface"],
                "mesh_area_mm2": m["mesh_area_mm2"],
                "n_triangles": m["n_triangles"],
                "n_pial_triangles": m["n_pial_triangles"],
                "n_triangles_no_depth": m["n_triangles_no_depth"],
                "f_volume": float(f_volume),
                "f_area": f_area,
                "max_depth": float(max_depth),
                "depth_model": depth_model,
                "reference": reference,
                "note": (notes or {}).get(hemi, ""),
            }
        )
    return rows


def _format(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_report(path: str | Path, rows: Sequence[Mapping]) -> Path:
    """Write report rows as a TSV (columns :data:`REPORT_COLUMNS`), atomically."""
    from cortexgraph.outputs import write_text_atomic

    lines = ["\t".join(REPORT_COLUMNS)]
    lines += ["\t".join(_format(row[c]) for c in REPORT_COLUMNS) for row in rows]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def merge_reports(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Concatenate per-area report TSVs (same columns) into one table, sorted by area id."""
    rows: list[dict[str, str]] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle, delimiter="\t"))
    order = {h: i for i, h in enumerate(HEMISPHERES)}
    rows.sort(key=lambda r: (int(r["area_id"]), order.get(r["hemisphere"], 9)))
    from cortexgraph.outputs import write_text_atomic

    lines = ["\t".join(REPORT_COLUMNS)]
    lines += ["\t".join(r[c] for c in REPORT_COLUMNS) for r in rows]
    return write_text_atomic(out, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------- picture


def _render(verts_uv, depth, faces, colors, pixel_mm, lo, shape, max_points=6_000_000):
    """Z-buffer rendering of flat-coloured triangles into an RGB image (white background).

    Every triangle is sampled on a barycentric grid fine enough for its longest edge (in pixels)
    and each pixel keeps the nearest sample (smallest ``depth``).
    """
    img = np.ones(shape + (3,), dtype=np.float32)
    if not len(faces):
        return img
    tri = verts_uv[faces] - lo  # (F, 3, 2) in mm from the image corner
    edges = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1) / pixel_mm
    k = int(np.clip(np.ceil(np.percentile(edges, 99)) + 1, 2, 24))
    while len(faces) * k * (k + 1) // 2 > max_points and k > 2:
        k -= 1
    a, b = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
    keep = a + b <= k
    w = np.stack([a[keep], b[keep], k - a[keep] - b[keep]], axis=1) / k  # (P, 3)
    points = np.einsum("pk,fkd->fpd", w, tri).reshape(-1, 2)
    tri_depth = depth[faces]
    point_depth = (w @ tri_depth.T).T.reshape(-1)
    owner = np.repeat(np.arange(len(faces)), len(w))
    col = np.floor(points[:, 0] / pixel_mm).astype(np.int64)
    row = np.floor(points[:, 1] / pixel_mm).astype(np.int64)
    ok = (col >= 0) & (col < shape[1]) & (row >= 0) & (row < shape[0])
    flat = row[ok] * shape[1] + col[ok]
    order = np.lexsort((point_depth[ok], flat))  # per pixel, nearest sample first
    flat, who = flat[order], owner[ok][order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    img.reshape(-1, 3)[flat[first]] = colors[who[first]]
    return img


def area_picture(
    path: str | Path,
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    pial_triangles: np.ndarray,
    *,
    color_rgb: tuple[int, int, int] = (200, 60, 60),
    title: str = "",
    rows: Sequence[Mapping] = (),
    image_px: int = 360,
) -> Path:
    """Picture of an area map: the surface from three sides, pial triangles in the area's colour,
    the others grey (Lambert shading), and the report numbers. Written atomically as PNG.

    Views: from the left (-x; anterior to the left), from above (+z; anterior up, right to the
    right), from behind (-y; right to the right), orthographic, each as the viewer sees it; the axes
    are world mm (docs/conventions.md), so their ticks are the scale.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cortexgraph.outputs import save_figure

    verts = np.asarray(vertices_mm, dtype=float)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    views = (
        ("from the left (-x)", np.array([-1.0, 0, 0]), (1, 2), ("anterior <- y", "superior ^ z")),
        ("from above (+z)", np.array([0, 0, 1.0]), (0, 1), ("x -> right", "anterior ^ y")),
        ("from behind (-y)", np.array([0, -1.0, 0]), (0, 2), ("x -> right", "superior ^ z")),
    )
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1, 1, 1, 1.1]})
    base = np.array(color_rgb, dtype=np.float32) / 255.0
    if len(faces):
        tri = verts[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        pial = np.asarray(pial_triangles, dtype=bool)
        albedo = np.where(pial[:, None], base[None, :], np.float32(0.72))
    for ax, (name, towards_viewer, (a, b), (xlabel, ylabel)) in zip(axes[:3], views, strict=True):
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if not len(faces):
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        uv = verts[:, [a, b]]
        used = np.unique(faces)
        lo, hi = uv[used].min(axis=0), uv[used].max(axis=0)
        pixel = max(float((hi - lo).max()) / image_px, 1e-6)
        shape = (int((hi[1] - lo[1]) / pixel) + 1, int((hi[0] - lo[0]) / pixel) + 1)
        shade = 0.35 + 0.65 * np.abs(normal @ towards_viewer)
        depth = -(verts @ towards_viewer)
        colors = (albedo * shade[:, None]).astype(np.float32)
        img = _render(uv, depth, faces, colors, pixel, lo, shape)
        ax.imshow(img[::-1], extent=(lo[0], hi[0] + pixel, lo[1], hi[1] + pixel))
        if towards_viewer[0] < 0:  # seen from the left, anterior (+y) is on the viewer's left
            ax.invert_xaxis()
        ax.set_xlabel(f"{xlabel} (mm)", fontsize=8)
        ax.set_ylabel(f"{ylabel} (mm)", fontsize=8)
    text = axes[3]
    text.axis("off")
    lines = [*title.split("\n"), "", "hemi   volume mm3   pial mm2   (corrected: vol, area; z)"]

    def z(value) -> str:
        return f"{value:.2f}" if np.isfinite(value) else "-"

    for row in rows:
        lines.append(
            f"{row['hemisphere']:<5} {row['volume_mm3']:10.1f} {row['surface_mm2']:10.1f}"
            f"   ({row['volume_corrected_mm3']:.0f}, {row['surface_corrected_mm2']:.0f};"
            f" {z(row['volume_z'])}, {z(row['surface_z'])})"
        )
    depth_name = rows[0].get("depth_model", "equivolumetric") if rows else "equivolumetric"
    cut = rows[0]["max_depth"] if rows else 0.25
    reference = rows[0].get("reference", "the reference table") if rows else "the reference table"
    lines += [
        "",
        f"coloured: pial triangles ({depth_name} depth < {cut:.2f})",
        *textwrap.wrap(f"z: against {reference} ('-': no reference value)", 62),
    ]
    for r in rows:
        if r.get("note"):
            lines += textwrap.wrap(f"{r['hemisphere']}: {r['note']}", 62, subsequent_indent="  ")
    text.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
