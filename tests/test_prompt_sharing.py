"""Prompt sharing: a prompt repeated G times (a GRPO group) is run through the model once, in generation
and in the log-prob pass. Each shortcut is checked against the plain path it replaces: the same tokens under
a seed, the same log-probs and entropies, gradients and a training step equal to float tolerance. Generation
also stops computing rows that have ended; a cache-free sampler checks that too."""

from __future__ import annotations

import copy
import random

import pytest
import torch

import rlsurvey.algos.grpo as grpo_module
from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.algos.rollout import disable_dropout, repeat_prompts
from rlsurvey.lm import generate, tokenize_prompts
from rlsurvey.lm.logprobs import response_logprobs
from tests.conftest import tiny_causal_lm

PROMPTS = ["12+3=", "7=", "45-11+9=", "1", "3+3="]


def grouped(prompts, g, shuffle_seed=None):
    rows = repeat_prompts(prompts, g)
    if shuffle_seed is not None:  # repeats that are not side by side must be found too
        random.Random(shuffle_seed).shuffle(rows)
    return rows


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def lm(request):
    model, tok = tiny_causal_lm(request.param, seed=5)
    return disable_dropout(model), tok  # GPT-2 has dropout; train-mode passes must be deterministic


def test_tokenize_prompts_matches_a_per_row_loop(lm):
    _, tok = lm
    prompts = grouped(PROMPTS, 3, shuffle_seed=0) + ["a b c", "9"]
    ids, mask = tokenize_prompts(tok, prompts)
    width = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    assert ids.shape == mask.shape == (len(prompts), width)
    for i, p in enumerate(prompts):
        row = tok(p, add_special_tokens=False)["input_ids"]
        pad = width - len(row)
        assert ids[i].tolist() == [tok.pad_token_id] * pad + row
        assert mask[i].tolist() == [0] * pad + [1] * len(row)


@pytest.mark.parametrize("shuffle_seed", [None, 1])
@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (4, 0.9)])
def test_shared_generation_samples_the_same_tokens(lm, shuffle_seed, top_k, top_p):
    model, tok = lm
    prompts = grouped(PROMPTS, 4, shuffle_seed)
    kw = dict(max_new_tokens=6, temperature=1.3, top_k=top_k, top_p=top_p, seed=11, batch_size=7)
    plain = generate(model, tok, prompts, share_prompts=False, **kw)
    shared = generate(model, tok, prompts, share_prompts=True, **kw)
    for name in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "finished"):
        assert torch.equal(getattr(plain, name), getattr(shared, name)), name
    assert plain.texts == shared.texts
    assert len(set(plain.texts)) > len(PROMPTS)  # sampled, not constant: the comparison means something


def test_shared_generation_runs_each_distinct_prompt_once(lm):
    model, tok = lm
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True
    )
    try:
        generate(model, tok, grouped(PROMPTS, 4, shuffle_seed=2), max_new_tokens=2, seed=0)
        prefill_shared = seen[0]
        seen.clear()
        generate(
            model, tok, grouped(PROMPTS, 4, shuffle_seed=2), max_new_tokens=2, seed=0, share_prompts=False
        )
    finally:
        hook.remove()
    assert prefill_shared[0] == len(PROMPTS) and seen[0][0] == 4 * len(PROMPTS)


def _logprobs_and_grads(model, gen, share, weights):
    model.zero_grad(set_to_none=True)
    args = (gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
    out = response_logprobs(model, *args, temperature=0.8, with_entropy=True, share_prompts=share)
    (out.seq_logps * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("shuffle_seed", [None, 3])
@pytest.mark.parametrize("max_new_tokens", [1, 5])
def test_shared_logprobs_and_gradients_equal_the_plain_pass(lm, shuffle_seed, max_new_tokens):
    model, tok = lm
    model.train()
    gen = generate(model, tok, grouped(PROMPTS, 3, shuffle_seed), max_new_tokens=max_new_tokens, seed=4)
    assert gen.response_ids.shape[1] == max_new_tokens or max_new_tokens > 1
    weights = torch.linspace(-1.0, 1.0, len(gen.prompts))
    plain, g_plain = _logprobs_and_grads(model, gen, False, weights)
    shared, g_shared = _logprobs_and_grads(model, gen, True, weights)
    torch.testing.assert_close(shared.token_logps, plain.token_logps, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(shared.entropy, plain.entropy, atol=1e-6, rtol=1e-5)
    assert g_plain.keys() == g_shared.keys() and len(g_plain) > 0
    for name, g in g_plain.items():
        torch.testing.assert_close(g_shared[name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_distinct_prompts_take_the_plain_pass(lm):
    """No prompt repeats: nothing to share, and the result is the plain pass bit for bit."""
    model, tok = lm
    gen = generate(model, tok, PROMPTS, max_new_tokens=4, seed=2)
    args = (gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
    with torch.no_grad():
        a = response_logprobs(model, *args, share_prompts=False).token_logps
        b = response_logprobs(model, *args, share_prompts=True).token_logps
    assert torch.equal(a, b)


def test_gradient_checkpointing_falls_back_to_the_plain_pass():
    model, tok = tiny_causal_lm("llama", seed=6)
    gen = generate(model, tok, grouped(PROMPTS[:2], 3), max_new_tokens=3, seed=1)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.train()
    args = (gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
    a = response_logprobs(model, *args, share_prompts=False).token_logps
    b = response_logprobs(model, *args, share_prompts=True).token_logps
    assert torch.equal(a, b)


def test_shared_prompt_step_equals_the_plain_step(monkeypatch):
    """One GRPO step with shared prompts moves the weights as the plain computation does. Plain SGD stands in
    for AdamW here: Adam's first step is about lr * sign(gradient), which would turn rounding-level gradient
    differences on near-zero entries into full-size steps."""

    def sgd(params, lr, weight_decay=0.0, foreach=None):
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)

    monkeypatch.setattr(grpo_module.torch.optim, "AdamW", sgd)
    policy, tok = tiny_causal_lm("llama", seed=8)
    before = copy.deepcopy(policy)
    cfg = GRPOConfig(
        steps=1, prompts_per_step=3, group_size=4, max_new_tokens=4, learning_rate=0.5, seed=3,
        max_grad_norm=1e9, progress=False,
    )  # fmt: skip

    def length_reward(prompts, completions):
        return [float(len(c)) for c in completions]

    runs = {}
    real = grpo_module.response_logprobs
    for share in (True, False):
        model = copy.deepcopy(before)
        monkeypatch.setattr(
            grpo_module,
            "response_logprobs",
            lambda *a, share=share, **k: real(*a, **{**k, "share_prompts": share}),
        )
        hist = train_grpo(model, tok, PROMPTS, length_reward, cfg)
        runs[share] = (model, hist[-1])
    (shared, row_s), (plain, row_p) = runs[True], runs[False]
    assert row_s["loss"] == pytest.approx(row_p["loss"], abs=1e-6)
    assert row_s["entropy"] == pytest.approx(row_p["entropy"], rel=1e-6)
    moved = 0.0
    for (name, p), q, b in zip(shared.named_parameters(), plain.parameters(), before.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
        moved = max(moved, (q - b).abs().max().item())
    assert moved > 1e-4  # the step did something, so equal weights are not trivially equal


def brute_force_sample(model, tok, prompts, max_new_tokens, temperature, seed):
    """Sampling without a KV cache or any shortcut: each step runs the whole batch over the prompt and the
    tokens so far, and draws from the same generator (every row each step, as `generate` does)."""
    gen = torch.Generator().manual_seed(seed)
    seqs, attn = tokenize_prompts(tok, prompts)
    done = torch.zeros(len(prompts), dtype=torch.bool)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            pos = (attn.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=seqs, attention_mask=attn, position_ids=pos, use_cache=False).logits[
                :, -1
            ]
            probs = torch.softmax(logits.float() / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            out.append(nxt)
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
            seqs = torch.cat([seqs, nxt[:, None]], 1)
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
    return torch.stack(out, 1)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generation_matches_a_cache_free_sampler_when_rows_end_early(arch):
    model, tok = tiny_causal_lm(arch, seed=9)
    disable_dropout(model).eval()
    with torch.no_grad():  # make EOS likely, so that rows end at different steps and are dropped
        model.lm_head.weight[tok.eos_token_id] += 0.8 * model.lm_head.weight.mean(0)
    prompts = grouped(PROMPTS, 6, shuffle_seed=4)
    sizes = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        got = generate(model, tok, prompts, max_new_tokens=10, temperature=1.2, seed=21)
    finally:
        hook.remove()
    want = brute_force_sample(model, tok, prompts, 10, 1.2, seed=21)
    assert torch.equal(got.response_ids, want)
    ended = got.response_mask.sum(1)
    assert ended.min() < ended.max()  # rows ended at different steps ...
    assert len(PROMPTS) == sizes[0] and min(sizes[1:]) < len(prompts)  # ... and ended rows were dropped
