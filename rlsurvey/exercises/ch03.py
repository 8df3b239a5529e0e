"""Checks for the exercises of chapter 03 (PPO): the clipped surrogate, the two approximate-KL estimators,
and the clipped value loss. Papers: PPO, arXiv 1707.06347; survey arXiv 2412.10400, section 2.1.

1. `check_clipped_surrogate(fn)`: fn(logp [B], old_logp [B], advantages [B], clip_coef) -> scalar loss.
2. `check_approx_kl(fn)`: fn(logp [B], old_logp [B]) -> (k1, k3), estimates of KL(old || new).
3. `check_clipped_value_loss(fn)`: fn(values [B], old_values [B], returns [B], clip_coef) -> scalar loss.
4. `check_early_stop(fn)`: fn(logp [M, B], old_logp [M, B], target_kl) -> bool, whether an update stops after
   an epoch of M minibatches: the mean over minibatches of each one's k3 estimate exceeds target_kl, as
   `rlsurvey.rl.ppo` decides with `PPOConfig.target_kl`.
"""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.rl.ppo import clipped_policy_loss, clipped_value_loss

__all__ = [
    "EXERCISES",
    "check_early_stop",
    "reference_early_stop",
    "check_approx_kl",
    "check_clipped_surrogate",
    "check_clipped_value_loss",
    "reference_approx_kl",
    "reference_clipped_surrogate",
    "reference_clipped_value_loss",
]


def reference_clipped_surrogate(logp, old_logp, advantages, clip_coef):
    """-mean min(r A, clip(r, 1 - eps, 1 + eps) A) with r = exp(logp - old_logp)."""
    return clipped_policy_loss(logp, old_logp, advantages, clip_coef)[0]


def reference_approx_kl(logp, old_logp):
    """k1 = mean(-log rho), k3 = mean((rho - 1) - log rho), rho = exp(logp - old_logp), samples of pi_old."""
    log_r = logp - old_logp
    return (-log_r).mean(), (log_r.exp() - 1 - log_r).mean()


def reference_clipped_value_loss(values, old_values, returns, clip_coef):
    """0.5 mean max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)."""
    return clipped_value_loss(values, old_values, returns, clip_coef)[0]


def reference_early_stop(logp, old_logp, target_kl: float) -> bool:
    """Stop the update when the epoch's mean k3 estimate of KL(old || new) exceeds target_kl."""
    log_r = logp - old_logp  # [M, B]
    k3_per_minibatch = (log_r.exp() - 1 - log_r).mean(dim=1)
    return bool(k3_per_minibatch.mean() > target_kl)


def _batch(gen, n, spread):
    old = -torch.rand(n, generator=gen, dtype=torch.float64) * 2
    new = (
        old + torch.randn(n, generator=gen, dtype=torch.float64) * spread
    )  # some ratios far outside 1 +- eps
    return new, old


def _scalar(name, got, hint):
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise ExerciseError(f"{name}: return a scalar tensor, got {got!r}. Hint: {hint}")
    if not got.requires_grad:
        raise ExerciseError(f"{name}: the loss carries no gradient. Hint: {hint}")
    return got


def check_clipped_surrogate(fn) -> bool:
    """fn(logp, old_logp, advantages, clip_coef) -> loss; value and gradient must match the reference."""
    name = "clipped surrogate"
    gen = torch.Generator().manual_seed(7)
    hint = (
        "ratio = exp(logp - old_logp); loss = -mean(min(ratio * A, clamp(ratio, 1 - eps, 1 + eps) * A)). "
        "min, not max: the objective takes the pessimistic of the two, and the minus sign makes it a loss."
    )
    for n, eps, spread in [(16, 0.2, 0.3), (64, 0.1, 0.5), (40, 0.3, 0.05)]:
        new, old = _batch(gen, n, spread)
        adv = torch.randn(n, generator=gen, dtype=torch.float64)
        logp = new.clone().requires_grad_()
        got = _scalar(name, call_safely(name, fn, logp, old.clone(), adv.clone(), eps), hint)
        ref_logp = new.clone().requires_grad_()
        want = reference_clipped_surrogate(ref_logp, old, adv, eps)
        assert_close(name, got.detach(), want.detach(), hint=hint)
        got.backward()
        want.backward()
        if logp.grad is None:
            raise ExerciseError(f"{name}: no gradient reached logp. Hint: {hint}")
        assert_close(
            name, logp.grad, ref_logp.grad, hint="the values match but the gradients do not. " + hint
        )
    return passed(name)


def check_approx_kl(fn) -> bool:
    """fn(logp, old_logp) -> (k1, k3) as numbers or scalar tensors."""
    name = "approximate KL"
    gen = torch.Generator().manual_seed(8)
    hint = (
        "with log rho = logp - old_logp: k1 = mean(-log rho) (unbiased, can be negative), "
        "k3 = mean((rho - 1) - log rho) (unbiased and never negative)."
    )
    for n, spread in [(10, 0.1), (200, 0.4), (50, 1.0)]:
        new, old = _batch(gen, n, spread)
        got = call_safely(name, fn, new.clone(), old.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(f"{name}: return the pair (k1, k3), got {got!r}. Hint: {hint}")
        k1, k3 = reference_approx_kl(new, old)
        assert_close(name + " (k1)", got[0], k1, hint=hint)
        assert_close(name + " (k3)", got[1], k3, hint=hint)
    return passed(name)


def check_clipped_value_loss(fn) -> bool:
    """fn(values, old_values, returns, clip_coef) -> loss; value and gradient must match the reference."""
    name = "clipped value loss"
    gen = torch.Generator().manual_seed(9)
    hint = (
        "v_clip = old_values + clamp(values - old_values, -eps, eps); "
        "loss = 0.5 * mean(max((values - returns)^2, (v_clip - returns)^2)). max, not min: the clipped "
        "error only ever makes the loss larger."
    )
    for n, eps in [(12, 0.2), (80, 0.5), (30, 10.0)]:
        old = torch.randn(n, generator=gen, dtype=torch.float64)
        new = old + torch.randn(n, generator=gen, dtype=torch.float64) * 0.6
        returns = old + torch.randn(n, generator=gen, dtype=torch.float64)
        values = new.clone().requires_grad_()
        got = _scalar(name, call_safely(name, fn, values, old.clone(), returns.clone(), eps), hint)
        ref_values = new.clone().requires_grad_()
        want = reference_clipped_value_loss(ref_values, old, returns, eps)
        assert_close(name, got.detach(), want.detach(), hint=hint)
        got.backward()
        want.backward()
        if values.grad is None:
            raise ExerciseError(f"{name}: no gradient reached values. Hint: {hint}")
        assert_close(
            name, values.grad, ref_values.grad, hint="the values match but the gradients do not. " + hint
        )
    return passed(name)


def check_early_stop(fn) -> bool:
    """fn(logp [M, B], old_logp [M, B], target_kl) -> True when the update should stop after this epoch."""
    name = "early stop on KL"
    gen = torch.Generator().manual_seed(10)
    hint = (
        "per minibatch k3 = mean((rho - 1) - log rho) with log rho = logp - old_logp; stop when the mean "
        "of the minibatches' k3 is above target_kl. k1 = mean(-log rho) is noisier and can even be negative."
    )
    for m, b, spread in [(4, 16, 0.3), (2, 64, 0.1), (8, 8, 0.6), (1, 32, 0.05)]:
        old = -torch.rand(m, b, generator=gen, dtype=torch.float64) * 2
        new = old + torch.randn(m, b, generator=gen, dtype=torch.float64) * spread - 0.5 * spread**2
        log_r = new - old
        k1 = (-log_r).mean().item()
        k3 = (log_r.exp() - 1 - log_r).mean().item()
        for target in (k3 * 0.5, k3 * 2.0, 0.5 * (k1 + k3) if k1 > 0 else k3 * 0.9):
            got = call_safely(name, fn, new.clone(), old.clone(), target)
            if not isinstance(got, (bool, np.bool_)) and not (
                isinstance(got, torch.Tensor) and got.numel() == 1
            ):
                raise ExerciseError(f"{name}: return True or False, got {got!r}. Hint: {hint}")
            want = reference_early_stop(new, old, target)
            if bool(got) != want:
                raise ExerciseError(
                    f"{name}: with target_kl={target:.4g} (k3 here is {k3:.4g}) the answer is {want}, got "
                    f"{bool(got)}. Hint: {hint}"
                )
    return passed(name)


EXERCISES = (
    Exercise(1, "The clipped surrogate", check_clipped_surrogate, reference_clipped_surrogate,
             lambda lp, old, a, eps: -((lp - old).exp() * a).mean()),
    Exercise(2, "Approximate KL", check_approx_kl, reference_approx_kl,
             lambda lp, old: ((lp - old).mean(), (0.5 * (lp - old) ** 2).mean())),
    Exercise(3, "The clipped value loss", check_clipped_value_loss, reference_clipped_value_loss,
             lambda v, old, ret, eps: 0.5 * ((v - ret) ** 2).mean()),
    Exercise(4, "When to stop an update", check_early_stop, reference_early_stop,
             lambda lp, old, target: bool((old - lp).mean() > target), kind="open"),
)  # fmt: skip
