"""Checks for the exercises of chapter 14 (RL for reasoning after the survey: the 2025-26 recipe of DAPO,
GSPO, CISPO and SAPO, entropy, and the sampler-trainer mismatch).

1. `check_gspo_token(fn)`: fn(logprobs [B, T], old_logprobs [B, T], mask [B, T]) -> [B, T], GSPO-token's
   per-token ratio (arXiv 2507.18071, section 4.3): ρ^seq_i,t = sg[ρ^seq_i] · π_θ(y_t) / sg[π_θ(y_t)], whose
   value is the sequence ratio ρ^seq_i (the paper's s_i) on every token of response i but whose gradient flows
   through each token alone.
2. `check_informative_share(fn)`: fn(p, K) -> the expected share of groups that dynamic sampling keeps, for
   prompts the policy solves with probability p and groups of K responses (a group is dropped when its
   rewards all agree).
3. `check_two_sided_mask(fn)`: fn(train_logprobs, sampler_logprobs, mask, cap) -> [B, T] weights of a
   two-sided masked importance sampling: 1 on response tokens whose ratio π_train / π_sampler lies in
   [1/cap, cap], 0 elsewhere (the package's masks drop only ratios above the cap).
4. `check_clip_ceiling(value)`: the largest probability that a token of old probability `CEIL_P` with a
   positive advantage can be pushed to, within one rollout, before the clipped objective stops pulling it
   up, under DAPO's clip-higher ε_high = `CEIL_EPS_HIGH`.

None of them is computed in a cell of the chapter: the chapter writes GSPO's sequence ratio but not its token
variant, measures the dropped share of dynamic sampling but does not derive it, and masks only from above.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlsurvey.algos.policy_loss import importance_log_weights
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "CEIL_EPS_HIGH",
    "CEIL_P",
    "EXERCISES",
    "check_clip_ceiling",
    "check_gspo_token",
    "check_informative_share",
    "check_two_sided_mask",
    "reference_clip_ceiling",
    "reference_gspo_token",
    "reference_informative_share",
    "reference_two_sided_mask",
]

CEIL_P = 0.05  # exercise 4: the old probability of the token
CEIL_EPS_HIGH = 0.28  # and DAPO's upper clip


def _ragged(gen: torch.Generator, B: int, T: int):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.float64)
    old = -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3
    new = old + 0.3 * torch.randn(B, T, generator=gen, dtype=torch.float64)
    return new, old, mask


# --- 1. GSPO-token -----------------------------------------------------------------------------------------


def reference_gspo_token(logprobs, old_logprobs, mask) -> torch.Tensor:
    """sg[ρ^seq_i] · exp(log π_θ − sg[log π_θ]): the value of ρ^seq_i, the gradient of one token's log-prob
    alone."""
    s = torch.exp(importance_log_weights(logprobs, old_logprobs, mask, "sequence"))  # [B, 1]
    return s.detach() * torch.exp(logprobs - logprobs.detach())


def check_gspo_token(fn) -> bool:
    """fn(logprobs, old_logprobs, mask) -> [B, T] ratios; checked by value and by gradient."""
    name = "GSPO-token ratio"
    hint = (
        "compute the sequence ratio ρ^seq_i = exp(masked mean over t of log π_θ − log π_old), detach it, and "
        "multiply by exp(log π_θ − log π_θ.detach()), which is 1 in value and carries the gradient of each "
        "token's own log-prob."
    )
    gen = torch.Generator().manual_seed(14)
    for B, T in ((3, 5), (5, 11), (2, 1)):
        new, old, mask = _ragged(gen, B, T)
        weights = torch.randn(B, T, generator=gen, dtype=torch.float64)
        mine = new.clone().requires_grad_(True)
        got = call_safely(name, fn, mine, old.clone(), mask.clone())
        if not isinstance(got, torch.Tensor) or not got.requires_grad:
            raise ExerciseError(f"{name}: expected a tensor that carries a gradient. Hint: {hint}")
        ref_in = new.clone().requires_grad_(True)
        want = reference_gspo_token(ref_in, old, mask)
        assert_close(f"{name} (value)", (got * mask).detach(), (want * mask).detach(), hint=hint, atol=1e-8)
        (g_got,) = torch.autograd.grad((got * weights * mask).sum(), mine)
        (g_want,) = torch.autograd.grad((want * weights * mask).sum(), ref_in)
        assert_close(f"{name} (gradient)", g_got * mask, g_want * mask, hint=hint, atol=1e-8)
    return passed(name)


# --- 2. the share of groups dynamic sampling keeps ---------------------------------------------------------


def reference_informative_share(p: float, K: int) -> float:
    """A group carries a signal unless all K rewards agree: 1 − p^K − (1 − p)^K."""
    return 1.0 - p**K - (1.0 - p) ** K


def check_informative_share(fn) -> bool:
    """fn(p: float, K: int) -> float in [0, 1]."""
    name = "informative share"
    hint = (
        "the rewards of a group all agree when all K responses are right (probability p^K) or all are wrong "
        "((1 − p)^K); dynamic sampling keeps the rest."
    )
    for p in (0.0, 0.05, 0.3, 0.5, 0.77, 0.99, 1.0):
        for K in (2, 3, 8, 16):
            got = call_safely(name, fn, p, K)
            if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
                raise ExerciseError(f"{name}: expected a number for p={p}, K={K}, got {got!r}. Hint: {hint}")
            assert_close(f"{name} (p={p}, K={K})", float(got), reference_informative_share(p, K), hint=hint,
                         atol=1e-9)  # fmt: skip
    return passed(name)


# --- 3. a two-sided masked importance sampling -------------------------------------------------------------


def reference_two_sided_mask(train_logprobs, sampler_logprobs, mask, cap: float) -> torch.Tensor:
    """1 where |log π_train − log π_sampler| <= log cap on a response token, else 0."""
    log_w = train_logprobs - sampler_logprobs
    keep = (log_w.abs() <= math.log(cap)).to(mask.dtype)
    return keep * mask


def check_two_sided_mask(fn) -> bool:
    """fn(train_logprobs [B, T], sampler_logprobs [B, T], mask [B, T], cap: float) -> [B, T] of 0 and 1."""
    name = "two-sided mask"
    hint = (
        "the ratio is exp(log π_train − log π_sampler); keep a token (weight 1) when 1/cap <= ratio <= cap "
        "and it is a response token (mask 1), drop it (0) otherwise, padding included."
    )
    gen = torch.Generator().manual_seed(41)
    for (B, T), cap in (((4, 7), 1.5), ((3, 12), 2.0), ((6, 3), 1.2)):
        train, sampler, mask = _ragged(gen, B, T)
        got = call_safely(name, fn, train.clone(), sampler.clone(), mask.clone(), cap)
        assert_close(name, torch.as_tensor(got), reference_two_sided_mask(train, sampler, mask, cap),
                     hint=hint, atol=0, rtol=0)  # fmt: skip
    return passed(name)


# --- 4. the clip's ceiling ---------------------------------------------------------------------------------


def reference_clip_ceiling() -> float:
    """With A > 0 the clipped term stops growing once ρ = π_θ / π_old exceeds 1 + ε_high: p (1 + ε_high)."""
    return CEIL_P * (1 + CEIL_EPS_HIGH)


def check_clip_ceiling(value) -> bool:
    """Your largest π_θ for a token of old probability CEIL_P, under ε_high = CEIL_EPS_HIGH."""
    name = "clip ceiling"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExerciseError(f"{name}: expected a number, got {value!r}")
    hint = (
        "for A > 0 the clipped objective min(ρA, clip(ρ, 1 − ε, 1 + ε_high)A) is flat once ρ > 1 + ε_high, "
        "so the token's gradient is 0 from π_θ = π_old (1 + ε_high) on; a probability, not a ratio."
    )
    assert_close(name, value, reference_clip_ceiling(), hint=hint, atol=1e-9)
    return passed(name)


def _sequence_ratio_everywhere(logprobs, old_logprobs, mask):
    s = torch.exp(importance_log_weights(logprobs, old_logprobs, mask, "sequence"))
    return s.expand_as(logprobs)  # the right value, but every token carries the whole sequence's gradient


def _one_sided(train, sampler, mask, cap):
    return ((train - sampler) <= math.log(cap)).to(mask.dtype) * mask


EXERCISES = (
    Exercise(1, "GSPO-token", check_gspo_token, reference_gspo_token, _sequence_ratio_everywhere),
    Exercise(2, "The share dynamic sampling keeps", check_informative_share, reference_informative_share,
             lambda p, G: 1.0 - p**G),
    Exercise(3, "A two-sided masked importance sampling", check_two_sided_mask, reference_two_sided_mask,
             _one_sided),
    Exercise(4, "The clip's ceiling", check_clip_ceiling, reference_clip_ceiling, 1 + CEIL_EPS_HIGH,
             value=True),
)  # fmt: skip
