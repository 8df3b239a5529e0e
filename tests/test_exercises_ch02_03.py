"""Chapters 02 and 03's exercise checks: each passes the reference solution and refuses wrong answers."""

import pytest
import torch

from rlsurvey.exercises import ExerciseError, ch02, ch03
from rlsurvey.rl.returns import discounted_returns, gae_advantages


def _raises(check, wrong):
    with pytest.raises(ExerciseError):
        check(wrong)


def test_reward_to_go():
    assert ch02.check_reward_to_go(ch02.reference_reward_to_go)
    assert ch02.check_reward_to_go(lambda r, g: discounted_returns(r, None, g))  # the package agrees
    for wrong in (
        lambda r, g: r.flip(0).cumsum(0).flip(0),  # forgets the discount
        lambda r, g: r.cumsum(0),  # sums the past instead of the future
        lambda r, g: r,
        lambda r, g: 1 / 0,
    ):
        _raises(ch02.check_reward_to_go, wrong)


def test_reinforce_loss():
    assert ch02.check_reinforce_loss(ch02.reference_reinforce_loss)
    for wrong in (
        lambda lp, g, b, m: -(lp * (g - b)).sum() / m,  # the baseline is not detached
        lambda lp, g, b, m: -(lp * g).sum() / m,  # no baseline
        lambda lp, g, b, m: (lp * (g - b.detach())).sum() / m,  # sign: that is gradient descent on J
        lambda lp, g, b, m: -(lp * (g - b.detach())).mean(),  # averages over steps, not episodes
        lambda lp, g, b, m: -(lp * (g - b)).detach().sum() / m,  # no gradient at all
        lambda lp, g, b, m: float((-(lp * (g - b)).sum() / m).detach()),  # not a tensor
    ):
        _raises(ch02.check_reinforce_loss, wrong)


def test_gae():
    assert ch02.check_gae(ch02.reference_gae)
    assert ch02.check_gae(lambda r, v, d, b, g, lam: gae_advantages(r, v, d, b, g, lam)[0])

    def ignores_dones(r, v, d, b, g, lam):
        return gae_advantages(r, v, None, b, g, lam)[0]

    def no_bootstrap(r, v, d, b, g, lam):
        return gae_advantages(r, v, d, 0.0, g, lam)[0]

    def returns_not_advantages(r, v, d, b, g, lam):
        return gae_advantages(r, v, d, b, g, lam)[1]

    for wrong in (ignores_dones, no_bootstrap, returns_not_advantages):
        _raises(ch02.check_gae, wrong)


def test_clipped_surrogate():
    assert ch03.check_clipped_surrogate(ch03.reference_clipped_surrogate)

    def uses_max(lp, old, a, eps):
        r = (lp - old).exp()
        return -torch.max(r * a, r.clamp(1 - eps, 1 + eps) * a).mean()

    def clamps_only(lp, old, a, eps):  # the clipped term alone: zero gradient where it should push back
        return -((lp - old).exp().clamp(1 - eps, 1 + eps) * a).mean()

    def unclipped(lp, old, a, eps):
        return -((lp - old).exp() * a).mean()

    def detached(lp, old, a, eps):
        return ch03.reference_clipped_surrogate(lp.detach(), old, a, eps).requires_grad_()

    for wrong in (uses_max, clamps_only, unclipped, detached, lambda *a: 0.0):
        _raises(ch03.check_clipped_surrogate, wrong)


def test_approx_kl():
    assert ch03.check_approx_kl(ch03.reference_approx_kl)

    def k_swapped(lp, old):
        k1, k3 = ch03.reference_approx_kl(lp, old)
        return k3, k1

    def wrong_sign(lp, old):
        log_r = lp - old
        return log_r.mean(), (log_r.exp() - 1 - log_r).mean()

    def k2_for_k3(lp, old):
        log_r = lp - old
        return (-log_r).mean(), (0.5 * log_r**2).mean()

    for wrong in (k_swapped, wrong_sign, k2_for_k3, lambda lp, old: 0.0):
        _raises(ch03.check_approx_kl, wrong)


def test_clipped_value_loss():
    assert ch03.check_clipped_value_loss(ch03.reference_clipped_value_loss)

    def uses_min(v, old, ret, eps):
        clipped = old + (v - old).clamp(-eps, eps)
        return 0.5 * torch.min((v - ret) ** 2, (clipped - ret) ** 2).mean()

    def clips_around_returns(v, old, ret, eps):
        clipped = ret + (v - ret).clamp(-eps, eps)
        return 0.5 * torch.max((v - ret) ** 2, (clipped - ret) ** 2).mean()

    def unclipped(v, old, ret, eps):
        return 0.5 * ((v - ret) ** 2).mean()

    for wrong in (uses_min, clips_around_returns, unclipped):
        _raises(ch03.check_clipped_value_loss, wrong)
