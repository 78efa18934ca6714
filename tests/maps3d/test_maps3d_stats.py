"""Pial area with the project's Laplace depth, hemisphere split, report rows and tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cortexgraph.maps3d.morphometry import load_reference_table, sample_at_vertices
from cortexgraph.maps3d.stats import (
    REPORT_COLUMNS,
    hemisphere_measures,
    merge_reports,
    morphometry_rows,
    write_report,
)
from cortexgraph.maps3d.surface import mask_surface
from cortexgraph.meshes.laplace import solve_laplace_depth

R_OUT, R_IN = 20.0, 17.0  # mm: a 3 mm "cortex" around a white-matter ball


def _shell(h):
    n = int(math.ceil(2 * R_OUT / h)) + 8
    c = (n - 1) / 2.0
    affine = np.diag([h, h, h, 1.0])
    affine[:3, 3] = -c * h  # sphere centred on the world origin: x = 0 splits it in halves
    r = np.sqrt(((np.mgrid[:n, :n, :n] - c) ** 2).sum(0)) * h
    tissue = np.where(r < R_IN, 1, np.where(r < R_OUT, 2, 0)).astype(np.uint8)
    return tissue, affine


@pytest.mark.parametrize("h", [1.0, 0.75, 0.5])
def test_shell_volume_and_pial_area_with_laplace_depth(h):
    tissue, affine = _shell(h)
    depth, info = solve_laplace_depth(tissue, h)
    assert info["converged"]
    # the method's depth volume: 0 outside the brain, 1 in white matter, Laplace in the cortex
    lookup = np.where(tissue == 1, 1.0, np.where(tissue == 2, depth, 0.0)).astype(np.float32)
    mask = tissue == 2
    verts, faces = mask_surface(mask, affine)
    d = sample_at_vertices(lookup, affine, verts)
    m = hemisphere_measures(mask, affine, verts, faces, d)
    exact_volume = 4.0 / 3.0 * math.pi * (R_OUT**3 - R_IN**3)
    exact_pial = 4.0 * math.pi * R_OUT**2
    assert abs(m["both"]["volume_mm3"] / exact_volume - 1) < 0.01  # measured <= 0.4 %
    assert abs(m["both"]["surface_mm2"] / exact_pial - 1) < 0.03  # measured <= 0.3 %
    # the inner (white) sphere is not pial: the whole mesh is outer + inner sphere
    assert m["both"]["mesh_area_mm2"] / exact_pial == pytest.approx(1 + (R_IN / R_OUT) ** 2, 0.03)
    for hemi in ("lh", "rh"):  # halves at x = 0
        assert abs(m[hemi]["volume_mm3"] / (exact_volume / 2) - 1) < 0.02
        assert abs(m[hemi]["surface_mm2"] / (exact_pial / 2) - 1) < 0.03
    assert m["lh"]["n_voxels"] + m["rh"]["n_voxels"] == m["both"]["n_voxels"] == mask.sum()
    assert m["both"]["n_triangles_no_depth"] == 0


def test_rows_shrinkage_and_per_hemisphere_reference(tmp_path):
    measures = {
        "lh": {"n_voxels": 10, "volume_mm3": 100.0, "surface_mm2": 40.0, "mesh_area_mm2": 90.0,
               "n_triangles": 5, "n_pial_triangles": 2, "n_triangles_no_depth": 0},
        "rh": {"n_voxels": 20, "volume_mm3": 200.0, "surface_mm2": 60.0, "mesh_area_mm2": 95.0,
               "n_triangles": 6, "n_pial_triangles": 3, "n_triangles_no_depth": 1},
    }  # fmt: skip
    measures["both"] = {k: measures["lh"][k] + measures["rh"][k] for k in measures["lh"]}
    ref = tmp_path / "ref.tsv"
    ref.write_text(
        "area\tquantity\tmean\tsd\themisphere\n"
        "A\tvolume\t500\t50\tboth\n"
        "A\tvolume\t150\t10\tlh\n"
        "A\tsurface\t100\t20\t\n"
    )
    table = load_reference_table(ref)
    rows = morphometry_rows(
        measures, brain="B", source="truth", area_id=3, area="A", voxel_size_mm=0.5,
        f_volume=2.0, reference_table=table,
    )  # fmt: skip
    by = {r["hemisphere"]: r for r in rows}
    assert by["both"]["volume_corrected_mm3"] == 600.0
    assert by["both"]["surface_corrected_mm2"] == pytest.approx(100.0 * 2 ** (2 / 3))
    assert by["both"]["volume_z"] == pytest.approx((600 - 500) / 50)
    assert by["both"]["surface_z"] == pytest.approx((100 * 2 ** (2 / 3) - 100) / 20)
    assert by["lh"]["volume_z"] == pytest.approx((200 - 150) / 10)
    assert math.isnan(by["rh"]["volume_z"]) and math.isnan(by["lh"]["surface_z"])
    # the shipped table: hOc1 references apply to the whole area only
    shipped = morphometry_rows(
        measures, brain="B", source="s", area_id=4, area="hOc1", voxel_size_mm=0.5, f_volume=1.0
    )
    assert shipped[2]["volume_z"] == pytest.approx((300 - 18042.2) / 2464.39)
    assert math.isnan(shipped[0]["volume_z"])

    one = write_report(tmp_path / "a.tsv", rows)
    other = write_report(tmp_path / "b.tsv", [dict(r, area_id=1, area="B") for r in rows])
    merged = merge_reports([one, other], tmp_path / "all.tsv").read_text().splitlines()
    assert merged[0].split("\t") == list(REPORT_COLUMNS)
    assert [line.split("\t")[3] + line.split("\t")[4] for line in merged[1:]] == [
        "Blh", "Brh", "Bboth", "Alh", "Arh", "Aboth",
    ]  # fmt: skip


def test_pial_area_of_a_shell_sector_with_equivolumetric_and_laplace_depth():
    """An area = the sector of a thick spherical shell (white 12 mm, pial 20 mm) within 50 degrees
    of the z axis, at 0.5 mm voxels. The method's pial area counts the outer cap and the side wall
    down to depth 0.25; the wall reaches r_q = (R2^3 - (R2^3 - R1^3) / 4)^(1/3) = 18.6 mm with the
    equivolumetric depth and 1 / (1/R2 + (1/R1 - 1/R2) / 4) = 17.1 mm with the Laplace depth:
    1028 vs 1153 mm^2 in closed form. Measured 957 and 1089 (the max-over-vertices rule drops the
    row of triangles at the cut; first order in the voxel size, docs/maps3d.md)."""
    from cortexgraph.meshes.equivolume import equivolumetric_depth

    r1, r2, theta, h = 12.0, 20.0, math.radians(50.0), 0.5
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
    cap = 2 * math.pi * r2**2 * (1 - math.cos(theta))
    r_cut = {
        "equivolumetric": (r2**3 - 0.25 * (r2**3 - r1**3)) ** (1 / 3),
        "laplace": 1 / (1 / r2 + 0.25 * (1 / r1 - 1 / r2)),
    }
    measured, exact = {}, {}
    for name, depth in models.items():
        lookup = np.where(tissue == 1, 1.0, np.where(tissue == 2, depth, 0.0)).astype(np.float32)
        m = hemisphere_measures(sector, affine, verts, faces, sample_at_vertices(lookup, affine, verts))
        measured[name] = m["both"]["surface_mm2"]
        exact[name] = cap + math.pi * math.sin(theta) * (r2**2 - r_cut[name] ** 2)
        assert -0.09 < measured[name] / exact[name] - 1 < 0.01
    ratio = measured["equivolumetric"] / measured["laplace"]
    assert ratio == pytest.approx(exact["equivolumetric"] / exact["laplace"], rel=0.025)
    assert ratio < 0.9  # the Laplace cut counts a 12 % larger area on this shell
