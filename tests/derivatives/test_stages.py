"""cortexgraph.derivatives.stages: the command a stale-upstream error and ``status`` print for a
stage is one a user can paste: every name is filled in, never a placeholder such as RUN or AREA."""

from __future__ import annotations

import re

import pytest

from cortexgraph.derivatives.stages import STAGES, StageId


@pytest.mark.parametrize(
    ("stage", "scope", "command"),
    [
        (
            "lsm-plan",
            ("lsm-ms", "hOc1"),
            "cortexgraph lsm chain B01 --name lsm-ms --area hOc1 --arch ms",
        ),
        (
            "lsm-train",
            ("gsm-hr", "hOc1"),
            "cortexgraph lsm gsm B01 --name gsm-hr --area hOc1 --arch hr",
        ),
        (
            "lsm-train",
            ("lsm-lr-s0511-s0751", "hOc1", "s0511-s0751"),
            "cortexgraph lsm train B01 --name lsm-lr-s0511-s0751 --area hOc1 --arch lr "
            "--sections 511,751 --predict",
        ),
        (
            "lsm-predict",
            ("lsm-ms-long", "Area_hOc1_V1"),
            "cortexgraph lsm predict B01 --name lsm-ms-long --area Area_hOc1_V1 (if it reports a "
            "stale model: cortexgraph lsm chain B01 --name lsm-ms-long --area Area_hOc1_V1 (with "
            "the run's --arch and options))",
        ),
    ],
)
def test_lsm_commands_name_the_run_and_the_area(stage, scope, command):
    assert StageId(stage, "B01", scope).command() == command


def test_no_stage_command_prints_a_placeholder():
    scopes = {"lsm-plan": ("lsm-ms", "hOc1"), "lsm-train": ("lsm-ms", "hOc1", "s0511-s0751"),
              "lsm-predict": ("lsm-ms", "hOc1"), "map3d": ("truth", "hOc1"),
              "stats": ("truth", "hOc1"), "project": ("gnn-g3",), "render": ("gnn-g3", "pred")}  # fmt: skip
    for name in STAGES:
        command = StageId(name, "B01", scopes.get(name, ("x1",))).command()
        assert not re.search(r"\b(RUN|AREA|NAME|INTERVAL)\b", command), (name, command)
