"""token_logprobs_and_entropy: one pass for both, against the naive pair and the two separate functions.

The Triton kernels run under triton's interpreter on the CPU; every gradient is checked with upstream
gradients on both outputs, on odd shapes, 3-D strided inputs, ignored rows, temperatures and -inf logits.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.kernels import HAS_TRITON, token_entropy, token_logprobs
from rlsurvey.kernels._dispatch import use_interpreter
from rlsurvey.kernels._testing import interpreter_failures, outputs_and_grads
from rlsurvey.kernels._validate import mask_bad_targets, sanitize_targets
from rlsurvey.kernels.logprobs_entropy import (
    _as_3d,
    token_logprobs_and_entropy,
    token_logprobs_and_entropy_naive,
    token_logprobs_and_entropy_reference,
)

INTERP = not torch.cuda.is_available() and use_interpreter()
interp = pytest.mark.skipif(not INTERP, reason="interpreter not active here; run by the subprocess test")
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _case(shape, v, seed, ignore_every=3, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, v, generator=gen) * scale
    targets = torch.randint(0, v, shape, generator=gen)
    targets.view(-1)[::ignore_every] = -100
    return logits, targets


def _assert_matches(logits, targets, temperature, backend):
    def ours(logits):
        return token_logprobs_and_entropy(logits, targets, temperature=temperature, backend=backend)

    def naive(logits):
        return token_logprobs_and_entropy_naive(logits, targets, temperature=temperature)

    (lp, h), grads = outputs_and_grads(ours, {"logits": logits})
    (lp_ref, h_ref), ref_grads = outputs_and_grads(naive, {"logits": logits})
    torch.testing.assert_close(lp, lp_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], **TOL)
    return lp, h, grads["logits"]


@interp
@pytest.mark.parametrize(
    "shape,v", [((1,), 5003), ((7,), 3), ((129,), 1000), ((3, 5), 1001), ((2, 65), 8193)]
)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_triton_matches_naive(shape, v, temperature):
    logits, targets = _case(shape, v, seed=sum(shape) + v)
    _assert_matches(logits, targets, temperature, "triton")


@interp
def test_triton_reads_a_3d_slice_through_its_strides_without_a_copy(monkeypatch):
    """The response positions of a [B, P + R, V] output: a view whose batch stride is not R * V."""
    full, targets_full = _case((3, 9), 37, seed=5)
    logits = full[:, 2:7, :]  # [3, 5, 37], rows contiguous, batches not
    targets = targets_full[:, 2:7]
    assert not logits.is_contiguous() and _as_3d(logits).data_ptr() == logits.data_ptr()
    copies = []
    real = torch.Tensor.contiguous
    monkeypatch.setattr(
        torch.Tensor, "contiguous", lambda self, *a, **k: copies.append(self.shape) or real(self)
    )
    _assert_matches(logits, targets, 1.3, "triton")
    assert not any(len(s) == 3 and s[-1] == 37 for s in copies), copies


@interp
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's exp(-inf) arithmetic in the interpreter
def test_triton_minus_inf_ignored_rows_and_extremes():
    logits, targets = _case((5,), 5003, seed=1, ignore_every=100)
    logits[0, :4096] = -math.inf  # a first tile of only -inf
    logits[1, ::3] = -math.inf
    targets[1] = 1  # a finite entry
    logits[2] = -math.inf
    logits[2, 7] = 0.0  # one possible token: entropy 0, log-prob 0
    targets[2] = 7
    logits[3] = 0.0  # uniform: entropy log V
    logits[4] = float("nan")  # an ignored row is never read: its NaNs do not leak
    targets[4] = -100
    lp, h, grad = _assert_matches(logits[:4], targets[:4], 1.0, "triton")
    assert h[2] == 0 and lp[2] == 0 and abs(h[3].item() - math.log(5003)) < 1e-5
    assert torch.isfinite(grad).all() and (grad[0, :4096] == 0).all()
    (lp, h), grads = outputs_and_grads(
        lambda logits: token_logprobs_and_entropy(logits, targets, backend="triton"), {"logits": logits}
    )
    assert lp[4] == 0 and h[4] == 0 and (grads["logits"][4] == 0).all()


@interp
def test_triton_one_output_alone_bfloat16_and_int32():
    logits, targets = _case((4, 6), 300, seed=2)
    lp, h = token_logprobs_and_entropy(logits.bfloat16(), targets.int(), backend="triton")
    want_lp, want_h = token_logprobs_and_entropy_naive(logits.bfloat16(), targets)
    torch.testing.assert_close(lp, want_lp, **TOL)
    torch.testing.assert_close(h, want_h, **TOL)
    x = logits.clone().requires_grad_()
    token_logprobs_and_entropy(x, targets, backend="triton")[1].sum().backward()  # entropy only
    y = logits.clone().requires_grad_()
    (token_entropy(y) * (targets != -100)).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, **TOL)


@pytest.mark.parametrize("shape,v", [((1,), 3), ((7,), 1000), ((3, 43), 5003)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_reference_matches_naive_and_the_separate_functions(shape, v, temperature):
    logits, targets = _case(shape, v, seed=7)
    lp, h, _ = _assert_matches(logits, targets, temperature, "torch")
    valid = targets != -100
    torch.testing.assert_close(lp, token_logprobs(logits, targets, temperature=temperature), **TOL)
    torch.testing.assert_close(h, token_entropy(logits / temperature) * valid, **TOL)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40), v=st.integers(1, 300), chunk_rows=st.integers(1, 9), scale=st.floats(0.1, 30.0),
    temperature=st.floats(0.3, 3.0), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_property_chunked_equals_naive_entropy_in_range(n, v, chunk_rows, scale, temperature, seed):
    logits, targets = _case((n,), v, seed, scale=scale)

    def chunked(logits):
        return token_logprobs_and_entropy_reference(logits, targets, -100, temperature, chunk_rows * 4 * v)

    (lp, h), grads = outputs_and_grads(chunked, {"logits": logits})
    (lp_ref, h_ref), ref_grads = outputs_and_grads(
        lambda logits: token_logprobs_and_entropy_naive(logits, targets, temperature=temperature),
        {"logits": logits},
    )
    torch.testing.assert_close(lp, lp_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h, h_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads["logits"], ref_grads["logits"], atol=1e-4, rtol=1e-4)
    assert (lp <= 1e-6).all() and (h >= -1e-5).all() and (h <= math.log(v) + 1e-4).all()


def test_bad_input_is_named():
    logits, targets = _case((2, 3), 11, seed=0)
    with pytest.raises(ValueError, match=r"targets must have shape"):
        token_logprobs_and_entropy(logits, targets[:, :2])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 11\).*got 11"):
        token_logprobs_and_entropy(logits, targets.masked_fill(targets == targets.max(), 11))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs_and_entropy(logits, targets, temperature=0.0)
    with pytest.raises(TypeError, match="logits must have dtype"):
        token_logprobs_and_entropy(logits.long(), targets)


def test_device_targets_are_sanitized_without_reading_a_value():
    """On a device other than the CPU the range check must not copy a value to the host (a synchronisation
    per call on a GPU). On the meta device any read raises, so passing there shows that nothing is read;
    the bad ids become ignore_index and come back as a mask."""
    t = torch.tensor([0, 5, -100, 11, -3], device="meta")
    safe, bad = sanitize_targets("targets", t, 11, -100)
    assert safe.device.type == "meta" and bad.shape == t.shape
    safe, bad = mask_bad_targets(torch.tensor([0, 5, -100, 11, -3]), 11, -100)
    assert safe.tolist() == [0, 5, -100, -100, -100] and bad.tolist() == [False, False, False, True, True]


@pytest.mark.skipif(INTERP or not HAS_TRITON, reason="the interpreter tests ran in this process")
def test_interpreter_tests_in_subprocess(request):
    failures = interpreter_failures(__file__, request)
    assert not failures, "\n\n".join(failures)


def test_reference_log_probs_are_bitwise_those_of_token_logprobs_when_the_entropy_is_only_logged():
    """A trainer that logs the entropy must train exactly as one that does not: same values, and, when the
    entropy takes no part in the loss, the same gradient bit for bit (Adam's first step is sign-like, so
    rounding differences in tiny gradients would change the update)."""
    logits, targets = _case((4, 9), 301, seed=9)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lp, h = token_logprobs_and_entropy(x, targets, temperature=0.7, backend="torch")
    want = token_logprobs(y, targets, temperature=0.7, backend="torch")
    assert torch.equal(lp, want)
    upstream = torch.randn(lp.shape, generator=torch.Generator().manual_seed(1))
    (lp * upstream).sum().backward()
    (want * upstream).sum().backward()
    assert torch.equal(x.grad, y.grad)
