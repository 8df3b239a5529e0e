"""Reward models from human and AI feedback, and rewards a program checks (survey sections 4.1, 5, 6 and 3).

Modules: reward_model (a scalar head on a causal-LM backbone), bradley_terry (the pairwise loss, training and
evaluation), ensemble (disagreement as uncertainty), multi_objective (one head per attribute and fitted
weights), bench (a RewardBench-style suite of the reviews world), judges (AI feedback), verifiable
(exact-answer rewards and pass@k for the arithmetic world), process (process and outcome reward models read
at each step's end, Math-Shepherd's rollout labels; chapter 15).
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
