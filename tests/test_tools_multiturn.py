"""Multi-turn episodes with a tool: the layout and masks of a scripted episode, the turn limit and the output
bounds, log-probs against a brute-force loop over the policy's tokens, and a GRPO step that takes no gradient
from the observation tokens."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlsurvey.algos import grpo as grpo_mod
from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.algos.multiturn import (
    collect_episodes,
    episode_logprobs,
    episode_metrics,
    evaluate_episodes,
    lm_policy_turn,
    run_episodes,
)
from rlsurvey.algos.rollout import merge_rollouts
from rlsurvey.lm.models import random_causal_lm
from rlsurvey.lm.tokenizer import train_char_tokenizer
from rlsurvey.tasks import tools as tw

ALPHABET = "0123456789+-*/()<>{} error:abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def tok():
    return train_char_tokenizer([ALPHABET])


def _lm(tok, seed=0, arch="llama"):
    return random_causal_lm(arch, len(tok), tok.pad_token_id, tok.eos_token_id, seed=seed)


def scripted(tok, script: dict[str, list[str]]):
    """A policy_turn that writes the given turns of each prompt in order ("$" stands for EOS)."""
    calls: dict[str, int] = {}
    prompts = {tuple(tok(p, add_special_tokens=False)["input_ids"]): p for p in script}

    def turn(prefixes, budgets):
        out = []
        for prefix in prefixes:
            p = next(p for ids, p in prompts.items() if tuple(prefix[: len(ids)]) == ids)
            k = calls[p] = calls.get(p, -1) + 1
            text = script[p][k]
            ids = tok(text.rstrip("$"), add_special_tokens=False)["input_ids"]
            out.append(ids + [tok.eos_token_id] * text.endswith("$"))
        return out

    return turn


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_masks_of_a_scripted_episode_equal_hand_built_ones(tok):
    env = tw.CalculatorEnv(max_turns=3)
    script = {
        "37*58=": ["<37*5>", "<37*58>", "2146$"],  # two calls, then the answer
        "12+30=": ["42$"],  # a direct answer
        "9*9=": ["<9//0>", "<9*9>", "<81*1>"],  # an error, a call, and a call at the turn limit
    }
    batch = run_episodes(scripted(tok, script), tok, list(script), env, max_new_tokens=60)
    eos = tok.eos_token_id
    expected = [
        [("<37*5>", 1), ("{185}", 0), ("<37*58>", 1), ("{2146}", 0), ("2146", 1)],
        [("42", 1)],
        [("<9//0>", 1), ("{error:division by zero}", 0), ("<9*9>", 1), ("{81}", 0), ("<81*1>", 1)],
    ]
    finished = [True, True, False]
    for b, (segments, done) in enumerate(zip(expected, finished)):
        ids, mask = [], []
        for text, own in segments:
            ids += _ids(tok, text)
            mask += [own] * len(text)  # one token per character
        if done:
            ids, mask = ids + [eos], mask + [1]
        n = len(ids)
        assert batch.gen.response_ids[b, :n].tolist() == ids
        assert batch.action_mask[b].tolist() == mask + [0] * (batch.action_mask.shape[1] - n)
        assert batch.gen.response_mask[b].tolist() == [1] * n + [0] * (batch.action_mask.shape[1] - n)
        assert bool(batch.gen.finished[b]) == done
    assert [ep.calls for ep in batch.episodes] == [2, 0, 2]  # the call at the turn limit is not sent
    assert [ep.answered for ep in batch.episodes] == [2, 0, 2]
    assert [ep.turns for ep in batch.episodes] == [3, 1, 3]
    assert batch.gen.texts[0] == "<37*5>{185}<37*58>{2146}2146"
    assert tw.accuracy_reward(list(script), batch.gen.texts).tolist() == [1.0, 1.0, 0.0]
    n = batch.gen.response_mask.sum().item()
    assert episode_metrics(batch, tok, env) == {
        "call_rate": 2 / 3, "calls": 4 / 3, "answered": 4 / 3, "turns": 7 / 3, "error_rate": 1 / 4,
        "length": n / 3, "policy_tokens": batch.action_mask.sum().item() / 3,
    }  # fmt: skip


def test_the_token_budget_cuts_turns_and_leaves_out_an_observation_that_does_not_fit(tok):
    env = tw.CalculatorEnv(max_turns=5)
    script = {"37*58=": ["<37*58>", "2146$"], "9*9=": ["<9*9>", "81$"]}
    # "<37*58>" is 7 tokens, "{2146}" 6 more: 13 >= 13, no room left after it, so the episode ends there
    batch = run_episodes(scripted(tok, script), tok, list(script), env, max_new_tokens=13)
    assert batch.gen.texts == ["<37*58>", "<9*9>{81}81"]
    # the policy made the call and the env was asked; the answer did not fit
    assert batch.episodes[0].calls == 1 and batch.episodes[0].answered == 0 and not batch.gen.finished[0]
    assert batch.episodes[1].calls == 1 and batch.episodes[1].answered == 1
    batch = run_episodes(scripted(tok, {"9*9=": ["<9*9>", "81$"]}), tok, ["9*9="], env, max_new_tokens=3)
    assert batch.gen.texts == ["<9*"] and batch.action_mask.tolist() == [[1, 1, 1]]


SCRIPT_BUSY = {
    "12+45+78+33=": ["<12+45+78+33>", "168$"],  # a sum call: 13 tokens, the error 22 more, 35 > 32
    "37*58=": ["<37*58>", "2146$"],  # a product call: 7 + 22 = 29 fit, 3 tokens are left for the answer
    "9*9=": ["81$"],  # a direct answer
}


def test_a_call_whose_observation_does_not_fit_is_made_but_not_answered(tok):
    env = tw.FlakyCalculatorEnv(failure_rate=1.0)  # every call refused: {error:busy try again}
    batch = run_episodes(scripted(tok, SCRIPT_BUSY), tok, list(SCRIPT_BUSY), env, max_new_tokens=32)
    assert batch.gen.texts == ["<12+45+78+33>", "<37*58>{error:busy try again}214", "81"]
    assert [ep.calls for ep in batch.episodes] == [1, 1, 0]
    assert [ep.answered for ep in batch.episodes] == [0, 1, 0]
    got = episode_metrics(batch, tok, env)
    assert got["call_rate"] == 2 / 3 and got["calls"] == 2 / 3 and got["answered"] == 1 / 3
    assert got["error_rate"] == 1.0  # of the observations appended: the one that fit


def test_evaluate_episodes_counts_unanswered_calls_as_calls(tok, monkeypatch):
    from rlsurvey.algos import multiturn

    monkeypatch.setattr(multiturn, "lm_policy_turn", lambda *a, **kw: scripted(tok, SCRIPT_BUSY))
    env = tw.FlakyCalculatorEnv(failure_rate=1.0)
    got = evaluate_episodes(_lm(tok), tok, list(SCRIPT_BUSY), env, tw.accuracy_reward, max_new_tokens=32)
    # both calls were made and both episodes are wrong; the one direct answer is right
    assert got["call_rate"] == 2 / 3 and got["answered"] == 1 / 3
    assert got["reward_calling"] == 0.0 and got["reward_direct"] == 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.text(alphabet="0123456789+-*/()<>{}_. ", max_size=30), min_size=1, max_size=8),
    st.integers(1, 4),
    st.integers(1, 60),
)
def test_turn_limit_and_output_bounds_hold_for_any_turns(tok, turns, max_turns, budget):
    env = tw.CalculatorEnv(max_turns=max_turns, max_observation_chars=12)
    script = {"37*58=": [t + ">" for t in turns[:-1]] + [turns[-1] + "$"]}
    batch = run_episodes(scripted(tok, script), tok, list(script), env, max_new_tokens=budget)
    ep = batch.episodes[0]
    assert ep.turns <= max_turns and ep.answered <= ep.calls <= max_turns - 1
    assert ep.answered == sum(not own for own, _ in ep.segments)
    assert len(ep.ids) <= budget and batch.gen.response_mask.sum() == len(ep.ids)
    for own, seg in ep.segments:
        if not own:
            assert len(seg) <= env.max_observation_chars
    assert batch.action_mask.sum() + sum(len(s) for own, s in ep.segments if not own) == len(ep.ids)


def _brute_logprobs(model, prompt_ids: list[int], ids: list[int], action: list[int]) -> list[float]:
    """log π(y_t | prompt, y_<t) by one forward pass per policy token, on the unpadded prefix; 0 elsewhere."""
    out = []
    for t, (y, a) in enumerate(zip(ids, action)):
        if not a:
            out.append(0.0)
            continue
        x = torch.tensor([prompt_ids + ids[:t]])
        logits = model(input_ids=x).logits[0, -1]
        out.append(torch.log_softmax(logits.double(), -1)[y].item())
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_episode_logprobs_equal_a_brute_force_loop_over_the_policy_tokens(tok, arch):
    model = _lm(tok, seed=1, arch=arch)
    env = tw.CalculatorEnv()
    script = {
        "37*58=": ["<37*5>", "<37*58>", "2146$"], "12+30+7=": ["49$"], "9*9=": ["x<9*9>", "<1//0>", "8"],
    }  # fmt: skip
    batch = run_episodes(scripted(tok, script), tok, list(script), env, max_new_tokens=60)
    with torch.no_grad():
        got = episode_logprobs(model, batch.gen, batch.action_mask, with_entropy=True)
    for b, ep in enumerate(batch.episodes):
        n = len(ep.ids)
        want = _brute_logprobs(model, _ids(tok, ep.prompt), ep.ids, ep.action_mask)
        torch.testing.assert_close(got.token_logps[b, :n].double(), torch.tensor(want, dtype=torch.double),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
        assert got.token_logps[b, n:].abs().sum() == 0 and got.entropy[b, n:].abs().sum() == 0
        obs = torch.tensor(ep.action_mask) == 0
        assert got.token_logps[b, :n][obs].abs().sum() == 0 and got.entropy[b, :n][obs].abs().sum() == 0
        torch.testing.assert_close(got.seq_logps[b].double(), torch.tensor(sum(want), dtype=torch.double),
                                   atol=1e-4, rtol=1e-5)  # fmt: skip


def test_collect_episodes_samples_reproducibly_and_answers_each_call(tok):
    model = _lm(tok, seed=2)
    env = tw.CalculatorEnv(max_turns=3)
    prompts = tw.sample_prompts(48, seed=0)

    def collect(seed, mask_observations=True):
        return collect_episodes(
            model, tok, prompts, tw.accuracy_reward, max_new_tokens=24, temperature=1.5, seed=seed, env=env,
            mask_observations=mask_observations,
        )  # fmt: skip

    a, b = collect(5), collect(5)
    assert a.completions == b.completions and torch.equal(a.action_mask, b.action_mask)
    assert torch.equal(a.logprobs, b.logprobs)
    g = a.gen
    assert g.response_mask.sum(1).max() <= 24
    assert torch.all(a.action_mask <= g.response_mask)
    assert torch.equal(a.mask, a.action_mask.float())
    assert (a.logprobs * (1 - a.mask)).abs().sum() == 0 and (a.entropy * (1 - a.mask)).abs().sum() == 0
    n_obs = int((g.response_mask - a.action_mask).sum())
    assert n_obs > 0, "the random policy should have called the tool at least once"
    for b in range(len(prompts)):  # every observation is the calculator's answer to the turn before it
        ids, act = g.response_ids[b].tolist(), a.action_mask[b].tolist()
        runs, start = [], 0
        for t in range(1, g.response_mask[b].sum().item() + 1):
            if t == g.response_mask[b].sum().item() or act[t] != act[start]:
                runs.append((act[start], tok.decode(ids[start:t], skip_special_tokens=True)))
                start = t
        for (own, turn), (own_next, obs) in zip(runs, runs[1:]):
            if not own_next:
                assert own and obs == env.observe(turn)
    unmasked = collect(5, mask_observations=False)
    assert unmasked.completions == a.completions and torch.equal(unmasked.mask, g.response_mask.float())
    assert torch.equal(a.logprobs, unmasked.logprobs * a.mask)


def test_evaluate_episodes_is_greedy_and_reads_the_episodes_it_plays(tok):
    model = _lm(tok, seed=4)
    env = tw.CalculatorEnv()
    prompts = tw.sample_prompts(16, seed=3)
    got = evaluate_episodes(model, tok, prompts, env, tw.accuracy_reward, max_new_tokens=20)
    assert got == evaluate_episodes(model, tok, prompts, env, tw.accuracy_reward, max_new_tokens=20, seed=9)
    batch = run_episodes(lm_policy_turn(model, tok, ">", temperature=0.0), tok, prompts, env, 20)
    right = tw.accuracy_reward(prompts, batch.gen.texts)
    called = np.array([ep.calls > 0 for ep in batch.episodes])
    split = {k: right[rows].mean() if rows.any() else math.nan for k, rows in
             (("reward_calling", called), ("reward_direct", ~called))}  # fmt: skip
    want = {"reward": right.mean(), **episode_metrics(batch, tok, env), **split}
    assert got == pytest.approx(want, nan_ok=True)


def _one_step(tok, env, include_observations: bool, perturb: bool, monkeypatch, overrides: dict):
    """One GRPO step of a fresh copy of the same policy on multi-turn episodes; with `perturb`, the trainer's
    log-probs and entropy of the observation tokens are changed (in value and in gradient) before the loss
    sees them. include_observations: train with the observation tokens wrongly in the mask."""
    policy = _lm(tok, seed=3)
    real = grpo_mod.response_logprobs
    captured: dict = {}

    def perturbed(model, prompt_ids, prompt_mask, response_ids, response_mask, **kw):
        out = real(model, prompt_ids, prompt_mask, response_ids, response_mask, **kw)
        if perturb:
            obs = captured["obs"]
            assert obs.shape == out.token_logps.shape and obs.sum() > 0
            out.token_logps = out.token_logps + obs * (0.25 * out.token_logps + 0.5)
            if out.entropy is not None:
                out.entropy = out.entropy + 100.0 * obs
        return out

    monkeypatch.setattr(grpo_mod, "response_logprobs", perturbed)

    def rollout_fn(*args, **kw):
        roll = collect_episodes(*args, env=env, **kw)
        captured["obs"] = (roll.gen.response_mask - roll.action_mask).float()
        if include_observations:  # the same episodes (same seed), collected without the mask
            roll = collect_episodes(*args, env=env, mask_observations=False, **kw)
        return roll

    def reward(prompts, completions):  # rewards that differ within a group: calls and length
        return [tw.n_calls(c) + len(c) / 100 for c in completions]

    cfg = GRPOConfig(**{"steps": 1, "prompts_per_step": 6, "group_size": 4, "max_new_tokens": 24,
                        "temperature": 1.5, "learning_rate": 1e-2, "progress": False, "seed": 1,
                        **overrides})  # fmt: skip
    history = train_grpo(policy, tok, tw.sample_prompts(6, seed=0), reward, cfg, rollout_fn=rollout_fn)
    return policy, history[-1], captured


LOSSES = [
    {"kl_coef": 0.0},
    {"kl_coef": 0.1},  # the k3 KL in the loss
    {"loss_type": "dapo", "kl_coef": 0.1, "epochs_per_rollout": 2},  # old log-probs from the rollout
    {"loss_type": "grpo", "importance_sampling_level": "sequence"},  # GSPO's sequence ratio
    {"loss_type": "cispo", "clip_eps_high": 5.0},
    {"kl_coef": 0.1, "kl_in_reward": True, "advantage": "rloo"},  # RLOO's KL in the reward
]


@pytest.mark.parametrize("overrides", LOSSES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_a_grpo_step_takes_no_gradient_from_observation_tokens(tok, monkeypatch, overrides):
    env = tw.CalculatorEnv()
    base, row, captured = _one_step(tok, env, False, False, monkeypatch, overrides)
    assert captured["obs"].sum() > 0
    assert any(not torch.equal(p, q) for p, q in zip(base.parameters(), _lm(tok, seed=3).parameters()))
    pert, row_p, _ = _one_step(tok, env, False, True, monkeypatch, overrides)
    assert row_p["loss"] == row["loss"] and row_p["entropy"] == row["entropy"]
    for (name, p), q in zip(base.named_parameters(), pert.parameters()):
        assert torch.equal(p, q), name
    if overrides != LOSSES[1]:
        return
    # the control: with the observations wrongly in the mask, the same perturbation changes the update (the
    # loss's value need not change: one update per rollout takes pi_old from the same pass, so the ratio is 1)
    base_u, row_u, _ = _one_step(tok, env, True, False, monkeypatch, overrides)
    pert_u, row_up, _ = _one_step(tok, env, True, True, monkeypatch, overrides)
    assert row_up["entropy"] != row_u["entropy"]
    assert any(not torch.equal(p, q) for p, q in zip(base_u.parameters(), pert_u.parameters()))


def test_multiturn_rollouts_are_refused_with_process_rewards(tok):
    model = _lm(tok)
    with pytest.raises(ValueError, match="rollout_fn"):
        train_grpo(
            copy.deepcopy(model), tok, ["9*9="], tw.accuracy_reward, GRPOConfig(steps=1, progress=False),
            step_reward_fn=lambda p, c: [([0], [0.0])] * len(c),
            rollout_fn=functools.partial(collect_episodes, env=tw.CalculatorEnv()),
        )  # fmt: skip


def test_select_and_merge_keep_the_action_mask(tok):
    model = _lm(tok, seed=5)
    env = tw.CalculatorEnv()
    prompts = tw.sample_prompts(4, seed=5)
    a = collect_episodes(model, tok, prompts, tw.accuracy_reward, max_new_tokens=10, seed=1, env=env)
    b = collect_episodes(model, tok, prompts, tw.accuracy_reward, max_new_tokens=20, seed=2, env=env)
    merged = merge_rollouts([a, b], tok.pad_token_id)
    assert merged.action_mask.shape == merged.gen.response_mask.shape
    for part, rows in ((a, slice(0, 4)), (b, slice(4, 8))):
        w = part.action_mask.shape[1]
        assert torch.equal(merged.action_mask[rows, :w], part.action_mask)
        assert merged.action_mask[rows, w:].abs().sum() == 0
    picked = merged.select([5, 1])
    assert torch.equal(picked.action_mask, merged.action_mask[[5, 1]])
    assert torch.equal(picked.mask, merged.mask[[5, 1]])


def test_dynamic_sampling_runs_on_multiturn_episodes(tok):
    cfg = GRPOConfig(steps=1, prompts_per_step=4, group_size=3, max_new_tokens=16, temperature=1.5,
                     dynamic_sampling=True, progress=False)  # fmt: skip
    history = train_grpo(
        _lm(tok, seed=6), tok, tw.sample_prompts(8, seed=0), lambda p, c: [len(x) / 10 for x in c], cfg,
        rollout_fn=functools.partial(collect_episodes, env=tw.CalculatorEnv()),
    )  # fmt: skip
    assert history[-1]["step"] == 1 and history[-1]["dynamic_sampling/rounds"] >= 1
