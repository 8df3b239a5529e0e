"""The shared rollout: reward checking, prompt grouping, and log-probs consistent with a fresh pass."""

from __future__ import annotations

import copy

import pytest
import torch

from rlsurvey.algos.rollout import (
    RewardError,
    collect_rollout,
    compute_rewards,
    disable_dropout,
    repeat_prompts,
)
from rlsurvey.lm.logprobs import response_logprobs
from tests.conftest import tiny_causal_lm


def test_repeat_prompts():
    assert repeat_prompts(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]
    with pytest.raises(ValueError, match="group_size"):
        repeat_prompts(["a"], 0)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda p, c: [1.0] * (len(c) - 1), "returned 2 scores for 3"),
        (lambda p, c: [1.0, float("nan"), 0.0], "non-finite"),
        (lambda p, c: ["x", "y", "z"], "numbers"),
    ],
)
def test_bad_reward_functions_are_named(fn, match):
    with pytest.raises(RewardError, match=match):
        compute_rewards(fn, ["p"] * 3, ["a", "b", "c"])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_rollout_logprobs_match_a_fresh_pass(arch):
    policy, tok = tiny_causal_lm(arch, seed=1)
    policy.train()  # GPT-2 has dropout: the rollout must still record dropout-free log-probs
    reference = copy.deepcopy(policy)
    with torch.no_grad():  # perturb the policy so that its KL to the reference is not zero
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = repeat_prompts(["the film was ", "a "], 3)
    roll = collect_rollout(
        policy, tok, prompts, lambda p, c: [float(len(x)) for x in c], reference, max_new_tokens=6, seed=0
    )
    g = roll.gen
    policy.eval()
    assert policy.training is False and reference.training is False
    assert roll.scores.tolist() == [float(len(t)) for t in g.texts]
    args = (g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask)
    fresh = response_logprobs(policy, *args).token_logps
    torch.testing.assert_close(roll.logprobs, fresh.detach(), atol=1e-5, rtol=1e-5)
    ref = response_logprobs(reference, *args).token_logps
    torch.testing.assert_close(roll.ref_logprobs, ref.detach(), atol=1e-5, rtol=1e-5)
    assert (roll.logprobs * (1 - roll.mask)).abs().sum() == 0
    assert not torch.equal(roll.logprobs, roll.ref_logprobs)


def test_disable_dropout():
    policy, _ = tiny_causal_lm("gpt2")
    disable_dropout(policy)
    assert all(m.p == 0 for m in policy.modules() if isinstance(m, torch.nn.Dropout))


def test_missing_eos_penalty():
    policy, tok = tiny_causal_lm("llama", seed=2)
    roll = collect_rollout(
        policy,
        tok,
        ["a "] * 4,
        lambda p, c: [0.0] * len(c),
        max_new_tokens=2,
        seed=0,
        missing_eos_penalty=1.0,
    )
    assert roll.scores.tolist() == [0.0 if f else -1.0 for f in roll.gen.finished.tolist()]
