"""gae: the Triton scan (interpreter) and the PyTorch loop against a brute-force sum over masked sequences.

The brute force uses the explicit form of GAE (arXiv 1506.02438, eq. 16), A_k = sum_l (gamma lam)^(l-k)
delta_l over the valid positions, not the recursion the implementations use.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.kernels import HAS_TRITON, gae, gae_reference
from rlsurvey.kernels._dispatch import use_interpreter
from rlsurvey.kernels._testing import interpreter_failures, outputs_and_grads

INTERP = not torch.cuda.is_available() and use_interpreter()
interp = pytest.mark.skipif(not INTERP, reason="interpreter not active here; run by the subprocess test")
TOL = {"atol": 1e-5, "rtol": 1e-5}


def brute_force_gae(rewards, values, mask, gamma, lam):
    """Plain Python over lists: explicit discounted sums of TD errors over the valid positions."""
    b, t_len = len(rewards), len(rewards[0])
    adv = [[0.0] * t_len for _ in range(b)]
    ret = [[0.0] * t_len for _ in range(b)]
    for i in range(b):
        idx = [t for t in range(t_len) if mask[i][t]]
        n = len(idx)
        delta = [
            rewards[i][idx[k]] + gamma * (values[i][idx[k + 1]] if k + 1 < n else 0.0) - values[i][idx[k]]
            for k in range(n)
        ]
        for k in range(n):
            adv[i][idx[k]] = sum((gamma * lam) ** (j - k) * delta[j] for j in range(k, n))
            ret[i][idx[k]] = adv[i][idx[k]] + values[i][idx[k]]
    return torch.tensor(adv, dtype=torch.float64), torch.tensor(ret, dtype=torch.float64)


def _masks(b, t_len, gen):
    """Right padding, left padding, holes, an empty row and a full row, cycled over the batch."""
    rows = []
    for i in range(b):
        kind = i % 5
        if kind == 0:
            row = torch.arange(t_len) < torch.randint(1, t_len + 1, (1,), generator=gen)
        elif kind == 1:
            row = torch.arange(t_len) >= torch.randint(0, t_len, (1,), generator=gen)
        elif kind == 2:
            row = torch.rand(t_len, generator=gen) < 0.6
        elif kind == 3:
            row = torch.zeros(t_len, dtype=torch.bool)
        else:
            row = torch.ones(t_len, dtype=torch.bool)
        rows.append(row)
    return torch.stack(rows)


def _case(b, t_len, seed):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(b, t_len, generator=gen)
    values = torch.randn(b, t_len, generator=gen)
    return rewards, values, _masks(b, t_len, gen)


@interp
@pytest.mark.parametrize("b,t_len,gamma,lam", [(1, 1, 0.99, 0.95), (5, 7, 1.0, 1.0), (5, 129, 0.9, 0.8)])
def test_triton_matches_brute_force_and_reference_gradients(b, t_len, gamma, lam):
    rewards, values, mask = _case(b, t_len, seed=b * t_len)
    adv, ret = gae(rewards, values, mask, gamma, lam, backend="triton")
    want_adv, want_ret = brute_force_gae(
        rewards.double().tolist(), values.double().tolist(), mask, gamma, lam
    )
    torch.testing.assert_close(adv.double(), want_adv, **TOL)
    torch.testing.assert_close(ret.double(), want_ret, **TOL)

    inputs = {"rewards": rewards, "values": values, "mask": mask}
    _, grads = outputs_and_grads(lambda **kw: gae(**kw, gamma=gamma, lam=lam, backend="triton"), inputs)
    f64 = {"rewards": rewards.double(), "values": values.double(), "mask": mask}
    _, ref_grads = outputs_and_grads(lambda **kw: gae_reference(**kw, gamma=gamma, lam=lam), f64)
    for name in ("rewards", "values"):
        torch.testing.assert_close(grads[name].double(), ref_grads[name], **TOL)
        assert (grads[name][~mask] == 0).all()


@interp
def test_triton_accepts_int_and_float_masks():
    rewards, values, mask = _case(5, 9, seed=3)
    want = gae(rewards, values, mask, 0.95, 0.9, backend="triton")
    for m in (mask.int(), mask.float(), mask.long()):
        got = gae(rewards, values, m, 0.95, 0.9, backend="triton")
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 6),
    t_len=st.integers(1, 12),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_property_reference_equals_brute_force(b, t_len, gamma, lam, seed):
    rewards, values, mask = _case(b, t_len, seed)
    rewards, values = rewards.double(), values.double()
    adv, ret = gae(rewards, values, mask, gamma, lam, backend="torch")
    want_adv, want_ret = brute_force_gae(rewards.tolist(), values.tolist(), mask, gamma, lam)
    torch.testing.assert_close(adv, want_adv, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ret, want_ret, atol=1e-10, rtol=1e-10)


def test_special_cases_td_error_and_reward_to_go():
    rewards, values, _ = _case(3, 6, seed=4)
    full = torch.ones(3, 6, dtype=torch.bool)
    adv, _ = gae(rewards, values, full, 0.9, 0.0, backend="torch")  # lam = 0: one-step TD error
    next_v = torch.cat([values[:, 1:], torch.zeros(3, 1)], dim=1)
    torch.testing.assert_close(adv, rewards + 0.9 * next_v - values)
    _, ret = gae(rewards, values, full, 1.0, 1.0, backend="torch")  # gamma = lam = 1: reward-to-go
    torch.testing.assert_close(ret, rewards.flip(1).cumsum(1).flip(1))


@pytest.mark.skipif(INTERP or not HAS_TRITON, reason="the interpreter tests ran in this process")
def test_interpreter_tests_in_subprocess(request):
    failures = interpreter_failures(__file__, request)
    assert not failures, "\n\n".join(failures)
