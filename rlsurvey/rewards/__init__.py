"""Reward models from human and AI feedback (survey sections 4.1, 5 and 6).

Modules: reward_model (a scalar head on a causal-LM backbone), bradley_terry (the pairwise loss, training and
evaluation), ensemble (disagreement as uncertainty), judges (AI feedback).
"""

from rlsurvey.rewards.bradley_terry import (
    RewardTrainingConfig,
    bradley_terry_loss,
    evaluate_reward_model,
    train_reward_model,
)
from rlsurvey.rewards.ensemble import RewardEnsemble, train_ensemble
from rlsurvey.rewards.reward_model import RewardModel, last_token_index

__all__ = [
    "RewardEnsemble",
    "RewardModel",
    "RewardTrainingConfig",
    "bradley_terry_loss",
    "evaluate_reward_model",
    "last_token_index",
    "train_ensemble",
    "train_reward_model",
]
