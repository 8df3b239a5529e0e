"""Synthetic worlds with known ("gold") rewards, the course's offline stand-in for human feedback.

Survey sections 4 to 8 of arXiv 2412.10400 all need a reward to optimize; here it is known exactly, so every
chapter can plot the gold reward beside the proxy an algorithm optimizes.

- `reviews`: short English reviews from a probabilistic grammar, a gold reward of their attributes, and
  simulated Bradley-Terry annotators (preference learning: RLHF, DPO and friends).
- `arithmetic`: prompts such as "37+58=" with an exact verifier (RL with verifiable rewards: GRPO).
- `reasoning`: chains such as "3+8-5+9=", answered directly or step by step ("[3+8=11;11-5=6;6+9=15]15"),
  with DeepSeek-R1's accuracy and format rewards and a strict verifier.
- `tools`: products and long sums answered directly or with a calculator call ("<37*58>{2146}"): the
  multi-turn world of agents, with an exact evaluator, a tool-environment interface and a strict verifier.
"""

from rlsurvey.tasks import arithmetic, reasoning, reviews, tools

__all__ = ["arithmetic", "reasoning", "reviews", "tools"]
