"""Exercise checks for chapter 08 (RLAIF)."""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.exercises import ExerciseError, assert_close, call_safely, passed

__all__ = ["check_debiased", "check_agreement"]


def _debias_reference(p_ab, p_ba):
    return 0.5 * (p_ab + (1.0 - p_ba))


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


def _agreement_reference(p_ai, gold_a, gold_b) -> float:
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
    want = _agreement_reference(p_ai, gold_a, gold_b)
    if not isinstance(got, (float, int, np.floating)) and not (hasattr(got, "item")):
        raise ExerciseError("agreement: return one number, the fraction of agreeing pairs")
    assert_close("agreement", float(got), want, "leave out pairs whose gold rewards are equal")
    return passed("judge agreement")
