"""Reward models: last-token reading, the Bradley-Terry loss, calibration, training, saving, ensembles."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from rlsurvey.rewards import (
    RewardEnsemble,
    RewardModel,
    RewardTrainingConfig,
    bradley_terry_loss,
    evaluate_reward_model,
    last_token_index,
    train_reward_model,
)
from rlsurvey.rewards.bradley_terry import calibration


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 1, 3]
    assert last_token_index(left).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="no real token"):
        last_token_index(torch.tensor([[0, 0]]))


def test_bradley_terry_loss_by_hand():
    rc, rr = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.5, -1.0])
    loss, m = bradley_terry_loss(rc, rr)
    want = sum(math.log1p(math.exp(-(a - b))) for a, b in [(2, 1), (0, 0.5), (-1, -1)]) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert m["accuracy"].item() == pytest.approx(1 / 3)
    loss_m, _ = bradley_terry_loss(rc, rr, margin=torch.tensor([1.0, 0.0, 0.0]))
    want_m = (math.log1p(math.exp(0.0)) + math.log1p(math.exp(0.5)) + math.log1p(math.exp(0.0))) / 3
    assert loss_m.item() == pytest.approx(want_m, rel=1e-6)
    with pytest.raises(ValueError, match="must both be"):
        bradley_terry_loss(rc, rr[:2])


def test_calibration_by_hand():
    p = torch.tensor([0.05, 0.15, 0.95, 0.95])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    cal = calibration(p, y, bins=10)
    # bins: 0 -> {0.05: 0}, 1 -> {0.15: 1}, 9 -> {0.95, 0.95: 0.5}
    want = 0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.45
    assert cal["ece"] == pytest.approx(want)
    assert cal["count"][0] == 1 and cal["count"][9] == 2


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # gpt2: absolute positions, wrong without position ids
def test_reward_reads_last_real_token_with_either_padding(tiny_lm_dir, arch):
    rm = RewardModel.from_pretrained(tiny_lm_dir(arch))
    torch.nn.init.normal_(rm.model.score.weight)  # a non-zero head, so rewards differ
    tok = rm.tokenizer
    texts = ["good film.", "a long and boring film!!"]
    scores = {}
    for side in ("left", "right"):
        tok.padding_side = side
        enc = tok(texts, return_tensors="pt", padding=True)
        scores[side] = rm(enc["input_ids"], enc["attention_mask"]).detach()
    alone = torch.stack(
        [rm(**{k: v for k, v in tok([t], return_tensors="pt").items()}).detach()[0] for t in texts]
    )
    torch.testing.assert_close(scores["right"], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["left"], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_training_improves_accuracy_and_round_trips(tiny_lm_dir, tmp_path, arch):
    # Chosen responses contain "good", rejected ones "bad": a rule a tiny model can learn.
    words = ["film", "book", "song", "show", "meal", "trip"]
    rows = [{"prompt": f"the {w} was ", "chosen": "good.", "rejected": "bad."} for w in words] * 4
    data = Dataset.from_list(rows)
    torch.manual_seed(0)
    rm = RewardModel.from_pretrained(tiny_lm_dir(arch))
    before = evaluate_reward_model(rm, data)["margin"]
    assert before == pytest.approx(0.0, abs=1e-6)  # a fresh head scores everything 0
    cfg = RewardTrainingConfig(learning_rate=3e-3, batch_size=8, num_epochs=6, progress=False)
    history = train_reward_model(rm, data, cfg)
    after = evaluate_reward_model(rm, data)
    assert history[-1]["loss"] < history[0]["loss"]
    assert after["accuracy"] == 1.0 and after["margin"] > 0.5
    rm.save_pretrained(tmp_path / "rm")
    assert (tmp_path / "rm" / "model.safetensors").exists()
    again = RewardModel.from_pretrained(tmp_path / "rm")
    torch.testing.assert_close(
        again.score(["the film was "], ["good."]), rm.score(["the film was "], ["good."])
    )


def test_dataset_errors(tiny_lm_dir):
    rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
    with pytest.raises(ValueError, match="needs columns"):
        train_reward_model(rm, Dataset.from_list([{"prompt": "a", "chosen": "b"}]))
    with pytest.raises(ValueError, match="empty"):
        train_reward_model(rm, Dataset.from_list([{"prompt": "a", "chosen": "", "rejected": "c"}]))


def test_ensemble_mean_std(tiny_lm_dir):
    members = []
    for seed in range(3):
        rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
        torch.manual_seed(seed)
        torch.nn.init.normal_(rm.model.score.weight)
        members.append(rm)
    ens = RewardEnsemble(members, pessimism=1.0)
    prompts, responses = ["a ", "b "], ["good.", "bad."]
    each = torch.stack([m.score(prompts, responses) for m in members])
    torch.testing.assert_close(ens(prompts, responses), each.mean(0) - each.std(0))
    with pytest.raises(ValueError, match="at least 2"):
        RewardEnsemble(members[:1])


def test_center_rewards_coefficient_is_trls_mean_of_squared_sums(tiny_lm_dir):
    """The auxiliary term is c * mean((r_c + r_r)^2) (TRL's, after arXiv 2312.09244): it pins the sum of the
    two rewards near 0 without shrinking their margin; brute force on the same batch."""
    from rlsurvey.rewards.bradley_terry import _pair_loss

    rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
    torch.nn.init.normal_(rm.model.score.weight)
    data = Dataset.from_dict({"prompt": ["a", "b", "c"], "chosen": [" good", " fine", " nice"],
                              "rejected": [" bad", " awful", " poor"]})  # fmt: skip
    losses = {}
    cols = (list(data["prompt"]), list(data["chosen"]), list(data["rejected"]))
    for coef in (0.0, 0.5):
        cfg = RewardTrainingConfig(center_rewards_coefficient=coef, progress=False)
        with torch.no_grad():
            losses[coef] = _pair_loss(rm, cfg, [0, 1, 2], *cols, None)[0].item()
    with torch.no_grad():
        rc = rm.score(["a", "b", "c"], [" good", " fine", " nice"])
        rr = rm.score(["a", "b", "c"], [" bad", " awful", " poor"])
    want = 0.5 * sum((c + r) ** 2 for c, r in zip(rc.tolist(), rr.tolist())) / 3
    assert losses[0.5] - losses[0.0] == pytest.approx(want, rel=1e-5)


def test_scoring_cuts_pairs_as_training_did_and_truncation_is_counted(tiny_lm_dir, tmp_path):
    """A reward model trained at max_length 16 scores a long pair at 16 tokens too, also after saving and
    loading (before, scoring used the whole context and read a different sequence); the share of cut
    sequences is logged."""
    rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
    long_prompt = "a rather long opening that will not fit "
    data = Dataset.from_dict({"prompt": [long_prompt, "b", "c"], "chosen": [" good", " fine", " nice"],
                              "rejected": [" bad", " awful", " poor"]})  # fmt: skip
    cfg = RewardTrainingConfig(max_length=16, batch_size=3, num_epochs=1, progress=False)
    hist = train_reward_model(rm, data, cfg)
    assert hist[0]["truncated_frac"] == pytest.approx(2 / 6)  # the long pair's chosen and rejected
    assert rm.max_length == 16
    for model in (rm, RewardModel.from_pretrained(_saved(rm, tmp_path))):
        with torch.no_grad():
            enc = model.tokenize([long_prompt], [" good"], max_length=16)
            assert enc["input_ids"].shape[1] == 16
            want = model(**enc)
        assert model.score([long_prompt], [" good"]).item() == pytest.approx(want.item(), abs=1e-6)


def _saved(rm, tmp_path):
    rm.save_pretrained(tmp_path / "rm")
    return tmp_path / "rm"
