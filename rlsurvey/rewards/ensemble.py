"""Reward-model ensembles: a mean reward and a disagreement that flags inputs the models never saw (survey 6).

Uncertainty-aware reward modelling (arXiv 2410.00847) and reward-model ensembles against overoptimization
(Coste et al., arXiv 2310.02743) rest on one observation: members trained on different resamples of the same
preferences agree where the data was dense and disagree away from it. The spread of their scores is a cheap
out-of-distribution signal, and a pessimistic combination (mean − k·std) is harder for a policy to exploit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rlsurvey.rewards.bradley_terry import RewardTrainingConfig, train_reward_model
from rlsurvey.rewards.reward_model import RewardModel

__all__ = ["RewardEnsemble", "train_ensemble"]


class RewardEnsemble:
    """Reward models scored together; calling it returns mean − pessimism · std (a reward callable)."""

    def __init__(self, members: Sequence[RewardModel], pessimism: float = 0.0):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = list(members)
        self.pessimism = pessimism

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Every member's rewards, [members, N]."""
        return torch.stack([m.score(prompts, responses) for m in self.members])

    def mean_std(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scores(prompts, responses)
        return s.mean(0), s.std(0)

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        mean, std = self.mean_std(prompts, responses)
        return mean - self.pessimism * std


def train_ensemble(
    make_model: Callable[[], RewardModel] | str | Path,
    dataset,
    members: int = 3,
    config: RewardTrainingConfig | None = None,
    bootstrap: bool = True,
) -> tuple[RewardEnsemble, list[list[dict]]]:
    """Train `members` reward models, each on a bootstrap resample of `dataset` with its own seed.

    make_model: a function returning a fresh RewardModel, or a checkpoint path to start each member from.
    Returns the ensemble and each member's training history.
    """
    config = config or RewardTrainingConfig()
    if not callable(make_model):
        path = make_model
        make_model = lambda: RewardModel.from_pretrained(path)  # noqa: E731
    models, histories = [], []
    for k in range(members):
        torch.manual_seed(config.seed + 1000 * k)  # members differ in their head's start and their data
        data = dataset
        if bootstrap:
            g = torch.Generator().manual_seed(config.seed + 1000 * k)
            data = dataset.select(torch.randint(len(dataset), (len(dataset),), generator=g).tolist())
        cfg = RewardTrainingConfig(**{**config.__dict__, "seed": config.seed + k})
        model = make_model()
        histories.append(train_reward_model(model, data, cfg))
        models.append(model)
    return RewardEnsemble(models), histories
