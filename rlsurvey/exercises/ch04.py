"""Exercises of chapter 04 (RL for LLMs, survey section 2.2 of arXiv 2412.10400).

1. `check_sequence_logprob(fn)`: fn(logits [B, R, V], response_ids [B, R], mask [B, R]) -> [B], the
   log-probability of each response: sum_t m_t log softmax(logits_t)[y_t].
2. `check_kl_k3(fn)`: fn(logp, ref_logp) -> Schulman's k3 per token, (rho - 1) - log rho with
   rho = pi_ref / pi = exp(ref - logp).
3. `check_entropy(fn)`: fn(logits [..., V], temperature) -> [...], the entropy of softmax(logits / tau).
4. `check_tilt_kl(fn)`: fn(mass, u) -> KL(pi_u || pi) of one step, where pi_u tilts pi by adding u to the
   logits of a set S of tokens that pi gives probability `mass`: the KL depends on that mass and u only.
"""

from __future__ import annotations

import math

import torch

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_sequence_logprob",
    "check_kl_k3",
    "check_entropy",
    "check_tilt_kl",
    "reference_entropy",
    "reference_kl_k3",
    "reference_sequence_logprob",
    "reference_tilt_kl",
]


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 7, 11, generator=g) * 2
    ids = torch.randint(0, 11, (4, 7), generator=g)
    lengths = torch.tensor([7, 3, 1, 5])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).long()
    return logits, ids, mask


def reference_sequence_logprob(logits, response_ids, mask):
    """The reference solution of exercise 1."""
    logp = torch.log_softmax(logits.double(), dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def check_sequence_logprob(fn) -> bool:
    name = "sequence log-prob"
    logits, ids, mask = _inputs(1)
    got = call_safely(name, fn, logits, ids, mask)
    if not isinstance(got, torch.Tensor) or got.shape != (4,):
        raise ExerciseError(
            f"{name}: return a tensor of shape [B] = (4,), got {getattr(got, 'shape', type(got))}"
        )
    hint = "log_softmax over the vocabulary, gather the taken token, multiply by the mask, sum over time"
    assert_close(name, got, reference_sequence_logprob(logits, ids, mask), hint, atol=1e-4)
    return passed(name)


def reference_kl_k3(logp, ref_logp):
    """The reference solution of exercise 2."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


def check_kl_k3(fn) -> bool:
    name = "KL estimator k3"
    g = torch.Generator().manual_seed(2)
    logp = -torch.rand(64, generator=g).double() * 5
    ref = -torch.rand(64, generator=g).double() * 5
    got = call_safely(name, fn, logp, ref)
    hint = "rho = pi_ref / pi = exp(ref_logp - logp); k3 = (rho - 1) - log rho, which is never negative"
    assert_close(name, got, reference_kl_k3(logp, ref), hint, atol=1e-6)
    return passed(name)


def reference_entropy(logits, temperature: float = 1.0):
    """The reference solution of exercise 3."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def check_entropy(fn) -> bool:
    name = "token entropy"
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 9, 13, generator=g) * 3
    for t in (1.0, 0.5, 2.0):
        got = call_safely(name, fn, logits, t)
        hint = "H = -sum_v p_v log p_v with p = softmax(logits / temperature): divide before the softmax"
        assert_close(f"{name} (temperature={t})", got, reference_entropy(logits, t), hint, atol=1e-4)
    return passed(name)


def reference_tilt_kl(mass: float, b: float) -> float:
    """KL(pi_u || pi) with u = `b`, pi_u(v) = pi(v) e^(u 1[v in S]) / Z, Z = 1 - mass + mass e^u, and
    mass = pi(S): KL = u pi_u(S) - log Z, with pi_u(S) = mass e^u / Z (in logs: a large u cannot overflow)."""
    if not 0 < mass < 1:
        return 0.0  # the tilt rescales every token alike: pi_u = pi
    hi, lo = max(math.log1p(-mass), math.log(mass) + b), min(math.log1p(-mass), math.log(mass) + b)
    log_z = hi + math.log1p(math.exp(lo - hi))  # log(1 - m + m e^b) without overflow
    q_set = math.exp(math.log(mass) + b - log_z)
    return b * q_set - log_z


def check_tilt_kl(fn) -> bool:
    """fn(mass, u) -> KL(pi_u || pi) in nats, one step of the tilted policy of section 5."""
    name = "KL of a tilt"
    hint = (
        "pi_u = pi e^(u 1_S) / Z with Z = sum_v pi(v) e^(u 1_S(v)) = 1 - mass + mass e^u; "
        "KL(pi_u || pi) = E_{pi_u}[log pi_u/pi] = u pi_u(S) - log Z, pi_u(S) = mass e^u / Z. "
        "Only the mass of the tilted set enters."
    )
    for mass, b in [(0.1, 1.0), (0.1, 4.0), (0.3, 4.0), (0.02, 8.0), (0.5, -2.0), (0.05, 16.0), (0.9, 0.5)]:
        got = call_safely(name, fn, mass, b)
        try:
            got = float(got)
        except (TypeError, ValueError) as exc:
            raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}. Hint: {hint}") from exc
        assert_close(f"{name} (mass={mass}, u={b})", got, reference_tilt_kl(mass, b), hint, atol=1e-6)
    return passed(name)


def _unfinished_sequence_logprob(logits, response_ids, mask):
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1).sum(-1)  # forgets the mask


def _unfinished_entropy(logits, temperature):
    p = torch.softmax(logits, dim=-1)  # ignores the temperature
    return -(p * p.log()).sum(-1)


EXERCISES = (
    Exercise(1, "The log-probability of a response", check_sequence_logprob, reference_sequence_logprob,
             _unfinished_sequence_logprob),
    Exercise(2, "Schulman's k3", check_kl_k3, reference_kl_k3, lambda logp, ref_logp: logp - ref_logp),
    Exercise(3, "Entropy at a temperature", check_entropy, reference_entropy, _unfinished_entropy),
    Exercise(4, "The KL of a tilt", check_tilt_kl, reference_tilt_kl,
             lambda mass, b: b * mass, kind="open"),
)  # fmt: skip
