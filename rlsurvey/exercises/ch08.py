"""Exercises of chapter 08 (RLAIF, survey section 5 of arXiv 2412.10400).

1. `check_debiased(fn)`: fn(p_ab, p_ba) -> P(A ≻ B) from both presentation orders of an LM judge.
2. `check_agreement(fn)`: fn(p_ai, gold_a, gold_b) -> the fraction of pairs with distinct gold rewards where
   the AI prefers the response with the higher gold reward (Lee et al., arXiv 2309.00267).
3. `check_repetition_preference(fn)`: fn(p_ai, rep_a, rep_b) -> among pairs whose repetition differs, the
   fraction where the AI prefers the less repetitive response: the measure of the constitution experiment.
"""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_agreement",
    "check_debiased",
    "check_repetition_preference",
    "reference_agreement",
    "reference_debiased",
    "reference_repetition_preference",
]


def reference_debiased(p_ab, p_ba):
    """Average P(A ≻ B | A shown first) with 1 − P(B ≻ A | B shown first): a slot bias cancels."""
    return 0.5 * (p_ab + (1.0 - p_ba))


_debias_reference = reference_debiased


def check_debiased(fn) -> bool:
    """`fn(p_ab, p_ba)`: P(A ≻ B) from the two presentation orders (p_ba is P(B ≻ A) with B shown first)."""
    g = torch.Generator().manual_seed(8)
    p_ab, p_ba = (
        torch.rand(64, generator=g, dtype=torch.float64),
        torch.rand(64, generator=g, dtype=torch.float64),
    )
    got = call_safely("debiased", fn, p_ab.clone(), p_ba.clone())
    assert_close("debiased", got, _debias_reference(p_ab, p_ba),
                 "average P(A>B | A first) with 1 - P(B>A | B first)")  # fmt: skip
    first_slot = call_safely(
        "debiased", fn, torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    )
    assert_close("debiased", first_slot, torch.full((3,), 0.5, dtype=torch.float64),
                 "a judge that always picks the first slot must come out at 1/2")  # fmt: skip
    return passed("debiased preference")


def reference_agreement(p_ai, gold_a, gold_b) -> float:
    """Among pairs with distinct gold, the share where the AI's pick (p_ai > 0.5: A) has the higher gold."""
    p_ai, gold_a, gold_b = (np.asarray(x, dtype=np.float64) for x in (p_ai, gold_a, gold_b))
    decided = gold_a != gold_b
    return float(((p_ai > 0.5) == (gold_a > gold_b))[decided].mean())


def check_agreement(fn) -> bool:
    """`fn(p_ai, gold_a, gold_b)`: among pairs with distinct gold scores, the fraction where the AI prefers
    the response with the higher gold reward."""
    rng = np.random.default_rng(8)
    gold_a, gold_b = rng.normal(size=200).round(1), rng.normal(size=200).round(1)
    p_ai = rng.random(200)
    got = call_safely("agreement", fn, p_ai.copy(), gold_a.copy(), gold_b.copy())
    want = reference_agreement(p_ai, gold_a, gold_b)
    if not isinstance(got, (float, int, np.floating)) and not (hasattr(got, "item")):
        raise ExerciseError("agreement: return one number, the fraction of agreeing pairs")
    assert_close("agreement", float(got), want, "leave out pairs whose gold rewards are equal")
    return passed("judge agreement")


def reference_repetition_preference(p_ai, rep_a, rep_b) -> float:
    """Among pairs whose repetition differs, the share where the AI's pick (p_ai > 0.5: A) repeats less."""
    p_ai, rep_a, rep_b = (np.asarray(x, dtype=np.float64) for x in (p_ai, rep_a, rep_b))
    decided = rep_a != rep_b
    return float(((p_ai > 0.5) == (rep_a < rep_b))[decided].mean())


def check_repetition_preference(fn) -> bool:
    """`fn(p_ai, rep_a, rep_b)`: P(AI prefers A) per pair, the repetition counts of A and B -> a fraction."""
    name = "preference for less repetition"
    rng = np.random.default_rng(83)
    hint = (
        "leave out pairs with equal repetition; the AI picks A when p_ai > 0.5; count the pairs where its "
        "pick "
        "is the response with the smaller repetition, over the pairs kept"
    )
    for n in (50, 300):
        rep_a, rep_b = rng.integers(0, 4, size=n), rng.integers(0, 4, size=n)  # small counts: ties happen
        p_ai = rng.random(n)
        got = call_safely(name, fn, p_ai.copy(), rep_a.copy(), rep_b.copy())
        try:
            got = float(got)
        except (TypeError, ValueError) as exc:
            raise ExerciseError(f"{name}: return one number, got {type(got).__name__}. Hint: {hint}") from exc
        assert_close(name, got, reference_repetition_preference(p_ai, rep_a, rep_b), hint)
    return passed(name)


EXERCISES = (
    Exercise(1, "Cancel the position bias", check_debiased, reference_debiased, lambda p_ab, p_ba: p_ab),
    Exercise(2, "Agreement with the gold ordering", check_agreement, reference_agreement,
             lambda p, ga, gb: float(((p > 0.5) == (ga > gb)).mean())),
    Exercise(3, "Against repetition", check_repetition_preference, reference_repetition_preference,
             lambda p, ra, rb: float(((p > 0.5) == (ra < rb)).mean()), kind="open"),
)  # fmt: skip
