"""File identity, stage keys, what makes a record stale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cortexgraph.derivatives import identity
from cortexgraph.derivatives.identity import MISSING, IdentityCache, file_identity
from cortexgraph.derivatives.record import (
    PathNamer,
    StageRecord,
    canonical_parameters,
    describe_changes,
    read_record,
    stage_key,
    write_record,
)


def test_small_files_are_identified_by_content(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"mask v1")
    b.write_bytes(b"mask v1")
    assert file_identity(a) == file_identity(b) == "sha256:" + __import__("hashlib").sha256(
        b"mask v1"
    ).hexdigest()
    a.write_bytes(b"mask v2")
    assert file_identity(a) != file_identity(b)
    assert file_identity(tmp_path / "none") == MISSING
    with pytest.raises(IsADirectoryError):
        file_identity(tmp_path)


def test_cache_reuses_digests_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    path.write_bytes(b"x" * 100)
    cache = IdentityCache(tmp_path / "cache.json")
    calls = []
    real = identity._sha256_file
    monkeypatch.setattr(identity, "_sha256_file", lambda p: calls.append(p) or real(p))
    first = file_identity(path, cache)
    assert file_identity(path, cache) == first and len(calls) == 1
    cache.save()
    # a new cache object reads the file: still no new hash
    again = IdentityCache(tmp_path / "cache.json")
    assert file_identity(path, again) == first and len(calls) == 1
    # same size, same mtime, other content (an in-place edit that restores the mtime): the change
    # time differs, so the stat key differs and the file is hashed again
    st = path.stat()
    path.write_bytes(b"y" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_identity(path, again) != first and len(calls) == 2


def test_large_files_use_stat_and_head_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "SMALL_FILE_BYTES", 1000)
    monkeypatch.setattr(identity, "HEAD_TAIL_BYTES", 100)
    path = tmp_path / "image.h5"
    path.write_bytes(bytes(5000))
    ident = file_identity(path)
    assert ident.startswith("stat:5000:")
    os.utime(path, ns=(1, 2_000_000_000))
    assert file_identity(path) != ident  # another modification time: another identity


def test_key_depends_on_everything_that_decides_the_result():
    base = dict(
        stage="build-graph",
        scope=(),
        code_version=1,
        parameters={"voxel_size_mm": None, "edges": (1, 2)},
        inputs={"B01/m.h5": "sha256:a"},
        upstream={},
    )
    key = stage_key(**base)
    assert key == stage_key(**{**base, "parameters": {"edges": [1, 2], "voxel_size_mm": None}})
    for change in (
        {"code_version": 2},
        {"parameters": {"voxel_size_mm": 1.5, "edges": (1, 2)}},
        {"inputs": {"B01/m.h5": "sha256:b"}},
        {"inputs": {"B01/m.h5": "sha256:a", "B01/n.h5": "sha256:c"}},
        {"upstream": {"B01/build-graph": "k"}},
        {"scope": ("gat3",)},
    ):
        assert stage_key(**{**base, **change}) != key, change
    assert canonical_parameters({"x": float("nan"), "p": Path("/a")}) == {"x": "nan", "p": "/a"}
    with pytest.raises(TypeError):
        canonical_parameters({"x": object()})


def test_describe_changes_names_each_difference(tmp_path):
    record = StageRecord(
        stage="build-graph", brain="B01", scope=(), key="k", code_version=1,
        parameters={"voxel_size_mm": None, "refine": True},
        inputs={"B01/a.h5": "sha256:1", "B01/b.h5": "sha256:2"},
        upstream={"x": "1"}, outputs={},
    )  # fmt: skip
    reasons = describe_changes(
        record,
        code_version=2,
        parameters={"voxel_size_mm": 1.5, "refine": True},
        inputs={"B01/a.h5": "sha256:9", "B01/b.h5": MISSING, "B01/c.h5": "sha256:3"},
        upstream={"x": "2"},
    )
    assert reasons == [
        "code version changed (1 -> 2)",
        "parameter voxel_size_mm changed (null -> 1.5)",
        "input B01/a.h5 changed",
        "input B01/b.h5 was deleted",
        "new input B01/c.h5",
        "upstream x was recomputed",
    ]
    write_record(tmp_path / "r.json", record)
    assert read_record(tmp_path / "r.json") == record
    (tmp_path / "bad.json").write_text("{not json")
    assert read_record(tmp_path / "bad.json") is None
    assert read_record(tmp_path / "absent.json") is None


def test_describe_changes_names_the_changed_field_of_a_nested_table():
    record = StageRecord(
        stage="build-graph", brain="B01", scope=(), key="k", code_version=1,
        parameters={"build_graph": {"voxel_size_mm": None, "refine": True}, "seed": 0},
        inputs={}, upstream={}, outputs={},
    )  # fmt: skip
    reasons = describe_changes(
        record,
        code_version=1,
        parameters={"build_graph": {"voxel_size_mm": 1.5, "refine": True, "new": 2}, "seed": 0},
        inputs={},
        upstream={},
    )
    assert reasons == [
        "parameter build_graph.new changed (null -> 2)",
        "parameter build_graph.voxel_size_mm changed (null -> 1.5)",
    ]


def test_path_namer_inside_cohort_and_data_roots(tmp_path):
    cohort, scans = tmp_path / "cohort", tmp_path / "scans"
    cohort.mkdir()
    scans.mkdir()
    namer = PathNamer(cohort, {"scans": scans})
    assert namer.name(cohort / "B01" / "m.h5") == "B01/m.h5"
    assert namer.name(scans / "B01" / "s1.tif") == "@scans/B01/s1.tif"
    assert namer.path("@scans/B01/s1.tif") == scans.resolve() / "B01" / "s1.tif"
    assert namer.path("B01/m.h5") == cohort.resolve() / "B01" / "m.h5"
    # symbolic links inside the cohort keep their cohort name
    (cohort / "B02").symlink_to(scans)
    assert namer.name(cohort / "B02" / "x.h5") == "B02/x.h5"
