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


def test_nifti_mm_keeps_data_affine_and_scanner_mm_frame(tmp_path):
    import nibabel as nib
    import numpy as np

    from cortexgraph.outputs import write_nifti_mm

    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7.0
    affine = np.array(
        [[0.5, 0, 0, -12.25], [0, 0.02, 0, 3.5], [0, 0, 0.5, 40.0], [0, 0, 0, 1]], dtype=float
    )
    path = write_nifti_mm(tmp_path / "volume.nii.gz", data, affine)
    assert path == tmp_path / "volume.nii.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.nii.gz"]  # no temporary left
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(image.dataobj), data, rtol=0, atol=0)
    np.testing.assert_allclose(image.affine, affine, rtol=0, atol=1e-6)
    qform, qcode = image.get_qform(coded=True)
    sform, scode = image.get_sform(coded=True)
    assert (int(qcode), int(scode)) == (1, 1)  # NIFTI_XFORM_SCANNER_ANAT
    np.testing.assert_allclose(qform, affine, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sform, affine, rtol=0, atol=1e-6)
    assert image.header.get_xyzt_units()[0] == "mm"


def test_plain_json_is_what_the_json_writer_writes(tmp_path):
    import json
    from pathlib import Path

    import numpy as np

    from cortexgraph.outputs import plain_json, write_json_atomic

    value = {
        "files": [Path("a/b.nii.gz")],
        "n": np.int64(3),
        "v": np.float32(0.5),
        "xs": np.arange(3),
        "pair": (1, 2),
        "missing": float("nan"),
    }
    plain = plain_json(value)
    assert plain["files"] == ["a/b.nii.gz"] and plain["xs"] == [0, 1, 2] and plain["pair"] == [1, 2]
    assert type(plain["n"]) is int and type(plain["v"]) is float and np.isnan(plain["missing"])
    written = json.loads(write_json_atomic(tmp_path / "v.json", value).read_text())
    assert json.dumps(plain, sort_keys=True) == json.dumps(written, sort_keys=True)
