"""Exercises of chapter 06 (reward modeling, survey section 4.1 of arXiv 2412.10400).

1. `check_preference_probability(fn)`: fn(r_a, r_b) -> P(a ≻ b) under Bradley-Terry, elementwise.
2. `check_bradley_terry_loss(fn)`: fn(chosen [B], rejected [B], margin [B]) -> the scalar loss
   −mean log σ(r_w − r_l − m) (InstructGPT eq. 1, with Llama 2's margin).
3. `check_agreement_ceiling(fn)`: fn(gold_a, gold_b, temperature, flip_prob) -> the expected fraction of one
   annotator's labels that agree with the gold ordering (ties excluded): the best accuracy any reward model
   can reach on such labels.
4. `check_ece(fn)`: fn(probabilities [N], outcomes [N], bins) -> expected calibration error with equal-width
   bins.

The reference solutions are the package's own functions (`rlsurvey.rewards`, `rlsurvey.tasks.reviews`).
"""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.exercises import ExerciseError, assert_close, call_safely, passed
from rlsurvey.rewards.bradley_terry import bradley_terry_loss, calibration
from rlsurvey.tasks.reviews import AnnotatorConfig, expected_agreement

__all__ = [
    "check_agreement_ceiling",
    "check_bradley_terry_loss",
    "check_ece",
    "check_preference_probability",
    "reference_agreement_ceiling",
    "reference_ece",
    "reference_preference_probability",
]


def _number(name: str, got) -> float:
    try:
        return float(got)
    except (TypeError, ValueError) as exc:
        raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}") from exc


def reference_preference_probability(r_a, r_b):
    """σ(r_a − r_b) (Bradley and Terry, 1952)."""
    return torch.sigmoid(
        torch.as_tensor(r_a, dtype=torch.float64) - torch.as_tensor(r_b, dtype=torch.float64)
    )


def check_preference_probability(fn) -> bool:
    name = "Bradley-Terry probability"
    g = torch.Generator().manual_seed(6)
    r_a, r_b = torch.randn(32, generator=g).double() * 3, torch.randn(32, generator=g).double() * 3
    got = call_safely(name, fn, r_a.clone(), r_b.clone())
    hint = "P(a ≻ b) = exp(r_a) / (exp(r_a) + exp(r_b)) = sigmoid(r_a - r_b); it only sees the difference"
    assert_close(name, got, reference_preference_probability(r_a, r_b), hint, atol=1e-6)
    return passed(name)


def check_bradley_terry_loss(fn) -> bool:
    name = "Bradley-Terry loss"
    g = torch.Generator().manual_seed(7)
    for b in (1, 5, 40):
        rc, rr = torch.randn(b, generator=g).double() * 2, torch.randn(b, generator=g).double() * 2
        m = torch.rand(b, generator=g).double()
        got = _number(name, call_safely(name, fn, rc.clone(), rr.clone(), m.clone()))
        want = bradley_terry_loss(rc, rr, m)[0].item()
        hint = "-mean(logsigmoid(chosen - rejected - margin)); logsigmoid is stabler than log(sigmoid(.))"
        assert_close(name, got, want, hint, atol=1e-6)
    return passed(name)


def reference_agreement_ceiling(gold_a, gold_b, temperature: float, flip_prob: float) -> float:
    """The package's `reviews.expected_agreement` with one annotator."""
    return expected_agreement(gold_a, gold_b, AnnotatorConfig(temperature=temperature, flip_prob=flip_prob))


def check_agreement_ceiling(fn) -> bool:
    name = "agreement ceiling"
    rng = np.random.default_rng(8)
    for temperature, flip in [(0.5, 0.1), (1.0, 0.0), (0.2, 0.3)]:
        ga, gb = rng.normal(size=50).round(2), rng.normal(size=50).round(2)
        ga[:3] = gb[:3]  # ties carry no gold ordering and are left out
        got = _number(name, call_safely(name, fn, ga.copy(), gb.copy(), temperature, flip))
        want = reference_agreement_ceiling(ga, gb, temperature, flip)
        hint = (
            "for the better response of each pair, p = sigmoid(|d| / temperature); a flip turns it into "
            "(1 - flip) p + flip (1 - p); average over the pairs whose gold differs"
        )
        assert_close(name, got, want, hint, atol=1e-6)
    return passed(name)


def reference_ece(probabilities, outcomes, bins: int) -> float:
    """The package's `calibration(...)['ece']`."""
    return calibration(torch.as_tensor(probabilities), torch.as_tensor(outcomes), bins)["ece"]


def check_ece(fn) -> bool:
    name = "expected calibration error"
    g = torch.Generator().manual_seed(9)
    for n, bins in [(200, 10), (57, 5), (10, 1)]:
        p = torch.rand(n, generator=g).double()
        y = (torch.rand(n, generator=g).double() < p**2).double()  # an overconfident predictor
        got = _number(name, call_safely(name, fn, p.clone(), y.clone(), bins))
        hint = (
            "bin b holds the p with floor(p * bins) = b (p = 1 goes in the last bin); ECE = sum over bins of "
            "(count / N) * |mean outcome - mean p|"
        )
        assert_close(name, got, reference_ece(p, y, bins), hint, atol=1e-6)
    return passed(name)
