from __future__ import annotations

import json

import pytest

from cortexgraph.outputs import (
    atomic_path,
    file_sha256,
    provenance_path,
    should_compute,
    write_json_atomic,
    write_provenance,
)


def test_atomic_path_keeps_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]


def test_provenance_records_parameters_and_checksums(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("abc")
    output = write_json_atomic(tmp_path / "out.json", {"value": 1})
    record_path = write_provenance(
        output, {"voxel_size_mm": 0.3}, inputs=[source, tmp_path], measured={"seconds": 1.5}
    )
    assert record_path == provenance_path(output) == tmp_path / "out.json.prov.json"
    record = json.loads(record_path.read_text())
    assert record["parameters"] == {"voxel_size_mm": 0.3}
    assert record["inputs"][str(source)] == file_sha256(source)
    assert record["inputs"][str(source)].startswith("ba7816bf")  # sha256("abc")
    assert record["inputs"][str(tmp_path)] is None
    assert record["measured"]["seconds"] == 1.5
    assert record["cortexgraph_version"]


def test_should_compute_reuses_existing_outputs(tmp_path):
    out = tmp_path / "x"
    assert should_compute(out)
    out.write_text("done")
    assert not should_compute(out)
    assert should_compute(out, overwrite=True)


def test_atomic_output_has_umask_permissions(tmp_path):
    import os
    import stat

    from cortexgraph.outputs import write_text_atomic

    path = write_text_atomic(tmp_path / "shared.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
