"""The bad-input battery: one broken thing per case, on a copy of the tiny phantom.

Every case breaks one input of brain B01 (or of its cohort) and runs ``cortexgraph check B01`` (a few
run ``cortexgraph build-graph B01``) through the command line. Each asserts

* the exit status (2: a data error, docs/data-format.md and cortexgraph.errors),
* no traceback,
* that the message names the file at fault and, where there is one, the section,
* that the message says what is wrong (a phrase of it),
* that ``<cohort>/derivatives`` is unchanged (absent before and after) and that nothing outside the
  cohort folder was created or changed.

Classes: cohort manifest, brain manifest, identifiers, paths, area table, section table, transform
table, rasters (dtype, dimensions, values, attributes, storage), contours, atlas, exclusion mask.
Legal variants (unchunked HDF5, a byte-order mark, CRLF line ends, a [metadata] table, a data root)
must stay clean.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import corrupt as c  # noqa: E402

from cortexgraph.cli.main import app  # noqa: E402

runner = CliRunner()
BRAIN = "B01"
S = 182  # a present, annotated section of B01 in the tiny phantom (not the base, not mirrored)


@pytest.fixture(scope="module")
def template(tiny_cohort, tmp_path_factory) -> Path:
    """The parts of the tiny phantom that ``check B01`` reads (copied once per module)."""
    return c.copy_cohort(tiny_cohort, tmp_path_factory.mktemp("battery") / "cohort")


@pytest.fixture
def cohort(template, tmp_path) -> Path:
    root = tmp_path / "cohort"
    shutil.copytree(template, root, symlinks=True)
    (tmp_path / "outside").mkdir()
    return root


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path, Path], None]  # (cohort root, a folder beside it)
    file: str  # a part of the path the message must name
    text: str | tuple[str, ...]  # a phrase of the message (any of several)
    section: int | None = None
    command: str = "check"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def run(cohort: Path, command: str, brain: str = BRAIN, extra=()):
    args = [command, "--root", str(cohort)]
    if command == "build-graph":
        args += ["--overwrite"]
    return runner.invoke(app, [*args, *extra, "--", brain])


def assert_refused(result, cohort: Path, case: Case, before: dict, outside_before: dict) -> None:
    output = result.output
    assert result.exit_code == 2, f"{case.name}: exit {result.exit_code}\n{output}"
    assert isinstance(result.exception, SystemExit), f"{case.name}: {result.exception!r}"
    assert "Traceback" not in output
    flat = squash(output)
    assert squash(case.file) in flat, f"{case.name}: {case.file!r} not named in\n{output}"
    if case.section is not None:
        assert f"section{case.section}" in flat, f"{case.name}: section not named in\n{output}"
    texts = (case.text,) if isinstance(case.text, str) else case.text
    assert any(squash(t) in flat for t in texts), f"{case.name}: {texts} not in\n{output}"
    assert c.snapshot(cohort / "derivatives") == before == {}
    assert c.snapshot(cohort.parent, exclude=cohort) == outside_before


# -- the cases --------------------------------------------------------------------------------------
def toml(relative: str, **changes):
    return lambda root, out: c.edit_toml(root / relative, **changes)


def text_append(relative: str, text: str):
    return lambda root, out: c.append_text(root / relative, text)


def cell(relative: str, first: str, column: str, value: str):
    return lambda root, out: c.set_cell(root / relative, first, column, value)


def rows_edit(relative: str, edit):
    def mutate(root, out):
        path = root / relative
        c.write_rows(path, edit(c.read_rows(path)))

    return mutate


def raster(relative: str, edit=None, **kw):
    return lambda root, out: c.rewrite_raster(root / relative, edit, **kw)


def h5(relative: str, edit):
    return lambda root, out: c.h5_edit(root / relative, edit)


def nifti(relative: str, **kw):
    return lambda root, out: c.edit_nifti(root / relative, **kw)


def transform(moving: int, edit):
    return lambda root, out: c.transform_row(root / BRAIN / "transforms.tsv", moving, edit)


def bytes_to(relative: str, data: bytes):
    return lambda root, out: (root / relative).write_bytes(data)


def both(*mutations):
    def mutate(root, out):
        for m in mutations:
            m(root, out)

    return mutate


def replace_dataset(name: str, array: np.ndarray, spacing: float):
    def edit(handle):
        del handle[name]
        handle.create_dataset(name, data=array).attrs["spacing_um"] = spacing

    return edit


def external_link(handle):
    """Level 1 replaced by a link into another HDF5 file (outside the cohort)."""
    del handle["levels/1"]
    handle["levels/1"] = h5py.ExternalLink("/etc/x.h5", "/d")


def external_storage(handle):
    """Level 1 replaced by a dataset whose bytes live in a raw file outside the cohort."""
    shape = handle["levels/1"].shape
    del handle["levels/1"]
    dataset = handle.create_dataset(
        "levels/1", shape=shape, dtype="u1", external=[("/etc/hostname", 0, shape[0] * shape[1])]
    )
    dataset.attrs["spacing_um"] = 640.0


def scale(m, factor=1.05):
    m = m.copy()
    m[0, 0] *= factor
    return m


def shear(m):
    m = m.copy()
    m[0, 1] += 0.2
    return m


def translate(mm):
    def edit(m):
        m = m.copy()
        m[0, 2] += mm
        return m

    return edit


def nan_entry(m):
    m = m.copy()
    m[1, 2] = math.nan
    return m


def symlink_out(relative: str):
    def mutate(root, out):
        path = root / relative
        target = c.outside_file(out, path.name, path)
        path.unlink()
        path.symlink_to(target)

    return mutate


def geojson(relative: str, edit):
    def mutate(root, out):
        path = root / relative
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return mutate


def first_area(value):
    def edit(collection):
        collection["features"][0]["properties"]["area_id"] = value
        return collection

    return edit


def bowtie(collection):
    ring = [[10, 10], [14, 14], [14, 10], [10, 14], [10, 10]]
    collection["features"].append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"area_id": 1},
        }
    )
    return collection


def scale_contours(factor):
    def edit(collection):
        for feature in collection["features"]:
            geometry = feature["geometry"]
            polys = (
                [geometry["coordinates"]]
                if geometry["type"] == "Polygon"
                else geometry["coordinates"]
            )
            for rings in polys:
                for ring in rings:
                    for point in ring:
                        point[0] *= factor
                        point[1] *= factor
        return collection

    return edit


def nan_vertex(collection):
    collection["features"][0]["geometry"]["coordinates"][0][1][0] = math.nan
    return collection


COHORT = "cohort/cohort.toml"
BRAIN_TOML = f"{BRAIN}/brain.toml"
SECTIONS = f"{BRAIN}/sections.tsv"
TRANSFORMS = f"{BRAIN}/transforms.tsv"
AREAS = "cohort/areas.tsv"
MASK = f"{BRAIN}/masks/s{S:04d}.h5"
IMAGE = f"{BRAIN}/images/s{S:04d}.h5"
ANNOTATION = f"{BRAIN}/annotations/s{S:04d}.h5"
CONTOURS = f"{BRAIN}/annotations/s{S:04d}.geojson"
COORDS = f"{BRAIN}/coords/s{S:04d}.h5"
ATLAS = "atlas/pmaps.nii.gz"
ATLAS_LABELS = "atlas/pmaps.tsv"
EXCLUSION = f"{BRAIN}/exclusion.nii.gz"

# fmt: off
CASES = [
    # -- cohort manifest -----------------------------------------------------------------------------
    Case("cohort-version-string", toml("cohort.toml", format_version="1"), COHORT,
         "format_version must be the integer 1"),
    Case("cohort-version-2", toml("cohort.toml", format_version=2), COHORT,
         "format_version 2 is not supported"),
    Case("cohort-brains-string", toml("cohort.toml", brains="B01"), COHORT,
         "brains must be a list"),
    Case("cohort-brains-duplicate", toml("cohort.toml", brains=["B01", "B01", "B03", "B07"]),
         COHORT, "'B01' is listed twice"),
    Case("cohort-brains-bad-name", toml("cohort.toml", brains=["B01", "../x", "B03", "B07"]),
         COHORT, "'../x' in 'brains' is not a valid name"),
    Case("cohort-brains-missing-folder", toml("cohort.toml", brains=["B01", "B03", "B07", "B09"]),
         COHORT, "'B09' is listed in 'brains' but"),
    Case("cohort-brain-not-listed", toml("cohort.toml", brains=["B03", "B07"]), COHORT,
         "'B01' is not listed in the cohort"),
    Case("cohort-brains-empty", toml("cohort.toml", brains=[]), COHORT, "'brains' is empty"),
    Case("thickness-zero", toml("cohort.toml", section_thickness_um=0), COHORT,
         "section_thickness_um = 0 um is out of range"),
    Case("thickness-negative", toml("cohort.toml", section_thickness_um=-20.0), COHORT,
         "section_thickness_um = -20 um is out of range"),
    Case("thickness-string", toml("cohort.toml", section_thickness_um="20"), COHORT,
         "section_thickness_um must be a number, got the string '20'"),
    Case("thickness-nan", toml("cohort.toml", section_thickness_um=math.nan), COHORT,
         "section_thickness_um = nan um is out of range"),
    Case("thickness-bool", toml("cohort.toml", section_thickness_um=True), COHORT,
         "must be a number, got the boolean true"),
    Case("thickness-missing", toml("cohort.toml", section_thickness_um=c.DELETE), COHORT,
         "missing key 'section_thickness_um'"),
    Case("box-inverted", toml("cohort.toml", canonical__box_min_mm=[90.0, -126.0, -72.0],
                              canonical__box_max_mm=[-90.0, 90.0, 108.0]), COHORT,
         "canonical box is inverted or empty on x"),
    Case("box-two-numbers", toml("cohort.toml", canonical__box_min_mm=[-90.0, -126.0]), COHORT,
         "canonical.box_min_mm must be three finite numbers"),
    Case("area-table-absolute", toml("cohort.toml", area_table="/etc/passwd"), COHORT,
         "area_table '/etc/passwd' is absolute"),
    Case("area-table-dotdot", toml("cohort.toml", area_table="../../etc/passwd"), COHORT,
         "area_table '../../etc/passwd' points outside"),
    Case("atlas-maps-outside", toml("cohort.toml", atlas__maps="../outside/pmaps.nii.gz"), COHORT,
         "points outside"),
    Case("atlas-labels-missing-key", toml("cohort.toml", atlas__labels=c.DELETE), COHORT,
         "[atlas] needs both 'maps' and 'labels'"),
    Case("cohort-unknown-key", toml("cohort.toml", section_thickness=20.0), COHORT,
         "unknown key 'section_thickness'"),
    Case("cohort-invalid-toml", text_append("cohort.toml", "\nbrains = [\n"), COHORT,
         "invalid TOML"),
    Case("data-root-relative", toml("cohort.toml", data_roots={"scans": "scans"}), COHORT,
         "data root 'scans' = 'scans' is not an absolute path"),
    Case("data-root-missing", toml("cohort.toml", data_roots={"scans": "/nonexistent/cg-scans"}),
         COHORT, "is not an existing folder"),
    Case("data-root-bad-name", toml("cohort.toml", data_roots={"../up": "/tmp"}), COHORT,
         "data root name '../up' is not a valid name"),
    Case("data-root-undeclared", cell(SECTIONS, str(S), "mask", "@scans/s0182.h5"), SECTIONS,
         "names the data root 'scans', which cohort.toml does not declare", S),
    # -- brain manifest and identifiers ---------------------------------------------------------------
    Case("id-mismatch", toml(BRAIN_TOML, id="B03"), BRAIN_TOML,
         "brain id 'B03' differs from its folder name 'B01'"),
    Case("id-traversal", toml(BRAIN_TOML, id="../../../x"), BRAIN_TOML,
         "brain id '../../../x' is not a valid name"),
    Case("id-slash", toml(BRAIN_TOML, id="B01/x"), BRAIN_TOML, "is not a valid name"),
    Case("id-empty", toml(BRAIN_TOML, id=""), BRAIN_TOML, "brain id '' is not a valid name"),
    Case("id-leading-dash", toml(BRAIN_TOML, id="-B01"), BRAIN_TOML, "is not a valid name"),
    Case("id-number", toml(BRAIN_TOML, id=1), BRAIN_TOML, "brain id 1 is not a valid name"),
    Case("id-missing", toml(BRAIN_TOML, id=c.DELETE), BRAIN_TOML, "missing key 'id'"),
    Case("brain-version-string", toml(BRAIN_TOML, format_version="1"), BRAIN_TOML,
         "format_version must be the integer 1, got the string '1'"),
    Case("shrinkage-zero", toml(BRAIN_TOML, shrinkage_factor=0), BRAIN_TOML,
         "shrinkage_factor = 0 is out of range"),
    Case("shrinkage-negative", toml(BRAIN_TOML, shrinkage_factor=-1.9), BRAIN_TOML,
         "shrinkage_factor = -1.9 is out of range"),
    Case("shrinkage-string", toml(BRAIN_TOML, shrinkage_factor="1.9"), BRAIN_TOML,
         "shrinkage_factor must be a number"),
    Case("shrinkage-inf", toml(BRAIN_TOML, shrinkage_factor=math.inf), BRAIN_TOML,
         "shrinkage_factor = inf is out of range"),
    Case("shrinkage-huge", toml(BRAIN_TOML, shrinkage_factor=1000.0), BRAIN_TOML,
         "shrinkage_factor = 1000 is out of range"),
    Case("step-zero", toml(BRAIN_TOML, digitization_step=0), BRAIN_TOML,
         "digitization_step = 0 must be >= 1"),
    Case("step-negative", toml(BRAIN_TOML, digitization_step=-60), BRAIN_TOML,
         "digitization_step = -60 must be >= 1"),
    Case("step-float", toml(BRAIN_TOML, digitization_step=60.5), BRAIN_TOML,
         "digitization_step must be an integer, got float 60.5"),
    Case("step-string", toml(BRAIN_TOML, digitization_step="60"), BRAIN_TOML,
         "digitization_step must be an integer, got the string '60'"),
    Case("spacing-zero", toml(BRAIN_TOML, spacing_um__mask=0.0), BRAIN_TOML,
         "spacing_um.mask = 0 um is out of range"),
    Case("spacing-string", toml(BRAIN_TOML, spacing_um__image="160"), BRAIN_TOML,
         "spacing_um.image must be a number"),
    Case("spacing-missing", toml(BRAIN_TOML, spacing_um__coords=c.DELETE), BRAIN_TOML,
         "sections.tsv lists coords files (first: section 2) but brain.toml has no "
         "spacing_um.coords", 2),
    Case("hemispheres-bad", toml(BRAIN_TOML, hemispheres=["left"]), BRAIN_TOML,
         "hemispheres = ['left'] is not a list of distinct 'lh' / 'rh'"),
    Case("spacing-not-table", toml(BRAIN_TOML, spacing_um=160.0), BRAIN_TOML,
         "'spacing_um' must be a table"),
    Case("base-unlisted", toml(BRAIN_TOML, base_section=603), BRAIN_TOML,
         "base_section 603 is not listed in sections.tsv", 603),
    Case("base-missing-section", toml(BRAIN_TOML, base_section=542), BRAIN_TOML,
         "base_section 542 is flagged missing", 542),
    Case("base-string", toml(BRAIN_TOML, base_section="602"), BRAIN_TOML,
         "base_section must be an integer"),
    Case("exclusion-absolute", toml(BRAIN_TOML, exclusion_mask="/etc/passwd"), BRAIN_TOML,
         "exclusion_mask '/etc/passwd' is absolute"),
    Case("exclusion-dotdot", toml(BRAIN_TOML, exclusion_mask="../../x.nii.gz"), BRAIN_TOML,
         "points outside"),
    Case("brain-unknown-key", toml(BRAIN_TOML, shrinkage=1.3), BRAIN_TOML,
         "unknown key 'shrinkage'"),
    Case("brain-invalid-toml", text_append(BRAIN_TOML, "\nid = \n"), BRAIN_TOML, "invalid TOML"),
    Case("brain-manifest-missing", lambda root, out: (root / BRAIN_TOML).unlink(), BRAIN_TOML,
         "not found"),
    # -- area table -----------------------------------------------------------------------------------
    Case("area-duplicate-id", text_append("areas.tsv", "3\tExtra\t#123456\n"), AREAS,
         "area id 3 is listed twice"),
    Case("area-duplicate-name", text_append("areas.tsv", "900\tOcc2\t#123456\n"), AREAS,
         "area name 'Occ2' is listed twice"),
    Case("area-slug-collision", text_append("areas.tsv", "900\tOcc2/\t#123456\n"), AREAS,
         "gives the same file name"),
    Case("area-bad-colour", text_append("areas.tsv", "900\tExtra\tred\n"), AREAS,
         "colour 'red' of area 900 is not #rrggbb"),
    Case("area-id-zero", text_append("areas.tsv", "0\tExtra\t#123456\n"), AREAS,
         "area id '0' is not an integer in 1..65535"),
    Case("area-id-float", text_append("areas.tsv", "1.5\tExtra\t#123456\n"), AREAS,
         "area id '1.5' is not an integer"),
    Case("area-id-huge", text_append("areas.tsv", "70000\tExtra\t#123456\n"), AREAS,
         "area id '70000' is not an integer in 1..65535"),
    Case("area-empty-name", text_append("areas.tsv", "900\t\t#123456\n"), AREAS,
         "area 900 has no name"),
    Case("area-missing-column", lambda root, out: c.drop_column(root / "areas.tsv", "color"),
         AREAS, "missing column(s) color"),
    Case("area-removed-still-used",
         rows_edit("areas.tsv", lambda rows: [r for r in rows if r[0] != "4"]),
         "annotations/s0422.h5", "area ids [4] absent from the area table", 422),
    # -- section table --------------------------------------------------------------------------------
    Case("sections-duplicate-row",
         rows_edit(SECTIONS, lambda r: r[:5] + [r[4]] + r[5:]), SECTIONS,
         "section 182 is listed twice", S),
    Case("sections-unordered",
         rows_edit(SECTIONS, lambda r: r[:4] + [r[5], r[4]] + r[6:]), SECTIONS,
         "section numbers are not increasing (242 before 182)", S),
    Case("sections-not-integer", cell(SECTIONS, "62", "section", "62.0"), SECTIONS,
         "section number '62.0' is not an integer"),
    Case("sections-negative", cell(SECTIONS, "2", "section", "-2"), SECTIONS,
         "section number '-2' is not an integer >= 0"),
    # an extra digit in the last row: was "clean", then build-graph blamed the voxel size (TiB)
    Case("sections-absurd-number",
         rows_edit(SECTIONS, lambda r: r[:-1] + [["1000000000", *r[-1][1:]]]), SECTIONS,
         "section number 1000000000 is larger than any series of physical sections", 1000000000),
    Case("sections-beyond-int64",
         rows_edit(SECTIONS, lambda r: r[:-1] + [["99999999999999999999999", *r[-1][1:]]]),
         SECTIONS, "is larger than any series of physical sections"),
    Case("sections-flag-yes", cell(SECTIONS, str(S), "excluded", "yes"), SECTIONS,
         "excluded flag 'yes' is not 0, 1, true or false", S),
    Case("sections-flag-2", cell(SECTIONS, str(S), "mirrored", "2"), SECTIONS,
         "mirrored flag '2'", S),
    Case("sections-path-absolute", cell(SECTIONS, str(S), "mask", "/etc/passwd"), SECTIONS,
         "mask path '/etc/passwd' is absolute", S),
    Case("sections-path-dotdot", cell(SECTIONS, str(S), "image", "../../../etc/passwd"), SECTIONS,
         "image path '../../../etc/passwd' points outside", S),
    Case("sections-symlink-out", symlink_out(MASK), SECTIONS,
         "mask path 'masks/s0182.h5' points outside", S),
    Case("sections-same-file-twice", cell(SECTIONS, str(S), "mask", "masks/s0062.h5"), SECTIONS,
         "is also the mask file of section 62", S),
    Case("sections-missing-column", lambda root, out: c.drop_column(root / SECTIONS, "excluded"),
         SECTIONS, "missing column(s) excluded"),
    Case("sections-capital-column",
         lambda root, out: c.rename_column(root / SECTIONS, "mask", "Mask"), SECTIONS,
         "missing column(s) mask (found 'Mask': column names are lower case)"),
    Case("sections-short-row",
         rows_edit(SECTIONS, lambda r: r[:4] + [r[4][:-1]] + r[5:]), SECTIONS,
         "line 5 has 8 fields but the header has 9"),
    Case("sections-empty", rows_edit(SECTIONS, lambda r: r[:1]), SECTIONS,
         "the section table has no rows"),
    Case("sections-missing-with-file", cell(SECTIONS, "542", "mask", "masks/s0542.h5"), SECTIONS,
         "flagged missing but lists a mask file", 542),
    Case("sections-no-mask", cell(SECTIONS, str(S), "mask", ""), SECTIONS,
         "present section without a tissue mask", S),
    Case("sections-file-not-found", cell(SECTIONS, str(S), "mask", "masks/s9999.h5"),
         "masks/s9999.h5", "mask file not found", S),
    Case("sections-all-excluded",
         rows_edit(SECTIONS, lambda r: [r[0]] + [x[:-1] + ["1"] for x in r[1:]]), SECTIONS,
         "every present section is flagged excluded"),
    Case("sections-not-utf8",
         lambda root, out: (root / SECTIONS).write_bytes(
             (root / SECTIONS).read_bytes().replace(b"images/s0182", b"images/s\xff182")),
         SECTIONS, "not UTF-8"),
    # -- transform table ------------------------------------------------------------------------------
    Case("transform-duplicate-row",
         rows_edit(TRANSFORMS, lambda r: r[:5] + [r[4][:2] + ["1.0"] + r[4][3:]] + r[5:]),
         TRANSFORMS, "transform 182 -> 242 is listed twice", S),
    Case("transform-nan", transform(S, nan_entry), TRANSFORMS,
         "transform 182 -> 242 is not finite", S),
    Case("transform-scaled", transform(S, scale), TRANSFORMS,
         "transform 182 -> 242 is not rigid", S),
    Case("transform-shear", transform(S, shear), TRANSFORMS, "is not rigid", S),
    Case("transform-1e6-mm", transform(S, translate(1e6)), TRANSFORMS, "translates by", S),
    Case("transform-beyond-canvas", transform(S, translate(400.0)), TRANSFORMS,
         "more than the canvas diagonal", S),
    Case("transform-drift",
         both(*[transform(m, translate(100.0)) for m in (62, 122, 182, 242, 302)]), TRANSFORMS,
         "the chain drifts", 2),
    Case("transform-missing-link",
         rows_edit(TRANSFORMS, lambda r: [x for x in r if x[0] != str(S)]), TRANSFORMS,
         "no transform from section 182 to 242", S),
    Case("transform-not-number", rows_edit(TRANSFORMS, lambda r: r[:4] + [r[4][:3] + ["abc"] + r[4][4:]] + r[5:]),
         TRANSFORMS, "holds a value that is not a number", S),
    Case("transform-extra-pair",
         rows_edit(TRANSFORMS, lambda r: r + [["2", "122"] + r[1][2:]]), TRANSFORMS,
         "transform 2 -> 122 does not link consecutive available sections", 2),
    Case("transform-reversed",
         rows_edit(TRANSFORMS, lambda r: r[:4] + [["242", "182"] + r[4][2:]] + r[5:]),
         TRANSFORMS, "moving section 242 is not posterior to fixed section 182", 242),
    Case("transform-missing-column",
         lambda root, out: c.drop_column(root / TRANSFORMS, "m22"), TRANSFORMS,
         "missing column(s) m22"),
    # -- rasters --------------------------------------------------------------------------------------
    Case("mask-float", raster(MASK, lambda a: a.astype(np.float32)), MASK,
         "mask has dtype float32", S),
    Case("mask-uint16", raster(MASK, lambda a: a.astype(np.uint16)), MASK,
         "mask has dtype uint16", S),
    Case("mask-1d", h5(MASK, replace_dataset("levels/0", np.zeros(100, np.uint8), 320.0)), MASK,
         "level 0 has shape (100,)", S),
    Case("mask-3d", raster(MASK, lambda a: np.stack([a, a], axis=2)), MASK,
         "mask has shape (372, 388, 2)", S),
    Case("mask-values", raster(MASK, lambda a: np.where(a == 2, 7, a).astype(np.uint8)), MASK,
         "tissue mask has values [7]", S),
    Case("mask-empty", raster(MASK, lambda a: np.zeros_like(a)), MASK,
         "tissue mask holds no tissue", S),
    Case("mask-intensity-pyramid", raster(MASK, kind="intensity"), MASK,
         "mask is stored with kind='intensity'", S),
    Case("mask-unchunked-bad-values",
         lambda root, out: c.write_contiguous_raster(
             root / MASK, lambda a: np.where(a == 1, 9, a).astype(a.dtype)),
         MASK, "tissue mask has values [9]", S),
    Case("image-float", raster(IMAGE, lambda a: a.astype(np.float32)), IMAGE,
         "image has dtype float32", S),
    Case("image-rgb", raster(IMAGE, lambda a: np.stack([a, a, a], axis=2)), IMAGE,
         "image has shape", S),
    Case("annotation-float", raster(ANNOTATION, lambda a: a.astype(np.float64)), ANNOTATION,
         "annotation has dtype float64", S),
    Case("annotation-unknown-id", raster(ANNOTATION, lambda a: np.where(a > 0, 999, a).astype(a.dtype)),
         ANNOTATION, "area ids [999] absent from the area table", S),
    Case("annotation-negative", raster(ANNOTATION, lambda a: np.where(a > 0, -5, a.astype(np.int32))),
         ANNOTATION, "annotation has negative ids [-5]", S),
    Case("coords-2d", raster(COORDS, lambda a: a[..., 0]), COORDS, "coords has shape", S),
    Case("coords-inf", raster(COORDS, lambda a: np.where(np.isnan(a), a, np.inf).astype(a.dtype)),
         COORDS, "coordinate map holds infinite values", S),
    Case("coords-out-of-range", raster(COORDS, lambda a: a * 3.0), COORDS,
         "canonical coordinates outside [-1, 1]", S),
    Case("section-attribute", raster(MASK, attrs={"section": 62}), MASK,
         "the file's section attribute is 62 but its row in sections.tsv is section 182", S),
    Case("spacing-attribute", raster(MASK, spacing_um=300.0), MASK,
         "mask spacing is 300 um but brain.toml says 320 um", S),
    Case("spacing-attribute-zero",
         h5(MASK, lambda h: h["levels/0"].attrs.__setitem__("spacing_um", 0.0)), MASK,
         "level 0 has no finite spacing_um > 0", S),
    Case("spacing-in-mm", raster(COORDS, spacing_um=640000.0), COORDS, "more than 500 mm", S),
    Case("raster-not-hdf5", bytes_to(MASK, b"not an hdf5 file"), MASK,
         "not a readable HDF5 file", S),
    Case("raster-empty-file", bytes_to(MASK, b""), MASK, "not a readable HDF5 file", S),
    Case("raster-truncated", lambda root, out: c.truncate(root / IMAGE, 0.6), IMAGE,
         ("truncated", "not a readable HDF5 file"), S),
    Case("raster-no-levels", h5(MASK, lambda h: h.__delitem__("levels")), MASK,
         "not a cortexgraph raster", S),
    Case("raster-level-names", h5(MASK, lambda h: h.move("levels/1", "levels/x")), MASK,
         "raster levels must be named 0..1", S),
    Case("raster-corrupt-chunk", lambda root, out: c.corrupt_first_chunk(root / IMAGE), IMAGE,
         "unreadable", S),
    Case("raster-format-version", h5(MASK, lambda h: h.attrs.__setitem__("format_version", 2)),
         MASK, "raster format_version 2 is not supported", S),
    Case("raster-level-is-group",
         h5(MASK, lambda h: (h.__delitem__("levels/1"), h.create_group("levels/1"))), MASK,
         "level 1 is not a dataset", S),
    Case("raster-spacing-string",
         h5(MASK, lambda h: h["levels/0"].attrs.__setitem__("spacing_um", "320")), MASK,
         "level 0 has no finite spacing_um > 0 (spacing_um = '320')", S),
    Case("raster-levels-inconsistent",
         h5(MASK, lambda h: h["levels/1"].attrs.__setitem__("spacing_um", 1000.0)), MASK,
         "level 1 has spacing 1000 um, expected 640 um", S),
    Case("raster-external-link",
         h5(MASK, external_link), MASK, "level 1 is a link to another file", S),
    Case("raster-external-storage", h5(MASK, external_storage), MASK,
         "keeps its pixels in other files", S),
    Case("raster-fifo", lambda root, out: ((root / MASK).unlink(), os.mkfifo(root / MASK)), MASK,
         "mask file not found", S),
    Case("raster-is-directory",
         lambda root, out: ((root / MASK).unlink(), (root / MASK).mkdir()), MASK,
         "mask file not found", S),
    # -- contours -------------------------------------------------------------------------------------
    Case("contours-id-string", geojson(CONTOURS, first_area("4")), CONTOURS,
         "area_id '4' is not an integer", S),
    Case("contours-unknown-id", geojson(CONTOURS, first_area(999)), CONTOURS,
         "contours use area ids [999] absent from the area table", S),
    Case("contours-self-intersection", geojson(CONTOURS, bowtie), CONTOURS,
         "Self-intersection", S),
    Case("contours-invalid-json", lambda root, out: c.truncate(root / CONTOURS, 0.5), CONTOURS,
         "not valid JSON", S),
    Case("contours-not-collection", bytes_to(CONTOURS, b"[1, 2, 3]"), CONTOURS,
         "not a GeoJSON FeatureCollection", S),
    Case("contours-nan-vertex", geojson(CONTOURS, nan_vertex), CONTOURS,
         "pairs of finite numbers", S),
    Case("contours-in-um", geojson(CONTOURS, scale_contours(1000.0)), CONTOURS,
         "outside the section canvas", S),
    # -- atlas ----------------------------------------------------------------------------------------
    Case("atlas-nan", nifti(ATLAS, data=lambda a: np.where(a > 0.5, np.nan, a).astype(np.float32)),
         ATLAS, "holds values that are not finite"),
    Case("atlas-percent", nifti(ATLAS, data=lambda a: a * 100), ATLAS,
         "outside the probabilities [0, 1]"),
    Case("atlas-negative", nifti(ATLAS, data=lambda a: a - 0.5), ATLAS,
         "outside the probabilities [0, 1]"),
    Case("atlas-singular-affine", nifti(ATLAS, affine=c.singular_affine), ATLAS,
         "the affine of the atlas maps is singular"),
    Case("atlas-shifted-affine", nifti(ATLAS, affine=c.shift_affine(1000.0)), ATLAS,
         "the atlas does not overlap the brain's canonical coordinates"),
    Case("atlas-3d", nifti(ATLAS, data=lambda a: a[..., 0]), ATLAS,
         "atlas maps must be a 4D image"),
    Case("atlas-labels-short", rows_edit(ATLAS_LABELS, lambda r: r[:-1]), ATLAS_LABELS,
         "but the maps have"),
    Case("atlas-labels-unknown-area", cell(ATLAS_LABELS, "3", "area_id", "999"), ATLAS_LABELS,
         "area id 999 is not in the cohort's area table"),
    Case("atlas-labels-duplicate-area", cell(ATLAS_LABELS, "3", "area_id", "2"), ATLAS_LABELS,
         "area id 2 is given to two maps"),
    Case("atlas-unreadable", bytes_to(ATLAS, b"\x1f\x8b garbage"), ATLAS, "unreadable NIfTI"),
    Case("atlas-missing-file", lambda root, out: (root / ATLAS).unlink(), ATLAS,
         "atlas maps not found"),
    # -- exclusion mask -------------------------------------------------------------------------------
    Case("exclusion-1000mm-off", nifti(EXCLUSION, affine=c.shift_affine(dx=1000.0)), EXCLUSION,
         "only 0% of the exclusion mask lies on the stacked tissue"),
    Case("exclusion-outside-sections", nifti(EXCLUSION, affine=c.shift_affine(dy=1000.0)),
         EXCLUSION, "the exclusion mask lies outside the sectioned range"),
    Case("exclusion-everything", nifti(EXCLUSION, data=lambda a: np.ones_like(a)), EXCLUSION,
         ("of the gray matter", "of the exclusion mask lies on the stacked tissue")),
    Case("exclusion-empty", nifti(EXCLUSION, data=lambda a: np.zeros_like(a)), EXCLUSION,
         "the exclusion mask is empty"),
    Case("exclusion-4d", nifti(EXCLUSION, data=lambda a: np.stack([a, a], axis=3)), EXCLUSION,
         "the exclusion mask must be 3D"),
    Case("exclusion-fractional", nifti(EXCLUSION, data=lambda a: a * 0.5, dtype=np.float32),
         EXCLUSION, "the exclusion mask is not binary"),
    Case("exclusion-nan",
         nifti(EXCLUSION, data=lambda a: np.where(a > 0, np.nan, 0.0), dtype=np.float32),
         EXCLUSION, "NaN or infinite"),
    Case("exclusion-negative",
         nifti(EXCLUSION, data=lambda a: -a.astype(np.int16), dtype=np.int16), EXCLUSION,
         "negative values"),
    Case("exclusion-singular-affine", nifti(EXCLUSION, affine=c.singular_affine), EXCLUSION,
         "affine is singular"),
    Case("exclusion-unreadable", bytes_to(EXCLUSION, b"garbage"), EXCLUSION, "unreadable NIfTI"),
    Case("exclusion-missing-file", lambda root, out: (root / EXCLUSION).unlink(), EXCLUSION,
         "exclusion mask not found"),
    # -- stages refuse before allocating ----------------------------------------------------------
    Case("build-graph-1e6-mm", transform(S, translate(1e6)), TRANSFORMS, "translates by", S,
         command="build-graph"),
    Case("build-graph-beyond-canvas", transform(S, translate(400.0)), TRANSFORMS,
         "more than the canvas diagonal", S, command="build-graph"),
    Case("build-graph-drift",
         both(*[transform(m, translate(100.0)) for m in (62, 122, 182, 242, 302)]), TRANSFORMS,
         "the chain drifts", 2, command="build-graph"),
    Case("build-graph-id-traversal", toml(BRAIN_TOML, id="../../../x"), BRAIN_TOML,
         "is not a valid name", command="build-graph"),
    Case("build-graph-id-mismatch", toml(BRAIN_TOML, id="B03"), BRAIN_TOML,
         "differs from its folder name", command="build-graph"),
    Case("build-graph-duplicate-row",
         rows_edit(SECTIONS, lambda r: r[:5] + [r[4]] + r[5:]), SECTIONS,
         "section 182 is listed twice", S, command="build-graph"),
    Case("build-graph-float-mask", raster(MASK, lambda a: a.astype(np.float32)), MASK,
         "mask has dtype float32", S, command="build-graph"),
    Case("build-graph-shrinkage-zero", toml(BRAIN_TOML, shrinkage_factor=0), BRAIN_TOML,
         "shrinkage_factor = 0 is out of range", command="build-graph"),
    Case("build-graph-path-out", cell(SECTIONS, str(S), "mask", "../../outside/x.h5"), SECTIONS,
         "points outside", S, command="build-graph"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused(case, cohort):
    outside = cohort.parent / "outside"
    case.mutate(cohort, outside)
    before = c.snapshot(cohort / "derivatives")
    outside_before = c.snapshot(cohort.parent, exclude=cohort)
    result = run(cohort, case.command)
    assert_refused(result, cohort, case, before, outside_before)


def test_battery_covers_every_class():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 70
    for prefix, least in {
        "cohort-": 5,
        "thickness-": 3,
        "box-": 2,
        "data-root-": 3,
        "id-": 5,
        "shrinkage-": 3,
        "step-": 3,
        "spacing-": 3,
        "base-": 2,
        "exclusion-": 8,
        "area-": 6,
        "sections-": 10,
        "transform-": 8,
        "mask-": 5,
        "image-": 2,
        "annotation-": 2,
        "coords-": 3,
        "raster-": 6,
        "contours-": 5,
        "atlas-": 8,
        "build-graph-": 5,
    }.items():
        assert sum(n.startswith(prefix) for n in names) >= least, prefix


# -- legal variants stay clean ----------------------------------------------------------------------
def bom(root, out):
    path = root / SECTIONS
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def crlf(root, out):
    path = root / TRANSFORMS
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def data_root(root, out):
    """Section 182's mask kept in a data root outside the cohort, written as @scans/..."""
    target = c.outside_file(out / "scans", "s0182.h5", root / MASK)
    (root / MASK).unlink()
    c.edit_toml(root / "cohort.toml", data_roots={"scans": str(target.parent)})
    c.set_cell(root / SECTIONS, str(S), "mask", "@scans/s0182.h5")


def linked_into_data_root(root, out):
    """A symbolic link in the brain folder that leads into a declared data root."""
    target = c.outside_file(out / "scans", "s0182.h5", root / MASK)
    (root / MASK).unlink()
    (root / MASK).symlink_to(target)
    c.edit_toml(root / "cohort.toml", data_roots={"scans": str(target.parent)})


LEGAL = {
    "unchunked-hdf5": lambda root, out: c.write_contiguous_raster(root / MASK),
    "unchunked-image": lambda root, out: c.write_contiguous_raster(root / IMAGE),
    "byte-order-mark": bom,
    "crlf-line-ends": crlf,
    "blank-last-lines": text_append(SECTIONS, "\n\n"),
    "metadata-table": toml(BRAIN_TOML, metadata={"scanner": "x", "stain": "Merker"}),
    "flags-true-false": cell(SECTIONS, "542", "missing", "TRUE"),
    "data-root": data_root,
    "link-into-data-root": linked_into_data_root,
    "float64-coords": raster(COORDS, lambda a: a.astype(np.float64)),
    "uint16-image": raster(IMAGE, lambda a: a.astype(np.uint16) * 200),
    "float-binary-exclusion": nifti(EXCLUSION, dtype=np.float32),
}


@pytest.mark.parametrize("name", sorted(LEGAL))
def test_legal_variants_are_clean(name, cohort):
    LEGAL[name](cohort, cohort.parent / "outside")
    outside_before = c.snapshot(cohort.parent, exclude=cohort)
    result = run(cohort, "check")
    assert result.exit_code == 0, result.output
    assert c.snapshot(cohort.parent, exclude=cohort) == outside_before
