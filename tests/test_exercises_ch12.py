"""Chapter 12's exercise checks: each passes the reference solution and refuses wrong answers."""

import math

import pytest
import torch

from rlsurvey.algos.advantages import group_advantages, leave_one_out_advantages
from rlsurvey.algos.policy_loss import aggregate
from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch12 as ex
from rlsurvey.rewards.verifiable import pass_at_k


def by_hand_group(r, G):
    rows = r.view(-1, G)
    return ((rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + 1e-4)).flatten()


def test_group_advantages():
    assert ex.check_group_advantages(group_advantages)
    assert ex.check_group_advantages(by_hand_group)
    population_std = lambda r, G: (  # noqa: E731 - divides by the population std
        (r.view(-1, G) - r.view(-1, G).mean(1, keepdim=True))
        / (r.view(-1, G).std(1, True, unbiased=False) + 1e-4)
    ).flatten()
    no_eps = lambda r, G: (  # noqa: E731 - NaN on an all-equal group
        (r.view(-1, G) - r.view(-1, G).mean(1, keepdim=True)) / r.view(-1, G).std(1, keepdim=True)
    ).flatten()
    batch_mean = lambda r, G: (r - r.mean()) / (r.std() + 1e-4)  # noqa: E731 - not per group
    for wrong in (population_std, no_eps, batch_mean, lambda r, G: group_advantages(r, G, False), "x"):
        with pytest.raises(ExerciseError):
            ex.check_group_advantages(wrong)


def test_leave_one_out():
    assert ex.check_leave_one_out(leave_one_out_advantages)

    def by_hand(r, G):
        rows = r.view(-1, G)
        return torch.cat(
            [
                torch.stack([row[i] - torch.cat([row[:i], row[i + 1 :]]).mean() for i in range(G)])
                for row in rows
            ]
        )

    assert ex.check_leave_one_out(by_hand)
    mean_with_self = lambda r, G: group_advantages(r, G, scale_by_std=False)  # noqa: E731
    for wrong in (mean_with_self, lambda r, G: r, lambda r, G: 1 / 0):
        with pytest.raises(ExerciseError):
            ex.check_leave_one_out(wrong)


def test_constant_aggregation():
    assert ex.check_constant_aggregation(lambda p, m, L: aggregate(p, m, "constant", L))
    assert ex.check_constant_aggregation(lambda p, m, L: (p * m).sum() / (p.shape[0] * L))
    for mode in ("token_mean", "sequence_mean"):
        with pytest.raises(ExerciseError):
            ex.check_constant_aggregation(lambda p, m, L, mode=mode: aggregate(p, m, mode))
    with pytest.raises(ExerciseError):  # forgets the mask
        ex.check_constant_aggregation(lambda p, m, L: p.sum() / (p.shape[0] * L))


def test_pass_at_k():
    assert ex.check_pass_at_k(lambda n, c, k: float(pass_at_k(n, c, k)[0]))
    assert ex.check_pass_at_k(lambda n, c, k: 1 - math.comb(n - c, k) / math.comb(n, k))
    with_replacement = lambda n, c, k: 1 - (1 - c / n) ** k  # noqa: E731 - biased
    for wrong in (with_replacement, lambda n, c, k: c / n, lambda n, c, k: math.comb(c, k) / math.comb(n, k)):
        with pytest.raises(ExerciseError):
            ex.check_pass_at_k(wrong)


def test_reference_shrink_by_enumeration():
    """The (G-1)/G factor, checked by exact enumeration on a 3-armed softmax policy."""
    G = ex.SHRINK_G
    logits = torch.tensor([0.3, -0.5, 1.1], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 2.0])
    p = torch.softmax(logits, 0)

    def grad_logp(a):
        return torch.autograd.grad(torch.log_softmax(logits, 0)[a], logits)[0]

    plain = sum(p[a] * rewards[a] * grad_logp(a) for a in range(3))
    # E[(r_1 - mean(r_1..r_G)) grad log pi(o_1)] with o_2..o_G independent: E[r_j] = sum p r
    mean_r = (p * rewards).sum()
    with_baseline = sum(
        p[a] * (rewards[a] - (rewards[a] + (G - 1) * mean_r) / G) * grad_logp(a) for a in range(3)
    )
    torch.testing.assert_close(with_baseline, plain * (G - 1) / G)
    assert ex.check_baseline_shrink((G - 1) / G)


def test_baseline_shrink_refuses():
    G = ex.SHRINK_G
    for wrong in (1.0, G / (G - 1), 1 / G, "0.75", float("nan"), True):
        with pytest.raises(ExerciseError):
            ex.check_baseline_shrink(wrong)
