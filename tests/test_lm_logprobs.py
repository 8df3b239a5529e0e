"""Log-probs, entropies and KL estimators against brute force, on two architectures."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.lm import generate
from rlsurvey.lm.kl import exact_kl, kl_estimate, kl_k1, kl_k2, kl_k3, reference_kl
from rlsurvey.lm.logprobs import (
    model_accepts,
    response_logprobs,
    score_responses,
    sequence_logprobs,
    tokenize_responses,
)
from rlsurvey.lm.models import random_causal_lm
from rlsurvey.lm.tokenizer import train_char_tokenizer

PROMPTS = ["12+3=", "7=", "45-11+9="]
RESPONSES = ["15", "7-0=7", "43"]


@pytest.fixture(scope="module")
def tok():
    return train_char_tokenizer(["0123456789+-= abc"])


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tok):
    return random_causal_lm(request.param, len(tok), tok.pad_token_id, tok.eos_token_id, seed=1)


def brute_force(model, tok, prompt, response, temperature):
    """One unpadded forward pass per response token: log softmax(z / T)[y_t] and its entropy."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    logps, ents = [], []
    for t in range(len(r)):
        with torch.no_grad():
            z = model(input_ids=torch.tensor([p + r[:t]])).logits[0, -1].double() / temperature
        lp = torch.log_softmax(z, -1)
        logps.append(lp[r[t]].item())
        ents.append(-(lp.exp() * lp).sum().item())
    return logps, ents


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.0])
def test_logprobs_match_a_per_token_loop(model, tok, temperature):
    with torch.no_grad():
        out = score_responses(model, tok, PROMPTS, RESPONSES, temperature=temperature, with_entropy=True)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        logps, ents = brute_force(model, tok, p, r, temperature)
        n = len(logps)
        assert int(out.mask[i].sum()) == n
        want_lp, want_h = torch.tensor(logps, dtype=torch.float64), torch.tensor(ents, dtype=torch.float64)
        torch.testing.assert_close(out.token_logps[i, :n].double(), want_lp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.entropy[i, :n].double(), want_h, atol=1e-5, rtol=1e-5)
        assert torch.all(out.token_logps[i, n:] == 0) and torch.all(out.entropy[i, n:] == 0)
        assert out.seq_logps[i].item() == pytest.approx(sum(logps), abs=1e-4)


def test_logprobs_of_generated_responses_match_generation(model, tok):
    """Scoring the ids that generate() produced, with its masks, equals scoring the strings."""
    g = generate(model, tok, PROMPTS, max_new_tokens=6, seed=0)
    with torch.no_grad():
        a = response_logprobs(model, g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask)
    for i, p in enumerate(PROMPTS):
        ids = g.response_ids[i][g.response_mask[i].bool()].tolist()
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        total = 0.0
        for t in range(len(ids)):
            with torch.no_grad():
                z = model(input_ids=torch.tensor([p_ids + ids[:t]])).logits[0, -1]
            total += torch.log_softmax(z.double(), -1)[ids[t]].item()
        assert a.seq_logps[i].item() == pytest.approx(total, abs=1e-4)


def test_logprobs_are_differentiable(model, tok):
    out = score_responses(model, tok, PROMPTS, RESPONSES)
    out.seq_logps.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()


def test_sequence_logprobs_sum_and_average():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sequence_logprobs(lp, m).tolist() == [-3.0, -0.5]
    assert sequence_logprobs(lp, m, average=True).tolist() == [-1.5, -0.5]


def test_bad_inputs_get_clear_errors(model, tok):
    with pytest.raises(ValueError, match="same length"):
        score_responses(model, tok, PROMPTS, RESPONSES[:2])
    with pytest.raises(ValueError, match="non-empty list"):
        tokenize_responses(tok, [])
    with pytest.raises(ValueError, match="empty and add_eos=False"):
        tokenize_responses(tok, ["1", ""], add_eos=False)
    ids, mask = tokenize_responses(tok, ["1"])
    with pytest.raises(ValueError, match="response_mask must have"):
        response_logprobs(model, ids, mask, ids, mask[:, :0])
    with pytest.raises(ValueError, match="at least one real token"):
        response_logprobs(model, ids, torch.zeros_like(mask), ids, mask)


# --- KL estimators ---


@settings(max_examples=200, deadline=None)
@given(st.floats(-20, 0), st.floats(-20, 0))
def test_estimators_match_their_formulas(logp, ref_logp):
    a, b = torch.tensor([logp], dtype=torch.float64), torch.tensor([ref_logp], dtype=torch.float64)
    r = math.exp(ref_logp - logp)
    assert kl_k1(a, b).item() == pytest.approx(-math.log(r) if r > 0 else logp - ref_logp, abs=1e-9)
    assert kl_k2(a, b).item() == pytest.approx(0.5 * (logp - ref_logp) ** 2, rel=1e-9, abs=1e-12)
    assert kl_k3(a, b).item() == pytest.approx((r - 1) - (ref_logp - logp), rel=1e-7, abs=1e-9)
    assert kl_k2(a, b).item() >= 0 and kl_k3(a, b).item() >= 0


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_estimators_against_exact_kl_on_a_small_vocabulary(scale):
    """Sampling y ~ pi: k1 and k3 average to the exact KL(pi || ref) within sampling error; k2 is close."""
    g = torch.Generator().manual_seed(0)
    logits, ref_logits = torch.randn(6, generator=g).double(), (torch.randn(6, generator=g) * scale).double()
    exact = exact_kl(logits, ref_logits).item()
    logp, logq = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    brute = sum(logp[v].exp().item() * (logp[v] - logq[v]).item() for v in range(6))
    assert exact == pytest.approx(brute, rel=1e-6)
    n = 200_000
    y = torch.multinomial(logp.exp(), n, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        k = kl_estimate(logp[y], logq[y], kind=kind)
        assert abs(k.mean().item() - exact) < 4 * k.std().item() / math.sqrt(n), kind
    k2 = kl_estimate(logp[y], logq[y], kind="k2").mean().item()
    assert abs(k2 - exact) < 0.25 * exact  # biased, but second-order accurate
    assert kl_estimate(logp[y], logq[y], kind="k3").std() < kl_estimate(logp[y], logq[y], kind="k1").std()


def test_kl_estimate_mask_and_sequence_sum():
    lp = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -9.0]])
    m = torch.tensor([[1, 1, 0]])
    per_tok = kl_estimate(lp, ref, m, "k1")
    assert per_tok.tolist() == [[0.5, -1.0, 0.0]]
    assert kl_estimate(lp, ref, m, "k1", per_sequence=True).tolist() == [-0.5]
    with pytest.raises(ValueError, match="kind must be one of"):
        kl_estimate(lp, ref, m, "k4")
    with pytest.raises(ValueError, match="ref_logp must have"):
        kl_k3(lp, ref[:, :2])


def test_reference_kl_of_a_model_with_itself_is_zero_and_positive_otherwise(tok):
    pol = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=1)
    ref = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=2)
    g = generate(pol, tok, PROMPTS * 4, max_new_tokens=6, seed=0)
    same = reference_kl(pol, pol, g)
    for kind in ("k1", "k2", "k3", "exact"):
        assert same[kind].abs().max() < 1e-5
    diff = reference_kl(pol, ref, g)
    assert (diff["exact"].sum(-1) > 0).all() and (diff["k3"] >= 0).all()
    args = (g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask)
    with torch.no_grad():
        a, b = response_logprobs(pol, *args, with_entropy=True), response_logprobs(ref, *args)
    torch.testing.assert_close(diff["logp"], a.token_logps)
    torch.testing.assert_close(diff["ref_logp"], b.token_logps)
    torch.testing.assert_close(diff["entropy"], a.entropy)
    torch.testing.assert_close(diff["k1"], (a.token_logps - b.token_logps) * a.mask)


def test_logits_only_where_they_are_read():
    """The response log-prob pass asks the model for the last R + 1 positions only (logits_to_keep), and
    generation's prefill for the last one; the values equal slices of the full [B, P + R, V] logits."""
    from rlsurvey.lm import generate, load_model
    from rlsurvey.lm.logprobs import response_logits

    model, tok = load_model("reason-base")
    shapes = []
    hook = model.register_forward_hook(lambda m, args, out: shapes.append(tuple(out.logits.shape)))
    try:
        gen = generate(
            model, tok, ["3+4-2=", "9-1+5=", "1+1+1="], max_new_tokens=5, seed=0, share_prompts=False
        )
        prefill = shapes[0]
        shapes.clear()
        got = response_logits(model, gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
        scored = shapes[0]
    finally:
        hook.remove()
    r, p = gen.response_ids.shape[1], gen.prompt_ids.shape[1]
    assert prefill[:2] == (3, 1) and scored[:2] == (3, r + 1)
    ids = torch.cat([gen.prompt_ids, gen.response_ids], 1)
    attn = torch.cat([gen.prompt_mask, gen.response_mask], 1)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False).logits
    torch.testing.assert_close(got.detach(), full[:, p - 1 : p + r - 1], rtol=1e-5, atol=1e-5)


def test_model_accepts_reads_the_forward_signature():

    class Takes(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
            return input_ids

    class Plain(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return input_ids

    assert model_accepts(Takes(), "logits_to_keep") and model_accepts(Takes(), "attention_mask")
    assert not model_accepts(Plain(), "logits_to_keep")
    assert not model_accepts(object(), "logits_to_keep")  # no forward at all: False, not an error
    tok = train_char_tokenizer(["abc"])
    llama = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=1)
    assert model_accepts(llama, "logits_to_keep")  # a transformers Llama takes it
