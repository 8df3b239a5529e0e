"""KL divergence between the policy and a reference model: the exact value and Schulman's estimators.

Survey sections 2.2 and 4.2 of arXiv 2412.10400. RLHF maximizes reward minus beta * KL(pi || pi_ref)
(Ziegler et al., arXiv 1909.08593; InstructGPT, arXiv 2203.02155): without the KL term the policy drifts to
whatever fools the reward model. For a response sampled from pi, with r_t = pi_ref(y_t | .) / pi(y_t | .),
Schulman's note "Approximating KL divergence" (http://joschu.net/blog/kl-approx.html) gives per-token
estimators of KL(pi || pi_ref):

    k1 = -log r                 unbiased, high variance, can be negative                          (1)
    k2 = (log r)^2 / 2          biased (exact to second order), low variance, >= 0                (2)
    k3 = (r - 1) - log r        unbiased, low variance, >= 0 (GRPO's choice, arXiv 2402.03300)    (3)

and the exact per-token value sums over the whole vocabulary:

    KL_t = sum_v pi(v | .) (log pi(v | .) - log pi_ref(v | .))                                   (4)

Summing a per-token estimator over a response's masked tokens estimates the sequence-level KL.
"""

from __future__ import annotations

import torch

from rlsurvey.kernels import token_logprobs
from rlsurvey.lm.logprobs import masked_entropy, response_logits

__all__ = ["ESTIMATORS", "kl_k1", "kl_k2", "kl_k3", "kl_estimate", "exact_kl", "reference_kl"]


def _check(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp must have logp's shape {tuple(logp.shape)}, got {tuple(ref_logp.shape)}")
    return ref_logp - logp  # log r


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Equation (1), elementwise: logp - ref_logp. Shapes: any, equal; returns the same shape."""
    return -_check(logp, ref_logp)


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Equation (2), elementwise: (logp - ref_logp)^2 / 2."""
    return 0.5 * _check(logp, ref_logp).square()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Equation (3), elementwise: exp(ref_logp - logp) - 1 - (ref_logp - logp); expm1 keeps it accurate (and
    >= 0 in floating point) when the two are close."""
    log_r = _check(logp, ref_logp)
    return torch.expm1(log_r) - log_r


ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_estimate(logp, ref_logp, mask=None, kind: str = "k3", per_sequence: bool = False) -> torch.Tensor:
    """Estimator `kind` per token, zero where `mask` is 0 ([B, R] -> [B, R]), or summed per sequence ([B])."""
    if kind not in ESTIMATORS:
        raise ValueError(f"kind must be one of {sorted(ESTIMATORS)}, got {kind!r}")
    k = ESTIMATORS[kind](logp, ref_logp)
    if mask is not None:
        k = k * mask.to(k.dtype)
    return k.sum(-1) if per_sequence else k


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Equation (4) per position: [..., V] logits of pi and pi_ref -> [...] KL(pi || pi_ref), float32.

    The reference the estimators are tested against; it needs both full distributions, so it is only
    affordable for small vocabularies or a few positions.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(
            f"ref_logits must have logits' shape {tuple(logits.shape)}, got {tuple(ref_logits.shape)}"
        )
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    logq = torch.log_softmax(ref_logits.float() / temperature, dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


@torch.no_grad()
def reference_kl(policy, reference, out, temperature: float = 1.0) -> dict:
    """KL of `policy` to `reference` on sampled responses `out` (a `GenerationOutput`), per token [B, R]:
    {"k1", "k2", "k3", "exact", "logp", "ref_logp", "entropy"}, all zero off the response mask.

    One forward pass per model: the sampled tokens' log-probs (through `rlsurvey.kernels.token_logprobs`),
    the exact KL (4) and the policy's entropy all come from the same two logit tensors.
    """
    args = (out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask)
    logits, ref_logits = response_logits(policy, *args), response_logits(reference, *args)
    mask = out.response_mask.to(logits.device)
    targets = out.response_ids.to(logits.device).masked_fill(mask == 0, -100)
    m = mask.float()
    logp = token_logprobs(logits, targets, temperature=temperature) * m
    ref_logp = token_logprobs(ref_logits, targets, temperature=temperature) * m
    res = {kind: kl_estimate(logp, ref_logp, m, kind) for kind in ESTIMATORS}
    res.update(
        exact=exact_kl(logits, ref_logits, temperature) * m,
        logp=logp,
        ref_logp=ref_logp,
        entropy=masked_entropy(logits, m, temperature),
    )
    return res
