"""Synthetic worlds with known ("gold") rewards, the course's offline stand-in for human feedback.

Survey sections 4 to 8 of arXiv 2412.10400 all need a reward to optimize; here it is known exactly, so every
chapter can plot the gold reward beside the proxy an algorithm optimizes.

- `reviews`: short English reviews from a probabilistic grammar, a gold reward of their attributes, and
  simulated Bradley-Terry annotators (preference learning: RLHF, DPO and friends).
- `arithmetic`: prompts such as "37+58=" with an exact verifier (RL with verifiable rewards: GRPO).
"""

from rlsurvey.tasks import arithmetic, reviews

__all__ = ["arithmetic", "reviews"]
