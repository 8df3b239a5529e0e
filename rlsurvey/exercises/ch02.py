"""Checks for the exercises of chapter 02 (policy gradients): reward-to-go, the REINFORCE surrogate with a
baseline, and GAE. Papers: GAE, arXiv 1506.02438; survey arXiv 2412.10400, section 2.1.

1. `check_reward_to_go(fn)`: fn(rewards [T], gamma) -> G [T] for one complete episode.
2. `check_reinforce_loss(fn)`: fn(logp [S], rtg [S], baseline [S], num_episodes) -> scalar surrogate whose
   gradient is the REINFORCE estimate; no gradient may reach the baseline.
3. `check_gae(fn)`: fn(rewards [T], values [T], dones [T], bootstrap_value, gamma, lam) -> advantages [T].
"""

from __future__ import annotations

import torch

from rlsurvey.exercises import ExerciseError, assert_close, call_safely, passed
from rlsurvey.rl.returns import gae_advantages_reference

__all__ = [
    "check_gae",
    "check_reinforce_loss",
    "check_reward_to_go",
    "reference_gae",
    "reference_reinforce_loss",
    "reference_reward_to_go",
]


def reference_reward_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma G_{t+1}, computed backwards from G_T = 0."""
    out, running = torch.empty_like(rewards), 0.0
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def reference_reinforce_loss(logp, rtg, baseline, num_episodes: int) -> torch.Tensor:
    """-(1/M) sum_t log pi(a_t|s_t) (G_t - b(s_t)), the baseline held constant."""
    return -(logp * (rtg - baseline.detach())).sum() / num_episodes


def reference_gae(rewards, values, dones, bootstrap_value, gamma, lam) -> torch.Tensor:
    """GAE for one environment, by the backward recursion (eq. 16 of arXiv 1506.02438)."""
    adv, _ = gae_advantages_reference(rewards, values, dones, bootstrap_value, gamma, lam)
    return adv


def check_reward_to_go(fn) -> bool:
    """fn(rewards [T], gamma) -> [T]: the discounted reward-to-go of one complete episode."""
    name = "reward-to-go"
    gen = torch.Generator().manual_seed(2)
    hint = "walk t backwards keeping a running sum: running = r_t + gamma * running; G_t = running."
    for length, gamma in [(1, 0.9), (6, 1.0), (11, 0.9), (25, 0.5)]:
        rewards = torch.randn(length, generator=gen, dtype=torch.float64)
        got = call_safely(name, fn, rewards.clone(), gamma)
        assert_close(name, got, reference_reward_to_go(rewards, gamma), hint=hint)
    return passed(name)


def check_reinforce_loss(fn) -> bool:
    """fn(logp [S], rtg [S], baseline [S], num_episodes) -> scalar loss; its gradient w.r.t. logp must be
    -(G_t - b_t) / M and the baseline must receive no gradient."""
    name = "REINFORCE surrogate"
    gen = torch.Generator().manual_seed(22)
    hint = (
        "loss = -(logp * (rtg - baseline)).sum() / num_episodes, with the baseline detached: it may shift "
        "the weights but must not be trained by the policy's loss."
    )
    for steps, episodes in [(7, 1), (20, 3), (50, 5)]:
        logp = (-torch.rand(steps, generator=gen, dtype=torch.float64)).requires_grad_()
        rtg = torch.rand(steps, generator=gen, dtype=torch.float64) * 30
        baseline = (torch.rand(steps, generator=gen, dtype=torch.float64) * 30).requires_grad_()
        loss = call_safely(name, fn, logp, rtg.clone(), baseline, episodes)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ExerciseError(f"{name}: return a scalar tensor, got {loss!r}. Hint: {hint}")
        expected = reference_reinforce_loss(logp.detach(), rtg, baseline.detach(), episodes)
        assert_close(name, loss.detach(), expected, hint=hint)
        if not loss.requires_grad:
            raise ExerciseError(f"{name}: the loss carries no gradient to logp. Hint: {hint}")
        loss.backward()
        assert_close(name, logp.grad, -(rtg - baseline.detach()) / episodes, hint=hint)
        if baseline.grad is not None and baseline.grad.abs().max() > 0:
            raise ExerciseError(f"{name}: gradient flowed into the baseline. Hint: {hint}")
    return passed(name)


def check_gae(fn) -> bool:
    """fn(rewards [T], values [T], dones [T], bootstrap_value: float, gamma, lam) -> advantages [T]."""
    name = "GAE"
    gen = torch.Generator().manual_seed(16)
    hint = (
        "delta_t = r_t + gamma * (1 - d_t) * V_{t+1} - V_t with V_T = bootstrap_value; then backwards "
        "A_t = delta_t + gamma * lam * (1 - d_t) * A_{t+1}. A done flag cuts both the value and the sum."
    )
    for length, gamma, lam in [(5, 0.9, 0.8), (12, 0.99, 0.95), (9, 1.0, 0.0), (9, 0.95, 1.0)]:
        rewards = torch.randn(length, generator=gen, dtype=torch.float64)
        values = torch.randn(length, generator=gen, dtype=torch.float64)
        dones = (torch.rand(length, generator=gen) < 0.25).double()
        dones[length // 2] = 1.0  # at least one episode boundary inside the rollout
        boot = torch.randn((), generator=gen, dtype=torch.float64).item()
        got = call_safely(name, fn, rewards.clone(), values.clone(), dones.clone(), boot, gamma, lam)
        assert_close(name, got, reference_gae(rewards, values, dones, boot, gamma, lam), hint=hint)
    return passed(name)
