"""Safe RLHF's Lagrange multiplier and the combined reward, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.rollout import RewardError
from rlsurvey.algos.safe_rlhf import LagrangeMultiplier, LagrangianReward


def test_multiplier_update_by_hand():
    m = LagrangeMultiplier(value=2.0, learning_rate=0.1, cost_limit=0.5)
    assert m.update(1.5) == pytest.approx(math.exp(math.log(2.0) + 0.1 * 2.0 * 1.0))
    m = LagrangeMultiplier(value=2.0, learning_rate=0.1, cost_limit=0.5)
    assert m.update(0.0) == pytest.approx(2.0 * math.exp(-0.1))
    capped = LagrangeMultiplier(value=50.0, learning_rate=1.0, cost_limit=0.0, max_value=60.0)
    assert capped.update(3.0) == 60.0
    with pytest.raises(ValueError, match="mean_cost must be finite"):
        m.update(float("nan"))
    for bad in (dict(value=0.0), dict(learning_rate=-1.0)):
        with pytest.raises(ValueError, match="LagrangeMultiplier"):
            LagrangeMultiplier(**bad)


def test_multiplier_survives_steps_too_large_for_exp():
    """A step of thousands of nats on ln(lambda) neither overflows exp nor leaves lambda at 0, whose logarithm
    the next step needs (both happened before the bounds were applied to ln(lambda))."""
    up = LagrangeMultiplier(value=100.0, learning_rate=10.0, cost_limit=0.0, max_value=100.0)
    assert up.update(1.0) == 100.0  # ln step +1000: exp overflows without the cap in log space
    down = LagrangeMultiplier(value=100.0, learning_rate=10.0, cost_limit=1.0)
    assert down.update(0.0) == 1e-8  # ln step -1000: exp underflows to 0.0 without the floor
    assert down.update(2.0) > 1e-8  # and the multiplier can rise again
    with pytest.raises(ValueError, match="min_value"):
        LagrangeMultiplier(min_value=0.0)


@settings(max_examples=50, deadline=None)
@given(cost=st.floats(-3, 3), limit=st.floats(-1, 1), value=st.floats(0.01, 10))
def test_multiplier_moves_towards_feasibility(cost, limit, value):
    m = LagrangeMultiplier(value=value, learning_rate=0.05, cost_limit=limit)
    new = m.update(cost)
    # exp(log(λ)) round-trips to within an ulp, hence the relative slack
    if cost > limit:
        assert new >= value * (1 - 1e-12)
    elif cost < limit:
        assert new <= value * (1 + 1e-12)
    assert new > 0


def test_combined_reward_by_hand_and_frozen_lambda():
    reward = lambda p, c: [1.0, 2.0, -1.0]  # noqa: E731
    cost = lambda p, c: [0.0, 1.0, 2.0]  # noqa: E731
    lag = LagrangianReward(reward, cost, LagrangeMultiplier(value=0.5, learning_rate=0.2, cost_limit=0.25))
    out = lag(["p"] * 3, ["a", "b", "c"])
    want = torch.tensor([(1.0 - 0.0) / 1.5, (2.0 - 0.5) / 1.5, (-1.0 - 1.0) / 1.5])
    torch.testing.assert_close(out, want)
    assert lag.history == [{"lambda": 0.5, "reward": pytest.approx(2 / 3), "cost": 1.0}]
    assert lag.multiplier.value == pytest.approx(0.5 * math.exp(0.2 * 0.5 * 0.75))
    lag.update = False
    before = lag.multiplier.value
    lag(["p"] * 3, ["a", "b", "c"])
    assert lag.multiplier.value == before


def test_bad_cost_is_named():
    lag = LagrangianReward(lambda p, c: [0.0] * len(c), lambda p, c: [0.0])
    with pytest.raises(RewardError, match="returned 1 scores for 2"):
        lag(["p", "q"], ["a", "b"])
