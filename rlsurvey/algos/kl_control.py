"""The KL penalty of RLHF: per-token reward shaping and the controllers that set its coefficient (survey 4.2).

RLHF maximizes the reward while staying close to the reference policy (InstructGPT, arXiv 2203.02155, eq. 2):

    max_π  E[ r(x, y) ] − β KL(π(·|x) ‖ π_ref(·|x))

PPO for language models spends the KL term as a reward per token (Ziegler et al., arXiv 1909.08593): every
response token t gets −β k(t), where k is a per-token estimate of the KL, and the last token also gets the
sequence's score. The estimator is one of Schulman's (`rlsurvey.lm.kl`): k1 = log π − log π_ref is
unbiased but noisy and can be negative; k3 = (ρ − 1) − log ρ with ρ = π_ref/π is unbiased and never negative.

β can be fixed, or adapted so that the measured KL tracks a target (Ziegler et al., section 2.2):

    e = clip((KL − target) / target, −0.2, 0.2),     β ← β (1 + K_β e n / horizon)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlsurvey.lm.kl import kl_estimate

__all__ = ["AdaptiveKLController", "FixedKLController", "shape_rewards"]


@dataclass
class FixedKLController:
    value: float  # β, the KL coefficient

    def update(self, kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class AdaptiveKLController:
    value: float  # current β
    target: float  # the KL (nats per response) the controller aims at
    horizon: int = 10_000  # how many samples it takes to move β by a factor ~e at full error

    def update(self, kl: float, n_steps: int) -> float:
        """Move β towards the value that would make the measured `kl` equal the target; returns the new β."""
        error = max(-0.2, min(0.2, (kl - self.target) / self.target))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


def shape_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards for PPO: −β k_t on every response token, plus the sequence score on the last one.

    | argument | shape | meaning |
    |---|---|---|
    | scores | [B] | the reward model's (or verifier's) score of each response |
    | logprobs, ref_logprobs | [B, T] | sampled tokens' log-probs under the policy and the reference |
    | mask | [B, T] | true on response tokens, a prefix of each row |
    | returns | [B, T], [B, T] | the shaped rewards, and the per-token KL estimate (zero off the mask) |
    """
    if scores.dim() != 1 or scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores must be [B] with B={logprobs.shape[0]}, got {tuple(scores.shape)}")
    if mask.shape != logprobs.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the shape of logprobs {tuple(logprobs.shape)}")
    kl = kl_estimate(logprobs, ref_logprobs, mask, estimator)
    rewards = -kl_coef * kl
    lengths = mask.long().sum(dim=1)
    if (lengths == 0).any():
        raise ValueError("a response has no tokens; every response needs at least one (its EOS counts)")
    last = lengths - 1  # responses start at column 0 of the response block
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards, kl
