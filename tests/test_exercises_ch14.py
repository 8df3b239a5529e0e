"""Chapter 14's exercise checks: each passes the reference solution and an independent one, and refuses
typical wrong answers."""

import itertools
import math

import pytest
import torch

from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch14 as ex


def test_gspo_token_by_hand():
    def by_hand(logprobs, old, mask):
        out = torch.empty_like(logprobs)
        rows = []
        for i in range(logprobs.shape[0]):
            n = int(mask[i].sum())
            s = math.exp(float((logprobs[i, :n] - old[i, :n]).detach().sum()) / n)  # s_i: detached
            rows.append(s * torch.exp(logprobs[i] - logprobs[i].detach()))
        out = torch.stack(rows)
        return out

    assert ex.check_gspo_token(ex.reference_gspo_token)
    assert ex.check_gspo_token(by_hand)
    # equal in value to the sequence ratio on every token of a response
    lp = torch.tensor([[-1.0, -2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.5, -2.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    r = ex.reference_gspo_token(lp, old, mask)
    torch.testing.assert_close(r[0, :2].detach(), torch.full((2,), math.exp(0.5), dtype=torch.float64))
    for wrong in (lambda lp, o, m: torch.exp(lp - o), lambda lp, o, m: lp.detach()):
        with pytest.raises(ExerciseError):
            ex.check_gspo_token(wrong)


def test_informative_share_by_enumeration():
    def by_enumeration(p, G):
        total = 0.0
        for outcome in itertools.product((0, 1), repeat=G):
            k = sum(outcome)
            if 0 < k < G:
                total += p**k * (1 - p) ** (G - k)
        return total

    assert ex.check_informative_share(by_enumeration)
    assert ex.reference_informative_share(0.5, 2) == 0.5
    for wrong in (lambda p, G: 1 - p**G - (1 - p) ** G + 0.01, lambda p, G: 2 * p * (1 - p)):
        with pytest.raises(ExerciseError):
            ex.check_informative_share(wrong)


def test_two_sided_mask_by_loop():
    def by_loop(train, sampler, mask, cap):
        out = torch.zeros_like(mask)
        for i in range(mask.shape[0]):
            for t in range(mask.shape[1]):
                ratio = math.exp(float(train[i, t] - sampler[i, t]))
                out[i, t] = float(mask[i, t] == 1 and 1 / cap <= ratio <= cap)
        return out

    assert ex.check_two_sided_mask(by_loop)
    for wrong in (lambda t, s, m, c: m, lambda t, s, m, c: ((t - s).abs() <= math.log(c)).double()):
        with pytest.raises(ExerciseError):
            ex.check_two_sided_mask(wrong)


def test_clip_ceiling():
    assert ex.check_clip_ceiling(ex.CEIL_P * (1 + ex.CEIL_EPS_HIGH))
    for wrong in (1 + ex.CEIL_EPS_HIGH, ex.CEIL_P * 1.2, ex.CEIL_P, float("nan"), "0.064"):
        with pytest.raises(ExerciseError):
            ex.check_clip_ceiling(wrong)
