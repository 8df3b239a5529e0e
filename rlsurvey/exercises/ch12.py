"""Checks for the exercises of chapter 12 (RL for reasoning with verifiable rewards, survey section 3 of arXiv
2412.10400: GRPO, Dr. GRPO and RLOO).

1. `check_group_advantages(fn)`: fn(rewards [P*G], G) -> GRPO's (r − group mean) / (group std + 1e-4).
2. `check_leave_one_out(fn)`: fn(rewards [P*G], G) -> RLOO's r_i − mean of the other G − 1 rewards.
3. `check_constant_aggregation(fn)`: fn(per_token [B, T], mask [B, T], L) -> Dr. GRPO's Σ ℓ / (B · L).
4. `check_pass_at_k(fn)`: fn(n, c, k) -> the unbiased pass@k estimate of one problem (arXiv 2107.03374).
5. `check_baseline_shrink(value)`: the factor by which the group-mean baseline (the sample itself included)
   shrinks the expected policy gradient, for a group of `SHRINK_G` samples.

Each check runs the reader's answer on inputs it has not seen and compares with the reference solution kept
in the package (`rlsurvey.algos.advantages`, `rlsurvey.algos.policy_loss`, `rlsurvey.rewards.verifiable`).
"""

from __future__ import annotations

import math

import torch

from rlsurvey.algos.advantages import group_advantages, leave_one_out_advantages
from rlsurvey.algos.policy_loss import aggregate
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.rewards.verifiable import pass_at_k

__all__ = [
    "EXERCISES",
    "reference_baseline_shrink",
    "reference_constant_aggregation",
    "reference_group_advantages",
    "reference_leave_one_out",
    "reference_pass_at_k",
    "SHRINK_G",
    "check_group_advantages",
    "check_leave_one_out",
    "check_constant_aggregation",
    "check_pass_at_k",
    "check_baseline_shrink",
]

SHRINK_G = 4  # the group size of exercise 5


def reference_group_advantages(rewards, G: int) -> torch.Tensor:
    """(r − group mean) / (group sample std + 1e-4), groups of G consecutive rewards (arXiv 2402.03300)."""
    rows = torch.as_tensor(rewards, dtype=torch.float64).view(-1, G)
    return ((rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + 1e-4)).flatten()


def reference_leave_one_out(rewards, G: int) -> torch.Tensor:
    """r_i − (group sum − r_i) / (G − 1) (RLOO, arXiv 2402.14740)."""
    rows = torch.as_tensor(rewards, dtype=torch.float64).view(-1, G)
    return (rows - (rows.sum(1, keepdim=True) - rows) / (G - 1)).flatten()


def reference_constant_aggregation(per_token, mask, max_tokens: int) -> torch.Tensor:
    """Σ over all unmasked tokens / (B · L) (Dr. GRPO, arXiv 2503.20783)."""
    return (per_token * mask).sum() / (per_token.shape[0] * max_tokens)


def reference_pass_at_k(n: int, c: int, k: int) -> float:
    """1 − C(n − c, k) / C(n, k) (arXiv 2107.03374); math.comb is 0 when n − c < k."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def reference_baseline_shrink() -> float:
    """The group mean holds r_i with weight 1/G; the other terms vanish in expectation: (G − 1) / G."""
    return (SHRINK_G - 1) / SHRINK_G


def _as_tensor(name: str, got) -> torch.Tensor:
    try:
        return torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ExerciseError(f"{name}: expected numbers (a tensor or list), got {type(got).__name__}") from exc


def _reward_cases():
    """Flat rewards [P*G] with their G: binary verifier rewards, real-valued ones, and equal-reward groups."""
    gen = torch.Generator().manual_seed(12)
    yield torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 4  # the second group is all right
    yield (torch.rand(15, generator=gen) < 0.3).double(), 5
    yield torch.randn(12, generator=gen, dtype=torch.float64), 3
    yield torch.tensor([0.0, 0.0, 2.5, -1.0]), 2


def check_group_advantages(fn) -> bool:
    """fn(rewards: Tensor [P*G], group_size: int) -> Tensor [P*G], GRPO's group-normalized advantage."""
    name = "group advantages"
    for rewards, G in _reward_cases():
        got = _as_tensor(name, call_safely(name, fn, rewards.clone(), G))
        hint = (
            "reshape to [P, G]; subtract each row's mean and divide by (the row's sample standard deviation, "
            "unbiased=True, + 1e-4). A row whose rewards are all equal must give zeros, not NaN."
        )
        assert_close(name, got, group_advantages(rewards, G), hint=hint)
    return passed(name)


def check_leave_one_out(fn) -> bool:
    """fn(rewards: Tensor [P*G], group_size: int) -> Tensor [P*G], RLOO's leave-one-out advantage."""
    name = "leave-one-out advantages"
    for rewards, G in _reward_cases():
        got = _as_tensor(name, call_safely(name, fn, rewards.clone(), G))
        hint = "the baseline of sample i is (sum of its group − r_i) / (G − 1): the others only, not itself."
        assert_close(name, got, leave_one_out_advantages(rewards, G), hint=hint)
    return passed(name)


def check_constant_aggregation(fn) -> bool:
    """fn(per_token: Tensor [B, T], mask: Tensor [B, T], max_tokens: int) -> scalar, Dr. GRPO's loss."""
    name = "constant aggregation"
    gen = torch.Generator().manual_seed(3)
    for B, T, L in [(3, 5, 5), (4, 6, 16), (1, 2, 8)]:
        per_token = torch.randn(B, T, generator=gen, dtype=torch.float64)
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
        got = _as_tensor(name, call_safely(name, fn, per_token.clone(), mask.clone(), L))
        hint = (
            "sum the masked per-token losses over every token of every response, then divide by B * L "
            "(a constant), not by the number of tokens and not response by response."
        )
        assert_close(name, got.reshape(()), aggregate(per_token, mask, "constant", L), hint=hint)
    return passed(name)


def check_pass_at_k(fn) -> bool:
    """fn(n: int, c: int, k: int) -> float: the unbiased chance that k of the n samples hold a right one."""
    name = "pass@k"
    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 4), (20, 5, 10), (8, 6, 3), (50, 1, 25), (5, 5, 5)]:
        got = _as_tensor(name, call_safely(name, fn, n, c, k))
        hint = (
            "pass@k = 1 − C(n − c, k) / C(n, k) (math.comb), which is 1 when n − c < k. "
            "1 − (1 − c/n)^k is biased: it samples with replacement."
        )
        assert_close(name, got.reshape(()), float(pass_at_k(n, c, k)[0]), hint=hint, atol=1e-9)
    return passed(name)


def check_baseline_shrink(value) -> bool:
    """Your s in E[(r_i − group mean) ∇ log π(o_i)] = s · E[r_i ∇ log π(o_i)], for G = SHRINK_G."""
    name = "baseline shrink"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExerciseError(f"{name}: expected a number, got {value!r}")
    hint = (
        "the mean includes r_i with weight 1/G; the other G − 1 terms are independent of o_i and vanish in "
        "expectation, so only r_i (1 − 1/G) survives."
    )
    assert_close(name, value, (SHRINK_G - 1) / SHRINK_G, hint=hint)
    return passed(name)


EXERCISES = (
    Exercise(1, "GRPO's advantage", check_group_advantages, reference_group_advantages,
             lambda r, G: (r.view(-1, G) - r.view(-1, G).mean(1, keepdim=True)).flatten()),
    Exercise(2, "RLOO's advantage", check_leave_one_out, reference_leave_one_out,
             lambda r, G: (r.view(-1, G) - r.view(-1, G).mean(1, keepdim=True)).flatten()),
    Exercise(3, "Dr. GRPO's aggregation", check_constant_aggregation, reference_constant_aggregation,
             lambda per_token, mask, L: (per_token * mask).sum() / mask.sum()),
    Exercise(4, "pass@k", check_pass_at_k, reference_pass_at_k, lambda n, c, k: 1 - (1 - c / n) ** k),
    Exercise(5, "The group mean's shrink", check_baseline_shrink, reference_baseline_shrink, 1.0, value=True),
)  # fmt: skip
