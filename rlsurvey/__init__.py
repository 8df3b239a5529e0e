"""rlsurvey: a course on reinforcement learning for large language models, and the package it builds.

The course follows "Reinforcement Learning Enhanced LLMs: A Survey" (Wang et al., arXiv 2412.10400).
Subpackages: rl (classic RL), tasks (synthetic worlds with gold rewards), lm (language-model policies),
rewards (reward models and judges), algos (RLHF, DPO, GRPO and friends), kernels (fused Triton kernels).
"""

from rlsurvey.runtime import RunInfo, default_device, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["RunInfo", "default_device", "seed_everything", "setup", "__version__"]
