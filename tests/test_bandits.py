"""Bandits: environments, the three agents, the run loop, each against a hand computation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.rl import bandits as B

# ---------------------------------------------------------------- environments


def test_bernoulli_pull_frequencies_match_probs():
    bandit = B.BernoulliBandit([0.1, 0.5, 0.9], seed=0)
    for a, p in enumerate(bandit.means):
        draws = np.array([bandit.pull(a) for _ in range(4000)])
        assert set(np.unique(draws)) <= {0.0, 1.0}
        assert abs(draws.mean() - p) < 4 * math.sqrt(p * (1 - p) / 4000) + 1e-9


def test_gaussian_pull_mean_and_std():
    bandit = B.GaussianBandit([-1.0, 2.0], std=0.5, seed=1)
    draws = np.array([bandit.pull(1) for _ in range(4000)])
    assert abs(draws.mean() - 2.0) < 4 * 0.5 / math.sqrt(4000)
    assert abs(draws.std() - 0.5) < 0.03


def test_bandit_properties():
    bandit = B.BernoulliBandit([0.2, 0.7, 0.4])
    assert bandit.k == 3 and bandit.optimal_arm == 1 and bandit.optimal_mean == 0.7
    np.testing.assert_allclose(bandit.gaps(), [0.5, 0.0, 0.3])


@pytest.mark.parametrize(
    "probs, match",
    [([0.5, 1.2], "probs must lie in"), ([-0.1, 0.5], "probs must lie in"), ([0.5], "at least 2 arms"),
     ([[0.1, 0.2]], "1-D"), ([0.1, float("nan")], "finite"), ("ab", "sequence of numbers")],
)  # fmt: skip
def test_bernoulli_rejects_bad_probs(probs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        B.BernoulliBandit(probs)


def test_gaussian_rejects_bad_std():
    with pytest.raises(ValueError, match="std"):
        B.GaussianBandit([0.0, 1.0], std=0.0)


@pytest.mark.parametrize("action", [-1, 3, 10])
def test_pull_rejects_out_of_range_action(action):
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 3\)"):
        B.BernoulliBandit([0.1, 0.2, 0.3]).pull(action)


@pytest.mark.parametrize("action", [1.0, "1", True, None])
def test_pull_rejects_non_int_action(action):
    with pytest.raises(TypeError, match="action must be an int"):
        B.BernoulliBandit([0.1, 0.2, 0.3]).pull(action)


# ---------------------------------------------------------------- agents


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(-5, 5)), min_size=1, max_size=40))
def test_sample_average_equals_mean_of_rewards(history):
    """Brute-force twin of the incremental mean: Q_a is the plain mean of the rewards seen for arm a."""
    agent = B.EpsilonGreedy(4, epsilon=0.1, seed=0)
    for a, r in history:
        agent.update(a, r)
    for a in range(4):
        rewards = [r for b, r in history if b == a]
        assert agent.counts[a] == len(rewards)
        assert agent.values[a] == pytest.approx(np.mean(rewards) if rewards else 0.0, abs=1e-9)
    assert agent.t == len(history)


def test_epsilon_zero_is_greedy_and_one_is_uniform():
    greedy = B.EpsilonGreedy(3, epsilon=0.0, seed=0)
    greedy.values[:] = [0.1, 0.9, 0.3]
    assert all(greedy.select() == 1 for _ in range(50))
    explorer = B.EpsilonGreedy(3, epsilon=1.0, seed=0)
    explorer.values[:] = [0.1, 0.9, 0.3]
    picks = np.bincount([explorer.select() for _ in range(3000)], minlength=3) / 3000
    np.testing.assert_allclose(picks, 1 / 3, atol=0.04)


def test_greedy_ties_are_broken_at_random():
    agent = B.EpsilonGreedy(4, epsilon=0.0, seed=0)
    assert set(agent.select() for _ in range(200)) == {0, 1, 2, 3}


def test_ucb_index_by_hand():
    values, counts, t = np.array([0.5, 0.2, 0.9]), np.array([4, 1, 10]), 15
    expected = [v + math.sqrt(2) * math.sqrt(math.log(t) / n) for v, n in zip(values, counts)]
    np.testing.assert_allclose(B.ucb_index(values, counts, t), expected)
    np.testing.assert_allclose(B.ucb_index(values, counts, t, c=0.0), values)
    assert B.ucb_index(values, np.array([4, 0, 10]), t)[1] == math.inf


def test_ucb_index_rejects_bad_input():
    with pytest.raises(ValueError, match="equal shape"):
        B.ucb_index(np.zeros(3), np.ones(2), 5)
    with pytest.raises(ValueError, match="t must be at least 1"):
        B.ucb_index(np.zeros(3), np.ones(3), 0)


def test_ucb1_tries_every_arm_first_then_follows_the_index():
    agent = B.UCB1(5, seed=0)
    first = []
    for r in [0.0, 1.0, 0.0, 0.0, 1.0]:
        a = agent.select()
        first.append(a)
        agent.update(a, r)
    assert sorted(first) == [0, 1, 2, 3, 4]
    for _ in range(30):  # afterwards the choice is the argmax of the index computed by hand
        index = agent.values + agent.c * np.sqrt(np.log(agent.t) / agent.counts)
        a = agent.select()
        assert index[a] == pytest.approx(index.max())
        agent.update(a, float(a in (1, 4)))


def test_softmax_matches_definition_and_is_stable():
    h = np.array([1.0, 2.0, -3.0])
    np.testing.assert_allclose(B.softmax(h), np.exp(h) / np.exp(h).sum())
    big = B.softmax(np.array([1000.0, 1000.0]))
    np.testing.assert_allclose(big, [0.5, 0.5])
    batch = np.array([[0.0, 1.0], [3.0, -1.0]])
    np.testing.assert_allclose(B.softmax(batch), [B.softmax(row) for row in batch])


def test_gradient_bandit_update_by_hand():
    agent = B.GradientBandit(3, step_size=0.5, baseline=True, seed=0)
    agent.preferences[:] = [0.2, -0.1, 0.4]
    agent.mean_reward, agent.t = 0.3, 4
    pi = np.exp(agent.preferences) / np.exp(agent.preferences).sum()
    expected = agent.preferences + 0.5 * (1.0 - 0.3) * (np.eye(3)[2] - pi)
    agent.update(2, 1.0)
    np.testing.assert_allclose(agent.preferences, expected)
    assert agent.mean_reward == pytest.approx(0.3 + (1.0 - 0.3) / 5)
    no_base = B.GradientBandit(3, step_size=0.5, baseline=False)
    no_base.update(0, 2.0)  # baseline 0: H_0 += 0.5 * 2 * (1 - 1/3)
    np.testing.assert_allclose(no_base.preferences, [2 / 3, -1 / 3, -1 / 3])


def test_gradient_bandit_samples_its_softmax():
    agent = B.GradientBandit(3, seed=0)
    agent.preferences[:] = [0.0, 1.0, 2.0]
    picks = np.bincount([agent.select() for _ in range(6000)], minlength=3) / 6000
    np.testing.assert_allclose(picks, agent.probs, atol=0.03)


@pytest.mark.parametrize(
    "make, match",
    [(lambda: B.EpsilonGreedy(3, epsilon=1.5), "epsilon"), (lambda: B.UCB1(3, c=-1.0), "c must"),
     (lambda: B.GradientBandit(3, step_size=0.0), "step_size"), (lambda: B.EpsilonGreedy(0), "k must"),
     (lambda: B.UCB1(3).update(3, 1.0), "action"), (lambda: B.GradientBandit(2).update(-1, 0.0), "action")],
)  # fmt: skip
def test_agents_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- running


def test_run_bandit_records_regret_by_hand():
    bandit = B.BernoulliBandit([0.2, 0.8, 0.5], seed=3)
    run = B.run_bandit(bandit, B.EpsilonGreedy(3, epsilon=0.3, seed=4), steps=200)
    assert run.rewards.shape == run.actions.shape == run.regret.shape == run.optimal.shape == (200,)
    gaps = {0: 0.6, 1: 0.0, 2: 0.3}
    np.testing.assert_allclose(run.regret, np.cumsum([gaps[a] for a in run.actions]))
    np.testing.assert_array_equal(run.optimal, run.actions == 1)


def test_run_bandit_rejects_mismatched_agent_and_steps():
    with pytest.raises(ValueError, match="k=2 arms"):
        B.run_bandit(B.BernoulliBandit([0.1, 0.2, 0.3]), B.UCB1(2), 10)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        B.run_bandit(B.BernoulliBandit([0.1, 0.2]), B.UCB1(2), 0)


def test_agents_learn_the_best_arm():
    """Every agent ends up pulling the best arm far more often than chance (1/4) in the last 500 steps."""
    probs = [0.2, 0.4, 0.6, 0.8]
    agents = {
        "eps": B.EpsilonGreedy(4, 0.1, seed=1),
        "ucb": B.UCB1(4, seed=1),
        "grad": B.GradientBandit(4, 0.2, seed=1),
    }
    for name, agent in agents.items():
        run = B.run_bandit(B.BernoulliBandit(probs, seed=0), agent, 2000)
        assert run.optimal[-500:].mean() > 0.7, name
        # Regret grows more slowly at the end than at the start: the agent has learned something.
        assert run.regret[-1] - run.regret[-501] < run.regret[499], name


def test_compare_agents_shapes_and_determinism():
    make_bandit = lambda seed: B.BernoulliBandit([0.3, 0.6], seed=seed)  # noqa: E731
    agents = {"eps": lambda k, s: B.EpsilonGreedy(k, 0.1, seed=s), "ucb": lambda k, s: B.UCB1(k, seed=s)}
    a = B.compare_agents(make_bandit, agents, steps=50, seeds=[0, 1, 2], progress=False)
    b = B.compare_agents(make_bandit, agents, steps=50, seeds=[0, 1, 2], progress=False)
    assert set(a) == {"eps", "ucb"} and a["eps"].shape == (3, 50)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert np.all(np.diff(a[name], axis=1) >= 0)  # cumulative regret never decreases
    with pytest.raises(ValueError, match="seeds"):
        B.compare_agents(make_bandit, agents, steps=5, seeds=[], progress=False)


def test_compare_agents_does_not_share_the_bandit_seed():
    """With a shared stream the gradient bandit's arm draw decides its reward; a fair run learns."""
    regret = B.compare_agents(
        lambda s: B.BernoulliBandit([0.1, 0.5, 0.9], seed=s),
        {"grad": lambda k, s: B.GradientBandit(k, 0.1, seed=s)},
        steps=1500,
        seeds=range(4),
        progress=False,
    )["grad"]
    uniform_regret = 1500 * np.mean([0.8, 0.4, 0.0])
    assert regret[:, -1].mean() < 0.5 * uniform_regret
