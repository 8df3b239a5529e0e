"""The compiled Triton kernels on a CUDA device: bf16 and fp16, large shapes, int64 offsets.

Skipped without CUDA. The reference is the naive float32 computation on the same (upcast) inputs; the
tolerances are those of the output dtype, since gradients are rounded to bf16 / fp16 at the end.
"""

import pytest
import torch

from rlsurvey.kernels import (
    fused_linear_token_logprobs,
    fused_linear_token_logprobs_naive,
    gae,
    gae_reference,
    token_entropy,
    token_entropy_naive,
    token_logprobs,
    token_logprobs_and_entropy,
    token_logprobs_and_entropy_naive,
    token_logprobs_naive,
)
from rlsurvey.kernels._testing import outputs_and_grads

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DTYPES = [torch.bfloat16, torch.float16]


def _grad_tol(dtype):
    return {"atol": 1e-4, "rtol": 2e-2} if dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 2e-3}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,v", [(4096, 32000), (1000, 128256), (257, 151936)])
def test_logprobs_and_entropy_low_precision(dtype, n, v):
    gen = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.randn(n, v, device="cuda", generator=gen) * 4).to(dtype)
    targets = torch.randint(0, v, (n,), device="cuda", generator=gen)
    targets[::5] = -100
    inputs = {"logits": logits, "targets": targets}
    (out,), g = outputs_and_grads(
        lambda **kw: token_logprobs(**kw, temperature=0.8, backend="triton"), inputs
    )
    (ref,), rg = outputs_and_grads(lambda **kw: token_logprobs_naive(**kw, temperature=0.8), inputs)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g["logits"], rg["logits"], **_grad_tol(dtype))
    (h,), g = outputs_and_grads(lambda logits: token_entropy(logits, backend="triton"), {"logits": logits})
    (rh,), rg = outputs_and_grads(token_entropy_naive, {"logits": logits})
    torch.testing.assert_close(h, rh, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g["logits"], rg["logits"], **_grad_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,p,r,v", [(8, 33, 512, 151936), (3, 5, 1000, 32000)])
def test_one_pass_logprobs_and_entropy_on_a_strided_slice(dtype, b, p, r, v):
    """The response slice of a [B, P + R, V] output, read in place; both outputs and the gradient."""
    gen = torch.Generator(device="cuda").manual_seed(3)
    full = (torch.randn(b, p + r, v, device="cuda", generator=gen) * 4).to(dtype)
    targets = torch.randint(0, v, (b, r), device="cuda", generator=gen)
    targets[:, -r // 4 :] = -100  # right padding
    logits = full[:, p:, :]

    def ours(logits):
        return token_logprobs_and_entropy(logits, targets, temperature=0.9, backend="triton")

    def ref(logits):
        return token_logprobs_and_entropy_naive(logits, targets, temperature=0.9)

    (lp, h), g = outputs_and_grads(ours, {"logits": logits})
    (rlp, rh), rg = outputs_and_grads(ref, {"logits": logits})
    torch.testing.assert_close(lp, rlp, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(h, rh, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g["logits"], rg["logits"], **_grad_tol(dtype))


def test_out_of_range_targets_give_nan_without_a_host_sync():
    logits = torch.randn(4, 7, 50, device="cuda")
    targets = torch.randint(0, 50, (4, 7), device="cuda")
    targets[1, 2] = 50
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        lp, _ = token_logprobs_and_entropy(logits, targets, backend="triton")
        single = token_logprobs(logits, targets, backend="triton")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    bad = torch.zeros(4, 7, dtype=torch.bool, device="cuda")
    bad[1, 2] = True
    assert torch.isnan(lp[bad]).all() and torch.isfinite(lp[~bad]).all()
    assert torch.isnan(single[bad]).all() and torch.isfinite(single[~bad]).all()


def test_int64_offsets_beyond_two_to_the_31_elements():
    n, v = 17000, 128256  # 2.18e9 elements: int32 row offsets would wrap around
    logits = torch.empty(n, v, device="cuda", dtype=torch.bfloat16).normal_()
    targets = torch.randint(0, v, (n,), device="cuda")
    out = token_logprobs(logits, targets, backend="triton")
    rows = torch.tensor([0, n // 2, n - 1], device="cuda")
    torch.testing.assert_close(
        out[rows], token_logprobs_naive(logits[rows], targets[rows]), atol=1e-4, rtol=1e-5
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_linear_low_precision(dtype):
    n, h, v = 2048, 1024, 32000
    gen = torch.Generator(device="cuda").manual_seed(1)
    inputs = {
        "hidden": torch.randn(n, h, device="cuda", generator=gen).to(dtype),
        "weight": (torch.randn(v, h, device="cuda", generator=gen) / h**0.5).to(dtype),
        "targets": torch.randint(0, v, (n,), device="cuda", generator=gen),
    }
    chunk = 256 * v * 2  # eight chunks of 256 rows

    def ours(**kw):
        return fused_linear_token_logprobs(**kw, backend="triton", chunk_bytes=chunk)

    (out,), g = outputs_and_grads(ours, inputs)
    (ref,), rg = outputs_and_grads(fused_linear_token_logprobs_naive, inputs)
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)  # the bf16 matmul itself differs per shape
    for name in ("hidden", "weight"):
        torch.testing.assert_close(g[name].float(), rg[name].float(), atol=2e-2, rtol=5e-2)


def test_gae_on_cuda():
    gen = torch.Generator(device="cuda").manual_seed(2)
    rewards = torch.randn(64, 1024, device="cuda", generator=gen)
    values = torch.randn(64, 1024, device="cuda", generator=gen)
    mask = torch.rand(64, 1024, device="cuda", generator=gen) < 0.8
    adv, ret = gae(rewards, values, mask, 0.99, 0.95, backend="triton")
    want_adv, want_ret = gae_reference(rewards.double(), values.double(), mask, 0.99, 0.95)
    torch.testing.assert_close(adv.double(), want_adv, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ret.double(), want_ret, atol=1e-4, rtol=1e-5)
