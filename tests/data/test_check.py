"""Every `check` failure on a small broken copy of a valid brain; messages name file and section."""

from __future__ import annotations

import json
import sys
import tomllib
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import tomli_w

from cortexgraph.data.check import check_brain
from cortexgraph.data.manifest import TRANSFORM_COLUMNS, format_tsv
from cortexgraph.data.raster import write_raster

sys.path.insert(0, str(Path(__file__).parent))
import corrupt  # noqa: E402


def problems(root):
    return check_brain(root / "B01")


def only(found, text):
    hits = [p for p in found if text in p.message]
    assert hits, f"no problem mentioning {text!r} in {[str(p) for p in found]}"
    return hits[0]


def edit_table(path, edit):
    lines = path.read_text().splitlines()
    lines = edit(lines)
    path.write_text("\n".join(lines) + "\n")


def test_valid_brain_is_clean(valid_cohort):
    assert problems(valid_cohort) == []


def test_missing_file(valid_cohort):
    (valid_cohort / "B01/images/s0115.h5").unlink()
    p = only(problems(valid_cohort), "image file not found")
    assert p.file.endswith("images/s0115.h5") and p.section == 115


def test_unreadable_file(valid_cohort):
    (valid_cohort / "B01/masks/s0160.h5").write_bytes(b"garbage")
    p = only(problems(valid_cohort), "not a readable HDF5 file")
    assert p.file.endswith("masks/s0160.h5") and p.section == 160


def test_truncated_file(valid_cohort):
    path = valid_cohort / "B01/images/s0175.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])
    found = problems(valid_cohort)
    p = [x for x in found if x.section == 175 and x.file.endswith("images/s0175.h5")]
    assert p, [str(x) for x in found]
    assert "truncated" in p[0].message


def test_spacing_mismatch(valid_cohort):
    mask = np.zeros((100, 120), np.uint8)
    write_raster(valid_cohort / "B01/masks/s0100.h5", mask, spacing_um=110.0, kind="labels")
    found = problems(valid_cohort)
    p = only(found, "spacing is 110 um but brain.toml says 100 um")
    assert p.section == 100 and p.file.endswith("masks/s0100.h5")


def test_shape_mismatch(valid_cohort):
    write_raster(valid_cohort / "B01/images/s0100.h5", np.zeros((150, 240), np.uint8), 50.0)
    p = only(problems(valid_cohort), "but the mask covers")
    assert p.section == 100 and p.file.endswith("images/s0100.h5")


def test_non_rigid_and_non_finite_transforms(valid_cohort):
    path = valid_cohort / "B01/transforms.tsv"

    def break_rows(lines):
        first = lines[1].split("\t")
        first[2] = str(float(first[2]) * 1.05)  # scale m00
        second = lines[2].split("\t")
        second[4] = "nan"
        return [lines[0], "\t".join(first), "\t".join(second)] + lines[3:]

    edit_table(path, break_rows)
    found = problems(valid_cohort)
    p = only(found, "is not rigid")
    assert p.file.endswith("transforms.tsv") and p.section == 100
    q = only(found, "is not finite")
    assert q.section == 115


def test_missing_transform_link(valid_cohort):
    edit_table(valid_cohort / "B01/transforms.tsv", lambda lines: lines[:2] + lines[3:])
    p = only(problems(valid_cohort), "no transform from section 115 to 130")
    assert p.section == 115


def test_annotation_ids_absent_from_area_table(valid_cohort):
    labels = np.zeros((100, 120), np.uint16)
    labels[10:20, 10:20] = 99
    write_raster(valid_cohort / "B01/annotations/s0115.h5", labels, 100.0, kind="labels")
    p = only(problems(valid_cohort), "area ids [99] absent")
    assert p.section == 115 and p.file.endswith("annotations/s0115.h5")


def test_self_intersecting_and_overlapping_contours(valid_cohort):
    path = valid_cohort / "B01/annotations/s0160.geojson"
    bowtie = [[1, 1], [3, 3], [3, 1], [1, 3], [1, 1]]
    square_a = [[5, 5], [7, 5], [7, 7], [5, 7], [5, 5]]
    square_b = [[6, 6], [8, 6], [8, 8], [6, 8], [6, 6]]
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"area_id": area},
        }
        for ring, area in ((bowtie, 1), (square_a, 2), (square_b, 3))
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    found = problems(valid_cohort)
    p = only(found, "Self-intersection")
    assert p.section == 160 and p.file.endswith("s0160.geojson")
    q = only(found, "overlap by 1.0000 mm^2")
    assert q.section == 160


def test_duplicated_and_unordered_sections(valid_cohort):
    def shuffle(lines):
        # header, 100, 115, 130, 145(missing), 160, 175 -> duplicate 115 and swap 160/175
        return [lines[0], lines[1], lines[2], lines[2], lines[3], lines[4], lines[6], lines[5]]

    edit_table(valid_cohort / "B01/sections.tsv", shuffle)
    found = problems(valid_cohort)
    p = only(found, "section 115 is listed twice")
    assert p.section == 115 and p.file.endswith("sections.tsv")
    q = only(found, "not increasing (175 before 160)")
    assert q.section == 160


def test_bad_mask_values_and_missing_manifest(valid_cohort):
    mask = np.full((100, 120), 7, np.uint8)
    write_raster(valid_cohort / "B01/masks/s0100.h5", mask, 100.0, kind="labels")
    p = only(problems(valid_cohort), "tissue mask has values [7]")
    assert p.section == 100
    (valid_cohort / "B01/brain.toml").unlink()
    found = problems(valid_cohort)
    assert "not found" in found[0].message


def test_corrupt_chunk_found_by_deep_check(valid_cohort):
    path = valid_cohort / "B01/images/s0100.h5"
    with h5py.File(path, "r") as handle:
        info = handle["levels/0"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[info.byte_offset : info.byte_offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    found = check_brain(valid_cohort / "B01", deep=True)
    p = only(found, "truncated or unreadable")
    assert p.section == 100


def test_transform_table_header(valid_cohort):
    assert (valid_cohort / "B01/transforms.tsv").read_text().split("\n")[0] == format_tsv(
        TRANSFORM_COLUMNS, []
    ).strip()


def _empty_pyramid(path, shape, spacing_um, chunk=2048):
    """A valid intensity raster of ``shape`` whose chunks are never written (read as zeros)."""
    with h5py.File(path, "w") as handle:
        handle.attrs.update(format="cortexgraph-raster", format_version=1, kind="intensity")
        level, rows, cols = 0, *shape
        while True:
            chunks = (min(chunk, rows), min(chunk, cols))
            dataset = handle.create_dataset(
                f"levels/{level}", shape=(rows, cols), dtype="u1", chunks=chunks, compression="gzip"
            )
            dataset.attrs["spacing_um"] = spacing_um * 2**level
            if max(rows, cols) <= 256:
                break
            level, rows, cols = level + 1, (rows + 1) // 2, (cols + 1) // 2


def test_check_reads_a_large_image_lazily(valid_cohort):
    """A 1 um image of the 12 x 10 mm section (120 Mpx): check decodes a few chunks, not the image."""
    manifest = valid_cohort / "B01/brain.toml"
    table = tomllib.loads(manifest.read_text())
    table["spacing_um"]["image"] = 1.0
    manifest.write_text(tomli_w.dumps(table))
    for s in (100, 115, 130, 160, 175):
        _empty_pyramid(valid_cohort / f"B01/images/s{s:04d}.h5", (10000, 12000), 1.0)
    tracemalloc.start()
    assert check_brain(valid_cohort / "B01") == []
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40 << 20  # one level 0 would be 120 MB


def test_unchunked_rasters_are_read_and_checked(valid_cohort):
    path = valid_cohort / "B01/masks/s0115.h5"
    corrupt.write_contiguous_raster(path)
    with h5py.File(path) as handle:
        assert handle["levels/0"].chunks is None
    assert check_brain(valid_cohort / "B01", deep=True) == []
    corrupt.write_contiguous_raster(path, lambda a: np.where(a == 2, 5, a).astype(a.dtype))
    p = only(check_brain(valid_cohort / "B01"), "tissue mask has values [5]")
    assert p.section == 115
