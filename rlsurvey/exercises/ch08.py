"""Exercises of chapter 08 (RLAIF, survey section 5 of arXiv 2412.10400).

1. `check_debiased(fn)`: fn(p_ab, p_ba) -> P(A ≻ B) from both presentation orders of an LM judge, the
   average of the chapter (a warm-up).
2. `check_logodds_debias(fn)`: fn(p_ab, p_ba) -> the judge's preference with its position bias removed
   exactly, when the bias is a shift b of the log-odds towards the first slot: P(first ≻ second) = σ(h + b)
   with h the log-odds the content earns. A derivation: the chapter's average of the two probabilities does
   not recover σ(h).
3. `check_soft_label_loss(fn)`: fn(margin, p_judge) -> the Bradley-Terry cross-entropy against the judge's
   probability instead of a hard label (Lee et al., arXiv 2309.00267, train their reward models on the AI
   labeller's soft labels). Its minimum sits at margin = logit(p_judge), not at an ever larger margin.
4. `check_repetition_preference(fn)`: fn(p_ai, rep_a, rep_b) -> among pairs whose repetition differs, the
   fraction where the AI prefers the less repetitive response: the measure of the constitution experiment.
"""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_debiased",
    "check_logodds_debias",
    "check_repetition_preference",
    "check_soft_label_loss",
    "reference_debiased",
    "reference_logodds_debias",
    "reference_repetition_preference",
    "reference_soft_label_loss",
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


def reference_logodds_debias(p_ab, p_ba):
    """logit p_ab = h + b and logit p_ba = −h + b, so h = (logit p_ab − logit p_ba) / 2: return σ(h)."""
    p_ab, p_ba = torch.as_tensor(p_ab, dtype=torch.float64), torch.as_tensor(p_ba, dtype=torch.float64)
    return torch.sigmoid(0.5 * (torch.logit(p_ab) - torch.logit(p_ba)))


def _biased_judge(n: int, seed: int):
    """A judge whose log-odds for 'first ≻ second' are h + b: content h (of A over B) plus a slot bias b."""
    g = torch.Generator().manual_seed(seed)
    h = 2.0 * torch.randn(n, generator=g, dtype=torch.float64)
    b = 1.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.sigmoid(h + b), torch.sigmoid(-h + b), torch.sigmoid(h)


def check_logodds_debias(fn) -> bool:
    """`fn(p_ab, p_ba)`: p_ab = P(A ≻ B) with A read first, p_ba = P(B ≻ A) with B read first, from a
    judge whose bias adds the same b to the log-odds of whichever response it reads first -> σ(h), the
    preference its content alone gives."""
    name = "log-odds debiasing"
    hint = (
        "write logit(p_ab) and logit(p_ba) in terms of h and b, and solve the two equations for h; the "
        "probability average of exercise 1 is not the answer when b != 0"
    )
    for seed, n in ((81, 200), (82, 7)):
        p_ab, p_ba, want = _biased_judge(n, seed)
        got = call_safely(name, fn, p_ab.clone(), p_ba.clone())
        assert_close(name, got, want, hint, atol=1e-6)
    return passed(name)


def reference_soft_label_loss(margin, p_judge):
    """−[p log σ(m) + (1 − p) log σ(−m)] per pair, m = r_φ(x, y_A) − r_φ(x, y_B), p = P_judge(A ≻ B)."""
    margin = torch.as_tensor(margin, dtype=torch.float64)
    p_judge = torch.as_tensor(p_judge, dtype=torch.float64)
    return -(p_judge * torch.nn.functional.logsigmoid(margin)
             + (1 - p_judge) * torch.nn.functional.logsigmoid(-margin))  # fmt: skip


def check_soft_label_loss(fn) -> bool:
    """`fn(margin, p_judge)`: the per-pair loss of a reward model whose margin r(A) − r(B) is fitted to the
    judge's probability p_judge that A is better (a tensor of losses, one per pair)."""
    name = "soft-label loss"
    hint = (
        "the cross-entropy between the judge's distribution (p, 1 - p) and the model's (σ(margin), "
        "σ(-margin)); with p = 1 it is the hard-label loss -log σ(margin); use logsigmoid for large margins"
    )
    g = torch.Generator().manual_seed(83)
    margin = 6.0 * torch.randn(300, generator=g, dtype=torch.float64)
    p = torch.rand(300, generator=g, dtype=torch.float64)
    margin[:3] = torch.tensor([60.0, -60.0, 0.0], dtype=torch.float64)  # saturated and even pairs
    got = call_safely(name, fn, margin.clone(), p.clone())
    assert_close(name, got, reference_soft_label_loss(margin, p), hint)
    # the loss's minimum over the margin must sit at logit(p): the gradient vanishes there
    p_star = torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64)
    m = torch.logit(p_star).clone().requires_grad_(True)
    out = call_safely(name, fn, m, p_star)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise ExerciseError(
            f"{name}: return a torch tensor built from margin with torch operations. Hint: {hint}"
        )
    (grad,) = torch.autograd.grad(out.sum(), m)
    assert_close(name, grad, torch.zeros(3, dtype=torch.float64), hint, atol=1e-6)
    return passed(name)


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
    Exercise(2, "Remove a log-odds position bias exactly", check_logodds_debias, reference_logodds_debias,
             reference_debiased),
    Exercise(3, "Soft labels from the judge", check_soft_label_loss, reference_soft_label_loss,
             lambda m, p: -torch.nn.functional.logsigmoid(m)),
    Exercise(4, "Against repetition", check_repetition_preference, reference_repetition_preference,
             lambda p, ra, rb: float(((p > 0.5) == (ra < rb)).mean()), kind="open"),
)  # fmt: skip
