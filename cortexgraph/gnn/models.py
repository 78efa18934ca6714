"""Node classifiers on the midsurface graph: GAT (GATv2), SAGE, MLP and a linear baseline.

Method: Schiffer, PhD thesis, Sect. 7.1.4 (architectures) and Sect. 2.2.2 (graph layers);
Schiffer et al. 2021, MICCAI.

Architecture (``kind`` in {"gat", "sage", "mlp"})::

    per feature type t (e.g. cy, pm, co):
        input regularisation (training only): dropout 0.5 on CY and PM, Gaussian noise sigma 0.1 on CO
        h_t = ReLU(BN(W_t x_t))                 FC(512) without bias (eq. 2.29) + batch norm + ReLU
    h = concat_t h_t                            (N, 512 * n_types)
    num_layers x:  h = Dropout_0.25(ReLU(BN(layer(h, edge_index))))
        layer = SAGEConv (mean aggregation, FC(x_i || mean_j x_j)),
                GATv2Conv (1 head, attention dropout 0.5; FC(x_i) + sum_j alpha_ij W x_j, i.e.
                           PyG's ``residual=True`` root term and no self loops, matching
                           ``FC(x_i || agg_GAT)`` of eq. 2.47), or
                Linear (mlp)
    logits = Linear(h)                          final linear classifier

``kind="linear"`` is one linear layer on the concatenated raw inputs (no regularisation).

Feature types are named by the suffix of the ``Data`` attribute: ``x_cy``, ``x_pm``, ``x_co``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv, SAGEConv

from cortexgraph.errors import CortexgraphError

__all__ = ["NodeClassifier", "KINDS", "DEFAULT_INPUT_DROPOUT", "DEFAULT_INPUT_NOISE_SIGMA"]

KINDS = ("gat", "sage", "mlp", "linear")
DEFAULT_INPUT_DROPOUT = {"cy": 0.5, "pm": 0.5}
DEFAULT_INPUT_NOISE_SIGMA = {"co": 0.1}


class NodeClassifier(nn.Module):
    """Classify graph nodes from several feature types.

    Parameters
    ----------
    feature_dims : mapping str -> int
        Feature types and their widths, e.g. ``{"cy": 2048, "pm": 152, "co": 3}``. The order of the
        mapping fixes the concatenation order.
    num_classes : int
        Number of areas (output logits).
    kind : {"gat", "sage", "mlp", "linear"}
    num_layers : int
        Number of GNN / FC layers after the per-type encoders (3, 5 or 7 in the method).
    hidden : int
        Width of the per-type encoders and of every layer (512).
    input_dropout : mapping str -> float, optional
        Dropout probability per feature type (default: 0.5 on ``cy`` and ``pm``).
    input_noise_sigma : mapping str -> float, optional
        Std of additive Gaussian noise per feature type, in feature units (default: 0.1 on ``co``).
    dropout : float
        Dropout after every layer (0.25).
    attention_dropout : float
        Dropout on GAT attention coefficients (0.5).
    heads : int
        GAT attention heads; with ``heads > 1`` each head has ``hidden // heads`` channels.

    Notes
    -----
    ``num_hops`` is the receptive field in graph hops (``num_layers`` for gat/sage, 0 otherwise).
    """

    def __init__(
        self,
        feature_dims: Mapping[str, int],
        num_classes: int,
        kind: str = "gat",
        num_layers: int = 3,
        hidden: int = 512,
        *,
        input_dropout: Mapping[str, float] | None = None,
        input_noise_sigma: Mapping[str, float] | None = None,
        dropout: float = 0.25,
        attention_dropout: float = 0.5,
        heads: int = 1,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not feature_dims:
            raise ValueError("feature_dims is empty: give at least one feature type")
        if num_layers < 1 and kind != "linear":
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.feature_dims = {str(k): int(v) for k, v in feature_dims.items()}
        self.num_classes = int(num_classes)
        self.kind = kind
        self.num_layers = int(num_layers) if kind != "linear" else 0
        self.hidden = int(hidden)
        self.input_dropout = dict(DEFAULT_INPUT_DROPOUT if input_dropout is None else input_dropout)
        self.input_noise_sigma = dict(
            DEFAULT_INPUT_NOISE_SIGMA if input_noise_sigma is None else input_noise_sigma
        )
        self.config = {
            "feature_dims": dict(self.feature_dims),
            "num_classes": self.num_classes,
            "kind": kind,
            "num_layers": int(num_layers),
            "hidden": self.hidden,
            "input_dropout": dict(self.input_dropout),
            "input_noise_sigma": dict(self.input_noise_sigma),
            "dropout": float(dropout),
            "attention_dropout": float(attention_dropout),
            "heads": int(heads),
        }

        if kind == "linear":
            self.classifier = nn.Linear(sum(self.feature_dims.values()), self.num_classes)
            return

        self.encoders = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()
                )
                for name, dim in self.feature_dims.items()
            }
        )
        in_dim = hidden * len(self.feature_dims)
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(self.num_layers):
            if kind == "sage":
                layer = SAGEConv(in_dim, hidden, aggr="mean", root_weight=True)
            elif kind == "gat":
                layer = GATv2Conv(
                    in_dim,
                    hidden // heads,
                    heads=heads,
                    concat=True,
                    dropout=attention_dropout,
                    add_self_loops=False,
                    residual=True,
                )
            else:
                layer = nn.Linear(in_dim, hidden)
            self.layers.append(layer)
            self.norms.append(nn.BatchNorm1d(hidden))
            in_dim = hidden
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, self.num_classes)

    @property
    def num_hops(self) -> int:
        """Graph hops one output node depends on (0 for mlp and linear)."""
        return self.num_layers if self.kind in ("gat", "sage") else 0

    def _inputs(self, x) -> dict[str, torch.Tensor]:
        get: Callable[[str], Any]
        if isinstance(x, Mapping):
            get = x.get
        else:  # torch_geometric Data or any object with x_<name> attributes

            def get(name: str) -> Any:
                return getattr(x, f"x_{name}", None)

        out = {}
        for name, dim in self.feature_dims.items():
            t = get(name)
            if t is None:
                raise CortexgraphError(
                    f"node feature {name!r} missing (model expects {list(self.feature_dims)})",
                    fix=f"compute the {name} features for this graph or train without them",
                )
            if t.ndim != 2 or t.shape[1] != dim:
                raise CortexgraphError(
                    f"node feature {name!r} has shape {tuple(t.shape)}, model expects (N, {dim})"
                )
            out[name] = t
        return out

    def forward(
        self,
        x,
        edge_index: torch.Tensor | None = None,
        hop_offsets: tuple[list[int], list[int]] | None = None,
        attention_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits for every node.

        Parameters
        ----------
        x : mapping str -> Tensor (N, d_t), or torch_geometric.data.Data
            Node features per type; a ``Data`` provides ``x_<type>`` attributes and ``edge_index``.
        edge_index : LongTensor (2, E), optional
            Directed edges source -> target (messages flow to the target). Needed for gat/sage
            unless ``x`` is a ``Data``.
        hop_offsets : (list of int, list of int), optional
            From :func:`cortexgraph.gnn.sampler.sample_subgraph` (``return_hop_offsets=True``):
            nodes ordered by hop from the seed nodes, edges sorted by target. Layer ``l`` of ``L`` then
            computes only the nodes within ``L - 1 - l`` hops (its targets) from those within
            ``L - l`` hops (its sources). The seed nodes' logits are unchanged in evaluation mode;
            in training, batch-norm statistics are taken over the nodes each layer computes.
        attention_out : list, optional
            GAT only: each layer appends its attention coefficients to this list, a tensor
            (E, heads) in the order of the layer's edges (``edge_index``, or its hop-trimmed
            prefix), after attention dropout (none in evaluation mode). Read by
            :mod:`cortexgraph.gnn.attention`.

        Returns
        -------
        Tensor (N, num_classes)
            With ``hop_offsets``, only the first ``hop_offsets[0][0]`` rows (the seed nodes) for gat/sage.
        """
        if edge_index is None and not isinstance(x, Mapping):
            edge_index = getattr(x, "edge_index", None)
        feats = self._inputs(x)
        if self.kind == "linear":
            h = torch.cat([feats[n].to(self.classifier.weight.dtype) for n in self.feature_dims], 1)
            return self.classifier(h)
        if self.kind in ("gat", "sage") and edge_index is None:
            raise ValueError(f"a {self.kind} model needs edge_index")
        parts = []
        for name, enc in self.encoders.items():
            t = feats[name].to(cast(nn.Linear, cast(nn.Sequential, enc)[0]).weight.dtype)
            if self.training:
                p = self.input_dropout.get(name, 0.0)
                if p > 0:
                    t = nn.functional.dropout(t, p=p, training=True)
                sigma = self.input_noise_sigma.get(name, 0.0)
                if sigma > 0:
                    t = t + sigma * torch.randn_like(t)
            parts.append(enc(t))
        h = torch.cat(parts, dim=1)
        trim = False
        if hop_offsets is not None and self.kind in ("gat", "sage"):
            trim = True
            node_off, edge_off = hop_offsets
            if len(node_off) != self.num_layers + 1 or len(edge_off) != self.num_layers + 1:
                raise ValueError(
                    f"hop_offsets must have {self.num_layers + 1} entries per list "
                    f"(sample with num_hops = {self.num_layers})"
                )
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            if self.kind == "mlp":
                h = layer(h)
            else:
                assert edge_index is not None  # gat and sage refuse a missing edge_index above
                inputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = h
                e = edge_index
                if trim:
                    n_src = node_off[self.num_layers - i]
                    n_dst = node_off[self.num_layers - 1 - i]
                    inputs = (h[:n_src], h[:n_dst])
                    e = edge_index[:, : edge_off[self.num_layers - 1 - i]]
                if attention_out is not None and self.kind == "gat":
                    h, (_, alpha) = layer(inputs, e, return_attention_weights=True)
                    attention_out.append(alpha)
                else:
                    h = layer(inputs, e)
            h = self.dropout(torch.relu(norm(h)))
        return self.classifier(h)
