"""Dynamic programming: every method against the linear solve or against brute-force enumeration."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.rl import dp
from rlsurvey.rl.gridworld import GridWorld, run_episode


def random_mdp(seed: int, S: int, A: int, n_absorbing: int = 0):
    """A random MDP; the last `n_absorbing` states are absorbing with zero reward."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.5), size=(S, A))
    R = rng.normal(size=(S, A))
    for s in range(S - n_absorbing, S):
        P[s] = 0.0
        P[s, :, s] = 1.0
        R[s] = 0.0
    return P, R


def random_policy(seed: int, S: int, A: int):
    return np.random.default_rng(seed + 1).dirichlet(np.ones(A), size=S)


mdps = st.tuples(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 4), st.floats(0.0, 0.95))


def solve_by_hand(P, R, policy, gamma):
    """Brute-force twin of solve_linear: the truncated series sum_k gamma^k P_pi^k R_pi."""
    P_pi = np.einsum("sa,sat->st", policy, P)
    R_pi = (policy * R).sum(axis=1)
    V, term = np.zeros(len(R)), R_pi.copy()
    for _ in range(2000):
        V += term
        term = gamma * P_pi @ term
    return V


@settings(max_examples=40, deadline=None)
@given(mdps)
def test_solve_linear_and_policy_evaluation_agree_with_the_series(case):
    seed, S, A, gamma = case
    P, R = random_mdp(seed, S, A)
    pi = random_policy(seed, S, A)
    exact = dp.solve_linear(P, R, pi, gamma)
    np.testing.assert_allclose(exact, solve_by_hand(P, R, pi, gamma), atol=1e-8)
    iterative = dp.policy_evaluation(P, R, pi, gamma, tol=1e-12)
    np.testing.assert_allclose(iterative.values, exact, atol=1e-9)
    assert iterative.residuals[-1] < 1e-12 and iterative.iterations == len(iterative.residuals)


def optimum_by_enumeration(P, R, gamma):
    """Brute-force twin of V*: the best value over all A^S deterministic policies, state by state."""
    S, A = R.shape
    best = np.full(S, -np.inf)
    for actions in itertools.product(range(A), repeat=S):
        pi = np.eye(A)[list(actions)]
        best = np.maximum(best, dp.solve_linear(P, R, pi, gamma))
    return best


@settings(max_examples=30, deadline=None)
@given(st.tuples(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 3), st.floats(0.0, 0.9)))
def test_value_and_policy_iteration_find_the_optimum(case):
    seed, S, A, gamma = case
    P, R = random_mdp(seed, S, A)
    v_star = optimum_by_enumeration(P, R, gamma)
    vi = dp.value_iteration(P, R, gamma, tol=1e-12)
    pi = dp.policy_iteration(P, R, gamma)
    np.testing.assert_allclose(vi.values, v_star, atol=1e-9)
    np.testing.assert_allclose(pi.values, v_star, atol=1e-9)
    # The greedy policies are optimal: their exact values equal V*.
    np.testing.assert_allclose(dp.solve_linear(P, R, vi.policy, gamma), v_star, atol=1e-8)
    np.testing.assert_allclose(dp.solve_linear(P, R, pi.policy, gamma), v_star, atol=1e-8)
    # V* is the fixed point of the optimality backup.
    np.testing.assert_allclose(dp.bellman_optimality_backup(P, R, v_star, gamma), v_star, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(mdps)
def test_backups_and_q_from_v_by_loops(case):
    seed, S, A, gamma = case
    P, R = random_mdp(seed, S, A)
    pi = random_policy(seed, S, A)
    V = np.random.default_rng(seed + 2).normal(size=S)
    Q = np.zeros((S, A))
    for s, a in itertools.product(range(S), range(A)):
        Q[s, a] = R[s, a] + gamma * sum(P[s, a, t] * V[t] for t in range(S))
    np.testing.assert_allclose(dp.q_from_v(P, R, V, gamma), Q, atol=1e-12)
    expect = [sum(pi[s, a] * Q[s, a] for a in range(A)) for s in range(S)]
    np.testing.assert_allclose(dp.bellman_expectation_backup(P, R, pi, V, gamma), expect, atol=1e-12)
    np.testing.assert_allclose(dp.bellman_optimality_backup(P, R, V, gamma), Q.max(axis=1), atol=1e-12)


def test_greedy_policy_picks_argmax_and_breaks_ties_low():
    Q = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 1.0], [0.0, 0.0, 1e-12]])
    np.testing.assert_array_equal(dp.greedy_policy(Q), [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="Q must have shape"):
        dp.greedy_policy(np.zeros(3))


def test_uniform_policy_and_induced_chain():
    P, R = random_mdp(0, 3, 2)
    pi = dp.uniform_policy(3, 2)
    np.testing.assert_allclose(pi, 0.5)
    P_pi, R_pi = dp.induced_chain(P, R, pi)
    np.testing.assert_allclose(P_pi, P.mean(axis=1))
    np.testing.assert_allclose(R_pi, R.mean(axis=1))


def test_absorbing_states_and_properness():
    P, R = random_mdp(1, 4, 2, n_absorbing=1)
    np.testing.assert_array_equal(dp.absorbing_states(P, R), [False, False, False, True])
    assert dp.is_proper(P, R, dp.uniform_policy(4, 2))
    # A chain 0 -> 1 -> 2 (absorbing) where action 1 in state 0 loops on itself forever.
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 0] = P[1, :, 2] = P[2, :, 2] = 1.0
    R = np.array([[-1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]])
    assert dp.is_proper(P, R, np.array([[1.0, 0], [1, 0], [1, 0]]))
    assert not dp.is_proper(P, R, np.array([[0.0, 1], [1, 0], [1, 0]]))


def test_undiscounted_problems_with_termination():
    env = GridWorld(step_reward=-0.04, slip=0.1)
    pi = dp.uniform_policy(env.n_states, 4)
    exact = dp.solve_linear(env.P, env.R, pi, 1.0)
    assert np.all(exact[env.terminal] == 0.0)
    np.testing.assert_allclose(
        dp.policy_evaluation(env.P, env.R, pi, 1.0, tol=1e-12).values, exact, atol=1e-8
    )
    vi = dp.value_iteration(env.P, env.R, 1.0, tol=1e-12)
    pi_star = dp.policy_iteration(env.P, env.R, 1.0)
    np.testing.assert_allclose(vi.values, pi_star.values, atol=1e-8)
    np.testing.assert_allclose(dp.solve_linear(env.P, env.R, vi.policy, 1.0), vi.values, atol=1e-8)


def test_gamma_one_without_termination_is_refused():
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 0] = P[1, :, 2] = P[2, :, 2] = 1.0
    R = np.array([[-1.0, -1.0], [-1.0, -1.0], [0.0, 0.0]])
    looping = np.array([[0.0, 1], [1, 0], [1, 0]])
    for fn in (dp.solve_linear, dp.policy_evaluation):
        with pytest.raises(ValueError, match="gamma=1 needs the policy"):
            fn(P, R, looping, 1.0)
    P_no_exit, R_no_exit = random_mdp(0, 3, 2)  # no absorbing state at all
    with pytest.raises(ValueError, match="gamma=1 needs some policy"):
        dp.value_iteration(P_no_exit, R_no_exit, 1.0)
    np.testing.assert_allclose(dp.solve_linear(P, R, looping, 0.5), [-2.0, -1.0, 0.0])


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan"), "0.9", True])
def test_bad_gamma_is_refused(gamma):
    P, R = random_mdp(0, 2, 2)
    with pytest.raises(ValueError, match=r"gamma \(the discount\) must be a number in \[0, 1\]"):
        dp.value_iteration(P, R, gamma)


def test_bad_model_and_policy_are_refused():
    P, R = random_mdp(0, 3, 2)
    with pytest.raises(ValueError, match="P must have shape"):
        dp.check_mdp(P[0], R, 0.9)
    with pytest.raises(ValueError, match="R must have shape"):
        dp.check_mdp(P, R[:2], 0.9)
    bad = P.copy()
    bad[0, 0, 0] += 0.2
    with pytest.raises(ValueError, match="sum to one"):
        dp.check_mdp(bad, R, 0.9)
    with pytest.raises(ValueError, match="finite"):
        dp.check_mdp(P, R * np.nan, 0.9)
    with pytest.raises(ValueError, match="policy rows must be probabilities that sum to one"):
        dp.policy_evaluation(P, R, np.full((3, 2), 0.6), 0.9)
    with pytest.raises(ValueError, match="negative entries"):
        dp.check_policy(np.array([[1.5, -0.5]] * 3), 3, 2)
    with pytest.raises(ValueError, match="policy must have shape"):
        dp.solve_linear(P, R, np.ones((2, 2)) / 2, 0.9)
    with pytest.raises(ValueError, match="V must have shape"):
        dp.q_from_v(P, R, np.zeros(4), 0.9)
    with pytest.raises(ValueError, match="V0 must have shape"):
        dp.policy_evaluation(P, R, dp.uniform_policy(3, 2), 0.9, V0=np.zeros(2))


def test_non_convergence_is_reported():
    P, R = random_mdp(0, 3, 2)
    with pytest.raises(RuntimeError, match="value iteration did not converge"):
        dp.value_iteration(P, R, 0.99, max_iter=3)
    with pytest.raises(RuntimeError, match="policy evaluation did not converge"):
        dp.policy_evaluation(P, R, dp.uniform_policy(3, 2), 0.99, max_iter=3)
    with pytest.raises(RuntimeError, match="policy iteration did not stabilise"):
        dp.policy_iteration(P, R, 0.9, max_iter=1)  # the uniform start is never greedy itself


def test_value_iteration_residuals_contract_by_gamma():
    P, R = random_mdp(5, 6, 3)
    res = np.array(dp.value_iteration(P, R, 0.8, tol=1e-10).residuals)
    assert np.all(res[1:] <= 0.8 * res[:-1] + 1e-12)  # T* is a gamma-contraction in the max norm


def test_optimal_gridworld_policy_reaches_the_goal():
    env = GridWorld(step_reward=-0.01)
    result = dp.value_iteration(env.P, env.R, 0.95)
    states, _, rewards, terminated = run_episode(env, result.policy, seed=0)
    # Deterministic moves: the greedy path is a shortest path (11 moves on the default map).
    assert terminated and env.goal[states[-1]] and rewards[-1] == 1.0 and len(rewards) == 11


def test_slippery_gridworld_goal_probability_matches_simulation():
    """Pr(reach G) under the optimal policy, exactly (gamma=1, reward 1 on entering G) and by sampling."""
    env = GridWorld(slip=0.2, step_reward=-0.01)
    policy = dp.value_iteration(env.P, env.R, 0.95).policy
    indicator = GridWorld(slip=0.2, step_reward=0.0, trap_reward=0.0, goal_reward=1.0, max_steps=500)
    p_goal = dp.solve_linear(indicator.P, indicator.R, policy, 1.0)[env.start_state]
    hits = [env.goal[run_episode(indicator, policy, seed=k)[0][-1]] for k in range(300)]
    assert p_goal > 0.5
    assert abs(np.mean(hits) - p_goal) < 4 * np.sqrt(p_goal * (1 - p_goal) / 300)
