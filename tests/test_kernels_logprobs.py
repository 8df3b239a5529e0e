"""token_logprobs: the Triton kernel (run by triton's interpreter on the CPU) against the PyTorch references.

Every output and every gradient must equal the naive full log-softmax within 1e-5, over odd shapes, ignored
positions, temperatures and -inf logits; the chunked reference must equal the naive one.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.kernels import HAS_TRITON, token_logprobs, token_logprobs_naive, token_logprobs_reference
from rlsurvey.kernels._dispatch import use_interpreter
from rlsurvey.kernels._testing import interpreter_failures, outputs_and_grads

# The interpreter runs in-process only on a CPU-only machine where triton is not yet imported compiled.
INTERP = not torch.cuda.is_available() and use_interpreter()
interp = pytest.mark.skipif(not INTERP, reason="interpreter not active here; run by the subprocess test")
# "Equal within 1e-5": |a - b| <= 1e-5 + 1e-5 |b|. The relative part matters only for large values
# (a log-prob of -131 has a float32 spacing of 1.5e-5), where an absolute 1e-5 asks for less than one ulp.
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _case(n, v, seed, ignore_every=3, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=gen) * scale
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[::ignore_every] = -100
    return logits, targets


def _assert_matches(inputs, temperature, backend):
    def ours(logits, targets):
        return token_logprobs(logits, targets, temperature=temperature, backend=backend)

    def naive(logits, targets):
        return token_logprobs_naive(logits, targets, temperature=temperature)

    (out,), grads = outputs_and_grads(ours, inputs)
    (ref,), ref_grads = outputs_and_grads(naive, inputs)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], **TOL)
    return out, grads["logits"]


# tokens x vocab: the full 3 x 3 grid of the required odd shapes, temperatures spread over it
GRID = [
    (n, v, t)
    for (n, v), t in zip(
        [(n, v) for n in (1, 7, 129) for v in (3, 1000, 5003)], [1.0, 0.7, 1.3, 2.0, 1.0, 0.5, 0.9, 1.0, 0.7]
    )
]


@interp
@pytest.mark.parametrize("n,v,temperature", GRID)
def test_triton_matches_reference(n, v, temperature):
    logits, targets = _case(n, v, seed=n * 10007 + v, ignore_every=3 if n > 1 else 2)
    out, grad = _assert_matches({"logits": logits, "targets": targets}, temperature, "triton")
    ignored = targets == -100
    assert (out[ignored] == 0).all() and (grad[ignored] == 0).all()


@interp
def test_triton_leading_dims_noncontiguous_int32_and_all_ignored():
    logits, targets = _case(12, 37, seed=1)
    x = logits.reshape(3, 4, 37).transpose(0, 1)  # [4, 3, V], rows not contiguous
    t = targets.reshape(3, 4).T.to(torch.int32)
    _assert_matches({"logits": x, "targets": t}, 1.0, "triton")
    none = torch.full((5,), -100)
    out, grad = _assert_matches({"logits": torch.randn(5, 9), "targets": none}, 1.0, "triton")
    assert (out == 0).all() and (grad == 0).all()


@interp
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's log(0) inside the interpreter, on purpose
def test_triton_handles_minus_inf_logits():
    logits = torch.randn(5, 5003, generator=torch.Generator().manual_seed(2)) * 3
    targets = torch.tensor([4500, 1001, 17, 5002, 0])
    logits[0, :4096] = -math.inf  # a whole first tile of -inf: the online max must not produce NaN
    logits[1, ::2] = -math.inf  # even ids masked out, as top-k filtering leaves a row; the target is odd
    logits[2, 17] = -math.inf  # the target itself is impossible: its log-prob is -inf
    out, grad = _assert_matches({"logits": logits, "targets": targets}, 1.0, "triton")
    assert out[2] == -math.inf and torch.isfinite(out[[0, 1, 3, 4]]).all()
    assert torch.isfinite(grad).all() and (grad[0, :4096] == 0).all() and (grad[1, ::2] == 0).all()
    # An ignored row of nothing but -inf: output and gradient exactly 0 (the naive path's gradient is NaN).
    dead = torch.full((1, 5003), -math.inf, requires_grad=True)
    lp = token_logprobs(dead, torch.tensor([-100]), backend="triton")
    lp.sum().backward()
    assert lp.item() == 0 and (dead.grad == 0).all()


@interp
def test_triton_large_logits_stay_finite_and_nonpositive():
    logits, targets = _case(7, 1000, seed=3, scale=1e4)
    out = token_logprobs(logits, targets, backend="triton")
    assert torch.isfinite(out).all() and (out <= 0).all()
    torch.testing.assert_close(out, token_logprobs_naive(logits, targets), **TOL)


@interp
def test_env_var_picks_the_path(monkeypatch):
    import rlsurvey.kernels.logprobs as module

    def refuse(*args, **kwargs):
        raise AssertionError("the other path ran")

    logits, targets = _case(5, 40, seed=6)
    want = token_logprobs_naive(logits, targets)
    monkeypatch.setenv("RLSURVEY_KERNELS", "triton")
    with monkeypatch.context() as patch:
        patch.setattr(module, "token_logprobs_reference", refuse)
        torch.testing.assert_close(token_logprobs(logits, targets), want, **TOL)
    monkeypatch.setenv("RLSURVEY_KERNELS", "torch")
    with monkeypatch.context() as patch:
        patch.setattr(module._TritonLogprobs, "apply", refuse)
        torch.testing.assert_close(token_logprobs(logits, targets), want, **TOL)
    monkeypatch.setenv("RLSURVEY_KERNELS", "auto")  # CPU tensors: the reference
    with monkeypatch.context() as patch:
        patch.setattr(module._TritonLogprobs, "apply", refuse)
        torch.testing.assert_close(token_logprobs(logits, targets), want, **TOL)


@pytest.mark.parametrize("n,v,temperature", [(1, 3, 1.0), (7, 1000, 0.7), (129, 5003, 1.3)])
def test_chunked_reference_equals_naive(n, v, temperature):
    logits, targets = _case(n, v, seed=4)
    inputs = {"logits": logits, "targets": targets}

    def chunked(logits, targets):  # about 3 rows per chunk: many chunks, a ragged last one
        return token_logprobs_reference(logits, targets, temperature=temperature, chunk_bytes=3 * 4 * v)

    (out,), grads = outputs_and_grads(chunked, inputs)
    (ref,), ref_grads = outputs_and_grads(
        lambda **kw: token_logprobs_naive(**kw, temperature=temperature), inputs
    )
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], **TOL)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 9),
    v=st.integers(1, 60),
    scale=st.floats(0.01, 50.0),
    temperature=st.floats(0.1, 5.0),
    chunk_rows=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_property_logprobs_nonpositive_and_chunked_equals_naive(n, v, scale, temperature, chunk_rows, seed):
    logits, targets = _case(n, v, seed, ignore_every=4, scale=scale)
    out = token_logprobs_reference(logits, targets, temperature=temperature, chunk_bytes=chunk_rows * 4 * v)
    assert (out <= 0).all()
    torch.testing.assert_close(out, token_logprobs_naive(logits, targets, temperature=temperature), **TOL)


def test_logprobs_of_all_tokens_sum_to_one():
    logits = torch.randn(2, 11)
    every = torch.arange(11).expand(2, 11)
    lp = token_logprobs(logits[:, None, :].expand(2, 11, 11), every, backend="torch")
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2))


@pytest.mark.skipif(INTERP or not HAS_TRITON, reason="the interpreter tests ran in this process")
def test_interpreter_tests_in_subprocess(request):
    failures = interpreter_failures(__file__, request)
    assert not failures, "\n\n".join(failures)
