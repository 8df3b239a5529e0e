"""Rollouts for language-model RL: sample responses, score them, record the log-probs the updates need.

One rollout is shared by every online method in the course (PPO for language models, RLOO, best-of-n, GRPO),
so they differ only in how they turn scores into advantages. Survey sections 2.2 and 4.2 (arXiv 2412.10400).

A reward function is any callable `reward_fn(prompts, completions) -> sequence of floats`, one per
completion: the gold reward of a synthetic world, a trained reward model, a verifier, or an AI judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlsurvey.lm.generation import GenerationOutput, generate
from rlsurvey.lm.logprobs import response_logprobs
from rlsurvey.lm.models import context_length
from rlsurvey.rewards.base import RewardError, RewardFn, compute_rewards, repeat_prompts

__all__ = [
    "RewardError",
    "RewardFn",
    "Rollout",
    "collect_rollout",
    "compute_rewards",
    "disable_dropout",
    "merge_rollouts",
    "overlong_penalty",
    "repeat_prompts",
]


@dataclass
class Rollout:
    gen: GenerationOutput  # prompts, sampled responses, their ids and masks
    logprobs: torch.Tensor | None  # [B, R] log π_old of each sampled token (no gradient), 0 off the mask;
    # None when collected with score_policy=False (the trainer's first forward pass supplies it)
    ref_logprobs: torch.Tensor | None  # [B, R] the same under the frozen reference, or None without one
    scores: torch.Tensor  # [B] the reward function's score of each response (float32)
    entropy: torch.Tensor | None  # [B, R] policy entropy per token, 0 off the mask (None like logprobs)
    action_mask: torch.Tensor | None = None  # [B, R] multi-turn episodes (rlsurvey.algos.multiturn): 1 on
    # the policy's tokens, 0 on the environment's observations; None: every response token is the policy's

    @property
    def mask(self) -> torch.Tensor:
        """[B, R] float, 1 on the tokens the policy sampled (EOS included): the response mask, or the action
        mask of a multi-turn episode, which leaves out the observations that the response mask attends to."""
        dtype = self.logprobs.dtype if self.logprobs is not None else torch.float32
        return (self.gen.response_mask if self.action_mask is None else self.action_mask).to(dtype)

    @property
    def completions(self) -> list[str]:
        return self.gen.texts

    def select(self, rows: Sequence[int]) -> Rollout:
        """The rollout of the responses `rows` only (their order kept)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.scores.device)
        g = self.gen

        def take(x):
            return None if x is None else x[idx.to(x.device)]

        gen = GenerationOutput(
            [g.prompts[i] for i in idx.tolist()], [g.texts[i] for i in idx.tolist()], take(g.prompt_ids),
            take(g.prompt_mask), take(g.response_ids), take(g.response_mask), take(g.finished),
        )  # fmt: skip
        return Rollout(
            gen, take(self.logprobs), take(self.ref_logprobs), take(self.scores), take(self.entropy),
            take(self.action_mask),
        )  # fmt: skip


def _pad_cat(parts: list[torch.Tensor], value, left: bool) -> torch.Tensor:
    width = max(p.shape[1] for p in parts)
    out = []
    for p in parts:
        pad = torch.full((p.shape[0], width - p.shape[1]), value, dtype=p.dtype, device=p.device)
        out.append(torch.cat([pad, p] if left else [p, pad], 1))
    return torch.cat(out)


def merge_rollouts(rollouts: Sequence[Rollout], pad_id: int) -> Rollout:
    """One rollout from several (dynamic sampling's rounds): prompts stay left-padded and responses
    right-padded to the widest of them; per-token tensors are padded with 0 off the mask."""
    if not rollouts:
        raise ValueError("merge_rollouts needs at least one rollout")
    if len(rollouts) == 1:
        return rollouts[0]
    gens = [r.gen for r in rollouts]

    def cat_tokens(name: str, value, left: bool):
        return _pad_cat([getattr(g, name) for g in gens], value, left)

    def cat_optional(name: str):
        parts = [getattr(r, name) for r in rollouts]
        return None if any(p is None for p in parts) else _pad_cat(parts, 0.0, left=False)

    gen = GenerationOutput(
        [p for g in gens for p in g.prompts], [t for g in gens for t in g.texts],
        cat_tokens("prompt_ids", pad_id, True), cat_tokens("prompt_mask", 0, True),
        cat_tokens("response_ids", pad_id, False), cat_tokens("response_mask", 0, False),
        torch.cat([g.finished for g in gens]),
    )  # fmt: skip
    scores = torch.cat([r.scores for r in rollouts])
    return Rollout(
        gen, cat_optional("logprobs"), cat_optional("ref_logprobs"), scores, cat_optional("entropy"),
        cat_optional("action_mask"),
    )  # fmt: skip


def overlong_penalty(
    lengths: torch.Tensor, finished: torch.Tensor, max_length: int, buffer: int
) -> torch.Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13), added to the reward: 0 up to
    L_max − L_cache tokens, then falling linearly to −1 at L_max; −1 for a response cut at the budget
    without EOS. lengths [B] response tokens (EOS included), finished [B] bool; max_length = L_max,
    buffer = L_cache."""
    if not 0 < buffer <= max_length:
        raise ValueError(f"the overlong buffer must be in [1, max_length={max_length}], got {buffer}")
    n = lengths.to(torch.float32)
    soft = ((max_length - buffer) - n) / buffer
    out = torch.where(n <= max_length - buffer, torch.zeros_like(n), soft.clamp(min=-1.0))
    return torch.where(finished.to(torch.bool), out, torch.full_like(n, -1.0))


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every dropout probability to 0, in place. Policy-gradient updates compare log-probs of the same
    tokens before and after a step; dropout would make that ratio noisy even when nothing changed."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout", "dropout"):
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, 0.0)  # some attention implementations read the rate from the config
    return model


def _check_context(model, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> None:
    limit = context_length(model)
    if limit is None:
        return
    # distinct prompts in one batched call: a group repeats each prompt G times, and tokenizing is most of
    # this check's cost
    distinct = list(dict.fromkeys(prompts))
    longest = max(len(ids) for ids in tokenizer(distinct, add_special_tokens=False)["input_ids"])
    if longest + max_new_tokens > limit:
        raise ValueError(
            f"the longest prompt has {longest} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
            f"model's context of {limit} tokens. Shorten the prompts or lower max_new_tokens."
        )


@torch.no_grad()
def collect_rollout(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    reference=None,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 256,
    missing_eos_penalty: float | None = None,
    score_policy: bool = True,
) -> Rollout:
    """Sample one response per prompt from `policy`, score it, and record old and reference log-probs.

    Log-probs are taken at the sampling temperature, so the ratio π_θ/π_old of the first update is exactly 1.
    missing_eos_penalty: a number subtracted from the score of responses that hit `max_new_tokens` without
    EOS (InstructGPT-style implementations and TRL's `missing_eos_penalty`), so rambling is not rewarded.
    score_policy: False skips the policy's log-prob pass (logprobs and entropy are then None). A trainer that
    makes exactly one update per rollout can take π_old from its own first forward pass, which sees the same
    weights; TRL's GRPOTrainer saves the same pass in that case.
    """
    _check_context(policy, tokenizer, prompts, max_new_tokens)
    gen = generate(policy, tokenizer, prompts, max_new_tokens, temperature, top_k, top_p, seed, batch_size)
    scores = compute_rewards(reward_fn, gen.prompts, gen.texts)
    if missing_eos_penalty is not None:
        if not math.isfinite(missing_eos_penalty):
            raise ValueError(f"missing_eos_penalty must be finite, got {missing_eos_penalty}")
        scores = scores - missing_eos_penalty * (~gen.finished.cpu()).float()
    args = (gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
    temp = temperature if temperature > 0 else 1.0
    token_logps = entropy = None
    if score_policy:
        was_training = policy.training
        policy.eval()  # the old log-probs must come from the policy that sampled, without dropout noise
        try:
            pol = response_logprobs(policy, *args, temperature=temp, with_entropy=True, share_prompts=True)
        finally:
            policy.train(was_training)
        token_logps, entropy = pol.token_logps, pol.entropy
    ref = None
    if reference is not None:
        reference.eval()
        ref = response_logprobs(reference, *args, temperature=temp, share_prompts=True).token_logps
    device = gen.response_ids.device
    return Rollout(gen, token_logps, ref, scores.to(device), entropy)
