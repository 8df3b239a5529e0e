"""Chapter 01's exercise checks: each passes the reference solution and refuses wrong answers."""

import numpy as np
import pytest

from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch01 as ex
from rlsurvey.rl import bandits, dp


def test_return_by_hand():
    by_hand = 0.0 + 0.9 * -1.0 + 0.9**2 * 0.0 + 0.9**3 * 0.0 + 0.9**4 * 2.0
    assert ex.check_return_by_hand(by_hand)
    for wrong in (sum(ex.RETURN_REWARDS), -1.0 * 0.9**2 + 2.0 * 0.9**5, "1.4"):
        with pytest.raises(ExerciseError):
            ex.check_return_by_hand(wrong)


def test_reference_discounted_returns_by_the_definition():
    rewards, gamma = [1.0, -2.0, 0.5, 3.0], 0.8
    by_sum = [sum(gamma**k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]
    np.testing.assert_allclose(ex.reference_discounted_returns(rewards, gamma), by_sum)


def test_discounted_returns():
    assert ex.check_discounted_returns(ex.reference_discounted_returns)
    undiscounted = lambda r, g: np.cumsum(r[::-1])[::-1]  # noqa: E731 - forgets gamma
    forwards = lambda r, g: np.cumsum([g**k * x for k, x in enumerate(r)])  # noqa: E731
    for wrong in (undiscounted, forwards, lambda r, g: 1 / 0):
        with pytest.raises(ExerciseError):
            ex.check_discounted_returns(wrong)


def test_q_from_v():
    assert ex.check_q_from_v(dp.q_from_v)
    assert ex.check_q_from_v(lambda P, R, V, g: R + g * np.einsum("sat,t->sa", P, V))
    for wrong in (lambda P, R, V, g: R + P @ V, lambda P, R, V, g: R + g * V[:, None], lambda P, R, V, g: R):
        with pytest.raises(ExerciseError):
            ex.check_q_from_v(wrong)


def test_bellman_backup():
    assert ex.check_bellman_backup(dp.bellman_optimality_backup)
    mean_backup = lambda P, R, V, g: (R + g * P @ V).mean(axis=1)  # noqa: E731 - expectation, not max
    q_only = lambda P, R, V, g: R + g * P @ V  # noqa: E731 - forgot the max
    for wrong in (mean_backup, q_only):
        with pytest.raises(ExerciseError):
            ex.check_bellman_backup(wrong)


def test_advantage():
    assert ex.check_advantage(ex.reference_advantage)
    q_only = lambda P, R, pi, g: dp.q_from_v(P, R, dp.solve_linear(P, R, pi, g), g)  # noqa: E731
    one_step = lambda P, R, pi, g: R - (pi * R).sum(axis=1, keepdims=True)  # noqa: E731 - no look-ahead
    for wrong in (q_only, one_step):
        with pytest.raises(ExerciseError):
            ex.check_advantage(wrong)


def test_reference_advantage_averages_to_zero_under_the_policy():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), size=(4, 3))
    R = rng.normal(size=(4, 3))
    pi = rng.dirichlet(np.ones(3), size=4)
    A = ex.reference_advantage(P, R, pi, 0.9)
    np.testing.assert_allclose((pi * A).sum(axis=1), 0.0, atol=1e-10)


def test_ucb_index():
    assert ex.check_ucb_index(bandits.ucb_index)
    no_inf = lambda v, n, t, c: v + c * np.sqrt(np.log(t) / np.maximum(n, 1))  # noqa: E731
    log10 = lambda v, n, t, c: np.where(n == 0, np.inf, v + c * np.sqrt(np.log10(t) / np.maximum(n, 1)))  # noqa: E731
    no_sqrt = lambda v, n, t, c: np.where(n == 0, np.inf, v + c * np.log(t) / np.maximum(n, 1))  # noqa: E731
    for wrong in (no_inf, log10, no_sqrt, lambda v, n, t, c: v[:1]):
        with pytest.raises(ExerciseError):
            ex.check_ucb_index(wrong)
