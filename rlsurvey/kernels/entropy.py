"""Per-token entropy of the policy's next-token distribution, fused, in Triton and in chunked PyTorch.

Survey section: 4.2 and 3 of arXiv 2412.10400 (PPO-style entropy bonuses; entropy monitoring in the
reasoning-RL recipes such as DAPO, arXiv 2503.14476, and the entropy-mechanism study, arXiv 2505.22617).

H_t = -sum_v p_v log p_v with p = softmax(x_t). In one pass it is H = lse - E_p[x], where lse is the
log-sum-exp of the row and E_p[x] = sum_v p_v x_v. An online softmax (arXiv 1805.02867) carries the running
max m, the running sum s = sum exp(x - m) and the running weighted sum w = sum exp(x - m) x, rescaling both
sums when m grows. The gradient is dH/dx_v = p_v (E_p[x] - x_v), which needs only lse and E_p[x] per row.
Entries equal to -inf have p_v = 0 and contribute 0 (not 0 * inf = NaN) to both.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend, triton_kernel
from rlsurvey.kernels._validate import FLOAT_DTYPES, check_tensor
from rlsurvey.kernels.logprobs import REFERENCE_CHUNK_BYTES, _chunk_rows, block_size, num_warps

__all__ = ["token_entropy", "token_entropy_naive", "token_entropy_reference"]

# `tl` is triton.language, bound on the first kernel launch so that importing this module never imports triton
# (see _dispatch.triton_kernel); kernel annotations such as "tl.constexpr" stay strings until then.
tl = None


def token_entropy_naive(logits):
    """Full float32 softmax; -inf entries contribute 0. The tests' ground truth."""
    x = logits.float()
    logp = torch.log_softmax(x, dim=-1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)


class _ChunkedEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, chunk_rows):
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        mean_x = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk_rows):
            sl = slice(s, s + chunk_rows)
            x = logits[sl].float()  # (C, V)
            lse[sl] = torch.logsumexp(x, dim=-1)
            p = torch.exp(x - lse[sl, None])
            mean_x[sl] = torch.where(p > 0, p * x, 0.0).sum(-1)
        ctx.save_for_backward(logits, lse, mean_x)
        ctx.chunk_rows = chunk_rows
        return lse - mean_x

    @staticmethod
    def backward(ctx, grad_out):
        logits, lse, mean_x = ctx.saved_tensors
        grad = torch.empty_like(logits)
        g = grad_out.float()
        for s in range(0, logits.shape[0], ctx.chunk_rows):
            sl = slice(s, s + ctx.chunk_rows)
            x = logits[sl].float()
            p = torch.exp(x - lse[sl, None])
            d = torch.where(p > 0, p * (mean_x[sl, None] - x), 0.0) * g[sl, None]
            grad[sl] = d.to(grad.dtype)
        return grad, None


def token_entropy_reference(logits, chunk_bytes: int = REFERENCE_CHUNK_BYTES):
    """Chunked PyTorch path for 2-D logits [N, V]: one float32 chunk of at most `chunk_bytes` at a time."""
    return _ChunkedEntropy.apply(logits, _chunk_rows(logits.shape[-1], chunk_bytes))


@triton_kernel
def _entropy_fwd_kernel(x_ptr, x_row_stride, h_ptr, lse_ptr, mean_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    m = float("-inf")
    s = 0.0  # sum exp(x - m)
    w = 0.0  # sum exp(x - m) * x
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - shift)
        e = tl.exp(x - shift)
        s = s * alpha + tl.sum(e, axis=0)
        w = w * alpha + tl.sum(e * tl.where(e > 0, x, 0.0), axis=0)  # 0 * -inf would be NaN
        m = m_new
    lse = m + tl.log(s)
    mean_x = w / s
    tl.store(h_ptr + row, lse - mean_x)
    tl.store(lse_ptr + row, lse)
    tl.store(mean_ptr + row, mean_x)


@triton_kernel
def _entropy_bwd_kernel(
    x_ptr, x_row_stride, lse_ptr, mean_ptr, g_ptr, dx_ptr, dx_row_stride, n_cols, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    dx_row = dx_ptr + row * dx_row_stride
    lse = tl.load(lse_ptr + row)
    mean_x = tl.load(mean_ptr + row)
    g = tl.load(g_ptr + row).to(tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=float("-inf")).to(tl.float32)
        p = tl.exp(x - lse)
        d = p * tl.where(p > 0, mean_x - x, 0.0) * g
        tl.store(dx_row + cols, d.to(dx_ptr.dtype.element_ty), mask=mask)


class _TritonEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits):
        n, v = logits.shape
        h, lse, mean_x = (torch.empty(n, dtype=torch.float32, device=logits.device) for _ in range(3))
        block = block_size(v)
        if n:
            args = (logits, logits.stride(0), h, lse, mean_x, v)
            _entropy_fwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
        ctx.save_for_backward(logits, lse, mean_x)
        return h

    @staticmethod
    def backward(ctx, grad_out):
        logits, lse, mean_x = ctx.saved_tensors
        n, v = logits.shape
        grad = torch.empty_like(logits)
        block = block_size(v)
        if n:
            args = (logits, logits.stride(0), lse, mean_x, grad_out.contiguous(), grad, grad.stride(0), v)
            _entropy_bwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
        return grad


def token_entropy(logits, *, backend=None):
    """Entropy of softmax(logits) along the last dimension, fused, float32.

    | argument | shape    | dtype                          | meaning                                 |
    |----------|----------|--------------------------------|-----------------------------------------|
    | logits   | [..., V] | float32, bfloat16, float16, 64 | unnormalized scores over the vocabulary |
    | returns  | [...]    | float32                        | H = -sum_v p_v log p_v, in [0, log V]   |

    Equation: H = logsumexp(x) - sum_v softmax(x)_v x_v. Differentiable with respect to `logits`;
    `backend` ("triton" or "torch") overrides RLSURVEY_KERNELS for this call.
    """
    check_tensor("logits", logits, FLOAT_DTYPES, ndim_min=1)
    if logits.shape[-1] == 0:
        raise ValueError("logits must have a non-empty last (vocabulary) dimension, got size 0")
    lead, vocab = logits.shape[:-1], logits.shape[-1]
    x = logits.reshape(-1, vocab)
    if x.stride(-1) != 1:
        x = x.contiguous()
    if resolve_backend(backend, x) == "triton":
        out = _TritonEntropy.apply(x)
    else:
        out = token_entropy_reference(x)
    return out.reshape(lead)
