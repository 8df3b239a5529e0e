"""RLOO as a preset of the group trainer: its options, the baseline's invariances, and learning."""

from __future__ import annotations

import pytest
import torch

from rlsurvey.algos.advantages import leave_one_out_advantages
from rlsurvey.algos.grpo import GRPOConfig
from rlsurvey.algos.rloo import RLOO_DEFAULTS, rloo_config, train_rloo
from rlsurvey.algos.rollout import RewardError
from tests.conftest import tiny_causal_lm

PROMPTS = ["the film was ", "a ", "my day: ", "ok "]


def count_a(prompts, completions):
    return [float(c.count("a")) for c in completions]


def small(**kw):
    base = dict(
        steps=2, prompts_per_step=2, group_size=3, max_new_tokens=6, learning_rate=1e-3, progress=False
    )
    return rloo_config(**{**base, **kw})


def test_preset_fixes_rloo_options():
    cfg = rloo_config(steps=3)
    assert cfg.steps == 3 and isinstance(cfg, GRPOConfig)
    for key, value in RLOO_DEFAULTS.items():
        assert getattr(cfg, key) == value, key
    with pytest.raises(ValueError, match="advantage='rloo'"):
        rloo_config(advantage="grpo")
    with pytest.raises(ValueError, match="unknown GRPOConfig fields"):
        rloo_config(gamma=1.0)
    with pytest.raises(ValueError, match="group_size"):
        rloo_config(group_size=1)
    policy, tok = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match="must be 'rloo'"):
        train_rloo(policy, tok, PROMPTS, count_a, GRPOConfig(advantage="grpo"))


def test_leave_one_out_baseline_by_hand():
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    want = [1 - 4.0, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0.0]
    torch.testing.assert_close(leave_one_out_advantages(r, 3), torch.tensor(want))


def _trained(reward_fn, seed=0):
    policy, tok = tiny_causal_lm("gpt2", seed=1)
    train_rloo(policy, tok, PROMPTS, reward_fn, small(seed=seed, kl_coef=0.0))
    return dict(policy.named_parameters())


def test_constant_rewards_change_nothing_and_a_shift_is_invisible():
    start, _ = tiny_causal_lm("gpt2", seed=1)
    flat = _trained(lambda p, c: [3.0] * len(c))  # every advantage is 0: no gradient at all
    assert all(torch.equal(v, dict(start.named_parameters())[k]) for k, v in flat.items())
    plain = _trained(count_a)
    shifted = _trained(lambda p, c: [x + 5.0 for x in count_a(p, c)])  # the baseline absorbs the constant
    assert all(torch.allclose(plain[k], shifted[k], atol=1e-6) for k in plain)
    assert any(not torch.equal(plain[k], v) for k, v in dict(start.named_parameters()).items())


def test_short_run_improves_reward():
    policy, tok = tiny_causal_lm("llama", seed=1)
    cfg = rloo_config(steps=25, prompts_per_step=4, group_size=4, max_new_tokens=8, learning_rate=3e-3,
                      kl_coef=0.01, progress=False)  # fmt: skip
    history = train_rloo(policy, tok, PROMPTS, count_a, cfg)
    first = sum(h["reward"] for h in history[:5]) / 5
    last = sum(h["reward"] for h in history[-5:]) / 5
    assert last > first + 1.0, (first, last)
    assert all(h["kl"] >= -1e-3 or h["step"] == 1 for h in history)


def test_bad_reward_is_named():
    policy, tok = tiny_causal_lm("llama")
    with pytest.raises(RewardError, match="non-finite"):
        train_rloo(policy, tok, PROMPTS, lambda p, c: [float("nan")] * len(c), small())
