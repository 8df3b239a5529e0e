"""Verifiable rewards: format reward, weighted sums, and pass@k against brute force over subsets."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.rollout import repeat_prompts
from rlsurvey.lm.generation import generate
from rlsurvey.rewards.verifiable import (
    arithmetic_format_reward,
    combine_rewards,
    evaluate_pass_at_k,
    make_pass_at_k_eval,
    pass_at_k,
)
from rlsurvey.tasks.arithmetic import verify
from tests.conftest import tiny_causal_lm


def test_format_reward_by_hand():
    completions = ["95", " 95\n", "-3", "0", "095", "95 apples", "", "9 5", "+5", "-0", "1.0", "x"]
    want = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    got = arithmetic_format_reward(["1+1="] * len(completions), completions)
    assert got.dtype == np.float64 and got.tolist() == want


def test_format_reward_bad_input():
    with pytest.raises(ValueError, match="same length"):
        arithmetic_format_reward(["1+1="], ["2", "3"])
    with pytest.raises(TypeError, match="completions\\[0\\]"):
        arithmetic_format_reward(["1+1="], [2])
    with pytest.raises(TypeError, match="single str"):
        arithmetic_format_reward("1+1=", "2")


def test_combine_rewards_is_the_weighted_sum():
    prompts = ["12+5=", "40-8=", "3+3=", "9-9="]
    completions = ["17", "33", "six", "0"]
    r = combine_rewards([verify, arithmetic_format_reward], [1.0, 0.25])
    want = [1 * 1 + 0.25 * 1, 0 + 0.25, 0 + 0, 1 + 0.25]
    assert r(prompts, completions).tolist() == pytest.approx(want)
    assert combine_rewards([verify])(prompts, completions).tolist() == verify(prompts, completions).tolist()
    assert "verify" in r.__name__


def test_combine_rewards_bad_input():
    with pytest.raises(TypeError, match="list of callables"):
        combine_rewards(verify)
    with pytest.raises(ValueError, match="empty"):
        combine_rewards([])
    with pytest.raises(TypeError, match="reward_fns\\[1\\]"):
        combine_rewards([verify, 3])
    with pytest.raises(ValueError, match="one entry per reward function"):
        combine_rewards([verify], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        combine_rewards([verify], [float("nan")])
    short = combine_rewards([verify, lambda p, c: [1.0]])
    with pytest.raises(ValueError, match="reward_fns\\[1\\].*one per completion"):
        short(["1+1=", "2+2="], ["2", "4"])


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_against_subsets_and_binomials(nck):
    n, c, k = nck
    got = pass_at_k(n, c, k)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)
    assert got[0] == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_special_cases_and_vectors():
    n = np.array([10, 10, 10, 200])
    c = np.array([0, 3, 10, 150])
    assert pass_at_k(n, c, 1).tolist() == pytest.approx([0.0, 0.3, 1.0, 0.75])  # pass@1 = c / n
    big = pass_at_k(200, 2, 100)[0]  # binomials of 200 choose 100 stay exact in the product form
    assert big == pytest.approx(1 - math.comb(198, 100) / math.comb(200, 100), rel=1e-12)
    assert pass_at_k(5, 3, 3)[0] == 1.0  # n - c < k: every 3-subset holds a correct one


@pytest.mark.parametrize(
    "n, c, k, match",
    [(4, 1, 0, "k must"), (4, 1, 5, "at least k"), (4, 5, 2, "c must"), (4, -1, 2, "c must"),
     (4.5, 1, 2, "n must hold integers"), (4, 1, True, "k must")],
)  # fmt: skip
def test_pass_at_k_bad_input(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def even_code_sum(prompts, completions):
    """A stand-in verifier a random model passes about half the time: the characters' codes sum to an even
    number."""
    return [float(sum(map(ord, c)) % 2 == 0) for c in completions]


def test_evaluate_pass_at_k_against_a_hand_count():
    model, tok = tiny_causal_lm("llama", seed=5)
    prompts = ["1+2=", "33-4=", "7+7=", "50-25="]
    n = 6
    got = evaluate_pass_at_k(model, tok, prompts, even_code_sum, n=n, ks=(1, 2, 6), max_new_tokens=4, seed=11)
    gen = generate(model, tok, repeat_prompts(prompts, n), 4, 1.0, seed=11)
    ok = np.array(even_code_sum(None, gen.texts)).reshape(len(prompts), n).astype(bool)
    assert got["pass@1"] == pytest.approx(ok.mean())
    assert got["pass@6"] == pytest.approx(ok.any(1).mean())
    want2 = np.mean([brute_pass_at_k(n, int(row.sum()), 2) for row in ok])
    assert got["pass@2"] == pytest.approx(want2)
    assert got["mean_length"] == pytest.approx(gen.response_mask.sum(1).float().mean().item())
    assert 0 < got["pass@1"] < 1, "the stand-in verifier should pass some samples and fail others"
    again = make_pass_at_k_eval(prompts, even_code_sum, tok, n=n, ks=(1, 2, 6), max_new_tokens=4, seed=11)
    assert again(model) == got  # a seeded generator: the same model scores the same
    assert torch.is_grad_enabled()


def test_evaluate_pass_at_k_bad_input():
    model, tok = tiny_causal_lm("llama", seed=5)
    with pytest.raises(ValueError, match="ks must"):
        evaluate_pass_at_k(model, tok, ["1+1="], verify, n=4, ks=(8,))
    with pytest.raises(ValueError, match="n must"):
        evaluate_pass_at_k(model, tok, ["1+1="], verify, n=0)
    with pytest.raises(ValueError, match="prompts"):
        evaluate_pass_at_k(model, tok, [], verify)


# ---------------------------------------------------------------------------------------------------------
# coin_flip_reward: the random-reward control


def test_coin_flip_reward_is_a_fair_coin_whatever_the_completion():
    from rlsurvey.rewards.verifiable import coin_flip_reward
    from rlsurvey.tasks import reasoning

    prompts = reasoning.sample_prompts(400, seed=0)
    right = [reasoning.worked_solution(q.rstrip("[")) for q in prompts]
    wrong = ["0"] * len(prompts)
    fn = coin_flip_reward(0.5, seed=3)
    r_right = np.concatenate([fn(prompts, right) for _ in range(10)])
    r_wrong = np.concatenate([fn(prompts, wrong) for _ in range(10)])
    assert set(np.unique(np.concatenate([r_right, r_wrong]))) == {0.0, 1.0}
    n = r_right.size
    # each mean is within 4 standard errors of 1/2, and right answers are not paid more than wrong ones
    assert abs(r_right.mean() - 0.5) < 4 * 0.5 / np.sqrt(n)
    assert abs(r_wrong.mean() - 0.5) < 4 * 0.5 / np.sqrt(n)
    assert abs(r_right.mean() - r_wrong.mean()) < 4 * np.sqrt(0.5) / np.sqrt(n)


def test_coin_flip_reward_rate_seed_and_bad_input():
    from rlsurvey.rewards.verifiable import coin_flip_reward

    prompts, completions = ["1+2+3="] * 5000, ["6"] * 5000
    assert coin_flip_reward(0.2, seed=1)(prompts, completions).mean() == pytest.approx(0.2, abs=4 * 0.4 / 70)
    assert coin_flip_reward(0.0)(prompts, completions).sum() == 0
    assert coin_flip_reward(1.0)(prompts, completions).min() == 1
    a, b = coin_flip_reward(seed=7), coin_flip_reward(seed=7)
    assert [a(prompts[:9], completions[:9]).tolist() for _ in range(3)] == [
        b(prompts[:9], completions[:9]).tolist() for _ in range(3)
    ]
    assert not np.array_equal(coin_flip_reward(seed=8)(prompts, completions), a(prompts, completions))
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="p must be"):
            coin_flip_reward(bad)
    with pytest.raises(TypeError, match="seed"):
        coin_flip_reward(0.5, seed=1.5)
    with pytest.raises(ValueError):
        coin_flip_reward()(["1+1="], ["2", "3"])
