"""Pictures of an encoder run: confusion matrices and a 2D embedding of the features by area.

``confusion.png``: row-normalised confusion matrices (rows: true area, columns: predicted area) of the
SCL linear evaluation and of the CE baseline on test and transfer patches, with their macro F1.
``embedding.png``: the features ``h`` of the test patches projected by PCA (and t-SNE if asked),
SCL next to CE, each point coloured by its area's colour from the area table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable
from cortexgraph.outputs import atomic_path
from cortexgraph.training.metrics import confusion_matrix

__all__ = ["row_normalised_confusion", "pca_2d", "confusion_figure", "embedding_figure"]


def row_normalised_confusion(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confusion matrix over ``labels`` with each row divided by its total (rows without
    samples stay 0)."""
    cm = confusion_matrix(y, pred, labels=labels).astype(np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components of ``features`` (N, D) and the explained variance ratios."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), 2)), np.zeros(2)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = x @ vt[:2].T
    if comps.shape[1] < 2:
        comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return comps, np.pad(ratio, (0, 2 - len(ratio)))


def _colours(areas: AreaTable, labels: np.ndarray) -> np.ndarray:
    rgb = np.array([a.rgb for a in areas.areas], dtype=np.float64) / 255.0
    return rgb[np.clip(labels, 0, len(rgb) - 1)]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def confusion_figure(
    path: Path,
    areas: AreaTable,
    scl_out: dict,
    ce_out: dict,
    scl_scores: dict,
    ce_scores: dict,
) -> Path:
    """2 x 2 panel of row-normalised confusion matrices (SCL / CE x test / transfer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("test", "transfer") if s in scl_out]
    fig, axes = plt.subplots(
        2, max(1, len(splits)), figsize=(6.0 * max(1, len(splits)), 11.0), squeeze=False
    )
    for col, split in enumerate(splits):
        present = np.union1d(
            np.union1d(scl_out[split][0], scl_out[split][1]), ce_out[split][1]
        ).astype(np.int64)
        names = [areas.areas[k].name for k in present]
        for row, (title, out, scores) in enumerate(
            (("SCL linear", scl_out, scl_scores), ("CE", ce_out, ce_scores))
        ):
            y, pred = out[split][0], out[split][1]
            cm = row_normalised_confusion(y, pred, present)
            ax = axes[row, col]
            ax.imshow(cm, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{title}, {split}: macro F1 {scores[split]['macro_f1']:.3f}")
            ticks = np.arange(len(present))
            step = max(1, len(present) // 40)
            ax.set_xticks(ticks[::step], [names[k] for k in ticks[::step]], rotation=90, fontsize=6)
            ax.set_yticks(ticks[::step], [names[k] for k in ticks[::step]], fontsize=6)
            ax.set_xlabel("predicted area")
            ax.set_ylabel("true area")
    fig.tight_layout()
    return _save(fig, path)


def embedding_figure(
    path: Path,
    areas: AreaTable,
    scl_out: dict,
    ce_out: dict,
    *,
    tsne: bool = False,
    seed: int = 0,
    max_points: int = 3000,
) -> Path:
    """PCA (and optionally t-SNE) of the test-patch features of SCL and CE, coloured by area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = "test" if "test" in scl_out else next(iter(scl_out))
    rng = np.random.default_rng(seed)
    n = len(scl_out[split][0])
    keep = np.sort(rng.choice(n, size=min(n, max_points), replace=False)) if n else np.zeros(0, int)
    methods = ["PCA"] + (["t-SNE"] if tsne else [])
    fig, axes = plt.subplots(len(methods), 2, figsize=(11.0, 5.0 * len(methods)), squeeze=False)
    for col, (title, out) in enumerate((("SCL", scl_out), ("CE", ce_out))):
        y, feats = out[split][0][keep], out[split][2][keep]
        colours = _colours(areas, y)
        for row, method in enumerate(methods):
            ax = axes[row, col]
            if method == "PCA":
                xy, ratio = pca_2d(feats)
                label = f"{title} features, PCA ({100 * ratio.sum():.0f}% of the variance)"
            else:
                from sklearn.manifold import TSNE

                perplexity = float(min(30.0, max(2.0, (len(feats) - 1) / 3.0)))
                xy = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
                    feats
                )
                label = f"{title} features, t-SNE"
            ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=4, linewidths=0)
            ax.set_title(f"{label}; {split} patches coloured by area", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)
