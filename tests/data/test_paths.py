"""Identifiers and paths: brain arguments, symbolic links, data roots, containment.

Every test works on a copy of the tiny phantom beside an ``outside`` folder and asserts that nothing
outside the cohort was created or changed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import corrupt as c  # noqa: E402

from cortexgraph.cli.main import app  # noqa: E402
from cortexgraph.data.manifest import Cohort, find_brain  # noqa: E402
from cortexgraph.data.names import inside, resolve_data_path  # noqa: E402
from cortexgraph.data.stack import SectionStack  # noqa: E402
from cortexgraph.errors import DataFormatError  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tiny_cohort, tmp_path_factory) -> Path:
    return c.copy_cohort(tiny_cohort, tmp_path_factory.mktemp("paths") / "cohort")


@pytest.fixture
def cohort(template, tmp_path) -> Path:
    root = tmp_path / "cohort"
    shutil.copytree(template, root, symlinks=True)
    (tmp_path / "outside").mkdir()
    return root


def check(root: Path | None, brain: str):
    args = ["check"] + (["--root", str(root)] if root is not None else [])
    return runner.invoke(app, [*args, "--", brain], env={"CORTEXGRAPH_ROOT": ""})


@pytest.mark.parametrize(
    "brain, text",
    [
        ("../B01", "is not a brain id of the cohort"),
        ("B01/..", "is not a brain id of the cohort"),
        ("B01/masks", "is not a brain id of the cohort"),
        (".", "is not a brain id of the cohort"),
        ("B 01", "is not a brain id of the cohort"),
        ("-B01", "is not a brain id of the cohort"),
        ("", "is empty"),
        ("B09", "is not listed in the cohort (brains: B01"),
        ("/etc", "is not a brain id of the cohort"),
    ],
)
def test_brain_arguments_that_are_not_brains_of_the_cohort(cohort, brain, text):
    outside = c.snapshot(cohort.parent, exclude=cohort)
    result = check(cohort, brain)
    assert result.exit_code == 2, result.output
    assert text in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (cohort / "derivatives").exists()
    assert c.snapshot(cohort.parent, exclude=cohort) == outside


def test_brain_of_another_folder_is_refused_with_root(cohort, tmp_path):
    elsewhere = tmp_path / "outside" / "B01"
    shutil.copytree(cohort / "B01", elsewhere)
    result = check(cohort, str(elsewhere))
    assert result.exit_code == 2 and "is not a brain id of the cohort" in result.output


def test_brain_given_by_folder_path(cohort, monkeypatch):
    monkeypatch.delenv("CORTEXGRAPH_ROOT", raising=False)
    assert check(None, str(cohort / "B01")).exit_code == 0
    brain = find_brain(cohort / "B01")
    assert brain.cohort is not None and brain.cohort.root == cohort
    assert brain.derivatives == cohort / "derivatives/cortexgraph/B01"
    monkeypatch.chdir(cohort)
    brain = find_brain("B01/")
    assert brain.derivatives == cohort / "derivatives/cortexgraph/B01"
    assert check(cohort, "B01/").exit_code == 0  # tab completion adds the slash


def second_cohort(tmp_path: Path, source: Path, links: dict[str, Path]) -> Path:
    """A cohort folder whose brain folders are symbolic links (``{name: target}``)."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(source / "areas.tsv", other / "areas.tsv")
    shutil.copytree(source / "atlas", other / "atlas")
    shutil.copy(source / "cohort.toml", other / "cohort.toml")
    c.edit_toml(other / "cohort.toml", brains=sorted(links))
    for name, target in links.items():
        (other / name).symlink_to(target, target_is_directory=True)
    return other


def test_symlinked_brain_writes_to_the_cohort_given(cohort, tmp_path, monkeypatch):
    monkeypatch.delenv("CORTEXGRAPH_ROOT", raising=False)
    other = second_cohort(tmp_path, cohort, {"B01": cohort / "B01"})
    brain = find_brain("B01", other)
    assert brain.root == other / "B01"
    assert brain.cohort.root == other
    assert brain.derivatives == other / "derivatives/cortexgraph/B01"
    by_path = find_brain(other / "B01")
    assert by_path.derivatives == other / "derivatives/cortexgraph/B01"
    with SectionStack(brain) as stack:  # files are read through the link, inside the target
        assert stack.tissue_mask(182).any()
    before = c.snapshot(cohort)
    assert check(other, "B01").exit_code == 0
    assert c.snapshot(cohort) == before
    assert not (other / "derivatives").exists()


def test_symlinked_brain_must_be_named_by_its_id(cohort, tmp_path):
    other = second_cohort(tmp_path, cohort, {"B05": cohort / "B01"})
    result = check(other, "B05")
    assert result.exit_code == 2
    assert "brain id 'B01' differs from its folder name 'B05'" in " ".join(result.output.split())


def test_file_links_out_of_the_cohort_are_refused_unless_declared(cohort, tmp_path):
    mask = cohort / "B01/masks/s0182.h5"
    target = c.outside_file(tmp_path / "outside" / "scans", "s0182.h5", mask)
    mask.unlink()
    mask.symlink_to(target)
    refused = check(cohort, "B01")
    assert refused.exit_code == 2 and "points outside" in refused.output
    c.edit_toml(cohort / "cohort.toml", data_roots={"scans": str(target.parent)})
    assert check(cohort, "B01").exit_code == 0, check(cohort, "B01").output


def test_link_loop_is_a_clear_error(cohort):
    mask = cohort / "B01/masks/s0182.h5"
    mask.unlink()
    mask.symlink_to(mask)
    result = check(cohort, "B01")
    assert result.exit_code == 2
    assert "section 182" in result.output and "Traceback" not in result.output


def test_exclusion_mask_link_out_is_refused(cohort, tmp_path):
    path = cohort / "B01/exclusion.nii.gz"
    target = c.outside_file(tmp_path / "outside", "exclusion.nii.gz", path)
    path.unlink()
    path.symlink_to(target)
    result = check(cohort, "B01")
    assert result.exit_code == 2
    assert "exclusion_mask 'exclusion.nii.gz' points outside" in " ".join(result.output.split())


def test_data_root_paths(cohort, tmp_path):
    scans = tmp_path / "outside" / "scans"
    scans.mkdir()
    c.edit_toml(cohort / "cohort.toml", data_roots={"scans": str(scans)})
    roots = Cohort.read(cohort).data_roots
    assert roots == {"scans": scans}
    brain = find_brain("B01", cohort)
    assert brain.path("@scans/B01/s1.h5") == scans / "B01/s1.h5"
    for bad, text in [
        ("@scans/../../etc/passwd", "points outside"),
        ("@scans", "names a data root but no file"),
        ("@nope/x.h5", "does not declare"),
        ("@scans//etc/passwd", "is absolute"),
    ]:
        with pytest.raises(DataFormatError, match=text):
            brain.path(bad)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("/etc/passwd", "is absolute"),
        ("../x", "points outside"),
        ("a/../../x", "points outside"),
        ("a\x00b", "NUL"),
    ],
)
def test_inside_refuses(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        inside(tmp_path, text, what="mask path", file="sections.tsv", section=3)


def test_resolve_data_path_names_file_and_section(tmp_path):
    with pytest.raises(DataFormatError) as error:
        resolve_data_path("../x", tmp_path, {}, what="mask path", file="t.tsv", section=7)
    assert error.value.file == "t.tsv" and error.value.section == 7
    with pytest.raises(DataFormatError, match="must be a string"):
        resolve_data_path(3, tmp_path, {})  # type: ignore[arg-type]
    assert resolve_data_path("a/b.h5", tmp_path, {}) == tmp_path / "a/b.h5"
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    assert resolve_data_path("link/b.h5", tmp_path, {}) == tmp_path / "link/b.h5"
    os.symlink("/", tmp_path / "root-link")
    with pytest.raises(DataFormatError, match="points outside"):
        resolve_data_path("root-link/etc/passwd", tmp_path, {})


def test_a_path_outside_its_folder_says_where_it_leads_and_names_the_folder(tmp_path):
    """The message used to say neither where the path leads nor that a symbolic link took it
    there, and its fix named "the brain or cohort folder" for a path that was in the cohort."""
    from cortexgraph.data.names import inside
    from cortexgraph.errors import DataFormatError

    brain, outside = tmp_path / "cohort" / "B01", tmp_path / "elsewhere"
    (brain / "masks").mkdir(parents=True)
    outside.mkdir()
    (outside / "s0001.h5").write_bytes(b"x")
    (brain / "masks" / "s0001.h5").symlink_to(outside / "s0001.h5")
    with pytest.raises(DataFormatError) as error:
        inside(brain, "masks/s0001.h5", what="mask path")
    message = str(error.value)
    real = os.path.realpath(outside / "s0001.h5")
    assert f"resolves to {real} through a symbolic link" in message
    assert f"keep the file inside {brain}" in message
    with pytest.raises(DataFormatError) as error:
        inside(brain, "../B03/masks/s0002.h5", what="mask path")
    message = str(error.value)
    assert "symbolic link" not in message and f"keep the file inside {brain}" in message
