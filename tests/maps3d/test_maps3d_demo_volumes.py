"""The demo's areal volumes (cortexgraph.maps3d.stage.demo_volumes): the GNN source next to the true
labels and the phantom's exact measures, in one table."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from cortexgraph.data.manifest import Cohort
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.layout import label_source_dir
from cortexgraph.maps3d.stage import VOLUME_COLUMNS, demo_volumes, format_volume_table


@pytest.mark.slow
def test_gnn_labels_equal_to_the_truth_give_the_truth_volumes(tiny_cohort, tmp_path):
    root = tmp_path / "tiny"
    shutil.copytree(tiny_cohort, root)
    cohort = Cohort.read(root)
    store = Derivatives.of(cohort)
    # a model run whose projected labels are the phantom's true labels
    run_dir = store.root / "runs" / "perfect"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps({"name": "perfect", "train_brains": ["B01", "B03"], "transfer": "B07"})
    )
    out = label_source_dir(store.root, "B07", "gnn-perfect")
    out.mkdir(parents=True)
    files = []
    for path in sorted((root / "ground_truth/B07/labels").glob("s*.h5")):
        shutil.copyfile(path, out / path.name)
        files.append(out / path.name)
    record_external(store, StageId("project", "B07", ("gnn-perfect",)), files, {"source": "truth"})

    table, rows = demo_volumes(cohort, "perfect", ["hOc1"], out=tmp_path / "volumes.tsv")
    assert [r["hemisphere"] for r in rows] == ["lh", "rh", "both"]
    assert {r["brain"] for r in rows} == {"B07"} and {r["role"] for r in rows} == {"transfer"}
    both = rows[-1]
    # the same labels give the same map: no difference
    assert both["volume_mm3_gnn"] == both["volume_mm3_truth_labels"] > 0
    assert both["volume_gnn_vs_truth_labels_pct"] == 0.0
    assert both["pial_mm2_gnn"] == both["pial_mm2_truth_labels"]
    # and the map of sampled sections is close to the phantom's exact volume (tests/cli: 10 %)
    assert both["volume_mm3_truth_labels"] == pytest.approx(both["volume_mm3_true"], rel=0.1)
    with open(table) as handle:
        saved = list(csv.DictReader(handle, delimiter="\t"))
    assert tuple(saved[0]) == VOLUME_COLUMNS and len(saved) == 3
    assert float(saved[2]["volume_mm3_gnn"]) == pytest.approx(both["volume_mm3_gnn"], abs=0.05)
    # each source also has its own files and records
    for source in ("gnn-perfect", "truth"):
        assert (store.root / "B07/maps3d" / source / "stats.tsv").is_file()
        assert store.record(StageId("stats", "B07", (source, "hOc1"))) is not None
    text = format_volume_table(rows)
    assert text.splitlines()[0].split()[:4] == ["brain", "role", "area", "hemi"]
    assert len(text.splitlines()) == 4
