"""Exercises of chapter 06 (reward modeling, survey section 4.1 of arXiv 2412.10400).

1. `check_preference_probability(fn)`: fn(r_a, r_b) -> P(a ≻ b) under Bradley-Terry, elementwise.
2. `check_bradley_terry_loss(fn)`: fn(chosen [B], rejected [B], margin [B]) -> the scalar loss
   −mean log σ(r_w − r_l − m) (InstructGPT eq. 1, with Llama 2's margin).
3. `check_agreement_ceiling(fn)`: fn(gold_a, gold_b, temperature, flip_prob) -> the expected fraction of one
   annotator's labels that agree with the gold ordering (ties excluded): the best accuracy any reward model
   can reach on such labels.
4. `check_ece(fn)`: fn(probabilities [N], outcomes [N], bins) -> expected calibration error with equal-width
   bins.
5. `check_majority_ceiling(fn)`: fn(gold_a, gold_b, temperature, flip_prob, n_annotators) -> the expected
   fraction of majority labels (ties broken at random) that agree with the gold ordering, ties excluded.
6. `check_margin_optimum(fn)`: fn(q, m) -> the reward gap x = r_a − r_b that minimizes the expected margin
   loss −q log σ(x − m) − (1 − q) log σ(−x − m) of a pair labelled a ≻ b with probability q.
7. `check_loss_floor(fn)`: fn(gold_a, gold_b, temperature, flip_prob) -> the smallest expected Bradley-Terry
   loss any reward model can reach on one annotator's labels of eq. (1): the mean binary entropy of the label
   probabilities (pairs with equal gold included, at log 2).

The reference solutions are the package's own functions (`rlsurvey.rewards`, `rlsurvey.tasks.reviews`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.rewards.bradley_terry import bradley_terry_loss, calibration
from rlsurvey.tasks.reviews import AnnotatorConfig, expected_agreement, preference_probability

__all__ = [
    "EXERCISES",
    "check_loss_floor",
    "check_majority_ceiling",
    "check_margin_optimum",
    "reference_bradley_terry_loss",
    "reference_loss_floor",
    "reference_majority_ceiling",
    "reference_margin_optimum",
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


def reference_bradley_terry_loss(chosen, rejected, margin):
    """−mean log σ(r_w − r_l − m), with logsigmoid for stability."""
    return -torch.nn.functional.logsigmoid(chosen - rejected - margin).mean()


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


def reference_majority_ceiling(
    gold_a, gold_b, temperature: float, flip_prob: float, n_annotators: int
) -> float:
    """Mean over decided pairs of P(majority of n votes is right): sum_{k > n/2} C(n, k) p^k (1 − p)^(n − k),
    plus half the tie term when n is even; p is one annotator's chance of the gold order."""
    ga, gb = np.asarray(gold_a, dtype=np.float64), np.asarray(gold_b, dtype=np.float64)
    keep = ga != gb
    config = AnnotatorConfig(temperature=temperature, flip_prob=flip_prob)
    p = preference_probability(np.maximum(ga, gb)[keep], np.minimum(ga, gb)[keep], config)
    n = n_annotators
    right = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))
    if n % 2 == 0:
        right = right + 0.5 * math.comb(n, n // 2) * (p * (1 - p)) ** (n // 2)
    return float(np.mean(right))


def check_majority_ceiling(fn) -> bool:
    name = "majority-vote ceiling"
    rng = np.random.default_rng(10)
    for temperature, flip, n in [(0.5, 0.1, 3), (1.0, 0.0, 1), (0.3, 0.2, 5), (0.5, 0.1, 2)]:
        ga, gb = rng.normal(size=40).round(2), rng.normal(size=40).round(2)
        ga[:2] = gb[:2]
        got = _number(name, call_safely(name, fn, ga.copy(), gb.copy(), temperature, flip, n))
        hint = (
            "one annotator is right with p = (1 - flip) sigmoid(|d| / T) + flip (1 - sigmoid(|d| / T)); the "
            "majority of n independent votes is right with the binomial tail P(more than n/2 right), and a "
            "tie (even n) is a coin toss. Average over the pairs whose gold differs."
        )
        assert_close(f"{name} (n={n})", got, reference_majority_ceiling(ga, gb, temperature, flip, n), hint,
                     atol=1e-6)  # fmt: skip
    return passed(name)


def reference_margin_optimum(q: float, m: float) -> float:
    """Setting the derivative −q σ(m − x) + (1 − q) σ(x + m) to 0 gives, with u = e^x and a = e^(−m),
    (1 − q) a u² + (1 − 2q) u − q a = 0; u is its positive root. With m = 0 it is log(q / (1 − q))."""
    a = math.exp(-m)
    u = ((2 * q - 1) + math.sqrt((1 - 2 * q) ** 2 + 4 * q * (1 - q) * a * a)) / (2 * (1 - q) * a)
    return math.log(u)


def check_margin_optimum(fn) -> bool:
    name = "optimal reward gap under a margin"
    hint = (
        "the expected loss −q log σ(x − m) − (1 − q) log σ(−x − m) is convex in x; set its derivative "
        "−q σ(m − x) + (1 − q) σ(x + m) to zero (bisection works, or solve the quadratic in u = e^x). "
        "Without a margin the answer is log(q / (1 − q)): a calibrated model."
    )
    for q, m in [(0.7, 0.0), (0.7, 0.5), (0.9, 1.0), (0.55, 2.0), (0.3, 0.5), (0.99, 0.25)]:
        got = _number(name, call_safely(name, fn, q, m))
        assert_close(f"{name} (q={q}, m={m})", got, reference_margin_optimum(q, m), hint, atol=1e-5)
    return passed(name)


def reference_loss_floor(gold_a, gold_b, temperature: float, flip_prob: float) -> float:
    """A model that predicts q for a label that goes its way with probability p has expected loss
    −p log q − (1 − p) log(1 − q) ≥ H(p), with equality at q = p (Gibbs' inequality): the floor is the mean
    binary entropy of p = P(y_A ≻ y_B) over the pairs."""
    p = preference_probability(gold_a, gold_b, AnnotatorConfig(temperature=temperature, flip_prob=flip_prob))
    p = np.clip(p, 1e-300, 1.0)
    q = np.clip(1.0 - p, 1e-300, 1.0)
    return float(np.mean(-p * np.log(p) - q * np.log(q)))


def check_loss_floor(fn) -> bool:
    name = "loss floor of the Bradley-Terry loss"
    hint = (
        "a label goes one way with p = P(y_A ≻ y_B) of eq. (1); a model predicting q pays "
        "−p log q − (1 − p) log(1 − q) on average, smallest at q = p, where it is the entropy "
        "−p log p − (1 − p) log(1 − p). Average that over all pairs (equal gold: p = 1/2, log 2)."
    )
    rng = np.random.default_rng(11)
    for temperature, flip in [(0.5, 0.1), (1.0, 0.0), (0.2, 0.3), (0.5, 0.5)]:
        ga, gb = rng.normal(size=60).round(2), rng.normal(size=60).round(2)
        ga[:4] = gb[:4]  # ties: a coin flip, which no model can predict
        got = _number(name, call_safely(name, fn, ga.copy(), gb.copy(), temperature, flip))
        want = reference_loss_floor(ga, gb, temperature, flip)
        assert_close(f"{name} (temperature={temperature}, flip={flip})", got, want, hint, atol=1e-6)
    return passed(name)


def _unfinished_ceiling(gold_a, gold_b, temperature, flip_prob):
    p = 1 / (1 + np.exp(-np.abs(gold_a - gold_b) / temperature))
    return float(p.mean())  # forgets the flips and the ties


EXERCISES = (
    Exercise(1, "Bradley-Terry probability", check_preference_probability, reference_preference_probability,
             lambda r_a, r_b: torch.sigmoid(r_a)),
    Exercise(2, "The Bradley-Terry loss, margin", check_bradley_terry_loss, reference_bradley_terry_loss,
             lambda c, r, m: -torch.nn.functional.logsigmoid(c - r).mean()),
    Exercise(3, "The agreement ceiling", check_agreement_ceiling, reference_agreement_ceiling,
             _unfinished_ceiling),
    Exercise(4, "Expected calibration error", check_ece, reference_ece,
             lambda p, y, bins: float((p - y).abs().mean())),
    Exercise(5, "The ceiling of a majority vote", check_majority_ceiling, reference_majority_ceiling,
             lambda ga, gb, t, f, n: reference_agreement_ceiling(ga, gb, t, f), kind="open"),
    Exercise(6, "What a margin does to the reward gap", check_margin_optimum, reference_margin_optimum,
             lambda q, m: math.log(q / (1 - q)) + m, kind="open"),
    Exercise(7, "The floor under the validation loss", check_loss_floor, reference_loss_floor,
             lambda ga, gb, t, f: -math.log(reference_agreement_ceiling(ga, gb, t, f)), kind="open"),
)  # fmt: skip
