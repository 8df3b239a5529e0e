"""Reward-model ensembles: a mean reward and a disagreement that flags inputs the models never saw (survey 6).

Uncertainty-aware reward modelling (arXiv 2410.00847) and reward-model ensembles against overoptimization
(Coste et al., arXiv 2310.02743) rest on one observation: members trained on different resamples of the same
preferences agree where the data was dense and disagree away from it. The spread of their scores is a cheap
out-of-distribution signal, and a pessimistic combination (mean − k·std) is harder for a policy to exploit.

A Bradley-Terry reward is defined only up to an additive constant (the loss sees differences), so members
trained from different starts end at different offsets, and their raw spread mixes real disagreement with
those arbitrary constants. `RewardEnsemble.calibrate` puts every member on the same footing first: mean 0 and
standard deviation 1 on reference responses from the training distribution. Members that share a backbone and
their data also share blind spots (Eisenstein et al., arXiv 2312.09244): their agreement is not evidence that
a response is good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rlsurvey.rewards.bradley_terry import RewardTrainingConfig, train_reward_model
from rlsurvey.rewards.reward_model import RewardModel

__all__ = ["RewardEnsemble", "train_ensemble"]


class RewardEnsemble:
    """Reward models scored together; calling it returns mean − pessimism · std (a reward callable).

    After `calibrate(prompts, responses)` every member's reward is standardized with the mean and standard
    deviation it had on those reference responses (`offsets`, `scales`, one per member) before anything is
    combined.
    """

    def __init__(self, members: Sequence[RewardModel], pessimism: float = 0.0):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = list(members)
        self.pessimism = pessimism
        self.offsets: torch.Tensor | None = None  # [members], set by calibrate
        self.scales: torch.Tensor | None = None

    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Every member's own rewards, [members, N], before any calibration."""
        return torch.stack([m.score(prompts, responses) for m in self.members])

    def calibrate(self, prompts: Sequence[str], responses: Sequence[str]) -> RewardEnsemble:
        """Standardize each member on reference responses (at least 2): afterwards `scores` are
        (r_k − offset_k) / scale_k, with each member's mean and standard deviation there. Returns the
        ensemble."""
        if len(responses) < 2:
            raise ValueError(f"calibration needs at least 2 reference responses, got {len(responses)}")
        raw = self.raw_scores(prompts, responses)
        scales = raw.std(1)
        if not bool((scales > 0).all()):
            raise ValueError(
                "a member gives every reference response the same reward; it cannot be standardized"
            )
        self.offsets, self.scales = raw.mean(1), scales
        return self

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Every member's rewards, [members, N], standardized if the ensemble was calibrated."""
        raw = self.raw_scores(prompts, responses)
        if self.offsets is None:
            return raw
        return (raw - self.offsets[:, None]) / self.scales[:, None]

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
