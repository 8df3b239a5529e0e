"""Chapter 13's exercise checks: each passes the reference solution and refuses wrong answers."""

import math

import pytest
import torch

from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch13 as ex
from rlsurvey.kernels import gae_reference


def test_online_update():
    assert ex.check_online_update(ex.reference_online_update)
    x = torch.randn(300) * 10
    assert abs(ex.online_logsumexp(ex.reference_online_update, x, 32) - torch.logsumexp(x.double(), 0)) < 1e-9

    def no_rescale(m, s, tile):  # forgets to rescale the old sum when the max grows
        m_new = max(m, tile.max().item())
        shift = 0.0 if m_new == -math.inf else m_new
        return m_new, s + torch.exp(tile.double() - shift).sum().item()

    def unshifted(m, s, tile):  # sums exp(x) directly: overflows for large logits
        return max(m, tile.max().item()), s + torch.exp(tile.double()).sum().item()

    def no_guard(m, s, tile):  # NaN after a block of only -inf
        m_new = max(m, tile.max().item())
        return m_new, s * math.exp(m - m_new) + torch.exp(tile.double() - m_new).sum().item()

    for wrong in (no_rescale, unshifted, no_guard, lambda m, s, tile: 1 / 0, lambda m, s, tile: m):
        with pytest.raises(ExerciseError):
            ex.check_online_update(wrong)


def test_logprob_grad():
    assert ex.check_logprob_grad(ex.reference_logprob_grad)
    no_temperature = lambda x, t, temp: ex.reference_logprob_grad(x, t, temp) * temp  # noqa: E731
    softmax_only = lambda x, t, temp: -torch.softmax(x / temp, -1) / temp  # noqa: E731 - forgets the one-hot
    for wrong in (no_temperature, softmax_only):
        with pytest.raises(ExerciseError):
            ex.check_logprob_grad(wrong)


def test_roofline_time():
    assert ex.check_roofline_time(ex.reference_roofline_time)
    for wrong in (
        lambda f, b, pf, pb: f / pf + b / pb,  # adds the two instead of taking the larger
        lambda f, b, pf, pb: min(f / pf, b / pb),
        lambda f, b, pf, pb: f / pf,
    ):
        with pytest.raises(ExerciseError):
            ex.check_roofline_time(wrong)


def test_masked_gae():
    assert ex.check_masked_gae(lambda r, v, m, g, lam: gae_reference(r, v, m, g, lam)[0])

    def ignores_mask(r, v, m, g, lam):
        return gae_reference(r, v, torch.ones_like(m), g, lam)[0] * m

    def zero_bootstrap_at_holes(r, v, m, g, lam):  # resets the recursion at every masked step
        adv = torch.zeros_like(r)
        for i in range(r.shape[0]):
            last, nv = 0.0, 0.0
            for t in reversed(range(r.shape[1])):
                if not m[i, t]:
                    last, nv = 0.0, 0.0
                    continue
                last = r[i, t] + g * nv - v[i, t] + g * lam * last
                nv = v[i, t]
                adv[i, t] = last
        return adv

    for wrong in (ignores_mask, zero_bootstrap_at_holes):
        with pytest.raises(ExerciseError):
            ex.check_masked_gae(wrong)


def test_entropy_grad():
    assert ex.check_entropy_grad(ex.reference_entropy_grad)
    no_temperature = lambda x, t: ex.reference_entropy_grad(x, t) * t  # noqa: E731
    sign_flipped = lambda x, t: -ex.reference_entropy_grad(x, t)  # noqa: E731
    no_entropy_term = lambda x, t: -torch.softmax(x / t, -1) * torch.log_softmax(x / t, -1) / t  # noqa: E731
    for wrong in (no_temperature, sign_flipped, no_entropy_term):
        with pytest.raises(ExerciseError):
            ex.check_entropy_grad(wrong)


def test_merge_states():
    assert ex.check_merge_states(ex.reference_merge_states)

    def no_rescale(a, b):
        return max(a[0], b[0]), a[1] + b[1]

    def no_guard(a, b):  # NaN when one half is all -inf
        m = max(a[0], b[0])
        return m, a[1] * math.exp(a[0] - m) + b[1] * math.exp(b[0] - m)

    def keeps_first_max(a, b):
        return a[0], a[1] + b[1] * math.exp(b[0] - a[0])

    for wrong in (no_rescale, keeps_first_max, lambda a, b: a):
        with pytest.raises(ExerciseError):
            ex.check_merge_states(wrong)
    # no_guard only fails where a half is all -inf: the check includes such a row
    with pytest.raises(ExerciseError):
        ex.check_merge_states(no_guard)


def test_bandwidth_fraction():
    assert ex.check_bandwidth_fraction(ex.reference_bandwidth_fraction)
    for wrong in (
        lambda n, v, e, sec, bw, back: n * v * e / sec / bw,  # forgets the backward's traffic
        lambda n, v, e, sec, bw, back: (
            (2 if back else 1) * n * v * e / sec / bw
        ),  # forgets the gradient write
        lambda n, v, e, sec, bw, back: (3 if back else 1) * n * v / sec / bw,  # forgets the element size
    ):
        with pytest.raises(ExerciseError):
            ex.check_bandwidth_fraction(wrong)
