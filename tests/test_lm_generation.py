"""Batched generation: left padding changes nothing, EOS ends an episode, sampling filters are exact."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

from rlsurvey.lm import filter_logits, generate, prepare_tokenizer, tokenize_prompts
from rlsurvey.lm.logprobs import cache_kwargs, response_logprobs, returned_cache
from rlsurvey.lm.models import random_causal_lm
from rlsurvey.lm.tokenizer import EOS, train_char_tokenizer

PROMPTS = ["12+3=", "7=", "45-11+9=", "1"]


@pytest.fixture(scope="module")
def tok():
    return train_char_tokenizer(["0123456789+-= abc"])


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tok):
    return random_causal_lm(request.param, len(tok), tok.pad_token_id, tok.eos_token_id, seed=1)


def test_left_padding_changes_nothing(model, tok):
    """A padded batch decodes (greedy) exactly what each prompt decodes alone."""
    batch = generate(model, tok, PROMPTS, max_new_tokens=8, temperature=0)
    assert batch.prompt_mask[:, -1].all() and not batch.prompt_mask[:, 0].all()  # left padded
    for i, p in enumerate(PROMPTS):
        alone = generate(model, tok, [p], max_new_tokens=8, temperature=0)
        n = int(alone.response_mask.sum())
        assert int(batch.response_mask[i].sum()) == n
        assert torch.equal(batch.response_ids[i, :n], alone.response_ids[0, :n])
        assert batch.texts[i] == alone.texts[0]


def test_greedy_is_argmax_of_a_full_forward(model, tok):
    out = generate(model, tok, ["12+3="], max_new_tokens=5, temperature=0)
    ids = tok("12+3=", add_special_tokens=False)["input_ids"]
    for t in range(int(out.response_mask.sum())):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        assert out.response_ids[0, t].item() == logits.argmax().item()
        ids.append(out.response_ids[0, t].item())


def test_eos_ends_the_episode_and_the_mask(tok):
    model = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=2)
    with torch.no_grad():  # make EOS likely so that some rows stop early
        model.lm_head.weight[tok.eos_token_id] += 0.6 * model.lm_head.weight.mean(0)
    out = generate(model, tok, PROMPTS * 8, max_new_tokens=12, temperature=1.5, seed=0)
    eos = tok.eos_token_id
    assert out.finished.any() and out.response_ids.shape[1] <= 12
    for ids, m, done in zip(out.response_ids, out.response_mask, out.finished):
        n = int(m.sum())
        assert torch.all(m[:n] == 1) and torch.all(m[n:] == 0)  # one contiguous block from the start
        assert not (ids[: n - 1] == eos).any()  # no EOS before the last kept token
        assert bool(done) == (ids[n - 1].item() == eos)
        assert torch.all(ids[n:] == tok.pad_token_id)


def test_sampling_is_repeatable_under_a_seed(model, tok):
    a = generate(model, tok, PROMPTS, max_new_tokens=6, seed=3)
    b = generate(model, tok, PROMPTS, max_new_tokens=6, seed=3)
    c = generate(model, tok, PROMPTS, max_new_tokens=6, seed=4)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert not torch.equal(a.response_ids, c.response_ids)


def test_batch_size_chunks_give_the_same_greedy_output(model, tok):
    a = generate(model, tok, PROMPTS, max_new_tokens=6, temperature=0)
    b = generate(model, tok, PROMPTS, max_new_tokens=6, temperature=0, batch_size=3)
    assert a.texts == b.texts and torch.equal(a.response_mask.sum(1), b.response_mask.sum(1))


def test_top_k_one_is_greedy(model, tok):
    a = generate(model, tok, PROMPTS, max_new_tokens=6, temperature=0)
    b = generate(model, tok, PROMPTS, max_new_tokens=6, temperature=1.0, top_k=1, seed=5)
    assert a.texts == b.texts


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 9), st.floats(0.01, 1.0))
def test_filter_logits_against_brute_force(seed, top_k, top_p):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 9, generator=g)
    out = filter_logits(logits, top_k, top_p)
    for row, got in zip(logits, out):
        order = sorted(range(9), key=lambda v: -row[v].item())
        keep = set(order[:top_k]) if top_k > 0 else set(order)
        probs = torch.softmax(torch.tensor([row[v] if v in keep else float("-inf") for v in range(9)]), 0)
        if top_p < 1:
            nucleus, mass = set(), 0.0
            for v in order:
                if v in keep and mass < top_p:
                    nucleus.add(v)
                    mass += probs[v].item()
            keep &= nucleus
        for v in range(9):
            assert (got[v].item() == float("-inf")) == (v not in keep), (v, keep)


def test_bad_inputs_get_clear_errors(model, tok):
    with pytest.raises(ValueError, match="non-empty list"):
        generate(model, tok, [])
    with pytest.raises(ValueError, match=r"prompts\[1\] is an empty string"):
        generate(model, tok, ["1+1=", ""])
    with pytest.raises(TypeError, match="list of str"):
        generate(model, tok, "1+1=")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tok, ["1"], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, tok, ["1"], top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, tok, ["1"], temperature=-1.0)


def test_tokenizer_without_pad(tok):
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=EOS)
    assert bare.pad_token_id is None
    model = random_causal_lm("gpt2", len(tok), tok.eos_token_id, tok.eos_token_id)
    with pytest.raises(ValueError, match="pad token"):
        tokenize_prompts(bare, ["1+1="])
    with pytest.raises(ValueError, match="pad token"):
        generate(model, bare, ["1+1="])
    fixed = prepare_tokenizer(bare)  # GPT-2's convention: pad with EOS
    assert fixed.pad_token_id == fixed.eos_token_id and fixed.padding_side == "left"
    out = generate(model, fixed, PROMPTS, max_new_tokens=4, temperature=0)
    assert out.response_ids.shape[0] == len(PROMPTS)
    nothing = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer)
    with pytest.raises(ValueError, match="neither a pad token nor an eos token"):
        prepare_tokenizer(nothing)


def test_generation_stops_on_every_eos_id_of_the_generation_config():
    """Chat models list their end-of-turn token in generation_config.eos_token_id beside the tokenizer's EOS;
    a response ends at whichever comes first. Greedy decoding picks a token t0 first; once t0 is named an EOS
    id, the response is that one token, finished."""
    from rlsurvey.lm import load_model
    from rlsurvey.lm.generation import stop_token_ids

    model, tok = load_model("reason-base")
    prompts = ["3+4-2=", "9-1+5="]
    free = generate(model, tok, prompts, max_new_tokens=6, temperature=0.0)
    first = free.response_ids[:, 0]
    assert not bool(torch.isin(first, torch.tensor([tok.eos_token_id])).any())
    model.generation_config.eos_token_id = [tok.eos_token_id, *first.tolist()]
    assert stop_token_ids(model, tok) == sorted({tok.eos_token_id, *first.tolist()})
    cut = generate(model, tok, prompts, max_new_tokens=6, temperature=0.0)
    assert cut.finished.all() and cut.response_mask.sum(1).tolist() == [1, 1]
    assert torch.equal(cut.response_ids[:, 0], first)


def test_stop_ids_include_the_chat_templates_end_of_turn():
    from rlsurvey.lm import load_model
    from rlsurvey.lm.generation import stop_token_ids

    model, tok = load_model("reason-base")
    assert stop_token_ids(model, tok) == [tok.eos_token_id]
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    assert stop_token_ids(model, tok) == [tok.eos_token_id]  # no template: the token is not a turn's end
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    assert stop_token_ids(model, tok) == sorted({tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")})


class _CacheNamedModel(torch.nn.Module):
    """A causal LM whose forward takes and returns its KV cache as `cache`, the name transformers 5.25 gives
    it (deprecating `past_key_values`): generation and scoring must hand the cache back under that name."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config, self.generation_config = inner.config, inner.generation_config
        self.seen = set()

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None, **kw):

        self.seen.add("cache" if cache is not None else "no cache")
        assert "past_key_values" not in kw, "the old name was passed"
        passed = {} if cache is None else cache_kwargs(self.inner, cache)
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=use_cache, **passed)  # fmt: skip

        class Out:
            logits, cache = out.logits, returned_cache(out)

        return Out()


def test_a_model_that_names_its_kv_cache_cache_decodes_like_the_model_it_wraps(tok):
    inner = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=1)
    wrapped = _CacheNamedModel(inner)
    for kwargs in ({"temperature": 0}, {"temperature": 1.0, "seed": 3}):
        want = generate(inner, tok, PROMPTS * 2, max_new_tokens=6, **kwargs)
        got = generate(wrapped, tok, PROMPTS * 2, max_new_tokens=6, **kwargs)
        assert got.texts == want.texts and torch.equal(got.response_ids, want.response_ids)
    assert wrapped.seen == {"cache", "no cache"}, "the decoding steps received the cache under its new name"
    g = want
    args = (g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask)
    torch.testing.assert_close(
        response_logprobs(wrapped, *args, share_prompts=True).token_logps,
        response_logprobs(inner, *args, share_prompts=False).token_logps,
    )
