"""cortexgraph.resources: available memory, the refusal before allocating, the stack estimate."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "data"))

import corrupt as c  # noqa: E402
from brain_factory import make_brain  # noqa: E402

from cortexgraph.data.manifest import Cohort  # noqa: E402
from cortexgraph.data.stack import SectionStack  # noqa: E402
from cortexgraph.errors import DataFormatError, ParameterError, ResourceError  # noqa: E402
from cortexgraph.reconstruct.volume import stack_tissue_volume  # noqa: E402
from cortexgraph.resources import (  # noqa: E402
    available_memory_bytes,
    estimate_stack_volume,
    format_bytes,
    parse_bytes,
    require_memory,
)

GIB = 1 << 30


@pytest.fixture
def valid_cohort(tmp_path):
    """The small valid brain of tests/data/brain_factory.py (six sections, 12 x 10 mm)."""
    make_brain(tmp_path / "cohort")
    return tmp_path / "cohort"


def fake_system(tmp_path, meminfo_kib=None, v2=None, v1=None):
    """Files standing in for /proc/meminfo, /proc/self/cgroup and /sys/fs/cgroup."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    meminfo = tmp_path / "meminfo"
    if meminfo_kib is not None:
        meminfo.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {meminfo_kib} kB\n")
    proc = tmp_path / "cgroup"
    root = tmp_path / "sys"
    lines = []
    if v2 is not None:
        folder = root / "job"
        folder.mkdir(parents=True)
        (folder / "memory.max").write_text(f"{v2[0]}\n")
        (folder / "memory.current").write_text(f"{v2[1]}\n")
        lines.append("0::/job")
    if v1 is not None:
        folder = root / "memory" / "job"
        folder.mkdir(parents=True)
        (folder / "memory.limit_in_bytes").write_text(f"{v1[0]}\n")
        (folder / "memory.usage_in_bytes").write_text(f"{v1[1]}\n")
        lines.append("4:memory:/job")
    proc.write_text("\n".join(lines) + "\n")
    return {"meminfo": meminfo, "proc_cgroup": proc, "cgroup_root": root}


def test_available_memory_takes_the_smallest_source(tmp_path):
    files = fake_system(tmp_path, meminfo_kib=8 * 1024 * 1024)
    assert available_memory_bytes(**files, environ={}) == 8 * GIB
    files = fake_system(tmp_path / "v2", meminfo_kib=8 * 1024 * 1024, v2=(3 * GIB, GIB))
    assert available_memory_bytes(**files, environ={}) == 2 * GIB
    files = fake_system(tmp_path / "max", meminfo_kib=8 * 1024 * 1024, v2=("max", GIB))
    assert available_memory_bytes(**files, environ={}) == 8 * GIB  # no cgroup limit
    files = fake_system(tmp_path / "v1", meminfo_kib=8 * 1024 * 1024, v1=(4 * GIB, 3 * GIB))
    assert available_memory_bytes(**files, environ={}) == GIB
    files = fake_system(tmp_path / "unl", meminfo_kib=8 * 1024 * 1024, v1=(1 << 63, 0))
    assert available_memory_bytes(**files, environ={}) == 8 * GIB
    files = fake_system(tmp_path / "env", meminfo_kib=8 * 1024 * 1024)
    assert available_memory_bytes(**files, environ={"CORTEXGRAPH_MAX_MEMORY": "512M"}) == 512 << 20


def test_available_memory_on_this_machine_is_positive():
    assert available_memory_bytes() > 0


def test_parse_and_format_bytes():
    assert parse_bytes("8G") == 8 * GIB
    assert parse_bytes("1.5 GiB") == int(1.5 * GIB)
    assert parse_bytes("4096") == 4096
    with pytest.raises(ParameterError, match="CORTEXGRAPH_MAX_MEMORY"):
        parse_bytes("lots")
    assert format_bytes(3 * GIB) == "3.0 GiB"
    assert format_bytes(512) == "512 B"


def test_require_memory_refuses_with_exit_code_5():
    require_memory(GIB, "a test", "use less", available=4 * GIB)
    with pytest.raises(ResourceError) as error:
        require_memory(
            8 * GIB,
            "build-graph: the stacked volume",
            "use --voxel-mm 0.6",
            file="B01/transforms.tsv",
            available=4 * GIB,
        )
    assert error.value.exit_code == 5
    text = str(error.value)
    assert "8.0 GiB" in text and "4.0 GiB" in text and "--voxel-mm 0.6" in text
    with pytest.raises(ResourceError):
        require_memory(float("inf"), "x", "y", available=4 * GIB)
    with pytest.raises(ResourceError):  # the headroom: 95% of what is there is too much
        require_memory(0.95 * 4 * GIB, "x", "y", available=4 * GIB)


def test_stack_estimate_equals_the_reconstructed_shape(valid_cohort):
    brain = Cohort.read(valid_cohort).brain("B01")
    for voxel in (None, 0.1, 0.25):
        estimate = estimate_stack_volume(brain, voxel)
        volume, affine, _ = stack_tissue_volume(SectionStack(brain), voxel)
        assert estimate.shape == volume.shape
        assert np.allclose(estimate.origin_mm, affine[:3, 3], atol=1e-9)
        assert estimate.voxels == volume.size
        assert estimate.nbytes(1) == volume.nbytes
    assert estimate.largest_mask_bytes == 100 * 120  # 10 x 12 mm at 100 um, uint8
    with pytest.raises(ParameterError):
        estimate_stack_volume(brain, 0.0)


def test_cropped_estimate_covers_the_reconstructed_crop(valid_cohort):
    """The cropped shape from the masks' coarse levels is never smaller than the crop the
    reconstruction makes, and at most a coarse pixel plus a voxel larger on each side."""
    brain = Cohort.read(valid_cohort).brain("B01")
    for voxel in (0.1, 0.25, 0.5):
        estimate = estimate_stack_volume(brain, voxel)
        volume, _, info = stack_tissue_volume(SectionStack(brain), voxel, crop_to_tissue=True)
        assert estimate.cropped_shape[1] == volume.shape[1] == estimate.shape[1]
        for axis in (0, 2):
            assert volume.shape[axis] <= estimate.cropped_shape[axis] <= estimate.shape[axis]
            # one pixel of the mask level read (<= the voxel) and one voxel of rounding per side
            assert estimate.cropped_shape[axis] <= volume.shape[axis] + 4
        if voxel == 0.1:  # the fixture's canvas holds glass; at 0.5 mm the margin covers it
            assert estimate.cropped_voxels < 0.8 * estimate.voxels


def test_stack_estimate_refuses_a_huge_translation_without_allocating(valid_cohort):
    path = valid_cohort / "B01/transforms.tsv"
    c.transform_row(path, 115, lambda m: m + np.array([[0, 0, 300.0], [0, 0, 0], [0, 0, 0]]))
    brain = Cohort.read(valid_cohort).brain("B01")
    tracemalloc.start()
    with pytest.raises(DataFormatError) as error:
        estimate_stack_volume(brain, 0.01)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert error.value.section == 115 and error.value.file.endswith("transforms.tsv")
    assert "more than the canvas diagonal" in error.value.message
    assert peak < 50 << 20  # the (30000 x ... voxel) volume was never allocated


def test_stack_estimate_feeds_require_memory(valid_cohort):
    brain = Cohort.read(valid_cohort).brain("B01")
    estimate = estimate_stack_volume(brain, 0.001)  # 1 um voxels: 12000 x 81 x 10000
    with pytest.raises(ResourceError):
        require_memory(estimate.nbytes(1), "stack", "coarser voxels", available=4 * GIB)
