"""Exercises of chapter 11 (DPO variants, survey section 8 of arXiv 2412.10400).

1. `check_ipo_loss(fn)`: fn(pc, pr, rc, rr, chosen_len, rejected_len, beta) -> IPO's mean squared loss
   (Δ̄ − 1/(2β))², Δ̄ the difference of per-token mean log-ratios (arXiv 2310.12036 eq. 17, normalized).
2. `check_simpo_loss(fn)`: fn(pc, pr, chosen_len, rejected_len, beta, gamma) -> SimPO's mean loss
   −log σ(β pc/|y_w| − β pr/|y_l| − γ), with no reference model (arXiv 2405.14734 eq. 6).
3. `check_robust_loss(fn)`: fn(pc, pr, rc, rr, beta, eps) -> provably robust DPO's mean loss
   [−(1 − ε) log σ(β Δ) + ε log σ(−β Δ)] / (1 − 2ε) (arXiv 2403.00409 eq. 9): unbiased when a fraction ε of
   labels is flipped. The chapter writes conservative DPO out in code, not this one.
   (`check_cdpo_loss` checks conservative DPO, the chapter's worked example, for teachers who want it.)
4. `check_npo_loss(fn)`: fn(policy_logps, ref_logps, beta) -> NPO's mean loss −(2/β) log σ(−β (log π −
   log π_ref)) on answers to forget (arXiv 2404.05868 eq. 3).
5. `check_push(fn)`: fn(delta [N], beta) -> {"sigmoid": [N], "hinge": [N], "ipo": [N]}, each loss's push
   −dℓ/dΔ on a pair as a function of its margin Δ (IPO with unit lengths): where it fades, stops or reverses.
"""

from __future__ import annotations

import torch

from rlsurvey.algos.dpo import preference_loss
from rlsurvey.algos.kto import npo_loss
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_push",
    "reference_push",
    "check_ipo_loss",
    "check_simpo_loss",
    "check_cdpo_loss",
    "check_robust_loss",
    "check_npo_loss",
    "reference_ipo_loss",
    "reference_simpo_loss",
    "reference_cdpo_loss",
    "reference_robust_loss",
    "reference_npo_loss",
]


def _batch(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    logps = [-(torch.rand(n, generator=g, dtype=torch.float64) * 30 + 1) for _ in range(4)]
    lengths = [torch.randint(1, 40, (n,), generator=g).double() for _ in range(2)]
    return (*logps, *lengths)


def _scalar(name: str, got) -> torch.Tensor:
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        what = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise ExerciseError(f"{name}: return the batch mean as a 0-d tensor, got {what}")
    return got


def reference_ipo_loss(pc, pr, rc, rr, lc, lr, beta: float) -> torch.Tensor:
    return preference_loss(pc, pr, rc, rr, "ipo", beta, chosen_lengths=lc, rejected_lengths=lr)[0]


def check_ipo_loss(fn) -> bool:
    name = "IPO loss"
    pc, pr, rc, rr, lc, lr = _batch(20)
    for beta in (0.1, 1.0):
        got = _scalar(name, call_safely(name, fn, pc, pr, rc, rr, lc, lr, beta))
        hint = "divide each log-ratio by its response length before the difference; target 1/(2β), squared"
        assert_close(name, got, reference_ipo_loss(pc, pr, rc, rr, lc, lr, beta), hint)
    return passed(name)


def reference_simpo_loss(pc, pr, lc, lr, beta: float, gamma: float) -> torch.Tensor:
    return preference_loss(pc, pr, None, None, "simpo", beta, chosen_lengths=lc, rejected_lengths=lr,
                           simpo_gamma=gamma)[0]  # fmt: skip


def check_simpo_loss(fn) -> bool:
    name = "SimPO loss"
    pc, pr, _, _, lc, lr = _batch(21)
    for beta, gamma in ((2.0, 0.5), (1.0, 1.5)):
        got = _scalar(name, call_safely(name, fn, pc, pr, lc, lr, beta, gamma))
        hint = "the reward is β times the MEAN token log-prob (no reference); subtract the margin γ inside σ"
        assert_close(name, got, reference_simpo_loss(pc, pr, lc, lr, beta, gamma), hint)
    return passed(name)


def reference_cdpo_loss(pc, pr, rc, rr, beta: float, eps: float) -> torch.Tensor:
    return preference_loss(pc, pr, rc, rr, "cdpo", beta, label_smoothing=eps)[0]


def check_cdpo_loss(fn) -> bool:
    name = "conservative DPO loss"
    pc, pr, rc, rr, _, _ = _batch(22)
    for beta, eps in ((0.1, 0.0), (0.5, 0.2), (1.0, 0.4)):
        got = _scalar(name, call_safely(name, fn, pc, pr, rc, rr, beta, eps))
        hint = (
            "mix the DPO loss of the pair as labelled (weight 1 − ε) with that of the flipped pair (weight ε)"
        )
        assert_close(f"{name} (eps={eps})", got, reference_cdpo_loss(pc, pr, rc, rr, beta, eps), hint)
    return passed(name)


def reference_robust_loss(pc, pr, rc, rr, beta: float, eps: float) -> torch.Tensor:
    return preference_loss(pc, pr, rc, rr, "robust", beta, label_smoothing=eps)[0]


def check_robust_loss(fn) -> bool:
    name = "robust DPO loss"
    pc, pr, rc, rr, _, _ = _batch(23)
    for beta, eps in ((0.1, 0.0), (0.5, 0.2), (1.0, 0.4)):
        got = _scalar(name, call_safely(name, fn, pc, pr, rc, rr, beta, eps))
        hint = (
            "the loss of the pair as labelled, weight 1 − ε, MINUS the loss of the flipped pair, weight ε, "
            "all over 1 − 2ε: [−(1−ε) log σ(βΔ) + ε log σ(−βΔ)] / (1 − 2ε). Averaged over the label's flip, "
            "it equals DPO's loss on the true label"
        )
        assert_close(f"{name} (eps={eps})", got, reference_robust_loss(pc, pr, rc, rr, beta, eps), hint)
    return passed(name)


def reference_npo_loss(policy_logps, ref_logps, beta: float) -> torch.Tensor:
    return npo_loss(policy_logps, ref_logps, beta)[0]


def check_npo_loss(fn) -> bool:
    name = "NPO loss"
    pc, _, rc, _, _, _ = _batch(23)
    for beta in (0.1, 1.0):
        got = _scalar(name, call_safely(name, fn, pc, rc, beta))
        hint = "DPO with only a rejected answer: −(2/β) log σ(−β (log π − log π_ref)), averaged"
        assert_close(name, got, reference_npo_loss(pc, rc, beta), hint)
    return passed(name)


def reference_push(delta, beta: float) -> dict[str, torch.Tensor]:
    """−dℓ/dΔ per pair: DPO β σ(−β Δ) fades but never stops; SLiC's hinge max(0, 1 − β Δ) pushes β until
    β Δ = 1, then 0; IPO's (Δ − 1/(2β))² pushes 2 (1/(2β) − Δ), negative past its target."""
    d = torch.as_tensor(delta, dtype=torch.float64)
    return {
        "sigmoid": beta * torch.sigmoid(-beta * d),
        "hinge": beta * (beta * d < 1).double(),
        "ipo": 2 * (1 / (2 * beta) - d),
    }


def check_push(fn) -> bool:
    name = "the push of each loss"
    hint = (
        "differentiate each per-pair loss with respect to Δ and flip the sign: −log σ(βΔ) gives β σ(−βΔ); "
        "max(0, 1 − βΔ) gives β below the margin 1/β and 0 above; (Δ − 1/(2β))² gives 2 (1/(2β) − Δ)"
    )
    g = torch.Generator().manual_seed(25)
    for beta in (0.1, 0.5, 2.0):
        delta = torch.randn(20, generator=g, dtype=torch.float64) * 3 / beta
        got = call_safely(name, fn, delta.clone(), beta)
        want = reference_push(delta, beta)
        if not isinstance(got, dict) or set(got) != set(want):
            raise ExerciseError(
                f"{name}: return a dict with the keys {sorted(want)}, got {got!r}. Hint: {hint}"
            )
        for key in want:
            assert_close(f"{name} [{key}, beta={beta}]", got[key], want[key], hint, atol=1e-9)
    return passed(name)


EXERCISES = (
    Exercise(1, "IPO with per-token means", check_ipo_loss, reference_ipo_loss,
             lambda pc, pr, rc, rr, lc, lr, b: (((pc - rc) - (pr - rr) - 1 / (2 * b)) ** 2).mean()),
    Exercise(2, "SimPO", check_simpo_loss, reference_simpo_loss,
             lambda pc, pr, lc, lr, b, g: -torch.nn.functional.logsigmoid(b * pc - b * pr - g).mean()),
    Exercise(3, "Robust DPO", check_robust_loss, reference_robust_loss, reference_cdpo_loss),
    Exercise(4, "NPO", check_npo_loss, reference_npo_loss, lambda p, r, b: p.mean()),
    Exercise(5, "Which push never fades?", check_push, reference_push,
             lambda d, b: {k: b * torch.sigmoid(-b * d) for k in ("sigmoid", "hinge", "ipo")}, kind="open"),
)  # fmt: skip
