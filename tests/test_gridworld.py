"""GridWorld: map parsing, the tabular model against simulation, the gymnasium interface, the drawing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlsurvey.rl.gridworld import DEFAULT_MAP, GridWorld, run_episode

SMALL = """
S.#
..G
"""


def test_parses_default_map():
    env = GridWorld()
    walls = DEFAULT_MAP.count("#")
    assert env.shape == (5, 8)
    assert env.n_states == 40 - walls and env.n_actions == 4
    assert env.cells[env.start_state] == (0, 0)
    assert env.terminal.sum() == DEFAULT_MAP.count("G") + DEFAULT_MAP.count("T")
    assert env.P.shape == (env.n_states, 4, env.n_states) and env.R.shape == (env.n_states, 4)


def test_accepts_a_list_of_rows():
    env = GridWorld(["S.#", "..G"])
    assert env.n_states == 5 and env.goal.sum() == 1


@pytest.mark.parametrize(
    "layout, match",
    [
        ("S..\n...", "at least one goal 'G'"),
        ("...\n..G", "exactly one start 'S', got 0"),
        ("S.S\n..G", "exactly one start 'S', got 2"),
        ("S..\n.G", "rectangular"),
        ("S.x\n..G", "characters"),
        ("\n\n", "at least one non-empty row"),
        (42, "layout must be a string"),
    ],
)
def test_rejects_bad_maps(layout, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GridWorld(layout)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"slip": 1.0}, "slip"),
        ({"slip": -0.1}, "slip"),
        ({"max_steps": 0}, "max_steps"),
        ({"render_mode": "human"}, "render_mode"),
        ({"goal_reward": float("inf")}, "goal_reward"),
        ({"step_reward": "x"}, "step_reward"),
    ],
)
def test_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridWorld(SMALL, **kwargs)


def _model_by_hand(env: GridWorld):
    """Brute-force twin of the model: walk every (state, action, direction) with explicit coordinates."""
    S, moves = env.n_states, [(-1, 0), (0, 1), (1, 0), (0, -1)]
    H, W = env.shape
    P, R = np.zeros((S, 4, S)), np.zeros((S, 4))
    reward = {"G": env.rewards["G"], "T": env.rewards["T"]}
    for s, (i, j) in enumerate(env.cells):
        for a in range(4):
            if env.layout[i][j] in "GT":
                P[s, a, s] = 1.0
                continue
            for d, p in ((a, 1 - env.slip), ((a + 1) % 4, env.slip / 2), ((a - 1) % 4, env.slip / 2)):
                ni, nj = i + moves[d][0], j + moves[d][1]
                if not (0 <= ni < H and 0 <= nj < W) or env.layout[ni][nj] == "#":
                    ni, nj = i, j
                t = env.cells.index((ni, nj))
                P[s, a, t] += p
                R[s, a] += p * reward.get(env.layout[ni][nj], env.rewards["."])
    return P, R


@pytest.mark.parametrize("slip", [0.0, 0.2])
def test_model_equals_hand_built_model(slip):
    env = GridWorld(slip=slip, step_reward=-0.05)
    P, R = _model_by_hand(env)
    np.testing.assert_allclose(env.P, P, atol=1e-12)
    np.testing.assert_allclose(env.R, R, atol=1e-12)
    np.testing.assert_allclose(env.P.sum(axis=2), 1.0)


def test_sampled_steps_follow_the_model():
    """Empirical next-state frequencies and mean rewards from step() match P and R."""
    env = GridWorld(slip=0.3, step_reward=-0.1)
    s, a, n = env.index[(2, 2)], 1, 6000  # next to a trap, so all three reward kinds can occur
    counts, total = np.zeros(env.n_states), 0.0
    env.reset(seed=0)
    for _ in range(n):
        env.state, env.steps = s, 0
        s_next, r, *_ = env.step(a)
        counts[s_next] += 1
        total += r
    np.testing.assert_allclose(counts / n, env.P[s, a], atol=0.025)
    assert total / n == pytest.approx(env.R[s, a], abs=0.04)


def test_gymnasium_interface():
    env = GridWorld(render_mode="rgb_array")
    check_env(env, skip_render_check=True)
    state, info = env.reset(seed=1)
    assert state == env.start_state and info["cell"] == (0, 0)
    state, reward, terminated, truncated, info = env.step(2)  # down from the start
    assert state == env.index[(1, 0)] and reward == 0.0 and not terminated and not truncated
    image = env.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert GridWorld().render() is None


@pytest.mark.parametrize("action", [4, -1, 1.5, "up", True])
def test_step_rejects_invalid_action(action):
    env = GridWorld(SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 4\)"):
        env.step(action)


def test_step_after_the_end_and_truncation():
    env = GridWorld("SG", max_steps=3)
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(1)
    assert reward == 1.0 and terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)
    env.reset(seed=0)
    flags = [env.step(3)[3] for _ in range(3)]  # bump into the left edge three times
    assert flags == [False, False, True]


def test_terminal_states_are_absorbing_with_zero_reward():
    env = GridWorld(slip=0.1)
    for s in np.flatnonzero(env.terminal):
        np.testing.assert_allclose(env.P[s, :, s], 1.0)
        np.testing.assert_allclose(env.R[s], 0.0)


def test_run_episode_follows_a_deterministic_policy():
    env = GridWorld(SMALL)
    policy = np.full(env.n_states, 2)  # down, then right along the bottom row
    policy[env.index[(1, 0)]] = 1
    policy[env.index[(1, 1)]] = 1
    states, actions, rewards, terminated = run_episode(env, policy, seed=0)
    assert [env.cells[s] for s in states] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert actions.tolist() == [2, 1, 1] and rewards.tolist() == [0.0, 0.0, 1.0] and terminated


def test_run_episode_samples_a_stochastic_policy_and_truncates():
    env = GridWorld(SMALL, max_steps=5)
    always_up = np.tile([1.0, 0.0, 0.0, 0.0], (env.n_states, 1))
    states, actions, rewards, terminated = run_episode(env, always_up, seed=0)
    assert len(actions) == 5 and not terminated and set(actions.tolist()) == {0}
    with pytest.raises(ValueError, match="policy must have shape"):
        run_episode(env, np.zeros((2, 2)))


def test_render_figure_draws_values_and_policy():
    env = GridWorld()
    values = np.linspace(-1, 1, env.n_states)
    fig = env.render_figure(values=values, policy=np.eye(4)[np.arange(env.n_states) % 4], title="t")
    ax = fig.axes[0]
    arrows = [c for c in ax.texts if getattr(c, "arrow_patch", None) is not None]
    assert len(arrows) == int((~env.terminal).sum())
    moves = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}  # (dx, dy) on screen, y pointing down
    live = [s for s in range(env.n_states) if not env.terminal[s]]
    for s, arrow in zip(live, arrows):
        (x1, y1), (x0, y0) = arrow.xy, arrow.xyann
        assert (np.sign(x1 - x0), np.sign(y1 - y0)) == moves[s % 4]
        assert round((x1 + x0) / 2) == env.cells[s][1] and round((y1 + y0) / 2) == env.cells[s][0]
    labels = {t.get_text() for t in ax.texts}
    assert f"{values[0]:.2f}" in labels and ax.get_title() == "t"
    assert len(fig.axes) == 2  # the map and its colour bar
    plt.close(fig)
    fig = env.render_figure(agent=env.start_state)
    assert len(fig.axes) == 1
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    assert env.render_figure(values=values, ax=axes[1]) is fig  # draws into the given axes
    assert axes[1].images and not axes[0].images
    plt.close(fig)


def test_render_figure_rejects_wrong_shapes():
    env = GridWorld()
    with pytest.raises(ValueError, match="values must have shape"):
        env.render_figure(values=np.zeros(3))
    with pytest.raises(ValueError, match="policy must have shape"):
        env.render_figure(policy=np.zeros((env.n_states, 3)))


def test_monte_carlo_returns_match_the_exact_value():
    """Brute-force twin of the model as a whole: sampled discounted returns average to V^pi(start)."""
    from rlsurvey.rl import dp

    env, gamma, n = GridWorld(slip=0.2, step_reward=-0.01), 0.9, 600
    policy = dp.uniform_policy(env.n_states, env.n_actions)
    exact = dp.solve_linear(env.P, env.R, policy, gamma)[env.start_state]
    returns = []
    for k in range(n):
        rewards = run_episode(env, policy, seed=k)[2]
        returns.append(float(np.sum(gamma ** np.arange(len(rewards)) * rewards)))
    assert abs(np.mean(returns) - exact) < 4 * np.std(returns) / np.sqrt(n) + gamma**env.max_steps
