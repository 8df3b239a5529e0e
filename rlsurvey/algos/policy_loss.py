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
"""

from __future__ import annotations

import torch

__all__ = ["AGGREGATIONS", "aggregate", "clipped_surrogate"]

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


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
