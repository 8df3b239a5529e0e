"""Discounted returns, reward-to-go and generalized advantage estimation for time-major RL rollouts.

Survey section 2.1 (arXiv 2412.10400): the return and the advantage are what every policy-gradient method,
from REINFORCE to the PPO inside RLHF, multiplies the score function by.
Papers: GAE, Schulman et al. 2015 (arXiv 1506.02438); PPO, Schulman et al. 2017 (arXiv 1707.06347).

Layout. Rollouts here are time-major, as a vectorized environment produces them: ``rewards[t, i]`` is the
reward of environment ``i`` at step ``t``. ``dones[t, i] = 1`` means the episode of environment ``i`` ended
*with* step ``t`` (nothing after ``t`` belongs to it), and ``bootstrap_value[i]`` is the critic's value of
the state reached after the last step, used when that last step did not end an episode. Every function also
accepts 1-D tensors (one environment). An episode cut by a time limit is not a terminal state; fold
``gamma * V(final_obs)`` into that step's reward and mark it done (``rlsurvey.rl.ppo`` does this).

The LLM chapters use a different, batch-major ``[B, T]`` masked GAE (``rlsurvey.kernels.gae``); the names
here (``discounted_returns``, ``gae_advantages``) are kept distinct on purpose.
"""

from __future__ import annotations

import torch

__all__ = [
    "reward_to_go",
    "discounted_returns",
    "td_residuals",
    "gae_advantages",
    "gae_advantages_reference",
]


def _check_discount(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__} {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape [T] or [T, N], got {tuple(x.shape)}")
    return x


def _check_rollout(rewards, dones, values=None, bootstrap_value=None):
    """Validate shapes; return (rewards, not_done, values, bootstrap) as float tensors of rewards' dtype."""
    rewards = _check_tensor("rewards", rewards)
    if not rewards.is_floating_point():
        raise TypeError(f"rewards must be a floating-point tensor, got dtype {rewards.dtype}")
    if dones is None:
        dones = torch.zeros_like(rewards)
    dones = _check_tensor("dones", dones)
    if dones.shape != rewards.shape:
        raise ValueError(
            f"dones must have the shape of rewards {tuple(rewards.shape)}, got {tuple(dones.shape)}"
        )
    not_done = 1.0 - dones.to(rewards.dtype)
    if values is not None:
        values = _check_tensor("values", values)
        if values.shape != rewards.shape:
            raise ValueError(
                f"values must have the shape of rewards {tuple(rewards.shape)}, got {tuple(values.shape)}"
            )
        values = values.to(rewards.dtype)
    tail = rewards.shape[1:]
    if bootstrap_value is None:
        bootstrap = rewards.new_zeros(tail)
    else:
        bootstrap = torch.as_tensor(bootstrap_value, dtype=rewards.dtype, device=rewards.device)
        if bootstrap.dim() == 0:
            bootstrap = bootstrap.expand(tail)
        if bootstrap.shape != tail:
            raise ValueError(
                f"bootstrap_value must be a scalar or have shape {tuple(tail)} (rewards are "
                f"{tuple(rewards.shape)}), got {tuple(bootstrap.shape)}"
            )
    return rewards, not_done, values, bootstrap


def discounted_returns(
    rewards: torch.Tensor,
    dones: torch.Tensor | None = None,
    gamma: float = 0.99,
    bootstrap_value: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Discounted return from every step, restarted at episode boundaries.

    Equation: G_t = r_t + gamma * (1 - d_t) * G_{t+1}, with G_T = bootstrap_value (0 if not given).

    | argument        | shape            | meaning                                              |
    |-----------------|------------------|------------------------------------------------------|
    | rewards         | [T] or [T, N]    | reward of step t (in environment i)                  |
    | dones           | same as rewards  | 1 where the episode ended with step t; None = never  |
    | bootstrap_value | scalar or [N]    | V(s_T) of the state after the last step              |
    | returns         | same as rewards  | G_t                                                  |
    """
    gamma = _check_discount("gamma", gamma)
    rewards, not_done, _, running = _check_rollout(rewards, dones, None, bootstrap_value)
    out = torch.empty_like(rewards)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * not_done[t] * running
        out[t] = running
    return out


def reward_to_go(rewards: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go of one complete episode: G_t = sum_{k >= t} gamma^(k - t) r_k.

    | argument | shape | meaning                        |
    |----------|-------|--------------------------------|
    | rewards  | [T]   | the episode's rewards in order |
    | returns  | [T]   | G_t                            |
    """
    rewards = _check_tensor("rewards", rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be one episode of shape [T], got {tuple(rewards.shape)}")
    return discounted_returns(rewards, None, gamma, None)


def td_residuals(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor | None,
    bootstrap_value: torch.Tensor | float | None,
    gamma: float,
) -> torch.Tensor:
    """One-step TD errors, the building block of GAE (eq. 9 of arXiv 1506.02438).

    Equation: delta_t = r_t + gamma * (1 - d_t) * V(s_{t+1}) - V(s_t), with V(s_T) = bootstrap_value.

    Shapes as in `gae_advantages`; returns delta with the shape of rewards.
    """
    gamma = _check_discount("gamma", gamma)
    _check_tensor("values", values)
    rewards, not_done, values, bootstrap = _check_rollout(rewards, dones, values, bootstrap_value)
    next_values = torch.cat([values[1:], bootstrap.unsqueeze(0)], dim=0)
    return rewards + gamma * not_done * next_values - values


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor | None = None,
    bootstrap_value: torch.Tensor | float | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation, vectorized over environments (eq. 16 of arXiv 1506.02438).

    Equation: A_t = sum_{l >= 0} (gamma * lam)^l delta_{t+l}, the sum cut at the end of the episode,
    computed backwards as A_t = delta_t + gamma * lam * (1 - d_t) * A_{t+1}. The value targets are
    returns = A + V (the lambda-return). lam = 0 gives the one-step TD error, lam = 1 the discounted
    return minus V.

    | argument        | shape           | meaning                                            |
    |-----------------|-----------------|----------------------------------------------------|
    | rewards         | [T] or [T, N]   | reward of step t                                   |
    | values          | same as rewards | V(s_t) from the critic                             |
    | dones           | same as rewards | 1 where the episode ended with step t; None = never |
    | bootstrap_value | scalar or [N]   | V(s_T) after the last step (ignored where d_T-1=1)  |
    | advantages      | same as rewards | A_t                                                |
    | returns         | same as rewards | A_t + V(s_t), the critic's regression target       |
    """
    lam = _check_discount("lam", lam)
    deltas = td_residuals(rewards, values, dones, bootstrap_value, gamma)
    _, not_done, values, _ = _check_rollout(rewards, dones, values, bootstrap_value)
    decay = gamma * lam * not_done  # (T, N): how much of A_{t+1} flows back into A_t
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    # The recursion is sequential in time only; each step is one vector op over all environments.
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    return advantages, advantages + values


def gae_advantages_reference(rewards, values, dones, bootstrap_value, gamma: float, lam: float):
    """The reference twin of `gae_advantages`: plain Python floats, one environment column at a time.

    Same arguments and equation as `gae_advantages`; returns (advantages, returns) as float64 tensors.
    Slow on purpose: it is written to be read and to check the vectorized version against.
    """
    gamma = _check_discount("gamma", gamma)
    lam = _check_discount("lam", lam)
    _check_tensor("values", values)
    rewards, not_done, values, bootstrap = _check_rollout(rewards, dones, values, bootstrap_value)
    squeeze = rewards.dim() == 1
    r = rewards.reshape(rewards.shape[0], -1).tolist()
    nd = not_done.reshape(rewards.shape[0], -1).tolist()
    v = values.reshape(rewards.shape[0], -1).tolist()
    boot = bootstrap.reshape(-1).tolist()
    T, N = len(r), len(boot)
    adv = [[0.0] * N for _ in range(T)]
    for i in range(N):
        next_adv, next_value = 0.0, boot[i]
        for t in reversed(range(T)):
            delta = r[t][i] + gamma * nd[t][i] * next_value - v[t][i]
            next_adv = delta + gamma * lam * nd[t][i] * next_adv
            adv[t][i] = next_adv
            next_value = v[t][i]
    a = torch.tensor(adv, dtype=torch.float64)
    ret = a + torch.tensor(v, dtype=torch.float64)
    if squeeze:
        a, ret = a.squeeze(1), ret.squeeze(1)
    return a, ret
