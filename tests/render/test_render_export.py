"""GIfTI label / functional files and FreeSurfer annotations (cortexgraph.render.export): round
trips."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cortexgraph.data.colors import UNLABELLED_RGB
from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.errors import DataFormatError
from cortexgraph.render.export import (
    area_label_table,
    read_gifti_labels,
    write_freesurfer_annot,
    write_gifti_labels,
    write_gifti_scalars,
)

AREAS = AreaTable(
    [Area(4, "hOc1", "#d62728"), Area(7, "hOc2", "#1f77b4"), Area(12, "FG1", "#2ca02c")]
)


def test_gifti_label_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 4, 7, 12], size=500)
    path = write_gifti_labels(tmp_path / "lh_pred.label.gii", labels, area_label_table(AREAS))
    assert path.name == "lh_pred.label.gii" and not list(tmp_path.glob(".*"))
    back, table = read_gifti_labels(path)
    np.testing.assert_array_equal(back, labels)
    assert table == {
        0: ("unlabelled", UNLABELLED_RGB),
        4: ("hOc1", (0xD6, 0x27, 0x28)),
        7: ("hOc2", (0x1F, 0x77, 0xB4)),
        12: ("FG1", (0x2C, 0xA0, 0x2C)),
    }
    image = nib.load(path)
    assert image.darrays[0].intent == nib.nifti1.intent_codes["NIFTI_INTENT_LABEL"]
    assert image.labeltable.labels[0].alpha == 0.0  # unlabelled is transparent


def test_labels_outside_the_table_are_refused(tmp_path):
    with pytest.raises(DataFormatError):
        write_gifti_labels(tmp_path / "x.label.gii", np.array([4, 5]), area_label_table(AREAS))
    with pytest.raises(DataFormatError):
        write_freesurfer_annot(tmp_path / "x.annot", np.array([4, 5]), area_label_table(AREAS))


def test_freesurfer_annotation_round_trip(tmp_path):
    labels = np.array([0, 4, 4, 7, 12, 0, 12])
    path = write_freesurfer_annot(tmp_path / "lh.annot", labels, area_label_table(AREAS))
    index, ctab, names = nib.freesurfer.read_annot(path)
    names = [n.decode() for n in names]
    assert names == ["hOc1", "hOc2", "FG1"]
    np.testing.assert_array_equal(index, [-1, 0, 0, 1, 2, -1, 2])
    np.testing.assert_array_equal(
        ctab[:, :3], [[0xD6, 0x27, 0x28], [0x1F, 0x77, 0xB4], [44, 160, 44]]
    )


def test_gifti_scalars_round_trip(tmp_path):
    values = np.random.default_rng(1).random((50, 3)).astype(np.float32)
    path = write_gifti_scalars(tmp_path / "lh_co.func.gii", values, ["co_x", "co_y", "co_z"])
    image = nib.load(path)
    assert [d.meta["Name"] for d in image.darrays] == ["co_x", "co_y", "co_z"]
    np.testing.assert_array_equal(np.column_stack([d.data for d in image.darrays]), values)
