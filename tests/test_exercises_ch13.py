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
