"""Chapters 10 and 11's exercise checks: each passes its reference solution (and an independent hand-written
solution) and refuses typical wrong answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from rlsurvey.exercises import ExerciseError, ch10, ch11


def test_optimal_policy():
    assert ch10.check_optimal_policy(ch10.reference_optimal_policy)

    def by_hand(ref, r, beta):  # the textbook form, exp then normalize
        w = ref * torch.exp(r / beta)
        return w / w.sum()

    assert ch10.check_optimal_policy(by_hand)
    for wrong in (
        lambda ref, r, beta: ref * torch.exp(r / beta),  # not normalized
        lambda ref, r, beta: torch.softmax(r / beta, -1),  # forgets the reference
        lambda ref, r, beta: torch.softmax(torch.log(ref) + r * beta, -1),  # multiplies by β
        lambda ref, r, beta: (ref * torch.exp(r / beta)).tolist(),  # not a tensor
    ):
        with pytest.raises(ExerciseError):
            ch10.check_optimal_policy(wrong)


def test_implicit_reward():
    assert ch10.check_implicit_reward(ch10.reference_implicit_reward)
    assert ch10.check_implicit_reward(lambda p, r, b: b * p - b * r)
    for wrong in (lambda p, r, b: p - r, lambda p, r, b: b * (r - p), lambda p, r, b: b * p):
        with pytest.raises(ExerciseError):
            ch10.check_implicit_reward(wrong)


def test_dpo_loss():
    assert ch10.check_dpo_loss(ch10.reference_dpo_loss)

    def by_hand(pc, pr, rc, rr, beta):
        d = (pc - rc) - (pr - rr)
        return (
            torch.stack([torch.tensor(math.log1p(math.exp(-beta * x))) for x in d.tolist()]).mean().double()
        )

    assert ch10.check_dpo_loss(by_hand)
    for wrong in (
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(),  # no reference
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum(),  # sum, not mean
        lambda pc, pr, rc, rr, b: -F.logsigmoid(-b * ((pc - rc) - (pr - rr))).mean(),  # sign flipped
        lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))),  # per pair
        lambda pc, pr, rc, rr, b: 1 / 0,
    ):
        with pytest.raises(ExerciseError):
            ch10.check_dpo_loss(wrong)


def test_dpo_gradient_weight():
    assert ch10.check_dpo_gradient_weight(ch10.reference_dpo_gradient_weight)

    def by_autograd(pc, pr, rc, rr, beta):  # the weight read off the gradient itself
        pc = pc.clone().requires_grad_()
        (-F.logsigmoid(beta * ((pc - rc) - (pr - rr)))).sum().backward()
        return -pc.grad / beta

    assert ch10.check_dpo_gradient_weight(by_autograd)
    for wrong in (
        lambda pc, pr, rc, rr, b: torch.sigmoid(b * ((pc - rc) - (pr - rr))),
        lambda pc, pr, rc, rr, b: b * torch.sigmoid(-b * ((pc - rc) - (pr - rr))),
    ):
        with pytest.raises(ExerciseError):
            ch10.check_dpo_gradient_weight(wrong)


def _log_softmax(scores):
    top = max(scores)
    log_z = top + math.log(sum(math.exp(v - top) for v in scores))
    return [v - log_z for v in scores]


def log_linear_step_by_hand(features, theta, theta_ref, w, l, beta, lr):
    """Closed form, no autograd: the partition functions cancel in the gradient of Δ, so one step adds
    lr β σ(−β Δ) (f_w − f_l) to θ; then read both log-softmaxes."""
    phi, th, ref = features.tolist(), theta.tolist(), theta_ref.tolist()

    def log_probs(t):
        return _log_softmax([sum(a * b for a, b in zip(row, t)) for row in phi])

    now, before_ref = log_probs(th), log_probs(ref)
    delta = (now[w] - before_ref[w]) - (now[l] - before_ref[l])
    weight = lr * beta / (1 + math.exp(beta * delta))  # lr β σ(−β Δ)
    new = log_probs([t + weight * (a - b) for t, a, b in zip(th, phi[w], phi[l])])
    return torch.tensor([new[w] - now[w], new[l] - now[l]], dtype=torch.float64)


def test_log_linear_dpo_step():
    assert ch10.check_log_linear_dpo_step(ch10.reference_log_linear_dpo_step)
    assert ch10.check_log_linear_dpo_step(log_linear_step_by_hand)
    # the displacement case of the check: both log-probabilities fall while their difference rises
    phi = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]], dtype=torch.float64)
    change = log_linear_step_by_hand(phi, torch.zeros(2), torch.zeros(2), 0, 1, 1.0, 1.0)
    assert change[0] < 0 and change[1] < change[0]
    wrongs = (
        lambda *a: -log_linear_step_by_hand(*a),  # a step up the loss, not down
        lambda f, t, tr, w, l, b, lr: log_linear_step_by_hand(f, t, tr, w, l, 1.0, lr),  # forgets beta
        lambda f, t, tr, w, l, b, lr: log_linear_step_by_hand(f, t, t, w, l, b, lr),  # no reference: Δ = 0
        lambda f, t, tr, w, l, b, lr: log_linear_step_by_hand(f, t, tr, w, l, b, lr)[[1, 0]],  # swapped
    )
    for wrong in wrongs:
        with pytest.raises(ExerciseError):
            ch10.check_log_linear_dpo_step(wrong)


def test_ipo_loss():
    assert ch11.check_ipo_loss(ch11.reference_ipo_loss)
    by_hand = lambda pc, pr, rc, rr, lc, lr, b: (((pc - rc) / lc - (pr - rr) / lr - 1 / (2 * b)) ** 2).mean()  # noqa: E731
    assert ch11.check_ipo_loss(by_hand)
    summed = lambda pc, pr, rc, rr, lc, lr, b: (((pc - rc) - (pr - rr) - 1 / (2 * b)) ** 2).mean()  # noqa: E731
    target_b = lambda pc, pr, rc, rr, lc, lr, b: (((pc - rc) / lc - (pr - rr) / lr - b) ** 2).mean()  # noqa: E731
    for wrong in (summed, target_b):
        with pytest.raises(ExerciseError):
            ch11.check_ipo_loss(wrong)


def test_simpo_loss():
    assert ch11.check_simpo_loss(ch11.reference_simpo_loss)
    by_hand = lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * pc / lc - b * pr / lr - g).mean()  # noqa: E731
    assert ch11.check_simpo_loss(by_hand)
    no_norm = lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * pc - b * pr - g).mean()  # noqa: E731
    no_margin = lambda pc, pr, lc, lr, b, g: -F.logsigmoid(b * pc / lc - b * pr / lr).mean()  # noqa: E731
    for wrong in (no_norm, no_margin):
        with pytest.raises(ExerciseError):
            ch11.check_simpo_loss(wrong)


def test_cdpo_loss():
    assert ch11.check_cdpo_loss(ch11.reference_cdpo_loss)

    def by_hand(pc, pr, rc, rr, b, eps):
        d = b * ((pc - rc) - (pr - rr))
        return (-(1 - eps) * F.logsigmoid(d) - eps * F.logsigmoid(-d)).mean()

    assert ch11.check_cdpo_loss(by_hand)
    robust = lambda pc, pr, rc, rr, b, e: ch10.reference_dpo_loss(pc, pr, rc, rr, b) / (1 - 2 * e)  # noqa: E731
    for wrong in (robust, lambda pc, pr, rc, rr, b, e: ch10.reference_dpo_loss(pc, pr, rc, rr, b)):
        with pytest.raises(ExerciseError):
            ch11.check_cdpo_loss(wrong)


def test_robust_loss():
    assert ch11.check_robust_loss(ch11.reference_robust_loss)

    def by_hand(pc, pr, rc, rr, b, eps):
        d = b * ((pc - rc) - (pr - rr))
        return ((-(1 - eps) * F.logsigmoid(d) + eps * F.logsigmoid(-d)) / (1 - 2 * eps)).mean()

    assert ch11.check_robust_loss(by_hand)
    for wrong in (
        ch11.reference_cdpo_loss,
        lambda pc, pr, rc, rr, b, e: ch10.reference_dpo_loss(pc, pr, rc, rr, b),
    ):
        with pytest.raises(ExerciseError):
            ch11.check_robust_loss(wrong)


def test_npo_loss():
    assert ch11.check_npo_loss(ch11.reference_npo_loss)
    by_hand = lambda p, r, b: (-(2 / b) * F.logsigmoid(-b * (p - r))).mean()  # noqa: E731
    assert ch11.check_npo_loss(by_hand)
    ascent = lambda p, r, b: p.mean()  # noqa: E731 - gradient ascent on the likelihood, what NPO bounds
    for wrong in (ascent, lambda p, r, b: (-(2 / b) * F.logsigmoid(b * (p - r))).mean()):
        with pytest.raises(ExerciseError):
            ch11.check_npo_loss(wrong)
