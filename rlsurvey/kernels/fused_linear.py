"""Log-probabilities straight from the last hidden state and the LM head, without the full logits.

Survey section: 4.2 and 7 of arXiv 2412.10400 (PPO, GRPO and DPO all need log pi(y_t) of long sequences
under large vocabularies).

log p_t = (h_t W^T)[y_t] - logsumexp_v (h_t W^T)_v, computed over chunks of C tokens: each chunk's logits
[C, V] exist for one loop step only, so peak memory is C x V instead of N x V. The idea is that of the
fused linear cross entropy in Liger-Kernel (arXiv 2410.10989) and of Cut Cross-Entropy (arXiv 2411.09009),
applied to per-token log-probs.

Memory against time, the design choice of this module. A fused cross entropy can compute the gradients
inside the forward chunk loop because its output is one scalar: the upstream gradient is a single number
applied at the end. Here the output has one value per token and the upstream gradient g_t differs per
token; dL/dW = sum_t g_t (onehot(y_t) - p_t)^T h_t needs g_t inside the sum, and g is known only in the
backward pass. So the backward pass recomputes each chunk's logits (one extra [C, H] x [H, V] matmul per
chunk), forms G = g * (onehot - softmax), and accumulates dL/dh = G W and dL/dW += G^T h. The forward saves
nothing but hidden, weight (already alive as parameters), the targets and one float per token (the
log-sum-exp). Cost: four matmuls of N x H x V instead of eager's three (about 1.33x the matmul FLOPs);
gain: the N x V logits, their float32 copy and the float32 log-softmax are never stored. The weight
gradient is accumulated across chunks in float32, so its rounding does not grow with the number of chunks.
A sampling temperature T divides the logits inside the softmax (log softmax(h W^T / T)), as the log-probs of
tokens sampled at temperature T need, without another [C, V] pass.

Some models change the logits after the head in their own forward, and a path that calls the head itself
must do the same or its log-probs are not the model's: Cohere multiplies by `logit_scale`, Granite divides by
`logits_scaling` (both a scale a), Gemma 2 and 3 cap them, z = c tanh(l / c) with c =
`final_logit_softcapping`. Here z = cap_c(a l) is applied to each chunk, and the backward multiplies the
gradient of z by dz/dl = a (1 - (z / c)^2) (or a alone without a cap), so the same chunk loop serves them.

On CUDA the softmax parts run through the Triton kernels of `logprobs.py`, which overwrite each chunk's
logits with their gradient in place; the matmuls are cuBLAS's.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend
from rlsurvey.kernels._validate import (
    FLOAT_DTYPES,
    check_positive_int,
    check_same_device,
    check_tensor,
    compute_dtype,
    sanitize_targets,
)
from rlsurvey.kernels.logprobs import (
    REFERENCE_CHUNK_BYTES,
    chunk_backward,
    chunk_forward,
    logprobs_backward,
    logprobs_forward,
    token_logprobs_naive,
)

__all__ = [
    "fused_linear_token_logprobs",
    "fused_linear_token_logprobs_naive",
    "fused_linear_token_logprobs_reference",
]

# On CUDA a chunk's logits may take this many bytes (plus the kernels work in place, so no float32 copy).
CUDA_CHUNK_BYTES = 512 * 2**20


def fused_linear_token_logprobs_naive(
    hidden, weight, targets, ignore_index: int = -100, temperature=1.0, logit_scale: float = 1.0,
    softcap: float | None = None,
):  # fmt: skip
    """The full-logits version: z = softcap(logit_scale * hidden @ weight.T), then a float32 log-softmax of
    z / temperature and a gather."""
    z = hidden @ weight.T
    if logit_scale != 1.0:
        z = z * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return token_logprobs_naive(z, targets, ignore_index, temperature)


def _transform(logits, scale: float, cap: float | None):
    """z = cap * tanh(scale * l / cap) (or scale * l without a cap), in the logits' dtype; a new tensor."""
    z = logits * scale if scale != 1.0 else logits.clone()
    return z if cap is None else z.div_(cap).tanh_().mul_(cap)


def _transform_grad_(g_z, z, scale: float, cap: float | None):
    """dL/dl from dL/dz in place: times scale (1 - (z / cap)^2), or times scale alone without a cap."""
    if cap is not None:
        g_z.mul_(1 - (z.to(g_z.dtype) / cap) ** 2)
    return g_z.mul_(scale) if scale != 1.0 else g_z


def _chunk_rows(n: int, vocab: int, elem_bytes: int, chunk_bytes: int) -> int:
    rows = max(1, chunk_bytes // (vocab * elem_bytes))
    return min(n, rows) if n else 1


class _FusedLinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        targets,
        ignore_index,
        chunk_rows,
        use_triton,
        temperature=1.0,
        scale=1.0,
        cap=None,
    ):
        n, acc = hidden.shape[0], compute_dtype(hidden.dtype)
        out = torch.empty(n, dtype=acc, device=hidden.device)
        lse = torch.empty(n, dtype=acc, device=hidden.device)
        for s in range(0, n, chunk_rows):
            sl = slice(s, s + chunk_rows)
            logits = hidden[sl] @ weight.T  # (C, V) in the input dtype; freed at the next step
            if scale != 1.0 or cap is not None:
                logits = _transform(logits, scale, cap)
            if use_triton:
                out[sl], lse[sl] = logprobs_forward(logits, targets[sl], ignore_index, temperature)
            else:
                out[sl], lse[sl] = chunk_forward(logits, targets[sl], ignore_index, temperature)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.ignore_index, ctx.chunk_rows, ctx.use_triton = ignore_index, chunk_rows, use_triton
        ctx.temperature, ctx.scale, ctx.cap = temperature, scale, cap
        # the autocast state of the forward: the backward recomputes the logits under the same one, so they
        # are the logits the saved log-sum-exp came from (else bf16 forward, float32 backward: a mismatch)
        device = hidden.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        # the weight's gradient sums over every chunk: in float32, so low-precision rounding does not grow
        # with the number of chunks
        grad_w = torch.zeros_like(weight, dtype=compute_dtype(weight.dtype)) if need_w else None
        device, enabled, dtype = ctx.autocast
        for s in range(0, hidden.shape[0], ctx.chunk_rows):
            sl = slice(s, s + ctx.chunk_rows)
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                logits = (
                    hidden[sl] @ weight.T
                )  # recomputed, as in the forward: the price of not storing N x V
            transformed = ctx.scale != 1.0 or ctx.cap is not None
            z = _transform(logits, ctx.scale, ctx.cap) if transformed else logits
            if ctx.use_triton:  # overwrite the logits with their gradient, in place
                g_logits = logprobs_backward(
                    z, targets[sl], lse[sl], grad_out[sl], ctx.ignore_index, ctx.temperature, grad=logits
                )
            else:
                g_logits = chunk_backward(
                    z, targets[sl], lse[sl], grad_out[sl], ctx.ignore_index, ctx.temperature
                )
            if transformed:  # through z = cap(scale * l): the chain rule, elementwise
                g_logits = _transform_grad_(g_logits, z, ctx.scale, ctx.cap)
            if need_h:
                grad_h[sl] = (g_logits.to(weight.dtype) @ weight).to(hidden.dtype)  # (C, V) @ (V, H)
            if need_w:
                grad_w.addmm_(g_logits.T.to(grad_w.dtype), hidden[sl].to(grad_w.dtype))  # (V, C) @ (C, H)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_h, grad_w, None, None, None, None, None, None, None


def fused_linear_token_logprobs_reference(
    hidden, weight, targets, ignore_index: int = -100, chunk_bytes: int = REFERENCE_CHUNK_BYTES,
    temperature: float = 1.0, logit_scale: float = 1.0, softcap: float | None = None,
):  # fmt: skip
    """The chunked PyTorch path (what the CPU runs); peak extra memory about `chunk_bytes`."""
    elem = 4 + hidden.element_size()  # the chunk's logits and their float32 working copy
    rows = _chunk_rows(hidden.shape[0], weight.shape[0], elem, chunk_bytes)
    return _FusedLinearLogprobs.apply(
        hidden, weight, targets, ignore_index, rows, False, temperature, logit_scale, softcap
    )


def fused_linear_token_logprobs(
    hidden, weight, targets, ignore_index: int = -100, *, temperature: float = 1.0, backend=None,
    chunk_bytes: int | None = None, logit_scale: float = 1.0, softcap: float | None = None,
):  # fmt: skip
    """log softmax(hidden @ weight.T / temperature)[targets] per token, without materializing [N, V] logits.

    | argument | shape  | dtype                          | meaning                                        |
    |----------|--------|--------------------------------|------------------------------------------------|
    | hidden   | [N, H] | float32, bfloat16, float16, 64 | last hidden states (flatten batch and time)    |
    | weight   | [V, H] | same as hidden                 | LM-head weight (nn.Linear(H, V).weight)        |
    | targets  | [N]    | int64 or int32                 | token ids in [0, V), or ignore_index           |
    | returns  | [N]    | float32 (float64 for float64)  | log-probabilities; 0 where ignored             |

    Equation: log p_t = (h_t W^T)_{y_t} / T - log sum_v exp((h_t W^T)_v / T), T = `temperature` (the
    temperature the tokens were sampled at; 1 by default). A model that transforms its logits after the
    head passes the transform: `logit_scale` a (Cohere's logit_scale, or 1 / Granite's logits_scaling) and
    `softcap` c (Gemma's final_logit_softcapping), giving (h_t W^T) -> c tanh(a h_t W^T / c) before the
    temperature; `rlsurvey.algos.dpo_trainer.fused_logit_args(model)` reads both from a model's config.
    Differentiable with respect to `hidden` and `weight`. `chunk_bytes` bounds one chunk's logits (default:
    16 MiB on the CPU path, 512 MiB on the Triton path); `backend` overrides RLSURVEY_KERNELS for this call.
    """
    check_tensor("hidden", hidden, FLOAT_DTYPES, ndim=2)
    check_tensor("weight", weight, FLOAT_DTYPES, ndim=2)
    check_tensor("targets", targets, ndim=1)
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight must have hidden's dtype {hidden.dtype}, got {weight.dtype}")
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"weight must have shape [V, {hidden.shape[1]}] (hidden's size), got {tuple(weight.shape)}"
        )
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(
            f"targets must have shape [{hidden.shape[0]}] (hidden's rows), got {tuple(targets.shape)}"
        )
    if weight.shape[0] == 0:
        raise ValueError("weight must have at least one row (the vocabulary), got 0")
    check_same_device(hidden=hidden, weight=weight, targets=targets)
    targets, bad = sanitize_targets("targets", targets, weight.shape[0], ignore_index)
    for name, value in (("logit_scale", logit_scale), ("softcap", softcap)):
        if value is None and name == "softcap":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
            raise ValueError(f"{name} must be a finite number > 0{' or None' if name == 'softcap' else ''}, "
                             f"got {value!r}")  # fmt: skip
    scale, cap = float(logit_scale), None if softcap is None else float(softcap)
    if chunk_bytes is not None:
        check_positive_int("chunk_bytes", chunk_bytes)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (0 < temperature < float("inf"))
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    targets = targets.long()
    hidden = hidden if hidden.is_contiguous() else hidden.contiguous()
    if resolve_backend(backend, hidden, weight, targets) == "triton" and hidden.dtype != torch.float64:
        budget = CUDA_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        rows = _chunk_rows(hidden.shape[0], weight.shape[0], hidden.element_size(), budget)
        out = _FusedLinearLogprobs.apply(
            hidden, weight, targets, ignore_index, rows, True, float(temperature), scale, cap
        )
    else:
        budget = REFERENCE_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        out = fused_linear_token_logprobs_reference(
            hidden, weight, targets, ignore_index, budget, float(temperature), scale, cap
        )
    return out if bad is None else out.masked_fill(bad, float("nan"))
