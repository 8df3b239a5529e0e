"""Dynamic programming for finite MDPs: evaluate a policy, improve it, and solve the Bellman equations.

Survey section 2.1 (arXiv 2412.10400), the general pipeline of RL: interact, evaluate, improve. With the model
known, "evaluate" and "improve" can be done exactly, which is what every sampled method later in the course
approximates (Sutton & Barto, 2nd ed., ch. 4; Bellman 1957; Howard 1960 for policy iteration).

Arrays (NumPy, float64): P (S, A, S) with P[s, a, s'] = Pr(s' | s, a); R (S, A) expected reward; V (S,);
Q (S, A); a policy is an (S, A) matrix of action probabilities whose rows sum to one.

- `solve_linear`: V^pi exactly from the linear Bellman expectation system (I - gamma P_pi) V = R_pi; the
  reference every iterative method is checked against.
- `policy_evaluation`: the same V^pi by repeated Bellman expectation backups (S&B eq. 4.5).
- `q_from_v`, `greedy_policy`: one step of look-ahead, Q = R + gamma P V (S&B eq. 4.6), and its argmax.
- `policy_iteration` (S&B ch. 4.3) and `value_iteration` (S&B eq. 4.10): the optimal V* and a greedy policy.

Discount: gamma in [0, 1]. With gamma = 1 values are finite only if the process stops: absorbing states
(P[s, a, s] = 1 and R[s, a] = 0 for every a) must be reached with probability one, which is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DPResult",
    "check_mdp",
    "check_policy",
    "uniform_policy",
    "absorbing_states",
    "induced_chain",
    "is_proper",
    "solve_linear",
    "bellman_expectation_backup",
    "bellman_optimality_backup",
    "policy_evaluation",
    "q_from_v",
    "greedy_policy",
    "policy_iteration",
    "value_iteration",
]

_ATOL = 1e-8  # tolerance for "sums to one" on probabilities given as floats


@dataclass
class DPResult:
    values: np.ndarray  # (S,) the state values found
    policy: np.ndarray  # (S, A) the evaluated policy, or the greedy one for control methods
    iterations: int  # sweeps (evaluation, value iteration) or improvement steps (policy iteration)
    residuals: list = field(default_factory=list)  # max |V_{k+1} - V_k| after each sweep or step


def check_mdp(P, R, gamma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate and return (P, R, gamma) as float arrays; raise ValueError naming what is wrong.

    | name   | shape     | requirement                                  |
    |--------|-----------|----------------------------------------------|
    | P      | (S, A, S) | finite, non-negative, each P[s, a] sums to 1 |
    | R      | (S, A)    | finite                                       |
    | gamma  | float     | in [0, 1]                                    |
    """
    P = np.asarray(P, dtype=float)
    R = np.asarray(R, dtype=float)
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape (S, A, S), got {P.shape}")
    if R.shape != P.shape[:2]:
        raise ValueError(f"R must have shape (S, A) = {P.shape[:2]} to match P, got {R.shape}")
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(R))):
        raise ValueError("P and R must be finite")
    if np.any(P < 0) or not np.allclose(P.sum(axis=2), 1.0, atol=_ATOL):
        worst = np.abs(P.sum(axis=2) - 1).max()
        raise ValueError(f"P[s, a] must be probabilities over s' that sum to one; off by up to {worst:.3g}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)) or not 0 <= gamma <= 1:
        raise ValueError(f"gamma (the discount) must be a number in [0, 1], got {gamma!r}")
    return P, R, float(gamma)


def check_policy(policy, n_states: int, n_actions: int) -> np.ndarray:
    """Validate a stochastic policy matrix: shape (S, A), non-negative rows that sum to one; return it."""
    pi = np.asarray(policy, dtype=float)
    if pi.shape != (n_states, n_actions):
        raise ValueError(f"policy must have shape (S, A) = {(n_states, n_actions)}, got {pi.shape}")
    if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=_ATOL):
        sums = pi.sum(axis=1)
        raise ValueError(
            "policy rows must be probabilities that sum to one, got row sums in "
            f"[{sums.min():.4g}, {sums.max():.4g}]" + (" and negative entries" if np.any(pi < 0) else "")
        )
    return pi


def uniform_policy(n_states: int, n_actions: int) -> np.ndarray:
    """pi(a | s) = 1 / A for every state, as an (S, A) matrix: the usual starting point."""
    return np.full((n_states, n_actions), 1.0 / n_actions)


def absorbing_states(P, R) -> np.ndarray:
    """(S,) bool mask of states that every action keeps in place with zero reward (the episode ends there).

    P (S, A, S) and R (S, A) as in `check_mdp`; a state s is absorbing iff P[s, a, s] = 1 and R[s, a] = 0
    for every a.
    """
    P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
    stay = np.diagonal(P, axis1=0, axis2=2).T  # (S, A): P[s, a, s]
    return np.all(np.isclose(stay, 1.0), axis=1) & np.all(R == 0, axis=1)


def induced_chain(P, R, policy) -> tuple[np.ndarray, np.ndarray]:
    """The Markov reward process a policy induces: P_pi[s, s'] = sum_a pi(a|s) P[s, a, s'], R_pi = sum_a pi R.

    | name   | shape            | meaning            |
    |--------|------------------|--------------------|
    | return | ((S, S), (S,))   | (P_pi, R_pi)       |
    """
    return np.einsum("sa,sat->st", policy, P), np.einsum("sa,sa->s", policy, R)


def is_proper(P, R, policy) -> bool:
    """True if, following `policy`, an absorbing state is reached with probability one from every state.

    In a finite chain this holds exactly when an absorbing state is reachable (by a path of positive
    probability) from every state, which a backward graph search decides. P (S, A, S), R (S, A), policy
    (S, A); returns a bool.
    """
    P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
    P_pi, _ = induced_chain(P, R, policy)
    reached = absorbing_states(P, R).copy()
    while True:
        grown = reached | (P_pi[:, reached].sum(axis=1) > 0)
        if grown.sum() == reached.sum():
            return bool(reached.all())
        reached = grown


def _require_termination(P, R, policy, gamma: float, what: str) -> None:
    if gamma == 1.0 and not is_proper(P, R, policy):
        raise ValueError(
            f"gamma=1 needs {what} to reach an absorbing state with probability one from every state "
            "(otherwise values can be infinite); use gamma < 1 or a policy that terminates"
        )


def solve_linear(P, R, policy, gamma: float) -> np.ndarray:
    """V^pi as the exact solution of the Bellman expectation equation (S&B eq. 4.4), a linear system.

    V = R_pi + gamma P_pi V  <=>  (I - gamma P_pi) V = R_pi. With gamma = 1 the absorbing states are pinned
    to V = 0 and the system is solved on the others (invertible because the policy terminates).

    | name   | shape     | meaning                          |
    |--------|-----------|----------------------------------|
    | P      | (S, A, S) | transition probabilities         |
    | R      | (S, A)    | expected rewards                 |
    | policy | (S, A)    | action probabilities             |
    | return | (S,)      | V^pi                             |
    """
    P, R, gamma = check_mdp(P, R, gamma)
    pi = check_policy(policy, *R.shape)
    _require_termination(P, R, pi, gamma, "the policy")
    P_pi, R_pi = induced_chain(P, R, pi)
    live = ~absorbing_states(P, R) if gamma == 1.0 else np.ones(len(R), dtype=bool)
    V = np.zeros(len(R))
    A = np.eye(live.sum()) - gamma * P_pi[np.ix_(live, live)]
    V[live] = np.linalg.solve(A, R_pi[live])
    return V


def bellman_expectation_backup(P, R, policy, V, gamma: float) -> np.ndarray:
    """One synchronous sweep of the Bellman expectation operator (S&B eq. 4.5), without input checks.

    (T^pi V)(s) = sum_a pi(a|s) [R(s, a) + gamma sum_s' P(s' | s, a) V(s')].

    | name   | shape     | meaning                  |
    |--------|-----------|--------------------------|
    | P      | (S, A, S) | transition probabilities |
    | R      | (S, A)    | expected rewards         |
    | policy | (S, A)    | action probabilities     |
    | V      | (S,)      | current values           |
    | return | (S,)      | T^pi V                   |
    """
    return np.einsum("sa,sa->s", policy, R + gamma * P @ V)


def bellman_optimality_backup(P, R, V, gamma: float) -> np.ndarray:
    """One synchronous sweep of the Bellman optimality operator (S&B eq. 4.10), without input checks.

    (T* V)(s) = max_a [R(s, a) + gamma sum_s' P(s' | s, a) V(s')].

    | name   | shape     | meaning                  |
    |--------|-----------|--------------------------|
    | P      | (S, A, S) | transition probabilities |
    | R      | (S, A)    | expected rewards         |
    | V      | (S,)      | current values           |
    | return | (S,)      | T* V                     |
    """
    return (R + gamma * P @ V).max(axis=1)


def q_from_v(P, R, V, gamma: float) -> np.ndarray:
    """Action values from state values by one step of look-ahead (S&B eq. 4.6).

    Q(s, a) = R(s, a) + gamma sum_s' P(s' | s, a) V(s').

    | name   | shape     | meaning          |
    |--------|-----------|------------------|
    | V      | (S,)      | state values     |
    | return | (S, A)    | Q                |
    """
    P, R, gamma = check_mdp(P, R, gamma)
    V = np.asarray(V, dtype=float)
    if V.shape != (P.shape[0],):
        raise ValueError(f"V must have shape (S,) = ({P.shape[0]},), got {V.shape}")
    return R + gamma * P @ V


def greedy_policy(Q, tol: float = 1e-9) -> np.ndarray:
    """The deterministic policy pi(s) = argmax_a Q(s, a), as an (S, A) one-hot matrix.

    Ties within `tol` go to the lowest action index, so that rounding noise in Q cannot flip the policy
    back and forth (which would stop policy iteration from terminating).

    | name   | shape  | meaning                          |
    |--------|--------|----------------------------------|
    | Q      | (S, A) | action values                    |
    | return | (S, A) | one-hot rows, 1 at argmax_a Q    |
    """
    Q = np.asarray(Q, dtype=float)
    if Q.ndim != 2:
        raise ValueError(f"Q must have shape (S, A), got {Q.shape}")
    best = np.argmax(Q >= Q.max(axis=1, keepdims=True) - tol, axis=1)  # first action within tol of the max
    pi = np.zeros_like(Q)
    pi[np.arange(len(Q)), best] = 1.0
    return pi


def policy_evaluation(
    P, R, policy, gamma: float, tol: float = 1e-10, max_iter: int = 100_000, V0=None
) -> DPResult:
    """Iterative policy evaluation: V_{k+1} = T^pi V_k from V_0 = 0 until max |V_{k+1} - V_k| < tol.

    Converges to V^pi for gamma < 1 (T^pi is a gamma-contraction in the max norm) and for gamma = 1 when the
    policy terminates. Raises RuntimeError if `max_iter` sweeps are not enough.

    | name   | shape     | meaning                                                   |
    |--------|-----------|-----------------------------------------------------------|
    | P, R   | (S, A, S), (S, A) | the model                                         |
    | policy | (S, A)    | action probabilities                                      |
    | V0     | (S,)      | starting values (default zeros)                           |
    | return | DPResult  | values (S,) = V^pi, policy, sweeps, residual per sweep    |
    """
    P, R, gamma = check_mdp(P, R, gamma)
    pi = check_policy(policy, *R.shape)
    _require_termination(P, R, pi, gamma, "the policy")
    V = np.zeros(len(R)) if V0 is None else np.array(V0, dtype=float)
    if V.shape != (len(R),):
        raise ValueError(f"V0 must have shape (S,) = ({len(R)},), got {V.shape}")
    residuals = []
    for k in range(1, max_iter + 1):
        V_new = bellman_expectation_backup(P, R, pi, V, gamma)
        residuals.append(float(np.abs(V_new - V).max()))
        V = V_new
        if residuals[-1] < tol:
            return DPResult(V, pi, k, residuals)
    raise RuntimeError(f"policy evaluation did not converge to tol={tol} within max_iter={max_iter} sweeps")


def policy_iteration(P, R, gamma: float, policy=None, tol: float = 1e-10, max_iter: int = 1_000) -> DPResult:
    """Alternate exact-enough evaluation and greedy improvement until the policy stops changing (S&B 4.3).

    Each improvement step is at least as good in every state (the policy improvement theorem), and there are
    finitely many deterministic policies, so it stops, at an optimal policy. With gamma = 1 the starting
    policy (uniform by default) must terminate, and so must every greedy policy on the way: a negative step
    reward guarantees it, whereas with zero step cost "stay in place" can tie with the best move and loop.

    | name   | shape     | meaning                                                        |
    |--------|-----------|----------------------------------------------------------------|
    | P, R   | (S, A, S), (S, A) | the model                                              |
    | policy | (S, A)    | starting policy (default uniform)                              |
    | return | DPResult  | values (S,) = V*, policy (S, A) greedy, improvement steps      |
    """
    P, R, gamma = check_mdp(P, R, gamma)
    pi = uniform_policy(*R.shape) if policy is None else check_policy(policy, *R.shape)
    V = policy_evaluation(P, R, pi, gamma, tol=tol).values
    residuals = []
    for k in range(1, max_iter + 1):
        new_pi = greedy_policy(R + gamma * P @ V)
        new_V = policy_evaluation(P, R, new_pi, gamma, tol=tol, V0=V).values
        residuals.append(float(np.abs(new_V - V).max()))
        stable = np.array_equal(new_pi, pi)
        pi, V = new_pi, new_V
        if stable:
            return DPResult(V, pi, k, residuals)
    raise RuntimeError(f"policy iteration did not stabilise within max_iter={max_iter} improvement steps")


def value_iteration(P, R, gamma: float, tol: float = 1e-10, max_iter: int = 100_000) -> DPResult:
    """V_{k+1} = T* V_k from V_0 = 0 until max |V_{k+1} - V_k| < tol; returns V and its greedy policy.

    T* is a gamma-contraction for gamma < 1, so V_k -> V* geometrically; for gamma = 1 it converges when
    every state can reach an absorbing one (checked with the uniform policy, which tries every action).

    | name   | shape     | meaning                                                        |
    |--------|-----------|----------------------------------------------------------------|
    | P, R   | (S, A, S), (S, A) | the model                                              |
    | return | DPResult  | values (S,) ~ V*, policy (S, A) greedy in V, sweeps, residuals |
    """
    P, R, gamma = check_mdp(P, R, gamma)
    _require_termination(P, R, uniform_policy(*R.shape), gamma, "some policy")
    V = np.zeros(len(R))
    residuals = []
    for k in range(1, max_iter + 1):
        V_new = bellman_optimality_backup(P, R, V, gamma)
        residuals.append(float(np.abs(V_new - V).max()))
        V = V_new
        if residuals[-1] < tol:
            return DPResult(V, greedy_policy(R + gamma * P @ V), k, residuals)
    raise RuntimeError(f"value iteration did not converge to tol={tol} within max_iter={max_iter} sweeps")
