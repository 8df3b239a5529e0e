"""Online (iterative) DPO: pair construction against brute force, exact sampled tokens, the round loop,
the reference schedule (initial vs previous), and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rlsurvey.algos.iterative_dpo as it
from rlsurvey.algos.dpo_trainer import DPOConfig
from rlsurvey.algos.iterative_dpo import (
    IterativeDPOConfig,
    best_worst_pairs,
    iterative_dpo,
    judge_pairs,
)
from tests.conftest import tiny_causal_lm

PROMPTS = ["the film was", "a", "we saw", "it", "the food"]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(2, 4),
    st.floats(0.0, 1.0),
    st.data(),
)
def test_best_worst_pairs_against_brute_force(m, n, gap, data):
    scores = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0]), min_size=m * n, max_size=m * n))
    texts = data.draw(st.lists(st.sampled_from(["x", "y", "zz", "w"]), min_size=m * n, max_size=m * n))
    prompts = [f"p{i}" for i in range(m)]
    ds = best_worst_pairs(prompts, texts, scores, n, gap)
    want = []
    for i in range(m):
        group = list(range(i * n, (i + 1) * n))
        best = max(group, key=lambda j: (scores[j], -j))  # the first maximum, as argmax
        worst = min(group, key=lambda j: (scores[j], j))  # the first minimum, as argmin
        if scores[best] - scores[worst] > gap and texts[best] != texts[worst]:
            want.append((prompts[i], texts[best], texts[worst], scores[best], scores[worst]))
    got = list(zip(ds["prompt"], ds["chosen"], ds["rejected"], ds["score_chosen"], ds["score_rejected"]))
    assert got == want
    for w, lo, c, r in zip(ds["index_chosen"], ds["index_rejected"], ds["chosen"], ds["rejected"]):
        assert texts[w] == c and texts[lo] == r


def test_judge_pairs_probabilities_bools_and_ties():
    prompts = ["p0", "p1", "p2", "p3"]
    comps = ["a0", "b0", "a1", "b1", "a2", "b2", "same", "same"]
    ds = judge_pairs(prompts, comps, lambda p, a, b: [0.9, 0.2, 0.5, 1.0])
    assert ds["prompt"] == ["p0", "p1"]  # p2 is a tie, p3 has equal answers
    assert ds["chosen"] == ["a0", "b1"] and ds["rejected"] == ["b0", "a1"]
    assert ds["index_chosen"] == [0, 3] and ds["score_chosen"] == pytest.approx([0.9, 0.8])
    ds = judge_pairs(prompts[:2], comps[:4], lambda p, a, b: [False, True])
    assert ds["chosen"] == ["b0", "a1"]
    with pytest.raises(ValueError, match="probabilities in"):
        judge_pairs(prompts[:2], comps[:4], lambda p, a, b: [1.5, 0.0])
    with pytest.raises(ValueError, match="probabilities in"):
        judge_pairs(prompts[:2], comps[:4], lambda p, a, b: [0.5])
    with pytest.raises(ValueError, match="2 answers per prompt"):
        judge_pairs(prompts[:2], comps[:3], lambda p, a, b: [0.5, 0.5])


def test_pairs_carry_the_exact_sampled_tokens():
    """EOS appears at the end of an answer only when the policy stopped by itself."""
    model, tok = tiny_causal_lm("llama", seed=1)
    gen = it.generate(model, tok, it.repeat_prompts(PROMPTS[:3], 2), 6, 1.0, seed=0)
    pairs = it.with_token_ids(judge_pairs(gen.prompts[0::2], gen.texts, lambda p, a, b: [0.9] * 3), gen)
    for row in pairs:
        j = row["index_chosen"]
        want = gen.response_ids[j][gen.response_mask[j].bool()].tolist()
        assert row["chosen_ids"] == want
        assert (want[-1] == tok.eos_token_id) == bool(gen.finished[j])
        assert row["prompt_ids"] == tok(row["prompt"], add_special_tokens=False)["input_ids"]


def dpo(**kw) -> DPOConfig:
    return DPOConfig(**{"learning_rate": 3e-3, "beta": 0.5, "batch_size": 8, "num_epochs": 4, **kw})


def test_rounds_sample_label_train_and_raise_the_margin_on_their_pairs():
    model, tok = tiny_causal_lm("llama", seed=2)
    seen, evals = [], []

    def reward(prompts, completions):
        seen.append(list(prompts))
        return [float(c.count("e") - 0.1 * len(c)) for c in completions]

    def eval_fn(m):
        evals.append(sum(p.detach().abs().sum().item() for p in m.parameters()))
        return {"param_l1": evals[-1]}

    config = IterativeDPOConfig(rounds=3, prompts_per_round=4, samples_per_prompt=3, max_new_tokens=6,
                                dpo=dpo(), progress=False)  # fmt: skip
    hist = iterative_dpo(model, tok, PROMPTS, config, reward_fn=reward, eval_fn=eval_fn)
    assert [h["round"] for h in hist] == [0, 1, 2, 3] and len(evals) == 4
    assert len({evals[0], evals[1], evals[2], evals[3]}) == 4  # the model changes every round
    for h, prompts in zip(hist[1:], seen):
        assert len(prompts) == 12 and 0 < h["pairs"] <= 4 and h["rewards/margins"] > 0
    # prompts: each round takes the next 4 of a shuffle; 5 prompts are all used before any repeats
    firsts = [p for ps in seen for p in ps[::3]]
    assert sorted(firsts[:5]) == sorted(PROMPTS)


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_reference_schedule(monkeypatch, reference):
    """initial: every round's reference is a frozen copy of the starting model (2312.11456); previous: the
    trainer gets no reference and so precomputes with the model as it enters the round (sDPO)."""
    model, tok = tiny_causal_lm("llama", seed=3)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    refs, real = [], it.DPOTrainer

    class Spy(real):
        def __init__(self, m, t, data, config, ref_model=None):
            refs.append(ref_model)
            self.entering = {n: p.detach().clone() for n, p in m.named_parameters()}
            super().__init__(m, t, data, config, ref_model=ref_model)

    monkeypatch.setattr(it, "DPOTrainer", Spy)
    config = IterativeDPOConfig(rounds=2, prompts_per_round=5, samples_per_prompt=2, max_new_tokens=5,
                                reference=reference, dpo=dpo(), progress=False)  # fmt: skip
    iterative_dpo(model, tok, PROMPTS, config, judge=lambda p, a, b: [0.8] * len(p))
    assert len(refs) == 2
    if reference == "previous":
        assert refs == [None, None]
    else:
        assert refs[0] is refs[1] and refs[0] is not model
        for n, p in refs[0].named_parameters():
            assert torch.equal(p, start[n]) and not p.requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rounds": 0}, "rounds must be a positive int"),
        ({"samples_per_prompt": 1}, "samples_per_prompt must be at least 2"),
        ({"reference": "ema"}, "reference must be 'initial' or 'previous'"),
        ({"dpo": {"beta": 0.1}}, "dpo must be a DPOConfig"),
        ({"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        IterativeDPOConfig(**kwargs)


def test_bad_calls():
    model, tok = tiny_causal_lm("llama", seed=6)
    fn = lambda p, c: [0.0] * len(c)  # noqa: E731
    with pytest.raises(ValueError, match="exactly one of reward_fn"):
        iterative_dpo(model, tok, PROMPTS, IterativeDPOConfig(progress=False))
    with pytest.raises(ValueError, match="exactly one of reward_fn"):
        iterative_dpo(model, tok, PROMPTS, IterativeDPOConfig(progress=False), reward_fn=fn, judge=fn)
    with pytest.raises(ValueError, match="samples_per_prompt=2"):
        iterative_dpo(model, tok, PROMPTS, IterativeDPOConfig(samples_per_prompt=3), judge=fn)
    with pytest.raises(ValueError, match="non-empty"):
        iterative_dpo(model, tok, [], IterativeDPOConfig(), reward_fn=fn)
    with pytest.raises(ValueError, match="len\\(prompts\\) \\* n"):
        best_worst_pairs(["a"], ["x", "y"], [1.0, 2.0, 3.0], 2)
