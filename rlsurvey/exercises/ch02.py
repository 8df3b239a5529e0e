"""Checks for the exercises of chapter 02 (policy gradients): reward-to-go, the REINFORCE surrogate with a
baseline, and GAE. Papers: GAE, arXiv 1506.02438; survey arXiv 2412.10400, section 2.1.

1. `check_reward_to_go(fn)`: fn(rewards [T], gamma) -> G [T] for one complete episode.
2. `check_reinforce_loss(fn)`: fn(logp [S], rtg [S], baseline [S], num_episodes) -> scalar surrogate whose
   gradient is the REINFORCE estimate; no gradient may reach the baseline.
3. `check_gae(fn)`: fn(rewards [T], values [T], dones [T], bootstrap_value, gamma, lam) -> advantages [T].
4. `check_predictions(answers)`: {"variance_divisor": by how much the gradient variance of section 3 is
   divided when a batch holds `VAR_EPISODES_AFTER` episodes instead of `VAR_EPISODES_BEFORE`,
   "best_lambda": the GAE lambda of section 6's grid with the smallest error once the critic is exact}.
"""

from __future__ import annotations

import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.rl.returns import gae_advantages_reference

__all__ = [
    "EXERCISES",
    "LAMBDAS",
    "VAR_EPISODES_AFTER",
    "VAR_EPISODES_BEFORE",
    "check_predictions",
    "reference_predictions",
    "check_gae",
    "check_reinforce_loss",
    "check_reward_to_go",
    "reference_gae",
    "reference_reinforce_loss",
    "reference_reward_to_go",
]


VAR_EPISODES_BEFORE, VAR_EPISODES_AFTER = 4, 16  # episodes per batch in section 3, before and after
LAMBDAS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)  # section 6's grid


def reference_predictions() -> dict:
    """The batch gradient averages independent episodes, so its variance goes as 1 / episodes. With an exact
    critic every lambda-return is unbiased, and its variance sum_k (gamma lam)^(2k) Var(delta_(t+k)) grows
    with lambda (the TD errors are uncorrelated), so the smallest lambda wins."""
    return {"variance_divisor": VAR_EPISODES_AFTER / VAR_EPISODES_BEFORE, "best_lambda": min(LAMBDAS)}


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


def check_predictions(answers) -> bool:
    """answers: {"variance_divisor": number, "best_lambda": one of LAMBDAS}."""
    name = "predictions"
    if not isinstance(answers, dict) or set(answers) != {"variance_divisor", "best_lambda"}:
        raise ExerciseError(
            f"{name}: expected a dict with the keys 'variance_divisor' and 'best_lambda', got {answers!r}. "
            "Hint: fill in both predictions before running the experiments."
        )
    want = reference_predictions()
    for key, hint in [
        ("variance_divisor", "a batch's gradient is a mean of independent per-episode terms: "
         "Var(mean of M) = "
         "Var(one) / M, so compare the two values of M."),
        ("best_lambda", "with an exact critic no lambda has bias; what is left is variance, and each extra "
         "step of the lambda-return adds the variance of one more TD error."),
    ]:  # fmt: skip
        try:
            value = float(answers[key])
        except (TypeError, ValueError) as exc:
            raise ExerciseError(f"{name}: {key} must be a number, got {answers[key]!r}") from exc
        assert_close(f"{name} ({key})", value, want[key], hint=hint)
    return passed(name)


EXERCISES = (
    Exercise(1, "Reward-to-go", check_reward_to_go, reference_reward_to_go,
             lambda r, g: r.flip(0).cumsum(0).flip(0)),
    Exercise(2, "The REINFORCE surrogate with a baseline", check_reinforce_loss, reference_reinforce_loss,
             lambda logp, rtg, b, m: -(logp * (rtg - b)).sum() / m),
    Exercise(3, "GAE", check_gae, reference_gae,
             lambda r, v, d, boot, g, lam: r + g * torch.cat([v[1:], torch.tensor([boot]).to(v)]) - v),
    Exercise(4, "Predict, then measure", check_predictions, reference_predictions,
             {"variance_divisor": 0.25, "best_lambda": 1.0}, value=True, kind="open"),
)  # fmt: skip
