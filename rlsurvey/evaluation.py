"""What a run learned, measured against a synthetic world's truth on prompts it never trained on.

A synthetic world knows its true reward: the reviews world's gold reward, the arithmetic and reasoning worlds'
strict verifiers. `evaluate_policy_on_world` samples one response per held-out prompt and reports that measure
with its standard error, the mean response length in tokens and, given the starting model, the KL to it
(Σ_t log π − log π_ref per response, averaged: the x-axis of the course's gold-against-KL plots).
`evaluate_reward_model_on_world` scores a reward model by its accuracy against the gold order on held-out
preference pairs.

Held-out prompts. Each world's prompt space is split once and for all by a hash of the prompt text: the
prompts with `zlib.crc32(prompt) % 5 == 0` (a fifth of them) are held out (`is_heldout`).
`training_prompts` and `training_pairs` drop them from training data, and `heldout_prompts` draws only
them, so training and evaluation never share a prompt. In the reviews world, whose prompts are 20
openings, that holds out five: "honestly , the restaurant was", "i found the book", "overall the book
was", "overall the phone was" and "the book was".
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "HELDOUT_SEED",
    "METRICS",
    "WORLDS",
    "compare_reports",
    "evaluate_policy_on_world",
    "evaluate_reward_model_on_world",
    "format_reports",
    "heldout_pairs",
    "heldout_prompts",
    "is_heldout",
    "training_pairs",
    "training_prompts",
]

WORLDS = ("reviews", "arithmetic", "reasoning", "tools")
METRICS = {
    "reviews": "gold reward",
    "arithmetic": "verifier accuracy",
    "reasoning": "verifier accuracy",
    "tools": "verifier accuracy",
}
HELDOUT_SEED = 10_007  # the sampling seed of held-out prompts and pairs, apart from any training seed
_SHARE = 5  # one prompt in _SHARE is held out


def _check_world(world: str) -> None:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {list(WORLDS)}, got {world!r}")


def is_heldout(prompt: str) -> bool:
    """True for the fifth of the prompt space kept out of training (a hash of the text, the same on every
    machine)."""
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}")
    return zlib.crc32(prompt.encode("utf-8")) % _SHARE == 0


def _sampler(world: str):
    from rlsurvey.tasks import arithmetic, reasoning, reviews, tools

    _check_world(world)
    worlds = {"reviews": reviews, "arithmetic": arithmetic, "reasoning": reasoning, "tools": tools}
    return worlds[world].sample_prompts


def heldout_prompts(world: str, n: int = 256, seed: int = HELDOUT_SEED, **kwargs) -> list[str]:
    """`n` prompts of `world` drawn from the held-out fifth only (repeats allowed, as in training); keyword
    arguments go to the world's `sample_prompts` (e.g. the reasoning world's operand counts)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    sample, out, attempt = _sampler(world), [], 0
    while len(out) < n:
        out += [p for p in sample(max(4 * n, 64), seed=seed + attempt, **kwargs) if is_heldout(p)]
        attempt += 1
    return out[:n]


def training_prompts(prompts: Sequence[str]) -> list[str]:
    """`prompts` without the held-out ones."""
    kept = [p for p in prompts if not is_heldout(p)]
    if not kept:
        raise ValueError("every prompt is held out; nothing is left to train on")
    return kept


def training_pairs(pairs):
    """A preference dataset (a 'prompt' column) without the rows whose prompt is held out."""
    keep = [i for i, p in enumerate(pairs["prompt"]) if not is_heldout(p)]
    if not keep:
        raise ValueError("every pair's prompt is held out; nothing is left to train on")
    return pairs.select(keep)


def heldout_pairs(n: int = 500, seed: int = HELDOUT_SEED):
    """`n` reviews preference pairs whose prompts are held out, with their gold rewards."""
    from rlsurvey.tasks import reviews

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rows, attempt = None, 0
    while rows is None or len(rows) < n:
        more = reviews.make_preferences(4 * n, seed=seed + attempt)
        more = more.select([i for i, p in enumerate(more["prompt"]) if is_heldout(p)])
        rows = more if rows is None else _concat(rows, more)
        attempt += 1
    return rows.select(range(n))


def _concat(a, b):
    from datasets import concatenate_datasets

    return concatenate_datasets([a, b])


def _mean_se(values) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), se


def _truth(world: str):
    from rlsurvey.tasks import arithmetic, reasoning, reviews, tools

    if world == "reviews":
        return lambda prompts, completions: reviews.gold_reward(completions, prompts)
    return {"arithmetic": arithmetic.verify, "reasoning": reasoning.accuracy_reward,
            "tools": tools.accuracy_reward}[world]  # fmt: skip


@torch.no_grad()
def evaluate_policy_on_world(
    model,
    tokenizer,
    world: str,
    prompts: Sequence[str] | None = None,
    reference=None,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
    env=None,
) -> dict:
    """One sampled response per prompt (default: 256 held-out prompts), scored by the world's truth; in the
    tools world, one episode with the calculator (`rlsurvey.algos.multiturn.collect_episodes` with `env`,
    by default a `CalculatorEnv()`), its length and KL counting the policy's tokens only.

    Returns a JSON-ready dict: world, metric ("gold reward" or "verifier accuracy"), n, mean and se of that
    measure, length and length_se (response tokens), kl and kl_se (None without `reference`), and `values`,
    the per-prompt measure, so that two reports on the same prompts can be compared pair by pair.
    """
    from rlsurvey.algos.rollout import collect_rollout

    _check_world(world)
    if world == "tools":
        from rlsurvey.algos.multiturn import collect_episodes
        from rlsurvey.tasks.tools import CalculatorEnv

        collect_rollout = functools.partial(collect_episodes, env=CalculatorEnv() if env is None else env)
    elif env is not None:
        raise ValueError(f"env is for the tools world's episodes; the {world} world has none")
    prompts = heldout_prompts(world) if prompts is None else list(prompts)
    if not prompts:
        raise ValueError("no prompts to evaluate on")
    roll = collect_rollout(
        model, tokenizer, prompts, _truth(world), reference, max_new_tokens, temperature, seed=seed,
        score_policy=reference is not None,
    )  # fmt: skip
    values = roll.scores.double().cpu().numpy()
    lengths = roll.mask.sum(1).double().cpu().numpy()
    mean, se = _mean_se(values)
    length, length_se = _mean_se(lengths)
    out = {"world": world, "metric": METRICS[world], "n": len(prompts), "mean": mean, "se": se,
           "length": length, "length_se": length_se, "kl": None, "kl_se": None}  # fmt: skip
    if reference is not None:
        kl = ((roll.logprobs - roll.ref_logprobs) * roll.mask).sum(1).double().cpu().numpy()
        out["kl"], out["kl_se"] = _mean_se(kl)
    out["values"] = values.tolist()
    return out


@torch.no_grad()
def evaluate_reward_model_on_world(reward_model, pairs=None) -> dict:
    """A reward model's accuracy against the gold order on held-out reviews pairs (default: 500), pairs with
    equal gold rewards left out, with its binomial standard error."""
    pairs = heldout_pairs() if pairs is None else pairs
    prompts = list(pairs["prompt"])
    chosen = reward_model.score(prompts, list(pairs["chosen"])).double().cpu().numpy()
    rejected = reward_model.score(prompts, list(pairs["rejected"])).double().cpu().numpy()
    gold_c, gold_r = np.asarray(pairs["gold_chosen"]), np.asarray(pairs["gold_rejected"])
    decided = gold_c != gold_r
    if not decided.any():
        raise ValueError("every pair has equal gold rewards: nothing to rank")
    right = ((chosen > rejected) == (gold_c > gold_r))[decided].astype(np.float64)
    acc = float(right.mean())
    return {"world": "reviews", "metric": "pair accuracy against gold", "n": int(decided.sum()), "mean": acc,
            "se": math.sqrt(acc * (1 - acc) / decided.sum()), "values": right.tolist()}  # fmt: skip


def compare_reports(before: dict, after: dict) -> dict:
    """after − before for the measure: paired by prompt when both reports scored the same prompts (the
    standard error of the per-prompt differences), else as independent means."""
    if before["metric"] != after["metric"]:
        raise ValueError(f"cannot compare {before['metric']!r} with {after['metric']!r}")
    a, b = np.asarray(after["values"]), np.asarray(before["values"])
    if len(a) == len(b) and len(a) > 1:
        diff, se = _mean_se(a - b)
        paired = True
    else:
        diff, se, paired = after["mean"] - before["mean"], math.hypot(after["se"], before["se"]), False
    if se and se > 0:
        ratio = diff / se
    else:  # no spread at all: an exact change is infinitely many standard errors, no change is none
        ratio = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return {"metric": after["metric"], "change": diff, "se": se, "paired": paired,
            "standard_errors": ratio}  # fmt: skip


def _cell(mean, se, fmt=".3f") -> str:
    if mean is None:
        return "-"
    return f"{mean:{fmt}} ± {se:{fmt}}" if se is not None and math.isfinite(se) else f"{mean:{fmt}}"


def format_reports(reports: dict[str, dict]) -> str:
    """A plain-text table of several reports (name -> report), one row each."""
    if not reports:
        raise ValueError("no reports to format")
    metric = {r["metric"] for r in reports.values()}
    if len(metric) > 1:
        raise ValueError(f"reports measure different things: {sorted(metric)}")
    (metric,) = metric
    width = max(len("model"), *(len(k) for k in reports))
    head = f"{'model':<{width}}  {metric:>17}  {'length (tokens)':>15}  {'KL to start (nats)':>18}  {'n':>5}"
    rows = [head, "-" * len(head)]
    for name, r in reports.items():
        length = _cell(r.get("length"), r.get("length_se"), ".1f")
        kl = _cell(r.get("kl"), r.get("kl_se"), ".2f")
        rows.append(f"{name:<{width}}  {_cell(r['mean'], r['se']):>17}  {length:>15}  {kl:>18}  {r['n']:>5}")
    return "\n".join(rows)
