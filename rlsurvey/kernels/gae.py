"""Generalized advantage estimation over a response mask, one Triton program per sequence.

Survey section: 2.1 and 4.2 of arXiv 2412.10400 (PPO for RLHF computes token-level advantages with GAE,
Schulman et al., arXiv 1506.02438).

For the valid (mask = 1) positions t_1 < t_2 < ... < t_n of a row, with v_{t_{n+1}} = 0:

    delta_i = r_{t_i} + gamma * v_{t_{i+1}} - v_{t_i}            (GAE paper, eq. 11 with lambda)
    A_i     = delta_i + gamma * lam * A_{i+1},      A_{n+1} = 0
    R_i     = A_i + v_{t_i}                          (the value target, "returns")

Masked positions get A = R = 0 and are skipped by the recursion: the next valid position's value and
advantage carry straight through them. With right padding this is TRL's usual computation; with holes
(tool outputs or prompt tokens masked inside a trajectory) it treats the holes as absent steps.

The recursion is sequential in time and independent across rows, so a kernel runs one program per row that
walks the row backwards with two scalars (next value, running advantage) in registers. Both outputs are
linear in rewards and values, so the backward pass is the adjoint scan, run forwards in time:
G_i = gA_i + gR_i + gamma * lam * G_{i-1}; dr_{t_i} = G_i; dv_{t_i} = gR_i - G_i + gamma * G_{i-1}.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels._dispatch import resolve_backend, triton_kernel
from rlsurvey.kernels._validate import check_same_device, check_tensor

__all__ = ["gae", "gae_reference"]

# `tl` is triton.language, bound on the first kernel launch so that importing this module never imports triton
# (see _dispatch.triton_kernel); kernel annotations such as "tl.constexpr" stay strings until then.
tl = None


def gae_reference(rewards, values, mask, gamma: float, lam: float):
    """Vectorized-over-rows PyTorch loop over time; differentiable through torch's autograd."""
    valid = mask.bool()
    b, t_len = rewards.shape
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    last_adv = torch.zeros(b, dtype=dtype, device=rewards.device)
    next_value = torch.zeros(b, dtype=dtype, device=rewards.device)
    adv = [None] * t_len
    for t in reversed(range(t_len)):
        m = valid[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        cand = delta + gamma * lam * last_adv
        adv[t] = torch.where(m, cand, 0.0)
        last_adv = torch.where(m, cand, last_adv)  # a masked step passes the advantage through
        next_value = torch.where(m, values[:, t].to(dtype), next_value)
    advantages = torch.stack(adv, dim=1) if t_len else torch.zeros(b, 0, dtype=dtype, device=rewards.device)
    returns = torch.where(valid, advantages + values, 0.0)
    return advantages, returns


@triton_kernel
def _gae_fwd_kernel(r_ptr, v_ptr, m_ptr, adv_ptr, ret_ptr, T, gamma, lam):
    row = tl.program_id(0).to(tl.int64)
    base = row * T
    next_value = 0.0
    last_adv = 0.0
    for i in range(0, T):
        t = T - 1 - i
        valid = tl.load(m_ptr + base + t) != 0
        r = tl.load(r_ptr + base + t).to(tl.float32)
        v = tl.load(v_ptr + base + t).to(tl.float32)
        cand = r + gamma * next_value - v + gamma * lam * last_adv
        last_adv = tl.where(valid, cand, last_adv)
        next_value = tl.where(valid, v, next_value)
        tl.store(adv_ptr + base + t, tl.where(valid, cand, 0.0))
        tl.store(ret_ptr + base + t, tl.where(valid, cand + v, 0.0))


@triton_kernel
def _gae_bwd_kernel(m_ptr, gadv_ptr, gret_ptr, dr_ptr, dv_ptr, T, gamma, lam):
    row = tl.program_id(0).to(tl.int64)
    base = row * T
    prev_g = 0.0  # G_{i-1}: the gradient reaching the previous valid step's delta
    for t in range(0, T):
        valid = tl.load(m_ptr + base + t) != 0
        g_ret = tl.load(gret_ptr + base + t).to(tl.float32)
        g = tl.load(gadv_ptr + base + t).to(tl.float32) + g_ret + gamma * lam * prev_g
        tl.store(dr_ptr + base + t, tl.where(valid, g, 0.0))
        tl.store(dv_ptr + base + t, tl.where(valid, g_ret - g + gamma * prev_g, 0.0))
        prev_g = tl.where(valid, g, prev_g)


class _TritonGAE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rewards, values, mask, gamma, lam):
        b, t_len = rewards.shape
        adv = torch.empty(b, t_len, dtype=torch.float32, device=rewards.device)
        ret = torch.empty_like(adv)
        if b and t_len:
            _gae_fwd_kernel[(b,)](rewards, values, mask, adv, ret, t_len, gamma, lam)
        ctx.save_for_backward(mask)
        ctx.gamma, ctx.lam, ctx.dtypes = gamma, lam, (rewards.dtype, values.dtype)
        return adv, ret

    @staticmethod
    def backward(ctx, g_adv, g_ret):
        (mask,) = ctx.saved_tensors
        b, t_len = mask.shape
        g_adv = torch.zeros_like(mask, dtype=torch.float32) if g_adv is None else g_adv.float().contiguous()
        g_ret = torch.zeros_like(mask, dtype=torch.float32) if g_ret is None else g_ret.float().contiguous()
        dr = torch.empty(b, t_len, dtype=torch.float32, device=mask.device)
        dv = torch.empty_like(dr)
        if b and t_len:
            _gae_bwd_kernel[(b,)](mask, g_adv, g_ret, dr, dv, t_len, ctx.gamma, ctx.lam)
        return dr.to(ctx.dtypes[0]), dv.to(ctx.dtypes[1]), None, None, None


def gae(rewards, values, mask, gamma: float, lam: float, *, backend=None):
    """Advantages and returns of GAE(gamma, lam) for batch-major sequences with a response mask.

    | argument   | shape  | dtype                  | meaning                                         |
    |------------|--------|------------------------|-------------------------------------------------|
    | rewards    | [B, T] | float                  | per-token reward (e.g. KL penalty + final score) |
    | values     | [B, T] | float                  | critic's value estimate at each token           |
    | mask       | [B, T] | bool, int or float 0/1 | 1 where the token belongs to the response       |
    | advantages | [B, T] | float (see below)      | A_t; 0 at masked positions                      |
    | returns    | [B, T] | same                   | A_t + V_t; 0 at masked positions                |

    Equations in the module docstring (GAE paper eq. 11, arXiv 1506.02438). The reference path returns
    the promoted dtype of rewards and values; the Triton path computes and returns float32. Both are
    differentiable with respect to rewards and values.
    """
    check_tensor("rewards", rewards, (torch.float32, torch.float64, torch.float16, torch.bfloat16), ndim=2)
    check_tensor("values", values, (torch.float32, torch.float64, torch.float16, torch.bfloat16), ndim=2)
    check_tensor("mask", mask, ndim=2)
    for name, x in (("values", values), ("mask", mask)):
        if x.shape != rewards.shape:
            raise ValueError(f"{name} must have rewards' shape {tuple(rewards.shape)}, got {tuple(x.shape)}")
    check_same_device(rewards=rewards, values=values, mask=mask)
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1 (or be bool)")
    for name, x in (("gamma", gamma), ("lam", lam)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
            raise ValueError(f"{name} must be a float in [0, 1], got {x!r}")
    if resolve_backend(backend, rewards, values, mask) == "triton":
        m = mask.to(torch.int8).contiguous()
        return _TritonGAE.apply(rewards.contiguous(), values.contiguous(), m, float(gamma), float(lam))
    return gae_reference(rewards, values, mask, float(gamma), float(lam))
