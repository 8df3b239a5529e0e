"""Log-probabilities and entropy in one pass over the logits: the quantity every RLVR step logs and trains on.

Survey sections 2.2 and 4.2 of arXiv 2412.10400, and the entropy monitoring of the reasoning-RL recipes
(DAPO, arXiv 2503.14476; the entropy-mechanism study, arXiv 2505.22617).

A GRPO step needs, at every response token, log pi(y_t) for the loss and H_t = -sum_v pi_v log pi_v to watch
entropy collapse. Computed by `token_logprobs` and then `token_entropy`, the [tokens, vocab] logits are read
twice forward and written twice backward; this module reads them once each way. With z = x / T - m for the
row maximum m of the scaled logits x / T, s = sum_v exp(z_v) and q = E_pi[z] = sum_v exp(z_v) z_v / s (carried
through the vocabulary tiles by the online softmax of arXiv 1805.02867, as in entropy.py):

    log pi(y_t) = z_{y_t} - log s          H_t = log s - q

and, for upstream gradients a (of the log-prob) and b (of the entropy), in a single backward pass:

    d/dx_v = (a (onehot_v(y_t) - pi_v) + b pi_v (q - z_v)) / T.

What the kernels do beyond the two separate ones:
- they read 3-D logits [B, R, V] through their batch and row strides, so a slice such as the response
  positions of a [B, P + R, V] model output is used where it lies, without a copy;
- a row whose target is `ignore_index` (padding) is not read at all: log-prob, entropy and gradient are 0;
- the temperature is applied inside, on the float32 values, never as a [tokens, vocab] division;
- on a GPU no argument check copies a value to the host (see `_validate.sanitize_targets`): a target
  outside [0, V) gives NaN instead of an exception, where a CPU tensor raises.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend, triton_kernel
from rlsurvey.kernels._validate import compute_dtype, sanitize_targets
from rlsurvey.kernels.entropy import _stable_terms, token_entropy_naive
from rlsurvey.kernels.logprobs import (
    REFERENCE_CHUNK_BYTES,
    _chunk_rows,
    _scaled,
    _validate,
    block_size,
    chunk_backward,
    chunk_forward,
    num_warps,
    token_logprobs_naive,
)

__all__ = [
    "token_logprobs_and_entropy",
    "token_logprobs_and_entropy_naive",
    "token_logprobs_and_entropy_reference",
]

# `tl` is triton.language, bound on the first kernel launch (see _dispatch.triton_kernel).
tl = None


def token_logprobs_and_entropy_naive(logits, targets, ignore_index: int = -100, temperature: float = 1.0):
    """The textbook pair: a full float32 log-softmax for the log-probs and a full float64 softmax for the
    entropy of softmax(logits / T), 0 where the target is ignored. The tests' ground truth."""
    logp = token_logprobs_naive(logits, targets, ignore_index, temperature)
    h = token_entropy_naive(logits.to(compute_dtype(logits.dtype)) / temperature)
    return logp, torch.where(targets != ignore_index, h, torch.zeros_like(h))


# ----------------------------------------------------------------------------------------------------------
# PyTorch reference: float32 row chunks, both quantities from one chunk
# ----------------------------------------------------------------------------------------------------------


def _chunk_terms(x, targets, ignore_index: int, temperature: float):
    """For one chunk [C, V]: z = x / T - m, pi, q, log s and the validity of each row."""
    _, z, log_s, p, q = _stable_terms(_scaled(x, temperature))
    valid = targets != ignore_index
    return z, p, q.squeeze(1), log_s.squeeze(1), valid


class _ChunkedLogprobsEntropy(torch.autograd.Function):
    """The log-probs are computed, forward and backward, with exactly the arithmetic of
    `token_logprobs_reference` (so a trainer that logs the entropy trains bit for bit as one that does not);
    the entropy comes from the same float32 chunk. When the entropy is only logged, its gradient arrives as
    None and the backward pass is the log-probs' alone."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index, temperature, chunk_rows):
        ctx.set_materialize_grads(False)
        n, acc = logits.shape[0], compute_dtype(logits.dtype)
        logp = torch.empty(n, dtype=acc, device=logits.device)
        lse = torch.empty(n, dtype=acc, device=logits.device)
        h = torch.empty(n, dtype=acc, device=logits.device)
        for s in range(0, n, chunk_rows):
            sl = slice(s, s + chunk_rows)
            logp[sl], lse[sl] = chunk_forward(logits[sl], targets[sl], ignore_index, temperature)
            _, _, q, log_s, valid = _chunk_terms(logits[sl], targets[sl], ignore_index, temperature)
            h[sl] = torch.where(valid, log_s - q, 0.0)
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index, ctx.temperature, ctx.chunk_rows = ignore_index, temperature, chunk_rows
        return logp, h

    @staticmethod
    def backward(ctx, grad_logp, grad_h):
        logits, targets, lse = ctx.saved_tensors
        if grad_logp is None and grad_h is None:
            return None, None, None, None, None
        grad = torch.empty_like(logits)
        acc = compute_dtype(logits.dtype)
        for s in range(0, logits.shape[0], ctx.chunk_rows):
            sl = slice(s, s + ctx.chunk_rows)
            if grad_h is None:  # the entropy was only logged: the log-probs' own backward
                args = (targets[sl], lse[sl], grad_logp[sl], ctx.ignore_index, ctx.temperature)
                grad[sl] = chunk_backward(logits[sl], *args)
                continue
            z, p, q, _, valid = _chunk_terms(logits[sl], targets[sl], ctx.ignore_index, ctx.temperature)
            a = torch.zeros_like(q) if grad_logp is None else grad_logp[sl].to(acc)
            a = torch.where(valid, a, 0.0)[:, None]
            b = torch.where(valid, grad_h[sl].to(acc), 0.0)[:, None]
            d = p * (torch.where(p > 0, q[:, None] - z, 0.0) * b - a)
            d.scatter_add_(1, torch.where(valid, targets[sl], 0)[:, None], a)
            d.masked_fill_(~valid[:, None], 0.0)
            grad[sl] = (d / ctx.temperature).to(grad.dtype)
        return grad, None, None, None, None


def token_logprobs_and_entropy_reference(
    logits,
    targets,
    ignore_index: int = -100,
    temperature: float = 1.0,
    chunk_bytes: int = REFERENCE_CHUNK_BYTES,
):
    """Chunked PyTorch path for 2-D logits [N, V] and targets [N]: one float32 chunk of at most
    `chunk_bytes` at a time, forward and backward. Returns (log-probs, entropies), float32 [N] each."""
    rows = _chunk_rows(logits.shape[-1], chunk_bytes)
    return _ChunkedLogprobsEntropy.apply(logits, targets, ignore_index, temperature, rows)


# ----------------------------------------------------------------------------------------------------------
# Triton kernels: one program per row (token), rows addressed through [B, R] strides
# ----------------------------------------------------------------------------------------------------------


@triton_kernel
def _logprobs_entropy_fwd_kernel(
    x_ptr,
    x_batch_stride,
    x_row_stride,
    rows_per_batch,
    t_ptr,
    logp_ptr,
    h_ptr,
    lse_ptr,
    m_ptr,
    q_ptr,
    n_cols,
    ignore_index,
    temperature,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    batch = row // rows_per_batch
    x_row = x_ptr + batch * x_batch_stride + (row - batch * rows_per_batch) * x_row_stride
    target = tl.load(t_ptr + row)
    valid = target != ignore_index
    n_read = tl.where(valid, n_cols, 0)  # an ignored row reads nothing
    m = float("-inf")
    s = 0.0  # sum exp(x / T - m)
    w = 0.0  # sum exp(x / T - m) (x / T - m)
    for start in range(0, n_read, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32) / temperature
        m_new = tl.maximum(m, tl.max(x, axis=0))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a tile of only -inf must not make NaNs
        alpha = tl.exp(m - shift)
        z = x - shift
        e = tl.exp(z)
        w = alpha * (w + tl.where(s > 0, m - shift, 0.0) * s) + tl.sum(e * tl.where(e > 0, z, 0.0), axis=0)
        s = s * alpha + tl.sum(e, axis=0)
        m = m_new
    s = tl.where(valid, s, 1.0)
    log_s = tl.log(s)
    q = w / s
    x_t = tl.load(x_row + tl.where(valid, target, 0)).to(tl.float32) / temperature
    tl.store(logp_ptr + row, tl.where(valid, x_t - m - log_s, 0.0))
    tl.store(h_ptr + row, tl.where(valid, log_s - q, 0.0))
    tl.store(lse_ptr + row, tl.where(valid, m + log_s, 0.0))
    tl.store(m_ptr + row, tl.where(valid, m, 0.0))
    tl.store(q_ptr + row, q)


@triton_kernel
def _logprobs_entropy_bwd_kernel(
    x_ptr,
    x_batch_stride,
    x_row_stride,
    rows_per_batch,
    dx_ptr,
    dx_batch_stride,
    dx_row_stride,
    t_ptr,
    lse_ptr,
    m_ptr,
    q_ptr,
    glogp_ptr,
    gh_ptr,
    n_cols,
    ignore_index,
    temperature,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    batch = row // rows_per_batch
    in_batch = row - batch * rows_per_batch
    x_row = x_ptr + batch * x_batch_stride + in_batch * x_row_stride
    dx_row = dx_ptr + batch * dx_batch_stride + in_batch * dx_row_stride
    target = tl.load(t_ptr + row)
    valid = target != ignore_index
    lse = tl.load(lse_ptr + row)
    m = tl.load(m_ptr + row)
    q = tl.load(q_ptr + row)
    a = tl.where(valid, tl.load(glogp_ptr + row).to(tl.float32), 0.0) / temperature
    b = tl.where(valid, tl.load(gh_ptr + row).to(tl.float32), 0.0) / temperature
    n_read = tl.where(valid, n_cols, 0)  # an ignored row is not read (every load is masked off)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=cols < n_read, other=float("-inf")).to(tl.float32) / temperature
        p = tl.exp(x - lse)
        d = p * (tl.where(p > 0, q - (x - m), 0.0) * b - a)
        d = tl.where(valid, tl.where(cols == target, d + a, d), 0.0)
        tl.store(dx_row + cols, d.to(dx_ptr.dtype.element_ty), mask=mask)


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    """[..., V] -> [B, R, V] without a copy whenever the leading dimensions allow it."""
    if x.dim() == 1:
        return x.view(1, 1, -1)
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3:
        return x
    try:
        return x.view(-1, x.shape[-2], x.shape[-1])
    except RuntimeError:
        return x.reshape(-1, x.shape[-2], x.shape[-1])


class _TritonLogprobsEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits3, targets, ignore_index, temperature):
        ctx.set_materialize_grads(False)
        b, r, v = logits3.shape
        n = b * r
        logp, h, lse, m, q = (torch.empty(n, dtype=torch.float32, device=logits3.device) for _ in range(5))
        block = block_size(v)
        if n:
            args = (logits3, logits3.stride(0), logits3.stride(1), r, targets, logp, h, lse, m, q, v)
            args += (ignore_index, temperature)
            _logprobs_entropy_fwd_kernel[(n,)](*args, BLOCK=block, num_warps=num_warps(block))
        ctx.save_for_backward(logits3, targets, lse, m, q)
        ctx.ignore_index, ctx.temperature = ignore_index, temperature
        return logp, h

    @staticmethod
    def backward(ctx, grad_logp, grad_h):
        logits3, targets, lse, m, q = ctx.saved_tensors
        if grad_logp is None and grad_h is None:
            return None, None, None, None
        grad_logp = torch.zeros_like(lse) if grad_logp is None else grad_logp
        grad_h = torch.zeros_like(lse) if grad_h is None else grad_h
        b, r, v = logits3.shape
        grad = torch.empty((b, r, v), dtype=logits3.dtype, device=logits3.device)
        block = block_size(v)
        if b * r:
            args = (logits3, logits3.stride(0), logits3.stride(1), r, grad, grad.stride(0), grad.stride(1))
            args += (targets, lse, m, q, grad_logp.contiguous(), grad_h.contiguous(), v)
            args += (ctx.ignore_index, ctx.temperature)
            _logprobs_entropy_bwd_kernel[(b * r,)](*args, BLOCK=block, num_warps=num_warps(block))
        return grad, None, None, None


# ----------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------


def token_logprobs_and_entropy(
    logits, targets, ignore_index: int = -100, temperature: float = 1.0, *, backend=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_t) and the entropy H_t of pi = softmax(logits / temperature), from one pass over the logits.

    | argument | shape    | dtype                          | meaning                                    |
    |----------|----------|--------------------------------|--------------------------------------------|
    | logits   | [..., V] | float32, bfloat16, float16, 64 | unnormalized scores; any batch/row strides |
    | targets  | [...]    | int64 or int32                 | token ids in [0, V), or ignore_index       |
    | returns  | 2 x [...]| float32 (float64 for float64)  | (log-probs, entropies); both 0 if ignored  |

    Differentiable with respect to `logits` through either output or both. Equivalent to
    `token_logprobs(logits, targets, ignore_index, temperature)` together with
    `token_entropy(logits / temperature)` masked to the scored positions, in one read of the logits on the
    Triton path (which takes 3-D inputs through their strides; see the module docstring). `backend`
    ("triton" or "torch") overrides RLSURVEY_KERNELS for this call; float64 runs the reference in float64.
    """
    temperature = _validate(logits, targets, ignore_index, temperature)
    lead, vocab = targets.shape, logits.shape[-1]
    t, bad = sanitize_targets("targets", targets.reshape(-1), vocab, ignore_index)
    t = t.long()
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    if resolve_backend(backend, x, t) == "triton" and x.dtype != torch.float64:
        logp, h = _TritonLogprobsEntropy.apply(_as_3d(x), t, ignore_index, temperature)
    else:
        logp, h = token_logprobs_and_entropy_reference(x.reshape(-1, vocab), t, ignore_index, temperature)
    if bad is not None:  # out-of-range targets on a device: NaN, found without a host synchronisation
        logp = logp.masked_fill(bad, float("nan"))
    return logp.reshape(lead), h.reshape(lead)
