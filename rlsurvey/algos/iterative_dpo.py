"""Online (iterative) DPO: sample from the current policy, label the samples, train on the pairs, repeat.

Survey sections 7 and 8 of arXiv 2412.10400. Offline DPO learns from pairs some other policy wrote; the
pairs go stale as soon as the policy moves. Iterative preference learning (Xiong et al., arXiv 2312.11456)
closes the loop: each round the policy answers fresh prompts, a reward model or judge picks the best and
the worst of n answers, and DPO trains on those on-policy pairs with the KL anchor kept on the initial
model. sDPO (Kim et al., arXiv 2403.19270) goes round by round too, and uses the model of the previous round
as the reference of the next, so each round only moves a short distance from a policy that is already
aligned. Self-rewarding LMs (arXiv 2401.10020) are the same loop with the policy as its own judge.

One round (`iterative_dpo`):

    1. x_1..x_m ~ the next prompts;  y_i1..y_in ~ π_t(·|x_i)          (rlsurvey.lm.generate)
    2. r_ij = reward(x_i, y_ij), or a pairwise judge for n = 2        (labels)
    3. pair (x_i, y_i,best, y_i,worst) when r_best − r_worst > min_reward_gap
    4. π_{t+1} = DPO(π_t; pairs, reference = π_0 ("initial") or π_t ("previous", sDPO))
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np

from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer
from rlsurvey.algos.rollout import RewardFn, compute_rewards, repeat_prompts
from rlsurvey.checks import check_fields
from rlsurvey.lm.generation import generate
from rlsurvey.progress import tqdm

__all__ = ["IterativeDPOConfig", "best_worst_pairs", "iterative_dpo", "judge_pairs", "with_token_ids"]

JudgeFn = Callable[[Sequence[str], Sequence[str], Sequence[str]], Sequence[float]]


@dataclass
class IterativeDPOConfig:
    rounds: int = 3  # sample-label-train rounds
    prompts_per_round: int = 64  # fresh prompts answered by the policy each round
    samples_per_prompt: int = 4  # n answers per prompt; best and worst form the pair (2 with a judge)
    max_new_tokens: int = 32  # longest sampled answer, in tokens
    temperature: float = 1.0  # sampling temperature of the answers
    reference: str = "initial"  # "initial": KL anchor on π_0 (2312.11456); "previous": π_t (sDPO, 2403.19270)
    min_reward_gap: float = 0.0  # keep a pair only if its reward gap exceeds this (ties teach nothing)
    dpo: DPOConfig = field(default_factory=DPOConfig)  # how each round trains (one trainer per round)
    seed: int = 0  # seeds prompt order and sampling
    progress: bool = True  # progress bar over rounds

    def __post_init__(self):
        for name in ("rounds", "prompts_per_round", "samples_per_prompt", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"samples_per_prompt must be at least 2 to form a pair, got {self.samples_per_prompt}"
            )
        if self.reference not in ("initial", "previous"):
            raise ValueError(f"reference must be 'initial' or 'previous', got {self.reference!r}")
        if not isinstance(self.dpo, DPOConfig):
            raise TypeError(f"dpo must be a DPOConfig, got {type(self.dpo).__name__}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (pairs need distinct samples), got {self.temperature}")
        check_fields(self, {
            "rounds": "int>=1", "prompts_per_round": "int>=1", "samples_per_prompt": "int>=2",
            "max_new_tokens": "int>=1", "temperature": ">0",
        })  # fmt: skip


def best_worst_pairs(
    prompts: Sequence[str], completions: Sequence[str], scores, n: int, min_gap: float = 0.0
):
    """Preference pairs from groups of n answers: per prompt, the best-scored answer is chosen and the worst
    rejected. Groups are consecutive (prompt i owns completions[i*n:(i+1)*n]). Pairs whose gap is <= min_gap
    or whose two texts are equal are dropped. Returns a `datasets.Dataset`: prompt, chosen, rejected,
    score_chosen, score_rejected, and index_chosen / index_rejected (positions in `completions`).

    | argument    | shape  | meaning                          |
    |-------------|--------|----------------------------------|
    | prompts     | [m]    | one prompt per group             |
    | completions | [m n]  | the answers, grouped by prompt   |
    | scores      | [m n]  | reward of each answer            |
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(completions) != len(prompts) * n or s.shape != (len(completions),):
        raise ValueError(
            f"completions and scores must have len(prompts) * n = {len(prompts) * n} entries, "
            f"got {len(completions)} and {s.size}"
        )
    picks = []
    for i in range(len(prompts)):
        g = s[i * n : (i + 1) * n]
        best, worst = i * n + int(g.argmax()), i * n + int(g.argmin())
        if s[best] - s[worst] > min_gap and completions[best] != completions[worst]:
            picks.append((i, best, worst, s[best], s[worst]))
    return _pairs(prompts, completions, picks)


def _pairs(prompts, completions, picks) -> datasets.Dataset:
    cols = (
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "index_chosen",
        "index_rejected",
    )
    rows = [
        (prompts[i], completions[w], completions[lo], float(sw), float(sl), w, lo)
        for i, w, lo, sw, sl in picks
    ]
    return datasets.Dataset.from_dict({k: [r[j] for r in rows] for j, k in enumerate(cols)})


def judge_pairs(prompts: Sequence[str], completions: Sequence[str], judge: JudgeFn) -> datasets.Dataset:
    """Pairs labelled by a pairwise judge. completions holds two answers per prompt (positions 2i and 2i+1);
    judge(prompts, a, b) returns P(a is better), or a bool, per prompt. a is chosen above 1/2, b below;
    ties and equal texts are dropped. Same columns as `best_worst_pairs` (scores: the judge's confidence)."""
    a, b = list(completions[0::2]), list(completions[1::2])
    if len(a) != len(prompts) or len(b) != len(prompts):
        raise ValueError(
            f"completions must hold 2 answers per prompt ({2 * len(prompts)}), got {len(completions)}"
        )
    p = np.asarray(list(judge(list(prompts), a, b)), dtype=np.float64)
    if p.shape != (len(prompts),) or not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"judge must return {len(prompts)} probabilities in [0, 1], got {p.tolist()!r}")
    picks = [(i, 2 * i + (q < 0.5), 2 * i + (q > 0.5), max(q, 1 - q), min(q, 1 - q))
             for i, q in enumerate(p) if q != 0.5 and a[i] != b[i]]  # fmt: skip
    return _pairs(prompts, completions, picks)


def with_token_ids(pairs: datasets.Dataset, gen) -> datasets.Dataset:
    """Add the exact sampled tokens (prompt_ids, chosen_ids, rejected_ids), so DPO scores what the policy
    wrote, EOS only where it stopped by itself, instead of re-tokenized text."""

    def ids(tensor, mask, rows):
        return [tensor[j][mask[j].bool()].tolist() for j in rows]

    ch, rj = pairs["index_chosen"], pairs["index_rejected"]
    pid, pm, rid, rm = (
        t.cpu() for t in (gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask)
    )
    return (pairs.add_column("prompt_ids", ids(pid, pm, ch)).add_column("chosen_ids", ids(rid, rm, ch))
            .add_column("rejected_ids", ids(rid, rm, rj)))  # fmt: skip


def iterative_dpo(model, tokenizer, prompts: Sequence[str], config: IterativeDPOConfig | None = None,
                  reward_fn: RewardFn | None = None, judge: JudgeFn | None = None,
                  eval_fn: Callable[[object], dict] | None = None) -> list[dict]:  # fmt: skip
    """Run `config.rounds` rounds of online DPO on `model` (in place); returns one dict per round.

    prompts: the pool; each round takes the next `prompts_per_round` of a seeded shuffle (a new shuffle once
    the pool is used up). Label with `reward_fn(prompts, completions) -> scores` (best against worst of n) or
    `judge(prompts, a, b) -> P(a better)` (n must be 2). eval_fn(model) -> dict is called before the first
    round (entry "round" 0) and after each round. Each entry holds the round's sample statistics
    (sample_reward: mean score of the policy's own answers as it entered the round, pairs, length) and the
    last DPO metrics (loss, rewards/accuracies, rewards/margins), plus eval_fn's keys.
    """
    c = IterativeDPOConfig() if config is None else config
    if (reward_fn is None) == (judge is None):
        given = [name for name, f in (("reward_fn", reward_fn), ("judge", judge)) if f is not None]
        raise ValueError(
            f"give exactly one of reward_fn (best vs worst of n) and judge (pairwise), got {given}"
        )
    if judge is not None and c.samples_per_prompt != 2:
        raise ValueError(f"a pairwise judge needs samples_per_prompt=2, got {c.samples_per_prompt}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must be a non-empty list of str, got an empty list")
    initial = copy.deepcopy(model).requires_grad_(False).eval() if c.reference == "initial" else None
    rng = np.random.default_rng(c.seed)
    order, cursor = rng.permutation(len(prompts)), 0
    history = [{"round": 0, **eval_fn(model)}] if eval_fn else []
    for rnd in tqdm(range(1, c.rounds + 1), desc="iterative DPO", disable=not c.progress):
        batch = []
        while len(batch) < c.prompts_per_round:
            if cursor == len(order):
                order, cursor = rng.permutation(len(prompts)), 0
            take = order[cursor : cursor + c.prompts_per_round - len(batch)]
            batch += [prompts[j] for j in take]
            cursor += len(take)
        gen = generate(model, tokenizer, repeat_prompts(batch, c.samples_per_prompt), c.max_new_tokens,
                       c.temperature, seed=c.seed + rnd)  # fmt: skip
        if reward_fn is not None:
            scores = compute_rewards(reward_fn, gen.prompts, gen.texts).numpy()
            pairs = best_worst_pairs(gen.prompts[0 :: c.samples_per_prompt], gen.texts, scores,
                                     c.samples_per_prompt, c.min_reward_gap)  # fmt: skip
            sample_reward = float(scores.mean())
        else:
            pairs, sample_reward = judge_pairs(gen.prompts[0::2], gen.texts, judge), float("nan")
        pairs = with_token_ids(pairs, gen)
        entry = {"round": rnd, "sample_reward": sample_reward, "pairs": len(pairs),
                 "length": float(gen.response_mask.sum(-1).float().mean())}  # fmt: skip
        if len(pairs):
            dpo = dataclasses.replace(c.dpo, seed=c.dpo.seed + rnd, progress=False)
            trainer = DPOTrainer(model, tokenizer, pairs, dpo, ref_model=initial)
            last = trainer.train()[-1]
            entry.update({k: last[k] for k in ("loss", "rewards/accuracies", "rewards/margins") if k in last})
        if eval_fn:
            entry.update(eval_fn(model))
        history.append(entry)
    return history
