"""Multi-armed bandits: the smallest reinforcement-learning problem, one state and k actions.

Survey section 2.1 (arXiv 2412.10400), basic definitions: an agent picks an action, the environment returns a
reward, and the agent must balance exploring arms it knows little about against exploiting the best so far.

Environments: `BernoulliBandit` (arm a pays 1 with probability p_a) and `GaussianBandit` (arm a pays
N(mu_a, sigma^2)). Agents, each with `select()` and `update(action, reward)`:
- `EpsilonGreedy`: sample averages, a random arm with probability epsilon (Sutton & Barto, 2nd ed., 2.2-2.4).
- `UCB1`: optimism in the face of uncertainty, index Q_a + c sqrt(ln t / N_a) (Auer, Cesa-Bianchi and Fischer,
  "Finite-time analysis of the multiarmed bandit problem", Machine Learning 2002; c = sqrt(2) is their UCB1).
- `GradientBandit`: a softmax policy over preferences H trained by stochastic gradient ascent on the expected
  reward, with the average reward as baseline (Sutton & Barto ch. 2.8): the one-state ancestor of REINFORCE
  and of every policy-gradient method in the later chapters.
`run_bandit` plays one agent for T steps and records rewards, arms and cumulative regret; `compare_agents`
averages regret over seeds. Thompson sampling (arXiv 1707.02038) is a natural fourth agent, left as reading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rlsurvey.progress import tqdm

__all__ = [
    "BernoulliBandit",
    "GaussianBandit",
    "EpsilonGreedy",
    "UCB1",
    "GradientBandit",
    "BanditRun",
    "ucb_index",
    "softmax",
    "run_bandit",
    "compare_agents",
]


def _check_action(action, k: int) -> int:
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
        raise TypeError(f"action must be an int in [0, {k}), got {action!r} of type {type(action).__name__}")
    if not 0 <= action < k:
        raise ValueError(f"action must be an int in [0, {k}), got {action}")
    return int(action)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_vector(name: str, values) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"{name} must be a 1-D sequence of at least 2 arms, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {x.tolist()}")
    return x


class _Bandit:
    """Shared by the environments: k arms with known true means, so regret can be measured exactly."""

    means: np.ndarray

    @property
    def k(self) -> int:
        return int(self.means.size)

    @property
    def optimal_arm(self) -> int:
        return int(np.argmax(self.means))

    @property
    def optimal_mean(self) -> float:
        return float(self.means.max())

    def gaps(self) -> np.ndarray:
        """Delta_a = mu* - mu_a, the expected reward lost by pulling arm a instead of the best one."""
        return self.optimal_mean - self.means

    def pull(self, action: int) -> float:
        return float(self._sample(_check_action(action, self.k)))

    def _sample(self, action: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError


class BernoulliBandit(_Bandit):
    """Arm a pays 1 with probability `probs[a]` and 0 otherwise.

    probs: (k,) success probabilities in [0, 1]; seed: for the reward generator.
    """

    def __init__(self, probs: Sequence[float], seed: int | None = None):
        p = _as_vector("probs", probs)
        if np.any((p < 0) | (p > 1)):
            raise ValueError(f"probs must lie in [0, 1] (they are probabilities), got {p.tolist()}")
        self.means = p
        self.rng = np.random.default_rng(seed)

    def _sample(self, action: int) -> float:
        return float(self.rng.random() < self.means[action])


class GaussianBandit(_Bandit):
    """Arm a pays a draw from N(means[a], std^2), the testbed of Sutton & Barto ch. 2.3.

    means: (k,) true mean rewards; std: reward noise (> 0); seed: for the reward generator.
    """

    def __init__(self, means: Sequence[float], std: float = 1.0, seed: int | None = None):
        self.means = _as_vector("means", means)
        if not (np.isfinite(std) and std > 0):
            raise ValueError(f"std must be a positive number, got {std!r}")
        self.std = float(std)
        self.rng = np.random.default_rng(seed)

    def _sample(self, action: int) -> float:
        return float(self.rng.normal(self.means[action], self.std))


class _SampleAverageAgent:
    """Keeps N_a (pull counts) and Q_a (running mean reward) per arm.

    The incremental mean Q <- Q + (R - Q) / N (Sutton & Barto eq. 2.3) avoids storing every reward.
    """

    def __init__(self, k: int, seed: int | None = None):
        self.k = _check_positive_int("k", k)
        self.counts = np.zeros(self.k, dtype=np.int64)
        self.values = np.zeros(self.k)
        self.t = 0
        self.rng = np.random.default_rng(seed)

    def update(self, action: int, reward: float) -> None:
        a = _check_action(action, self.k)
        self.t += 1
        self.counts[a] += 1
        self.values[a] += (reward - self.values[a]) / self.counts[a]

    def _argmax(self, x: np.ndarray) -> int:
        # Random tie-breaking: with all-zero estimates at the start, np.argmax would always pick arm 0.
        ties = x == x.max()
        if ties.sum() == 1:
            return int(ties.argmax())
        return int(self.rng.choice(np.flatnonzero(ties)))


class EpsilonGreedy(_SampleAverageAgent):
    """With probability `epsilon` a uniformly random arm, otherwise argmax_a Q_a (ties broken at random).

    k: number of arms; epsilon: exploration rate in [0, 1]; seed: for exploration and ties.
    """

    def __init__(self, k: int, epsilon: float = 0.1, seed: int | None = None):
        super().__init__(k, seed)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def select(self) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.k))
        return self._argmax(self.values)


def ucb_index(values: np.ndarray, counts: np.ndarray, t: int, c: float = np.sqrt(2.0)) -> np.ndarray:
    """The UCB1 upper confidence bound of every arm.

    U_a = Q_a + c * sqrt(ln t / N_a), and U_a = +inf for an arm never pulled (N_a = 0), so each arm is
    tried once first. With c = sqrt(2) this is UCB1 of Auer et al. (2002); Sutton & Barto's eq. 2.10 leaves c
    free.

    | name   | shape | meaning                          |
    |--------|-------|----------------------------------|
    | values | (k,)  | Q_a, mean reward observed per arm |
    | counts | (k,)  | N_a, pulls per arm                |
    | t      | int   | total pulls so far (>= 1)         |
    | return | (k,)  | U_a                               |
    """
    values = np.asarray(values, dtype=float)
    counts = np.asarray(counts)
    if values.shape != counts.shape or values.ndim != 1:
        raise ValueError(
            f"values and counts must be 1-D of equal shape, got {values.shape} and {counts.shape}"
        )
    if t < 1:
        raise ValueError(f"t must be at least 1, got {t}")
    with np.errstate(divide="ignore"):
        bonus = c * np.sqrt(np.log(t) / counts)
    return np.where(counts == 0, np.inf, values + bonus)


class UCB1(_SampleAverageAgent):
    """Pull argmax_a ucb_index(Q, N, t, c), after trying every arm once.

    k: number of arms; c: width of the confidence bonus (sqrt(2) is UCB1); seed: for ties.
    """

    def __init__(self, k: int, c: float = np.sqrt(2.0), seed: int | None = None):
        super().__init__(k, seed)
        if not (np.isfinite(c) and c >= 0):
            raise ValueError(f"c must be a non-negative number, got {c!r}")
        self.c = float(c)

    def select(self) -> int:
        if self.counts.min() == 0:  # try every arm once first (its index is +inf)
            return int(np.argmin(self.counts))
        bonus = self.c * np.sqrt(np.log(self.t) / self.counts)  # ucb_index without its checks, for speed
        return self._argmax(self.values + bonus)


def softmax(h: np.ndarray) -> np.ndarray:
    """pi_a = exp(h_a) / sum_b exp(h_b) over the last axis (shifted by the max, so it never overflows).

    h: (..., k) preferences; returns (..., k) probabilities summing to one over the last axis.
    """
    h = np.asarray(h, dtype=float)
    z = np.exp(h - h.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class GradientBandit:
    """A softmax policy pi = softmax(H) over arm preferences H, trained by stochastic gradient ascent.

    After pulling A and receiving R (Sutton & Barto eq. 2.12):
        H_a <- H_a + alpha (R - baseline) (1[a = A] - pi_a)   for every arm a,
    an unbiased estimate of alpha * d E[R] / d H_a. The baseline is the running mean reward (it changes no
    expectation but lowers the variance); `baseline=False` uses 0.

    k: number of arms; step_size: alpha > 0; baseline: subtract the mean reward; seed: for sampling arms.
    """

    def __init__(self, k: int, step_size: float = 0.1, baseline: bool = True, seed: int | None = None):
        self.k = _check_positive_int("k", k)
        if not (np.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a positive number, got {step_size!r}")
        self.step_size = float(step_size)
        self.baseline = bool(baseline)
        self.preferences = np.zeros(self.k)
        self.mean_reward = 0.0
        self.t = 0
        self.rng = np.random.default_rng(seed)

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.preferences)

    def select(self) -> int:
        # Inverse-CDF sampling; the min() guards against the last cumulative sum rounding below 1.
        return min(int(np.searchsorted(np.cumsum(self.probs), self.rng.random(), side="right")), self.k - 1)

    def update(self, action: int, reward: float) -> None:
        a = _check_action(action, self.k)
        self.t += 1
        # The baseline is the mean of the rewards *before* this one, so it does not depend on R itself.
        b = self.mean_reward if self.baseline else 0.0
        grad = -self.probs  # d log pi_A / d H = 1[a = A] - pi
        grad[a] += 1.0
        self.preferences += self.step_size * (reward - b) * grad
        self.mean_reward += (reward - self.mean_reward) / self.t


@dataclass
class BanditRun:
    rewards: np.ndarray  # (T,) reward received at each step
    actions: np.ndarray  # (T,) arm pulled at each step
    regret: np.ndarray  # (T,) cumulative pseudo-regret sum_{s<=t} (mu* - mu_{A_s})
    optimal: np.ndarray  # (T,) bool, whether the optimal arm was pulled


def run_bandit(bandit: _Bandit, agent, steps: int, progress: bool = False) -> BanditRun:
    """Let `agent` play `bandit` for `steps` pulls.

    Regret is the pseudo-regret L_T = sum_{t=1}^T (mu* - mu_{A_t}): it charges each pull the gap of the arm
    chosen, using the true means rather than the noisy rewards, so its curves are smooth and its expectation
    is the usual expected regret.

    | name   | shape  | meaning                                   |
    |--------|--------|-------------------------------------------|
    | return | fields | rewards, actions, regret, optimal, each (T,) |
    """
    steps = _check_positive_int("steps", steps)
    if getattr(agent, "k", bandit.k) != bandit.k:
        raise ValueError(f"agent has k={agent.k} arms but the bandit has k={bandit.k}")
    rewards = np.empty(steps)
    actions = np.empty(steps, dtype=np.int64)
    for t in tqdm(range(steps), desc="bandit", disable=not progress, leave=False):
        a = agent.select()
        r = bandit.pull(a)
        agent.update(a, r)
        actions[t], rewards[t] = a, r
    gaps = bandit.gaps()
    return BanditRun(
        rewards=rewards,
        actions=actions,
        regret=np.cumsum(gaps[actions]),
        optimal=actions == bandit.optimal_arm,
    )


def _agent_seed(seed: int) -> int:
    # The agent must not share the bandit's seed: with identical streams the uniform draw that picks an arm
    # is the one that decides its reward, which correlates action and reward and ruins the comparison.
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def compare_agents(
    make_bandit: Callable[[int], _Bandit],
    make_agents: dict[str, Callable[[int, int], object]],
    steps: int,
    seeds: Sequence[int],
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Cumulative regret of several agents on fresh bandits, one run per seed.

    make_bandit(seed) builds the bandit; make_agents[name](k, agent_seed) builds an agent, with agent_seed
    derived from seed but independent of it. For one seed every agent
    plays a fresh copy of the same bandit (same true means, same reward generator seed), so the differences
    come from the agents rather than from the problems they faced.

    | name   | shape            | meaning                                 |
    |--------|------------------|-----------------------------------------|
    | return | {name: (S, T)}   | cumulative regret, one row per seed     |
    """
    steps = _check_positive_int("steps", steps)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got an empty sequence")
    out = {name: np.empty((len(seeds), steps)) for name in make_agents}
    total = len(seeds) * len(make_agents)
    with tqdm(total=total, desc="runs", disable=not progress) as bar:
        for i, seed in enumerate(seeds):
            for name, make in make_agents.items():
                bandit = make_bandit(seed)
                agent = make(bandit.k, _agent_seed(seed))
                out[name][i] = run_bandit(bandit, agent, steps).regret
                bar.update()
    return out
