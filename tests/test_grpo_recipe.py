"""The RLVR recipe in the GRPO trainer: every loss_type and GSPO's sequence-level ratio train, dynamic
sampling keeps only groups with a signal and never loops forever, and DAPO's overlong penalty against a
brute-force twin."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.algos.policy_loss import LOSS_TYPES, sampler_correction_weights
from rlsurvey.algos.rollout import collect_rollout, merge_rollouts, overlong_penalty, repeat_prompts
from rlsurvey.algos.sampler import MismatchedSampler
from rlsurvey.lm import load_model

PROMPTS = ["1+2+3=", "4-1+2=", "9-3-1=", "2+2+2=", "5+4-3=", "7-2+1="]


@pytest.fixture(scope="module")
def reason_base():
    return load_model("reason-base")


def cfg(**kw) -> GRPOConfig:
    base = dict(steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, progress=False, seed=0)
    return GRPOConfig(**{**base, **kw})


def by_length(prompts, completions):
    return [float(len(c) % 3) for c in completions]  # varies within a group: every group has a signal


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_every_loss_type_trains(reason_base, loss_type, level):
    model, tok = reason_base
    policy = copy.deepcopy(model)
    extra = {"clip_eps_high": 5.0} if loss_type == "cispo" else {}
    hist = train_grpo(policy, tok, PROMPTS, by_length,
                      cfg(loss_type=loss_type, importance_sampling_level=level, **extra))  # fmt: skip
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert 0 <= hist[-1]["clip_ratio"] <= 1
    moved = any(not torch.equal(a, b) for a, b in zip(policy.parameters(), model.parameters()))
    assert moved, f"{loss_type}/{level} took no step"


def test_dynamic_sampling_with_a_reward_that_is_always_zero_stops(reason_base):
    """No group ever has a signal: each step samples max_sampling_rounds times, then moves on; nothing is
    learned (every advantage is 0) and the dropped share is logged as 1."""
    model, tok = reason_base
    policy = copy.deepcopy(model)
    calls = []

    def zero(prompts, completions):
        calls.append(len(completions))
        return [0.0] * len(completions)

    hist = train_grpo(policy, tok, PROMPTS, zero, cfg(dynamic_sampling=True, max_sampling_rounds=3))
    assert len(calls) == 2 * 3
    assert [h["dynamic_sampling/frac_dropped"] for h in hist] == [1.0, 1.0]
    assert [h["dynamic_sampling/rounds"] for h in hist] == [3.0, 3.0]
    assert all(torch.equal(a, b) for a, b in zip(policy.parameters(), model.parameters()))


def test_dynamic_sampling_fills_the_batch_with_informative_groups(reason_base):
    model, tok = reason_base
    seen = []

    def half_constant(prompts, completions):  # prompts starting with an even digit: all-equal rewards
        out = [0.0 if int(p[0]) % 2 == 0 else float(len(c) % 2) for p, c in zip(prompts, completions)]
        seen.append((list(prompts), out))
        return out

    hist = train_grpo(copy.deepcopy(model), tok, PROMPTS, half_constant,
                      cfg(steps=3, dynamic_sampling=True, max_sampling_rounds=4))  # fmt: skip
    for h in hist:
        assert 0 < h["dynamic_sampling/frac_dropped"] < 1
        assert h["frac_reward_zero_std"] == 0.0, "the trained batch holds only groups with a signal"
    assert all(h["dynamic_sampling/rounds"] >= 2 for h in hist)


def test_merge_rollouts_keeps_each_row(reason_base):
    model, tok = reason_base
    a = collect_rollout(model, tok, repeat_prompts(["1+2+3="], 2), by_length, max_new_tokens=5, seed=1)
    b = collect_rollout(model, tok, repeat_prompts(["9-3-1+2+4="], 3), by_length, max_new_tokens=12, seed=2)
    m = merge_rollouts([a, b], tok.pad_token_id)
    assert (
        m.completions == a.completions + b.completions
        and m.scores.tolist() == a.scores.tolist() + b.scores.tolist()
    )
    for part, rows in ((a, range(0, 2)), (b, range(2, 5))):
        for j, i in enumerate(rows):
            n = int(part.gen.response_mask[j].sum())
            assert m.gen.response_ids[i, :n].tolist() == part.gen.response_ids[j, :n].tolist()
            p = int(part.gen.prompt_mask[j].sum())
            assert m.gen.prompt_ids[i, -p:].tolist() == part.gen.prompt_ids[j, -p:].tolist()
            assert torch.allclose(m.logprobs[i, :n], part.logprobs[j, :n])
    sel = m.select([4, 0])
    assert sel.completions == [b.completions[2], a.completions[0]]


def test_overlong_penalty_equals_the_papers_piecewise_formula():
    L_max, L_cache = 20, 6
    lengths = torch.arange(0, 22)
    finished = lengths <= L_max
    got = overlong_penalty(lengths, finished, L_max, L_cache)
    for n, f, g in zip(lengths.tolist(), finished.tolist(), got.tolist()):
        if not f or n > L_max:
            want = -1.0
        elif n <= L_max - L_cache:
            want = 0.0
        else:
            want = ((L_max - L_cache) - n) / L_cache
        assert g == pytest.approx(want)
    with pytest.raises(ValueError, match="overlong buffer"):
        overlong_penalty(lengths, finished, L_max, 0)


def test_overlong_shaping_is_added_to_the_reward(reason_base):
    model, tok = reason_base
    hist = train_grpo(copy.deepcopy(model), tok, PROMPTS, lambda p, c: [1.0] * len(c),
                      cfg(steps=1, max_new_tokens=6, overlong_buffer=3))  # fmt: skip
    assert hist[0]["reward"] < 1.0 and hist[0]["completions/overlong_penalized"] > 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"loss_type": "ppo"}, "loss_type must be one of"),
        ({"loss_type": "cispo"}, "needs clip_eps_high"),
        ({"importance_sampling_level": "sequence"}, "needs a loss_type"),
        ({"overlong_buffer": 40}, "must not exceed max_new_tokens"),
        ({"max_sampling_rounds": 0}, "max_sampling_rounds"),
    ],
)
def test_bad_recipe_settings_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        cfg(**kw).validate()


def test_sampler_correction_weights_against_a_brute_force_twin():
    g = torch.Generator().manual_seed(3)
    train = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    sampler = train + 0.8 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).double()
    cap = 2.0
    for mode in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        w, stats = sampler_correction_weights(train, sampler, mask, mode, cap)
        for i in range(4):
            n = int(mask[i].sum())
            ratios = [math.exp(train[i, t] - sampler[i, t]) for t in range(n)]
            if mode.startswith("sequence"):
                r = math.prod(ratios)
                want = [min(r, cap) if mode.endswith("truncate") else float(r <= cap)] * n
                got = [w[i, 0].item()] * n
            else:
                want = [min(r, cap) if mode.endswith("truncate") else float(r <= cap) for r in ratios]
                got = w[i, :n].tolist()
            assert got == pytest.approx(want, rel=1e-12)
        gap = sum(
            abs(train[i, t] - sampler[i, t]).item() for i in range(4) for t in range(int(mask[i].sum()))
        )
        assert stats["sampler/logprob_gap"].item() == pytest.approx(gap / mask.sum().item())
    with pytest.raises(ValueError, match="sampler_correction must be one of"):
        sampler_correction_weights(train, sampler, mask, "clip", cap)


def test_an_exact_sampler_changes_nothing_and_a_lossy_one_is_measured(reason_base):
    """A float32 sampler without noise is the policy itself: without a correction the run equals the plain
    one exactly (the same tokens, the same update); the measured gap is float round-off (< 1e-5 nats), so
    truncated importance sampling moves no weight by more than one Adam step (lr). A noisy bfloat16 sampler
    shows a gap, and every correction mode trains."""
    model, tok = reason_base
    plain = copy.deepcopy(model)
    train_grpo(plain, tok, PROMPTS, by_length, cfg())
    for mode in (None, "token_truncate"):
        exact = copy.deepcopy(model)
        hist = train_grpo(exact, tok, PROMPTS, by_length, cfg(sampler_correction=mode),
                          sampler=MismatchedSampler(exact, dtype=torch.float32))  # fmt: skip
        assert all(h["sampler/logprob_gap"] < 1e-5 for h in hist), [h["sampler/logprob_gap"] for h in hist]
        for a, b in zip(plain.parameters(), exact.parameters()):
            torch.testing.assert_close(a, b, atol=0 if mode is None else 2 * cfg().learning_rate, rtol=0)
    for mode in (None, "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        policy = copy.deepcopy(model)
        hist = train_grpo(policy, tok, PROMPTS, by_length, cfg(sampler_correction=mode),
                          sampler=MismatchedSampler(policy, noise=0.05))  # fmt: skip
        assert all(h["sampler/logprob_gap"] > 0 for h in hist), mode
        assert any(not torch.equal(a, b) for a, b in zip(policy.parameters(), model.parameters())), mode
        if mode is not None and mode.endswith("mask"):
            assert all(0 <= h["sampler/masked_frac"] <= 1 for h in hist)


def test_dr_grpo_preset_sets_both_of_its_changes():
    from rlsurvey.algos.grpo import DR_GRPO_DEFAULTS, dr_grpo_config

    cfg = dr_grpo_config(steps=7)
    assert (cfg.advantage, cfg.aggregation, cfg.kl_coef, cfg.steps) == ("dr_grpo", "constant", 0.0, 7)
    assert {k: getattr(cfg, k) for k in DR_GRPO_DEFAULTS} == DR_GRPO_DEFAULTS
    with pytest.raises(ValueError, match="Dr. GRPO fixes"):
        dr_grpo_config(aggregation="sequence_mean")
    with pytest.raises(ValueError, match="unknown GRPOConfig fields"):
        dr_grpo_config(stepz=3)
