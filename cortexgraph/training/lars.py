"""LARS: layer-wise adaptive rate scaling with Nesterov momentum (You et al. 2017).

Method: Schiffer, PhD thesis, Sects. 2.2.1 (eq. 2.11), 6.1.4 and 7.1.3 (LARS,
Nesterov momentum 0.9, weight decay 1e-4 on non-bias parameters, trust coefficient 0.02).

Update rule for one parameter tensor ``p`` with gradient ``g`` in a group with ``lars=True``::

    d     = g + weight_decay * p
    trust = trust_coefficient * ||p|| / (||g|| + weight_decay * ||p|| + eps)
            (trust = 1 when ||p|| == 0 or ||g|| == 0)
    d     = trust * d
    buf   = momentum * buf + d                 (buf = d at the first step)
    step  = d + momentum * buf  if nesterov else buf
    p     = p - lr * step

For a group with ``lars=False`` (biases and normalisation parameters, see :func:`lars_param_groups`)
``weight_decay`` is 0 and ``trust`` is 1, so the rule reduces to SGD with Nesterov momentum.

The denominator ``||g|| + weight_decay * ||p||`` is You et al.'s (2017) form when weight decay is
folded into the gradient; the thesis prints eq. 2.11 without the weight-decay term, which is the same
rule for ``weight_decay = 0``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["LARS", "lars_param_groups"]

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


def lars_param_groups(model: nn.Module, weight_decay: float = 1e-4) -> list[dict]:
    """Split a model's trainable parameters into a LARS group and a plain group.

    Rule: a parameter is *excluded* from weight decay and from the layer-wise trust ratio when its
    name ends with ``bias``, when it belongs to a normalisation module (batch / layer / group /
    instance norm, including PyG's wrappers that hold a ``torch.nn`` norm), or when it is a scalar or
    a vector (``ndim <= 1``: biases, norm scales, PReLU slopes). All other parameters (weight
    matrices, convolution kernels, attention vectors of shape ``(1, heads, channels)``) get weight
    decay and the trust ratio.

    Parameters
    ----------
    model : torch.nn.Module
    weight_decay : float
        L2 weight decay for the LARS group.

    Returns
    -------
    list of dict
        ``[{"params": [...], "weight_decay": weight_decay, "lars": True},
        {"params": [...], "weight_decay": 0.0, "lars": False}]`` (empty groups are dropped).
    """
    norm_params: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            norm_params.update(id(p) for p in module.parameters(recurse=False))
    adapted: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = name.endswith("bias") or id(param) in norm_params or param.ndim <= 1
        (plain if excluded else adapted).append(param)
    groups = []
    if adapted:
        groups.append({"params": adapted, "weight_decay": float(weight_decay), "lars": True})
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "lars": False})
    return groups


class LARS(torch.optim.Optimizer):
    """LARS optimizer with (Nesterov) momentum; the update rule is in the module docstring.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or parameter groups. A group may set ``lars`` (bool, default True) and
        ``weight_decay``; use :func:`lars_param_groups` to exclude biases and norm parameters.
    lr : float
        Global learning rate (the method uses 0.001 * batch / 256 = 0.008 for the GNNs).
    momentum : float
        Momentum coefficient (0.9).
    nesterov : bool
        Nesterov momentum (True in the method).
    weight_decay : float
        L2 weight decay added to the gradient of LARS-adapted parameters (1e-4).
    trust_coefficient : float
        Trust coefficient eta of eq. 2.11 (0.02).
    eps : float
        Added to the denominator of the trust ratio.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        trust_coefficient: float = 0.02,
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "lars": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer API
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            wd = group["weight_decay"] if group["lars"] else 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                d = grad.add(p, alpha=wd) if wd != 0.0 else grad.clone()
                if group["lars"]:
                    p_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = (
                        group["trust_coefficient"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                    )
                    ok = (p_norm > 0) & (g_norm > 0)
                    d.mul_(torch.where(ok, trust, torch.ones_like(trust)))
                if momentum != 0.0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = d.clone()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(d)
                    d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d, alpha=-lr)
        return loss
