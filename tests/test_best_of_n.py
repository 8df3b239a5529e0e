"""Best-of-n: the choice, the analytic KL, and the order-statistics estimator against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.best_of_n import best_of_n, best_of_n_expectation, best_of_n_kl
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
