"""The group trainer's one-update shortcut (π_old taken from the update's own forward pass) makes exactly the
update of the textbook two-pass step; the rollout without its policy pass samples the same responses."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch

from rlsurvey.algos.grpo import GRPOConfig, _prompt_sampler, group_step_advantages, train_grpo
from rlsurvey.algos.policy_loss import aggregate, clipped_surrogate
from rlsurvey.algos.rollout import collect_rollout, repeat_prompts
from rlsurvey.lm.kl import kl_estimate
from rlsurvey.lm.logprobs import response_logprobs
from tests.conftest import tiny_causal_lm

EASY = ["1+2=", "2+2=", "4-1=", "3+0=", "5-2=", "1+1="]


def length_reward(prompts, completions):
    return [float(len(c)) for c in completions]


def two_pass_step(policy, tok, cfg: GRPOConfig, reference=None):
    """One GRPO step written out: a rollout that records π_old, then a separate forward pass for π_θ."""
    prompts = repeat_prompts(_prompt_sampler(EASY, cfg.seed)(cfg.prompts_per_step), cfg.group_size)
    seed = random.Random(cfg.seed + 1).randrange(2**31)
    roll = collect_rollout(
        policy, tok, prompts, length_reward, reference, cfg.max_new_tokens, cfg.temperature, 0, 1.0, seed
    )
    mask = roll.mask
    rewards = roll.scores.float()
    if reference is not None and cfg.kl_in_reward:
        rewards = rewards - cfg.kl_coef * kl_estimate(
            roll.logprobs, roll.ref_logprobs, mask, "k1", per_sequence=True
        )
    adv = group_step_advantages(rewards, cfg.group_size, cfg.advantage)
    g = roll.gen
    # share_prompts as in the trainer: the same values, and the gradients summed in the same order, so that
    # Adam's first (sign-like) step sees bit-identical gradients; tests/test_prompt_sharing.py compares the
    # shared computation with the plain one
    new = response_logprobs(
        policy, g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask, temperature=cfg.temperature,
        share_prompts=True,
    )  # fmt: skip
    per_token, _ = clipped_surrogate(new.token_logps, roll.logprobs, adv, mask, cfg.clip_eps)
    if reference is not None and not cfg.kl_in_reward:
        per_token = per_token + cfg.kl_coef * kl_estimate(
            new.token_logps, roll.ref_logprobs, mask, cfg.kl_estimator
        )
    loss = aggregate(per_token, mask, cfg.aggregation, cfg.max_new_tokens)
    opt = torch.optim.AdamW(
        policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, foreach=False
    )
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    opt.step()
    return roll


def test_single_pass_step_equals_the_two_pass_step():
    for advantage, aggregation, kl_coef, kl_in_reward in [
        ("grpo", "sequence_mean", 0.0, False),
        ("dr_grpo", "constant", 0.1, False),
        ("rloo", "token_mean", 0.1, True),
    ]:
        policy, tok = tiny_causal_lm("llama", seed=2)
        policy.train()
        twin, before = copy.deepcopy(policy), copy.deepcopy(policy)
        reference = copy.deepcopy(policy) if kl_coef else None
        cfg = GRPOConfig(
            steps=1, prompts_per_step=3, group_size=4, max_new_tokens=3, learning_rate=1e-2, seed=7,
            advantage=advantage, aggregation=aggregation, kl_coef=kl_coef, kl_in_reward=kl_in_reward,
            progress=False,
        )  # fmt: skip
        train_grpo(policy, tok, EASY, length_reward, cfg, reference=reference)
        two_pass_step(twin, tok, cfg, reference=copy.deepcopy(reference) if reference else None)
        for (name, p), q in zip(policy.named_parameters(), twin.parameters()):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=f"{advantage}: {name} differs")
        assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), before.parameters()))


def test_rollout_without_policy_pass_samples_the_same():
    policy, tok = tiny_causal_lm("gpt2", seed=3)
    prompts = repeat_prompts(EASY[:3], 2)
    full = collect_rollout(policy, tok, prompts, length_reward, None, 4, 1.0, seed=5)
    light = collect_rollout(policy, tok, prompts, length_reward, None, 4, 1.0, seed=5, score_policy=False)
    assert light.logprobs is None and light.entropy is None
    assert light.completions == full.completions and torch.equal(light.scores, full.scores)
    assert torch.equal(light.mask, full.mask) and light.mask.dtype == torch.float32


def test_reference_with_zero_kl_coef_is_measured_not_penalized():
    policy, tok = tiny_causal_lm("llama", seed=4)
    watched = copy.deepcopy(policy)
    reference = copy.deepcopy(policy)
    cfg = GRPOConfig(steps=3, prompts_per_step=2, group_size=4, max_new_tokens=3, learning_rate=1e-2,
                     progress=False)  # fmt: skip
    plain = train_grpo(policy, tok, EASY, length_reward, cfg)
    logged = train_grpo(watched, tok, EASY, length_reward, cfg, reference=reference)
    for p, q in zip(policy.parameters(), watched.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)  # the same update: nothing is penalized
    assert all(math.isnan(h["kl"]) for h in plain) and "kl_loss" not in logged[-1]
    assert all(math.isnan(h["kl/sequence_k1"]) for h in plain)
    assert logged[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # identical to the reference at the first step
    assert logged[0]["kl/sequence_k1"] == pytest.approx(0.0, abs=1e-6)
    assert logged[-1]["kl"] > 1e-4  # and measured as it drifts away (k3 is never negative)
    assert abs(logged[-1]["kl/sequence_k1"]) > 1e-4  # k1 may be negative on a sample


def test_kl_metrics_mean_what_trl_means():
    """ "kl" is TRL GRPOTrainer's metric, the per-token k3 estimate averaged over every response token;
    "kl/sequence_k1" is the k1 estimate summed per response, averaged over responses. Both by hand here."""
    from rlsurvey.algos.grpo import kl_metrics

    gen = torch.Generator().manual_seed(3)
    logps = -torch.rand(4, 6, generator=gen, dtype=torch.float64) * 3
    ref = logps + 0.5 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    lengths = [6, 1, 3, 4]
    mask = torch.tensor([[t < n for t in range(6)] for n in lengths])
    k3_terms, k1_sums = [], []
    for i, n in enumerate(lengths):
        s = 0.0
        for t in range(n):
            d = float(ref[i, t] - logps[i, t])
            k3_terms.append(math.exp(d) - d - 1)
            s += -d
        k1_sums.append(s)
    out = kl_metrics(logps, ref, mask)
    assert out["kl"] == pytest.approx(sum(k3_terms) / len(k3_terms), rel=1e-12)
    assert out["kl/sequence_k1"] == pytest.approx(sum(k1_sums) / len(k1_sums), rel=1e-12)


def test_frozen_or_shared_policy_is_refused():
    policy, tok = tiny_causal_lm("llama", seed=4)
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="separate copy"):
        train_grpo(policy, tok, EASY, length_reward, cfg, reference=policy)
    frozen = copy.deepcopy(policy).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        train_grpo(frozen, tok, EASY, length_reward, cfg)
