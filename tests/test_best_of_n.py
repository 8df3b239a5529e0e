"""Best-of-n: the choice, the analytic KL, and the order-statistics estimator against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.best_of_n import best_of_n, best_of_n_expectation, best_of_n_kl, best_of_n_kl_discrete
from rlsurvey.algos.rollout import RewardError
from tests.conftest import tiny_causal_lm


def test_best_of_n_kl_by_hand():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            best_of_n_kl(bad)


@settings(max_examples=40, deadline=None)
@given(
    big_n=st.integers(1, 7),
    data=st.data(),
)
def test_expectation_equals_the_mean_over_every_subset(big_n, data):
    n = data.draw(st.integers(1, big_n))
    proxy = torch.tensor(
        data.draw(st.lists(st.integers(-3, 3), min_size=big_n, max_size=big_n)), dtype=torch.float64
    )
    gold = torch.tensor(
        data.draw(st.lists(st.floats(-5, 5), min_size=big_n, max_size=big_n)), dtype=torch.float64
    )
    picks = []
    for subset in itertools.combinations(range(big_n), n):
        # the proxy's argmax within the subset; ties go to the later sample, as a stable ascending sort ranks
        best = max(subset, key=lambda j: (proxy[j].item(), j))
        picks.append(gold[best].item())
    got = best_of_n_expectation(proxy[None], gold[None], n)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(sum(picks) / len(picks), abs=1e-9)


def test_expectation_extremes_and_errors():
    proxy = torch.tensor([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]])
    gold = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    torch.testing.assert_close(best_of_n_expectation(proxy, gold, 1), gold.double().mean(1))
    torch.testing.assert_close(
        best_of_n_expectation(proxy, gold, 3), torch.tensor([2.0, 4.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match=r"n must be an int in \[1, N=3\]"):
        best_of_n_expectation(proxy, gold, 4)
    with pytest.raises(ValueError, match="both be"):
        best_of_n_expectation(proxy, gold[:, :2], 1)


def test_best_of_n_keeps_the_highest_scoring_sample():
    policy, tok = tiny_causal_lm("llama", seed=4)
    score = lambda p, c: [float(len(x)) for x in c]  # noqa: E731
    out = best_of_n(policy, tok, ["the film was ", "a "], score, n=5, max_new_tokens=6, seed=0)
    assert out.all_scores.shape == (2, 5) and len(out.all_completions[0]) == 5
    for i in range(2):
        assert out.scores[i] == out.all_scores[i].max()
        assert len(out.completions[i]) == max(len(c) for c in out.all_completions[i])
    assert out.kl == pytest.approx(best_of_n_kl(5))
    with pytest.raises(RewardError, match="returned 9 scores for 10"):
        best_of_n(policy, tok, ["the film was ", "a "], lambda p, c: [0.0] * 9, n=5, max_new_tokens=4)


def _brute_force_kl(probs, rewards, n):
    """Every n-tuple of outcomes, its probability, and the winner (the first sample with the top reward,
    as `best_of_n` picks): the exact best-of-n distribution, and its KL to the sampler."""
    k = len(probs)
    pick = [0.0] * k
    for draw in itertools.product(range(k), repeat=n):
        weight = math.prod(probs[i] for i in draw)
        top = max(rewards[i] for i in draw)
        winner = next(i for i in draw if rewards[i] == top)
        pick[winner] += weight
    return sum(q * math.log(q / probs[i]) for i, q in enumerate(pick) if q > 0)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 4),
    n=st.integers(1, 4),
    data=st.data(),
)
def test_discrete_kl_equals_brute_force_over_every_draw(k, n, data):
    weights = data.draw(st.lists(st.integers(0, 5), min_size=k, max_size=k).filter(lambda w: sum(w) > 0))
    probs = [w / sum(weights) for w in weights]
    rewards = data.draw(st.lists(st.integers(-2, 2), min_size=k, max_size=k))  # small range: many ties
    got = best_of_n_kl_discrete(probs, rewards, n)
    assert got == pytest.approx(_brute_force_kl(probs, rewards, n), abs=1e-10)
    assert got <= best_of_n_kl(n) + 1e-12  # the closed form is an upper bound (Beirami et al.)


def test_discrete_kl_limits():
    g = torch.Generator().manual_seed(0)
    # many equally likely outcomes with distinct rewards: the closed form is (nearly) exact
    big = 200_000
    rewards = torch.randperm(big, generator=g).double()
    for n in (1, 2, 16, 64):
        got = best_of_n_kl_discrete(torch.full((big,), 1 / big, dtype=torch.float64), rewards, n)
        assert got == pytest.approx(best_of_n_kl(n), abs=2e-3)
    # one likely best outcome: best-of-n returns it almost surely, and the KL stops at log(1 / its mass)
    probs = torch.cat([torch.full((900,), 0.9 / 900, dtype=torch.float64), torch.tensor([0.1])])
    rewards = torch.arange(901).double()
    assert best_of_n_kl_discrete(probs, rewards, 2000) == pytest.approx(math.log(10), abs=1e-6)
    assert best_of_n_kl_discrete(probs, rewards, 64) == pytest.approx(math.log(10), abs=0.01)
    assert best_of_n_kl_discrete(probs, rewards, 64) < best_of_n_kl(64) - 0.8  # far below the bound
    # all outcomes tied: best-of-n is the sampler itself
    assert best_of_n_kl_discrete([0.2, 0.3, 0.5], [1.0, 1.0, 1.0], 10) == pytest.approx(0.0, abs=1e-12)
    # zero-probability outcomes change nothing
    assert best_of_n_kl_discrete([0.5, 0.0, 0.5], [0.0, 9.0, 1.0], 3) == pytest.approx(
        best_of_n_kl_discrete([0.5, 0.5], [0.0, 1.0], 3)
    )


def test_discrete_kl_refuses_bad_input():
    with pytest.raises(ValueError, match="n must be a positive int"):
        best_of_n_kl_discrete([1.0], [0.0], 0)
    with pytest.raises(ValueError, match="sum to 1"):
        best_of_n_kl_discrete([0.5, 0.4], [0.0, 1.0], 2)
    with pytest.raises(ValueError, match="one length"):
        best_of_n_kl_discrete([0.5, 0.5], [0.0], 2)
    with pytest.raises(ValueError, match="non-negative"):
        best_of_n_kl_discrete([1.5, -0.5], [0.0, 1.0], 2)
