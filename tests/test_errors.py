"""User-facing errors: the file may be given as a path object."""

from __future__ import annotations

import pickle

from cortexgraph.errors import DataFormatError


def test_errors_accept_path_objects_for_the_file(tmp_path):
    error = DataFormatError("bad", file=tmp_path / "x.h5", section=3, fix="redo it")
    assert error.file == str(tmp_path / "x.h5")
    assert str(error) == f"{tmp_path / 'x.h5'}: section 3: bad Fix: redo it"
    again = pickle.loads(pickle.dumps(error))  # crosses worker processes unchanged
    assert type(again) is DataFormatError and str(again) == str(error)
