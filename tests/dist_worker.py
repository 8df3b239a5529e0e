"""A short run of each trainer, for tests/test_distributed.py: run in the test's own process (one process)
and under a launcher on two CPU processes (`python -m torch.distributed.run --nproc_per_node 2 -m
tests.dist_worker OUT_DIR`). Each run returns its per-step losses and final parameters; the launched
processes write them to OUT_DIR/<trainer>-rank<r>.{json,safetensors}."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets
import torch

from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer
from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig, RLHFPPOTrainer, value_model_from_policy
from rlsurvey.rewards.bradley_terry import RewardTrainingConfig, train_reward_model
from rlsurvey.rewards.reward_model import _head
from tests.conftest import tiny_causal_lm

PROMPTS = [
    "the film was",
    "a",
    "the food was good and",
    "it",
    "the plot",
    "we saw",
    "my day",
    "ok then",
    "so",
]
CHOSEN = [
    " great.",
    " fine film!",
    " cheap.",
    " works well",
    " was clever.",
    " a show",
    " went well",
    " yes",
    "!",
]
REJECTED = [
    " bad",
    " dull film, really.",
    " slow",
    " broke",
    " made no sense",
    " nothing?",
    " no",
    " meh",
    " .",
]


def pairs(n: int = 9) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"prompt": PROMPTS[:n], "chosen": CHOSEN[:n], "rejected": REJECTED[:n]})


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def run_dpo(distributed: bool | None = None) -> tuple[list[float], dict]:
    """4 steps of DPO, global batch 4 x 2 accumulated micro-batches, shuffled: per-step loss and gradient norm
    (the norm catches a wrongly scaled gradient, which AdamW's steps would hide), and the parameters."""
    model, tok = tiny_causal_lm("llama", seed=0)
    cfg = DPOConfig(
        batch_size=4, gradient_accumulation_steps=2, max_steps=4, learning_rate=1e-3, progress=False,
        distributed=distributed, seed=1,
    )  # fmt: skip
    history = DPOTrainer(model, tok, pairs(8), cfg).train()
    return [h[k] for h in history for k in ("loss", "grad_norm")], _params(model)


def run_reward_model(distributed: bool | None = None) -> tuple[list[float], dict]:
    """2 epochs of Bradley-Terry on 9 pairs in batches of 4 (the last batch has one pair, so on two processes
    one of them has none): per-step loss and gradient norm, and the parameters."""
    policy, tok = tiny_causal_lm("llama", seed=0)
    model = value_model_from_policy(policy, tok)
    torch.manual_seed(2)
    torch.nn.init.normal_(_head(model.model).weight, std=0.2)
    cfg = RewardTrainingConfig(
        batch_size=4, num_epochs=2, learning_rate=1e-3, progress=False, distributed=distributed
    )
    history = train_reward_model(model, pairs(9), cfg)
    return [h[k] for h in history for k in ("loss", "grad_norm")], _params(model)


def run_ppo(distributed: bool | None = None) -> tuple[list[float], dict]:
    """2 PPO steps of 4 prompts: total losses (policy + value) and policy parameters."""
    policy, tok = tiny_causal_lm("llama", seed=1)
    cfg = RLHFPPOConfig(
        steps=2, batch_size=4, num_mini_batches=1, epochs_per_rollout=2, max_new_tokens=5, progress=False,
        seed=3, distributed=distributed,
    )  # fmt: skip
    trainer = RLHFPPOTrainer(policy, tok, lambda p, c: [len(x) / 3 for x in c], cfg)
    history = trainer.train(PROMPTS[:4])
    return [h["loss/policy_avg"] + h["loss/value_avg"] for h in history], _params(policy)


def run_grpo(distributed: bool | None = None) -> tuple[list[float], dict]:
    """2 GRPO steps of 2 prompts x 4 responses: losses and policy parameters."""
    policy, tok = tiny_causal_lm("llama", seed=2)
    cfg = GRPOConfig(
        steps=2, prompts_per_step=2, group_size=4, max_new_tokens=3, learning_rate=1e-2, progress=False,
        distributed=distributed,
    )  # fmt: skip
    history = train_grpo(policy, tok, PROMPTS, lambda p, c: [float(c.count("a")) for c in c], cfg)
    return [h["loss"] for h in history], _params(policy)


RUNS = {"dpo": run_dpo, "reward_model": run_reward_model, "ppo": run_ppo, "grpo": run_grpo}


def main(out: str) -> None:
    from safetensors.torch import save_file

    for name, run in RUNS.items():
        losses, params = run()  # distributed=None: Accelerate, because the launcher set WORLD_SIZE
        rank = torch.distributed.get_rank()
        save_file(params, str(Path(out) / f"{name}-rank{rank}.safetensors"))
        (Path(out) / f"{name}-rank{rank}.json").write_text(json.dumps({"losses": losses}))


if __name__ == "__main__":
    from rlsurvey.distributed import shutdown

    torch.set_num_threads(1)
    main(sys.argv[1])
    shutdown()
