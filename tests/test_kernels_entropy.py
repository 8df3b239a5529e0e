"""token_entropy: the Triton kernel (under triton's interpreter on the CPU) against the PyTorch references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.kernels import HAS_TRITON, token_entropy, token_entropy_naive, token_entropy_reference
from rlsurvey.kernels._dispatch import use_interpreter
from rlsurvey.kernels._testing import interpreter_failures, outputs_and_grads

INTERP = not torch.cuda.is_available() and use_interpreter()
interp = pytest.mark.skipif(not INTERP, reason="interpreter not active here; run by the subprocess test")
TOL = {"atol": 1e-5, "rtol": 1e-5}  # |a - b| <= 1e-5 + 1e-5 |b|, as in test_kernels_logprobs


def _logits(n, v, seed, scale=3.0):
    return torch.randn(n, v, generator=torch.Generator().manual_seed(seed)) * scale


def _assert_matches(logits, backend):
    (out,), grads = outputs_and_grads(
        lambda logits: token_entropy(logits, backend=backend), {"logits": logits}
    )
    (ref,), ref_grads = outputs_and_grads(token_entropy_naive, {"logits": logits})
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], **TOL)
    return out, grads["logits"]


@interp
@pytest.mark.parametrize("n,v", [(1, 5003), (7, 3), (7, 1000), (129, 3), (129, 1000), (1, 3), (129, 5003)])
def test_triton_matches_reference(n, v):
    _assert_matches(_logits(n, v, seed=n + v), "triton")


@interp
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's 0 * inf inside the interpreter, on purpose
def test_triton_minus_inf_leading_dims_and_extremes():
    logits = _logits(4, 5003, seed=1)
    logits[0, :4096] = -math.inf  # a first tile of only -inf
    logits[1, ::3] = -math.inf  # a masked vocabulary
    logits[2] = -math.inf
    logits[2, 7] = 0.0  # one possible token: entropy exactly 0
    logits[3] = 0.0  # uniform: entropy log V
    out, grad = _assert_matches(logits, "triton")
    assert torch.isfinite(grad).all() and (grad[0, :4096] == 0).all()
    assert out[2] == 0 and abs(out[3].item() - math.log(5003)) < 1e-5
    x = _logits(6, 11, seed=2).reshape(2, 3, 11).transpose(0, 1)  # [3, 2, V], non-contiguous rows
    torch.testing.assert_close(token_entropy(x, backend="triton"), token_entropy_naive(x), **TOL)


@pytest.mark.parametrize("n,v", [(1, 3), (7, 1000), (129, 5003)])
def test_chunked_reference_equals_naive(n, v):
    logits = _logits(n, v, seed=3)
    (out,), grads = outputs_and_grads(
        lambda logits: token_entropy_reference(logits, 3 * 4 * v), {"logits": logits}
    )
    (ref,), ref_grads = outputs_and_grads(token_entropy_naive, {"logits": logits})
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], **TOL)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), v=st.integers(1, 80), scale=st.floats(0.0, 60.0), seed=st.integers(0, 2**16))
def test_property_entropy_between_zero_and_log_vocab(n, v, scale, seed):
    h = token_entropy(_logits(n, v, seed, scale), backend="torch")
    assert (h >= -1e-6).all() and (h <= math.log(v) + 1e-5).all()
    torch.testing.assert_close(h, token_entropy_naive(_logits(n, v, seed, scale)), **TOL)


def test_entropy_gradient_matches_finite_differences():
    x = _logits(2, 5, seed=4).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: token_entropy(x, backend="torch"), (x,))


@pytest.mark.skipif(INTERP or not HAS_TRITON, reason="the interpreter tests ran in this process")
def test_interpreter_tests_in_subprocess(request):
    failures = interpreter_failures(__file__, request)
    assert not failures, "\n\n".join(failures)
