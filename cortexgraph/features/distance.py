"""Self-supervised Siamese pre-training on the 3D distance between cortex patches.

Method (Spitzer et al., MICCAI 2018: "Improving cytoarchitectonic segmentation of human brain
areas with self-supervised Siamese networks"; used to initialise the high-resolution encoder of the
local segmentation models in the LSM paper, Schiffer et al. 2021, and as the ``distance`` baseline
of the contrastive paper, Schiffer et al., ISBI 2021):

* **Pairs**: patches from the centre of the cortex in arbitrary sections of a brain, paired within
  one hemisphere of one brain so that every patch occurs at least once and the number of pairs a
  patch takes part in follows a power law (:func:`power_law_pairs`); only cortex cut at 90 +- 45
  degrees (the section plane at most 45 degrees from the cortex normal) is sampled
  (:func:`non_oblique_vertices`); every 12th section is left out for testing.
* **Network** (:class:`SiameseDistanceNet`): two branches with shared weights, each an encoder
  (the texture branch) followed by a 32-channel dense layer ``f``; the predicted distance of a
  pair is the squared Euclidean distance ``||f(x1) - f(x2)||^2``. A second dense layer ``d`` on
  ``f`` predicts the patch's 3D location.
* **Loss** (:func:`siamese_loss`): ``L = | ||f(x1) - f(x2)||^2 - y_dist | + alpha (|d(f(x1)) -
  y1|_1 + |d(f(x2)) - y2|_1) + lambda ||w||^2``, ``alpha = 10``, ``lambda = 0.001`` on every weight
  and bias except those of the two final dense layers (as weight decay ``2 lambda`` of SGD).
* **Training**: 16 epochs of SGD at learning rate 0.01, halved every 3 epochs.

What cortexgraph chooses where the publication is silent or its data differ (docs/features.md):

* ``y_dist`` (mm): by default the Euclidean distance between the two patch centres in the 3D
  reconstruction (:meth:`SectionStack.section_to_world <cortexgraph.data.stack.SectionStack.
  section_to_world>`); ``distance='geodesic'`` is the publication's choice, the shortest path along
  the surface, computed here along the edges of the brain's midsurface graph (build-graph; Dijkstra
  with edge lengths), between the graph nodes the patches were taken at.
* ``y_coord`` (mm): the publication uses the location on the *inflated* surface with the left-right
  coordinate of the right hemisphere reversed; cortexgraph has no inflated surface and uses the
  node's position on the midsurface, its left-right coordinate as the distance from the
  interhemispheric plane (the same reversal), and the other two centred on the brain's nodes.
* "SGD" is read as plain SGD (momentum 0; momentum 0.9 made the small presets' encoder collapse to
  one output for every patch); the batch size (``batch_pairs``) is not stated in the publication;
  augmentation is the encoder's (:mod:`cortexgraph.features.augment`), which changes no distance.
* The branch is either the encoder of an encoder preset (``branch='features'``: it then
  initialises the SCL and CE encoders, ``train-encoder --init``) or the high-resolution encoder
  ``E_HR`` of a local segmentation model (``branch='lsm-hr'``: it initialises that branch,
  ``lsm chain --init-hr``). In the publications both are one network; the small presets of the two
  subsystems differ, so each gets its own pre-training (a ``features`` branch whose layers have the
  shapes of an ``E_HR``, as the published base encoder and the ``full`` LSM, initialises it too).

This module computes: patch locations and pairs (arrays in, arrays out), the network, the loss and
the training loop, and reads and writes the ``distance.pt`` file. The stage that reads a cohort and
writes an encoder folder is :mod:`cortexgraph.features.distance_stage`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cortexgraph.derivatives.parameters import check_fields, field_errors
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.features.encoders import encoder_feature_dim
from cortexgraph.features.parameters import BRANCHES, DISTANCE_RULES, DISTANCES
from cortexgraph.features.payload import cpu_state, read_payload, write_payload
from cortexgraph.training.checkpoint import plain

log = logging.getLogger(__name__)

__all__ = [
    "BRANCHES",
    "DISTANCES",
    "DISTANCE_FORMAT",
    "DistanceSettings",
    "non_oblique_vertices",
    "split_sections",
    "power_law_pairs",
    "euclidean_distances",
    "geodesic_distances",
    "LSMHRBranch",
    "SiameseDistanceNet",
    "siamese_loss",
    "train_siamese",
    "evaluate_pairs",
    "collapsed",
    "COLLAPSE_WARNING",
    "save_distance",
    "load_distance",
    "matching_state",
]

DISTANCE_FORMAT = "cortexgraph-distance"


@dataclass(frozen=True)
class DistanceSettings:
    """Every setting of a distance pre-training run (module docstring).

    Attributes
    ----------
    distance : ``euclidean`` (default) or ``geodesic``.
    patches_per_brain : training patches drawn per brain (test patches: a twelfth of it, >= 32).
    pairs_per_patch : pairs / patches (the publication: 200k pairs of 200k patches, 1).
    epochs, lr, lr_halve_every, momentum, batch_pairs : SGD schedule (16, 0.01, 3; the publication's
        plain SGD: momentum 0; 32 pairs per batch is cortexgraph's choice). Momentum 0.9 made the
        features branch of the small presets collapse in 2 of 3 training seeds (docs/features.md).
    alpha : weight of the coordinate loss (10).
    l2 : lambda of the L2 penalty on all but the final dense layers (0.001).
    embed_dim : size of ``f`` (32).
    test_every : every ``test_every``-th section of a brain holds test patches (12).
    max_oblique_deg : cortex cut more obliquely than this (angle between the section plane and the
        cortex normal) is not sampled (45).
    degree_exponent : exponent of the power law of pairs per patch (2.5).
    """

    distance: str = "euclidean"
    patches_per_brain: int = 1500
    pairs_per_patch: float = 1.0
    epochs: int = 16
    lr: float = 0.01
    lr_halve_every: int = 3
    momentum: float = 0.0
    batch_pairs: int = 32
    alpha: float = 10.0
    l2: float = 0.001
    embed_dim: int = 32
    test_every: int = 12
    max_oblique_deg: float = 45.0
    degree_exponent: float = 2.5

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ParameterError(
                f"unknown distance {self.distance!r}", fix=f"use {' or '.join(DISTANCES)}"
            )
        check_fields(self, field_errors(self, "distance pre-training"), DISTANCE_RULES)

    def with_overrides(self, **overrides) -> DistanceSettings:
        """A copy with some settings replaced (``None`` values ignored; unknown names refused)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise ParameterError(
                f"unknown distance setting(s): {', '.join(sorted(unknown))}",
                fix=f"use {', '.join(f.name for f in fields(self))}",
            )
        return replace(self, **clean)

    def as_dict(self) -> dict:
        return asdict(self)


# -------------------------------------------------------------------------------------- data


def non_oblique_vertices(
    vertices_mm: np.ndarray, faces: np.ndarray, max_oblique_deg: float = 45.0
) -> np.ndarray:
    """Vertices where the coronal section plane (world ``y = const``) cuts the surface at
    ``90 +- max_oblique_deg`` degrees.

    The section plane is perpendicular to the surface when the surface normal lies in the plane
    (``n_y = 0``); the cut is oblique by ``asin(|n_y|)``. Vertex normals are the area-weighted means
    of the face normals. Returns a bool array (N,).
    """
    v = np.asarray(vertices_mm, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    normals = np.zeros_like(v)
    if len(f):
        face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 area
        for k in range(3):
            np.add.at(normals, f[:, k], face_n)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 0
    oblique = np.full(len(v), 90.0)
    oblique[ok] = np.degrees(np.arcsin(np.clip(np.abs(normals[ok, 1]) / norm[ok], 0.0, 1.0)))
    return oblique <= max_oblique_deg


def split_sections(sections: np.ndarray, test_every: int = 12) -> np.ndarray:
    """Bool per entry: its section is a test section (every ``test_every``-th distinct section,
    counted from the ``test_every``-th, as a twelfth of the sections in the publication)."""
    sections = np.asarray(sections)
    distinct = np.unique(sections)
    test = distinct[test_every - 1 :: test_every]
    return np.isin(sections, test)


def power_law_pairs(
    groups: np.ndarray, n_pairs: int, exponent: float, rng: np.random.Generator
) -> np.ndarray:
    """Pairs of indices within groups (brain and hemisphere), every index at least once, the number
    of pairs per index following a power law.

    Each index gets a degree ``1 + floor(Pareto)`` of exponent ``exponent`` (``P(k) ~ k^-exponent``),
    scaled within each group so the degrees sum to about twice the group's share of ``n_pairs``
    (never below 1); the degree stubs of a group are shuffled and joined two by two (a
    configuration model); a pair of an index with itself swaps partners with a random pair once and
    is dropped if that does not help (rare: an index then loses one of its pairs).

    Returns an int64 array (P, 2), P close to ``n_pairs`` (groups of one index give none).
    """
    groups = np.asarray(groups)
    if len(groups) == 0 or n_pairs < 1:
        return np.zeros((0, 2), dtype=np.int64)
    raw = 1.0 + np.floor(rng.pareto(exponent - 1.0, size=len(groups)))
    out = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(members) < 2:
            continue
        want = 2.0 * n_pairs * len(members) / len(groups)
        degree = np.maximum(1, np.round(raw[members] * want / raw[members].sum())).astype(np.int64)
        stubs = np.repeat(members, degree)
        if len(stubs) % 2:
            stubs = np.append(stubs, rng.choice(members))
        rng.shuffle(stubs)
        pairs = stubs.reshape(-1, 2).copy()
        for i in np.flatnonzero(pairs[:, 0] == pairs[:, 1]):
            j = int(rng.integers(len(pairs)))  # swap partners with a random pair if that helps
            if pairs[i, 0] != pairs[j, 1] and pairs[j, 0] != pairs[i, 1]:
                pairs[i, 1], pairs[j, 1] = pairs[j, 1], pairs[i, 1]
        out.append(pairs[pairs[:, 0] != pairs[:, 1]])
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)


def euclidean_distances(world_mm: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Straight 3D distance (mm) of each pair of points (world mm)."""
    w = np.asarray(world_mm, dtype=np.float64)
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.linalg.norm(w[p[:, 0]] - w[p[:, 1]], axis=1)


def geodesic_distances(
    vertices_mm: np.ndarray, edges: np.ndarray, sources: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Shortest-path distance (mm) along the edges of a mesh graph between node pairs.

    Parameters
    ----------
    vertices_mm : (N, 3) node positions.
    edges : (2, E) node index pairs (either direction or both).
    sources, targets : (P,) node indices of the pairs.

    Returns
    -------
    (P,) float64; ``inf`` where the nodes are not connected. Dijkstra from each distinct source
    (scipy.sparse.csgraph), so pass the end with fewer distinct values as ``sources``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    v = np.asarray(vertices_mm, dtype=np.float64)
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    length = np.linalg.norm(v[e[0]] - v[e[1]], axis=1)
    graph = coo_matrix((length, (e[0], e[1])), shape=(len(v), len(v))).tocsr()
    sources = np.asarray(sources, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    out = np.empty(len(sources))
    distinct, inverse = np.unique(sources, return_inverse=True)
    for start in range(0, len(distinct), 256):  # bounded memory: 256 rows of N at a time
        block = distinct[start : start + 256]
        rows = dijkstra(graph, directed=False, indices=block)
        for k in range(len(block)):
            hit = inverse == start + k
            out[hit] = rows[k, targets[hit]]
    return out


# ----------------------------------------------------------------------------------- network


class LSMHRBranch(nn.Module):
    """The high-resolution encoder ``E_HR`` of a local segmentation model with global average
    pooling on its last block: ``(B, 1, n, n) -> (B, C)``; ``encoder`` is the module an
    :class:`~cortexgraph.lsm.networks.LSMUNet` holds as ``hr_encoder`` (same parameter names)."""

    def __init__(self, config) -> None:
        super().__init__()
        from cortexgraph.lsm.networks import Encoder, hr_encoder_ops

        self.encoder = Encoder(hr_encoder_ops(config), config.encoder_filters, config.in_channels)
        self.feature_dim = int(config.encoder_filters[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.encoder(x)[-1], 1), 1)


class SiameseDistanceNet(nn.Module):
    """One branch of the Siamese network (the two share their weights): ``f = dense(branch(x))``
    (``embed_dim`` values) and the coordinate head ``d(f)`` (3 values).

    ``forward(x)`` returns ``(f, d(f))``; a pair's predicted distance is ``((f1 - f2)**2).sum(1)``.
    """

    def __init__(self, branch: nn.Module, embed_dim: int = 32, seed: int | None = 0) -> None:
        super().__init__()
        self.branch = branch
        generator = torch.Generator().manual_seed(int(seed) + 11) if seed is not None else None
        self.embed = nn.Linear(encoder_feature_dim(branch), int(embed_dim))
        self.coords = nn.Linear(int(embed_dim), 3)
        for layer in (self.embed, self.coords):
            bound = 1.0 / math.sqrt(layer.in_features)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.embed(self.branch(x))
        return f, self.coords(f)

    def final_parameters(self) -> list[nn.Parameter]:
        """The parameters of the final dense layers (no L2 penalty)."""
        return [*self.embed.parameters(), *self.coords.parameters()]


def siamese_loss(
    f1: torch.Tensor,
    f2: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    distance_mm: torch.Tensor,
    coord1_mm: torch.Tensor,
    coord2_mm: torch.Tensor,
    alpha: float = 10.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Batch mean of ``|||f1 - f2||^2 - y| + alpha (|c1 - y1|_1 + |c2 - y2|_1)`` (the L2 penalty is
    the optimizer's weight decay). Returns the loss and its two parts (floats)."""
    predicted = ((f1 - f2) ** 2).sum(dim=1)
    l_dist = (predicted - distance_mm).abs().mean()
    l_coord = (c1 - coord1_mm).abs().sum(dim=1).mean() + (c2 - coord2_mm).abs().sum(dim=1).mean()
    loss = l_dist + alpha * l_coord
    return loss, {"dist": float(l_dist.detach()), "coord": float(l_coord.detach())}


def _read(reader, rows: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
    """Patches of table rows (augmented when ``rng`` is given) as a (B, 1, n, n) tensor."""
    from cortexgraph.features.augment import sample_augmentation_params

    params = (
        None
        if rng is None
        else [sample_augmentation_params(rng, reader.augmentation) for _ in range(len(rows))]
    )
    return torch.from_numpy(reader.read(rows, params)[:, None])


def train_siamese(
    net: SiameseDistanceNet,
    reader,
    pairs: np.ndarray,
    distance_mm: np.ndarray,
    coords_mm: np.ndarray,
    settings: DistanceSettings,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress=None,
) -> list[dict]:
    """Train the Siamese network on pairs of patch-table rows.

    Parameters
    ----------
    net : the network (moved to ``device``).
    reader : a :class:`~cortexgraph.features.dataset.PatchReader` whose table rows the pairs index.
    pairs : (P, 2) table rows; ``distance_mm`` (P,) their distances; ``coords_mm`` (N, 3) the
        coordinate target of every table row.
    settings : schedule, batch, loss weights.
    seed : pair order and augmentation.
    progress : optional ``(stage, done, total)`` per epoch.

    Returns
    -------
    One dict per epoch: ``loss``, ``dist`` (mean |predicted - true| distance of the training
    batches, mm), ``coord`` (mean L1 coordinate error per patch, mm), ``lr``, ``seconds``.
    """
    device = torch.device(device)
    net.to(device)
    final = {id(p) for p in net.final_parameters()}
    decayed = [p for p in net.parameters() if id(p) not in final]
    optimizer = torch.optim.SGD(
        [
            {"params": decayed, "weight_decay": 2.0 * settings.l2},
            {"params": net.final_parameters(), "weight_decay": 0.0},
        ],
        lr=settings.lr,
        momentum=settings.momentum,
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_halve_every, gamma=0.5)
    y_all = torch.as_tensor(np.asarray(distance_mm, dtype=np.float32))
    c_all = torch.as_tensor(np.asarray(coords_mm, dtype=np.float32))
    history = []
    for epoch in range(settings.epochs):
        start = time.perf_counter()
        net.train()
        rng = np.random.default_rng([seed, 5, epoch])
        order = rng.permutation(len(pairs))
        sums = {"loss": 0.0, "dist": 0.0, "coord": 0.0}
        batches = 0
        for begin in range(0, len(order), settings.batch_pairs):
            idx = order[begin : begin + settings.batch_pairs]
            if len(idx) < 2:
                continue
            a, b = pairs[idx, 0], pairs[idx, 1]
            x = torch.cat([_read(reader, a, rng), _read(reader, b, rng)]).to(device)
            f, c = net(x)
            n = len(idx)
            loss, parts = siamese_loss(
                f[:n], f[n:], c[:n], c[n:], y_all[idx].to(device),
                c_all[a].to(device), c_all[b].to(device), settings.alpha,
            )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["loss"] += float(loss.detach())
            sums["dist"] += parts["dist"]
            sums["coord"] += parts["coord"] / 2.0
            batches += 1
        history.append(
            {
                "epoch": epoch + 1,
                **{k: v / max(batches, 1) for k, v in sums.items()},
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": time.perf_counter() - start,
            }
        )
        schedule.step()
        log.info(
            "distance epoch %d/%d: loss %.3f, |d - y| %.2f mm, coords %.2f mm (%.1f s)",
            epoch + 1, settings.epochs, history[-1]["loss"], history[-1]["dist"],
            history[-1]["coord"], history[-1]["seconds"],
        )  # fmt: skip
        if progress is not None:
            progress("distance", epoch + 1, settings.epochs)
    return history


@torch.no_grad()
def evaluate_pairs(
    net: SiameseDistanceNet,
    reader,
    pairs: np.ndarray,
    distance_mm: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_pairs: int = 128,
) -> dict[str, float]:
    """Distance task on (unaugmented) pairs: ``err_dist_mm`` (mean |predicted - true|, the
    publication's err_dist), ``median_err_mm``, ``pearson_r`` and ``true_mean_mm``."""
    device = torch.device(device)
    net.eval()
    predicted = []
    for begin in range(0, len(pairs), batch_pairs):
        idx = np.arange(begin, min(begin + batch_pairs, len(pairs)))
        a, b = pairs[idx, 0], pairs[idx, 1]
        fa, _ = net(_read(reader, a, None).to(device))
        fb, _ = net(_read(reader, b, None).to(device))
        predicted.append(((fa - fb) ** 2).sum(1).cpu().numpy())
    if not predicted:
        return {"err_dist_mm": math.nan, "median_err_mm": math.nan, "pearson_r": math.nan,
                "true_mean_mm": math.nan, "pairs": 0, "collapsed": False}  # fmt: skip
    p = np.concatenate(predicted).astype(np.float64)
    y = np.asarray(distance_mm, dtype=np.float64)
    err = np.abs(p - y)
    r = float(np.corrcoef(p, y)[0, 1]) if len(p) > 2 and p.std() > 0 else math.nan
    return {
        "err_dist_mm": float(err.mean()),
        "median_err_mm": float(np.median(err)),
        "pearson_r": r,
        "true_mean_mm": float(y.mean()),
        "pairs": int(len(p)),
        "collapsed": collapsed(p, y),
    }


COLLAPSE_WARNING = (
    "distance pre-training {name} collapsed: its predicted distances of the held-out pairs do not "
    "vary (every patch gets nearly the same features), so its weights are no use as an "
    "initialisation. Fix: train it again with another --seed, with plain SGD "
    "(distance_momentum = 0, the default)"
)
"""The warning for a collapsed run (:func:`collapsed`), formatted with the run's ``name``."""


def collapsed(predicted_mm: np.ndarray, true_mm: np.ndarray) -> bool:
    """Whether a Siamese network has collapsed: its predicted distances of held-out pairs spread by
    less than 1 % of the true distances' spread (every patch gets nearly the same ``f``, the
    predicted distances are about 0 and the coordinate head outputs its bias). Seen with SGD
    momentum 0.9 on the small encoder presets (docs/features.md); a collapsed encoder is useless as
    an initialisation."""
    p = np.asarray(predicted_mm, dtype=np.float64)
    y = np.asarray(true_mm, dtype=np.float64)
    if len(p) < 3:
        return False
    return bool(p.std() < 0.01 * max(float(y.std()), 1e-9))


# ------------------------------------------------------------------------------------- files


def save_distance(
    path: str | Path,
    net: SiameseDistanceNet,
    branch: str,
    spec: dict,
    settings: DistanceSettings,
    extra: dict | None = None,
) -> Path:
    """Write ``distance.pt``: the branch's weights (``branch``: its kind, ``spec``: the encoder
    preset or LSM configuration that builds it), the two dense layers, the settings."""
    payload = {
        "format": DISTANCE_FORMAT,
        "version": 1,
        "branch": branch,
        "spec": plain(spec),
        "settings": settings.as_dict(),
        "state": cpu_state(net.branch),
        "embed": cpu_state(net.embed),
        "coords": cpu_state(net.coords),
        "extra": plain(extra or {}),
    }
    return write_payload(path, payload)


def load_distance(path: str | Path) -> dict:
    """Read a ``distance.pt`` (:func:`save_distance`); CortexgraphError naming the file otherwise."""
    return read_payload(
        path,
        DISTANCE_FORMAT,
        default_name="distance.pt",
        what="distance pre-training file (distance.pt)",
        fix="run `cortexgraph train-encoder --method distance --name NAME` first",
    )


def matching_state(
    source: dict[str, torch.Tensor], target: nn.Module, *, what: str, file: str | Path
) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s parameter names, matched in order by shape.

    The branch of a distance run and the module it initialises may name their layers differently
    (the base encoder and an LSM's ``E_HR`` both hold convolution, batch-norm weight, bias, mean,
    variance and count, block by block); the tensors are matched one by one in order and must all
    have the same shapes. Raises CortexgraphError naming the first mismatch otherwise.
    """
    wanted = target.state_dict()
    if len(wanted) != len(source):
        raise CortexgraphError(
            f"{what}: the pre-trained branch has {len(source)} tensors, the network "
            f"{len(wanted)}: not the same architecture",
            file=str(file),
            fix="pre-train a branch of this architecture (train-encoder --method distance "
            "--branch lsm-hr for a local model, --branch features for an encoder preset)",
        )
    out = {}
    for (name, tensor), (src_name, src) in zip(wanted.items(), source.items(), strict=True):
        if tuple(tensor.shape) != tuple(src.shape):
            raise CortexgraphError(
                f"{what}: tensor {src_name} {tuple(src.shape)} of the pre-trained branch does not "
                f"fit {name} {tuple(tensor.shape)}: not the same architecture",
                file=str(file),
                fix="pre-train a branch of this architecture (train-encoder --method distance "
                "--branch lsm-hr for a local model, --branch features for an encoder preset)",
            )
        out[name] = src.clone()
    return out
