"""TD(0) and Q-learning against dynamic programming on the gridworld (the model is the brute-force twin)."""

import numpy as np
import pytest

from rlsurvey.rl import dp, td
from rlsurvey.rl.gridworld import GridWorld

CORRIDOR = "S...G"
GAMMA = 0.9


def test_td0_with_step_one_on_a_deterministic_corridor_is_exact():
    """alpha = 1, no slip, always right: each episode backs the goal's reward up one more cell, so after as
    many episodes as cells V(s) = gamma^(distance - 1) exactly, the value the model gives."""
    env = GridWorld(CORRIDOR)
    right = np.ones(env.n_states, dtype=int)
    truth = dp.solve_linear(env.P, env.R, np.eye(env.n_actions)[right], GAMMA)
    out = td.td0_evaluation(
        env, right, episodes=6, alpha=1.0, gamma=GAMMA, exploring_starts=False, truth=truth
    )
    np.testing.assert_allclose(out.values, truth, atol=1e-12)
    np.testing.assert_allclose(truth[:4], GAMMA ** np.arange(3, -1, -1))
    assert out.errors[0] > 0.5 and out.errors[-1] < 1e-12  # the record can tell a wrong answer


def test_q_learning_with_random_behaviour_and_step_one_finds_q_star_on_a_deterministic_map():
    """Off-policy: acting uniformly at random (zeta = 1), alpha = 1 on a deterministic gridworld, Q converges
    to Q* of value iteration at every non-terminal state-action pair."""
    env = GridWorld("S.#G\n...T\n....")
    vi = dp.value_iteration(env.P, env.R, GAMMA)
    q_star = dp.q_from_v(env.P, env.R, vi.values, GAMMA)
    out = td.q_learning(env, episodes=400, alpha=1.0, gamma=GAMMA, zeta=1.0, seed=3, truth=q_star)
    live = ~env.terminal
    np.testing.assert_allclose(out.q[live], q_star[live], atol=1e-9)
    np.testing.assert_allclose(out.values[live], vi.values[live], atol=1e-9)


def test_td0_on_the_slippery_default_map_approaches_v_pi():
    env = GridWorld(slip=0.1, step_reward=-0.04)
    policy = dp.uniform_policy(env.n_states, env.n_actions)
    truth = dp.solve_linear(env.P, env.R, policy, 0.95)
    out = td.td0_evaluation(env, policy, episodes=3000, alpha=0.02, gamma=0.95, seed=1, truth=truth)
    live = ~env.terminal
    assert np.abs(out.values - truth)[live].mean() < 0.03
    assert out.errors[-1] < out.errors[0] / 3


def test_q_learning_greedy_policy_is_near_optimal_on_the_slippery_map():
    env = GridWorld(slip=0.1, step_reward=-0.04)
    vi = dp.value_iteration(env.P, env.R, 0.95)
    out = td.q_learning(env, episodes=3000, alpha=0.1, gamma=0.95, zeta=0.2, seed=1)
    v_greedy = dp.solve_linear(env.P, env.R, dp.greedy_policy(out.q), 0.95)
    start = env.start_state
    uniform = dp.solve_linear(env.P, env.R, dp.uniform_policy(env.n_states, env.n_actions), 0.95)
    assert vi.values[start] - v_greedy[start] < 0.01 < vi.values[start] - uniform[start]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"episodes": 0}, "episodes"),
        ({"alpha": 0.0}, "alpha"),
        ({"gamma": 1.5}, "gamma"),
        ({"zeta": -0.1}, "zeta"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    env = GridWorld(CORRIDOR)
    with pytest.raises(ValueError, match=match):
        td.q_learning(env, **{"episodes": 5, **kwargs})
    with pytest.raises(TypeError, match="finite MDP"):
        td.td0_evaluation(object(), np.zeros(3, dtype=int), episodes=1)
