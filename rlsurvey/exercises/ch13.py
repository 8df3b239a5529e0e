"""Checks for the exercises of chapter 13 (GPU kernels): online softmax, the log-prob gradient, the roofline
and masked GAE. Papers: online softmax, arXiv 1805.02867; GAE, arXiv 1506.02438; survey arXiv 2412.10400.

1. `check_online_update(fn)`: fn(m, s, tile) -> (m_new, s_new), one step of the online softmax; driven
   over the blocks of a vector, m + log s must end as its logsumexp.
2. `check_logprob_grad(fn)`: fn(logits [N, V], targets [N], temperature) -> d(sum_t log p_t)/d logits.
3. `check_roofline_time(fn)`: fn(flops, bytes, peak_flops, peak_bandwidth) -> the roofline's lower bound
   on the run time, in seconds.
4. `check_masked_gae(fn)`: fn(rewards [B, T], values [B, T], mask [B, T] bool, gamma, lam) -> advantages,
   skipping masked positions as rlsurvey.kernels.gae does.
5. `check_chunk_size(fn)`: fn(H, V, peak_flops, peak_bandwidth) -> the smallest chunk of C tokens whose logits
   matmul [C, H] @ [H, V] is compute-bound, counting 2 C H V FLOPs and 2 (C H + H V + C V) bytes (bf16
   hidden chunk and weight read, the chunk's logits written), as section 1 counts the LM head.
"""

from __future__ import annotations

import math

import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.kernels import gae_reference, token_logprobs_naive

__all__ = [
    "EXERCISES",
    "check_chunk_size",
    "reference_chunk_size",
    "reference_masked_gae",
    "check_logprob_grad",
    "check_masked_gae",
    "check_online_update",
    "check_roofline_time",
    "online_logsumexp",
    "reference_logprob_grad",
    "reference_online_update",
    "reference_roofline_time",
]


def reference_online_update(m: float, s: float, tile: torch.Tensor) -> tuple[float, float]:
    """One online-softmax step (arXiv 1805.02867, alg. 3): fold a tile into (max m, sum of exp(x - m))."""
    m_new = max(m, tile.max().item())
    shift = 0.0 if m_new == -math.inf else m_new  # a prefix of only -inf keeps s at 0, not NaN
    return m_new, s * math.exp(m - shift) + torch.exp(tile.double() - shift).sum().item()


def online_logsumexp(update, x: torch.Tensor, block: int) -> float:
    """Drive `update` over the blocks of x, as the kernel's loop does; returns m + log s."""
    m, s = -math.inf, 0.0
    for start in range(0, x.numel(), block):
        m, s = update(m, s, x[start : start + block])
    return m + math.log(s) if s > 0 else -math.inf


def reference_logprob_grad(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """(onehot(y) - softmax(logits / T)) / T, row by row."""
    p = torch.softmax(logits.double() / temperature, dim=-1)
    onehot = torch.nn.functional.one_hot(targets, logits.shape[-1]).double()
    return (onehot - p) / temperature


def reference_roofline_time(
    flops: float, bytes_moved: float, peak_flops: float, peak_bandwidth: float
) -> float:
    """A kernel can go no faster than its arithmetic or its memory traffic allows: the larger of the two."""
    return max(flops / peak_flops, bytes_moved / peak_bandwidth)


def check_online_update(fn) -> bool:
    """fn(m: float, s: float, tile: 1-D tensor) -> (m_new, s_new), the running max and rescaled sum."""
    name = "online softmax update"
    gen = torch.Generator().manual_seed(13)
    cases = [
        (torch.randn(1000, generator=gen) * 5, 128),
        (torch.randn(37, generator=gen) * 80 + 500, 8),  # large values: exp(x) alone overflows
        (torch.tensor([-math.inf] * 9 + [2.0, 3.0, -math.inf]), 4),  # a first block of only -inf
        (torch.randn(5, generator=gen), 64),  # one block larger than x
    ]
    hint = (
        "m_new = max(m, tile.max()); s_new = s * exp(m - m_new) + sum(exp(tile - m_new)). When m_new is "
        "-inf (nothing finite seen yet) use 0 instead of m_new inside the exponentials."
    )
    for x, block in cases:
        m, s = -math.inf, 0.0
        for start in range(0, x.numel(), block):
            tile = x[start : start + block]
            got = call_safely(name, fn, m, s, tile.clone())
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise ExerciseError(f"{name}: return the pair (m_new, s_new), got {got!r}. Hint: {hint}")
            m, s = (float(v) for v in got)
            want_m = x[: start + block].max().item()
            if m != want_m:
                raise ExerciseError(f"{name}: m should be the max so far, {want_m}, got {m}. Hint: {hint}")
        got_lse = m + math.log(s) if s > 0 else -math.inf
        assert_close(name, got_lse, torch.logsumexp(x.double(), 0), hint=hint)
    return passed(name)


def check_logprob_grad(fn) -> bool:
    """fn(logits [N, V], targets [N], temperature) -> gradient [N, V] of sum_t log p_t."""
    name = "log-prob gradient"
    gen = torch.Generator().manual_seed(31)
    for n, v, temperature in [(3, 5, 1.0), (4, 17, 0.7), (2, 50, 2.0)]:
        logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * 3
        targets = torch.randint(0, v, (n,), generator=gen)
        got = call_safely(name, fn, logits.clone(), targets.clone(), temperature)
        x = logits.clone().requires_grad_()
        token_logprobs_naive(x, targets, temperature=temperature).sum().backward()
        hint = "d log p_y / d x_v = (1[v = y] - softmax(x / T)_v) / T: one-hot minus probabilities, over T."
        assert_close(name, got, x.grad, hint=hint)
    return passed(name)


def check_roofline_time(fn) -> bool:
    """fn(flops, bytes, peak_flops, peak_bandwidth) -> seconds (a float)."""
    name = "roofline time"
    cases = [
        (2 * 4096 * 4096 * 4096, 3 * 2 * 4096 * 4096, 989e12, 3.35e12),  # a big bf16 matmul: compute-bound
        (5 * 4096 * 128256, 2 * 4096 * 128256, 989e12, 3.35e12),  # log-probs: memory-bound
        (1e9, 1e9, 1e12, 1e12),  # balanced
    ]
    for flops, nbytes, peak_flops, peak_bw in cases:
        got = call_safely(name, fn, flops, nbytes, peak_flops, peak_bw)
        expected = reference_roofline_time(flops, nbytes, peak_flops, peak_bw)
        hint = "time >= flops / peak_flops and time >= bytes / peak_bandwidth; the bound is the larger one."
        assert_close(name, got, expected, hint=hint, atol=0.0, rtol=1e-9)
    return passed(name)


def check_masked_gae(fn) -> bool:
    """fn(rewards, values, mask, gamma, lam) -> advantages [B, T]; 0 where mask is False."""
    name = "masked GAE"
    gen = torch.Generator().manual_seed(5)
    for b, t_len, gamma, lam in [(2, 5, 0.9, 0.8), (4, 9, 1.0, 0.95), (3, 6, 0.99, 0.0)]:
        rewards = torch.randn(b, t_len, generator=gen, dtype=torch.float64)
        values = torch.randn(b, t_len, generator=gen, dtype=torch.float64)
        mask = torch.rand(b, t_len, generator=gen) < 0.7
        mask[0, -2:] = False  # right padding
        mask[-1, :2] = False  # left padding (a prompt)
        got = call_safely(name, fn, rewards.clone(), values.clone(), mask.clone(), gamma, lam)
        expected, _ = gae_reference(rewards, values, mask, gamma, lam)
        hint = (
            "walk t from T-1 down to 0 keeping next_value and last_adv; at a masked step write 0 and leave "
            "both unchanged; else delta = r + gamma * next_value - v, last_adv = delta + gamma * lam * "
            "last_adv, next_value = v."
        )
        assert_close(name, got, expected, hint=hint)
    return passed(name)


def reference_masked_gae(rewards, values, mask, gamma: float, lam: float) -> torch.Tensor:
    """Backwards over t per row; a masked step gets 0 and leaves next_value and the running advantage."""
    adv = torch.zeros_like(rewards)
    for i in range(rewards.shape[0]):
        last, next_value = 0.0, 0.0
        for t in reversed(range(rewards.shape[1])):
            if not mask[i, t]:
                continue
            delta = rewards[i, t] + gamma * next_value - values[i, t]
            last = delta + gamma * lam * last
            next_value = values[i, t]
            adv[i, t] = last
    return adv


def reference_chunk_size(hidden: int, vocab: int, peak_flops: float, peak_bandwidth: float) -> int:
    """Intensity 2CHV / 2(CH + HV + CV) reaches the ridge R = peak_flops / peak_bandwidth when
    C (HV − R (H + V)) >= R H V; the smallest such integer C."""
    ridge = peak_flops / peak_bandwidth
    room = hidden * vocab - ridge * (hidden + vocab)
    if room <= 0:
        raise ValueError("this matmul stays memory-bound at any chunk size")
    c = max(1, math.ceil(ridge * hidden * vocab / room))
    while c > 1 and c - 1 >= ridge * hidden * vocab / room:  # guard the ceiling against rounding
        c -= 1
    return c


def check_chunk_size(fn) -> bool:
    """fn(H, V, peak_flops, peak_bandwidth) -> int, the smallest compute-bound chunk size."""
    name = "compute-bound chunk size"
    hint = (
        "a chunk does 2 C H V FLOPs and moves 2 (C H + H V + C V) bytes; it is compute-bound once "
        "FLOPs / bytes >= peak_flops / peak_bandwidth. Solve C H V >= R (C H + H V + C V) for C and round up."
    )
    for hidden, vocab, peak, bw in [
        (4096, 128256, 989e12, 3.35e12),  # section 1: Llama-3-8B's head on an H100
        (896, 151936, 989e12, 3.35e12),  # a small model, large vocabulary
        (4096, 32000, 312e12, 2.0e12),  # an A100's peaks
    ]:
        got = call_safely(name, fn, hidden, vocab, peak, bw)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != int(got):
            raise ExerciseError(f"{name}: return a whole number of tokens, got {got!r}. Hint: {hint}")
        want = reference_chunk_size(hidden, vocab, peak, bw)
        if int(got) != want:
            raise ExerciseError(
                f"{name}: for H={hidden}, V={vocab} expected {want}, got {int(got)}. Hint: {hint}"
            )
    return passed(name)


def _unfinished_update(m, s, tile):
    m_new = max(m, tile.max().item())
    return m_new, s + torch.exp(tile.double() - m_new).sum().item()  # the old sum is not rescaled


EXERCISES = (
    Exercise(1, "One step of the online softmax", check_online_update, reference_online_update,
             _unfinished_update),
    Exercise(2, "The log-prob gradient", check_logprob_grad, reference_logprob_grad,
             lambda logits, targets, t: reference_logprob_grad(logits, targets, t) * t),
    Exercise(3, "The roofline bound", check_roofline_time, reference_roofline_time,
             lambda flops, nbytes, peak_flops, bw: flops / peak_flops),
    Exercise(4, "Masked GAE", check_masked_gae, reference_masked_gae,
             lambda r, v, m, g, lam: gae_reference(r, v, torch.ones_like(m), g, lam)[0]),
    Exercise(5, "When does the chunked matmul become compute-bound?", check_chunk_size, reference_chunk_size,
             lambda hidden, vocab, peak, bw: math.ceil(peak / bw), kind="open"),
)  # fmt: skip
