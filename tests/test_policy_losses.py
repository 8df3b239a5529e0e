"""The policy losses of the RLVR recipe (`rlsurvey.algos.policy_loss.policy_loss`): each against a formula
written from its paper with Python loops, its gradient against autograd on that formula and against finite
differences, zero gradient for a group whose rewards agree, and, where TRL is installed, TRL's own
GRPOTrainer loss on the same tensors."""

from __future__ import annotations

import math
import types
from collections import defaultdict

import pytest
import torch

from rlsurvey.algos.grpo import group_step_advantages
from rlsurvey.algos.policy_loss import LOSS_TYPES, policy_loss

CASES = [(lt, level) for lt in LOSS_TYPES for level in ("token", "sequence")]
EPS, EPS_HIGH, CAP, L = 0.2, 0.28, 3.0, 9


def batch(seed: int, B: int = 6, T: int = 7):
    """A random ragged batch in float64, log-probs near the old ones (some ratios leave the clip range)."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    new = (old + 0.35 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_(True)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return new, old, adv, mask


def paper_formula(new, old, adv, mask, loss_type, level):
    """Each paper's objective, one response and one token at a time (no shared code with the package)."""
    B, T = new.shape
    lengths = [int(mask[i].sum()) for i in range(B)]
    high = CAP if loss_type == "cispo" else EPS_HIGH
    terms = []  # per response: the list of its per-token losses
    for i in range(B):
        n = lengths[i]
        if level == "sequence":  # GSPO, arXiv 2507.18071 eq. 7: s_i = (π_θ(y_i|x) / π_old(y_i|x))^(1/|y_i|)
            s = torch.exp(sum(new[i, t] - old[i, t] for t in range(n)) / n)
            ratios = [s] * n
        else:
            ratios = [torch.exp(new[i, t] - old[i, t]) for t in range(n)]
        row = []
        for t in range(n):
            r, a = ratios[t], adv[i]
            if loss_type == "cispo":  # MiniMax-M1 eq. 4: sg(clip(r, ., 1 + eps_high^IS)) A log pi
                w = torch.clamp(r, max=high).detach()
                row.append(-w * a * new[i, t])
            elif loss_type == "sapo":  # SAPO: soft gate f(r) = sigmoid(tau (r - 1)) * 4 / tau
                tau = 1.0 if a > 0 else 1.05
                row.append(-torch.sigmoid(tau * (r - 1)) * 4 / tau * a)
            else:  # PPO / GRPO / DAPO clip: min(r A, clip(r, 1 - eps, 1 + eps_high) A)
                row.append(-torch.minimum(r * a, torch.clamp(r, 1 - EPS, 1 + high) * a))
        terms.append(row)
    if loss_type in ("grpo", "sapo"):  # 1/G sum_i 1/|o_i| sum_t
        return sum(sum(row) / len(row) for row in terms) / B
    if loss_type == "dr_grpo":  # 1/(G L) sum_i sum_t
        return sum(sum(row) for row in terms) / (B * L)
    return sum(sum(row) for row in terms) / sum(lengths)  # bnpo, dapo, cispo: every token weighs the same


def ours(new, old, adv, mask, loss_type, level):
    return policy_loss(
        new, old, adv, mask, loss_type, EPS, CAP if loss_type == "cispo" else EPS_HIGH, level,
        max_completion_length=L,
    )[0]  # fmt: skip


@pytest.mark.parametrize(("loss_type", "level"), CASES)
def test_loss_and_gradient_equal_the_papers_formula(loss_type, level):
    for seed in range(3):
        new, old, adv, mask = batch(seed)
        got = ours(new, old, adv, mask, loss_type, level)
        want = paper_formula(new, old, adv, mask, loss_type, level)
        assert abs(got.item() - want.item()) < 1e-6 * max(1.0, abs(want.item()))
        g_got = torch.autograd.grad(got, new)[0]
        g_want = torch.autograd.grad(want, new)[0]
        torch.testing.assert_close(g_got, g_want, atol=1e-10, rtol=1e-8)
        assert torch.all(g_got[mask == 0] == 0), "no gradient off the mask"


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "sapo", "dr_grpo"])
def test_gradient_equals_finite_differences(loss_type):
    """Where the loss is differentiable (no ratio exactly at a clip edge), central differences agree."""
    new, old, adv, mask = batch(11, B=3, T=4)
    got = torch.autograd.grad(ours(new, old, adv, mask, loss_type, "token"), new)[0]
    h = 1e-6
    for i in range(3):
        for t in range(4):
            if mask[i, t] == 0:
                continue
            up, down = new.detach().clone(), new.detach().clone()
            up[i, t] += h
            down[i, t] -= h
            fd = ours(up, old, adv, mask, loss_type, "token") - ours(down, old, adv, mask, loss_type, "token")
            assert abs(fd.item() / (2 * h) - got[i, t].item()) < 1e-6


@pytest.mark.parametrize(("loss_type", "level"), CASES)
@pytest.mark.parametrize("advantage", ["grpo", "dr_grpo", "rloo"])
def test_a_group_whose_rewards_agree_gives_exactly_zero_gradient(loss_type, level, advantage):
    new, old, _, mask = batch(5, B=8)
    rewards = torch.tensor([1.0] * 4 + [0.0, 1.0, 0.0, 0.0], dtype=torch.float64)  # group 0: all right
    adv = group_step_advantages(rewards, 4, advantage).double()
    grad = torch.autograd.grad(ours(new, old, adv, mask, loss_type, level), new)[0]
    assert torch.all(grad[:4] == 0), "the all-equal group moves nothing"
    assert grad[4:].abs().sum() > 0


def test_bad_arguments_are_named():
    new, old, adv, mask = batch(0)
    with pytest.raises(ValueError, match="loss_type must be one of"):
        policy_loss(new, old, adv, mask, "ppo2")
    with pytest.raises(ValueError, match="needs epsilon_high"):
        policy_loss(new, old, adv, mask, "cispo")
    with pytest.raises(ValueError, match="importance_sampling_level"):
        policy_loss(new, old, adv, mask, "grpo", importance_sampling_level="batch")
    with pytest.raises(ValueError, match="advantages must be"):
        policy_loss(new, old, adv[:3], mask)


# ----------------------------------------------------------------------------------------------------------
# Against TRL's GRPOTrainer
# ----------------------------------------------------------------------------------------------------------


def _trl_loss(new, old, adv, mask, loss_type, level):
    """TRL's GRPOTrainer._compute_loss on our tensors: the trainer object is a stand-in holding only what
    that method reads, and the model's log-prob pass returns `new` (the per-token log-probs)."""
    trl = pytest.importorskip("trl")
    B, T = new.shape
    identity = types.SimpleNamespace(
        num_processes=1, sync_gradients=True, gather=lambda x: x, gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction="sum": x,
    )  # fmt: skip
    args = types.SimpleNamespace(
        delta=None, sapo_temperature_pos=1.0, sapo_temperature_neg=1.05, steps_per_generation=1,
        use_bias_correction_kl=False,
    )  # fmt: skip
    fake = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (new, torch.zeros_like(new), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=0.0,
        loss_type=loss_type, epsilon_low=EPS, args=args,
        epsilon_high=CAP if loss_type == "cispo" else EPS_HIGH,
        use_vllm=False, vllm_importance_sampling_correction=False, model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=L, accelerator=identity,
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
    )  # fmt: skip
    ids = torch.zeros(B, T, dtype=torch.long)
    inputs = {
        "prompt_ids": ids[:, :2], "prompt_mask": torch.ones(B, 2, dtype=torch.long), "completion_ids": ids,
        "completion_mask": mask, "advantages": adv, "old_per_token_logps": old,
        "num_items_in_batch": mask.sum(),
    }  # fmt: skip
    return trl.GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize(("loss_type", "level"), CASES)
def test_equals_trls_grpo_trainer_loss(loss_type, level):
    pytest.importorskip("trl")
    for seed in range(3):
        new, old, adv, mask = batch(seed)
        got = ours(new, old, adv, mask, loss_type, level)
        want = _trl_loss(new, old, adv, mask, loss_type, level)
        assert math.isclose(got.item(), want.item(), rel_tol=1e-5, abs_tol=1e-5), (got.item(), want.item())
        torch.testing.assert_close(
            torch.autograd.grad(got, new)[0], torch.autograd.grad(want, new)[0], atol=1e-5, rtol=1e-5
        )
