"""Advantage estimators for sequence-level rewards: group-normalized (GRPO, Dr. GRPO), leave-one-out (RLOO),
and whitening (PPO for language models). Survey sections 4.2 and 3 (o1, R1, Kimi).

Papers: GRPO, DeepSeekMath (arXiv 2402.03300, eq. 3 and section 4.1.2); Dr. GRPO (arXiv 2503.20783,
section 3.2); RLOO, "Back to Basics" (arXiv 2402.14740, eq. 5, after Kool et al. 2019).

Rewards arrive flat, `[P * G]`, ordered prompt by prompt: the G samples of prompt 0, then of prompt 1, ... .
Every estimator here uses only the other samples of the same prompt as its baseline, so none needs a value
model. That is the whole point of these methods for LLMs: a critic as large as the policy is expensive.
"""

from __future__ import annotations

import torch

__all__ = ["group_advantages", "leave_one_out_advantages", "process_advantages", "whiten"]


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1 or not rewards.is_floating_point():
        got = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise ValueError(f"rewards must be a 1-D float tensor [prompts * group_size], got {got}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(
            f"group_size must be an int of at least 2 (a baseline needs other samples), got {group_size!r}"
        )
    if rewards.numel() % group_size:
        raise ValueError(f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or infinity")
    return rewards.view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO's outcome advantage Â_i = (r_i − mean(r_group)) / (std(r_group) + eps)  (2402.03300 eq. 3).

    With `scale_by_std=False` it is Dr. GRPO's Â_i = r_i − mean(r_group) (2503.20783): dividing by the
    group's standard deviation up-weights prompts that are almost always solved or almost never solved,
    a difficulty bias. A group whose rewards are all equal gets zero advantage (no division by zero).

    | argument | shape | meaning |
    |---|---|---|
    | rewards | [P*G] | one scalar reward per sampled response, grouped by prompt |
    | returns | [P*G] | the advantage of each response |
    """
    r = _grouped(rewards, group_size)
    centered = r - r.mean(dim=1, keepdim=True)
    if scale_by_std:
        centered = centered / (r.std(dim=1, keepdim=True, unbiased=True) + eps)
    return centered.reshape(-1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO's advantage Â_i = r_i − (1/(G−1)) Σ_{j≠i} r_j  (2402.14740 eq. 5).

    The baseline of each sample excludes that sample, so it is independent of the sample's action and the
    gradient stays unbiased; it equals G/(G−1) times the group-mean-centred reward.

    | argument | shape | meaning |
    |---|---|---|
    | rewards | [P*G] | one scalar reward per sampled response, grouped by prompt |
    | returns | [P*G] | the advantage of each response |
    """
    r = _grouped(rewards, group_size)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    return (r - baseline).reshape(-1)


def process_advantages(
    step_rewards, step_index, group_size: int, length: int, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO with process supervision (DeepSeekMath, arXiv 2402.03300, section 4.1.3): each response i has
    rewards r_i^(j) at the tokens index(j) that end its steps. They are normalized over all step rewards R
    of the group, r̃_i^(j) = (r_i^(j) − mean(R)) / (std(R) + eps), and the advantage of token t is the sum of
    the normalized rewards of the steps that end at or after it: Â_{i,t} = Σ_{index(j) ≥ t} r̃_i^(j).

    | argument | shape | meaning |
    |---|---|---|
    | step_rewards | P*G lists | the rewards of each response's steps, in order, grouped by prompt |
    | step_index | P*G lists | the response-token index where each step ends, increasing, each < length |
    | returns | [P*G, length] | Â_{i,t}; 0 after a response's last step |
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an int of at least 2, got {group_size!r}")
    if len(step_rewards) != len(step_index) or len(step_rewards) % group_size:
        raise ValueError(
            f"step_rewards and step_index must have one entry per response, a multiple of group_size="
            f"{group_size}; got {len(step_rewards)} and {len(step_index)}"
        )
    out = torch.zeros(len(step_rewards), length, dtype=torch.float32)
    for g in range(0, len(step_rewards), group_size):
        rows = range(g, g + group_size)
        for i in rows:
            if len(step_rewards[i]) != len(step_index[i]):
                raise ValueError(
                    f"response {i} has {len(step_rewards[i])} step rewards and {len(step_index[i])} step ends"
                )
            idx = list(step_index[i])
            if any(not 0 <= k < length for k in idx) or any(a >= b for a, b in zip(idx, idx[1:])):
                raise ValueError(f"response {i}: step ends must increase within [0, {length}), got {idx}")
        pooled = torch.tensor([float(r) for i in rows for r in step_rewards[i]], dtype=torch.float64)
        if pooled.numel() == 0:
            continue
        if not torch.isfinite(pooled).all():
            raise ValueError("step_rewards contain NaN or infinity")
        mean = pooled.mean()
        std = pooled.std(unbiased=True) if pooled.numel() > 1 else torch.zeros((), dtype=torch.float64)
        for i in rows:
            for r, k in zip(step_rewards[i], step_index[i]):
                out[i, : k + 1] += float((float(r) - mean) / (std + eps))
    return out


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8):
    """(x − mean) / std over the entries where `mask` is true (all entries if None); masked-out entries are 0.

    With `shift_mean=False` the mean is added back, which rescales without moving the centre; PPO for LMs
    uses that for rewards so that whitening does not change the sign of a reward.
    """
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected the shape of x {tuple(x.shape)}")
    m = mask.to(x.dtype)
    n = m.sum()
    if n < 2:
        raise ValueError(f"whitening needs at least 2 unmasked entries, got {int(n)}")
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m
