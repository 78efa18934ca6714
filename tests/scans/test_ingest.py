"""Ingest: scans in OME-TIFF / BigTIFF, OME-Zarr, TIFF with resolution tags and PNG become brain images
whose pyramid equals ``write_raster``'s, streamed tile by tile, resumable."""

from __future__ import annotations

import json
import os
import tracemalloc

import h5py
import numpy as np
import pytest

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.errors import DataFormatError

tifffile = pytest.importorskip("tifffile", reason="the [scans] extra (tifffile) is not installed")
pytest.importorskip("zarr", reason="the [scans] extra (zarr) is not installed")

from cortexgraph.scans.ingest import ingest_brain, open_scan, source_identity  # noqa: E402
from cortexgraph.scans.strip import write_ome_tiff, write_ome_zarr  # noqa: E402


def _image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Smooth stripes plus noise (compresses, and every pixel differs from its neighbours)."""
    rng = np.random.default_rng(seed)
    base = 128 + 80 * np.outer(np.sin(np.arange(rows) / 37.0), np.cos(np.arange(cols) / 53.0))
    noise = rng.integers(-4, 5, (rows, cols), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _levels(path) -> list[tuple[np.ndarray, float]]:
    with h5py.File(path, "r") as handle:
        group = handle["levels"]
        return [
            (group[str(k)][...], float(group[str(k)].attrs["spacing_um"]))
            for k in range(len(group))
        ]


def _write_list(folder, rows) -> os.PathLike:
    text = "section\tscan\tmissing\tspacing_um\n" + "".join(
        f"{s}\t{scan}\t{missing}\t{spacing}\n" for s, scan, missing, spacing in rows
    )
    path = folder / "sections.tsv"
    path.write_text(text)
    return path


def test_formats_give_write_raster_pyramids_and_metadata_spacing(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    image = _image(700, 900)
    write_ome_tiff(scans / "a.ome.tif", image, 2.0, tile_px=128)
    write_ome_zarr(scans / "b.ome.zarr", image, 2.0, chunk_px=128)
    # plain TIFF, resolution tags: 5000 px per cm = 2 um
    tifffile.imwrite(scans / "c.tif", image, resolution=(5000, 5000), resolutionunit="CENTIMETER")
    # colour PNG, spacing from the list
    rgb = np.stack([image, image // 2, 255 - image], axis=-1)
    import imageio.v3 as iio

    iio.imwrite(scans / "d.png", rgb)
    listing = _write_list(
        scans,
        [
            (10, "a.ome.tif", 0, ""),
            (20, "b.ome.zarr", 0, ""),
            (30, "", 1, ""),
            (40, "c.tif", 0, ""),
            (50, "d.png", 0, "2"),
        ],
    )
    report = ingest_brain(tmp_path / "cohort", "B01", listing, chunk_px=256, min_level_px=100)
    assert report.written == [10, 20, 40, 50] and report.missing == [30]
    assert report.formats == {10: "ome-tiff", 20: "ome-zarr", 40: "tiff", 50: "image"}
    assert report.spacing_um == pytest.approx(2.0)

    reference = tmp_path / "ref.h5"
    write_raster(reference, image, 2.0, chunk_px=256, min_level_px=100)
    expected = _levels(reference)
    brain = Cohort.read(tmp_path / "cohort").brain("B01")
    assert brain.image_spacing_um == 2.0
    assert [r.section for r in brain.sections] == [10, 20, 30, 40, 50]
    assert brain.section(30).missing and not brain.section(30).image
    for section in (10, 20, 40):
        got = _levels(brain.path(brain.section(section).image))
        assert len(got) == len(expected) == 5
        for (a, sa), (b, sb) in zip(got, expected, strict=True):
            assert sa == sb and np.array_equal(a, b)
    grey = _levels(brain.path(brain.section(50).image))[0][0].astype(float)
    luminance = 0.2125 * rgb[..., 0] + 0.7154 * rgb[..., 1] + 0.0721 * rgb[..., 2]
    assert np.abs(grey - luminance).max() <= 0.5 + 1e-6
    with Raster(brain.path(brain.section(10).image)) as raster:
        assert raster.attribute("section") == 10
        source = json.loads(raster.attribute("ingest_source"))
    assert source["size"] == os.path.getsize(scans / "a.ome.tif")


def test_resume_skips_done_sections_and_redoes_changed_scans(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for k in (1, 2):
        write_ome_tiff(scans / f"s{k}.ome.tif", _image(300, 400, seed=k), 4.0)
    listing = _write_list(scans, [(1, "s1.ome.tif", 0, ""), (2, "s2.ome.tif", 0, "")])
    first = ingest_brain(tmp_path / "c", "B02", listing, chunk_px=128)
    assert first.written == [1, 2]
    image = tmp_path / "c" / "B02" / "images" / "s0002.h5"
    stamp = image.stat().st_mtime_ns
    again = ingest_brain(tmp_path / "c", "B02", listing, chunk_px=128)
    assert again.written == [] and again.skipped == [1, 2]
    assert image.stat().st_mtime_ns == stamp
    write_ome_tiff(scans / "s2.ome.tif", _image(300, 400, seed=9), 4.0)
    changed = ingest_brain(tmp_path / "c", "B02", listing, chunk_px=128)
    assert changed.written == [2] and changed.skipped == [1]
    assert np.array_equal(_levels(image)[0][0], _image(300, 400, seed=9))
    # other options (downscale) make a new image too; level 0 is the 2x2 mean
    down = ingest_brain(tmp_path / "c", "B02", listing, chunk_px=128, downscale=2)
    assert down.written == [1, 2] and down.spacing_um == 8.0
    level0 = _levels(image)[0][0]
    source = _image(300, 400, seed=9).astype(float)
    mean = source.reshape(150, 2, 200, 2).mean(axis=(1, 3))
    assert np.abs(level0 - mean).max() <= 0.5 + 1e-6


def test_scan_without_spacing_is_refused_with_the_fix(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    import imageio.v3 as iio

    iio.imwrite(scans / "x.png", _image(64, 64))
    listing = _write_list(scans, [(7, "x.png", 0, "")])
    with pytest.raises(DataFormatError) as caught:
        ingest_brain(tmp_path / "c", "B01", listing)
    assert caught.value.section == 7 and "--spacing-um" in caught.value.fix
    assert str(scans / "x.png") in str(caught.value)
    report = ingest_brain(tmp_path / "c", "B01", listing, spacing_um=1.5)
    assert report.spacing_um == 1.5
    bad = _write_list(scans, [(7, "x.png", 0, ""), (3, "x.png", 0, "")])
    with pytest.raises(DataFormatError, match="not after section 7"):
        ingest_brain(tmp_path / "c", "B01", bad)


def test_streaming_peak_memory_is_a_few_tiles(tmp_path):
    """A 4000 x 4000 scan (16 MB of pixels) is ingested with 256 px tiles: the Python heap peak
    (tracemalloc, numpy buffers included) stays below a quarter of the image."""
    scans = tmp_path / "scans"
    scans.mkdir()
    image = _image(4000, 4000)
    write_ome_tiff(scans / "big.ome.tif", image, 1.0, tile_px=256)
    listing = _write_list(scans, [(1, "big.ome.tif", 0, "")])
    window = image[1000:1100, 2000:2100].copy()
    del image
    with open_scan(scans / "big.ome.tif") as source:
        assert source.shape == (4000, 4000) and source.spacing_um == 1.0
    source_identity(scans / "big.ome.tif")
    tracemalloc.start()
    try:
        ingest_brain(tmp_path / "c", "B01", listing, chunk_px=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16e6 / 4, f"peak {peak / 1e6:.1f} MB"
    with Raster(tmp_path / "c" / "B01" / "images" / "s0001.h5") as raster:
        assert raster.shape == (4000, 4000) and len(raster.levels) == 5
        assert np.array_equal(raster.read_window(0, 1000, 2000, 100, 100), window)
