"""Returns and GAE (rlsurvey.rl.returns) against brute-force sums written straight from the definitions."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.rl.returns import (
    discounted_returns,
    gae_advantages,
    gae_advantages_reference,
    reward_to_go,
    td_residuals,
)


def _episode_end(dones, t):
    """Index of the last step of the episode that contains step t (T - 1 if it runs past the rollout)."""
    for k in range(t, len(dones)):
        if dones[k]:
            return k, True
    return len(dones) - 1, False


def brute_returns(r, d, gamma, boot):
    out = []
    for t in range(len(r)):
        end, terminal = _episode_end(d, t)
        g = sum(gamma ** (k - t) * r[k] for k in range(t, end + 1))
        if not terminal:
            g += gamma ** (end + 1 - t) * boot
        out.append(g)
    return out


def brute_gae(r, v, d, gamma, lam, boot):
    """GAE as the lambda-weighted mix of n-step advantages (eq. 16 of 1506.02438), truncated at the
    episode's end, where all the remaining weight goes to the longest estimator."""
    out = []
    for t in range(len(r)):
        end, terminal = _episode_end(d, t)
        horizon = end + 1 - t  # steps left in this episode inside the rollout
        tail_value = 0.0 if terminal else boot

        def n_step(n, t=t, end=end, tail_value=tail_value):
            g = sum(gamma**l * r[t + l] for l in range(n))
            after = v[t + n] if t + n <= end else tail_value
            return g + gamma**n * after - v[t]

        a = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, horizon))
        a += lam ** (horizon - 1) * n_step(horizon)
        out.append(a)
    return out


finite = st.floats(-5, 5, allow_nan=False, width=32)


@st.composite
def rollouts(draw, max_t=9, max_n=3):
    T = draw(st.integers(1, max_t))
    N = draw(st.integers(1, max_n))
    r = draw(st.lists(st.lists(finite, min_size=N, max_size=N), min_size=T, max_size=T))
    v = draw(st.lists(st.lists(finite, min_size=N, max_size=N), min_size=T, max_size=T))
    d = draw(st.lists(st.lists(st.booleans(), min_size=N, max_size=N), min_size=T, max_size=T))
    boot = draw(st.lists(finite, min_size=N, max_size=N))
    gamma = draw(st.floats(0, 1))
    lam = draw(st.floats(0, 1))
    return (
        torch.tensor(r, dtype=torch.float64),
        torch.tensor(v, dtype=torch.float64),
        torch.tensor(d, dtype=torch.float64),
        torch.tensor(boot, dtype=torch.float64),
        gamma,
        lam,
    )


@settings(max_examples=150, deadline=None)
@given(rollouts())
def test_discounted_returns_equal_brute_force(roll):
    r, _, d, boot, gamma, _ = roll
    got = discounted_returns(r, d, gamma, boot)
    for i in range(r.shape[1]):
        want = brute_returns(r[:, i].tolist(), d[:, i].tolist(), gamma, boot[i].item())
        torch.testing.assert_close(got[:, i], torch.tensor(want, dtype=torch.float64))


@settings(max_examples=150, deadline=None)
@given(rollouts())
def test_gae_equals_lambda_mixture_of_n_step_advantages(roll):
    r, v, d, boot, gamma, lam = roll
    adv, ret = gae_advantages(r, v, d, boot, gamma, lam)
    ref_adv, ref_ret = gae_advantages_reference(r, v, d, boot, gamma, lam)
    for i in range(r.shape[1]):
        want = brute_gae(r[:, i].tolist(), v[:, i].tolist(), d[:, i].tolist(), gamma, lam, boot[i].item())
        want = torch.tensor(want, dtype=torch.float64)
        torch.testing.assert_close(adv[:, i], want)
        torch.testing.assert_close(ref_adv[:, i], want)
    torch.testing.assert_close(ret, adv + v)
    torch.testing.assert_close(ref_ret, ref_adv + v)


@settings(max_examples=80, deadline=None)
@given(rollouts())
def test_lambda_zero_is_the_one_step_td_error(roll):
    r, v, d, boot, gamma, _ = roll
    adv, _ = gae_advantages(r, v, d, boot, gamma, 0.0)
    nd = 1 - d
    next_v = torch.cat([v[1:], boot[None]])
    torch.testing.assert_close(adv, r + gamma * nd * next_v - v)
    torch.testing.assert_close(td_residuals(r, v, d, boot, gamma), adv)


@settings(max_examples=80, deadline=None)
@given(rollouts())
def test_lambda_one_is_monte_carlo_return_minus_value(roll):
    r, v, d, boot, gamma, _ = roll
    adv, ret = gae_advantages(r, v, d, boot, gamma, 1.0)
    mc = discounted_returns(r, d, gamma, boot)
    torch.testing.assert_close(adv, mc - v)
    torch.testing.assert_close(ret, mc)


def test_one_dimensional_inputs_and_float32():
    r = torch.tensor([1.0, 0.0, 2.0, 1.0])
    v = torch.tensor([0.5, 0.1, -0.3, 0.2])
    d = torch.tensor([0.0, 1.0, 0.0, 0.0])
    adv, ret = gae_advantages(r, v, d, 0.7, gamma=0.9, lam=0.8)
    ref, _ = gae_advantages_reference(r, v, d, 0.7, gamma=0.9, lam=0.8)
    assert adv.shape == (4,) and adv.dtype == torch.float32
    torch.testing.assert_close(adv.double(), ref, atol=1e-6, rtol=1e-6)
    # by hand: episode 1 is steps 0-1 (terminal), episode 2 is steps 2-3, bootstrapped with 0.7
    d1 = 0.0 + 0.0 - 0.1
    d0 = 1.0 + 0.9 * 0.1 - 0.5
    d3 = 1.0 + 0.9 * 0.7 - 0.2
    d2 = 2.0 + 0.9 * 0.2 + 0.3
    want = [d0 + 0.72 * d1, d1, d2 + 0.72 * d3, d3]
    torch.testing.assert_close(adv, torch.tensor(want))


def test_reward_to_go_of_one_episode():
    got = reward_to_go(torch.tensor([1.0, 1.0, 1.0]), gamma=0.5)
    torch.testing.assert_close(got, torch.tensor([1.75, 1.5, 1.0]))
    assert reward_to_go(torch.ones(5)).tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match=r"\[T\].*\(2, 3\)"):
        reward_to_go(torch.ones(2, 3))


def test_terminal_step_ignores_bootstrap():
    r = torch.tensor([[1.0], [1.0]])
    d = torch.tensor([[0.0], [1.0]])
    assert discounted_returns(r, d, 1.0, torch.tensor([100.0])).flatten().tolist() == [2.0, 1.0]
    adv, _ = gae_advantages(r, torch.zeros(2, 1), d, torch.tensor([100.0]), 1.0, 1.0)
    assert adv.flatten().tolist() == [2.0, 1.0]
    assert math.isclose(discounted_returns(r, None, 1.0, 100.0)[0, 0].item(), 102.0)


@pytest.mark.parametrize("fn", [gae_advantages, gae_advantages_reference])
def test_mismatched_shapes_name_both(fn):
    r, v, d = torch.zeros(5, 2), torch.zeros(5, 3), torch.zeros(5, 2)
    with pytest.raises(ValueError, match=r"values.*\(5, 2\).*\(5, 3\)"):
        fn(r, v, d, torch.zeros(2), 0.9, 0.9)
    with pytest.raises(ValueError, match=r"dones.*\(5, 2\).*\(4, 2\)"):
        fn(r, torch.zeros(5, 2), torch.zeros(4, 2), torch.zeros(2), 0.9, 0.9)
    with pytest.raises(ValueError, match=r"bootstrap_value.*\(2,\).*\(3,\)"):
        fn(r, torch.zeros(5, 2), d, torch.zeros(3), 0.9, 0.9)


def test_discounted_returns_shape_errors():
    with pytest.raises(ValueError, match=r"dones.*\(3,\).*\(4,\)"):
        discounted_returns(torch.zeros(3), torch.zeros(4), 0.9)
    with pytest.raises(ValueError, match=r"rewards.*\[T\] or \[T, N\].*\(2, 2, 2\)"):
        discounted_returns(torch.zeros(2, 2, 2), None, 0.9)
    with pytest.raises(TypeError, match="rewards must be a torch.Tensor"):
        discounted_returns([1.0, 2.0], None, 0.9)
    with pytest.raises(TypeError, match="floating-point"):
        discounted_returns(torch.ones(3, dtype=torch.long), None, 0.9)
    with pytest.raises(TypeError, match="values must be a torch.Tensor"):
        gae_advantages(torch.zeros(3), None, None, 0.0, 0.9, 0.9)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_discount_outside_unit_interval(bad):
    r = torch.zeros(3)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        discounted_returns(r, None, bad)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        gae_advantages(r, r, None, 0.0, gamma=bad, lam=0.9)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        gae_advantages(r, r, None, 0.0, gamma=0.9, lam=bad)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        gae_advantages_reference(r, r, None, 0.0, gamma=0.9, lam=bad)
    with pytest.raises(TypeError, match="gamma must be a float"):
        discounted_returns(r, None, "0.9")
