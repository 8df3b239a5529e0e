"""Does clip-higher keep the policy's entropy up? DAPO's claim, tested in seven settings over 5 seeds.

DAPO (arXiv 2503.14476, section 3.1) raises only the upper bound of PPO's clip, ε_high = 0.28 with ε = 0.2
kept, and reports that the policy's entropy then stays higher instead of collapsing. Chapter 14 tests the
claim on the reasoning world with its own settings and does not find it. This script asks whether another
setting would have shown it: every run starts from a shipped base model and trains GRPO for 24 rollouts of
8 prompts x 8 responses, once with the symmetric clip and once with clip-higher, on the same seed, and
records the token entropy of the rollouts (the trainer's `entropy`, nats per token) over the last 5 steps.

The settings:

- `reasoning`: chapter 14's runs (reason-base, accuracy + 0.1 format, minibatches of 16: four updates per
  rollout, learning rate 3e-4);
- `reasoning-16-updates`: the same with four passes over each rollout (sixteen updates), so that the clip
  binds on about ten times more tokens;
- `reviews`: reviews-base on the reviews world's gold reward, a world with many equally good responses (any
  of the positive words scores), where promoting an unlikely token need not mean converging on one answer;
- `reasoning-coin-flip`: the reasoning world with a reward that is a fair coin (`coin_flip_reward`, the
  random-reward control of arXiv 2506.10947). Nothing can be learned from it, so whatever the two clips do
  differently comes from the clip itself, the "clipping bias" that paper describes, without the confound
  of one run learning faster than the other;
- `reasoning-lr-1e-3` and `reasoning-coin-flip-lr-1e-3`: the first and the last setting at a learning rate of
  1e-3 instead of 3e-4, where every update moves the policy further, so that the clip binds on about six times
  more tokens than in `reasoning` without more passes over each rollout;
- `reasoning-coin-flip-tight-clip`: the coin flip with a tighter lower bound, ε = 0.05 in both runs, so that
  the symmetric clip is ε = 0.05 on both sides and clip-higher is ε_low = 0.05 with DAPO's ε_high = 0.28. The
  clip then binds on several times more tokens, and with nothing to learn the only force that moves the
  entropy in one direction is the clip's asymmetry: an unlikely token with a positive advantage may climb by
  up to 28% per rollout, and one with a negative advantage fall by only 5%.

Printed and written to benchmarks/results/clip_higher_entropy.json: per run the entropy at step 1, at every
step and at the end, the training reward at the end and the share of clipped tokens; per setting the paired
difference clip-higher minus symmetric (mean ± standard error over seeds) and whether it is beyond two
standard errors.
Run from the repository root (about 14 minutes on 2 cores):

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/clip_higher_entropy.py             # all settings
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/clip_higher_entropy.py reviews     # some
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_file import chosen_names, write_merged

from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.lm import load_model
from rlsurvey.rewards.verifiable import coin_flip_reward, combine_rewards
from rlsurvey.stats import paired_mean_se
from rlsurvey.tasks import reasoning, reviews

SEEDS = (0, 1, 2, 3, 4)
EPS, EPS_HIGH = 0.2, 0.28  # DAPO's
LAST = 5  # the entropy "at the end": the mean over the last 5 rollouts
OUT = Path(__file__).parent / "results" / "clip_higher_entropy.json"
COMMON = dict(steps=24, prompts_per_step=8, group_size=8, mini_batch_size=16, learning_rate=3e-4,
              progress=False)  # fmt: skip


def _reasoning_reward(seed: int):
    return combine_rewards([reasoning.accuracy_reward, reasoning.format_reward], [1.0, 0.1])


def _reviews_reward(seed: int):
    return lambda prompts, completions: reviews.gold_reward(completions, prompts)


def _coin(seed: int):
    return coin_flip_reward(0.5, seed=seed)


# name -> (model, prompts, reward for a seed, GRPOConfig fields); fields may set clip_eps (ε_low, both runs)
SETTINGS = {
    "reasoning": ("reason-base", "reasoning", _reasoning_reward, dict(max_new_tokens=48)),
    "reasoning-16-updates": ("reason-base", "reasoning", _reasoning_reward,
                             dict(max_new_tokens=48, epochs_per_rollout=4)),
    "reviews": ("reviews-base", "reviews", _reviews_reward, dict(max_new_tokens=24)),
    "reasoning-coin-flip": ("reason-base", "reasoning", _coin, dict(max_new_tokens=48)),
    "reasoning-lr-1e-3": ("reason-base", "reasoning", _reasoning_reward,
                          dict(max_new_tokens=48, learning_rate=1e-3)),
    "reasoning-coin-flip-lr-1e-3": ("reason-base", "reasoning", _coin,
                                    dict(max_new_tokens=48, learning_rate=1e-3)),
    "reasoning-coin-flip-tight-clip": ("reason-base", "reasoning", _coin,
                                       dict(max_new_tokens=48, clip_eps=0.05)),
}  # fmt: skip
PROMPTS = {"reasoning": lambda: reasoning.sample_prompts(2000, seed=1),
           "reviews": lambda: reviews.sample_prompts(2000, seed=1)}  # fmt: skip


def run(setting: str, seed: int, clip_eps_high: float | None, base, tok, prompts) -> dict:
    _model, _world, reward_for, fields = SETTINGS[setting]
    torch.manual_seed(seed)
    policy = copy.deepcopy(base)
    cfg = GRPOConfig(**{**COMMON, "clip_eps": EPS, **fields, "seed": seed, "clip_eps_high": clip_eps_high})
    start = time.perf_counter()
    rows = train_grpo(policy, tok, prompts, reward_for(seed), cfg)
    return {
        "setting": setting, "seed": seed, "clip": "symmetric" if clip_eps_high is None else "clip-higher",
        "entropy_first": rows[0]["entropy"],
        "entropy_series": [round(r["entropy"], 5) for r in rows],
        "entropy_end": float(np.mean([r["entropy"] for r in rows[-LAST:]])),
        "reward_end": float(np.mean([r["reward"] for r in rows[-LAST:]])),
        "clip_ratio": float(np.mean([r["clip_ratio"] for r in rows])),
        "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def main_(names: list[str]) -> dict:
    rows, summary = [], {}
    for name in names:
        model, world, *_ = SETTINGS[name]
        base, tok = load_model(model)
        prompts = PROMPTS[world]()
        mine = []
        for seed in SEEDS:
            for high in (None, EPS_HIGH):
                row = run(name, seed, high, base, tok, prompts)
                mine.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "entropy_series"}), flush=True)
        rows += mine
        by = {c: [r for r in mine if r["clip"] == c] for c in ("symmetric", "clip-higher")}
        d, se = paired_mean_se(*[[r["entropy_end"] for r in by[c]] for c in ("clip-higher", "symmetric")])
        dr, ser = paired_mean_se(*[[r["reward_end"] for r in by[c]] for c in ("clip-higher", "symmetric")])
        summary[name] = {
            "eps": SETTINGS[name][3].get("clip_eps", EPS), "eps_high": EPS_HIGH,
            "entropy_end_symmetric": float(np.mean([r["entropy_end"] for r in by["symmetric"]])),
            "entropy_end_clip_higher": float(np.mean([r["entropy_end"] for r in by["clip-higher"]])),
            "entropy_difference": d, "entropy_difference_se": se,
            "reward_difference": dr, "reward_difference_se": ser,
            "clip_ratio_symmetric": float(np.mean([r["clip_ratio"] for r in by["symmetric"]])),
            "clip_higher_keeps_entropy_up": bool(d - 2 * se > 0),
        }  # fmt: skip
        s = summary[name]
        print(f"{name:22s} entropy at the end: symmetric {s['entropy_end_symmetric']:.4f}, clip-higher "
              f"{s['entropy_end_clip_higher']:.4f}; clip-higher minus symmetric {d:+.4f} ± {se:.4f} "
              f"({'beyond' if abs(d) > 2 * se else 'within'} 2 SE); training reward {dr:+.3f} ± {ser:.3f}; "
              f"clipped tokens {s['clip_ratio_symmetric']:.4f}", flush=True)  # fmt: skip
    machine = {"platform": platform.platform(), "torch": torch.__version__,
               "threads": torch.get_num_threads()}  # fmt: skip
    return {"machine": machine, "seeds": list(SEEDS), "eps": EPS, "eps_high": EPS_HIGH, "runs": rows,
            "summary": summary}  # fmt: skip


if __name__ == "__main__":
    chosen = chosen_names(sys.argv[1:], SETTINGS, "settings")
    result = main_(chosen)
    write_merged(OUT, result, chosen, SETTINGS, key="setting")
