"""Best-of-n sampling: draw n responses, keep the one the reward likes best. No training at all.

Survey section 4.2 (arXiv 2412.10400), as the baseline every RLHF method is compared with. Papers: Stiennon
et al. (arXiv 2009.01325, appendix: the KL of best-of-n); Gao et al., "Scaling laws for reward model
overoptimization" (arXiv 2210.10760, section 2 and appendix: the unbiased estimator below); Beirami et al.
(arXiv 2401.01879: the analytic KL is an upper bound on the true one).

Best-of-n is a policy too: π_n(y|x) is the distribution of the best of n samples of π_ref. Its KL to the
reference has a closed form when all samples differ,

    KL(π_n ‖ π_ref) = log n − (n − 1) / n,                                             (Stiennon et al.)

so it places on the same gold-reward-against-KL plot as PPO and RLOO. Beirami et al. (arXiv 2401.01879) show
that this closed form is an upper bound on the true KL, reached only when no single response carries
probability: for a sampler with atoms (a discrete distribution, ties in the reward) `best_of_n_kl_discrete`
gives the exact value. And from N ≥ n scored samples per
prompt the expected reward of best-of-n can be computed exactly rather than by resampling: the sample ranked
i-th by the proxy (1 = worst) is the best of a random n-subset with probability C(i−1, n−1) / C(N, n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlsurvey.algos.rollout import RewardFn, compute_rewards, repeat_prompts
from rlsurvey.lm.generation import generate

__all__ = ["BestOfNOutput", "best_of_n", "best_of_n_expectation", "best_of_n_kl", "best_of_n_kl_discrete"]


def best_of_n_kl(n: int) -> float:
    """log n − (n − 1)/n: the KL (nats) of best-of-n to the sampling policy, for n ≥ 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.log(n) - (n - 1) / n


@dataclass
class BestOfNOutput:
    prompts: list[str]  # one per prompt, as given
    completions: list[str]  # the highest-scoring of the n samples of each prompt
    scores: torch.Tensor  # [P] their rewards
    all_completions: list[list[str]]  # [P][n] every sample
    all_scores: torch.Tensor  # [P, n] every sample's reward
    kl: float  # log n − (n − 1)/n, the analytic KL of the best-of-n policy to the sampler


@torch.no_grad()
def best_of_n(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    n: int,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 256,
) -> BestOfNOutput:
    """Sample `n` responses per prompt from `policy` and keep the best under `reward_fn` (first on ties).

    The samples come from the same `generate` and reward check (`compute_rewards`) as every RL rollout, so
    a bad reward callable fails here with the same `RewardError`.
    """
    kl = best_of_n_kl(n)
    prompts = list(prompts)
    samples = repeat_prompts(prompts, n)
    gen = generate(policy, tokenizer, samples, max_new_tokens, temperature, top_k, top_p, seed, batch_size)
    scores = compute_rewards(reward_fn, gen.prompts, gen.texts).view(len(prompts), n)
    best = scores.argmax(dim=1)
    grouped = [gen.texts[i * n : (i + 1) * n] for i in range(len(prompts))]
    return BestOfNOutput(
        prompts,
        [grouped[i][int(b)] for i, b in enumerate(best)],
        scores[torch.arange(len(prompts)), best],
        grouped,
        scores,
        kl,
    )


def best_of_n_expectation(proxy: torch.Tensor, gold: torch.Tensor, n: int) -> torch.Tensor:
    """Expected `gold` of the best-of-n sample chosen by `proxy`, per prompt, from N ≥ n samples each.

    | argument | shape | meaning |
    |---|---|---|
    | proxy | [P, N] | the reward that picks (a reward model's score) |
    | gold | [P, N] | the reward that judges (the true reward; pass `proxy` again for the proxy's own curve) |
    | returns | [P] | E[gold of argmax_proxy over a uniformly random n-subset of the N samples] |

    Equation (Gao et al., arXiv 2210.10760): Σ_i C(i−1, n−1)/C(N, n) · gold_(i), samples ranked by proxy
    ascending (on ties the later sample ranks higher). Unbiased for the best-of-n of the sampling policy, and
    far less noisy than drawing subsets.
    """
    if proxy.dim() != 2 or gold.shape != proxy.shape:
        raise ValueError(
            f"proxy and gold must both be [P, N]; got {tuple(proxy.shape)} and {tuple(gold.shape)}"
        )
    big_n = proxy.shape[1]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= big_n:
        raise ValueError(f"n must be an int in [1, N={big_n}], got {n!r}")
    order = torch.sort(proxy.double(), dim=1, stable=True).indices
    ranked_gold = gold.double().gather(1, order)
    i = torch.arange(1, big_n + 1, dtype=torch.float64)
    # log C(i-1, n-1) - log C(N, n), with C(k, m) = 0 for k < m
    log_c = torch.lgamma(i) - torch.lgamma(i - n + 1).where(i >= n, torch.tensor(0.0, dtype=torch.float64))
    log_c = log_c - math.lgamma(n)
    log_total = math.lgamma(big_n + 1) - math.lgamma(n + 1) - math.lgamma(big_n - n + 1)
    weights = torch.where(i >= n, torch.exp(log_c - log_total), torch.zeros_like(i))
    return ranked_gold @ weights


def best_of_n_kl_discrete(probs, rewards, n: int) -> float:
    """The exact KL(π_n ‖ π_ref), in nats, of best-of-n over a discrete sampler.

    | argument | shape | meaning |
    |---|---|---|
    | probs | [K] | π_ref of each outcome (non-negative, sum 1; outcomes of probability 0 are left out) |
    | rewards | [K] | the reward that picks; outcomes with equal rewards tie |
    | n | int ≥ 1 | samples per choice |

    Group the outcomes into levels of equal reward, with mass P(L), cumulative mass F(L) = P(reward ≤ L)
    and F⁻(L) = F(L) − P(L). The best of n samples lands on level L with probability F(L)ⁿ − F⁻(L)ⁿ, and
    among the outcomes of a level in proportion to π_ref (whichever tied sample wins, each is a draw from
    π_ref restricted to the level), so

        KL(π_n ‖ π_ref) = Σ_L (F(L)ⁿ − F⁻(L)ⁿ) log((F(L)ⁿ − F⁻(L)ⁿ) / P(L))  ≤  log n − (n − 1)/n,

    the bound of `best_of_n_kl` (Beirami et al., arXiv 2401.01879), approached when every level's mass is
    small against 1/n near the top of the reward order, and loose when the best outcomes are likely ones.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    p = torch.as_tensor(probs, dtype=torch.float64).flatten()
    r = torch.as_tensor(rewards, dtype=torch.float64).flatten()
    if p.shape != r.shape or p.numel() == 0:
        raise ValueError(
            f"probs and rewards must be non-empty and of one length, got {p.numel()} and {r.numel()}"
        )
    if not (torch.isfinite(p).all() and torch.isfinite(r).all()) or (p < 0).any():
        raise ValueError("probs must be finite and non-negative, rewards finite")
    if abs(p.sum().item() - 1.0) > 1e-6:
        raise ValueError(f"probs must sum to 1, got {p.sum().item():.8g}")
    keep = p > 0
    p, r = p[keep] / p[keep].sum(), r[keep]
    levels, which = torch.unique(r, sorted=True, return_inverse=True)
    mass = torch.zeros(len(levels), dtype=torch.float64).index_add_(0, which, p)
    upper = torch.cumsum(mass, 0).clamp(max=1.0)  # F(L)
    lower = (upper - mass).clamp(min=0.0)  # F⁻(L)
    # log(Fⁿ − F⁻ⁿ) = n log F + log(1 − (F⁻/F)ⁿ), stable for large n and for F⁻ = 0
    log_pick = n * upper.log() + torch.log(-torch.expm1(n * (lower.log() - upper.log())))
    pick = log_pick.exp()
    terms = torch.where(pick > 0, pick * (log_pick - mass.log()), torch.zeros_like(pick))
    return float(terms.sum().clamp(min=0.0))
