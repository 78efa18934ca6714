"""``synthesize_cohort``: write a phantom cohort (docs/data-format.md) with its ground truth.

Layout written under ``out_dir``::

    cohort.toml, areas.tsv, atlas/pmaps.nii.gz, atlas/pmaps.tsv, synth.json
    B01/brain.toml, sections.tsv, transforms.tsv, exclusion.nii.gz,
        images/ masks/ coords/ annotations/ (s0123.h5, annotations also s0123.geojson)
    ground_truth/B01/labels/s0123.h5     full area labels of every available section
    ground_truth/B01/transforms.tsv      the exact consecutive transforms
    ground_truth/B01/misalignment.tsv    per digitized section: angle, translation, mirrored, missing
    ground_truth/B01/brain.json          block->world 4x4, block->template linear part, shrinkage ...
    ground_truth/B01/midsurface_{lh,rh}.gii        true midsurface (world mm) with area ids per vertex
    ground_truth/B01/area_measures.tsv   per area and hemisphere: volume, pial-side surface area
    ground_truth/B01/laminar_profiles.tsv  the brain's own laminar profiles (--profile-variability > 0)
    ground_truth/transition_widths.tsv   width of each area's border zones (--transition-mm > 0)
    ground_truth/B01/distortion.tsv      per section: shrinkage and wave of the mounted section

Everything is a function of (preset, brains, seed; the preset includes the area seed): all random streams come from
``SeedSequence([seed, crc32(brain), stream, section])`` and no file stores a time, so the same call
gives byte-identical files.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from cortexgraph.data.annotations import label_image_to_contours, write_contours
from cortexgraph.data.manifest import (
    DERIVATIVES,
    GROUND_TRUTH,
    AreaTable,
    Brain,
    Cohort,
    SectionRecord,
    format_tsv,
)
from cortexgraph.data.raster import write_raster
from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import _json_default, write_json_atomic, write_text_atomic
from cortexgraph.synth import truth
from cortexgraph.synth.areas import brain_profiles, depth_profiles, transition_widths_mm
from cortexgraph.synth.atlas import build_atlas
from cortexgraph.synth.cells import check_spacing
from cortexgraph.synth.deform import BrainModel, brain_rng, make_brain
from cortexgraph.synth.presets import Preset, get_preset
from cortexgraph.synth.render import (
    draw_artefacts,
    glass_image,
    raw_axes,
    render_image,
    sample_section,
    section_stain,
)
from cortexgraph.synth.resources import TEMPLATE_SPACE
from cortexgraph.synth.sectioning import (
    DISTORTION_COLUMNS,
    SectionGeometry,
    distortion_rows,
    noisy_transforms,
    plan_sections,
)
from cortexgraph.synth.template import Template, build_template

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
GENERATOR_VERSION = 1
MIN_ANNOTATION_PX = 4
BOX_MIN_MM = (-90.0, -126.0, -72.0)
BOX_MAX_MM = (90.0, 90.0, 108.0)

# state shared with forked worker processes (set before the pool starts)
_STATE: dict = {}


def _name(n: int) -> str:
    return f"s{n:04d}"


def synthesize_cohort(
    out_dir: str | os.PathLike,
    preset: str | Preset = "tiny",
    brains: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Generate a phantom cohort in ``out_dir`` and return its path.

    The same three steps as the cohort engine runs as tasks (cortexgraph.execution): the cohort-level
    files (:func:`prepare_cohort`), each brain (:func:`synthesize_brain`, independent of the other
    brains), then ``synth.json`` (:func:`finish_cohort`).

    Parameters
    ----------
    out_dir : cohort folder: new or empty, or with ``overwrite`` a phantom cohort to replace
        (:func:`clear_for_phantom`).
    preset : ``"tiny"``, ``"demo"``, ``"full"`` or a :class:`~cortexgraph.synth.presets.Preset`.
    brains : brain ids (default: the preset's); B07 is added when missing (the transfer brain).
    seed : cohort seed; the same seed gives byte-identical files.
    progress : optional ``callable(stage, done, total)``.
    workers : processes for the sections (default: the preset's, at most the CPU count).
    overwrite : replace the phantom cohort in ``out_dir`` (else a non-empty folder is refused).

    Returns
    -------
    ``Path(out_dir)``.
    """
    from cortexgraph.derivatives.lock import StageLock

    spec = (get_preset(preset) if isinstance(preset, str) else preset).with_brains(brains)
    workers = max(1, min(workers or spec.workers, os.cpu_count() or 1))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        clear_for_phantom(out)  # refuses a file
    out.mkdir(parents=True, exist_ok=True)
    # one synth per folder: a second one started at the same moment would find it empty too
    with StageLock(out / SYNTH_LOCK, f"synth into {out}"):
        brain_ids = prepare_cohort(out, spec, None, seed, progress, overwrite=overwrite)
        for index, brain_id in enumerate(brain_ids):
            synthesize_brain(
                out,
                brain_id,
                spec,
                seed,
                workers=workers,
                progress=progress,
                index=index,
                total=len(brain_ids),
            )
        return finish_cohort(out, spec, None, seed)


def cohort_brain_ids(
    preset: str | Preset, brains: list[str] | tuple[str, ...] | None = None
) -> list[str]:
    """The brains :func:`synthesize_cohort` makes: the preset's (or ``brains``), plus B07."""
    spec = get_preset(preset) if isinstance(preset, str) else preset
    brain_ids = list(dict.fromkeys(spec.with_brains(brains).brains))
    if "B07" not in brain_ids:
        brain_ids.append("B07")
    return brain_ids


@functools.lru_cache(maxsize=2)
def _template(template_mm: float, area_seed: int) -> Template:
    """The template of a resolution and area seed, built once per process (a cohort's brains share
    it)."""
    return build_template(template_mm, area_seed)


#: the lock ``synthesize_cohort`` holds in the folder while it writes (not an entry of the phantom)
SYNTH_LOCK = ".synth.lock"
#: what a phantom cohort folder holds (besides its brain folders): the generator's files, the
#: scans of ``--scans-only`` and the outputs of the pipeline run on it
PHANTOM_ENTRIES = frozenset(
    {"areas.tsv", "atlas", "cohort.toml", "synth.json", GROUND_TRUTH, "scans", DERIVATIVES.parts[0]}
)


def clear_for_phantom(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Make ``out_dir`` ready for a new phantom: a new or empty folder is left as it is; with
    ``overwrite`` a phantom cohort (only :data:`PHANTOM_ENTRIES` and brain folders with a
    ``brain.toml``) is deleted. Anything else is refused (DataFormatError), so that no file of
    another cohort or another seed stays beside the new phantom, and nothing that synth did not
    make is deleted."""
    import shutil

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataFormatError(
            "the phantom's folder is a file", file=out, fix="give a new or empty folder"
        )
    entries = sorted(p for p in out.iterdir() if not p.name.startswith(SYNTH_LOCK)) if out.is_dir() else []
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(p.name for p in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise DataFormatError(
            f"folder not empty ({len(entries)} {'entry' if len(entries) == 1 else 'entries'}: "
            f"{shown}): a phantom is written into a "
            "new or empty folder, so that no file of another cohort stays beside it",
            file=out,
            fix="give a new folder, or add --overwrite to replace the phantom cohort there",
        )
    foreign = [
        p.name
        for p in entries
        if p.name not in PHANTOM_ENTRIES and not (p.is_dir() and (p / "brain.toml").is_file())
    ]
    if foreign:
        raise DataFormatError(
            f"not a phantom cohort: it holds {', '.join(foreign[:3])}"
            + (", ..." if len(foreign) > 3 else "")
            + ", which synth does not write; --overwrite deletes only phantom cohorts",
            file=out,
            fix="remove the folder yourself, or give a new folder",
        )
    log.info("replacing the phantom cohort in %s", out)
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_cohort(
    out_dir: str | os.PathLike,
    preset: str | Preset = "tiny",
    brains: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> list[str]:
    """Write the cohort-level files of a phantom: ``areas.tsv``, ``atlas/pmaps.{nii.gz,tsv}`` and
    ``cohort.toml`` (listing every brain). Returns the brain ids (:func:`cohort_brain_ids`).
    ``out_dir`` must be new or empty, or with ``overwrite`` a phantom cohort, which is deleted
    first (:func:`clear_for_phantom`)."""
    spec = get_preset(preset) if isinstance(preset, str) else preset
    if spec.cell_texture:
        check_spacing(spec.image_spacing_um)
    brain_ids = cohort_brain_ids(spec, brains)
    out = Path(out_dir)
    clear_for_phantom(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, done, total: None)

    report("template", 0, 1)
    template = _template(spec.template_mm, spec.area_seed)
    report("template", 1, 1)
    AreaTable(template.layout.areas).write(out / "areas.tsv")
    if spec.transition_mm > 0:
        widths = transition_widths_mm(
            len(template.layout.areas), spec.transition_mm, spec.area_seed
        )
        write_text_atomic(
            out / GROUND_TRUTH / "transition_widths.tsv",
            format_tsv(
                ("area_id", "area", "transition_mm"),
                [(a.id, a.name, f"{widths[a.id]:.4f}") for a in template.layout.areas],
            ),
        )

    report("atlas", 0, 1)
    build_atlas(template, spec, seed).write(
        out / "atlas" / "pmaps.nii.gz", out / "atlas" / "pmaps.tsv"
    )
    report("atlas", 1, 1)

    cohort = Cohort(
        root=out,
        name=f"phantom-{spec.name}",
        section_thickness_um=spec.section_thickness_um,
        brain_ids=brain_ids,
        atlas_maps="atlas/pmaps.nii.gz",
        atlas_labels="atlas/pmaps.tsv",
        canonical_space=TEMPLATE_SPACE,
        canonical_box_min_mm=BOX_MIN_MM,
        canonical_box_max_mm=BOX_MAX_MM,
    )
    cohort.write_manifest()
    return brain_ids


def finish_cohort(
    out_dir: str | os.PathLike,
    preset: str | Preset,
    brains: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``synth.json`` (generator, preset, seed, brains, parameters), last: a cohort with it is
    complete. ``brains`` as given to :func:`prepare_cohort`. Returns ``Path(out_dir)``."""
    spec = (get_preset(preset) if isinstance(preset, str) else preset).with_brains(brains)
    out = Path(out_dir)
    write_json_atomic(out / "synth.json", synth_description(spec, cohort_brain_ids(spec), seed))
    return out


def synth_description(spec: Preset, brain_ids: list[str], seed: int) -> dict:
    """The content of ``synth.json`` for a preset, brains and seed."""
    return {
        "generator": "cortexgraph.synth",
        "generator_version": GENERATOR_VERSION,
        "preset": spec.name,
        "seed": int(seed),
        "brains": list(brain_ids),
        "template_space": TEMPLATE_SPACE,
        "anatomy": "MNI152 2009a GM/WM maps (nilearn) + conte69 32k midthickness with "
        "Schaefer-400 parcels merged to 100 areas (brainspace data files)",
        # cell_texture only when on: cohorts made without it keep the synth.json of before
        "parameters": {
            k: v
            for k, v in vars(spec).items()
            if k != "extra" and not (k == "cell_texture" and not v)
        },
    }


def is_complete(
    out_dir: str | os.PathLike, preset: str | Preset, brains=None, seed: int = 0
) -> bool:
    """True when ``out_dir`` holds a phantom made to completion by this generator version with
    this preset, brains and seed (its ``synth.json``, written last, says so)."""
    import json

    spec = (get_preset(preset) if isinstance(preset, str) else preset).with_brains(brains)
    try:
        found = json.loads((Path(out_dir) / "synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = json.loads(
        json.dumps(synth_description(spec, cohort_brain_ids(spec), seed), default=_json_default)
    )
    return found == wanted


def synthesize_brain(
    out_dir: str | os.PathLike,
    brain_id: str,
    preset: str | Preset = "tiny",
    seed: int = 0,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    index: int = 0,
    total: int = 1,
) -> Path:
    """Write one brain of a phantom cohort whose cohort-level files :func:`prepare_cohort` wrote:
    ``<brain>/`` (manifest, sections, transforms, exclusion mask, rasters, annotations) and
    ``ground_truth/<brain>/``. Independent of the other brains (its random streams are the brain's).

    Parameters
    ----------
    workers : processes for the sections (forked; 1 renders them in this process).
    index, total : the brain's position, for progress messages.

    Returns
    -------
    The brain folder.
    """
    spec = get_preset(preset) if isinstance(preset, str) else preset
    if spec.cell_texture:
        check_spacing(spec.image_spacing_um)
    cohort = Cohort.read(out_dir)
    template = _template(spec.template_mm, spec.area_seed)
    layout = template.layout
    # this brain's laminar profiles: the areas' own, varied per brain (inter-individual variability)
    profiles = brain_profiles(
        layout.profiles, brain_rng(seed, brain_id, 8), spec.profile_variability
    )
    luts = depth_profiles(profiles, len(layout.areas))
    luts["transition_mm"] = transition_widths_mm(
        len(layout.areas), spec.transition_mm, spec.area_seed
    )
    names = {a.id: a.name for a in layout.areas}
    report = progress or (lambda stage, done, total: None)
    _synthesize_brain(
        cohort, template, spec, brain_id, seed, luts, names, workers, report, index, total
    )
    if spec.profile_variability > 0:
        write_profiles(
            cohort.root / GROUND_TRUTH / brain_id / "laminar_profiles.tsv", profiles, names
        )
    return cohort.root / brain_id


def write_profiles(path: Path, profiles: dict, names: dict[int, str]) -> Path:
    """The laminar profiles a brain was drawn with, one row per area and layer: ``area_id``,
    ``area``, ``layer`` (I..VI), ``fraction`` (of the cortical depth), ``density`` (relative cell
    density), ``size_um`` (mean cell-body diameter)."""
    from cortexgraph.synth.areas import LAYERS

    rows = [
        (area_id, names[area_id], layer, f"{p.fraction[k]:.6f}", f"{p.density[k]:.6f}",
         f"{p.size_um[k]:.4f}")
        for area_id, p in sorted(profiles.items())
        for k, layer in enumerate(LAYERS)
    ]  # fmt: skip
    columns = ("area_id", "area", "layer", "fraction", "density", "size_um")
    return write_text_atomic(path, format_tsv(columns, rows))


def _synthesize_brain(
    cohort: Cohort,
    template: Template,
    spec: Preset,
    brain_id: str,
    seed: int,
    luts: dict,
    names: dict,
    workers: int,
    report: Progress,
    index: int,
    total: int,
) -> None:
    brain_model = make_brain(template, spec, brain_id, seed)
    geometry = plan_sections(template, brain_model, spec, seed)
    root = cohort.root / brain_id
    truth_root = cohort.root / GROUND_TRUTH / brain_id
    brain = Brain(
        id=brain_id,
        root=root,
        cohort=cohort,
        shrinkage_factor=brain_model.shrinkage_factor,
        digitization_step=spec.digitization_step,
        image_spacing_um=spec.image_spacing_um,
        mask_spacing_um=spec.mask_spacing_um,
        annotation_spacing_um=spec.annotation_spacing_um,
        coords_spacing_um=spec.coords_spacing_um,
        base_section=geometry.base_section,
        exclusion_mask="exclusion.nii.gz",
    )
    brain.write_manifest()
    _STATE.update(
        template=template,
        brain=brain_model,
        geometry=geometry,
        spec=spec,
        seed=seed,
        luts=luts,
        names=names,
        root=root,
        truth_root=truth_root,
        cohort=cohort,
    )
    sections = geometry.available
    records: dict[int, SectionRecord] = {}
    stage = f"{brain_id} sections ({index + 1}/{total})"
    report(stage, 0, len(sections))
    if workers > 1 and len(sections) > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for done, record in enumerate(pool.map(_section_job, sections, chunksize=2), 1):
                records[record.section] = record
                report(stage, done, len(sections))
    else:
        for done, n in enumerate(sections, 1):
            records[n] = _section_job(n)
            report(stage, done, len(sections))
    empty = sorted(n for n, record in records.items() if record.missing)
    if empty:
        _drop_empty_sections(geometry, empty, brain)
    rows = []
    for n in geometry.digitized:
        if n in geometry.missing:
            rows.append(SectionRecord(section=n, missing=True))
        else:
            rows.append(records[n])
    brain.write_sections(rows)
    brain.write_transforms(noisy_transforms(geometry, spec, seed, brain_id))
    if geometry.distortion:
        write_text_atomic(
            truth_root / "distortion.tsv", format_tsv(DISTORTION_COLUMNS, distortion_rows(geometry))
        )
    report(f"{brain_id} ground truth", 0, 1)
    truth.write_exclusion_mask(root / "exclusion.nii.gz", template, brain_model, geometry, spec)
    truth.write_ground_truth(truth_root, template, brain_model, geometry, spec, names)
    report(f"{brain_id} ground truth", 1, 1)
    _STATE.clear()


def _drop_empty_sections(geometry: SectionGeometry, empty: Sequence[int], brain: Brain) -> None:
    """Sections whose tissue mask came out empty (:func:`_section_job` wrote nothing for them)
    become missing ones: left out of the transforms, the annotations and the ground truth, and the
    base section is picked again if it was one of them (the manifest rewritten)."""
    log.info(
        "%s: section(s) %s hold no tissue on the mask grid; written as missing",
        brain.id,
        ", ".join(str(n) for n in empty),
    )
    geometry.missing.update(empty)
    geometry.annotated.difference_update(empty)
    if geometry.base_section in geometry.missing:
        candidates = [n for n in geometry.available if n not in geometry.mirrored]
        if not candidates:
            raise ValueError(f"{brain.id}: no section of the phantom holds tissue")
        geometry.base_section = int(candidates[(len(candidates) - 1) // 2])
        brain.base_section = geometry.base_section
        brain.write_manifest()


def _section_job(n: int) -> SectionRecord:
    """Render and write every raster of section ``n`` of the brain in ``_STATE``."""
    state = _STATE
    template: Template = state["template"]
    brain: BrainModel = state["brain"]
    geometry: SectionGeometry = state["geometry"]
    spec: Preset = state["spec"]
    seed: int = state["seed"]
    root: Path = state["root"]
    name = _name(n)

    def write(path: Path, raster: np.ndarray, spacing_um: float, kind: str) -> None:
        """One raster of the section (``kind``: intensity or labels; ``spacing_um``: its pixel
        spacing), in the preset's chunks, with the section number among its attributes."""
        write_raster(
            path, raster, spacing_um, kind=kind, chunk_px=spec.chunk_px, attrs={"section": n}
        )

    # tissue mask level (whole canvas) -> artefacts, tissue bounding box
    mask_shape = geometry.raster_shape(spec.mask_spacing_um)
    coarse = sample_section(
        template, brain, geometry, n, spec.mask_spacing_um, keep_template_mm=False
    )
    rng = brain_rng(seed, brain.brain_id, 5, n)
    artefacts = draw_artefacts(rng, coarse.tissue, spec.mask_spacing_um, spec.artefacts_per_section)
    mask = coarse.tissue.copy()
    mask[artefacts.removed_on_grid(*raw_axes(mask_shape, spec.mask_spacing_um))] = 0
    if not mask.any():
        # a section past the pole's tip, or whose little tissue an artefact took: a lab would not
        # digitize it; it becomes a missing section (nothing written)
        return SectionRecord(section=n, missing=True)
    write(root / "masks" / f"{name}.h5", mask, spec.mask_spacing_um, "labels")

    # image level, only inside the tissue bounding box (glass elsewhere)
    image_shape = geometry.raster_shape(spec.image_spacing_um)
    ratio = spec.mask_spacing_um / spec.image_spacing_um
    occupied = np.argwhere(coarse.tissue > 0)
    gain, gamma, ramp = section_stain(brain, seed, n, image_shape[1])
    noise_rng = brain_rng(seed, brain.brain_id, 6, n)
    image = glass_image(noise_rng, image_shape)
    if len(occupied):
        lo = np.maximum((occupied.min(0) - 2) * ratio, 0).astype(int)
        hi = np.minimum((occupied.max(0) + 3) * ratio, image_shape).astype(int)
        rows, cols = slice(lo[0], hi[0]), slice(lo[1], hi[1])
        fine = sample_section(
            template, brain, geometry, n, spec.image_spacing_um, rows, cols, keep_template_mm=False
        )
        xs, ys = raw_axes(image_shape, spec.image_spacing_um, rows, cols)
        window = render_image(
            fine,
            state["luts"],
            spec.image_spacing_um,
            noise_rng,
            gain * ramp[None, cols],
            gamma,
            artefacts.folded_on_grid(xs, ys),
            artefacts.removed_on_grid(xs, ys),
            cell_rng=brain_rng(seed, brain.brain_id, 10, n) if spec.cell_texture else None,
        )
        image[rows, cols] = window
    write(root / "images" / f"{name}.h5", image, spec.image_spacing_um, "intensity")

    # canonical coordinates
    cc = sample_section(template, brain, geometry, n, spec.coords_spacing_um)
    assert cc.template_mm is not None
    lo_box, hi_box = np.array(BOX_MIN_MM), np.array(BOX_MAX_MM)
    coords = 2.0 * (cc.template_mm - lo_box) / (hi_box - lo_box) - 1.0
    # the MNI volume ends at z = -72 mm (the box edge); the brainstem tissue interpolated up to half a
    # voxel below it is clipped onto the box
    coords = np.clip(coords, -1.0, 1.0).astype(np.float32)
    coords_shape = geometry.raster_shape(spec.coords_spacing_um)
    lost = artefacts.removed_on_grid(*raw_axes(coords_shape, spec.coords_spacing_um))
    coords[(cc.tissue == 0) | lost] = np.nan
    write(root / "coords" / f"{name}.h5", coords, spec.coords_spacing_um, "intensity")

    # ground-truth labels and (sparse, partial) annotations
    if spec.annotation_spacing_um == spec.mask_spacing_um:
        labels = coarse.area
    else:
        labels = sample_section(
            template, brain, geometry, n, spec.annotation_spacing_um, keep_template_mm=False
        ).area
    write(
        state["truth_root"] / "labels" / f"{name}.h5", labels, spec.annotation_spacing_um, "labels"
    )
    record = SectionRecord(
        section=n,
        image=f"images/{name}.h5",
        mask=f"masks/{name}.h5",
        coords=f"coords/{name}.h5",
        mirrored=n in geometry.mirrored,
    )
    if n in geometry.annotated:
        annotation = _annotation(labels, brain, spec, brain_rng(seed, brain.brain_id, 7, n))
        if annotation.any():
            write(
                root / "annotations" / f"{name}.h5",
                annotation,
                spec.annotation_spacing_um,
                "labels",
            )
            contours = label_image_to_contours(
                annotation, spec.annotation_spacing_um, state["names"]
            )
            write_contours(root / "annotations" / f"{name}.geojson", contours)
            record = replace(
                record,
                annotation=f"annotations/{name}.h5",
                contours=f"annotations/{name}.geojson",
            )
    return record


def _annotation(labels: np.ndarray, brain: BrainModel, spec: Preset, rng) -> np.ndarray:
    """Partial annotation: a random share of the mapped areas present, small fragments dropped."""
    from scipy import ndimage

    present = np.unique(labels[labels > 0])
    mapped = present[np.isin(present, brain.mapped_areas)]
    chosen = mapped[rng.random(len(mapped)) < spec.annotated_area_fraction]
    annotation = np.zeros_like(labels)
    for area_id in chosen:
        region = _break_diagonals(labels == area_id)
        parts, count = ndimage.label(region)
        if count == 0:
            continue
        sizes = np.bincount(parts.ravel())[1:]
        keep = np.flatnonzero(sizes >= MIN_ANNOTATION_PX) + 1
        annotation[np.isin(parts, keep)] = area_id
    return annotation


def _break_diagonals(region: np.ndarray) -> np.ndarray:
    """Remove pixels until no 2x2 block holds two pixels touching only at a corner.

    Contours traced from such a region would touch themselves at the corner (a polygon that is not
    simple); removing pixels keeps the annotation a subset of the true labels.
    """
    region = region.copy()
    while True:
        a, b = region[:-1, :-1], region[:-1, 1:]
        c, d = region[1:, :-1], region[1:, 1:]
        main = a & d & ~b & ~c  # [[1, 0], [0, 1]]
        anti = b & c & ~a & ~d  # [[0, 1], [1, 0]]
        if not (main.any() or anti.any()):
            return region
        rows, cols = np.nonzero(main)
        region[rows, cols] = False
        rows, cols = np.nonzero(anti)
        region[rows, cols + 1] = False
