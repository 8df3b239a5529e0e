"""Per-token entropy of the policy's next-token distribution, fused, in Triton and in chunked PyTorch.

Survey section: 4.2 and 3 of arXiv 2412.10400 (PPO-style entropy bonuses; entropy monitoring in the
reasoning-RL recipes such as DAPO, arXiv 2503.14476, and the entropy-mechanism study, arXiv 2505.22617).

H_t = -sum_v p_v log p_v with p = softmax(x_t). Written against the row maximum m, with z = x - m and
s = sum_v exp(z_v), it is H = log s - q where q = E_p[z] = sum_v exp(z_v) z_v / s: two non-negative terms of
moderate size. (The equivalent lse - E_p[x] subtracts two numbers close to max(x), and loses the answer to
rounding when logits are large.) An online softmax (arXiv 1805.02867) carries m, s and w = sum exp(z) z
through the vocabulary tiles; when the maximum grows from m to m', every term rescales by a = exp(m - m')
and shifts by (m - m'): s' = a s, w' = a (w + (m - m') s). The gradient is dH/dx_v = p_v (q - z_v), which
needs only m, lse = m + log s and q per row. Entries equal to -inf have p_v = 0 and contribute 0 (not
0 * inf = NaN) to both.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend, triton_kernel
from rlsurvey.kernels._validate import FLOAT_DTYPES, check_tensor, compute_dtype
from rlsurvey.kernels.logprobs import REFERENCE_CHUNK_BYTES, _chunk_rows, block_size, num_warps

__all__ = ["token_entropy", "token_entropy_naive", "token_entropy_reference"]

# `tl` is triton.language, bound on the first kernel launch so that importing this module never imports triton
# (see _dispatch.triton_kernel); kernel annotations such as "tl.constexpr" stay strings until then.
tl = None


def token_entropy_naive(logits):
    """Full softmax in float64, returned in the kernels' output dtype; -inf entries contribute 0. The tests'
    ground truth. (float64 because the truth must be more exact than what it judges: a float32 softmax over
    5,003 entries is itself off by up to a few 1e-5 on some CPUs, the size of the kernels' tolerance.)"""
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    p = logp.exp()
    # where() on the factor, not on the product: 0 * -inf in an unselected branch would still give NaN grads
    return (-(p * torch.where(p > 0, logp, 0.0)).sum(-1)).to(compute_dtype(logits.dtype))


def _stable_terms(x):
    """Row max m, log s and q = E_p[x - m] of a float32 chunk [C, V] (see the module docstring)."""
    m = x.max(dim=-1, keepdim=True).values
    z = x - m
    log_s = torch.logsumexp(z, dim=-1, keepdim=True)
    p = torch.exp(z - log_s)
    q = (p * torch.where(p > 0, z, 0.0)).sum(-1, keepdim=True)
    return m, z, log_s, p, q


class _ChunkedEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, chunk_rows):
        n = logits.shape[0]
        h = torch.empty(n, dtype=compute_dtype(logits.dtype), device=logits.device)
        for s in range(0, n, chunk_rows):
            sl = slice(s, s + chunk_rows)
            _, _, log_s, _, q = _stable_terms(logits[sl].to(h.dtype))
            h[sl] = (log_s - q).squeeze(1)
        ctx.save_for_backward(logits)
        ctx.chunk_rows = chunk_rows
        return h

    @staticmethod
    def backward(ctx, grad_out):
        (logits,) = ctx.saved_tensors
        grad = torch.empty_like(logits)
        acc = compute_dtype(logits.dtype)
        g = grad_out.to(acc)
        for s in range(0, logits.shape[0], ctx.chunk_rows):
            sl = slice(s, s + ctx.chunk_rows)
            _, z, _, p, q = _stable_terms(logits[sl].to(acc))  # recomputed: the chunk is cheap to redo
            grad[sl] = (p * torch.where(p > 0, q - z, 0.0) * g[sl, None]).to(grad.dtype)
        return grad, None


def token_entropy_reference(logits, chunk_bytes: int = REFERENCE_CHUNK_BYTES):
    """Chunked PyTorch path for 2-D logits [N, V]: one float32 chunk of at most `chunk_bytes` at a time."""
    return _ChunkedEntropy.apply(logits, _chunk_rows(logits.shape[-1], chunk_bytes))


@triton_kernel
def _entropy_fwd_kernel(x_ptr, x_row_stride, h_ptr, lse_ptr, m_ptr, q_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    m = float("-inf")
    s = 0.0  # sum exp(x - m)
    w = 0.0  # sum exp(x - m) * (x - m)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a tile of only -inf must not make NaNs
        alpha = tl.exp(m - shift)
        z = x - shift
        e = tl.exp(z)
        # rescale the old sums to the new max; (m - shift) * s is 0 (not NaN) while nothing was finite yet
        w = alpha * (w + tl.where(s > 0, m - shift, 0.0) * s) + tl.sum(e * tl.where(e > 0, z, 0.0), axis=0)
        s = s * alpha + tl.sum(e, axis=0)
        m = m_new
    q = w / s
    tl.store(h_ptr + row, tl.log(s) - q)
    tl.store(lse_ptr + row, m + tl.log(s))
    tl.store(m_ptr + row, m)
    tl.store(q_ptr + row, q)


@triton_kernel
def _entropy_bwd_kernel(
    x_ptr, x_row_stride, lse_ptr, m_ptr, q_ptr, g_ptr, dx_ptr, dx_row_stride, n_cols, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    dx_row = dx_ptr + row * dx_row_stride
    lse = tl.load(lse_ptr + row)
    m = tl.load(m_ptr + row)
    q = tl.load(q_ptr + row)
    g = tl.load(g_ptr + row).to(tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=float("-inf")).to(tl.float32)
        p = tl.exp(x - lse)
        d = p * tl.where(p > 0, q - (x - m), 0.0) * g  # dH/dx = p (q - z)
        tl.store(dx_row + cols, d.to(dx_ptr.dtype.element_ty), mask=mask)


class _TritonEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits):
        n, v = logits.shape
        h, lse, m, q = (torch.empty(n, dtype=torch.float32, device=logits.device) for _ in range(4))
        block = block_size(v)
        if n:
            args = (logits, logits.stride(0), h, lse, m, q, v)
            _entropy_fwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
        ctx.save_for_backward(logits, lse, m, q)
        return h

    @staticmethod
    def backward(ctx, grad_out):
        logits, lse, m, q = ctx.saved_tensors
        n, v = logits.shape
        grad = torch.empty_like(logits)
        block = block_size(v)
        if n:
            args = (logits, logits.stride(0), lse, m, q, grad_out.contiguous(), grad, grad.stride(0), v)
            _entropy_bwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
        return grad


def token_entropy(logits, *, backend=None):
    """Entropy of softmax(logits) along the last dimension, fused, float32.

    | argument | shape    | dtype                          | meaning                                 |
    |----------|----------|--------------------------------|-----------------------------------------|
    | logits   | [..., V] | float32, bfloat16, float16, 64 | unnormalized scores over the vocabulary |
    | returns  | [...]    | float32 (float64 for float64)  | H = -sum_v p_v log p_v, in [0, log V]   |

    Equation: H = log sum_v exp(z_v) - sum_v softmax(x)_v z_v with z = x - max(x). Differentiable with
    respect to `logits`; `backend` ("triton" or "torch") overrides RLSURVEY_KERNELS for this call;
    float64 inputs always run the reference, in float64.
    """
    check_tensor("logits", logits, FLOAT_DTYPES, ndim_min=1)
    if logits.shape[-1] == 0:
        raise ValueError("logits must have a non-empty last (vocabulary) dimension, got size 0")
    lead, vocab = logits.shape[:-1], logits.shape[-1]
    x = logits.reshape(-1, vocab)
    if x.stride(-1) != 1:
        x = x.contiguous()
    if resolve_backend(backend, x) == "triton" and x.dtype != torch.float64:
        out = _TritonEntropy.apply(x)
    else:
        out = token_entropy_reference(x)
    return out.reshape(lead)
