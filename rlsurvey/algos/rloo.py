"""RLOO: REINFORCE with a leave-one-out baseline, a preset of the group trainer in `rlsurvey.algos.grpo`.

Survey section 4.2 (arXiv 2412.10400). "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
from Human Feedback in LLMs" (Ahmadian et al., arXiv 2402.14740) argues that PPO's machinery is more than RLHF
needs: sample k responses per prompt, treat each whole response as one action, and use the mean reward of the
other k − 1 responses as the baseline (after Kool et al., 2019):

    A_i = R_i − (1/(k−1)) Σ_{j≠i} R_j,     R_i = r(x, y_i) − β Σ_t log π(y_it)/π_ref(y_it)    (eq. 5)
    ∇J ≈ (1/k) Σ_i A_i ∇ log π(y_i | x)

No value model, no GAE, one gradient step per batch. The KL penalty is part of the sequence reward, as in
PPO for language models. Everything else (sampling, reward checks, clipping that stays inactive at one step
per rollout, KL estimation) is `rlsurvey.algos.grpo.train_grpo`; this module only fixes its options.

Loss averaging: "constant" divides the summed token losses by B·L (L = max_new_tokens), which is the
sequence-level REINFORCE gradient Σ_t ∇ log π(y_it) of eq. 5 scaled by 1/L; a per-sequence mean would
instead weight the tokens of short responses more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.algos.rollout import RewardFn
from rlsurvey.config_compat import translate

__all__ = ["RLOO_DEFAULTS", "rloo_config", "train_rloo"]

RLOO_DEFAULTS = {
    "advantage": "rloo",  # leave-one-out baseline (eq. 5)
    "group_size": 4,  # k samples per prompt, the paper's main setting
    "kl_coef": 0.05,  # β of the sequence-level KL penalty
    "kl_in_reward": True,  # the KL is part of R_i, not a separate loss term
    "aggregation": "constant",  # Σ_t over each response, one normalizer for the batch
    "epochs_per_rollout": 1,  # on-policy: one gradient step per batch
    "mini_batch_size": None,  # the whole batch in that step
}


def rloo_config(**overrides) -> GRPOConfig:
    """A `GRPOConfig` with RLOO's choices (RLOO_DEFAULTS), any field overridden by keyword; e.g.
    `rloo_config(steps=20, prompts_per_step=8, learning_rate=1e-3)`."""
    overrides = translate(GRPOConfig, overrides, stacklevel=2)  # old field names, with a FutureWarning
    unknown = set(overrides) - set(GRPOConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown GRPOConfig fields {sorted(unknown)}; see rlsurvey.algos.grpo.GRPOConfig")
    if overrides.get("advantage", "rloo") != "rloo":
        raise ValueError(f"RLOO uses advantage='rloo', got advantage={overrides['advantage']!r}")
    return replace(GRPOConfig(), **{**RLOO_DEFAULTS, **overrides})


def train_rloo(
    policy,
    tokenizer,
    prompts: Sequence[str] | Callable[[int], list[str]],
    reward_fn: RewardFn,
    config: GRPOConfig | None = None,
    reference=None,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
) -> list[dict]:
    """Train `policy` in place with RLOO; `config` defaults to `rloo_config()` and must use the
    leave-one-out advantage. Arguments and returned history are those of `train_grpo`."""
    config = config or rloo_config()
    if config.advantage != "rloo":
        raise ValueError(f"config.advantage must be 'rloo' for RLOO, got {config.advantage!r}")
    return train_grpo(policy, tokenizer, prompts, reward_fn, config, reference, eval_fn)
