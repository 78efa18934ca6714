"""Ward clustering of encoder features, tabulated against the areas (the encoder study's analysis).

The contrastive paper (Schiffer et al., ISBI 2021) clusters the features of its test patches into
10 clusters by Ward's hierarchical (agglomerative) clustering and lists, for each cluster, the areas
its patches come from with their shares: a good encoder gives clusters dominated by one area or by
a group of related areas (hOc1 alone in one cluster, higher visual areas in another), without
having seen cluster labels. This module does the same with scikit-learn's
``AgglomerativeClustering(linkage="ward")`` (Euclidean distances on the features as they are) and
adds two agreement scores between clusters and areas: the adjusted Rand index and the normalised
mutual information (both 1 for identical partitions, about 0 for unrelated ones).

:func:`ward_clusters` takes an array and returns labels; :func:`cluster_area_table` the rows of
the table; :func:`write_cluster_table` writes ``clusters.tsv`` (one row per cluster and source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "N_CLUSTERS",
    "ward_clusters",
    "cluster_area_table",
    "cluster_scores",
    "write_cluster_table",
    "CLUSTER_COLUMNS",
]

N_CLUSTERS = 10
"""Clusters of the encoder study (the contrastive paper: 10 clusters of the test features)."""

CLUSTER_COLUMNS = ("features", "cluster", "patches", "share_pct", "areas", "top_areas")


def ward_clusters(features: np.ndarray, n_clusters: int = N_CLUSTERS) -> np.ndarray:
    """Ward clusters of feature vectors.

    Parameters
    ----------
    features : (N, D) float array (encoder features ``h`` of N patches).
    n_clusters : clusters (at most N; fewer points than clusters give one cluster per point).

    Returns
    -------
    (N,) int64 cluster labels, numbered 1..k by decreasing size (ties by the first patch), so the
    same features give the same table.
    """
    from sklearn.cluster import AgglomerativeClustering

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = int(min(max(n_clusters, 1), n))
    if k == 1:
        return np.ones(n, dtype=np.int64)
    raw = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    sizes = np.bincount(raw, minlength=k)
    first = np.array([np.flatnonzero(raw == c)[0] for c in range(k)])
    order = np.lexsort((first, -sizes))  # largest first
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(1, k + 1)
    return rank[raw]


def cluster_area_table(
    clusters: np.ndarray, areas: np.ndarray, names: Mapping[int, str], top: int = 6
) -> list[dict]:
    """One row per cluster: patches, share of all patches, areas present, most frequent areas.

    Parameters
    ----------
    clusters : (N,) cluster labels (:func:`ward_clusters`).
    areas : (N,) area ids of the patches.
    names : area id -> name.
    top : areas listed per cluster.

    Returns
    -------
    Rows with ``cluster``, ``patches``, ``share_pct``, ``areas`` (distinct areas in the cluster) and
    ``top_areas``: ``[(name, percent of the cluster), ...]`` by decreasing share.
    """
    clusters = np.asarray(clusters)
    areas = np.asarray(areas)
    rows = []
    for c in np.unique(clusters):
        members = areas[clusters == c]
        ids, counts = np.unique(members, return_counts=True)
        order = np.lexsort((ids, -counts))[:top]
        rows.append(
            {
                "cluster": int(c),
                "patches": int(len(members)),
                "share_pct": 100.0 * len(members) / max(len(clusters), 1),
                "areas": int(len(ids)),
                "top_areas": [
                    (names.get(int(ids[i]), str(int(ids[i]))), 100.0 * counts[i] / len(members))
                    for i in order
                ],
            }
        )
    return rows


def cluster_scores(clusters: np.ndarray, areas: np.ndarray) -> dict[str, float]:
    """Agreement of clusters and areas: adjusted Rand index, normalised mutual information, and
    purity (share of patches in their cluster's most frequent area)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    clusters = np.asarray(clusters)
    areas = np.asarray(areas)
    if len(clusters) == 0:
        return {"ari": float("nan"), "nmi": float("nan"), "purity": float("nan")}
    purity = sum(np.unique(areas[clusters == c], return_counts=True)[1].max() for c in np.unique(clusters))
    return {
        "ari": float(adjusted_rand_score(areas, clusters)),
        "nmi": float(normalized_mutual_info_score(areas, clusters)),
        "purity": float(purity / len(clusters)),
    }


def write_cluster_table(
    path: str | Path,
    feature_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    names: Mapping[int, str],
    *,
    n_clusters: int = N_CLUSTERS,
    top: int = 6,
) -> tuple[Path, dict[str, dict]]:
    """Cluster each feature set and write the tables into one TSV (atomically).

    Parameters
    ----------
    path : the TSV (columns :data:`CLUSTER_COLUMNS`; ``top_areas`` as ``name pct%; ...``).
    feature_sets : ``{name: (features (N, D), area ids (N,))}``, e.g. ``{"scl": ..., "ce": ...}``.
    names : area id -> name.

    Returns
    -------
    ``(path, {name: {"clusters": k, "ari", "nmi", "purity"}})``.
    """
    from cortexgraph.data.manifest import format_tsv
    from cortexgraph.outputs import write_text_atomic

    lines: list[Sequence[str]] = []
    summary: dict[str, dict] = {}
    for name, (features, areas) in feature_sets.items():
        labels = ward_clusters(features, n_clusters)
        summary[name] = {"clusters": int(len(np.unique(labels))), **cluster_scores(labels, areas)}
        for row in cluster_area_table(labels, areas, names, top):
            lines.append(
                (
                    name,
                    str(row["cluster"]),
                    str(row["patches"]),
                    f"{row['share_pct']:.1f}",
                    str(row["areas"]),
                    "; ".join(f"{a} {p:.1f}%" for a, p in row["top_areas"]),
                )
            )
    return write_text_atomic(Path(path), format_tsv(CLUSTER_COLUMNS, lines)), summary
