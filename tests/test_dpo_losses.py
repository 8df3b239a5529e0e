"""The DPO loss family and the unpaired losses against hand-written formulas from their papers.

Each reference below is written element by element with Python's math module, independent of the package.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.dpo import LOSS_TYPES, log1mexp, preference_loss
from rlsurvey.algos.kto import kto_loss, kto_reference_point, npo_loss


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (-(torch.rand(n, generator=g, dtype=torch.float64) * 20 + 1) for _ in range(4))
    lc = torch.randint(1, 30, (n,), generator=g).double()
    lr = torch.randint(1, 30, (n,), generator=g).double()
    return pc, pr, rc, rr, lc, lr


def per_pair(loss_type, pc, pr, rc, rr, lc, lr, beta, eps=0.0, lam=50.0, gamma=0.5):
    d = (pc - rc) - (pr - rr)
    if loss_type == "sigmoid":
        return -logsig(beta * d)
    if loss_type == "hinge":
        return max(0.0, 1 - beta * d)
    if loss_type == "ipo":
        return ((pc - rc) / lc - (pr - rr) / lr - 1 / (2 * beta)) ** 2
    if loss_type == "cdpo":
        return -(1 - eps) * logsig(beta * d) - eps * logsig(-beta * d)
    if loss_type == "robust":
        return (-(1 - eps) * logsig(beta * d) + eps * logsig(-beta * d)) / (1 - 2 * eps)
    if loss_type == "dpop":
        return -logsig(beta * (d - lam * max(0.0, rc - pc)))
    if loss_type == "simpo":
        return -logsig(beta * pc / lc - beta * pr / lr - gamma)
    if loss_type == "orpo":
        a, b = pc / lc, pr / lr
        odds = (a - math.log(1 - math.exp(a))) - (b - math.log(1 - math.exp(b)))
        return -a - beta * logsig(odds)
    raise AssertionError(loss_type)


@pytest.mark.parametrize("loss_type", [t for t in LOSS_TYPES if t != "bdpo"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_equal_their_paper_formulas(loss_type, seed):
    pc, pr, rc, rr, lc, lr = batch(seed)
    beta, eps = 0.3, 0.2
    loss, metrics = preference_loss(
        pc, pr, rc, rr, loss_type, beta, label_smoothing=eps, chosen_lengths=lc, rejected_lengths=lr
    )
    rows = zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), lc.tolist(), lr.tolist(), strict=True)
    want = sum(per_pair(loss_type, *row, beta, eps=eps) for row in rows) / len(pc)
    assert loss.item() == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= metrics.keys()


def test_bdpo_adapts_beta_to_the_batch_margin():
    pc, pr, rc, rr, _, _ = batch(3)
    beta, alpha, m0 = 0.2, 0.6, 0.1
    loss, metrics = preference_loss(pc, pr, rc, rr, "bdpo", beta, bdpo_alpha=alpha, bdpo_margin_baseline=m0)
    margins = [(a - c) - (b - d) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    m_batch = sum(beta * m for m in margins) / len(margins)
    beta_b = beta * (1 + alpha * (m_batch - m0))
    want = sum(-logsig(beta_b * m) for m in margins) / len(margins)
    assert metrics["bdpo/beta"].item() == pytest.approx(beta_b)
    assert loss.item() == pytest.approx(want, rel=1e-10)
    # Without a running baseline β-DPO is plain DPO.
    same, _ = preference_loss(pc, pr, rc, rr, "bdpo", beta)
    dpo, _ = preference_loss(pc, pr, rc, rr, "sigmoid", beta)
    assert same.item() == pytest.approx(dpo.item())


@pytest.mark.parametrize("loss_type", ["cdpo", "robust"])
def test_zero_label_smoothing_is_dpo(loss_type):
    pc, pr, rc, rr, _, _ = batch(4)
    a, _ = preference_loss(pc, pr, rc, rr, loss_type, 0.5, label_smoothing=0.0)
    b, _ = preference_loss(pc, pr, rc, rr, "sigmoid", 0.5)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


def test_cdpo_and_robust_differ_when_smoothing():
    pc, pr, rc, rr, _, _ = batch(5)
    a, _ = preference_loss(pc, pr, rc, rr, "cdpo", 0.5, label_smoothing=0.2)
    b, _ = preference_loss(pc, pr, rc, rr, "robust", 0.5, label_smoothing=0.2)
    assert abs(a.item() - b.item()) > 1e-3


def test_small_beta_limit_of_dpo_is_its_taylor_expansion():
    """As β → 0, −log σ(βΔ) = log 2 − βΔ/2 + β²Δ²/8 + O(β⁴): DPO forgets the preferences."""
    pc, pr, rc, rr, _, _ = batch(6)
    beta = 1e-4
    loss, _ = preference_loss(pc, pr, rc, rr, "sigmoid", beta)
    d = (pc - rc) - (pr - rr)
    want = (math.log(2) - beta * d / 2 + beta**2 * d**2 / 8).mean().item()
    assert loss.item() == pytest.approx(want, abs=1e-13)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 5.0), st.integers(0, 10_000))
def test_dpo_gradient_weight_is_sigmoid_of_negative_implicit_margin(beta, seed):
    """d L / d log π(y_w) = −β σ(−βΔ) / B and d L / d log π(y_l) = +β σ(−βΔ) / B (DPO, section 4)."""
    pc, pr, rc, rr, _, _ = batch(seed)
    pc, pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    loss, _ = preference_loss(pc, pr, rc, rr, "sigmoid", beta)
    loss.backward()
    weight = torch.sigmoid(-beta * ((pc - rc) - (pr - rr))).detach()
    torch.testing.assert_close(pc.grad, -beta * weight / len(pc))
    torch.testing.assert_close(pr.grad, beta * weight / len(pc))


def test_reference_is_never_differentiated():
    pc, pr, rc, rr, _, _ = batch(7)
    rc, rr = rc.clone().requires_grad_(), rr.clone().requires_grad_()
    loss, _ = preference_loss(pc.requires_grad_(), pr, rc, rr, "sigmoid", 0.1)
    loss.backward()
    assert rc.grad is None and rr.grad is None


@given(st.floats(-50.0, -1e-9))
def test_log1mexp_matches_direct_formula(x):
    want = math.log(-math.expm1(x))
    assert log1mexp(torch.tensor(x, dtype=torch.float64)).item() == pytest.approx(want, rel=1e-9)


def test_kto_against_formula():
    g = torch.Generator().manual_seed(0)
    pol, ref = -torch.rand(8, generator=g).double() * 10, -torch.rand(8, generator=g).double() * 10
    kl_pol, kl_ref = -torch.rand(8, generator=g).double() * 10, -torch.rand(8, generator=g).double() * 10
    good = torch.tensor([True, False] * 4)
    z0 = kto_reference_point(kl_pol, kl_ref)
    assert z0.item() == pytest.approx(max(0.0, (kl_pol - kl_ref).mean().item()))
    beta, wd, wu = 0.2, 1.0, 1.5
    loss, _ = kto_loss(pol, ref, good, z0, beta, wd, wu)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = 0.0
    for p, r, d in zip(pol.tolist(), ref.tolist(), good.tolist()):
        want += (
            wd * (1 - sig(beta * (p - r - z0.item()))) if d else wu * (1 - sig(beta * (z0.item() - (p - r))))
        )
    assert loss.item() == pytest.approx(want / 8, rel=1e-10)


def test_npo_against_formula_and_gradient_ascent_limit():
    pol, ref = (
        torch.tensor([-3.0, -7.0], dtype=torch.float64),
        torch.tensor([-4.0, -6.0], dtype=torch.float64),
    )
    beta = 0.5
    loss, _ = npo_loss(pol, ref, beta)
    want = sum(-(2 / beta) * logsig(-beta * (p - r)) for p, r in zip(pol.tolist(), ref.tolist())) / 2
    assert loss.item() == pytest.approx(want, rel=1e-12)
    # β → 0: the gradient tends to that of gradient *ascent* on log π, i.e. +1/B per response.
    p = pol.clone().requires_grad_()
    npo_loss(p, ref, 1e-8)[0].backward()
    torch.testing.assert_close(p.grad, torch.full_like(p, 0.5), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss_type": "dpo2"}, "sigmoid"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"beta": 0.0}, "beta"),
        ({"loss_type": "simpo"}, "chosen_lengths"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    pc, pr, rc, rr, _, _ = batch(8)
    with pytest.raises(ValueError, match=match):
        preference_loss(pc, pr, rc, rr, **kwargs)


def test_missing_reference_and_shape_mismatch():
    pc, pr, rc, rr, _, _ = batch(9)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss(pc, pr, None, None, "sigmoid")
    with pytest.raises(ValueError, match="policy_rejected_logps"):
        preference_loss(pc, pr[:3], rc, rr)


def test_log1mexp_has_finite_gradients_next_to_zero():
    """log(1 - exp(x)) at x = -1e-8 in float32: both branches of the where are differentiated, and the
    unused one must not turn the gradient into NaN (ORPO at a mean log-prob of -1e-8 did)."""
    from rlsurvey.algos.dpo import log1mexp

    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-1e-8, -1e-4, -0.5, -math.log(2.0), -3.0, -40.0], dtype=dtype, requires_grad=True)
        y = log1mexp(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        assert torch.all(torch.isfinite(g)), g
        ref = torch.tensor([math.log(-math.expm1(v)) for v in x.tolist()], dtype=torch.float64)
        rtol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(y.double(), ref, rtol=rtol, atol=1e-15)
        want = torch.tensor([-math.exp(v) / -math.expm1(v) for v in x.tolist()], dtype=torch.float64)
        torch.testing.assert_close(g.double()[1:], want[1:], rtol=1e-4, atol=0)
    lp = torch.full((2,), -1e-8, requires_grad=True)
    loss, _ = preference_loss(
        lp, torch.tensor([-2.0, -3.0]), None, None, "orpo", 0.1,
        chosen_lengths=torch.tensor([3.0, 3.0]), rejected_lengths=torch.tensor([3.0, 3.0]),
    )  # fmt: skip
    (grad,) = torch.autograd.grad(loss, lp)
    assert torch.all(torch.isfinite(grad)), grad
