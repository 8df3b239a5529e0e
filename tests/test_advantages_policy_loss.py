"""Group, leave-one-out and whitened advantages, the clipped token loss and its averaging, by brute force."""

from __future__ import annotations

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.algos.advantages import group_advantages, leave_one_out_advantages, whiten
from rlsurvey.algos.policy_loss import aggregate, clipped_surrogate

groups = st.lists(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=6), min_size=1, max_size=5
).filter(lambda g: len({len(x) for x in g}) == 1)


@settings(max_examples=60, deadline=None)
@given(groups)
def test_group_advantages_by_hand(rows):
    G = len(rows[0])
    flat = torch.tensor([r for row in rows for r in row], dtype=torch.float64)
    got = group_advantages(flat, G).tolist()
    got_dr = group_advantages(flat, G, scale_by_std=False).tolist()
    want, want_dr = [], []
    for row in rows:
        mu, sd = statistics.fmean(row), statistics.stdev(row)
        want += [(r - mu) / (sd + 1e-4) for r in row]
        want_dr += [r - mu for r in row]
    assert got == pytest.approx(want, abs=1e-9)
    assert got_dr == pytest.approx(want_dr, abs=1e-9)


def test_equal_rewards_give_zero_advantage_not_nan():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    a = group_advantages(r, 3)
    assert torch.isfinite(a).all() and a[:3].abs().max() == 0


@settings(max_examples=60, deadline=None)
@given(groups)
def test_leave_one_out_by_hand(rows):
    G = len(rows[0])
    flat = torch.tensor([r for row in rows for r in row], dtype=torch.float64)
    want = [row[i] - statistics.fmean(row[:i] + row[i + 1 :]) for row in rows for i in range(G)]
    assert leave_one_out_advantages(flat, G).tolist() == pytest.approx(want, abs=1e-9)
    # RLOO's advantage is G/(G-1) times the mean-centred reward.
    torch.testing.assert_close(
        leave_one_out_advantages(flat, G), group_advantages(flat, G, False) * G / (G - 1)
    )


@pytest.mark.parametrize(
    "rewards, G, match",
    [
        (torch.ones(4), 1, "group_size"),
        (torch.ones(5), 2, "multiple"),
        (torch.tensor([1.0, float("nan")]), 2, "NaN"),
        (torch.ones(2, 2), 2, "1-D"),
    ],
)
def test_bad_rewards(rewards, G, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, G)


def test_whiten_masked():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    vals = [1.0, 2.0, 3.0, 4.0]
    mu, sd = statistics.fmean(vals), statistics.stdev(vals)
    out = whiten(x, mask)
    assert out[mask].tolist() == pytest.approx([(v - mu) / sd for v in vals], rel=1e-6)
    assert out[~mask].abs().sum() == 0
    assert whiten(x, mask, shift_mean=False)[mask].tolist() == pytest.approx(
        [(v - mu) / sd + mu for v in vals]
    )


def ragged(seed: int, B: int = 5, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    per_token = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return per_token, mask, lengths


@pytest.mark.parametrize("seed", range(5))
def test_aggregations_by_brute_force(seed):
    per_token, mask, lengths = ragged(seed)
    rows = [[per_token[i, t].item() for t in range(int(lengths[i]))] for i in range(len(lengths))]
    seq = sum(sum(r) / max(len(r), 1) for r in rows) / len(rows)
    tok = sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    const = sum(sum(r) for r in rows) / (len(rows) * 16)
    assert aggregate(per_token, mask, "sequence_mean").item() == pytest.approx(seq)
    assert aggregate(per_token, mask, "token_mean").item() == pytest.approx(tok)
    assert aggregate(per_token, mask, "constant", max_tokens=16).item() == pytest.approx(const)


@pytest.mark.parametrize("adv", [1.5, -1.5])
@pytest.mark.parametrize("ratio", [0.5, 0.9, 1.0, 1.1, 1.5])
def test_clipped_surrogate_value_and_gradient(adv, ratio):
    eps = 0.2
    old = torch.tensor([[-1.0]], dtype=torch.float64)
    new = (old + torch.log(torch.tensor(ratio, dtype=torch.float64))).requires_grad_()
    loss, stats = clipped_surrogate(new, old, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1), eps)
    want = -min(ratio * adv, min(max(ratio, 1 - eps), 1 + eps) * adv)
    assert loss.item() == pytest.approx(want)
    loss.sum().backward()
    # The gradient is zero exactly when the clipped branch is the minimum and is active.
    clipped_active = (adv > 0 and ratio > 1 + eps) or (adv < 0 and ratio < 1 - eps)
    want_grad = 0.0 if clipped_active else -adv * ratio  # d(−ρA)/d log π = −ρA
    assert new.grad.item() == pytest.approx(want_grad)
    assert stats["policy/clipfrac_avg"].item() == float(clipped_active)


def test_clipped_surrogate_bad_shapes():
    with pytest.raises(ValueError, match="one shape"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="rows"):
        clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mode"):
        aggregate(torch.zeros(2, 3), torch.ones(2, 3), "mean")
