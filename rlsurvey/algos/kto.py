"""Unpaired preference losses: KTO for thumbs-up / thumbs-down labels and NPO for unlearning (survey 8).

KTO (Ethayarajh et al., arXiv 2402.01306) needs no pairs: each response carries one label, desirable or
undesirable. Its value of a response is measured against a reference point z₀, an estimate of the policy's
KL divergence from the reference, so a response only counts as "good" if the policy favours it more than it
favours responses in general (eq. 8):

    r(x, y) = log π(y|x) − log π_ref(y|x),     z₀ = max(0, mean over mismatched pairs of r(x', y)) (detached)
    desirable:   λ_D (1 − σ(β (r − z₀)))      undesirable:   λ_U (1 − σ(β (z₀ − r)))

NPO (Zhang et al., arXiv 2404.05868, eq. 3) learns only from responses to forget. It is DPO with the
preferred response removed, which turns gradient ascent on the forget set's likelihood into a bounded loss:

    L_NPO = −(2/β) log σ(−β r(x, y))

As β → 0 its gradient tends to that of gradient ascent on log π (the loss NPO was designed to tame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kto_loss", "npo_loss", "kto_reference_point"]


def _check(name: str, t, like: torch.Tensor | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 1:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a 1-D floating-point tensor [batch], got {got}")
    if like is not None and t.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(like.shape)}")
    return t


def kto_reference_point(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """z₀ of KTO: the batch mean of log π − log π_ref on *mismatched* (prompt, response) pairs, clamped at 0
    and detached (the paper treats it as a constant baseline, not something to optimize)."""
    _check("policy_kl_logps", policy_kl_logps)
    _check("ref_kl_logps", ref_kl_logps, policy_kl_logps)
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    reference_point: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, dict]:
    """KTO's loss (2402.01306 eq. 8) on a batch of labelled responses; returns `(loss, metrics)`.

    | argument | shape | meaning |
    |---|---|---|
    | policy_logps, ref_logps | [B] | summed response log-probs under the policy and the reference |
    | desirable | [B] bool | the label: True for a thumbs-up response |
    | reference_point | scalar | z₀, from `kto_reference_point` |
    """
    _check("policy_logps", policy_logps)
    _check("ref_logps", ref_logps, policy_logps)
    if (
        not isinstance(desirable, torch.Tensor)
        or desirable.dtype != torch.bool
        or desirable.shape != policy_logps.shape
    ):
        raise ValueError(f"desirable must be a bool tensor of shape {tuple(policy_logps.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    z0 = torch.as_tensor(reference_point, dtype=policy_logps.dtype, device=policy_logps.device).detach()
    r = policy_logps - ref_logps.detach()
    value = torch.where(desirable, torch.sigmoid(beta * (r - z0)), torch.sigmoid(beta * (z0 - r)))
    weight = torch.where(desirable, desirable_weight, undesirable_weight).to(r.dtype)
    loss = (weight * (1 - value)).mean()
    rewards = (beta * r).detach()
    nan = torch.tensor(float("nan"))
    metrics = {
        "kl": z0,
        "rewards/chosen": rewards[desirable].mean() if desirable.any() else nan,
        "rewards/rejected": rewards[~desirable].mean() if (~desirable).any() else nan,
        "logps/chosen": policy_logps.detach()[desirable].mean() if desirable.any() else nan,
        "logps/rejected": policy_logps.detach()[~desirable].mean() if (~desirable).any() else nan,
    }
    return loss, metrics


def npo_loss(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float = 0.1
) -> tuple[torch.Tensor, dict]:
    """NPO's loss (2404.05868 eq. 3) on responses to forget; returns `(loss, metrics)`.

    | argument | shape | meaning |
    |---|---|---|
    | policy_logps, ref_logps | [B] | summed log-probs of the responses to forget |
    """
    _check("policy_logps", policy_logps)
    _check("ref_logps", ref_logps, policy_logps)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    r = policy_logps - ref_logps.detach()
    loss = (-(2.0 / beta) * F.logsigmoid(-beta * r)).mean()
    return loss, {
        "rewards/rejected": (beta * r).detach().mean(),
        "logps/rejected": policy_logps.detach().mean(),
    }
