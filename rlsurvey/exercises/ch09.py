"""Exercises of chapter 09 (RLHF analysis, survey section 6 of arXiv 2412.10400).

1. `check_pessimistic_reward(fn)`: fn(scores [M, N], k) -> [N], the ensemble's mean − k · std over its M
   members (unbiased std), the conservative reward of Coste et al. (arXiv 2310.02743).
2. `check_best_of_n_expectation(fn)`: fn(proxy [N], gold [N], n) -> the expected gold reward of the sample
   that the proxy ranks best among a uniformly random n of the N samples (Gao et al., arXiv 2210.10760).
3. `check_lagrange_update(fn)`: fn(lam, lr, mean_cost, limit) -> the new λ of Safe RLHF's multiplier step
   ln λ ← ln λ + lr · λ · (mean_cost − limit) (arXiv 2310.12773).
4. `check_bench_accuracy(fn)`: fn(chosen [N], rejected [N], categories list of N str) -> {category: accuracy},
   where a pair counts as right only when chosen scores strictly higher (RewardBench, arXiv 2403.13787).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlsurvey.algos.best_of_n import best_of_n_expectation
from rlsurvey.algos.safe_rlhf import LagrangeMultiplier
from rlsurvey.exercises import ExerciseError, assert_close, call_safely, passed

__all__ = [
    "check_bench_accuracy",
    "check_best_of_n_expectation",
    "check_lagrange_update",
    "check_pessimistic_reward",
    "reference_bench_accuracy",
    "reference_pessimistic_reward",
]


def reference_pessimistic_reward(scores: torch.Tensor, k: float) -> torch.Tensor:
    """mean − k · std over the members (dimension 0), as `RewardEnsemble` computes it."""
    return scores.mean(0) - k * scores.std(0)


def check_pessimistic_reward(fn) -> bool:
    name = "pessimistic ensemble reward"
    g = torch.Generator().manual_seed(90)
    for m, n, k in [(2, 5, 1.0), (5, 40, 0.5), (3, 1, 2.0)]:
        s = torch.randn(m, n, generator=g).double()
        got = call_safely(name, fn, s.clone(), k)
        hint = "reduce over the members (dim 0): mean(0) - k * std(0), with torch's default (unbiased) std"
        assert_close(name, got, reference_pessimistic_reward(s, k), hint, atol=1e-9)
    return passed(name)


def check_best_of_n_expectation(fn) -> bool:
    name = "best-of-n expectation"
    g = torch.Generator().manual_seed(91)
    for big_n, n in [(5, 1), (5, 5), (8, 3), (30, 4)]:
        proxy = torch.randn(big_n, generator=g).double()  # continuous: no ties
        gold = torch.randn(big_n, generator=g).double()
        got = call_safely(name, fn, proxy.clone(), gold.clone(), n)
        try:
            got = float(got)
        except (TypeError, ValueError) as exc:
            raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}") from exc
        want = best_of_n_expectation(proxy[None], gold[None], n)[0]
        hint = (
            "sort by proxy; the i-th smallest (i = 1..N) is the best of a random n-subset with probability "
            "C(i-1, n-1) / C(N, n); weight the gold rewards by it (math.comb helps)"
        )
        assert_close(name, got, want, hint, atol=1e-9)
    return passed(name)


def check_lagrange_update(fn) -> bool:
    name = "Lagrange multiplier update"
    for lam, lr, cost, limit in [(1.0, 0.1, 0.5, 0.0), (2.0, 0.05, 0.1, 0.3), (0.3, 1.0, 0.0, 0.0)]:
        got = call_safely(name, fn, lam, lr, cost, limit)
        want = LagrangeMultiplier(value=lam, lr=lr, cost_limit=limit, max_value=math.inf).update(cost)
        hint = "update log(lambda), not lambda: log_new = log(lam) + lr * lam * (mean_cost - limit)"
        assert_close(name, got, want, hint, atol=1e-9)
    return passed(name)


def reference_bench_accuracy(chosen, rejected, categories) -> dict:
    """Per category, the share of pairs with chosen strictly above rejected."""
    right = np.asarray(chosen) > np.asarray(rejected)
    cats = np.asarray(categories)
    return {c: float(right[cats == c].mean()) for c in dict.fromkeys(categories)}


def check_bench_accuracy(fn) -> bool:
    name = "per-category accuracy"
    rng = np.random.default_rng(92)
    cats = list(rng.choice(["clear_sentiment", "length_traps", "rudeness"], size=60))
    chosen = rng.integers(0, 3, size=60).astype(float)  # small integers: ties happen
    rejected = rng.integers(0, 3, size=60).astype(float)
    got = call_safely(name, fn, chosen.copy(), rejected.copy(), list(cats))
    want = reference_bench_accuracy(chosen, rejected, cats)
    if not isinstance(got, dict) or set(got) != set(want):
        raise ExerciseError(f"{name}: return a dict keyed by the categories {sorted(want)}, got {got!r}")
    for c in want:
        assert_close(
            f"{name} [{c}]", got[c], want[c], "a tie (chosen == rejected) is a wrong answer", atol=1e-9
        )
    return passed(name)
