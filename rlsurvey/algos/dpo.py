"""The direct preference loss family: DPO and the variants that followed it (survey sections 7 and 8).

Every loss here takes the summed log-probabilities of a chosen and a rejected response under the policy (and,
for the losses that need one, under a frozen reference) and returns `(loss, metrics)`. They share one
quantity, the *log-ratio margin*

    Δ = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)],

which is β⁻¹ times the difference of DPO's implicit rewards r(x, y) = β log π(y|x)/π_ref(y|x).

| loss_type | paper (arXiv) | per-pair loss |
|---|---|---|
| sigmoid | DPO, 2305.18290 eq. 7 | −log σ(βΔ) |
| hinge | RSO's hinge-norm, 2309.06657 (SLiC-HF's hinge on Δ) | max(0, 1 − βΔ) |
| ipo | IPO / ΨPO, 2310.12036 eq. 17 | (Δ̄ − 1/(2β))², Δ̄ from per-token mean log-probs |
| cdpo | conservative DPO (label smoothing ε) | −(1−ε) log σ(βΔ) − ε log σ(−βΔ) |
| robust | provably robust DPO, 2403.00409 eq. 9 | [−(1−ε) log σ(βΔ) + ε log σ(−βΔ)] / (1 − 2ε) |
| dpop | DPO-Positive (Smaug), 2402.13228 eq. 3 | −log σ(β[Δ − λ max(0, log π_ref(y_w) − log π(y_w))]) |
| bdpo | β-DPO, 2407.08639 eq. 7 | −log σ(β_b Δ), β_b = β[1 + α(M_b − M_0)] from the batch |
| simpo | SimPO, 2405.14734 eq. 6 (no reference) | −log σ(β ℓ̄_w − β ℓ̄_l − γ), ℓ̄ = mean token log-prob |
| orpo | ORPO, 2403.07691 eq. 6-7 (no reference) | −ℓ̄_w − λ log σ(log odds(y_w) − log odds(y_l)) |

cDPO and robust DPO both model a fraction ε of flipped labels but are different estimators: cDPO mixes the two
directions (its minimizer stays finite, so the margin stops growing), robust DPO de-biases the loss so that
in expectation over the noise it equals the clean DPO loss. Both equal DPO at ε = 0.

IPO's length normalization: the IPO target 1/(2β) is a fixed number, while a *summed* log-ratio grows with
the response length, so the same β would mean a different regularization strength for short and long
responses. Following common practice we use per-token mean log-probabilities (Δ̄) for IPO; pass
`ipo_length_normalize=False` for the paper's summed form.

The unpaired losses (KTO, NPO) live in `rlsurvey.algos.kto`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["LOSS_TYPES", "REFERENCE_FREE", "preference_loss", "log1mexp"]

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "cdpo", "robust", "dpop", "bdpo", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")  # losses that never look at a reference model
_NEEDS_LENGTHS = ("simpo", "orpo")  # losses defined on per-token mean log-probabilities


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x ≤ 0, accurate near 0 and for very negative x (Mächler's two branches)."""
    x = x.clamp(max=-1e-12)
    cut = -math.log(2.0)
    # each branch sees only its own range: torch.where differentiates both, and the unused branch must stay
    # finite (log1p(-exp(x)) at x = -1e-8 in float32 is log(0), whose infinite gradient times 0 is NaN)
    near = torch.log(-torch.expm1(x.clamp(min=cut)))
    far = torch.log1p(-torch.exp(x.clamp(max=cut)))
    return torch.where(x > cut, near, far)


def _check_logps(name: str, t, shape=None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of summed log-probabilities, got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must have shape [batch], got {tuple(t.shape)}")
    if shape is not None and t.shape != shape:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)} like the chosen log-probs"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    loss_type: str = "sigmoid",
    beta: float = 0.1,
    *,
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    ipo_length_normalize: bool = True,
    dpop_lambda: float = 50.0,
    bdpo_alpha: float = 0.6,
    bdpo_margin_baseline: float | None = None,
    simpo_gamma: float = 0.5,
) -> tuple[torch.Tensor, dict]:
    """One loss of the DPO family on a batch of preference pairs; returns `(loss, metrics)`.

    | argument | shape | meaning |
    |---|---|---|
    | policy_chosen_logps, policy_rejected_logps | [B] | Σ_t log π(y_t | x, y_<t) over response tokens |
    | ref_chosen_logps, ref_rejected_logps | [B] | the same under the frozen reference (not for simpo/orpo) |
    | chosen_lengths, rejected_lengths | [B] | response token counts (needed by simpo, orpo, and ipo) |

    beta: the KL-regularization strength β (DPO, IPO, cDPO, robust, DPO-Positive, β-DPO's base β), SimPO's
    reward scale β, and ORPO's weight λ on the odds-ratio term. label_smoothing: ε for cdpo and robust, in
    [0, 0.5). dpop_lambda: λ of DPO-Positive. bdpo_alpha, bdpo_margin_baseline: α and M_0 of β-DPO (M_0 is
    a running mean of batch margins kept by the trainer; None uses the current batch's, so β_b = β).
    simpo_gamma: SimPO's target reward margin γ.

    The metrics use TRL's names: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies (the
    implicit rewards β log π/π_ref, or β times mean log-prob for the reference-free losses), logps/chosen,
    logps/rejected, plus the loss-specific ones.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    pc = _check_logps("policy_chosen_logps", policy_chosen_logps)
    pr = _check_logps("policy_rejected_logps", policy_rejected_logps, pc.shape)
    needs_ref = loss_type not in REFERENCE_FREE
    if needs_ref and (ref_chosen_logps is None or ref_rejected_logps is None):
        raise ValueError(f"loss_type={loss_type!r} needs ref_chosen_logps and ref_rejected_logps")
    if loss_type in _NEEDS_LENGTHS or (loss_type == "ipo" and ipo_length_normalize):
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"loss_type={loss_type!r} needs chosen_lengths and rejected_lengths")
        lc = _check_logps("chosen_lengths", chosen_lengths.to(pc.dtype), pc.shape).clamp(min=1)
        lr = _check_logps("rejected_lengths", rejected_lengths.to(pc.dtype), pc.shape).clamp(min=1)
    metrics: dict = {}

    if needs_ref:
        rc = _check_logps("ref_chosen_logps", ref_chosen_logps, pc.shape).detach()
        rr = _check_logps("ref_rejected_logps", ref_rejected_logps, pc.shape).detach()
        chosen_ratio, rejected_ratio = pc - rc, pr - rr
        margin = chosen_ratio - rejected_ratio  # Δ
        reward_chosen, reward_rejected = beta * chosen_ratio, beta * rejected_ratio

    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * margin)
    elif loss_type == "hinge":
        losses = torch.relu(1.0 - beta * margin)
    elif loss_type == "ipo":
        m = (chosen_ratio / lc - rejected_ratio / lr) if ipo_length_normalize else margin
        losses = (m - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "cdpo":
        eps = label_smoothing
        losses = -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
    elif loss_type == "robust":
        eps = label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (
            1 - 2 * eps
        )
    elif loss_type == "dpop":
        penalty = torch.relu(rc - pc)  # how far the chosen response's likelihood fell below the reference's
        losses = -F.logsigmoid(beta * (margin - dpop_lambda * penalty))
        metrics["dpop/penalty"] = penalty.mean().detach()
    elif loss_type == "bdpo":
        batch_margin = (reward_chosen - reward_rejected).detach().mean()  # M_b, in reward units
        baseline = (
            batch_margin
            if bdpo_margin_baseline is None
            else torch.as_tensor(bdpo_margin_baseline, dtype=batch_margin.dtype)
        )
        beta_b = (beta * (1.0 + bdpo_alpha * (batch_margin - baseline))).clamp(min=1e-3)
        losses = -F.logsigmoid(beta_b * margin)
        reward_chosen, reward_rejected = beta_b * chosen_ratio, beta_b * rejected_ratio
        metrics["bdpo/beta"] = beta_b.detach()
        metrics["bdpo/batch_margin"] = batch_margin
    elif loss_type == "simpo":
        reward_chosen, reward_rejected = beta * pc / lc, beta * pr / lr
        losses = -F.logsigmoid(reward_chosen - reward_rejected - simpo_gamma)
    else:  # orpo
        mean_c, mean_r = pc / lc, pr / lr
        log_odds = (mean_c - log1mexp(mean_c)) - (mean_r - log1mexp(mean_r))
        nll = -mean_c
        ratio_loss = -F.logsigmoid(log_odds)
        losses = nll + beta * ratio_loss
        reward_chosen, reward_rejected = beta * mean_c.detach(), beta * mean_r.detach()
        metrics["orpo/nll_loss"] = nll.mean().detach()
        metrics["orpo/log_odds_ratio"] = log_odds.mean().detach()

    reward_chosen, reward_rejected = reward_chosen.detach(), reward_rejected.detach()
    metrics.update(
        {
            "rewards/chosen": reward_chosen.mean(),
            "rewards/rejected": reward_rejected.mean(),
            "rewards/margins": (reward_chosen - reward_rejected).mean(),
            "rewards/accuracies": (reward_chosen > reward_rejected).float().mean(),
            "logps/chosen": pc.detach().mean(),
            "logps/rejected": pr.detach().mean(),
        }
    )
    return losses.mean(), metrics
