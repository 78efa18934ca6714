"""Ward clusters of features against areas (the encoder study's table)."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.features.clusters import (
    cluster_area_table,
    cluster_scores,
    ward_clusters,
    write_cluster_table,
)


def _blobs(seed=0):
    """Three areas: 7 and 9 as tight blobs, area 4 split into two blobs far apart."""
    rng = np.random.default_rng(seed)
    centres = {7: [(0, 0)], 9: [(10, 0)], 4: [(0, 10), (10, 10)]}
    x, y = [], []
    for area, cs in centres.items():
        for c in cs:
            n = 60 if area != 4 else 30
            x.append(rng.normal(c, 0.5, size=(n, 2)))
            y.append(np.full(n, area))
    return np.vstack(x), np.concatenate(y)


def test_ward_clusters_recover_separated_groups_and_the_table_names_them(tmp_path):
    x, areas = _blobs()
    labels = ward_clusters(x, 4)
    assert sorted(np.bincount(labels)[1:]) == [30, 30, 60, 60]
    assert np.bincount(labels)[1] == 60  # numbered by decreasing size
    rows = cluster_area_table(labels, areas, {7: "hOc1", 9: "hOc2", 4: "FG1"})
    assert all(r["areas"] == 1 and r["top_areas"][0][1] == 100.0 for r in rows)
    assert sorted(r["top_areas"][0][0] for r in rows) == ["FG1", "FG1", "hOc1", "hOc2"]
    scores = cluster_scores(labels, areas)
    assert scores["purity"] == 1.0 and 0.7 < scores["ari"] < 1.0  # FG1 is split in two
    # three clusters: the two FG1 blobs join (Ward merges the closest pair), everything is pure
    three = ward_clusters(x, 3)
    assert cluster_scores(three, areas)["ari"] == pytest.approx(1.0)
    # deterministic, and random features do not look like areas
    np.testing.assert_array_equal(ward_clusters(x, 4), labels)
    rng = np.random.default_rng(1)
    noise = cluster_scores(ward_clusters(rng.normal(size=x.shape), 4), areas)
    assert noise["ari"] < 0.1
    path, summary = write_cluster_table(
        tmp_path / "clusters.tsv", {"scl": (x, areas)}, {7: "hOc1", 9: "hOc2", 4: "FG1"}, n_clusters=4
    )
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["features", "cluster", "patches", "share_pct", "areas", "top_areas"]
    assert len(lines) == 5 and lines[1].startswith("scl\t1\t60\t33.3\t1\t")
    assert summary["scl"]["clusters"] == 4 and summary["scl"]["purity"] == 1.0
    assert ward_clusters(np.zeros((0, 3))).shape == (0,) and list(ward_clusters(x[:2], 10)) in (
        [1, 2],
        [2, 1],
    )
