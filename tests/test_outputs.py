from __future__ import annotations

import pytest

from cortexgraph.outputs import atomic_path


def test_atomic_path_keeps_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.tsv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]


def test_atomic_output_has_umask_permissions(tmp_path):
    import os
    import stat

    from cortexgraph.outputs import write_text_atomic

    path = write_text_atomic(tmp_path / "shared.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_node_array_files_have_the_same_bytes_when_a_dataset_is_held(tmp_path, monkeypatch):
    """Chunk placement must not depend on when Python lets go of a dataset (Dask's profiler holds
    frames): the engine and a serial run wrote the same arrays with different bytes before."""
    import h5py
    import numpy as np

    from cortexgraph.derivatives.layout import write_node_arrays

    rng = np.random.default_rng(0)
    co = rng.random((1763, 3), dtype=np.float32)
    pm = rng.random((1763, 100), dtype=np.float32)
    plain = write_node_arrays(tmp_path / "plain.h5", "k", 1763, co=co, pm=pm).read_bytes()
    held: list = []
    create = h5py.Group.create_dataset

    def create_and_hold(self, *args, **kwargs):
        held.append(create(self, *args, **kwargs))
        return held[-1]

    monkeypatch.setattr(h5py.Group, "create_dataset", create_and_hold)
    again = write_node_arrays(tmp_path / "held.h5", "k", 1763, co=co, pm=pm).read_bytes()
    held.clear()
    assert again == plain
