"""Pictures of an encoder run: confusion matrices and a 2D embedding of the features by area.

``confusion.png``: row-normalised confusion matrices (rows: true area with its patch count,
columns: predicted area) of the SCL linear evaluation and of the CE baseline on test and transfer
patches, with their macro F1; rows of areas without patches in a split are gray (no value), not 0.
``embedding.png``: the features ``h`` of the test patches projected by PCA (and t-SNE if asked),
SCL next to CE, each point coloured by its area's display colour
(:func:`cortexgraph.data.colors.display_colours`), the area names written at the median of their
points, and a legend of the areas beside. Both name the encoder and the data split in their titles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable
from cortexgraph.outputs import save_figure
from cortexgraph.training.metrics import confusion_matrix

__all__ = ["row_normalised_confusion", "pca_2d", "confusion_figure", "embedding_figure"]


def row_normalised_confusion(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confusion matrix over ``labels`` with each row divided by its total (rows without
    samples are NaN: there is no value, which is not a share of 0)."""
    cm = confusion_matrix(y, pred, labels=labels).astype(np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)


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
    from cortexgraph.data.colors import display_colours

    rgb = display_colours(areas).astype(np.float64) / 255.0
    return rgb[np.clip(labels, 0, len(rgb) - 1)]


def confusion_figure(
    path: Path,
    areas: AreaTable,
    scl_out: dict,
    ce_out: dict,
    scl_scores: dict,
    ce_scores: dict,
    *,
    title: str = "",
    splits: dict[str, str] | None = None,
) -> Path:
    """2 x 2 panel of row-normalised confusion matrices (SCL / CE x test / transfer).

    ``title`` names the encoder run, ``splits`` describes each split (e.g. ``{"test": "every 5th
    annotated section of B01, B03, B05", "transfer": "brain B07"}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in ("test", "transfer") if s in scl_out]
    fig, axes = plt.subplots(
        2, max(1, len(shown)), figsize=(6.0 * max(1, len(shown)), 11.0), squeeze=False
    )
    for col, split in enumerate(shown):
        present = np.union1d(
            np.union1d(scl_out[split][0], scl_out[split][1]), ce_out[split][1]
        ).astype(np.int64)
        names = [areas.areas[k].name for k in present]
        for row, (run, out, scores) in enumerate(
            (("SCL linear", scl_out, scl_scores), ("CE", ce_out, ce_scores))
        ):
            y, pred = out[split][0], out[split][1]
            cm = row_normalised_confusion(y, pred, present)
            counts = np.array([(y == k).sum() for k in present])
            ax = axes[row, col]
            cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
            ax.imshow(np.ma.masked_invalid(cm), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            where = (splits or {}).get(split, f"{split} patches")
            ax.set_title(
                f"{run}, {split} ({where}; {len(y)} patches):\nmacro F1 "
                f"{scores[split]['macro_f1']:.3f}",
                fontsize=8,
            )
            ticks = np.arange(len(present))
            step = max(1, len(present) // 60)
            ax.set_xticks(ticks[::step], [names[k] for k in ticks[::step]], rotation=90, fontsize=5)
            ax.set_yticks(
                ticks[::step],
                [f"{names[k]} ({counts[k]})" for k in ticks[::step]],
                fontsize=5,
            )
            ax.set_xlabel("predicted area", fontsize=7)
            ax.set_ylabel("true area (patches); gray: none", fontsize=7)
    if title:
        fig.suptitle(f"encoder {title}: rows normalised to the true area's patches", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "viridis"), cax=fig.add_axes((0.95, 0.3, 0.012, 0.4)))
    bar.set_label("share of the row's patches", fontsize=7)
    return save_figure(fig, path, dpi=110)


def _name_clusters(ax, xy: np.ndarray, y: np.ndarray, areas: AreaTable, halo) -> None:
    """Area names at the median of their points, largest groups first; a name that would overlap
    one already written is left to the legend."""
    if not len(xy):
        return
    pad = 0.03 * np.ptp(xy, axis=0) + 1e-9
    ax.set_xlim(xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0])
    ax.set_ylim(xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1])
    span = np.ptp(np.array([ax.get_xlim(), ax.get_ylim()]), axis=1)
    width_px = ax.get_position().width * ax.figure.get_figwidth() * ax.figure.dpi
    height_px = ax.get_position().height * ax.figure.get_figheight() * ax.figure.dpi
    placed: list[tuple[float, float, float, float]] = []
    classes, counts = np.unique(y, return_counts=True)
    for k in classes[np.argsort(-counts, kind="stable")]:
        name = areas.areas[int(k)].name
        cx, cy = np.median(xy[y == k], axis=0)
        px, py = (cx - ax.get_xlim()[0]) / span[0] * width_px, (cy - ax.get_ylim()[0]) / span[1] * height_px
        half_w, half_h = 2.4 * len(name) + 2, 5.0
        box = (px - half_w, px + half_w, py - half_h, py + half_h)
        if any(b[0] < box[1] and box[0] < b[1] and b[2] < box[3] and box[2] < b[3] for b in placed):
            continue
        placed.append(box)
        ax.text(cx, cy, name, fontsize=6, ha="center", va="center", path_effects=halo)


def embedding_figure(
    path: Path,
    areas: AreaTable,
    scl_out: dict,
    ce_out: dict,
    *,
    tsne: bool = False,
    seed: int = 0,
    max_points: int = 3000,
    title: str = "",
    splits: dict[str, str] | None = None,
) -> Path:
    """PCA (and optionally t-SNE) of the test-patch features of SCL and CE, coloured by area, with
    the area names at the median of their points and a legend of the areas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = "test" if "test" in scl_out else next(iter(scl_out))
    rng = np.random.default_rng(seed)
    n = len(scl_out[split][0])
    keep = np.sort(rng.choice(n, size=min(n, max_points), replace=False)) if n else np.zeros(0, int)
    methods = ["PCA"] + (["t-SNE"] if tsne else [])
    present = np.unique(scl_out[split][0][keep]).astype(np.int64) if n else np.zeros(0, int)
    legend_cols = max(1, int(np.ceil(len(present) / 34)))
    fig, axes = plt.subplots(
        len(methods), 2, figsize=(11.0 + 1.3 * legend_cols, 5.0 * len(methods)), squeeze=False
    )
    from matplotlib import patheffects
    from matplotlib.patches import Patch

    halo = [patheffects.withStroke(linewidth=2.0, foreground="white")]
    for col, (kind, out) in enumerate((("SCL", scl_out), ("CE", ce_out))):
        y, feats = out[split][0][keep], out[split][2][keep]
        colours = _colours(areas, y)
        for row, method in enumerate(methods):
            ax = axes[row, col]
            if method == "PCA":
                xy, ratio = pca_2d(feats)
                label = f"{kind} features, PCA ({100 * ratio.sum():.0f}% of the variance)"
            else:
                from sklearn.manifold import TSNE

                perplexity = float(min(30.0, max(2.0, (len(feats) - 1) / 3.0)))
                xy = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
                    feats
                )
                label = f"{kind} features, t-SNE"
            ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=4, linewidths=0)
            _name_clusters(ax, xy, y, areas, halo)
            where = (splits or {}).get(split, "")
            ax.set_title(
                f"{label}\n{split} patches{f' ({where})' if where else ''}, coloured by area",
                fontsize=8,
            )
            ax.set_xticks([])
            ax.set_yticks([])
    rgb = _colours(areas, present)
    handles = [
        Patch(facecolor=rgb[i], edgecolor="none", label=areas.areas[int(k)].name)
        for i, k in enumerate(present)
    ]
    fig.legend(handles=handles, loc="center right", ncol=legend_cols, fontsize=6, frameon=False,
               title="areas (names in the plots:\nwhere they do not overlap)",
               title_fontsize=6)  # fmt: skip
    if title:
        fig.suptitle(f"encoder {title}: features of {split} patches", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.3 * legend_cols / (11.0 + 1.3 * legend_cols), 1))
    return save_figure(fig, path, dpi=110)
