"""Safe RLHF: maximize a helpfulness reward subject to a limit on a learned cost, with a Lagrange multiplier.

Survey section 6 (arXiv 2412.10400, safety). Safe RLHF (Dai et al., arXiv 2310.12773) separates what people
want (a reward model of helpfulness) from what must not happen (a cost model of harm) and solves

    max_θ J_R(θ)   subject to   J_C(θ) = E[C(x, y)] − d ≤ 0                          (Safe RLHF eq. 9)

through its Lagrangian min_{λ≥0} max_θ J_R(θ) − λ J_C(θ) (eq. 10). The policy step maximizes R − λC; the
multiplier step raises λ while the constraint is violated and lowers it once it holds (eq. 11–12, on ln λ so
that λ stays positive):

    ln λ ← ln λ + α · λ · (Ĉ − d)

and, as in the paper's implementation, the combined reward is divided by 1 + λ so its scale does not grow with
λ. Safe RLHF applies the combination to advantages from two critics; here it is applied to the rewards, so
the combined reward is a plain reward callable that any trainer of the course (PPO, RLOO) can optimize, with λ
updated once per rollout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rlsurvey.algos.rollout import RewardFn, compute_rewards
from rlsurvey.config_compat import renamed_fields

__all__ = ["LagrangeMultiplier", "LagrangianReward"]


@renamed_fields(lr="learning_rate")
@dataclass
class LagrangeMultiplier:
    value: float = 1.0  # λ, the price of one unit of cost in units of reward
    learning_rate: float = 0.1  # α, step size of the update on ln λ
    cost_limit: float = 0.0  # d: the constraint is E[C] ≤ d
    max_value: float = 100.0  # cap on λ, so a long violation cannot make the reward all cost
    min_value: float = 1e-8  # floor on λ: ln λ must stay finite for the next step

    def __post_init__(self):
        if not self.value > 0:
            raise ValueError(
                f"LagrangeMultiplier.value must be > 0 (it is updated in log space), got {self.value}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"LagrangeMultiplier.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.min_value < self.max_value:
            raise ValueError(
                "LagrangeMultiplier needs 0 < min_value < max_value, "
                f"got {self.min_value} and {self.max_value}"
            )

    def update(self, mean_cost: float) -> float:
        """One ascent step on ln λ with the measured constraint violation Ĉ − d; returns the new λ, kept in
        [min_value, max_value]. The bounds apply to ln λ before exponentiating: a large step would otherwise
        overflow exp, or underflow λ to 0, whose logarithm the next step cannot take."""
        if not math.isfinite(mean_cost):
            raise ValueError(f"mean_cost must be finite, got {mean_cost}")
        log_value = math.log(self.value) + self.learning_rate * self.value * (mean_cost - self.cost_limit)
        if log_value >= math.log(self.max_value):
            self.value = self.max_value
        elif log_value <= math.log(self.min_value):
            self.value = self.min_value
        else:
            self.value = math.exp(log_value)
        return self.value


@dataclass
class LagrangianReward:
    """(R − λ C) / (1 + λ) as a reward callable; each call then moves λ with that batch's mean cost.

    reward_fn, cost_fn: callables (prompts, completions) -> one number per completion.
    update: False freezes λ (use it to evaluate without moving the multiplier).
    history: one dict per call with the λ used, the batch's mean reward and mean cost.
    """

    reward_fn: RewardFn
    cost_fn: RewardFn
    multiplier: LagrangeMultiplier = field(default_factory=LagrangeMultiplier)
    update: bool = True
    history: list[dict] = field(default_factory=list)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        reward = compute_rewards(self.reward_fn, prompts, completions)
        cost = compute_rewards(self.cost_fn, prompts, completions)
        lam = self.multiplier.value
        combined = (reward - lam * cost) / (1 + lam)
        self.history.append({"lambda": lam, "reward": reward.mean().item(), "cost": cost.mean().item()})
        if self.update:
            self.multiplier.update(cost.mean().item())
        return combined
