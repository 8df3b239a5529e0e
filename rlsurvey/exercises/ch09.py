"""Exercises of chapter 09 (RLHF analysis, survey section 6 of arXiv 2412.10400).

1. `check_pessimistic_reward(fn)`: fn(scores [M, N], k) -> [N], the ensemble's mean − k · std over its M
   members (unbiased std), the conservative reward of Coste et al. (arXiv 2310.02743).
2. `check_best_of_n_expectation(fn)`: fn(proxy [N], gold [N], n) -> the expected gold reward of the sample
   that the proxy ranks best among a uniformly random n of the N samples (Gao et al., arXiv 2210.10760).
3. `check_lagrange_update(fn)`: fn(lam, lr, mean_cost, limit) -> the new λ of Safe RLHF's multiplier step
   ln λ ← ln λ + lr · λ · (mean_cost − limit) (arXiv 2310.12773).
4. `check_bench_accuracy(fn)`: fn(chosen [N], rejected [N], categories list of N str) -> {category: accuracy},
   where a pair counts as right only when chosen scores strictly higher (RewardBench, arXiv 2403.13787).
5. `check_bon_curve(fn)`: fn(proxy [P, N], gold [P, N], ns) -> [len(ns)], the best-of-n gold curve: for each n
   the expected gold reward of best-of-n by the proxy, averaged over the P prompts.
6. `check_gao_fit(fn)`: fn(kl [K], gain [K]) -> (alpha, beta), the least-squares fit of Gao et al.'s best-of-n
   form gain = d (alpha − beta d), d = sqrt(KL), with no intercept; its peak is at KL = (alpha / 2 beta)².
7. `check_break_even_price(fn)`: fn(reward_a [N], cost_a [N], reward_b [N], cost_b [N]) -> [N], per pair the
   smallest multiplier ν ≥ 0 at which Safe RLHF's combined reward (R − νC)/(1 + ν) ranks the lower-cost
   response at least as high as the other (arXiv 2310.12773); a derivation the chapter does not print.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlsurvey.algos.best_of_n import best_of_n_expectation
from rlsurvey.algos.safe_rlhf import LagrangeMultiplier
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_bon_curve",
    "check_break_even_price",
    "check_gao_fit",
    "reference_break_even_price",
    "reference_best_of_n_expectation",
    "reference_bon_curve",
    "reference_gao_fit",
    "reference_lagrange_update",
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


def reference_best_of_n_expectation(proxy, gold, n: int) -> float:
    """Σ_i C(i−1, n−1) / C(N, n) · gold_(i), the samples ranked by proxy ascending (i = 1 ... N)."""
    order = sorted(range(len(proxy)), key=lambda i: float(proxy[i]))
    total = math.comb(len(proxy), n)
    return sum(math.comb(rank, n - 1) / total * float(gold[i]) for rank, i in enumerate(order))


def reference_lagrange_update(lam: float, lr: float, mean_cost: float, limit: float) -> float:
    """ln λ ← ln λ + lr · λ · (mean_cost − limit): a step on the log keeps λ positive."""
    return math.exp(math.log(lam) + lr * lam * (mean_cost - limit))


def check_lagrange_update(fn) -> bool:
    name = "Lagrange multiplier update"
    for lam, lr, cost, limit in [(1.0, 0.1, 0.5, 0.0), (2.0, 0.05, 0.1, 0.3), (0.3, 1.0, 0.0, 0.0)]:
        got = call_safely(name, fn, lam, lr, cost, limit)
        multiplier = LagrangeMultiplier(value=lam, learning_rate=lr, cost_limit=limit, max_value=math.inf)
        want = multiplier.update(cost)
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


def reference_bon_curve(proxy, gold, ns) -> torch.Tensor:
    """The mean over prompts of `best_of_n_expectation` for each n."""
    proxy, gold = torch.as_tensor(proxy, dtype=torch.float64), torch.as_tensor(gold, dtype=torch.float64)
    return torch.stack([best_of_n_expectation(proxy, gold, int(n)).mean() for n in ns])


def check_bon_curve(fn) -> bool:
    name = "best-of-n gold curve"
    g = torch.Generator().manual_seed(95)
    hint = (
        "for each n and each prompt, the expected gold of the proxy's best among a random n of the N samples "
        "(exercise 2, or rlsurvey.algos.best_of_n.best_of_n_expectation on [P, N]); then the mean over "
        "prompts"
    )
    for p, big_n, ns in [(3, 8, [1, 2, 4, 8]), (10, 16, [1, 3, 16]), (1, 5, [5, 2])]:
        proxy = torch.randn(p, big_n, generator=g, dtype=torch.float64)
        gold = (
            proxy + torch.randn(p, big_n, generator=g, dtype=torch.float64) - 0.3 * proxy**2
        )  # overoptimized
        got = call_safely(name, fn, proxy.clone(), gold.clone(), list(ns))
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ExerciseError(f"{name}: expected numbers, got {type(got).__name__}. Hint: {hint}") from exc
        assert_close(f"{name} (ns={ns})", got, reference_bon_curve(proxy, gold, ns), hint, atol=1e-9)
    return passed(name)


def reference_gao_fit(kl, gain) -> tuple[float, float]:
    """Least squares of gain on the features d and −d², d = sqrt(KL), no intercept (arXiv 2210.10760)."""
    d = np.sqrt(np.asarray(kl, dtype=np.float64))
    features = np.stack([d, -(d**2)], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(features, np.asarray(gain, dtype=np.float64), rcond=None)
    return float(alpha), float(beta)


def check_gao_fit(fn) -> bool:
    name = "Gao et al.'s best-of-n fit"
    rng = np.random.default_rng(96)
    hint = (
        "with d = sqrt(kl), gain ≈ alpha d − beta d²: a linear least squares on the two columns [d, −d²] "
        "(np.linalg.lstsq), with no constant column: at KL = 0 the gain is 0 by definition"
    )
    for alpha, beta, k in [(1.0, 0.3, 8), (0.5, 0.05, 12), (2.0, 1.0, 5)]:
        kl = np.sort(rng.uniform(0.0, 6.0, size=k))
        kl[0] = 0.0
        d = np.sqrt(kl)
        gain = d * (alpha - beta * d) + rng.normal(scale=0.05, size=k)
        got = call_safely(name, fn, kl.copy(), gain.copy())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(f"{name}: return the pair (alpha, beta), got {got!r}. Hint: {hint}")
        assert_close(name, torch.tensor([float(x) for x in got]), torch.tensor(reference_gao_fit(kl, gain)),
                     hint, atol=1e-6)  # fmt: skip
    return passed(name)


def reference_break_even_price(reward_a, cost_a, reward_b, cost_b) -> torch.Tensor:
    """Per pair (costs differ), the smallest ν ≥ 0 from which Safe RLHF's combined reward (R − νC)/(1 + ν)
    ranks the lower-cost response at least as high as the other: (R_risky − R_safe) / (C_risky − C_safe), or 0
    when the safer response also has the larger reward. 1 + ν > 0 scales both sides alike, so it never changes
    the order."""
    ra, ca, rb, cb = (torch.as_tensor(x, dtype=torch.float64) for x in (reward_a, cost_a, reward_b, cost_b))
    a_safer = ca < cb
    r_safe, c_safe = torch.where(a_safer, ra, rb), torch.where(a_safer, ca, cb)
    r_risky, c_risky = torch.where(a_safer, rb, ra), torch.where(a_safer, cb, ca)
    return ((r_risky - r_safe) / (c_risky - c_safe)).clamp(min=0.0)


def check_break_even_price(fn) -> bool:
    name = "break-even price of a cost"
    g = torch.Generator().manual_seed(98)
    hint = (
        "the safer response (lower C) wins once R_safe − ν C_safe ≥ R_risky − ν C_risky (the factor "
        "1/(1 + ν) is positive and common to both, so drop it): ν ≥ (R_risky − R_safe) / (C_risky − C_safe), "
        "never below 0 (a safer response that is also more rewarding wins at ν = 0); and response a is not "
        "always the safer one"
    )
    ra = torch.tensor([1.0, 0.5, -1.0, 2.0], dtype=torch.float64)  # by hand: 0.5, 0, 1.5, 0
    ca = torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    rb = torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    cb = torch.tensor([2.0, 0.0, 3.0, 1.0], dtype=torch.float64)
    cases = [(ra, ca, rb, cb)]
    for n in (7, 50):
        r_a, c_a, r_b, c_b = (torch.rand(n, generator=g, dtype=torch.float64) for _ in range(4))
        cases.append((2 * r_a - 1, c_a, 2 * r_b - 1, c_b + 0.01 * (c_b == c_a)))
    for r_a, c_a, r_b, c_b in cases:
        got = call_safely(name, fn, r_a.clone(), c_a.clone(), r_b.clone(), c_b.clone())
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ExerciseError(f"{name}: expected one number per pair. Hint: {hint}") from exc
        want = reference_break_even_price(r_a, c_a, r_b, c_b)
        assert_close(f"{name} ({len(r_a)} pairs)", got, want, hint, atol=1e-9)
    return passed(name)


EXERCISES = (
    Exercise(1, "The pessimistic ensemble reward", check_pessimistic_reward, reference_pessimistic_reward,
             lambda scores, k: scores.mean(0)),
    Exercise(2, "The expected gold reward of best-of-n", check_best_of_n_expectation,
             reference_best_of_n_expectation, lambda proxy, gold, n: float(gold[proxy.argmax()])),
    Exercise(3, "Safe RLHF's multiplier step", check_lagrange_update, reference_lagrange_update,
             lambda lam, lr, cost, limit: max(0.0, lam + lr * (cost - limit))),
    Exercise(4, "RewardBench-style accuracy per category", check_bench_accuracy, reference_bench_accuracy,
             lambda c, r, cats: {x: float(np.mean(c >= r)) for x in set(cats)}),
    Exercise(5, "The best-of-n curve of any proxy", check_bon_curve, reference_bon_curve,
             lambda proxy, gold, ns: [float(gold.gather(1, proxy.argmax(1, keepdim=True)).mean())] * len(ns),
             kind="open"),
    Exercise(6, "Where does best-of-n peak?", check_gao_fit, reference_gao_fit,
             lambda kl, gain: tuple(np.polyfit(kl, gain, 2)[1::-1]), kind="open"),
    Exercise(7, "The break-even price of a cost", check_break_even_price, reference_break_even_price,
             lambda ra, ca, rb, cb: (ra - rb) / (ca - cb)),
)  # fmt: skip
