"""Supervised contrastive loss (Khosla et al. 2020, "L_out"; thesis eqs. 6.66-6.67).

Method: Schiffer, PhD thesis, Sect. 6.1.1; Schiffer et al. 2021, ISBI, Sect. 2. Two samples are positives iff they share a class
label; there are no augmented views. The thesis prints the per-anchor normaliser as ``1/n_ci`` (which
counts the anchor itself); this implementation uses Khosla et al.'s normaliser, the number of
positives ``n_ci - 1`` (decision recorded in the docstring below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supervised_contrastive_loss"]


def supervised_contrastive_loss(
    features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Supervised contrastive loss over one batch.

    For anchor ``i`` with positives ``P(i) = {j != i : c_j = c_i}``::

        l(i) = -1/|P(i)| * sum_{j in P(i)} log( exp(s_ij / T) / sum_{k != i} exp(s_ik / T) )

    with ``s_ij`` the cosine similarity (features are L2-normalised inside). The loss is the mean of
    ``l(i)`` over the anchors with ``|P(i)| >= 1``; anchors whose class occurs once in the batch are
    excluded (they have no positive). A batch without any positive pair gives a loss of exactly 0
    whose gradient is zero (never NaN).

    Parameters
    ----------
    features : torch.Tensor, shape (B, D)
        Projections ``z`` (any scale; normalised inside). Computed in float32 even under AMP.
    labels : torch.Tensor, shape (B,)
        Integer class labels.
    temperature : float
        Temperature ``T`` (the thesis uses 0.07 for SCL pre-training).

    Returns
    -------
    torch.Tensor
        Scalar loss (float32).
    """
    if features.ndim != 2:
        raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
    labels = labels.reshape(-1)
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"{features.shape[0]} features but {labels.shape[0]} labels")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    b = features.shape[0]
    z = F.normalize(features.float(), dim=1)
    not_self = ~torch.eye(b, dtype=torch.bool, device=features.device)
    positives = (labels[:, None] == labels[None, :]) & not_self
    n_pos = positives.sum(dim=1)
    valid = n_pos > 0
    if not bool(valid.any()):
        # zero with a well-defined (all-zero) gradient
        return (features.float() * 0.0).sum()
    logits = (z[valid] @ z.T) / temperature  # (A, B), anchors = valid rows
    logits = logits.masked_fill(~not_self[valid], float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = positives[valid]
    mean_log_prob_pos = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / n_pos[
        valid
    ].to(log_prob.dtype)
    return -mean_log_prob_pos.mean()
