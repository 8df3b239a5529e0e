"""A sampler that differs from the trainer, as a fast inference engine does (issue of every RL engine since
2025: vLLM or SGLang generate, FSDP or Megatron train, and their log-probs of the same tokens differ).

`MismatchedSampler` keeps its own copy of the policy, refreshed from the trainer's weights before every
rollout (the weight sync of an RL engine), but through a lossy path: the weights rounded to a lower
precision (`dtype`, bfloat16 by default, as inference engines serve) and, optionally, perturbed by
relative Gaussian noise (`noise`), which stands in for the other sources of mismatch (fused kernels,
different reduction orders, batch-dependent numerics). The trainer then sees tokens drawn from π_sampler
but computes its gradient under π_θ; `rlsurvey.algos.policy_loss.sampler_correction_weights` corrects for
the gap (truncated or masked importance sampling). Pass it to `train_grpo(..., sampler=...)`.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["MismatchedSampler"]


class MismatchedSampler:
    """A lossy copy of a policy for generation; `sync(policy)` refreshes it from the trainer's weights."""

    def __init__(self, policy: torch.nn.Module, dtype: torch.dtype = torch.bfloat16, noise: float = 0.0,
                 seed: int = 0):  # fmt: skip
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.dtype, self.noise = dtype, noise
        self._gen = torch.Generator().manual_seed(seed)
        self.sync(policy)

    @torch.no_grad()
    def sync(self, policy: torch.nn.Module) -> None:
        """Copy the policy's weights through the lossy path (rounded to `dtype`, then the noise)."""
        for mine, theirs in zip(self.model.parameters(), policy.parameters()):
            w = theirs.detach().to(self.dtype).to(mine.dtype)
            if self.noise > 0:
                eps = torch.randn(w.shape, generator=self._gen, dtype=w.dtype).to(w.device)
                w = w + self.noise * w.abs().mean() * eps
            mine.copy_(w)
