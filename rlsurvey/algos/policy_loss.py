"""The clipped policy-gradient loss on tokens, and the ways of averaging it over ragged responses.

Shared by PPO for language models (`rlhf_ppo`), GRPO and RLOO. Survey sections 4.2 and 3.
Papers: PPO (arXiv 1707.06347, eq. 7); GRPO (arXiv 2402.03300, eq. 3); Dr. GRPO (arXiv 2503.20783, eq. 2);
DAPO's token-level mean (arXiv 2503.14476, section 3.3).

How a per-token loss becomes one number matters more than it looks, because responses have different
lengths:

- sequence_mean, (1/B) Σ_i (1/|o_i|) Σ_t ℓ_it: GRPO as published. A token of a short response weighs
  more, so a long wrong answer is penalized less per token (a length bias).
- token_mean, Σ_i Σ_t ℓ_it / Σ_i |o_i|: every token in the batch weighs the same.
- constant, Σ_i Σ_t ℓ_it / (B · L): Dr. GRPO. A fixed normalizer L (the generation budget), so nothing
  depends on the lengths.

`policy_loss` names the whole recipe as TRL's GRPOTrainer does (`loss_type`, `importance_sampling_level`),
one function per idea of the papers since:

| loss_type | per-token term | averaged by |
|---|---|---|
| grpo (arXiv 2402.03300) | clipped ratio, −min(ρA, clip(ρ, 1−ε, 1+ε_high)A) | sequence_mean |
| bnpo | the same | token_mean over the (micro-)batch |
| dr_grpo (arXiv 2503.20783) | the same | constant, ÷ (B · L) |
| dapo (arXiv 2503.14476, 3.3) | the same; clip-higher ε_high > ε (3.1) | Σ ÷ tokens of the whole batch |
| cispo (arXiv 2506.13585) | −sg(min(ρ, ε_high)) · A · log π_θ (REINFORCE) | as dapo |
| sapo (arXiv 2511.20347) | −(4/τ) σ(τ(ρ − 1)) · A, τ by the sign of A | sequence_mean |

`importance_sampling_level="sequence"` is GSPO (arXiv 2507.18071): one ratio per response, the geometric
mean of its token ratios, s_i = exp(mean_t log ρ_it), used for every token of the response.
"""

from __future__ import annotations

import torch

__all__ = [
    "AGGREGATIONS",
    "IMPORTANCE_LEVELS",
    "LOSS_TYPES",
    "SAMPLER_CORRECTIONS",
    "aggregate",
    "aggregate_loss_type",
    "cispo_surrogate",
    "clipped_surrogate",
    "importance_log_weights",
    "policy_loss",
    "sampler_correction_weights",
    "sapo_surrogate",
]

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo")
IMPORTANCE_LEVELS = ("token", "sequence")
SAMPLER_CORRECTIONS = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_tokens: int | None = None):
    """Average a per-token loss `[B, T]` over the tokens where `mask` is true, as `mode` says (list above).

    max_tokens: the constant L of `constant` mode (default T, the padded length).
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"mode must be one of {list(AGGREGATIONS)}, got {mode!r}")
    if per_token.dim() != 2 or mask.shape != per_token.shape:
        raise ValueError(
            f"per_token and mask must both be [B, T]; got {tuple(per_token.shape)} and {tuple(mask.shape)}"
        )
    m = mask.to(per_token.dtype)
    total = (per_token * m).sum(dim=1)  # [B]
    if mode == "sequence_mean":
        return (total / m.sum(dim=1).clamp(min=1)).mean()
    if mode == "token_mean":
        return total.sum() / m.sum().clamp(min=1)
    length = per_token.shape[1] if max_tokens is None else max_tokens
    if length < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    return total.sum() / (per_token.shape[0] * length)


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate per token (1707.06347 eq. 7):

        ℓ_t = −min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε_high) Â_t),    ρ_t = π_θ(o_t) / π_old(o_t)

    | argument | shape | meaning |
    |---|---|---|
    | logprobs | [B, T] | log π_θ(o_t | q, o_<t) of the sampled tokens, with gradient |
    | old_logprobs | [B, T] | the same under the policy that sampled them (no gradient) |
    | advantages | [B] or [B, T] | one advantage per response (broadcast to its tokens) or per token |
    | mask | [B, T] | true on response tokens |
    | returns | [B, T], dict | the per-token loss (zero off the mask) and ratio statistics |

    clip_eps_high: a separate upper clip (DAPO's "clip-higher"); None means symmetric.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and mask "
            f"{tuple(mask.shape)} must have one shape"
        )
    if advantages.dim() == 1:
        if advantages.shape[0] != logprobs.shape[0]:
            raise ValueError(f"advantages has {advantages.shape[0]} rows, logprobs has {logprobs.shape[0]}")
        advantages = advantages[:, None]
    elif advantages.shape != logprobs.shape:
        raise ValueError(f"advantages must be [B] or {tuple(logprobs.shape)}, got {tuple(advantages.shape)}")
    if not 0 < clip_eps < 1:
        raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps}")
    high = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = logprobs - old_logprobs.detach()
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    m = mask.to(per_token.dtype)
    n = m.sum().clamp(min=1)
    with torch.no_grad():
        stats = {
            "policy/clipfrac_avg": (((unclipped > clipped).to(m.dtype)) * m).sum() / n,
            "policy/approxkl_avg": (0.5 * log_ratio.pow(2) * m).sum() / n,
            "val/ratio": (ratio * m).sum() / n,
        }
    return per_token * m, stats


def _check_shapes(logprobs, old_logprobs, mask, advantages) -> torch.Tensor:
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and mask "
            f"{tuple(mask.shape)} must have one [B, T] shape"
        )
    if advantages.dim() != 1 or advantages.shape[0] != logprobs.shape[0]:
        raise ValueError(f"advantages must be [B] = [{logprobs.shape[0]}], got {tuple(advantages.shape)}")
    return advantages[:, None]


def importance_log_weights(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    """log ρ: per token, log π_θ − log π_old ([B, T]); per sequence (GSPO), the masked mean of those over
    each response ([B, 1]), with gradient through every token of it."""
    if level not in IMPORTANCE_LEVELS:
        raise ValueError(f"importance_sampling_level must be one of {list(IMPORTANCE_LEVELS)}, got {level!r}")
    log_ratio = logprobs - old_logprobs.detach()
    if level == "token":
        return log_ratio
    m = mask.to(log_ratio.dtype)
    return ((log_ratio * m).sum(1) / m.sum(1).clamp(min=1))[:, None]


def cispo_surrogate(
    logprobs: torch.Tensor, log_weights: torch.Tensor, advantages: torch.Tensor, cap: float
) -> torch.Tensor:
    """CISPO's per-token term (arXiv 2506.13585, eq. 4): −sg(min(ρ, cap)) · A · log π_θ. Every token keeps its
    gradient (none is clipped away, unlike PPO's clip); only the size of its importance weight is bounded.
    advantages [B, 1]; returns [B, T]."""
    if not cap > 0:
        raise ValueError(f"the CISPO cap (clip_eps_high) must be > 0, got {cap}")
    weight = torch.clamp(torch.exp(log_weights), max=cap).detach()
    return -weight * advantages * logprobs


def sapo_surrogate(
    log_weights: torch.Tensor, advantages: torch.Tensor, temperature_pos: float, temperature_neg: float
) -> torch.Tensor:
    """SAPO's per-token term (arXiv 2511.20347): −(4/τ) σ(τ(ρ − 1)) · A, with τ = temperature_pos where A > 0
    and temperature_neg elsewhere. Its gradient is the ratio's times 4σ'(τ(ρ−1)), which equals 1 at ρ = 1 and
    fades smoothly as ρ leaves 1, instead of PPO's hard cut to zero. advantages [B, 1]; returns [B, T]."""
    if not (temperature_pos > 0 and temperature_neg > 0):
        raise ValueError(f"SAPO temperatures must be > 0, got {temperature_pos} and {temperature_neg}")
    # the temperatures as tensors of the weights' dtype: python floats would pass through float32 here
    pos, neg = (torch.tensor(t, dtype=log_weights.dtype, device=log_weights.device) for t in
                (temperature_pos, temperature_neg))  # fmt: skip
    tau = torch.where(advantages > 0, pos, neg)
    ratio = torch.exp(log_weights)
    return -(4.0 / tau) * torch.sigmoid(tau * (ratio - 1)) * advantages


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str = "dapo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    importance_sampling_level: str = "token",
    max_completion_length: int | None = None,
    num_items: float | None = None,
    sapo_temperature_pos: float = 1.0,
    sapo_temperature_neg: float = 1.05,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The policy-gradient loss of `loss_type` (table above) on one batch; returns (loss, stats).

    | argument | shape | meaning |
    |---|---|---|
    | logprobs | [B, T] | log π_θ of the sampled tokens, with gradient |
    | old_logprobs | [B, T] | log π_old, the policy that sampled (no gradient) |
    | advantages | [B] | one advantage per response |
    | mask | [B, T] | true on response tokens |

    epsilon / epsilon_high: the clip range [1 − ε, 1 + ε_high] (ε_high defaults to ε); for cispo ε_high is the
    cap of the importance weight and must be given. max_completion_length: L of dr_grpo (default T).
    num_items: the number of response tokens of the whole batch that dapo and cispo divide by, when this call
    sees only a part of it (default: the tokens of this call). token_weights: [B, T] or [B, 1] detached
    factors on each token's term (the sampler-mismatch correction, `sampler_correction_weights`). Names
    follow TRL's GRPOConfig.
    stats: "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean" (clipped token shares, as
    TRL counts them), or "cispo_clip_ratio".
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    adv = _check_shapes(logprobs, old_logprobs, mask, advantages)
    log_w = importance_log_weights(logprobs, old_logprobs, mask, importance_sampling_level)
    ratio = torch.exp(log_w)
    m = mask.to(logprobs.dtype)
    n = m.sum().clamp(min=1)

    def share(flags: torch.Tensor) -> torch.Tensor:
        return (flags.expand_as(m).to(m.dtype) * m).sum() / n

    stats: dict[str, torch.Tensor] = {}
    if loss_type == "cispo":
        if epsilon_high is None:
            raise ValueError("loss_type='cispo' needs epsilon_high, the cap of its importance weight")
        per_token = cispo_surrogate(logprobs, log_w, adv, epsilon_high).expand_as(m)
        with torch.no_grad():
            stats["cispo_clip_ratio"] = share((ratio > epsilon_high) & (adv > 0))
    elif loss_type == "sapo":
        per_token = sapo_surrogate(log_w, adv, sapo_temperature_pos, sapo_temperature_neg).expand_as(m)
    else:
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        high = epsilon if epsilon_high is None else epsilon_high
        clipped = torch.clamp(ratio, 1 - epsilon, 1 + high)
        per_token = (-torch.minimum(ratio * adv, clipped * adv)).expand_as(m)
        with torch.no_grad():
            low, up = (ratio < 1 - epsilon) & (adv < 0), (ratio > 1 + high) & (adv > 0)
            stats.update({"clip_ratio/low_mean": share(low), "clip_ratio/high_mean": share(up),
                          "clip_ratio/region_mean": share(low | up)})  # fmt: skip
    if token_weights is not None:
        per_token = per_token * token_weights.detach()
    return aggregate_loss_type(per_token * m, m, loss_type, max_completion_length, num_items), stats


def aggregate_loss_type(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    max_completion_length: int | None = None,
    num_items: float | None = None,
) -> torch.Tensor:
    """Average a masked per-token loss [B, T] the way `loss_type` does (the table above); a KL term added per
    token is averaged the same way. num_items: the whole batch's token count for dapo and cispo."""
    if loss_type in ("grpo", "sapo"):
        return aggregate(per_token, mask, "sequence_mean")
    if loss_type == "bnpo":
        return aggregate(per_token, mask, "token_mean")
    if loss_type == "dr_grpo":
        return aggregate(per_token, mask, "constant", max_completion_length)
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    m = mask.to(per_token.dtype)
    count = m.sum() if num_items is None else torch.as_tensor(num_items, dtype=m.dtype, device=m.device)
    return (per_token * m).sum() / count.clamp(min=1)


def sampler_correction_weights(
    train_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, mode: str, cap: float
) -> tuple[torch.Tensor, dict]:
    """Weights that correct for sampling with an engine other than the trainer (a fast inference engine
    in lower precision): the importance ratio w = π_train / π_sampler of the sampled tokens, per token or
    per sequence (the product over its tokens), then either truncated at `cap` (TIS, "..._truncate": w ←
    min(w, cap)) or used as a filter (MIS, "..._mask": 1 where w <= cap, else 0, dropping the tokens or the
    whole sequences the sampler got most wrong). Names as TRL's vllm_importance_sampling_mode. Returns
    (weights [B, T] or [B, 1], no gradient; stats "sampler/logprob_gap" (mean |log w| per token),
    "sampler/is_ratio_mean", "sampler/masked_frac")."""
    if mode not in SAMPLER_CORRECTIONS:
        raise ValueError(f"sampler_correction must be one of {list(SAMPLER_CORRECTIONS)}, got {mode!r}")
    if not cap >= 1:
        raise ValueError(f"the importance-sampling cap must be >= 1, got {cap}")
    m = mask.to(train_logprobs.dtype)
    log_w = (train_logprobs - sampler_logprobs).detach() * m
    n = m.sum().clamp(min=1)
    if mode.startswith("sequence"):
        log_w = log_w.sum(1, keepdim=True)
    w = torch.exp(log_w)
    keep = (w <= cap).to(m.dtype)
    weights = torch.clamp(w, max=cap) if mode.endswith("truncate") else keep
    stats = {
        "sampler/logprob_gap": ((train_logprobs - sampler_logprobs).abs() * m).sum() / n,
        "sampler/is_ratio_mean": (w.expand_as(m) * m).sum() / n,
        "sampler/masked_frac": ((1 - keep).expand_as(m) * m).sum() / n if mode.endswith("mask") else 0.0 * n,
    }
    return weights, {k: v.detach() for k, v in stats.items()}
