"""A small, valid brain written in the documented format, for data-layer and check tests.

Six digitized sections (one missing, one mirrored), a 12 x 10 mm field of view, an elliptic "cortex"
ring, two annotated sections (label image + contours), coordinate maps, rigid transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.annotations import label_image_to_contours, write_contours
from cortexgraph.data.manifest import Area, AreaTable, Brain, Cohort, SectionRecord
from cortexgraph.data.raster import write_raster
from cortexgraph.data.transforms import rigid_matrix

WIDTH_MM, HEIGHT_MM = 12.0, 10.0
IMAGE_UM, MASK_UM, ANNOT_UM, COORDS_UM = 50.0, 100.0, 100.0, 200.0
SECTIONS = [100, 115, 130, 145, 160, 175]
MISSING = {145}
MIRRORED = {130}
ANNOTATED = {115, 160}


def ring_masks(spacing_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes and area labels of the ring phantom at ``spacing_um``."""
    rows = int(round(HEIGHT_MM * 1000 / spacing_um))
    cols = int(round(WIDTH_MM * 1000 / spacing_um))
    y, x = (np.mgrid[0:rows, 0:cols] + 0.5) * spacing_um / 1000.0
    r = np.hypot((x - 6.0) / 5.0, (y - 5.0) / 4.0)
    tissue = np.zeros((rows, cols), np.uint8)
    tissue[r < 1.0] = 2
    tissue[r < 0.6] = 1
    areas = np.zeros((rows, cols), np.uint16)
    gray = tissue == 2
    angle = np.arctan2(y - 5.0, x - 6.0)
    areas[gray & (angle >= 0)] = 1
    areas[gray & (angle < 0) & (x < 6.0)] = 2
    areas[gray & (angle < 0) & (x >= 6.0)] = 3
    return tissue, areas


def make_brain(root: Path, brain_id: str = "B01") -> Brain:
    """Write a cohort with one valid brain under ``root``; return the Brain."""
    rng = np.random.default_rng(0)
    cohort = Cohort(root=root, name="test", section_thickness_um=20.0, brain_ids=[brain_id])
    cohort.write_manifest()
    AreaTable(
        [Area(1, "hOc1", "#ff0000"), Area(2, "hOc2", "#00ff00"), Area(3, "FG1", "#0000ff")]
    ).write(root / "areas.tsv")
    brain = Brain(
        id=brain_id,
        root=root / brain_id,
        cohort=cohort,
        shrinkage_factor=1.2,
        digitization_step=15,
        image_spacing_um=IMAGE_UM,
        mask_spacing_um=MASK_UM,
        annotation_spacing_um=ANNOT_UM,
        coords_spacing_um=COORDS_UM,
        base_section=130,
    )
    brain.root.mkdir(parents=True, exist_ok=True)
    brain.write_manifest()
    tissue_img, _ = ring_masks(IMAGE_UM)
    tissue, areas = ring_masks(MASK_UM)
    _, areas_annot = ring_masks(ANNOT_UM)
    records = []
    for s in SECTIONS:
        if s in MISSING:
            records.append(SectionRecord(section=s, missing=True))
            continue
        image = np.where(tissue_img == 0, 230, np.where(tissue_img == 1, 180, 90)).astype(np.uint8)
        image = (image + rng.integers(0, 10, image.shape)).astype(np.uint8)
        mask = tissue
        if s in MIRRORED:
            image, mask = image[:, ::-1], mask[:, ::-1]
        names = {}
        write_raster(brain.root / f"images/s{s:04d}.h5", image, IMAGE_UM, chunk_px=64)
        write_raster(brain.root / f"masks/s{s:04d}.h5", mask, MASK_UM, kind="labels")
        coords = np.full(ring_masks(COORDS_UM)[0].shape + (3,), np.nan, np.float32)
        coords[ring_masks(COORDS_UM)[0] > 0] = 0.25
        write_raster(brain.root / f"coords/s{s:04d}.h5", coords, COORDS_UM)
        record = SectionRecord(
            section=s,
            image=f"images/s{s:04d}.h5",
            mask=f"masks/s{s:04d}.h5",
            coords=f"coords/s{s:04d}.h5",
            mirrored=s in MIRRORED,
        )
        if s in ANNOTATED:
            write_raster(
                brain.root / f"annotations/s{s:04d}.h5", areas_annot, ANNOT_UM, kind="labels"
            )
            write_contours(
                brain.root / f"annotations/s{s:04d}.geojson",
                label_image_to_contours(areas_annot, ANNOT_UM, names),
            )
            record = SectionRecord(
                **{
                    **record.__dict__,
                    "annotation": f"annotations/s{s:04d}.h5",
                    "contours": f"annotations/s{s:04d}.geojson",
                }
            )
        records.append(record)
    brain.write_sections(records)
    available = [s for s in SECTIONS if s not in MISSING]
    transforms = {}
    for moving, fixed in zip(available[:-1], available[1:], strict=True):
        transforms[(moving, fixed)] = rigid_matrix(
            rng.uniform(-0.1, 0.1), rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
        )
    brain.write_transforms(transforms)
    return Brain.read(brain.root, cohort=Cohort.read(root))
