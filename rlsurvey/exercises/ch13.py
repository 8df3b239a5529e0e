"""Checks for the exercises of chapter 13 (GPU kernels): the entropy's gradient, merging online-softmax
states, the bandwidth a kernel reaches, masked GAE and the compute-bound chunk. Papers: online softmax, arXiv
1805.02867; GAE, arXiv 1506.02438; survey arXiv 2412.10400.

1. `check_entropy_grad(fn)`: fn(logits [N, V], temperature) -> the gradient [N, V] of sum_t H_t, with H_t the
   entropy of softmax(logits_t / temperature) (the chapter derives the log-prob's gradient, not this one).
2. `check_merge_states(fn)`: fn((m1, s1), (m2, s2)) -> (m, s): the online-softmax state of a row from the
   states of its two halves, as when two programs share one row (the chapter folds tiles one by one).
3. `check_bandwidth_fraction(fn)`: fn(tokens, vocab, elem_bytes, seconds, peak_bandwidth, backward) -> the
   share of the peak bandwidth a log-prob kernel reached, counting the least bytes it must move.
4. `check_masked_gae(fn)`: fn(rewards [B, T], values [B, T], mask [B, T] bool, gamma, lam) -> advantages,
   skipping masked positions as rlsurvey.kernels.gae does.
5. `check_chunk_size(fn)`: fn(H, V, peak_flops, peak_bandwidth) -> the smallest chunk of C tokens whose logits
   matmul [C, H] @ [H, V] is compute-bound, counting 2 C H V FLOPs and 2 (C H + H V + C V) bytes (bf16
   hidden chunk and weight read, the chunk's logits written), as section 1 counts the LM head.

`check_online_update`, `check_logprob_grad` and `check_roofline_time` check the chapter's own worked steps
(the online update, equation (4) and the roofline bound); they are kept for teachers who want them.
"""

from __future__ import annotations

import math

import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.kernels import gae_reference, token_logprobs_naive

__all__ = [
    "EXERCISES",
    "check_bandwidth_fraction",
    "check_entropy_grad",
    "check_merge_states",
    "reference_bandwidth_fraction",
    "reference_entropy_grad",
    "reference_merge_states",
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


def reference_entropy_grad(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """d(sum_t H_t)/d logits with p = softmax(x / T): dH/dx_v = -p_v (log p_v + H) / T, row by row."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    p = logp.exp()
    h = -(p * logp).sum(-1, keepdim=True)
    return -p * (logp + h) / temperature


def check_entropy_grad(fn) -> bool:
    """fn(logits [N, V], temperature) -> gradient [N, V] of the summed entropies."""
    name = "entropy gradient"
    gen = torch.Generator().manual_seed(37)
    hint = (
        "with p = softmax(x / T) and H = -sum_v p_v log p_v: dH/dx_v = -p_v (log p_v + H) / T. Derive it "
        "from d p_u / d x_v = p_u (1[u = v] - p_v) / T; the gradient of each row sums to zero."
    )
    for n, v, temperature in [(3, 5, 1.0), (4, 17, 0.7), (2, 50, 2.0)]:
        logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * 3
        got = call_safely(name, fn, logits.clone(), temperature)
        x = logits.clone().requires_grad_()
        logp = torch.log_softmax(x / temperature, dim=-1)
        (-(logp.exp() * logp).sum()).backward()
        assert_close(name, got, x.grad, hint=hint)
    return passed(name)


def reference_merge_states(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(m, s) of a row from its halves' (m1, s1) and (m2, s2): m = max(m1, m2), each sum rescaled to m."""
    (m1, s1), (m2, s2) = a, b
    m = max(m1, m2)
    if m == -math.inf:
        return m, 0.0
    return m, s1 * math.exp(m1 - m) + s2 * math.exp(m2 - m)


def check_merge_states(fn) -> bool:
    """fn((m1, s1), (m2, s2)) -> (m, s); checked by splitting rows at every point and comparing m + log s
    with the row's log-sum-exp."""
    name = "merging online-softmax states"
    gen = torch.Generator().manual_seed(41)
    hint = (
        "m = max(m1, m2); s = s1 * exp(m1 - m) + s2 * exp(m2 - m). A half of only -inf has (m, s) = "
        "(-inf, 0) and must contribute 0, not NaN; so must both."
    )
    rows = [
        torch.randn(40, generator=gen, dtype=torch.float64) * 5,
        torch.randn(23, generator=gen, dtype=torch.float64) * 90 + 700,  # exp(x) alone overflows
        torch.tensor([-math.inf] * 6 + [1.5, -2.0, 0.25], dtype=torch.float64),  # a first half of only -inf
    ]
    for x in rows:
        for cut in range(1, x.numel()):
            halves = [x[:cut], x[cut:]]
            states = [(h.max().item(), 0.0) for h in halves]
            states = [
                (m, 0.0 if m == -math.inf else torch.exp(h - m).sum().item())
                for (m, _), h in zip(states, halves)
            ]
            got = call_safely(name, fn, states[0], states[1])
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise ExerciseError(f"{name}: return the pair (m, s), got {got!r}. Hint: {hint}")
            m, total = (float(v) for v in got)
            if m != x.max().item():
                raise ExerciseError(
                    f"{name}: m should be the row's max {x.max().item()}, got {m}. Hint: {hint}"
                )
            lse = m + math.log(total) if total > 0 else float("nan")
            assert_close(name, lse, torch.logsumexp(x, 0), hint=hint)
    got = call_safely(name, fn, (-math.inf, 0.0), (-math.inf, 0.0))  # two halves of only -inf (padding)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or got[0] != -math.inf or got[1] != 0:
        raise ExerciseError(f"{name}: two empty states must merge to (-inf, 0), got {got!r}. Hint: {hint}")
    return passed(name)


def reference_bandwidth_fraction(
    tokens: int, vocab: int, elem_bytes: int, seconds: float, peak_bandwidth: float, backward: bool
) -> float:
    """The least bytes over the time, as a share of the peak: the forward reads the logits once; forward and
    backward read them twice and write their gradient once (3x)."""
    floor = (3 if backward else 1) * tokens * vocab * elem_bytes
    return floor / seconds / peak_bandwidth


def check_bandwidth_fraction(fn) -> bool:
    """fn(tokens, vocab, elem_bytes, seconds, peak_bandwidth, backward) -> a fraction (float)."""
    name = "bandwidth fraction"
    hint = (
        "count the least traffic: the forward must read every logit once (tokens x vocab x elem_bytes); "
        "forward plus backward read them twice (the backward recomputes the softmax) and write the gradient "
        "once, three times that. Divide by the time, then by the peak bandwidth."
    )
    cases = [
        (8192, 151936, 2, 1.0e-3, 4.8e12, False),  # bf16 on an H200, forward
        (8192, 151936, 2, 3.5e-3, 4.8e12, True),  # forward and backward
        (4096, 32000, 4, 2.0e-4, 3.35e12, True),  # float32 logits on an H100
    ]
    for case in cases:
        got = call_safely(name, fn, *case)
        assert_close(name, got, reference_bandwidth_fraction(*case), hint=hint, atol=0.0, rtol=1e-9)
    return passed(name)


def _unfinished_update(m, s, tile):
    m_new = max(m, tile.max().item())
    return m_new, s + torch.exp(tile.double() - m_new).sum().item()  # the old sum is not rescaled


EXERCISES = (
    Exercise(1, "The entropy's gradient", check_entropy_grad, reference_entropy_grad,
             lambda logits, t: reference_entropy_grad(logits, t) * t),
    Exercise(2, "Merging two online-softmax states", check_merge_states, reference_merge_states,
             lambda a, b: (max(a[0], b[0]), a[1] + b[1])),
    Exercise(3, "The bandwidth a kernel reached", check_bandwidth_fraction, reference_bandwidth_fraction,
             lambda n, v, e, sec, bw, back: n * v * e / sec / bw),
    Exercise(4, "Masked GAE", check_masked_gae, reference_masked_gae,
             lambda r, v, m, g, lam: gae_reference(r, v, torch.ones_like(m), g, lam)[0]),
    Exercise(5, "When does the chunked matmul become compute-bound?", check_chunk_size, reference_chunk_size,
             lambda hidden, vocab, peak, bw: math.ceil(peak / bw), kind="open"),
)  # fmt: skip
