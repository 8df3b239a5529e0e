"""Chapter 08's exercise checks pass their reference solutions and refuse wrong answers."""

import numpy as np
import pytest
import torch

from rlsurvey.exercises import ExerciseError, ch08


def test_debiased():
    assert ch08.check_debiased(lambda a, b: 0.5 * (a + 1 - b))
    with pytest.raises(ExerciseError):
        ch08.check_debiased(lambda a, b: a)
    with pytest.raises(ExerciseError):
        ch08.check_debiased(lambda a, b: 0.5 * (a + b))


def test_logodds_debias_reference_solution_and_wrong_answers():
    def solution(p_ab, p_ba):  # logit p_ab = h + b, logit p_ba = -h + b: h is half their difference
        return torch.sigmoid((torch.log(p_ab / (1 - p_ab)) - torch.log(p_ba / (1 - p_ba))) / 2)

    assert ch08.check_logodds_debias(solution)
    assert ch08.check_logodds_debias(ch08.reference_logodds_debias)
    wrong = {
        "the probability average (exercise 1, the chapter's fix)": lambda a, b: 0.5 * (a + 1 - b),
        "log-odds, not a probability": lambda a, b: (torch.logit(a) - torch.logit(b)) / 2,
        "the difference not halved": lambda a, b: torch.sigmoid(torch.logit(a) - torch.logit(b)),
        "one order only": lambda a, b: a,
        "the bias instead of the content": lambda a, b: torch.sigmoid((torch.logit(a) + torch.logit(b)) / 2),
    }
    for why, fn in wrong.items():
        with pytest.raises(ExerciseError):
            ch08.check_logodds_debias(fn)
            pytest.fail(why)


def test_logodds_debias_recovers_the_content_of_a_biased_judge():
    """The reference undoes any first-slot shift b exactly; the probability average only when b = 0."""
    h = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for b in (-1.0, 0.0, 0.7, 2.0):
        p_ab, p_ba = torch.sigmoid(h + b), torch.sigmoid(-h + b)
        torch.testing.assert_close(ch08.reference_logodds_debias(p_ab, p_ba), torch.sigmoid(h))
        avg = ch08.reference_debiased(p_ab, p_ba)
        assert torch.equal(avg > 0.5, h > 0) or b == 0  # the average keeps the order of A and B ...
        if b != 0:
            assert (avg - torch.sigmoid(h)).abs().max() > 0.02  # ... but not the probability


def test_soft_label_loss_reference_solution_and_wrong_answers():
    def solution(margin, p):
        return -(
            p * torch.nn.functional.logsigmoid(margin) + (1 - p) * torch.nn.functional.logsigmoid(-margin)
        )

    assert ch08.check_soft_label_loss(solution)
    assert ch08.check_soft_label_loss(ch08.reference_soft_label_loss)
    sig = torch.sigmoid
    wrong = {
        "the hard-label loss": lambda m, p: -torch.nn.functional.logsigmoid(m),
        "p and 1 - p swapped": lambda m, p: solution(m, 1 - p),
        "a squared error on the probability": lambda m, p: (sig(m) - p) ** 2,
        "log(1 - σ) overflows at a margin of 60": lambda m, p: (
            -(p * torch.log(sig(m)) + (1 - p) * torch.log(1 - sig(m)))
        ),
        "a detached NumPy answer": lambda m, p: torch.from_numpy(solution(m, p).detach().numpy()),
        "the hard label of the judge's pick": lambda m, p: solution(m, (p > 0.5).double()),
    }
    for why, fn in wrong.items():
        with pytest.raises(ExerciseError):
            ch08.check_soft_label_loss(fn)
            pytest.fail(why)


def test_soft_label_loss_is_minimal_at_the_logit_of_the_judges_probability():
    m = torch.linspace(-8, 8, 16001, dtype=torch.float64)
    for p in (0.1, 0.5, 0.8, 0.97):
        loss = ch08.reference_soft_label_loss(m, torch.full_like(m, p))
        assert m[loss.argmin()].item() == pytest.approx(np.log(p / (1 - p)), abs=2e-3)


def test_repetition_preference():
    assert ch08.check_repetition_preference(ch08.reference_repetition_preference)
    with pytest.raises(ExerciseError):  # keeps the pairs with equal repetition
        ch08.check_repetition_preference(lambda p, ra, rb: float(((p > 0.5) == (ra < rb)).mean()))
    with pytest.raises(ExerciseError):
        ch08.check_repetition_preference(lambda p, ra, rb: "most")
