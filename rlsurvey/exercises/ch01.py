"""Checks for the exercises of chapter 01 (RL basics, survey section 2.1 of arXiv 2412.10400).

1. `check_return_by_hand(value)`: the discounted return of `RETURN_REWARDS` with `RETURN_GAMMA`.
2. `check_discounted_returns(fn)`: fn(rewards, gamma) -> G_t for every t, by the backward recursion.
3. `check_q_from_v(fn)`: fn(P, R, V, gamma) -> Q, one step of look-ahead.
4. `check_bellman_backup(fn)`: fn(P, R, V, gamma) -> T*V, one sweep of value iteration.
5. `check_advantage(fn)`: fn(P, R, policy, gamma) -> A^pi = Q^pi - V^pi.
6. `check_ucb_index(fn)`: fn(values, counts, t, c) -> the UCB1 index of every arm.
7. `check_wall_value(fn)`: fn(step_reward, gamma) -> the value of a policy that bumps into a wall forever,
   sum_k gamma^k r = r / (1 - gamma), and for gamma = 1: 0 when r = 0, -inf when r < 0.

Each check runs the reader's answer on inputs it has not seen and compares with the reference solution in
this module (built on `rlsurvey.rl.dp` and `rlsurvey.rl.bandits`).
"""

from __future__ import annotations

import numpy as np

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.rl import bandits, dp

__all__ = [
    "EXERCISES",
    "check_wall_value",
    "reference_bellman_backup",
    "reference_q_from_v",
    "reference_return_by_hand",
    "reference_ucb_index",
    "reference_wall_value",
    "RETURN_REWARDS",
    "RETURN_GAMMA",
    "check_return_by_hand",
    "check_discounted_returns",
    "check_q_from_v",
    "check_bellman_backup",
    "check_advantage",
    "check_ucb_index",
    "reference_discounted_returns",
    "reference_advantage",
]

RETURN_REWARDS = (0.0, -1.0, 0.0, 0.0, 2.0)  # r_0 ... r_4 of one episode (r_t: the reward of step t)
RETURN_GAMMA = 0.9


def reference_discounted_returns(rewards, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1}, G_T = 0, for t = 0 ... T-1 (Sutton & Barto eq. 3.9: their R_{t+1})."""
    out, g = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def reference_return_by_hand() -> float:
    """G_0 of RETURN_REWARDS: r_0 + gamma r_1 + gamma^2 r_2 + ..."""
    return sum(RETURN_GAMMA**k * r for k, r in enumerate(RETURN_REWARDS))


def reference_q_from_v(P, R, V, gamma: float) -> np.ndarray:
    """Q(s, a) = R(s, a) + gamma sum_s' P(s' | s, a) V(s') (S&B eq. 3.13 for a known model)."""
    return R + gamma * np.einsum("sat,t->sa", P, V)


def reference_bellman_backup(P, R, V, gamma: float) -> np.ndarray:
    """(T* V)(s) = max_a Q(s, a), Q from one step of look-ahead (S&B eq. 4.10)."""
    return reference_q_from_v(P, R, V, gamma).max(axis=1)


def reference_ucb_index(values, counts, t: int, c: float) -> np.ndarray:
    """U_a = Q_a + c sqrt(ln t / N_a), +inf for arms never pulled (Auer et al., 2002)."""
    counts = np.asarray(counts)
    bonus = c * np.sqrt(np.log(t) / np.maximum(counts, 1))
    return np.where(counts == 0, np.inf, np.asarray(values, dtype=float) + bonus)


def reference_wall_value(step_reward: float, gamma: float) -> float:
    """V = sum_{k>=0} gamma^k r: r / (1 - gamma) for gamma < 1; with gamma = 1 it diverges unless r = 0."""
    if gamma < 1.0:
        return step_reward / (1.0 - gamma)
    return 0.0 if step_reward == 0 else float(np.sign(step_reward)) * np.inf


def reference_advantage(P, R, policy, gamma: float) -> np.ndarray:
    """A^pi(s, a) = Q^pi(s, a) - V^pi(s), with V^pi from the exact linear solve."""
    V = dp.solve_linear(P, R, policy, gamma)
    return dp.q_from_v(P, R, V, gamma) - V[:, None]


def _as_array(name: str, got) -> np.ndarray:
    """The reader's answer as a fresh float array (a copy: reversed views have strides torch refuses)."""
    try:
        return np.array(got, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ExerciseError(
            f"{name}: expected numbers (a list, array or tensor), got {type(got).__name__}"
        ) from exc


def _random_mdps(seed: int = 2412, n: int = 4):
    rng = np.random.default_rng(seed)
    for S, A in [(3, 2), (5, 4), (1, 3), (6, 2)][:n]:
        P = rng.dirichlet(np.full(S, 0.7), size=(S, A))
        R = rng.normal(size=(S, A))
        V = rng.normal(size=S)
        policy = rng.dirichlet(np.ones(A), size=S)
        yield P, R, V, policy, float(rng.choice([0.0, 0.5, 0.9]))


def check_return_by_hand(value) -> bool:
    """Your G_0 for RETURN_REWARDS (r_1 ... r_5) and RETURN_GAMMA."""
    name = "return by hand"
    if not isinstance(value, (int, float, np.floating)):
        raise ExerciseError(f"{name}: expected a number, got {type(value).__name__}")
    expected = reference_discounted_returns(RETURN_REWARDS, RETURN_GAMMA)[0]
    hint = "G_0 = r_0 + gamma r_1 + gamma^2 r_2 + ...: the reward r_k is multiplied by gamma^k."
    assert_close(name, value, expected, hint=hint)
    return passed(name)


def check_discounted_returns(fn) -> bool:
    """fn(rewards: list[float], gamma: float) -> array of G_0 ... G_{T-1}."""
    name = "discounted returns"
    rng = np.random.default_rng(7)
    for T, gamma in [(1, 0.9), (6, 0.0), (9, 1.0), (13, 0.95)]:
        rewards = rng.normal(size=T).round(2).tolist()
        got = _as_array(name, call_safely(name, fn, list(rewards), gamma))
        hint = "go backwards: G_{T-1} = r_{T-1}, then G_t = r_t + gamma * G_{t+1}."
        assert_close(name, got, reference_discounted_returns(rewards, gamma), hint=hint)
    return passed(name)


def check_q_from_v(fn) -> bool:
    """fn(P (S, A, S), R (S, A), V (S,), gamma) -> Q (S, A)."""
    name = "q_from_v"
    for P, R, V, _, gamma in _random_mdps():
        got = _as_array(name, call_safely(name, fn, P.copy(), R.copy(), V.copy(), gamma))
        hint = "Q[s, a] = R[s, a] + gamma * sum over s' of P[s, a, s'] V[s'], i.e. R + gamma * P @ V."
        assert_close(name, got, dp.q_from_v(P, R, V, gamma), hint=hint)
    return passed(name)


def check_bellman_backup(fn) -> bool:
    """fn(P, R, V, gamma) -> (T* V) (S,), the Bellman optimality backup."""
    name = "Bellman optimality backup"
    for P, R, V, _, gamma in _random_mdps():
        got = _as_array(name, call_safely(name, fn, P.copy(), R.copy(), V.copy(), gamma))
        hint = "compute Q from V (one step of look-ahead), then take the max over actions."
        assert_close(name, got, dp.bellman_optimality_backup(P, R, V, gamma), hint=hint)
    return passed(name)


def check_advantage(fn) -> bool:
    """fn(P, R, policy (S, A), gamma) -> A^pi (S, A); gamma < 1 in every test case."""
    name = "advantage"
    for P, R, _, policy, gamma in _random_mdps():
        gamma = min(gamma, 0.9)
        got = _as_array(name, call_safely(name, fn, P.copy(), R.copy(), policy.copy(), gamma))
        hint = (
            "evaluate the policy first (dp.solve_linear gives V^pi), then A = Q^pi - V^pi[:, None]; "
            "under pi the advantages average to zero in every state."
        )
        assert_close(name, got, reference_advantage(P, R, policy, gamma), hint=hint)
    return passed(name)


def check_ucb_index(fn) -> bool:
    """fn(values (k,), counts (k,), t, c) -> index (k,), +inf for arms never pulled."""
    name = "UCB index"
    rng = np.random.default_rng(11)
    for k, c in [(3, np.sqrt(2.0)), (6, 0.5), (4, 0.0)]:
        values = rng.random(k)
        counts = rng.integers(1, 20, size=k)
        counts[0] = 0 if k == 6 else counts[0]
        t = int(counts.sum()) + 1
        got = _as_array(name, call_safely(name, fn, values.copy(), counts.copy(), t, c))
        expected = bandits.ucb_index(values, counts, t, c)
        if got.shape == expected.shape and not np.array_equal(np.isinf(got), np.isinf(expected)):
            raise ExerciseError(
                f"{name}: an arm with N_a = 0 must get +inf (and only such arms). "
                "Hint: use np.where(counts == 0, np.inf, ...)."
            )
        finite = np.isfinite(expected)
        hint = "U_a = Q_a + c * sqrt(ln t / N_a), with the natural log."
        assert_close(name, got[finite] if got.shape == expected.shape else got, expected[finite], hint=hint)
    return passed(name)


def check_wall_value(fn) -> bool:
    """fn(step_reward, gamma) -> the value of a policy that never terminates, earning step_reward a step."""
    name = "value of bumping into a wall"
    hint = (
        "the rewards r, r, r, ... discounted: sum_k gamma^k r = r / (1 - gamma) for gamma < 1. With gamma "
        "= 1 the sum is 0 when r = 0 and -inf when r < 0: why dp.solve_linear asks for proper termination."
    )
    for r, gamma in [
        (-1.0, 0.9),
        (-0.04, 0.99),
        (2.0, 0.5),
        (0.0, 0.9),
        (-1.0, 0.0),
        (0.0, 1.0),
        (-0.5, 1.0),
    ]:
        got = call_safely(name, fn, r, gamma)
        if not isinstance(got, (int, float, np.floating)) or isinstance(got, bool):
            raise ExerciseError(
                f"{name}: expected a number (float('-inf') allowed), got {got!r}. Hint: {hint}"
            )
        want = reference_wall_value(r, gamma)
        if np.isinf(want) or np.isinf(got):
            if got != want:
                raise ExerciseError(
                    f"{name}: for r={r}, gamma={gamma} expected {want}, got {got}. Hint: {hint}"
                )
            continue
        assert_close(f"{name} (r={r}, gamma={gamma})", got, want, hint=hint)
    return passed(name)


EXERCISES = (
    Exercise(1, "A return by hand", check_return_by_hand, reference_return_by_hand, sum(RETURN_REWARDS),
             value=True),
    Exercise(2, "All returns of an episode", check_discounted_returns, reference_discounted_returns,
             lambda rewards, gamma: np.cumsum(rewards[::-1])[::-1]),
    Exercise(3, "q_from_v", check_q_from_v, reference_q_from_v, lambda P, R, V, gamma: R),
    Exercise(4, "The Bellman optimality backup", check_bellman_backup, reference_bellman_backup,
             lambda P, R, V, gamma: (R + gamma * P @ V).mean(axis=1)),
    Exercise(5, "Advantages", check_advantage, reference_advantage,
             lambda P, R, pi, gamma: dp.q_from_v(P, R, dp.solve_linear(P, R, pi, gamma), gamma)),
    Exercise(6, "The UCB index", check_ucb_index, reference_ucb_index,
             lambda v, n, t, c: v + c * np.sqrt(np.log(t) / np.maximum(n, 1))),
    Exercise(7, "A policy that never ends", check_wall_value, reference_wall_value,
             lambda r, gamma: r / (1 - gamma) if gamma < 1 else r, kind="open"),
)  # fmt: skip
