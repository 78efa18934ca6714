"""Manifest reading: every problem of a file is found, values round-trip, paths resolve in one place."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import corrupt as c  # noqa: E402

from cortexgraph.data.check import check_brain  # noqa: E402
from cortexgraph.data.manifest import (  # noqa: E402
    AreaTable,
    Brain,
    Cohort,
    find_brain,
    findings_of,
    read_tsv,
)
from cortexgraph.errors import DataFormatError  # noqa: E402


def test_all_problems_of_a_manifest_are_carried_and_listed_by_check(valid_cohort):
    path = valid_cohort / "B01/brain.toml"
    c.edit_toml(path, format_version="1", shrinkage_factor=0, digitization_step=15.5, id="B02")
    with pytest.raises(DataFormatError) as error:
        Brain.read(valid_cohort / "B01")
    found = findings_of(error.value)
    assert len(found) == 4
    assert "and 3 more problem(s)" in error.value.message
    assert all(f.file == str(path) for f in found)
    messages = [p.message for p in check_brain(valid_cohort / "B01")]
    assert len(messages) == 4
    assert any("format_version must be the integer 1, got the string '1'" in m for m in messages)
    assert any("differs from its folder name" in m for m in messages)


def test_cohort_round_trip_with_data_roots_and_metadata(valid_cohort, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    cohort = Cohort.read(valid_cohort)
    cohort.data_roots = {"scans": scans}
    cohort.extra = {"metadata": {"lab": "x"}}
    cohort.write_manifest()
    again = Cohort.read(valid_cohort)
    assert again.data_roots == {"scans": scans}
    assert again.extra == {"metadata": {"lab": "x"}}
    assert again.brain_ids == ["B01"]
    assert again.canonical_box_min_mm == (-90.0, -126.0, -72.0)
    assert again.path("@scans/a.h5") == scans / "a.h5"
    assert again.area_table_path == valid_cohort / "areas.tsv"


def test_brain_reads_typed_values(valid_cohort):
    brain = find_brain("B01", valid_cohort)
    assert brain.id == "B01" and brain.root == valid_cohort / "B01"
    assert isinstance(brain.digitization_step, int) and brain.digitization_step == 15
    assert brain.shrinkage_factor == pytest.approx(1.2)
    assert brain.base_section == 130
    assert brain.path("masks/s0100.h5") == valid_cohort / "B01/masks/s0100.h5"
    assert [r.section for r in brain.sections] == [100, 115, 130, 145, 160, 175]
    assert set(brain.transforms) == {(100, 115), (115, 130), (130, 160), (160, 175)}


def test_section_table_findings_name_lines_and_sections(valid_cohort):
    path = valid_cohort / "B01/sections.tsv"
    rows = c.read_rows(path)
    rows[2][rows[0].index("missing")] = "maybe"
    rows[3][rows[0].index("mask")] = "/abs/mask.h5"
    c.write_rows(path, rows)
    with pytest.raises(DataFormatError) as error:
        find_brain("B01", valid_cohort).sections  # noqa: B018
    found = findings_of(error.value)
    assert [(f.section, f.file) for f in found] == [(115, str(path)), (130, str(path))]
    assert "line 3: missing flag 'maybe'" in found[0].message
    assert "'/abs/mask.h5' is absolute" in found[1].message


def test_transform_reader_keeps_rigid_rows_and_refuses_the_rest(valid_cohort):
    path = valid_cohort / "B01/transforms.tsv"
    c.transform_row(path, 115, lambda m: m @ np.diag([1.0, 1.0, 1.0]))
    assert len(find_brain("B01", valid_cohort).transforms) == 4
    c.transform_row(path, 115, lambda m: m @ np.diag([1.01, 1.0, 1.0]))
    with pytest.raises(DataFormatError, match="transform 115 -> 130 is not rigid") as error:
        find_brain("B01", valid_cohort).transforms  # noqa: B018
    assert error.value.section == 115


def test_area_table_rules(tmp_path):
    path = tmp_path / "areas.tsv"
    path.write_text("id\tname\tcolor\n1\thOc1\t#ff0000\n2\thOc 1\t#00ff00\n3\tFG1\t#0000FF\n")
    table = AreaTable.read(path)  # 'hOc1' and 'hOc 1' have different slugs (hOc1, hOc_1)
    assert list(table.ids) == [1, 2, 3]
    assert table.resolve("3").name == "FG1" and table.resolve("hOc1").id == 1
    path.write_text("id\tname\tcolor\n1\thOc1\t#ff0000\n2\tHOC1\t#00ff00\n")
    with pytest.raises(DataFormatError, match="same file name"):
        AreaTable.read(path)  # slugs compare without case: file systems may ignore it


def test_read_tsv_strips_and_skips_blank_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"\xef\xbb\xbfa\tb\r\n 1 \t2\r\n\r\n")
    assert read_tsv(path, ("a", "b")) == [{"a": "1", "b": "2"}]
    path.write_text("a\ta\n1\t2\n")
    with pytest.raises(DataFormatError, match="appear more than once"):
        read_tsv(path, ("a",))


def test_spacings_are_required_only_for_the_kinds_of_files_a_brain_has(valid_cohort):
    """A brain with masks and images only (no annotations, contours or coordinate maps) needs no
    annotation or coords spacing; once sections.tsv lists such files, the missing spacing is named."""
    brain = Brain.read(valid_cohort / "B01", cohort=Cohort.read(valid_cohort))
    records = [
        type(r)(**{**r.__dict__, "annotation": "", "contours": "", "coords": ""})
        for r in brain.sections
    ]
    brain.write_sections(records)
    c.edit_toml(
        valid_cohort / "B01/brain.toml",
        spacing_um__annotation=c.DELETE,
        spacing_um__coords=c.DELETE,
        hemispheres=["rh"],
    )
    brain = Brain.read(valid_cohort / "B01", cohort=Cohort.read(valid_cohort))
    assert brain.annotation_spacing_um is None and brain.coords_spacing_um is None
    assert brain.hemispheres == ("rh",)
    assert len(brain.sections) == 6
    assert check_brain(brain) == []
    brain.write_manifest()  # round trip without the absent spacings
    again = Brain.read(valid_cohort / "B01", cohort=Cohort.read(valid_cohort))
    assert again.annotation_spacing_um is None and again.hemispheres == ("rh",)
    # a contour file again: the annotation spacing is needed to rasterise it
    records[1] = type(records[1])(**{**records[1].__dict__, "contours": "annotations/s0115.geojson"})
    again.write_sections(records)
    fresh = Brain.read(valid_cohort / "B01", cohort=Cohort.read(valid_cohort))
    with pytest.raises(DataFormatError, match="no spacing_um.annotation") as error:
        fresh.sections  # noqa: B018
    assert error.value.section == 115


def test_spacing_of_names_brain_toml_when_a_spacing_is_not_given(valid_cohort):
    brain = find_brain("B01", valid_cohort)
    assert brain.spacing_of("annotation") == pytest.approx(brain.annotation_spacing_um, abs=0)
    brain.annotation_spacing_um = None
    with pytest.raises(DataFormatError) as error:
        brain.spacing_of("annotation")  # was a TypeError (None in a division) in its callers
    assert error.value.file == str(valid_cohort / "B01" / "brain.toml")
    assert "[spacing_um]" in (error.value.fix or "")


def test_area_table_of_a_brain_read_without_its_cohort_is_a_data_format_error(valid_cohort):
    brain = find_brain("B01", valid_cohort)
    assert brain.area_table is brain.cohort.areas
    alone = Brain.read(valid_cohort / "B01")
    assert alone.cohort is None
    with pytest.raises(DataFormatError, match="without its cohort"):
        alone.area_table  # noqa: B018 - the property raises
    with pytest.raises(DataFormatError, match="section thickness is unknown"):
        alone.thickness_um  # noqa: B018 - was 20 µm, assumed without a word


def test_a_brain_folder_outside_a_cohort_is_refused(valid_cohort, tmp_path):
    """A brain folder copied out of its cohort used to be built with an assumed 20 µm section
    thickness and outputs next to it."""
    import shutil

    lone = tmp_path / "lone"
    shutil.copytree(valid_cohort / "B01", lone / "B01")
    with pytest.raises(DataFormatError, match="brain folder 'B01' has no cohort") as error:
        find_brain(lone / "B01")
    assert error.value.file == str(lone / "cohort.toml")
    assert find_brain(valid_cohort / "B01").cohort is not None  # inside its cohort: found
    assert not (lone / "derivatives").exists()


def test_a_wrong_brain_id_or_cohort_folder_is_named_as_such(valid_cohort, tmp_path):
    """These used to say "no brain.toml in <cohort>", naming neither the listed brains nor the
    missing or mistaken cohort folder."""
    with pytest.raises(DataFormatError, match=r"brain 'B02' is not listed in the cohort \(brains: B01"):
        find_brain("B02", valid_cohort)
    with pytest.raises(DataFormatError, match="cohort folder .*absent does not exist"):
        find_brain("B01", tmp_path / "absent")
    with pytest.raises(DataFormatError, match="cohort folder .*cohort.toml is a file"):
        find_brain("B01", valid_cohort / "cohort.toml")


def test_area_resolve_refuses_a_missing_key_with_a_data_format_error(valid_cohort):
    areas = Cohort.read(valid_cohort).areas
    first = areas.areas[0]
    assert areas.resolve(first.id) is first
    assert areas.resolve(str(first.id)) is first
    assert areas.resolve(first.name) is first
    with pytest.raises(DataFormatError, match="unknown area None"):
        areas.resolve(None)  # a web request without "area"


def test_an_area_is_found_by_the_file_name_form_of_its_name(tmp_path):
    """Output paths and record scopes hold an area's slug ("Area_hOc1_V1"): a fix that names the
    area that way must resolve, and a near miss is named."""
    from cortexgraph.data.manifest import AreaTable

    path = tmp_path / "areas.tsv"
    path.write_text("id\tname\tcolor\n1\tArea hOc1 (V1)\t#ff0000\n2\thOc2\t#00ff00\n")
    areas = AreaTable.read(path)
    assert areas.resolve("Area_hOc1_V1") is areas.resolve("Area hOc1 (V1)") is areas.resolve(1)
    assert areas.resolve("hOc2").id == 2
    with pytest.raises(DataFormatError, match=r"unknown area 'hOc3' \(close: hOc2\)"):
        areas.resolve("hOc3")
