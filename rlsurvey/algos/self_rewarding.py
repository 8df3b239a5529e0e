"""Self-rewarding LMs: the policy labels its own samples, then learns from them by DPO (survey 5.3).

Yuan et al. (Self-Rewarding Language Models, arXiv 2401.10020, section 2) iterate a model M_t:

1. sample N responses to each prompt from M_t;
2. let M_t itself, prompted as a judge, score them;
3. pair the best with the worst response of each prompt (dropping ties) and train M_{t+1} from M_t on those
   pairs with DPO, with M_t as the reference.

The loop only improves if the model's judgement is better than its generation, so that its preferences point
uphill. A judge that is no better than chance turns the loop into a random walk, and a judge with a blind spot
(say, it likes repetition) gets that blind spot amplified round after round. This module reports, per round,
how often the self-judge agreed with a reference reward (the gold reward of a synthetic world), so a reader
can see which of those cases they are in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from datasets import Dataset

from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer
from rlsurvey.algos.iterative_dpo import with_token_ids
from rlsurvey.algos.rollout import RewardFn, compute_rewards, repeat_prompts
from rlsurvey.checks import check_fields
from rlsurvey.config_compat import renamed_fields
from rlsurvey.lm.generation import generate
from rlsurvey.progress import tqdm

__all__ = ["SelfRewardingConfig", "best_worst_pairs", "self_rewarding"]


@renamed_fields(min_score_gap="min_reward_gap")
@dataclass
class SelfRewardingConfig:
    rounds: int = 3  # iterations M_0 -> M_1 -> ... (the paper runs 3)
    prompts_per_round: int = 64  # fresh prompts sampled each round
    samples_per_prompt: int = 4  # N responses per prompt scored by the self-judge
    max_new_tokens: int = 24  # generation budget
    temperature: float = 1.0  # sampling temperature of the candidates
    min_reward_gap: float = 0.0  # drop prompts whose best and worst judge scores differ by no more than this
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(beta=0.1, learning_rate=5e-4, num_epochs=2.0))
    seed: int = 0  # prompt order and sampling
    progress: bool = True  # show a progress bar over rounds

    def __post_init__(self):
        if not isinstance(self.dpo, DPOConfig):
            raise TypeError(f"dpo must be a DPOConfig, got {type(self.dpo).__name__}")
        check_fields(self, {
            "rounds": "int>=1", "prompts_per_round": "int>=1", "samples_per_prompt": "int>=2",
            "max_new_tokens": "int>=1", "temperature": ">0",
        })  # fmt: skip


def best_worst_pairs(prompts: Sequence[str], completions: Sequence[str], scores: torch.Tensor, group: int,
                     min_gap: float = 0.0) -> list[dict]:  # fmt: skip
    """For each group of `group` consecutive completions of one prompt, the (best, worst) pair by `scores`.

    Groups whose best and worst are the same text, or whose scores differ by at most `min_gap`, give no pair.
    Returns rows {"prompt", "chosen", "rejected", "score_gap", "index_chosen", "index_rejected"} (the
    indices of the two completions, to find their sampled token ids).
    """
    if len(prompts) != len(completions) or len(completions) != len(scores) or len(scores) % group:
        raise ValueError(
            f"prompts ({len(prompts)}), completions ({len(completions)}) and scores ({len(scores)}) must "
            f"have one length, a multiple of group={group}"
        )
    rows = []
    for start in range(0, len(scores), group):
        s = scores[start : start + group]
        hi, lo = start + int(s.argmax()), start + int(s.argmin())
        gap = float(scores[hi] - scores[lo])
        if gap <= min_gap or completions[hi] == completions[lo] or not completions[hi] or not completions[lo]:
            continue
        rows.append({"prompt": prompts[hi], "chosen": completions[hi], "rejected": completions[lo],
                     "score_gap": gap, "index_chosen": hi, "index_rejected": lo})  # fmt: skip
    return rows


def self_rewarding(
    policy,
    tokenizer,
    prompts: Sequence[str],
    make_judge: Callable[[torch.nn.Module], RewardFn],
    config: SelfRewardingConfig | None = None,
    reference_reward: RewardFn | None = None,
    reference_prompts: Sequence[str] | None = None,
) -> list[dict]:
    """Run `config.rounds` rounds of self-rewarding DPO on `policy` (in place); returns one dict per round.

    make_judge: builds the judge from the current policy, e.g. `lambda m: LMJudge(m, tokenizer, ...)`; a
    judge is any reward function `(prompts, completions) -> scores` (an `rlsurvey.rewards.judges.Judge` is).
    reference_reward: an outside measure (the gold reward) used only for reporting: its mean on the model
    M_t's responses to a fixed set of prompts at the start of each round and after the last, and the
    fraction of each round's pairs on which the self-judge agrees with it.
    reference_prompts: the fixed prompts of that measurement (default: the first `prompts_per_round` of the
    pool). A mean over a few dozen samples has a standard error near 0.1 in the reviews world, so pass a few
    hundred held-out prompts to measure a change of that size. Each round's entry also carries
    "reference_reward_se", the standard error of that mean over prompts.
    """
    c = config or SelfRewardingConfig()
    if c.rounds < 1 or c.samples_per_prompt < 2:
        raise ValueError(
            f"need rounds >= 1 and samples_per_prompt >= 2, got {c.rounds} and {c.samples_per_prompt}"
        )
    pool = list(prompts)
    if not pool:
        raise ValueError("prompts is empty")
    rng = random.Random(c.seed)
    eval_prompts = pool[: c.prompts_per_round] if reference_prompts is None else list(reference_prompts)
    if not eval_prompts:
        raise ValueError("reference_prompts is empty")

    def measured() -> dict:  # the reference reward of the current model on fixed prompts, with its SE
        gen = generate(policy, tokenizer, eval_prompts, c.max_new_tokens, c.temperature, seed=c.seed + 7)
        r = compute_rewards(reference_reward, gen.prompts, gen.texts).double()
        se = (r.std() / len(r) ** 0.5).item() if len(r) > 1 else float("nan")
        return {"reference_reward": r.mean().item(), "reference_reward_se": se}

    history = []
    for r in tqdm(range(c.rounds), desc="self-rewarding rounds", disable=not c.progress):
        batch = repeat_prompts(rng.sample(pool, min(c.prompts_per_round, len(pool))), c.samples_per_prompt)
        gen = generate(policy, tokenizer, batch, c.max_new_tokens, c.temperature, seed=rng.randrange(2**31))
        judge = make_judge(policy)
        scores = compute_rewards(judge, batch, gen.texts)
        rows = best_worst_pairs(batch, gen.texts, scores, c.samples_per_prompt, c.min_reward_gap)
        entry = {"round": r, "pairs": len(rows), "judge_score": scores.mean().item()}
        if reference_reward is not None:
            entry.update(measured())
            if rows:
                prompts_r = [x["prompt"] for x in rows]
                g_ch = compute_rewards(reference_reward, prompts_r, [x["chosen"] for x in rows])
                g_rj = compute_rewards(reference_reward, prompts_r, [x["rejected"] for x in rows])
                decided = g_ch != g_rj
                entry["judge_gold_agreement"] = (g_ch > g_rj)[decided].float().mean().item()
                entry["judge_gold_decided"] = int(decided.sum())  # pairs whose reference rewards differ
        if rows:
            # the sampled token ids, as iterative DPO does: DPO scores exactly what the policy wrote, with EOS
            # only where it stopped by itself (re-tokenized text with add_eos would end every response)
            pairs = with_token_ids(Dataset.from_list(rows), gen)
            trainer = DPOTrainer(policy, tokenizer, pairs, c.dpo)  # reference: M_t itself
            trainer.train()
            entry["dpo_loss"] = trainer.history[-1]["loss"]
            entry["dpo_accuracy"] = trainer.history[-1].get("rewards/accuracies", float("nan"))
        history.append(entry)
    if reference_reward is not None:  # the final model, after the last round's update
        history.append({"round": c.rounds, **measured()})
    return history
