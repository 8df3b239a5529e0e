"""Model-free learning on a finite MDP: TD(0) evaluation and Q-learning, from sampled transitions only.

Survey section 2.1 (arXiv 2412.10400). Dynamic programming (`rlsurvey.rl.dp`) needs the model P(s' | s, a) and
R(s, a); an agent usually has only what happens when it acts. Temporal-difference learning (Sutton, 1988;
Sutton and Barto, 2nd ed., ch. 6) replaces the expectation in the Bellman equation by one sampled transition
(s, a, r, s') and moves the estimate a step α towards it:

    TD(0), evaluating a policy π:   V(s)    <- V(s)    + α [r + γ V(s')            - V(s)]
    Q-learning (Watkins, 1989):      Q(s, a) <- Q(s, a) + α [r + γ max_a' Q(s', a') - Q(s, a)]

with V(s') = 0 and max Q(s', ·) = 0 when s' is terminal. TD(0) converges to V^π, the value that
`dp.solve_linear` computes from the model; Q-learning is off-policy: it behaves ζ-greedily (a random action
with probability ζ, the course's letter for ε-greedy's rate, since ε is PPO's clip) yet learns the greedy
policy's Q*, which `dp.value_iteration` computes. These two updates are the bridge from dynamic programming
to the sampled, approximate methods of chapter 02: a critic in actor-critic is TD(0) with a network for V.

Both functions see the environment only through `reset` and `step` (the `gymnasium` interface); the
gridworld's model is used by the tests and the chapter only to check the answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TDResult", "q_learning", "td0_evaluation"]


@dataclass
class TDResult:
    values: np.ndarray  # (S,) V for TD(0); max_a Q(s, a) for Q-learning
    q: np.ndarray | None  # (S, A) Q-learning's action values; None for TD(0)
    errors: list = field(
        default_factory=list
    )  # after each episode: max |V - truth| (or |Q - truth|), if given
    returns: list = field(default_factory=list)  # undiscounted return of each training episode


def _check(env, episodes: int, alpha: float, gamma: float) -> None:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if not (isinstance(gamma, (int, float)) and 0.0 <= gamma <= 1.0):
        raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
    for name in ("n_states", "n_actions", "terminal"):
        if not hasattr(env, name):
            raise TypeError(f"env needs `{name}` (a finite MDP such as rlsurvey.rl.gridworld.GridWorld)")


def _start(env, rng, exploring_starts: bool, seed: int) -> int:
    """Reset the environment; with exploring starts, put the agent in a uniformly random non-terminal state
    (so that every state is visited, not only those reachable early from the start)."""
    state, _ = env.reset(seed=seed)
    if exploring_starts:
        state = int(rng.choice(np.flatnonzero(~np.asarray(env.terminal))))
        env.state = state
    return state


def td0_evaluation(
    env, policy, episodes: int, alpha: float = 0.1, gamma: float = 0.95, seed: int = 0,
    exploring_starts: bool = True, truth=None,
) -> TDResult:  # fmt: skip
    """Estimate V^π by TD(0) from `episodes` episodes of `policy` ((S, A) probabilities or (S,) actions).

    `truth` (an (S,) array, e.g. `dp.solve_linear`'s V^π) is only used to record max |V - truth| after each
    episode, for plots and tests."""
    _check(env, episodes, alpha, gamma)
    policy = np.asarray(policy, dtype=float)
    rng = np.random.default_rng(seed)
    v = np.zeros(env.n_states)
    out = TDResult(values=v, q=None)
    terminal = np.asarray(env.terminal)
    for episode in range(episodes):
        state = _start(env, rng, exploring_starts, seed + episode)
        total, done = 0.0, False
        while not done:
            action = (
                int(rng.choice(env.n_actions, p=policy[state])) if policy.ndim == 2 else int(policy[state])
            )
            nxt, reward, terminated, truncated, _ = env.step(action)
            target = reward + (0.0 if terminal[nxt] else gamma * v[nxt])
            v[state] += alpha * (target - v[state])
            state, total, done = nxt, total + reward, terminated or truncated
        out.returns.append(total)
        if truth is not None:
            out.errors.append(float(np.max(np.abs(v - truth))))
    return out


def q_learning(
    env, episodes: int, alpha: float = 0.1, gamma: float = 0.95, zeta: float = 0.1, seed: int = 0,
    exploring_starts: bool = True, truth=None,
) -> TDResult:  # fmt: skip
    """Learn Q* by Q-learning, acting ζ-greedily (ties broken at random) for `episodes` episodes.

    `truth` (an (S, A) array, Q*) is only used to record max |Q - truth| after each episode."""
    _check(env, episodes, alpha, gamma)
    if not (isinstance(zeta, (int, float)) and 0.0 <= zeta <= 1.0):
        raise ValueError(f"zeta must be in [0, 1], got {zeta!r}")
    rng = np.random.default_rng(seed)
    q = np.zeros((env.n_states, env.n_actions))
    terminal = np.asarray(env.terminal)
    out = TDResult(values=q.max(1), q=q)
    for episode in range(episodes):
        state = _start(env, rng, exploring_starts, seed + episode)
        total, done = 0.0, False
        while not done:
            if rng.random() < zeta:
                action = int(rng.integers(env.n_actions))
            else:
                best = np.flatnonzero(q[state] == q[state].max())
                action = int(rng.choice(best))
            nxt, reward, terminated, truncated, _ = env.step(action)
            target = reward + (0.0 if terminal[nxt] else gamma * q[nxt].max())
            q[state, action] += alpha * (target - q[state, action])
            state, total, done = nxt, total + reward, terminated or truncated
        out.returns.append(total)
        if truth is not None:
            out.errors.append(float(np.max(np.abs(q - truth))))
    out.values = q.max(1)
    return out
