"""The reading side of LSM labels: runs and areas, per-area files, the combine rule (a pixel claimed
by two areas becomes 0 and is counted), currency checks, grid mismatches.

Predictions are written here by hand under lsm-predict records (the stage contract without models),
so the combine rule is checked on known pixels; test_lsm_stages.py reads real predictions."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import write_raster
from cortexgraph.derivatives import Derivatives, StageRun
from cortexgraph.errors import CortexgraphError, DataFormatError, UpstreamError
from cortexgraph.lsm.labels import (
    RunLabels,
    combined_section_labels,
    is_run_name,
    lsm_area_sections,
    lsm_runs,
)
from cortexgraph.lsm.layout import predict_id, prediction_path

SHAPE = (6, 8)


def write_predictions(store, brain, run, area, arrays: dict, spacing_um: float = 320.0):
    """Commit ``{section: uint8 classes}`` as the lsm-predict output of (run, area)."""
    sid = predict_id(brain.id, run, area)
    parameters = {"run": run, "area": area.name, "area_id": area.id}
    with StageRun(store, sid, parameters=parameters, overwrite=True) as stage:
        paths = []
        for section, classes in arrays.items():
            path = prediction_path(store.root / brain.id, run, area, section)
            write_raster(path, np.asarray(classes, np.uint8), spacing_um, kind="labels")
            paths.append(path)
        stage.commit(paths)
    return paths


def classes(box=None, outside=None):
    out = np.full(SHAPE, 2, np.uint8)  # other cortex
    if box is not None:
        out[box] = 3
    if outside is not None:
        out[outside] = 255
    return out


@pytest.fixture
def two_areas(cohort):
    brain = find_brain("B01", cohort)
    store = Derivatives.of(brain)
    areas = brain.cohort.areas
    hoc1, hoc2 = areas.resolve("hOc1"), areas.resolve("hOc2")
    # section 10: both areas, overlapping in rows 2, cols 3 (one pixel); section 20: hOc1 only
    write_predictions(
        store,
        brain,
        "lsm-ms",
        hoc1,
        {
            10: classes((slice(0, 3), slice(0, 4)), (slice(None), slice(7, 8))),
            20: classes((slice(1, 2), slice(1, 2))),
        },
    )
    write_predictions(store, brain, "lsm-ms", hoc2, {10: classes((slice(2, 5), slice(3, 6)))})
    return store, brain, hoc1, hoc2


def test_combine_rule(two_areas):
    store, brain, hoc1, hoc2 = two_areas
    labels, spacing, info = combined_section_labels(store, brain, "lsm-ms", 10)
    expected = np.zeros(SHAPE, np.uint16)
    expected[0:3, 0:4] = hoc1.id
    expected[2:5, 3:6] = hoc2.id
    expected[2, 3] = 0  # claimed by both
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint16 and spacing == 320.0
    assert info["conflict_px"] == 1 and info["section"] == 10 and info["run"] == "lsm-ms"
    assert info["areas"]["hOc1"]["area_px"] == 12 and info["areas"]["hOc2"]["area_px"] == 9
    assert info["predicted_px"] == SHAPE[0] * SHAPE[1]  # hOc2's ROI covers hOc1's outside column
    # the order of the areas does not matter; one area alone has no conflict
    again, _, _ = combined_section_labels(store, brain, "lsm-ms", 10, areas=["hOc2", "hOc1"])
    np.testing.assert_array_equal(again, expected)
    alone, _, info = combined_section_labels(store, brain, "lsm-ms", 10, areas=[hoc1.id])
    np.testing.assert_array_equal(alone == hoc1.id, classes((slice(0, 3), slice(0, 4))) == 3)
    assert info["conflict_px"] == 0 and list(info["areas"]) == ["hOc1"]
    # a section only one area was predicted on
    run = RunLabels(store, brain, "lsm-ms")
    assert run.sections == [10, 20] and [a.name for a in run.areas] == ["hOc1", "hOc2"]
    assert [sid.label for sid in run.upstream] == [
        "B01/lsm-predict@lsm-ms@hOc1",
        "B01/lsm-predict@lsm-ms@hOc2",
    ]
    labels, _, info = run.combined(20)
    assert int((labels == hoc1.id).sum()) == 1 and list(info["areas"]) == ["hOc1"]
    with pytest.raises(CortexgraphError, match="no prediction on this section") as error:
        run.combined(30)
    assert "10, 20" in str(error.value)


def test_runs_files_and_currency(two_areas):
    store, brain, hoc1, hoc2 = two_areas
    assert {k: [a.name for a in v] for k, v in lsm_runs(store, brain).items()} == {
        "lsm-ms": ["hOc1", "hOc2"]
    }
    files = lsm_area_sections(store, brain, "lsm-ms", "hOc1")
    assert list(files) == [10, 20]
    assert files[10] == store.root / "B01" / "lsm" / "lsm-ms" / "hOc1" / "pred" / "s0010.h5"
    # another run of the same areas has files of its own
    write_predictions(store, brain, "gsm-ms", hoc1, {10: classes((slice(0, 1), slice(0, 1)))})
    other = lsm_area_sections(store, brain, "gsm-ms", hoc1)
    assert other[10] != files[10] and sorted(lsm_runs(store, brain)) == ["gsm-ms", "lsm-ms"]
    with pytest.raises(UpstreamError, match="has not been computed"):
        lsm_area_sections(store, brain, "gsm-ms", hoc2)
    with pytest.raises(CortexgraphError, match="no predictions"):
        RunLabels(store, brain, "lsm-other")
    # a prediction file changed behind the record's back: refused, naming the command
    write_raster(files[20], classes(), 320.0, kind="labels")
    with pytest.raises(UpstreamError, match="modified after the stage wrote it") as error:
        combined_section_labels(store, brain, "lsm-ms", 10)
    assert error.value.exit_code == 4 and "lsm predict B01" in str(error.value)
    # run names are checked before they become paths
    for bad in ("../lsm-ms", "lsm-ms/x", "/tmp/lsm-ms", "ms", "xsm-ms", ""):
        with pytest.raises(CortexgraphError):
            lsm_area_sections(store, brain, bad, hoc1)


def test_areas_of_one_run_must_share_the_grid(two_areas):
    store, brain, hoc1, hoc2 = two_areas
    write_predictions(store, brain, "lsm-ms", hoc2, {10: np.full((3, 4), 3, np.uint8)})
    with pytest.raises(DataFormatError, match="differ in grid") as error:
        combined_section_labels(store, brain, "lsm-ms", 10)
    assert error.value.section == 10
    write_predictions(store, brain, "lsm-ms", hoc2, {10: classes()}, spacing_um=160.0)
    with pytest.raises(DataFormatError, match="differ in grid"):
        combined_section_labels(store, brain, "lsm-ms", 10)


def test_is_run_name():
    assert is_run_name("lsm-ms") and is_run_name("gsm-hr-seed3")
    for name in ("gnn-gat3", "lsm", "lsm-", "annotation", "truth", "../lsm-ms", "lsm-a/b"):
        assert not is_run_name(name)
