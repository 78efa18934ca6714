"""Run names, area file names and the paths and stage ids of the LSM layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortexgraph.data.manifest import Area
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.layout import (
    area_slug,
    check_run_name,
    default_run_name,
    evaluate_id,
    model_dir,
    plan_id,
    predict_id,
    prediction_path,
    run_kind,
    section_of_prediction,
    train_id,
)

AREA = Area(id=4, name="Area hOc1 (V1)", color="#000000")


def test_run_names():
    assert default_run_name("lsm", "ms") == "lsm-ms" and default_run_name("gsm", "hr") == "gsm-hr"
    assert check_run_name("lsm-ms-long", "lsm") == "lsm-ms-long"
    assert run_kind("gsm-hr.2") == "gsm"
    with pytest.raises(CortexgraphError, match="is a gsm name"):
        check_run_name("gsm-hr", "lsm")
    bad = ["ms", "lsm", "lsm-", "gnn-ms", "../lsm-ms", "lsm-ms/..", "lsm ms", "/lsm-ms", "-lsm-ms"]
    bad += ["lsm-" + "x" * 70, "lsm-m\x00s", "lsm-ms\n", ""]
    for name in bad:
        with pytest.raises(CortexgraphError):
            check_run_name(name)
    for kind, arch in (("xsm", "ms"), ("lsm", "xl")):
        with pytest.raises(CortexgraphError):
            default_run_name(kind, arch)


def test_paths_and_stage_ids():
    out = Path("/c/derivatives/cortexgraph/B01")
    assert area_slug(AREA) == "Area_hOc1_V1"
    assert prediction_path(out, "lsm-ms", AREA, 7) == out / "lsm/lsm-ms/Area_hOc1_V1/pred/s0007.h5"
    assert (
        model_dir(out, "lsm-ms", AREA, (842, 422))
        == out / "lsm/lsm-ms/Area_hOc1_V1/models/s0842-s0422"
    )
    assert model_dir(out, "gsm-ms", AREA, None) == out / "lsm/gsm-ms/Area_hOc1_V1/models/global"
    assert section_of_prediction("x/s0722.h5") == 722
    assert plan_id("B01", "lsm-ms", AREA).label == "B01/lsm-plan@lsm-ms@Area_hOc1_V1"
    assert train_id("B01", "lsm-ms", AREA, (422, 842)).label == (
        "B01/lsm-train@lsm-ms@Area_hOc1_V1@s0422-s0842"
    )
    assert train_id("B01", "gsm-ms", AREA, None).file_stem == "lsm-train@gsm-ms@Area_hOc1_V1"
    assert predict_id("B01", "lsm-ms", AREA).stage == "lsm-predict"
    assert evaluate_id("B01", "lsm-ms").label == "B01/lsm-evaluate@lsm-ms"
    assert "lsm predict B01" in predict_id("B01", "lsm-ms", AREA).command()
    with pytest.raises(CortexgraphError, match="reserves"):
        area_slug(Area(id=9, name="evaluation", color="#000000"))
    with pytest.raises(CortexgraphError):
        prediction_path(out, "../x", AREA, 1)
