"""Reward functions as the trainers call them: the type, the check of what they return, and the layout of
grouped prompts. Below both `rlsurvey.algos` (which trains on rewards) and `rlsurvey.rewards` (which makes
them), so neither has to import the other for these.

A reward function is any callable `reward_fn(prompts, completions) -> sequence of floats`, one per
completion: the gold reward of a synthetic world, a trained reward model, a verifier, or an AI judge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["RewardError", "RewardFn", "compute_rewards", "repeat_prompts"]

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


class RewardError(ValueError):
    """The reward function returned something a trainer cannot use (wrong length, NaN, infinity)."""


def repeat_prompts(prompts: Sequence[str], group_size: int) -> list[str]:
    """[p0, p1] -> [p0, p0, ..., p1, p1, ...]: G consecutive copies of each prompt, the layout of grouped
    advantages (`rlsurvey.algos.advantages`)."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    return [p for p in prompts for _ in range(group_size)]


def compute_rewards(reward_fn: RewardFn, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """Call `reward_fn` and check what comes back: one finite number per completion, as a float32 tensor."""
    raw = reward_fn(list(prompts), list(completions))
    try:
        scores = torch.as_tensor(raw if isinstance(raw, torch.Tensor) else list(raw), dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise RewardError(
            f"the reward function must return numbers, got {type(raw).__name__}: {exc}"
        ) from exc
    scores = scores.detach().flatten().cpu()
    if scores.numel() != len(completions):
        raise RewardError(
            f"the reward function returned {scores.numel()} scores for {len(completions)} completions; "
            "it must return exactly one per completion"
        )
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if bad:
        first = bad[0]
        raise RewardError(
            f"the reward function returned a non-finite score ({scores[first].item()}) for completion "
            f"{first}: {completions[first]!r}; {len(bad)} of {len(completions)} scores are NaN or infinite"
        )
    return scores
