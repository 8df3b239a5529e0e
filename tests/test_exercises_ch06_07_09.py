"""Exercise checks of chapters 06, 07 and 09: each passes a hand-written solution, refuses wrong answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rlsurvey.exercises import ExerciseError, ch06, ch07, ch09

# ---- chapter 06 ----


def bt_probability(r_a, r_b):
    return 1 / (1 + torch.exp(-(r_a - r_b)))


def bt_loss(chosen, rejected, margin):
    return -torch.log(torch.sigmoid(chosen - rejected - margin)).mean()


def agreement(gold_a, gold_b, temperature, flip):
    total, count = 0.0, 0
    for a, b in zip(gold_a, gold_b):
        if a == b:
            continue
        p = 1 / (1 + math.exp(-abs(a - b) / temperature))
        total += (1 - flip) * p + flip * (1 - p)
        count += 1
    return total / count


def ece(p, y, bins):
    total = 0.0
    for b in range(bins):
        sel = [i for i in range(len(p)) if min(int(p[i] * bins), bins - 1) == b]
        if sel:
            conf = sum(float(p[i]) for i in sel) / len(sel)
            acc = sum(float(y[i]) for i in sel) / len(sel)
            total += len(sel) / len(p) * abs(acc - conf)
    return total


def loss_floor(gold_a, gold_b, temperature, flip):
    total = 0.0
    for a, b in zip(gold_a, gold_b):
        s = 1 / (1 + math.exp(-(a - b) / temperature))
        p = (1 - flip) * s + flip * (1 - s)
        total += -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)
    return total / len(gold_a)


@pytest.mark.parametrize(
    "check, right, wrongs",
    [
        (ch06.check_preference_probability, bt_probability,
         [lambda a, b: torch.sigmoid(a + b), lambda a, b: a - b, lambda a, b: 1 / 0]),
        (ch06.check_bradley_terry_loss, bt_loss,
         [lambda c, r, m: -torch.log(torch.sigmoid(c - r)).mean(), lambda c, r, m: (r - c + m).mean()]),
        (ch06.check_agreement_ceiling, agreement,
         [lambda a, b, t, f: agreement(a, b, t, 0.0), lambda a, b, t, f: "0.8"]),
        (ch06.check_ece, ece, [lambda p, y, b: float((p - y).abs().mean()), lambda p, y, b: 0.0]),
        (ch06.check_loss_floor, loss_floor,
         [lambda a, b, t, f: -math.log(agreement(a, b, t, f)),  # the log-loss of the ceiling, not the entropy
          lambda a, b, t, f: loss_floor(a, b, t, 0.0),  # forgets the flips
          lambda a, b, t, f: loss_floor(a[a != b], b[a != b], t, f),  # drops the ties
          lambda a, b, t, f: math.log(2)]),
    ],
)  # fmt: skip
def test_ch06(check, right, wrongs):
    assert check(right)
    for wrong in wrongs:
        with pytest.raises(ExerciseError):
            check(wrong)


def test_ch06_references_match_hand_solutions():
    a, b = np.array([1.0, 0.3, 2.0]), np.array([0.0, 0.3, -1.0])
    assert ch06.reference_agreement_ceiling(a, b, 0.5, 0.1) == pytest.approx(agreement(a, b, 0.5, 0.1))
    p, y = torch.tensor([0.05, 0.5, 0.95, 1.0]), torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert ch06.reference_ece(p, y, 4) == pytest.approx(ece(p, y, 4))
    assert ch06.reference_loss_floor(a, b, 0.5, 0.1) == pytest.approx(loss_floor(a, b, 0.5, 0.1))
    assert ch06.reference_loss_floor(a, a, 0.5, 0.1) == pytest.approx(math.log(2))  # all ties: coin flips


# ---- chapter 07 ----


def shaped(score, lp, ref, beta):
    out = [-beta * (a - b) for a, b in zip(lp.tolist(), ref.tolist())]
    out[-1] += score
    return out


def shaped_k3(score, lp, ref, beta):
    out = []
    for a, b in zip(lp.tolist(), ref.tolist()):
        rho = math.exp(b - a)  # pi_ref / pi
        out.append(-beta * ((rho - 1) - math.log(rho)))
    out[-1] += score
    return out


def win_rate(probs, rewards, n):
    """Level by level in plain Python: the best of n lands on a level, then beats an independent draw."""
    total = float(sum(probs))
    levels = sorted(set(float(r) for r in rewards))
    below, out = 0.0, 0.0
    for level in levels:
        mass = sum(float(p) for p, r in zip(probs, rewards) if float(r) == level) / total
        out += ((below + mass) ** n - below**n) * (below + mass / 2)
        below += mass
    return out


def win_rate_brute_force(probs, rewards, n):
    """Every n-tuple of draws and every independent opponent."""
    k, out = len(probs), 0.0
    for draw in itertools.product(range(k), repeat=n):
        weight = math.prod(probs[i] for i in draw)
        best = max(rewards[i] for i in draw)
        for j in range(k):
            out += weight * probs[j] * (1.0 if best > rewards[j] else 0.5 if best == rewards[j] else 0.0)
    return out


def gae_loop(r, v, gamma, lam):
    adv, last = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        nxt = v[t + 1] if t + 1 < len(r) else 0.0
        last = r[t] + gamma * nxt - v[t] + gamma * lam * last
        adv[t] = float(last)
    return adv


def value_loss(v, old, ret, clip):
    terms = []
    for a, b, c in zip(v.tolist(), old.tolist(), ret.tolist()):
        vc = b + min(max(a - b, -clip), clip)
        terms.append(max((a - c) ** 2, (vc - c) ** 2))
    return 0.5 * sum(terms) / len(terms)


def loo(r, k):
    out = []
    for i, x in enumerate(r.tolist()):
        group = r.tolist()[(i // k) * k : (i // k + 1) * k]
        out.append(x - (sum(group) - x) / (k - 1))
    return out


@pytest.mark.parametrize(
    "check, right, wrongs",
    [
        (ch07.check_shaped_rewards, shaped,
         [lambda s, lp, ref, b: [-b * (x - y) + s for x, y in zip(lp, ref)],  # score on every token
          lambda s, lp, ref, b: shaped(s, ref, lp, b)]),  # KL with the wrong sign
        (ch07.check_shaped_rewards_k3, shaped_k3,
         [shaped,  # k1, not k3
          lambda s, lp, ref, b: shaped_k3(s, ref, lp, b),  # rho upside down: pi / pi_ref
          lambda s, lp, ref, b: [x + s for x in shaped_k3(0.0, lp, ref, b)]]),  # score on every token
        (ch07.check_gae, gae_loop,
         [lambda r, v, g, lam: gae_loop(r, v, g, 1.0),
          lambda r, v, g, lam: [float(x) for x in r - v]]),
        (ch07.check_clipped_value_loss, value_loss,
         [lambda v, o, r, c: 0.5 * ((v - r) ** 2).mean().item(),
          lambda v, o, r, c: value_loss(v.clamp(-c, c), o, r, c)]),
        (ch07.check_best_of_n_win_rate, win_rate,
         [lambda p, r, n: n / (n + 1),  # the value without likely responses
          lambda p, r, n: win_rate(p, r, n) - 0.5 * sum(  # ties counted as losses
              float(q) ** 2 for q in p),
          lambda p, r, n: 1 - 0.5 ** n]),
        (ch07.check_leave_one_out, loo,
         [lambda r, k: (r.view(-1, k) - r.view(-1, k).mean(1, keepdim=True)).flatten(), lambda r, k: r]),
    ],
)  # fmt: skip
def test_ch07(check, right, wrongs):
    assert check(right)
    for wrong in wrongs:
        with pytest.raises(ExerciseError):
            check(wrong)


def test_ch07_win_rate_equals_brute_force():
    for probs, rewards in [([0.5, 0.2, 0.2, 0.1], [0.0, 1.0, 1.0, 2.0]), ([0.3, 0.7], [1.0, 1.0]),
                           ([0.1, 0.6, 0.3], [2.0, 0.0, 1.0])]:  # fmt: skip
        for n in (1, 2, 3):
            want = win_rate_brute_force(probs, rewards, n)
            assert ch07.reference_best_of_n_win_rate(probs, rewards, n) == pytest.approx(want, abs=1e-12)
            assert win_rate(probs, rewards, n) == pytest.approx(want, abs=1e-12)
    assert ch07.reference_best_of_n_win_rate([0.2, 0.3, 0.5], [0.0, 1.0, 2.0], 1) == pytest.approx(0.5)


def test_ch07_references_match_hand_solutions():
    lp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -1.0, -0.5])
    torch.testing.assert_close(
        ch07.reference_shaped_rewards(2.0, lp, ref, 0.1), torch.tensor(shaped(2.0, lp, ref, 0.1)).double()
    )
    torch.testing.assert_close(
        ch07.reference_shaped_rewards_k3(2.0, lp, ref, 0.1),
        torch.tensor(shaped_k3(2.0, lp, ref, 0.1)).double(),
    )
    r, v = [1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -0.4, 1.0]
    torch.testing.assert_close(
        ch07.reference_gae(r, v, 0.9, 0.7), torch.tensor(gae_loop(r, v, 0.9, 0.7)).double()
    )


# ---- chapter 09 ----


def pessimistic(scores, k):
    m = scores.shape[0]
    mean = scores.sum(0) / m
    std = (((scores - mean) ** 2).sum(0) / (m - 1)).sqrt()
    return mean - k * std


def bon_expectation(proxy, gold, n):
    order = sorted(range(len(proxy)), key=lambda i: float(proxy[i]))
    total = math.comb(len(proxy), n)
    return sum(math.comb(rank, n - 1) / total * float(gold[i]) for rank, i in enumerate(order))


def lagrange(lam, lr, cost, limit):
    return math.exp(math.log(lam) + lr * lam * (cost - limit))


def bench_accuracy(chosen, rejected, cats):
    out = {}
    for c in set(cats):
        pairs = [(a, b) for a, b, x in zip(chosen, rejected, cats) if x == c]
        out[c] = sum(a > b for a, b in pairs) / len(pairs)
    return out


def break_even(ra, ca, rb, cb):
    out = []
    for r1, c1, r2, c2 in zip(ra.tolist(), ca.tolist(), rb.tolist(), cb.tolist()):
        (r_safe, c_safe), (r_risky, c_risky) = sorted([(r1, c1), (r2, c2)], key=lambda rc: rc[1])
        # R_safe - nu C_safe >= R_risky - nu C_risky  <=>  nu (C_risky - C_safe) >= R_risky - R_safe
        out.append(max(0.0, (r_risky - r_safe) / (c_risky - c_safe)))
    return torch.tensor(out, dtype=torch.float64)


def break_even_with_denominator(ra, ca, rb, cb):  # solves (R_safe - nu C_safe) / (1 + nu) >= R_risky instead
    a_safer = ca < cb
    rs, cs = torch.where(a_safer, ra, rb), torch.where(a_safer, ca, cb)
    rr = torch.where(a_safer, rb, ra)
    return ((rs - rr) / (rr + cs)).clamp(min=0)


@pytest.mark.parametrize(
    "check, right, wrongs",
    [
        (ch09.check_break_even_price, break_even,
         [lambda ra, ca, rb, cb: (ra - rb) / (ca - cb),  # the pair's own order, no floor at 0
          lambda ra, ca, rb, cb: ((rb - ra) / (cb - ca)).abs(),  # a dominating safe response gets a price
          lambda ra, ca, rb, cb: ((cb - ca) / (rb - ra)).clamp(min=0),  # the ratio upside down
          break_even_with_denominator, lambda ra, ca, rb, cb: "1.0"]),
        (ch09.check_pessimistic_reward, pessimistic,
         [lambda s, k: s.mean(0) - k * s.std(0, unbiased=False), lambda s, k: s.mean(1) - k * s.std(1),
          lambda s, k: s.mean(0)]),
        (ch09.check_best_of_n_expectation, bon_expectation,
         [lambda p, g, n: float(g[p.argmax()]), lambda p, g, n: float(g.mean())]),
        (ch09.check_lagrange_update, lagrange,
         [lambda lam, lr, c, d: lam + lr * (c - d), lambda lam, lr, c, d: lagrange(lam, lr, d, c)]),
        (ch09.check_bench_accuracy, bench_accuracy,
         [lambda c, r, x: {k: v for k, v in bench_accuracy(c + 1e-9 * (c == r), r, x).items()},
          lambda c, r, x: float(np.mean(c > r))]),
    ],
)  # fmt: skip
def test_ch09(check, right, wrongs):
    assert check(right)
    for wrong in wrongs:
        with pytest.raises(ExerciseError):
            check(wrong)


def test_ch09_references_match_hand_solutions():
    s = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    torch.testing.assert_close(ch09.reference_pessimistic_reward(s, 1.5), pessimistic(s, 1.5))
    c, r, x = [1.0, 2.0, 0.0, 1.0], [0.0, 2.0, 1.0, 0.5], ["a", "a", "b", "b"]
    assert ch09.reference_bench_accuracy(c, r, x) == bench_accuracy(c, r, x) == {"a": 0.5, "b": 0.5}


def test_ch09_break_even_price_is_where_the_combined_reward_flips():
    """At the reference's price the two combined rewards (R - nu C) / (1 + nu) are equal (or the safer
    response already wins at nu = 0), just below it the riskier response wins, just above it the safer one."""
    g = torch.Generator().manual_seed(0)
    ra, rb = (torch.randn(200, generator=g, dtype=torch.float64) for _ in range(2))
    ca, cb = (torch.rand(200, generator=g, dtype=torch.float64) for _ in range(2))
    nu = ch09.reference_break_even_price(ra, ca, rb, cb)
    torch.testing.assert_close(nu, break_even(ra, ca, rb, cb))
    safe_first = ca < cb

    def margin(v):  # the safer response's combined reward minus the riskier one's, at price v
        diff = torch.where(safe_first, (ra - v * ca) - (rb - v * cb), (rb - v * cb) - (ra - v * ca))
        return diff / (1 + v)

    assert (margin(nu + 1e-6) > 0).all()
    inside = nu > 0
    assert inside.any() and (margin(nu - 1e-6)[inside] < 0).all()
