"""Exercises of chapter 07 (RLHF with PPO, survey section 4.2 of arXiv 2412.10400).

1. `check_shaped_rewards_k3(fn)`: fn(score, logprobs [R], ref_logprobs [R], beta) -> [R] per-token rewards of
   one response with k3 as the KL estimate: −β ((ρ − 1) − log ρ), ρ = π_ref / π, on every token, plus the
   score on the last one. (`check_shaped_rewards` checks the k1 version the chapter writes out.)
2. `check_gae(fn)`: fn(rewards [R], values [R], gamma, lam) -> [R] GAE advantages of one response
   (the value after the last token is 0).
3. `check_clipped_value_loss(fn)`: fn(values, old_values, returns, clip) -> scalar,
   0.5 · mean max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²).
4. `check_best_of_n_win_rate(fn)`: fn(probs [K], rewards [K], n) -> the win rate of best-of-n over a discrete
   sampler against an independent sample of it, ties counted 1/2: Σ_L (F(L)ⁿ − F⁻(L)ⁿ) (F⁻(L) + P(L) / 2).
5. `check_leave_one_out(fn)`: fn(rewards [P·k], k) -> RLOO advantages, each reward minus the mean of the
   other k − 1 rewards of its prompt.
6. `check_adaptive_kl(fn)`: fn(beta, kl, target, horizon, n_steps) -> the next β of Ziegler et al.'s adaptive
   controller (arXiv 1909.08593): β (1 + clip((kl − target) / target, −0.2, 0.2) · n_steps / horizon).
"""

from __future__ import annotations

import torch

from rlsurvey.algos.advantages import leave_one_out_advantages
from rlsurvey.algos.kl_control import AdaptiveKLController, shape_rewards
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.kernels import gae_reference
from rlsurvey.rl.ppo import clipped_value_loss

__all__ = [
    "EXERCISES",
    "check_adaptive_kl",
    "reference_adaptive_kl",
    "reference_best_of_n_win_rate",
    "reference_clipped_value_loss",
    "reference_leave_one_out",
    "check_best_of_n_win_rate",
    "check_clipped_value_loss",
    "check_gae",
    "check_leave_one_out",
    "check_shaped_rewards",
    "check_shaped_rewards_k3",
    "reference_gae",
    "reference_shaped_rewards",
    "reference_shaped_rewards_k3",
]


def _tensor(name: str, got, shape) -> torch.Tensor:
    try:
        t = torch.as_tensor(got, dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise ExerciseError(f"{name}: expected numbers, got {type(got).__name__}") from exc
    if tuple(t.shape) != tuple(shape):
        raise ExerciseError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
    return t


def reference_shaped_rewards(score: float, logprobs, ref_logprobs, beta: float) -> torch.Tensor:
    """`rlsurvey.algos.kl_control.shape_rewards` on a single unpadded response, with k1."""
    lp = torch.as_tensor(logprobs, dtype=torch.float64)[None]
    ref = torch.as_tensor(ref_logprobs, dtype=torch.float64)[None]
    mask = torch.ones_like(lp, dtype=torch.bool)
    return shape_rewards(torch.tensor([score], dtype=torch.float64), lp, ref, mask, beta, "k1")[0][0]


def check_shaped_rewards(fn) -> bool:
    name = "per-token KL-shaped rewards"
    g = torch.Generator().manual_seed(70)
    for length in (1, 4, 9):
        lp, ref = -torch.rand(length, generator=g).double() * 3, -torch.rand(length, generator=g).double() * 3
        score, beta = float(torch.randn(1, generator=g)), 0.1 * (length % 4 + 1)
        got = _tensor(name, call_safely(name, fn, score, lp.clone(), ref.clone(), beta), (length,))
        hint = "every token: -beta * (logprobs - ref_logprobs); only the last token also receives the score"
        assert_close(name, got, reference_shaped_rewards(score, lp, ref, beta), hint, atol=1e-8)
    return passed(name)


def reference_shaped_rewards_k3(score: float, logprobs, ref_logprobs, beta: float) -> torch.Tensor:
    """`rlsurvey.algos.kl_control.shape_rewards` on a single unpadded response, with k3."""
    lp = torch.as_tensor(logprobs, dtype=torch.float64)[None]
    ref = torch.as_tensor(ref_logprobs, dtype=torch.float64)[None]
    mask = torch.ones_like(lp, dtype=torch.bool)
    return shape_rewards(torch.tensor([score], dtype=torch.float64), lp, ref, mask, beta, "k3")[0][0]


def check_shaped_rewards_k3(fn) -> bool:
    name = "per-token rewards with k3"
    g = torch.Generator().manual_seed(74)
    for length in (1, 4, 9):
        lp, ref = -torch.rand(length, generator=g).double() * 3, -torch.rand(length, generator=g).double() * 3
        score, beta = float(torch.randn(1, generator=g)), 0.1 * (length % 4 + 1)
        got = _tensor(name, call_safely(name, fn, score, lp.clone(), ref.clone(), beta), (length,))
        hint = (
            "with rho = exp(ref_logprobs - logprobs) (pi_ref / pi), k3 = (rho - 1) - log(rho) >= 0 per "
            "token; every token gets -beta * k3, and only the last one also gets the score"
        )
        assert_close(name, got, reference_shaped_rewards_k3(score, lp, ref, beta), hint, atol=1e-8)
    return passed(name)


def reference_gae(rewards, values, gamma: float, lam: float) -> torch.Tensor:
    """`rlsurvey.kernels.gae_reference` on one unpadded response."""
    r = torch.as_tensor(rewards, dtype=torch.float64)[None]
    v = torch.as_tensor(values, dtype=torch.float64)[None]
    return gae_reference(r, v, torch.ones_like(r, dtype=torch.bool), gamma, lam)[0][0]


def check_gae(fn) -> bool:
    name = "GAE"
    g = torch.Generator().manual_seed(71)
    for length, gamma, lam in [(1, 1.0, 0.95), (5, 1.0, 0.95), (8, 0.9, 0.5), (6, 1.0, 0.0)]:
        r, v = torch.randn(length, generator=g).double(), torch.randn(length, generator=g).double()
        got = _tensor(name, call_safely(name, fn, r.clone(), v.clone(), gamma, lam), (length,))
        hint = (
            "go backwards: delta_t = r_t + gamma * V_{t+1} - V_t with V after the last token = 0, then "
            "A_t = delta_t + gamma * lam * A_{t+1}"
        )
        assert_close(name, got, reference_gae(r, v, gamma, lam), hint, atol=1e-8)
    return passed(name)


def check_clipped_value_loss(fn) -> bool:
    name = "clipped value loss"
    g = torch.Generator().manual_seed(72)
    for n, clip in [(1, 0.2), (30, 0.2), (30, 0.05)]:
        v, old, ret = (torch.randn(n, generator=g).double() for _ in range(3))
        got = call_safely(name, fn, v.clone(), old.clone(), ret.clone(), clip)
        got = _tensor(name, got, ())
        hint = (
            "clip the *change* V - V_old to [-clip, clip], square both errors against the returns, take the "
            "larger per sample, then 0.5 * mean"
        )
        assert_close(name, got, clipped_value_loss(v, old, ret, clip)[0], hint, atol=1e-8)
    return passed(name)


def reference_best_of_n_win_rate(probs, rewards, n: int) -> float:
    """P(reward of best-of-n > reward of an independent sample) + P(equal) / 2, over a discrete sampler.

    Levels L of equal reward with mass P(L), F(L) = P(reward ≤ L), F⁻(L) = F(L) − P(L): best-of-n lands on L
    with probability F(L)ⁿ − F⁻(L)ⁿ, and then beats the other sample with probability F⁻(L) + P(L) / 2."""
    p = torch.as_tensor(probs, dtype=torch.float64).flatten()
    r = torch.as_tensor(rewards, dtype=torch.float64).flatten()
    levels, which = torch.unique(r, sorted=True, return_inverse=True)
    mass = torch.zeros(len(levels), dtype=torch.float64).index_add_(0, which, p / p.sum())
    upper = torch.cumsum(mass, 0).clamp(max=1.0)
    lower = (upper - mass).clamp(min=0.0)
    return float(((upper**n - lower**n) * (lower + mass / 2)).sum())


def check_best_of_n_win_rate(fn) -> bool:
    name = "win rate of best-of-n"
    hint = (
        "group equal rewards into levels with mass P(L) and cumulative F(L) = P(reward <= L), "
        "F-(L) = F(L) - P(L); best-of-n lands on L with probability F(L)^n - F-(L)^n and then wins with "
        "F-(L) + P(L) / 2. Without likely responses this is n / (n + 1); with them it is lower"
    )
    g = torch.Generator().manual_seed(75)
    cases = [(torch.tensor([0.5, 0.2, 0.2, 0.1]), torch.tensor([0.0, 1.0, 1.0, 2.0]), 3)]  # a tie
    for k, n in [(10, 1), (10, 64), (40, 16), (200, 5)]:
        p = torch.rand(k, generator=g).double() ** 3
        cases.append((p / p.sum(), torch.randint(0, k // 2, (k,), generator=g).double(), n))  # many ties
    zipf = 1 / torch.arange(1, 11, dtype=torch.float64)
    cases.append((zipf / zipf.sum(), zipf, 64))  # the likeliest response is the best
    for probs, rewards, n in cases:
        got = _tensor(name, call_safely(name, fn, probs.clone(), rewards.clone(), n), ())
        want = reference_best_of_n_win_rate(probs, rewards, n)
        assert_close(f"{name} (K={len(probs)}, n={n})", got, want, hint, atol=1e-9)
    return passed(name)


def check_leave_one_out(fn) -> bool:
    name = "leave-one-out advantages"
    g = torch.Generator().manual_seed(73)
    for prompts, k in [(1, 2), (3, 4), (2, 7)]:
        r = torch.randn(prompts * k, generator=g).double()
        got = _tensor(name, call_safely(name, fn, r.clone(), k), (prompts * k,))
        hint = (
            "view the rewards as [prompts, k]; the baseline of sample i is (sum of its group - r_i) / "
            "(k - 1), not the group mean"
        )
        assert_close(name, got, leave_one_out_advantages(r, k), hint, atol=1e-9)
    return passed(name)


def reference_clipped_value_loss(values, old_values, returns, clip: float) -> torch.Tensor:
    """0.5 · mean max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2).mean()


def reference_leave_one_out(rewards, k: int) -> torch.Tensor:
    """r_i − (sum of its group − r_i) / (k − 1), groups of k consecutive rewards."""
    r = torch.as_tensor(rewards, dtype=torch.float64).view(-1, k)
    return (r - (r.sum(1, keepdim=True) - r) / (k - 1)).flatten()


def reference_adaptive_kl(beta: float, kl: float, target: float, horizon: int, n_steps: int) -> float:
    """One update of the adaptive KL controller: the error is relative to the target and clipped to ±0.2."""
    error = min(max((kl - target) / target, -0.2), 0.2)
    return beta * (1 + error * n_steps / horizon)


def check_adaptive_kl(fn) -> bool:
    name = "adaptive KL coefficient"
    hint = (
        "error = clip((kl - target) / target, -0.2, 0.2); beta_new = beta * (1 + error * n_steps / horizon). "
        "Too much KL raises beta, too little lowers it, and never by more than 20% of n_steps / horizon."
    )
    for beta, kl, target, horizon, n_steps in [
        (0.1, 6.0, 2.0, 10_000, 256),  # far above the target: the clip binds
        (0.1, 2.2, 2.0, 10_000, 256),
        (0.05, 0.5, 2.0, 1_000, 64),  # far below
        (0.2, 1.9, 2.0, 100, 100),
        (0.3, 2.0, 2.0, 500, 32),  # on target: unchanged
    ]:
        got = _tensor(name, call_safely(name, fn, beta, kl, target, horizon, n_steps), ())
        want = AdaptiveKLController(value=beta, target=target, horizon=horizon).update(kl, n_steps)
        assert_close(f"{name} (kl={kl}, target={target})", got, want, hint, atol=1e-12)
    return passed(name)


EXERCISES = (
    Exercise(1, "Per-token rewards with k3", check_shaped_rewards_k3, reference_shaped_rewards_k3,
             reference_shaped_rewards),
    Exercise(2, "GAE on one response", check_gae, reference_gae, lambda r, v, gamma, lam: r - v),
    Exercise(3, "The clipped value loss", check_clipped_value_loss, reference_clipped_value_loss,
             lambda v, old, ret, clip: 0.5 * ((v - ret) ** 2).mean()),
    Exercise(4, "The win rate of best-of-n", check_best_of_n_win_rate, reference_best_of_n_win_rate,
             lambda probs, rewards, n: n / (n + 1), kind="open"),
    Exercise(5, "Leave-one-out advantages", check_leave_one_out, reference_leave_one_out,
             lambda r, k: (r.view(-1, k) - r.view(-1, k).mean(1, keepdim=True)).flatten()),
    Exercise(6, "The adaptive KL controller", check_adaptive_kl, reference_adaptive_kl,
             lambda beta, kl, target, horizon, n: beta * (1 + (kl - target) / target * n / horizon),
             kind="open"),
)  # fmt: skip
