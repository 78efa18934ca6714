"""A phantom cohort reduced to what a lab has at the start: scans and a section list per brain.

:func:`strip_to_scans` turns every brain of a phantom cohort (``cortexgraph synth``) into::

    <cohort>/scans/<brain>/sNNNN.ome.tif      the section image as a tiled OME-TIFF with its pixel
                                              spacing (or sNNNN.ome.zarr, or sNNNN.png)
    <cohort>/scans/<brain>/sections.tsv       section, scan, missing (and spacing_um for PNG)
    <cohort>/ground_truth/<brain>/inputs/     the brain folder as the phantom made it: brain.toml,
                                              sections.tsv, transforms.tsv, masks/, coords/,
                                              annotations/, exclusion.nii.gz, images/

and removes ``<cohort>/<brain>``; ``cohort.toml`` keeps listing the brain, whose folder
``cortexgraph ingest`` makes again. ``segment`` measures its masks against
``ground_truth/<brain>/inputs/masks/``; the exact transforms and the misalignment of each section stay
in ``ground_truth/<brain>/transforms.tsv`` and ``misalignment.tsv`` as ``synth`` wrote them. Mirrored
scans are not flagged in the section list (finding them is the alignment's task; the truth is in
``misalignment.tsv``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import GROUND_TRUTH, Cohort
from cortexgraph.data.raster import Raster
from cortexgraph.errors import ParameterError
from cortexgraph.outputs import atomic_path, write_text_atomic

SCAN_FORMATS = ("ome-tiff", "ome-zarr", "png")
TRUTH_INPUTS = "inputs"

Progress = Callable[[str, int, int], None]


def write_ome_tiff(
    path: str | os.PathLike, image: np.ndarray, spacing_um: float, tile_px: int = 256
) -> Path:
    """Write a 2D grey image as a tiled, zlib-compressed OME-TIFF (BigTIFF) with its pixel spacing
    (``PhysicalSizeX/Y`` in µm), atomically."""
    import tifffile

    with atomic_path(path, suffix=".ome.tif") as tmp:
        tifffile.imwrite(
            tmp,
            image,
            bigtiff=True,
            tile=(tile_px, tile_px),
            compression="zlib",
            metadata={
                "axes": "YX",
                "PhysicalSizeX": float(spacing_um),
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": float(spacing_um),
                "PhysicalSizeYUnit": "µm",
            },
        )
    return Path(path)


def write_ome_zarr(
    path: str | os.PathLike, image: np.ndarray, spacing_um: float, chunk_px: int = 256
) -> Path:
    """Write a 2D grey image as an OME-Zarr (NGFF 0.4, one resolution, axes y x in micrometer).
    The folder is written beside its final name and renamed when complete."""
    import zarr

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
    array = group.create_array(
        "0", shape=image.shape, chunks=(chunk_px, chunk_px), dtype=image.dtype
    )
    array[:] = image
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [float(spacing_um), float(spacing_um)]}
                    ],
                }
            ],
        }
    ]
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def strip_to_scans(
    cohort_dir: str | os.PathLike,
    scan_format: str = "ome-tiff",
    brains: list[str] | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Reduce the phantom cohort in ``cohort_dir`` to scans and section lists (module docstring).

    Parameters
    ----------
    scan_format : ``ome-tiff`` (default), ``ome-zarr`` or ``png`` (PNG has no spacing: the list's
        ``spacing_um`` column gives it).
    brains : the brains to strip (default: all of cohort.toml that still have a folder).

    Returns
    -------
    The section lists written, one per brain.
    """
    if scan_format not in SCAN_FORMATS:
        raise ParameterError(
            f"scan format {scan_format!r} is not one of {', '.join(SCAN_FORMATS)}",
            fix="pass --scan-format ome-tiff, ome-zarr or png",
        )
    cohort = Cohort.read(cohort_dir)
    report = progress or (lambda stage, done, total: None)
    chosen = brains or [b for b in cohort.brain_ids if (cohort.root / b / "brain.toml").exists()]
    lists = []
    for brain_id in chosen:
        brain = cohort.brain(brain_id)
        scans = cohort.root / "scans" / brain_id
        scans.mkdir(parents=True, exist_ok=True)
        rows = ["section\tscan\tmissing" + ("\tspacing_um" if scan_format == "png" else "")]
        records = brain.sections
        stage = f"scans {brain_id}"
        report(stage, 0, len(records))
        for done, record in enumerate(records, 1):
            if record.missing or not record.image:
                rows.append(f"{record.section}\t\t1" + ("\t" if scan_format == "png" else ""))
                continue
            with Raster(brain.path(record.image, section=record.section)) as raster:
                image = raster.read_level(0)
                spacing = raster.spacing_um
            stem = f"s{record.section:04d}"
            if scan_format == "ome-tiff":
                name = f"{stem}.ome.tif"
                write_ome_tiff(scans / name, image, spacing)
            elif scan_format == "ome-zarr":
                name = f"{stem}.ome.zarr"
                write_ome_zarr(scans / name, image, spacing)
            else:
                import imageio.v3 as iio

                name = f"{stem}.png"
                with atomic_path(scans / name, suffix=".png") as tmp:
                    iio.imwrite(tmp, image)
            rows.append(
                f"{record.section}\t{name}\t0" + (f"\t{spacing:g}" if scan_format == "png" else "")
            )
            report(stage, done, len(records))
        listing = write_text_atomic(scans / "sections.tsv", "\n".join(rows) + "\n")
        lists.append(listing)
        target = cohort.root / GROUND_TRUTH / brain_id / TRUTH_INPUTS
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(brain.root), str(target))
    return lists
