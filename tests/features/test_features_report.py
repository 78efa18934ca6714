"""Encoder pictures (cortexgraph.features.report): missing rows are missing, names and legends."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.features.report import confusion_figure, embedding_figure, row_normalised_confusion

AREAS = AreaTable([Area(1, "hOc1", "#d62728"), Area(2, "hOc2", "#1f77b4"), Area(3, "FG1", "#2ca02c")])


def test_rows_without_samples_have_no_value():
    cm = row_normalised_confusion(np.array([0, 0, 1]), np.array([0, 1, 2]), np.arange(3))
    np.testing.assert_allclose(cm[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(cm[1], [0.0, 0.0, 1.0])
    assert np.isnan(cm[2]).all()  # FG1 never true: no value, not a share of 0


def test_pictures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    feats = rng.normal(size=(60, 8)) + y[:, None] * 3.0
    out = {"test": (y, y.copy(), feats), "transfer": (y, np.where(y == 1, 2, 0), feats)}
    scores = {"test": {"macro_f1": 1.0}, "transfer": {"macro_f1": 0.33}}
    splits = {"test": "every 5th annotated section of B01", "transfer": "brain B07"}
    confusion = confusion_figure(tmp_path / "confusion.png", AREAS, out, out, scores, scores,
                                 title="demo", splits=splits)  # fmt: skip
    embedding = embedding_figure(tmp_path / "embedding.png", AREAS, out, out, title="demo",
                                 splits=splits)  # fmt: skip
    assert imread(confusion).shape[1] > 600
    picture = (imread(embedding)[..., :3] * 255).round().astype(int)
    # points and legend patches in the two areas' display colours
    assert np.all(picture == (0xD6, 0x27, 0x28), axis=-1).sum() > 50
    assert np.all(picture == (0x1F, 0x77, 0xB4), axis=-1).sum() > 50
