"""Per-token log-probabilities: a fused log-softmax and gather, in Triton and in chunked PyTorch.

Survey section: 2.2 and 4.2 of arXiv 2412.10400 (the LM as a policy; every policy-gradient and preference
loss starts from log pi(y_t | y_<t)).

The operation is log p_t = x[t, y_t] / T - logsumexp_v(x[t, v] / T). Done eagerly it materializes the whole
[tokens, vocab] log-softmax in float32 (4 x tokens x vocab bytes, gigabytes at a 128k vocabulary) only to read
one entry per row. The kernel streams each row once with an online softmax (Milakov and Gimelshein,
arXiv 1805.02867) and writes one float per token; the backward pass writes the gradient of the logits
directly, (onehot(y_t) - softmax(x_t / T)) * g_t / T, without storing probabilities in between. The same
anatomy as Liger-Kernel's cross entropy (arXiv 2410.10989), written for log-probs rather than a loss.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend, triton_kernel
from rlsurvey.kernels._validate import (
    FLOAT_DTYPES,
    check_same_device,
    check_temperature,
    check_tensor,
    compute_dtype,
    sanitize_targets,
)

__all__ = ["token_logprobs", "token_logprobs_naive", "token_logprobs_reference"]

# `tl` is triton.language, bound on the first kernel launch so that importing this module never imports triton
# (see _dispatch.triton_kernel); kernel annotations such as "tl.constexpr" stay strings until then.
tl = None

# The CPU reference works on row chunks whose float32 copy is at most this many bytes.
REFERENCE_CHUNK_BYTES = 16 * 2**20


def _chunk_rows(vocab: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (4 * max(vocab, 1)))


# ----------------------------------------------------------------------------------------------------------
# PyTorch references
# ----------------------------------------------------------------------------------------------------------


def token_logprobs_naive(logits, targets, ignore_index: int = -100, temperature: float = 1.0):
    """The textbook version: a full float32 log-softmax, then a gather. The tests' ground truth."""
    valid = targets != ignore_index
    logp = torch.log_softmax(logits.to(compute_dtype(logits.dtype)) / temperature, dim=-1)
    picked = logp.gather(-1, torch.where(valid, targets, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, picked, torch.zeros_like(picked))


def _scaled(x, temperature: float):
    z = x.to(compute_dtype(x.dtype))  # no copy for float32 input
    return z if temperature == 1.0 else z / temperature


def chunk_forward(x, targets, ignore_index: int, temperature: float):
    """One chunk of rows [C, V]: returns (log p at targets, logsumexp), both float32 [C]."""
    z = _scaled(x, temperature)  # (C, V)
    lse = torch.logsumexp(z, dim=-1)
    valid = targets != ignore_index
    picked = z.gather(1, torch.where(valid, targets, 0)[:, None]).squeeze(1)
    return torch.where(valid, picked - lse, 0.0), lse


def chunk_backward(x, targets, lse, grad_out, ignore_index: int, temperature: float):
    """One chunk of rows: d(sum_t g_t log p_t) / dx = (onehot(y) - softmax(x / T)) * g / T, in x's dtype."""
    valid = targets != ignore_index
    g = torch.where(valid, grad_out.to(lse.dtype), 0.0) / temperature  # (C,) zero at ignored rows
    d = (_scaled(x, temperature) - lse[:, None]).exp_().mul_(-g[:, None])  # -softmax * g: one (C, V) buffer
    d.scatter_add_(1, torch.where(valid, targets, 0)[:, None], g[:, None])
    d.masked_fill_(~valid[:, None], 0.0)  # exact zeros, even for ignored rows of only -inf (NaN softmax)
    return d.to(x.dtype)


class _ChunkedLogprobs(torch.autograd.Function):
    """Forward and backward over row chunks; saves only the logits it was given and one float per row."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index, temperature, chunk_rows):
        n, acc = logits.shape[0], compute_dtype(logits.dtype)
        out = torch.empty(n, dtype=acc, device=logits.device)
        lse = torch.empty(n, dtype=acc, device=logits.device)
        for s in range(0, n, chunk_rows):
            sl = slice(s, s + chunk_rows)
            out[sl], lse[sl] = chunk_forward(logits[sl], targets[sl], ignore_index, temperature)
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index, ctx.temperature, ctx.chunk_rows = ignore_index, temperature, chunk_rows
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], ctx.chunk_rows):
            sl = slice(s, s + ctx.chunk_rows)
            grad[sl] = chunk_backward(
                logits[sl], targets[sl], lse[sl], grad_out[sl], ctx.ignore_index, ctx.temperature
            )
        return grad, None, None, None, None


def token_logprobs_reference(
    logits,
    targets,
    ignore_index: int = -100,
    temperature: float = 1.0,
    chunk_bytes: int = REFERENCE_CHUNK_BYTES,
):
    """Memory-efficient PyTorch path for 2-D logits [N, V] and targets [N]; returns float32 [N].

    Peak extra memory is one float32 chunk of at most `chunk_bytes` (forward and backward), against
    4 x N x V bytes for `token_logprobs_naive`.
    """
    rows = _chunk_rows(logits.shape[-1], chunk_bytes)
    return _ChunkedLogprobs.apply(logits, targets, ignore_index, temperature, rows)


# ----------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------


def _validate(logits, targets, ignore_index, temperature):
    check_tensor("logits", logits, FLOAT_DTYPES, ndim_min=1)
    check_tensor("targets", targets)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    check_same_device(logits=logits, targets=targets)
    if logits.shape[-1] == 0:
        raise ValueError("logits must have a non-empty last (vocabulary) dimension, got size 0")
    return check_temperature(temperature)


def token_logprobs(logits, targets, ignore_index: int = -100, temperature: float = 1.0, *, backend=None):
    """log pi(y_t) for every token: log_softmax(logits / temperature)[..., targets], fused.

    | argument | shape    | dtype                          | meaning                                   |
    |----------|----------|--------------------------------|-------------------------------------------|
    | logits   | [..., V] | float32, bfloat16, float16, 64 | unnormalized scores over the vocabulary   |
    | targets  | [...]    | int64 or int32                 | token ids in [0, V), or ignore_index      |
    | returns  | [...]    | float32 (float64 for float64)  | log-probabilities; 0 where ignored        |

    Equation: log p_t = x_{t, y_t} / T - log sum_v exp(x_{t, v} / T), accumulated in float32 whatever the
    input dtype (float64 inputs run the reference in float64). Ignored positions give 0 and pass back a
    zero gradient. A target outside [0, V) raises on the CPU and gives NaN on a GPU, where checking would
    cost a host synchronisation (`_validate.sanitize_targets`). Differentiable with respect to `logits`.
    `backend` ("triton" or "torch") overrides RLSURVEY_KERNELS for this call.
    """
    temperature = _validate(logits, targets, ignore_index, temperature)
    lead, vocab = targets.shape, logits.shape[-1]
    x = logits.reshape(-1, vocab)
    if x.stride(-1) != 1:
        x = x.contiguous()
    t, bad = sanitize_targets("targets", targets.reshape(-1), vocab, ignore_index)
    t = t.long()
    if resolve_backend(backend, x, t) == "triton" and x.dtype != torch.float64:
        out = _TritonLogprobs.apply(x, t, ignore_index, temperature)
    else:
        out = token_logprobs_reference(x, t, ignore_index, temperature)
    if bad is not None:
        out = out.masked_fill(bad, float("nan"))
    return out.reshape(lead)


# ----------------------------------------------------------------------------------------------------------
# Triton kernels: one program per row (token), streaming the vocabulary in BLOCK-wide tiles
# ----------------------------------------------------------------------------------------------------------


def block_size(vocab: int) -> int:
    """Tile width: the vocabulary rounded up to a power of two, at most 8192 (what one program loads)."""
    return min(1 << max(vocab - 1, 0).bit_length(), 8192)


def num_warps(block: int) -> int:
    """Warps per program: enough threads that a tile is at most 16 float32 registers per thread."""
    return max(1, min(16, block // 512))


@triton_kernel
def _logprobs_fwd_kernel(
    x_ptr, x_row_stride, t_ptr, out_ptr, lse_ptr, n_cols, ignore_index, temperature, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride overflows int32 past 2**31 elements
    x_row = x_ptr + row * x_row_stride
    target = tl.load(t_ptr + row)
    valid = target != ignore_index
    # Online softmax: m is the running max, s the running sum of exp(x - m), both float32.
    m = float("-inf")
    s = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32) / temperature
        m_new = tl.maximum(m, tl.max(x, axis=0))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a tile of only -inf must not make NaNs
        s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift), axis=0)
        m = m_new
    lse = m + tl.log(s)
    x_t = tl.load(x_row + tl.where(valid, target, 0)).to(tl.float32) / temperature
    tl.store(out_ptr + row, tl.where(valid, x_t - lse, 0.0))
    tl.store(lse_ptr + row, lse)


@triton_kernel
def _logprobs_bwd_kernel(
    x_ptr,
    x_row_stride,
    t_ptr,
    lse_ptr,
    g_ptr,
    dx_ptr,
    dx_row_stride,
    n_cols,
    ignore_index,
    temperature,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    dx_row = dx_ptr + row * dx_row_stride
    target = tl.load(t_ptr + row)
    lse = tl.load(lse_ptr + row)
    # d log p_t / d x_v = (onehot_v - softmax_v) / T; an ignored row passes back exactly zero (even when
    # its logits are all -inf and the softmax is NaN).
    valid = target != ignore_index
    g = tl.where(valid, tl.load(g_ptr + row).to(tl.float32), 0.0) / temperature
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=float("-inf")).to(tl.float32) / temperature
        d = -tl.exp(x - lse) * g
        d = tl.where(valid, tl.where(cols == target, d + g, d), 0.0)
        tl.store(dx_row + cols, d.to(dx_ptr.dtype.element_ty), mask=mask)


def logprobs_forward(logits, targets, ignore_index: int, temperature: float):
    """Launch the forward kernel on 2-D logits [N, V] (last dim contiguous); returns (logp, lse), float32."""
    n, v = logits.shape
    out = torch.empty(n, dtype=torch.float32, device=logits.device)
    lse = torch.empty(n, dtype=torch.float32, device=logits.device)
    block = block_size(v)
    if n:
        args = (logits, logits.stride(0), targets, out, lse, v, ignore_index, temperature)
        _logprobs_fwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
    return out, lse


def logprobs_backward(logits, targets, lse, grad_out, ignore_index: int, temperature: float, grad=None):
    """Launch the backward kernel: d logp / d logits into `grad` (which may alias `logits`); returns it."""
    n, v = logits.shape
    grad = torch.empty_like(logits) if grad is None else grad
    block = block_size(v)
    if n:
        g = grad_out.contiguous()
        args = (logits, logits.stride(0), targets, lse, g, grad, grad.stride(0), v, ignore_index, temperature)
        _logprobs_bwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
    return grad


class _TritonLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, ignore_index, temperature):
        out, lse = logprobs_forward(logits, targets, ignore_index, temperature)
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index, ctx.temperature = ignore_index, temperature
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, targets, lse = ctx.saved_tensors
        grad = logprobs_backward(logits, targets, lse, grad_out, ctx.ignore_index, ctx.temperature)
        return grad, None, None, None
