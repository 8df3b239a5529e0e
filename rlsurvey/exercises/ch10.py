"""Exercises of chapter 10 (DPO, survey section 7 of arXiv 2412.10400; DPO is arXiv 2305.18290).

1. `check_optimal_policy(fn)`: fn(ref_probs [K], rewards [K], beta) -> π*(y) ∝ π_ref(y) exp(r(y) / β),
   the closed-form maximizer of the KL-regularized objective (DPO eq. 4) over K answers.
2. `check_implicit_reward(fn)`: fn(policy_logps [B], ref_logps [B], beta) -> β log π(y|x) / π_ref(y|x), the
   reward DPO's policy defines (DPO eq. 5 without log Z(x), which cancels in every comparison).
3. `check_dpo_loss(fn)`: fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> the mean DPO
   loss −log σ(β Δ) over the batch (DPO eq. 7).
4. `check_dpo_gradient_weight(fn)`: the same arguments -> [B], the weight σ(−β Δ) that scales each pair's
   gradient (DPO section 4): large when the implicit reward orders the pair wrongly.
5. `check_margin_for_loss(fn)`: fn(loss, beta) -> the log-ratio margin Δ at which one pair's DPO loss
   −log σ(β Δ) equals `loss`: Δ = −log(e^loss − 1) / β, so a fixed loss allows a drift that grows as 1/β.
6. `check_log_linear_dpo_step(fn)`: fn(features [K, d], theta [d], theta_ref [d], chosen, rejected, beta, lr)
   -> [2], the change of log π(y_w) and of log π(y_l) after one gradient-descent step of size lr on the DPO
   loss of the single pair (chosen, rejected), for the log-linear policy π_θ(y) = softmax(features · θ)_y. The
   step is θ + lr β σ(−β Δ) (f_w − f_l); both log-probabilities can fall when f_w and f_l are alike
   (likelihood displacement, arXiv 2410.08847).
"""

from __future__ import annotations

import math

import torch

from rlsurvey.algos.dpo import preference_loss
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed

__all__ = [
    "EXERCISES",
    "check_log_linear_dpo_step",
    "check_margin_for_loss",
    "reference_log_linear_dpo_step",
    "reference_margin_for_loss",
    "check_optimal_policy",
    "check_implicit_reward",
    "check_dpo_loss",
    "check_dpo_gradient_weight",
    "reference_optimal_policy",
    "reference_implicit_reward",
    "reference_dpo_loss",
    "reference_dpo_gradient_weight",
]


def _batch(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return tuple(-(torch.rand(n, generator=g, dtype=torch.float64) * 30 + 1) for _ in range(4))


def _tensor(name: str, got, shape) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: return a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(shape):
        raise ExerciseError(f"{name}: expected shape {tuple(shape)}, got {tuple(got.shape)}")
    return got


def reference_optimal_policy(ref_probs, rewards, beta: float) -> torch.Tensor:
    """π*(y) = π_ref(y) exp(r(y)/β) / Z, computed in log space so large r/β cannot overflow."""
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=-1)


def check_optimal_policy(fn) -> bool:
    name = "optimal KL-regularized policy"
    g = torch.Generator().manual_seed(10)
    for k, beta in ((3, 1.0), (7, 0.1), (12, 5.0)):
        ref = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), -1)
        r = torch.randn(k, generator=g, dtype=torch.float64) * 2
        got = _tensor(name, call_safely(name, fn, ref.clone(), r.clone(), beta), (k,))
        hint = "π* = π_ref · exp(r / β), then divide by the sum Z so it is a distribution (a softmax in logs)"
        assert_close(f"{name} (beta={beta})", got, reference_optimal_policy(ref, r, beta), hint, atol=1e-6)
    return passed(name)


def reference_implicit_reward(policy_logps, ref_logps, beta: float) -> torch.Tensor:
    return beta * (policy_logps - ref_logps)


def check_implicit_reward(fn) -> bool:
    name = "implicit reward"
    pc, _, rc, _ = _batch(11)
    for beta in (0.1, 0.5):
        got = _tensor(name, call_safely(name, fn, pc.clone(), rc.clone(), beta), pc.shape)
        hint = (
            "r(x, y) = β (log π(y|x) − log π_ref(y|x)); log Z(x) is the same for every answer and drops out"
        )
        assert_close(name, got, reference_implicit_reward(pc, rc, beta), hint)
    return passed(name)


def reference_dpo_loss(pc, pr, rc, rr, beta: float) -> torch.Tensor:
    return preference_loss(pc, pr, rc, rr, "sigmoid", beta)[0]


def check_dpo_loss(fn) -> bool:
    name = "DPO loss"
    pc, pr, rc, rr = _batch(12)
    for beta in (0.1, 1.0):
        got = _tensor(name, call_safely(name, fn, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta), ())
        hint = (
            "Δ = (log π_w − log π_ref,w) − (log π_l − log π_ref,l); loss = mean of −log σ(β Δ) "
            "(use F.logsigmoid: σ underflows for large negative β Δ)"
        )
        assert_close(name, got, reference_dpo_loss(pc, pr, rc, rr, beta), hint)
    return passed(name)


def reference_dpo_gradient_weight(pc, pr, rc, rr, beta: float) -> torch.Tensor:
    return torch.sigmoid(-beta * ((pc - rc) - (pr - rr)))


def check_dpo_gradient_weight(fn) -> bool:
    name = "DPO gradient weight"
    pc, pr, rc, rr = _batch(13)
    for beta in (0.05, 0.5):
        got = call_safely(name, fn, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta)
        got = _tensor(name, got, pc.shape)
        hint = "d loss / d Δ = −β σ(−β Δ): the weight is σ(−β Δ) = σ(r̂_l − r̂_w), the chance of a wrong order"
        assert_close(name, got, reference_dpo_gradient_weight(pc, pr, rc, rr, beta), hint)
    return passed(name)


def reference_margin_for_loss(loss: float, beta: float) -> float:
    """Invert −log σ(β Δ) = loss: σ(β Δ) = e^(−loss), so β Δ = −log(e^loss − 1)."""
    return -math.log(math.expm1(loss)) / beta


def check_margin_for_loss(fn) -> bool:
    name = "margin for a given loss"
    hint = (
        "solve −log σ(β Δ) = loss: σ(β Δ) = e^(−loss) gives β Δ = log(e^(−loss) / (1 − e^(−loss))) "
        "= −log(e^loss − 1); then divide by β (math.expm1 keeps small losses accurate)"
    )
    for loss, beta in [(0.3, 0.5), (0.3, 0.05), (0.6931471805599453, 1.0), (0.05, 0.1), (1.5, 2.0)]:
        got = call_safely(name, fn, loss, beta)
        try:
            got = float(got)
        except (TypeError, ValueError) as exc:
            raise ExerciseError(f"{name}: expected a number, got {type(got).__name__}. Hint: {hint}") from exc
        want = reference_margin_for_loss(loss, beta)
        assert_close(f"{name} (loss={loss:.3g}, beta={beta})", got, want, hint, atol=1e-6)
    return passed(name)


def reference_log_linear_dpo_step(features, theta, theta_ref, chosen: int, rejected: int, beta: float,
                                  lr: float) -> torch.Tensor:  # fmt: skip
    """One step of gradient descent on −log σ(β Δ), Δ = (log π_θ(y_w) − log π_ref(y_w)) − (the same for
    y_l), with π_θ = softmax(features · θ); by autograd. Returns [Δ log π(y_w), Δ log π(y_l)], after minus
    before."""
    feats = torch.as_tensor(features, dtype=torch.float64)
    th = torch.as_tensor(theta, dtype=torch.float64).clone().requires_grad_(True)
    ref = torch.log_softmax(feats @ torch.as_tensor(theta_ref, dtype=torch.float64), -1)
    logp = torch.log_softmax(feats @ th, -1)
    delta = (logp[chosen] - ref[chosen]) - (logp[rejected] - ref[rejected])
    (grad,) = torch.autograd.grad(-torch.nn.functional.logsigmoid(beta * delta), th)
    new = torch.log_softmax(feats @ (th.detach() - lr * grad), -1)
    before = logp.detach()
    return torch.stack([new[chosen] - before[chosen], new[rejected] - before[rejected]])


def check_log_linear_dpo_step(fn) -> bool:
    name = "one DPO step on a log-linear policy"
    hint = (
        "log pi(y) = f(y)·theta − log Σ_y' exp(f(y')·theta), f(y) the features of y; the gradient of "
        "−log σ(β Δ) with respect to theta is −β σ(−β Δ) (f_w − f_l) (the partition function's gradients "
        "cancel in Δ). Step "
        "theta − lr · gradient, then compare log-softmax after and before, partition function included"
    )
    g = torch.Generator().manual_seed(100)
    cases = [  # likelihood displacement: y_w and y_l alike, a third answer along their difference gains most
        (torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), torch.zeros(2), torch.zeros(2), 0, 1, 1.0, 1.0),
    ]
    for k, d, beta, lr in [(4, 3, 0.5, 0.3), (6, 2, 0.1, 2.0), (10, 5, 2.0, 0.05)]:
        feats = torch.randn(k, d, generator=g, dtype=torch.float64)
        theta, theta_ref = (
            torch.randn(d, generator=g, dtype=torch.float64),
            torch.randn(d, generator=g).double(),
        )
        cases.append((feats, theta, theta_ref, 1, k - 1, beta, lr))
    for feats, theta, theta_ref, w, l, beta, lr in cases:
        got = call_safely(name, fn, feats.clone(), theta.clone(), theta_ref.clone(), w, l, beta, lr)
        got = _tensor(name, got, (2,))
        want = reference_log_linear_dpo_step(feats, theta, theta_ref, w, l, beta, lr)
        assert_close(f"{name} (K={len(feats)}, beta={beta}, lr={lr})", got, want, hint, atol=1e-9)
    return passed(name)


def _step_without_partition(features, theta, theta_ref, w, l, beta, lr):
    """A typical wrong answer: the step is right, but log π is read as the score f·θ (no partition)."""
    feats = torch.as_tensor(features, dtype=torch.float64)
    delta = (feats[w] - feats[l]) @ (torch.as_tensor(theta) - torch.as_tensor(theta_ref)).double()
    step = lr * beta * torch.sigmoid(-beta * delta) * (feats[w] - feats[l])
    return torch.stack([feats[w] @ step, feats[l] @ step])


EXERCISES = (
    Exercise(1, "The optimal KL-regularized policy", check_optimal_policy, reference_optimal_policy,
             lambda ref, r, beta: ref * torch.exp(r / beta)),
    Exercise(2, "The implicit reward", check_implicit_reward, reference_implicit_reward,
             lambda policy_logps, ref_logps, beta: policy_logps - ref_logps),
    Exercise(3, "The DPO loss", check_dpo_loss, reference_dpo_loss,
             lambda pc, pr, rc, rr, beta: -torch.nn.functional.logsigmoid(beta * (pc - pr)).mean()),
    Exercise(4, "DPO's gradient weight", check_dpo_gradient_weight, reference_dpo_gradient_weight,
             lambda pc, pr, rc, rr, beta: torch.sigmoid(beta * ((pc - rc) - (pr - rr)))),
    Exercise(5, "What a loss allows at a given beta", check_margin_for_loss, reference_margin_for_loss,
             lambda loss, beta: -math.log(math.expm1(loss)), kind="open"),
    Exercise(6, "One DPO step on a log-linear policy", check_log_linear_dpo_step,
             reference_log_linear_dpo_step, _step_without_partition, kind="open"),
)  # fmt: skip
