"""Checkpoints written by `rlsurvey train` run unchanged in TRL's trainers (skipped where TRL is absent).

A reward model trained here scores like plain transformers' `AutoModelForSequenceClassification` does, trains
a step in TRL's RewardTrainer, and serves as the reward model of TRL's GRPOTrainer; a DPO-trained policy
trains a step in TRL's DPOTrainer and GRPOTrainer. The data are the reviews world's, in TRL's formats.
"""

from __future__ import annotations

import warnings

import pytest
import torch

trl = pytest.importorskip("trl")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from rlsurvey.cli import main  # noqa: E402
from rlsurvey.interop import world_dataset  # noqa: E402
from rlsurvey.rewards.reward_model import RewardModel  # noqa: E402

QUIET = {
    "report_to": "none",
    "use_cpu": True,
    "save_strategy": "no",
    "disable_tqdm": True,
    "logging_steps": 1,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(reward-model dir, DPO policy dir), each from a two-step `rlsurvey train` run."""
    root = tmp_path_factory.mktemp("rlsurvey-runs")
    common = ["--num-examples", "8", "--batch-size", "4", "--no-progress"]
    assert main(["train", "reward", *common, "--num-epochs", "1", "--output-dir", str(root / "rm")]) == 0
    assert main(["train", "dpo", *common, "--max-steps", "2", "--output-dir", str(root / "dpo")]) == 0
    return root / "rm", root / "dpo"


def _changed(before: dict, model) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)


def test_plain_transformers_scores_like_the_reward_model(trained):
    rm_dir, _ = trained
    pairs = world_dataset("reviews", "preference", 6, seed=5)
    ours = RewardModel.from_pretrained(rm_dir).score(list(pairs["prompt"]), list(pairs["chosen"]))
    assert ours.abs().max() > 0  # trained: not the zero head it started from
    tok = AutoTokenizer.from_pretrained(rm_dir)
    seq = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    tok.padding_side = "right"
    texts = [p + c + tok.eos_token for p, c in zip(pairs["prompt"], pairs["chosen"])]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        theirs = seq(**enc).logits.squeeze(-1)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_reward_model_trains_in_trl_reward_trainer(trained, tmp_path):
    rm_dir, _ = trained
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = trl.RewardConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3, **QUIET
    )
    data = world_dataset("reviews", "preference", 8, seed=1).select_columns(["prompt", "chosen", "rejected"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.RewardTrainer(
            model=model, args=args, train_dataset=data, processing_class=AutoTokenizer.from_pretrained(rm_dir)
        )
        trainer.train()
    assert trainer.state.global_step == 1 and _changed(before, trainer.model)


def test_dpo_policy_trains_in_trl_dpo_trainer(trained, tmp_path):
    _, policy_dir = trained
    args = trl.DPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3, **QUIET
    )
    data = world_dataset("reviews", "preference", 8, seed=2).select_columns(["prompt", "chosen", "rejected"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(
            model=str(policy_dir), args=args, train_dataset=data,
            processing_class=AutoTokenizer.from_pretrained(policy_dir),
        )  # fmt: skip
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 1 and len(losses) == 1 and losses[0] > 0


def test_grpo_in_trl_with_the_dpo_policy_and_the_reward_model(trained, tmp_path):
    rm_dir, policy_dir = trained
    args = trl.GRPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=8, learning_rate=1e-3, beta=0.0, **QUIET,
    )  # fmt: skip
    prompts = world_dataset("reviews", "prompt", 4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.GRPOTrainer(
            model=str(policy_dir), reward_funcs=str(rm_dir), args=args, train_dataset=prompts,
            processing_class=AutoTokenizer.from_pretrained(policy_dir, padding_side="left"),
        )  # fmt: skip
        trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert trainer.state.global_step == 1 and len(logged) == 1
    assert torch.isfinite(torch.tensor(logged[0]["reward"]))
