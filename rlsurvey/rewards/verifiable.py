"""Verifiable rewards: a format reward, weighted sums of reward callables, and pass@k on held-out prompts.

Survey section 3 of arXiv 2412.10400 (o1, DeepSeek-R1, Kimi k1.5): the reasoning models of the survey's table
are trained on rewards a program checks (is the final answer right? is it in the expected format?) rather
than on a learned reward model. DeepSeek-R1 (arXiv 2501.12948, section 2.2.2) uses exactly two such rule-based
rewards, accuracy and format, summed. Evaluation counts how often sampled answers are right: pass@k, the
probability that at least one of k samples is correct, estimated without bias from n >= k samples per
problem (Chen et al., arXiv 2107.03374, eq. 1).

Every reward here has the trainer's signature `reward_fn(prompts, completions) -> one float per completion`
(`rlsurvey.algos.rollout.RewardFn`), so it plugs into `rlsurvey.algos.grpo.train_grpo` unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rlsurvey.lm.generation import generate
from rlsurvey.rewards.base import RewardFn, compute_rewards, repeat_prompts
from rlsurvey.tasks.arithmetic import check_pairs

__all__ = [
    "arithmetic_format_reward",
    "coin_flip_reward",
    "combine_rewards",
    "evaluate_pass_at_k",
    "evaluate_reasoning",
    "make_pass_at_k_eval",
    "pass_at_k",
]

# A canonical integer: an optional minus, then 0 or digits without a leading zero.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def arithmetic_format_reward(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """1.0 where a completion, stripped of surrounding white space, is one canonical integer ("95", "-3",
    "0"), else 0.0; float64 array [len(completions)].

    The arithmetic world's analogue of DeepSeek-R1's format reward: it says nothing about correctness, only
    that the response is something the verifier can read ("95 apples", "095" and "" are not). Added with a
    small weight it steers a model that rambles towards short answers; it can also be gamed (any integer
    earns it), which is why it is only ever a small part of the reward.
    """
    _, completions = check_pairs(prompts, completions)
    out = np.zeros(len(completions), dtype=np.float64)
    for i, c in enumerate(completions):
        if not isinstance(c, str):
            raise TypeError(f"completions[{i}] must be a str, got {type(c).__name__}")
        out[i] = float(_INTEGER.fullmatch(c.strip()) is not None)
    return out


def combine_rewards(reward_fns: Sequence[RewardFn], weights: Sequence[float] | None = None) -> RewardFn:
    """One reward callable r(q, o) = Σ_j w_j r_j(q, o) from several (TRL's `reward_funcs` with
    `reward_weights`; DeepSeek-R1's accuracy plus format reward).

    weights: one finite number per callable (default: all 1). Each component is checked on every call: it
    must return one finite number per completion, or the error names the component.
    The returned callable gives a float64 array [len(completions)].
    """
    if callable(reward_fns) or isinstance(reward_fns, str) or not isinstance(reward_fns, Sequence):
        raise TypeError(f"reward_fns must be a list of callables, got {type(reward_fns).__name__}")
    fns = list(reward_fns)
    if not fns:
        raise ValueError("reward_fns must hold at least one callable, got an empty list")
    for j, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"reward_fns[{j}] must be callable, got {type(fn).__name__}")
    w = [1.0] * len(fns) if weights is None else [float(x) for x in weights]
    if len(w) != len(fns):
        raise ValueError(f"weights must have one entry per reward function ({len(fns)}), got {len(w)}")
    if not all(math.isfinite(x) for x in w):
        raise ValueError(f"weights must be finite numbers, got {w}")

    def combined(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        prompts, completions = check_pairs(prompts, completions)
        total = np.zeros(len(completions), dtype=np.float64)
        for j, (fn, wj) in enumerate(zip(fns, w)):
            try:
                scores = compute_rewards(fn, prompts, completions)
            except ValueError as exc:
                raise type(exc)(f"reward_fns[{j}] ({getattr(fn, '__name__', fn)!r}): {exc}") from exc
            total += wj * scores.double().numpy()
        return total

    combined.__name__ = "+".join(f"{wj:g}*{getattr(fn, '__name__', 'reward')}" for fn, wj in zip(fns, w))
    return combined


def coin_flip_reward(p: float = 0.5, seed: int = 0) -> RewardFn:
    """A reward that carries no information: 1 with probability `p`, else 0, whatever the completion.

    The random-reward control of Shao et al., *Spurious rewards* (arXiv 2506.10947), who train GRPO on such
    rewards and attribute what changes to the clipped objective itself ("clipping bias") rather than to any
    signal. Whatever a run on it learns, the reward did not teach. Repeatable: the same `seed` gives the same
    sequence of coins over the calls of a run. Returns a callable with the trainer's signature, giving a
    float64 array [len(completions)].
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got {p!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rng = np.random.default_rng(seed)

    def coin_flip(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        prompts, completions = check_pairs(prompts, completions)
        return (rng.random(len(completions)) < p).astype(np.float64)

    return coin_flip


def pass_at_k(n, c, k: int) -> np.ndarray:
    """The unbiased pass@k estimate per problem (Chen et al., arXiv 2107.03374, eq. 1):

        pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i = n−c+1}^{n} (1 − k / i)

    from n samples of which c are correct. The product form avoids the huge binomials; it is exactly 1 when
    n − c < k (every choice of k samples contains a correct one).

    | argument | shape | meaning |
    |---|---|---|
    | n | [P] or scalar | samples drawn per problem (>= k) |
    | c | [P] or scalar | correct samples among them (0 <= c <= n) |
    | k | int | samples the metric is allowed |
    | returns | [P] float64 | the estimate for each problem (average them for the benchmark's pass@k) |
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    n_arr = np.atleast_1d(np.asarray(n))
    c_arr = np.atleast_1d(np.asarray(c))
    for name, arr in (("n", n_arr), ("c", c_arr)):
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must hold integers, got {arr.tolist()}")
    n_arr, c_arr = np.broadcast_arrays(n_arr.astype(np.int64), c_arr.astype(np.int64))
    if np.any(n_arr < k):
        raise ValueError(f"n must be at least k={k} for every problem, got n={n_arr.tolist()}")
    if np.any((c_arr < 0) | (c_arr > n_arr)):
        raise ValueError(f"c must be in [0, n] for every problem, got c={c_arr.tolist()} n={n_arr.tolist()}")
    out = np.ones(n_arr.shape, dtype=np.float64)
    for idx, (ni, ci) in enumerate(zip(n_arr.tolist(), c_arr.tolist())):
        if ni - ci >= k:
            i = np.arange(ni - ci + 1, ni + 1, dtype=np.float64)
            out[idx] = 1.0 - np.prod(1.0 - k / i)
    return out


@torch.no_grad()
def evaluate_pass_at_k(
    model,
    tokenizer,
    prompts: Sequence[str],
    verifier: RewardFn,
    n: int = 8,
    ks: Sequence[int] = (1, 8),
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 512,
    threshold: float = 1.0,
) -> dict:
    """Sample `n` responses to every held-out prompt and report pass@k for each k in `ks`.

    A response counts as correct when `verifier(prompts, responses)` scores it at least `threshold` (1.0
    for the exact-match `rlsurvey.tasks.arithmetic.verify`). Returns a dict with "pass@k" for every k
    (eq. 1 averaged over the prompts), "mean_length" (response tokens, EOS included, as the trainer counts
    them) and "n". The sampling uses its own seeded generator, so two calls on the same model agree and
    training's random stream is untouched.
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of str")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    ks = [ks] if isinstance(ks, int) else list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n for k in ks):
        raise ValueError(f"ks must be ints in [1, n={n}], got {ks}")
    batch = repeat_prompts(list(prompts), n)
    gen = generate(model, tokenizer, batch, max_new_tokens, temperature, seed=seed, batch_size=batch_size)
    scores = compute_rewards(verifier, batch, gen.texts).view(len(prompts), n)
    correct = (scores >= threshold).sum(1).numpy()
    out = {f"pass@{k}": float(pass_at_k(n, correct, k).mean()) for k in ks}
    out["mean_length"] = gen.response_mask.sum(1).float().mean().item()
    out["n"] = n
    return out


def make_pass_at_k_eval(prompts: Sequence[str], verifier: RewardFn, tokenizer, **kwargs) -> Callable:
    """An `eval_fn` for `train_grpo`: model -> `evaluate_pass_at_k(model, tokenizer, prompts, verifier,
    **kwargs)` (its history rows then carry "eval/pass@1", "eval/pass@k" and "eval/mean_length")."""
    prompts = list(prompts)
    return lambda model: evaluate_pass_at_k(model, tokenizer, prompts, verifier, **kwargs)


@torch.no_grad()
def evaluate_reasoning(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int = 1,
    ks: Sequence[int] = (),
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    per_prompt: bool = False,
) -> dict:
    """Sample `n` responses to every prompt of the reasoning world (`rlsurvey.tasks.reasoning`) and measure
    what chapter 12 plots: "accuracy" (the strict verifier, over all samples), "reasoning_share" (responses
    that open a reasoning block), "format_rate", "mean_length" (tokens, EOS included), "length_correct" and
    "length_wrong" (mean tokens of right and of wrong responses; NaN where there are none),
    "accuracy_when_reasoning" / "accuracy_when_direct", "eos_rate", and "pass@k" for each k in `ks` (eq. 1).
    With `per_prompt`, also "correct_per_prompt": the number of right samples of each prompt (an int array;
    leave it off in an `eval_fn`, whose values are logged as numbers). The sampling has its own seeded
    generator, so two calls on the same model agree."""
    from rlsurvey.tasks import reasoning

    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of str")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    ks = [ks] if isinstance(ks, int) else list(ks)
    if any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n for k in ks):
        raise ValueError(f"ks must be ints in [1, n={n}], got {ks}")
    batch = repeat_prompts(list(prompts), n)
    gen = generate(model, tokenizer, batch, max_new_tokens, temperature, seed=seed, batch_size=batch_size)
    right = reasoning.accuracy_reward(batch, gen.texts).astype(bool)
    thinks = np.array([reasoning.reasons(t) for t in gen.texts])
    length = gen.response_mask.sum(1).float().numpy()

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else math.nan

    out = {
        "accuracy": mean(right.astype(float)),
        "reasoning_share": mean(thinks.astype(float)),
        "format_rate": mean(reasoning.format_reward(batch, gen.texts)),
        "mean_length": mean(length),
        "length_correct": mean(length[right]),
        "length_wrong": mean(length[~right]),
        "accuracy_when_reasoning": mean(right[thinks].astype(float)),
        "accuracy_when_direct": mean(right[~thinks].astype(float)),
        "eos_rate": mean(gen.finished.float().numpy()),
        "n": n,
    }
    correct = right.reshape(len(prompts), n).sum(1)
    out.update({f"pass@{k}": float(pass_at_k(n, correct, k).mean()) for k in ks})
    if per_prompt:
        out["correct_per_prompt"] = correct
    return out
