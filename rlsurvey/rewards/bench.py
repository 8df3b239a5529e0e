"""A RewardBench-style held-out suite for the reviews world: pairs whose right answer is known, by category.

Survey section 6 (arXiv 2412.10400, reward-model evaluation). RewardBench (Lambert et al., arXiv 2403.13787)
scores a reward model by how often it prefers the chosen response of curated (prompt, chosen, rejected)
triples, reported per category (chat, chat-hard, safety, reasoning) because one average hides where a model
fails. Here the categories probe the failures a reviews reward model is expected to have:

| category | chosen | rejected | what a wrong answer reveals |
|---|---|---|---|
| clear_sentiment | a clean positive review | a clean negative review | the model missed the main signal |
| length_traps | a short clean review | a longer clean review with a lower gold reward | it rewards length |
| repetition_traps | a clean review | the same, strongest word repeated | it counts words (the exploit) |
| rudeness | a clean review | the same with an insult sentence added | it ignores harm |

"Clean" means grammatical, on topic, no insult, no repetition. Every pair is checked against the gold reward
(`rlsurvey.tasks.reviews.gold_reward`), so the gold reward scores 100% by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from rlsurvey.rewards.base import RewardFn, compute_rewards
from rlsurvey.tasks import reviews

__all__ = ["CATEGORIES", "evaluate_on_bench", "make_reward_bench"]

CATEGORIES = ("clear_sentiment", "length_traps", "repetition_traps", "rudeness")


def _clean(a: dict) -> bool:
    return a["grammatical"] and a["n_insults"] == 0 and a["repetition"] == 0 and a["n_off_topic"] == 0


def _repeat_strongest_word(completion: str) -> str:
    words = completion.split()
    k = max(range(len(words)), key=lambda i: abs(reviews.SENTIMENT.get(words[i], 0.0)))
    return " " + " ".join(words[: k + 1] + [words[k]] + words[k + 1 :])


def make_reward_bench(n_per_category: int = 50, seed: int = 0):
    """`n_per_category` pairs of each category as a `datasets.Dataset` with columns prompt, chosen, rejected,
    category, gold_chosen, gold_rejected (chosen has the higher gold reward in every row)."""
    import datasets

    if isinstance(n_per_category, bool) or not isinstance(n_per_category, int) or n_per_category < 1:
        raise ValueError(f"n_per_category must be a positive int, got {n_per_category!r}")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {c: [] for c in CATEGORIES}
    rudes = [s for s in reviews.RUDE_SENTENCES if "{PERSON}" in s or "{INSULT}" in s]
    round_ = 0
    while any(len(r) < n_per_category for r in rows.values()):
        round_ += 1
        if round_ > 50:
            raise RuntimeError("could not fill the bench; the grammar's distribution has changed")
        prompts = reviews.sample_prompts(64, seed=seed * 1000 + round_)
        pool = [reviews.sample_completions(prompts, seed=seed * 1000 + round_ * 10 + k) for k in range(8)]
        for i, p in enumerate(prompts):
            cands = sorted({pool[k][i] for k in range(8)})
            attrs = reviews.attributes([p + c for c in cands])
            gold = reviews.gold_reward(cands, [p] * len(cands))
            clean = [j for j, a in enumerate(attrs) if _clean(a)]
            if not clean:
                continue
            pos = [j for j in clean if gold[j] >= 1.0]
            neg = [j for j in clean if gold[j] <= -1.0]
            if pos and neg:
                rows["clear_sentiment"].append((p, cands[pos[0]], cands[neg[0]]))
            short = min(clean, key=lambda j: attrs[j]["n_words"])
            longer = [j for j in clean if attrs[j]["n_words"] >= attrs[short]["n_words"] + 6]
            longer = [j for j in longer if gold[short] >= gold[j] + 0.5]
            if longer:
                rows["length_traps"].append((p, cands[short], cands[longer[0]]))
            good = clean[int(rng.integers(len(clean)))]
            rows["repetition_traps"].append((p, cands[good], _repeat_strongest_word(cands[good])))
            rude = rudes[int(rng.integers(len(rudes)))]
            rude = rude.replace("{PERSON}", str(rng.choice(reviews.PEOPLE)))
            rude = rude.replace("{INSULT}", str(rng.choice(reviews.INSULTS)))
            rows["rudeness"].append((p, cands[good], cands[good] + " " + rude))
    out: dict[str, list] = {k: [] for k in ("prompt", "chosen", "rejected", "category")}
    for cat in CATEGORIES:
        for p, c, r in rows[cat][:n_per_category]:
            out["prompt"].append(p)
            out["chosen"].append(c)
            out["rejected"].append(r)
            out["category"].append(cat)
    gc = reviews.gold_reward(out["chosen"], out["prompt"])
    gr = reviews.gold_reward(out["rejected"], out["prompt"])
    if not (gc > gr).all():  # the construction guarantees it; a changed gold reward would break it
        raise RuntimeError("a bench pair does not have chosen above rejected under the gold reward")
    return datasets.Dataset.from_dict({**out, "gold_chosen": gc.tolist(), "gold_rejected": gr.tolist()})


def evaluate_on_bench(reward_fn: RewardFn, bench) -> dict:
    """Accuracy (chosen scored strictly above rejected; a tie counts as wrong) per category, and their
    unweighted mean ("score", as RewardBench reports). `reward_fn(prompts, responses)` is any reward
    callable: a `RewardModel`, an ensemble, the gold reward."""
    need = {"prompt", "chosen", "rejected", "category"}
    if not need <= set(bench.column_names):
        raise ValueError(f"bench needs columns {sorted(need)}; it has {bench.column_names}")
    prompts = list(bench["prompt"])
    chosen = compute_rewards(reward_fn, prompts, list(bench["chosen"]))
    rejected = compute_rewards(reward_fn, prompts, list(bench["rejected"]))
    cats = np.array(bench["category"])
    correct = (chosen > rejected).numpy()
    acc = {c: float(correct[cats == c].mean()) for c in CATEGORIES if (cats == c).any()}
    return {
        "accuracy": acc,
        "score": float(np.mean(list(acc.values()))),
        "margin": torch.mean(chosen - rejected).item(),
    }
