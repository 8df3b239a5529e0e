"""The exercises that used to be open questions: their reference solutions against brute-force twins, and
their checks on the specific mistakes they are meant to catch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlsurvey.algos.dpo import preference_loss
from rlsurvey.exercises import ExerciseError, ch00, ch01, ch03, ch04, ch05, ch06, ch09, ch10, ch11, ch13
from rlsurvey.rl import dp
from rlsurvey.survey import load_survey_map


def test_route_takes_the_first_chapter_of_each_method():
    survey = load_survey_map()
    firsts = {
        m: min(
            c for s in survey.sections for p in s.parts for x in p.methods if x.name == m for c in x.chapters
        )
        for m in ("DPO", "KTO", "InstructGPT")
    }
    assert ch00.reference_route(survey, list(firsts)) == sorted(set(firsts.values()))
    with pytest.raises(KeyError):
        ch00.reference_route(survey, ["no such method"])


@pytest.mark.parametrize("r, gamma", [(-1.0, 0.9), (0.5, 0.3), (0.0, 0.99)])
def test_wall_value_matches_the_linear_solve(r, gamma):
    P, R = np.ones((1, 1, 1)), np.array([[r]])  # one state, one action, back to itself forever
    assert ch01.reference_wall_value(r, gamma) == pytest.approx(
        dp.solve_linear(P, R, np.ones((1, 1)), gamma)[0]
    )
    assert ch01.reference_wall_value(-1.0, 1.0) == -math.inf and ch01.reference_wall_value(0.0, 1.0) == 0.0


def test_early_stop_by_a_loop():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 10, generator=g, dtype=torch.float64)
    new = old + torch.randn(3, 10, generator=g, dtype=torch.float64) * 0.3
    per_mb = [
        sum(math.exp(a - b) - 1 - (a - b) for a, b in zip(n, o)) / 10
        for n, o in zip(new.tolist(), old.tolist())
    ]
    k3 = sum(per_mb) / 3
    assert ch03.reference_early_stop(new, old, k3 * 0.99) and not ch03.reference_early_stop(
        new, old, k3 * 1.01
    )


@pytest.mark.parametrize("mass, b", [(0.2, 3.0), (0.01, 12.0), (0.6, -1.5)])
def test_tilt_kl_on_an_explicit_distribution(mass, b):
    p = torch.tensor([mass * 0.25, mass * 0.75, (1 - mass) * 0.5, (1 - mass) * 0.5], dtype=torch.float64)
    in_set = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    q = torch.softmax(p.log() + b * in_set, 0)
    assert ch04.reference_tilt_kl(mass, b) == pytest.approx(float((q * (q / p).log()).sum()), abs=1e-12)


def test_new_row_refusals():
    row = ch05.reference_new_row()
    assert ch05.check_new_row(row)
    minimax = {**row, "model": "MiniMax-M1", "organization": "MiniMax", "date": "2025-06",
               "source": "arXiv 2506.13585"}  # fmt: skip
    assert ch05.check_new_row(minimax)
    for bad, match in [
        ({**row, "date": "2024-06"}, "not after the survey"),
        ({**row, "family": "RLAIF"}, "does not teach"),
        ({**row, "source": " "}, "needs a source"),
        ({k: v for k, v in row.items() if k != "source"}, "expected a dict with the columns"),
        ({**row, "model": "Invented-9B"}, "only verify models whose report it knows"),
        ({**row, "open_weights": "no"}, "open_weights disagree"),
        ({**row, "date": "2025-04"}, "date disagree"),
        ({**row, "source": "arXiv 2501.12948"}, "source disagree"),
        ({**row, "family": "GRPO"}, "family disagree"),
    ]:
        with pytest.raises(ExerciseError, match=match):
            ch05.check_new_row(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_majority_ceiling_by_enumerating_votes(n):
    ga, gb = np.array([0.5, -1.0, 0.2, 0.7]), np.array([0.0, 0.3, 0.2, -0.9])
    total = 0.0
    for a, b in zip(ga[[0, 1, 3]], gb[[0, 1, 3]]):
        p = float(ch06.reference_agreement_ceiling([a], [b], 0.4, 0.15))  # one annotator is right w.p. p
        for votes in itertools.product([0, 1], repeat=n):
            k = sum(votes)
            weight = math.prod(p if v else 1 - p for v in votes)
            total += weight * (1.0 if 2 * k > n else 0.5 if 2 * k == n else 0.0)
    assert ch06.reference_majority_ceiling(ga, gb, 0.4, 0.15, n) == pytest.approx(total / 3, abs=1e-12)


@pytest.mark.parametrize("q, m", [(0.7, 0.5), (0.2, 1.0), (0.95, 0.1)])
def test_margin_optimum_by_grid_search(q, m):
    x = torch.linspace(-8, 8, 160_001, dtype=torch.float64)
    loss = -q * F.logsigmoid(x - m) - (1 - q) * F.logsigmoid(-x - m)
    assert ch06.reference_margin_optimum(q, m) == pytest.approx(float(x[loss.argmin()]), abs=2e-4)
    assert 1 / (1 + math.exp(-ch06.reference_margin_optimum(q, m))) != pytest.approx(q)  # not calibrated


def test_bon_curve_and_gao_fit_by_hand():
    g = torch.Generator().manual_seed(1)
    proxy, gold = (
        torch.randn(2, 6, generator=g, dtype=torch.float64),
        torch.randn(2, 6, generator=g, dtype=torch.float64),
    )
    by_hand = [
        sum(ch09.reference_best_of_n_expectation(proxy[i], gold[i], n) for i in range(2)) / 2 for n in (1, 3)
    ]
    torch.testing.assert_close(
        ch09.reference_bon_curve(proxy, gold, [1, 3]), torch.tensor(by_hand, dtype=torch.float64)
    )
    kl, gain = np.array([0.0, 1.0, 2.0, 4.0]), np.array([0.0, 0.7, 0.8, 0.6])
    d = np.sqrt(kl)
    a11, a12, a22 = (d * d).sum(), -(d**3).sum(), (d**4).sum()  # the 2 x 2 normal equations
    alpha, beta = np.linalg.solve([[a11, a12], [a12, a22]], [(d * gain).sum(), -(d**2 * gain).sum()])
    assert ch09.reference_gao_fit(kl, gain) == pytest.approx((alpha, beta))


@pytest.mark.parametrize("loss, beta", [(0.1, 0.1), (0.69, 2.0), (2.0, 0.5)])
def test_margin_for_loss_inverts_the_dpo_loss(loss, beta):
    delta = ch10.reference_margin_for_loss(loss, beta)
    assert float(-F.logsigmoid(torch.tensor(beta * delta))) == pytest.approx(loss)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_push_by_autograd_through_the_package_losses(beta):
    delta = torch.tensor([-3.0, -0.4, 0.2, 0.45 / beta, 2.5 / beta, 7.0], dtype=torch.float64)
    want = ch11.reference_push(delta, beta)
    ones, zeros = torch.ones_like(delta), torch.zeros_like(delta)
    for loss_type in ("sigmoid", "hinge", "ipo"):
        d = delta.clone().requires_grad_()
        loss, _ = preference_loss(
            d, zeros, zeros, zeros, loss_type, beta, chosen_lengths=ones, rejected_lengths=ones
        )
        (loss * len(delta)).backward()  # the batch mean times B: per-pair gradients
        torch.testing.assert_close(-d.grad, want[loss_type], msg=loss_type)


@pytest.mark.parametrize("h, v, peak, bw", [(4096, 128256, 989e12, 3.35e12), (512, 8000, 100e12, 1e12)])
def test_chunk_size_by_search(h, v, peak, bw):
    def compute_bound(c):
        return 2 * c * h * v / (2 * (c * h + h * v + c * v)) >= peak / bw

    smallest = next(c for c in range(1, 100_000) if compute_bound(c))
    assert ch13.reference_chunk_size(h, v, peak, bw) == smallest
    with pytest.raises(ValueError, match="memory-bound"):
        ch13.reference_chunk_size(64, 64, peak, bw)
