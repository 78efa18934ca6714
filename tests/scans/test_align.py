"""Alignment of consecutive sections (cortexgraph.scans.align) on the tiny phantom."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.data.transforms import apply_transform, rigid_matrix, rotation_about
from cortexgraph.derivatives.lock import StageLock
from cortexgraph.errors import ParameterError, StageBusyError
from cortexgraph.scans.align import (
    AlignParameters,
    align_pair,
    angle_deg,
    choose_orientations,
    install_alignment,
    matrix_difference,
    prepare_image,
    read_transform_table,
    run_align,
    search_estimate,
)

FAST = AlignParameters(features="orb", max_angle_deg=30.0, angle_step_deg=3.0, coarse_px=96)


def _image(cohort, section: int):
    brain = find_brain("B01", cohort)
    with Raster(brain.path(brain.section(section).image)) as raster:
        return raster.read_level(0).astype(np.float32), raster.spacing_um, raster.extent_mm


def _move(image: np.ndarray, matrix_mm: np.ndarray, spacing_um: float) -> np.ndarray:
    """The image as seen after the section moved by ``p' = M p`` (mm), glass (250) outside."""
    s = spacing_um / 1000.0
    scale = np.array([[s, 0, 0.5 * s], [0, s, 0.5 * s], [0, 0, 1.0]])
    inverse_px = np.linalg.inv(scale) @ np.linalg.inv(matrix_mm) @ scale  # (x, y) px
    linear = np.array([[inverse_px[1, 1], inverse_px[1, 0]], [inverse_px[0, 1], inverse_px[0, 0]]])
    offset = np.array([inverse_px[1, 2], inverse_px[0, 2]])
    return ndimage.affine_transform(image, linear, offset=offset, order=3, cval=250.0)


def test_pair_recovers_a_known_rigid_transform(tiny_cohort):
    """Method error: a section against itself moved by a known transform (no anatomy change)."""
    image, spacing, extent = _image(tiny_cohort, 842)
    centre = (extent[0] / 2, extent[1] / 2)
    truth = rigid_matrix(0.0, 1.7, -2.3) @ rotation_about(np.deg2rad(6.5), centre)
    moved = _move(image, truth, spacing)
    a = prepare_image(image, spacing, extent, FAST)
    b = prepare_image(moved, spacing, extent, FAST)
    result = align_pair(a, b, FAST)
    tissue = np.argwhere(a.image > 0)[:, ::-1].mean(axis=0)
    point = (tissue + 0.5) * spacing / 1000.0
    deg, dist_mm = matrix_difference(result.matrix_mm, truth, point)
    # 160 µm pixels: sub-pixel means well under 0.16 mm; measured 0.004 deg, 0.004 mm
    assert deg < 0.05
    assert dist_mm < 0.03
    assert result.ncc > 0.95
    assert result.reasons == []


def test_flipped_section_scores_higher_and_chain_picks_it(tiny_cohort):
    image, spacing, extent = _image(tiny_cohort, 842)
    a = prepare_image(image, spacing, extent, FAST)
    mirrored_scan = image[:, ::-1]
    as_declared = prepare_image(mirrored_scan, spacing, extent, FAST)
    flipped = prepare_image(mirrored_scan, spacing, extent, FAST, flipped=True)
    same = search_estimate(a, as_declared, FAST).score
    other = search_estimate(a, flipped, FAST).score
    assert other > same + FAST.mirror_margin
    # chain of 4 sections, the third flipped: pairs (1,2) and (2,3) prefer the flip
    scores = [(0.9, 0.5), (0.5, 0.9), (0.5, 0.9)]
    assert choose_orientations(scores, 4, 0.05) == [0, 0, 1, 0]
    # a flip that gains less than its cost is not taken
    assert choose_orientations([(0.9, 0.92), (0.9, 0.92)], 3, 0.05) == [0, 0, 0]


@pytest.fixture(scope="module")
def small_brain(tiny_cohort, tmp_path_factory):
    """Four sections of the tiny B01; section 842's scan mirrored but not declared."""
    root = tmp_path_factory.mktemp("align") / "tiny"
    shutil.copytree(tiny_cohort, root)
    brain = find_brain("B01", root)
    keep = [r for r in brain.sections if 722 <= r.section <= 902]
    brain.write_sections([replace(r, mirrored=False) for r in keep])
    toml = brain.manifest_path.read_text().replace("base_section = 602", "base_section = 782")
    brain.manifest_path.write_text(toml)
    path = brain.path(brain.section(842).image)
    with Raster(path) as raster:
        image, spacing = raster.read_level(0), raster.spacing_um
    write_raster(path, image[:, ::-1], spacing, kind="intensity", attrs={"section": 842})
    return root


def test_run_align_detects_the_mirror_flags_and_measures(small_brain, caplog):
    brain = find_brain("B01", small_brain)
    report = run_align(brain, FAST)
    assert report["pairs"] == 3
    assert report["mirror_changes"] == [842]
    flagged = {(f["moving"], f["fixed"]): f["reasons"] for f in report["flagged"]}
    assert "mirror_detected" in flagged[(782, 842)] and "mirror_detected" in flagged[(842, 902)]
    accuracy = report["accuracy"]
    # 1.2 mm between tiny sections: the anatomy changes, errors are those of the anatomy
    # (measured: rotation median 0.12 deg, translation median 2.7 px of 64 µm)
    assert accuracy["pair_rotation_error_deg_median"] < 0.3
    assert accuracy["pair_translation_error_px_median"] < 5.0
    assert accuracy["unflagged_failures"] == []
    out = brain.derivatives / "align"
    table = read_transform_table(out / "transforms.tsv")
    assert sorted(table) == [(722, 782), (782, 842), (842, 902)]
    assert all(abs(angle_deg(m)) < 30 for m in table.values())
    assert (out / "pairs.tsv").read_text().splitlines()[0].startswith("moving\tfixed\tstatus")
    # reused when nothing changed
    assert run_align(brain, FAST)["reused"]
    # install refuses flagged pairs, then installs them when accepted
    with pytest.raises(ParameterError):
        install_alignment(brain)
    assert brain.exclusion_mask  # the phantom's, in world mm: the new transforms move it
    with caplog.at_level(logging.WARNING, logger="cortexgraph.scans.align"):
        install_alignment(brain, accept_flagged=True)
    assert "the transforms changed, and the exclusion mask" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cortexgraph.scans.align"):
        install_alignment(find_brain("B01", small_brain), accept_flagged=True)  # the same again
    assert "exclusion mask" not in caplog.text
    # another install of this brain, or a run of align, holds a lock: refused, exit status 3
    for lock in ("install.lock", "align.lock"):
        with StageLock(brain.derivatives / "locks" / lock, "another process"):
            with pytest.raises(StageBusyError, match="is running already"):
                install_alignment(brain, accept_flagged=True)
    brain = find_brain("B01", small_brain)
    assert brain.section(842).mirrored
    assert (brain.root / "transforms.before-align.tsv").is_file()
    installed = brain.read_transforms()  # validated by the brain's own reader
    point = np.array([[40.0, 50.0]])
    assert np.allclose(
        apply_transform(installed[(782, 842)], point), apply_transform(table[(782, 842)], point)
    )
