"""Multi-objective reward model: attribute labels, head training, the linear Bradley-Terry fit, saving."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from rlsurvey.rewards import RewardTrainingConfig
from rlsurvey.rewards.multi_objective import (
    REVIEW_OBJECTIVES,
    MultiObjectiveRewardModel,
    fit_linear_bradley_terry,
    fit_objective_weights,
    review_objectives,
    train_objectives,
)
from rlsurvey.tasks import reviews


def test_review_objectives_by_hand():
    got = review_objectives(["the hotel was"], [" very good . the staff are idiots . thank you !"])
    a = reviews.parse_review("the hotel was very good . the staff are idiots . thank you !")
    want = [a.sentiment, 1.0, 1.0, 0.0, float(a.n_words)]
    torch.testing.assert_close(got, torch.tensor([want]))
    assert got[0, 4] == 14 and REVIEW_OBJECTIVES[2] == "rudeness"
    with pytest.raises(ValueError, match="pair up"):
        review_objectives(["a"], [])


def test_linear_bradley_terry_is_a_stationary_point_and_recovers_weights():
    g = torch.Generator().manual_seed(0)
    true_w = torch.tensor([2.0, -1.0, 0.0])
    diff = torch.randn(4000, 3, generator=g)
    # labels from the model itself: a pair is kept in order with probability σ(w · d), flipped otherwise
    keep = torch.rand(4000, generator=g) < torch.sigmoid(diff @ true_w)
    diff = torch.where(keep[:, None], diff, -diff)
    w = fit_linear_bradley_terry(diff, l2=1e-4)
    torch.testing.assert_close(w, true_w, atol=0.15, rtol=0.0)

    # brute force: the gradient of the objective, by central differences, vanishes at w
    def objective(v):
        return (-F.logsigmoid(diff.double() @ v).mean() + 1e-4 * v.pow(2).sum()).item()

    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1e-4
        grad = (objective(w.double() + e) - objective(w.double() - e)) / 2e-4
        assert abs(grad) < 1e-5
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        fit_linear_bradley_terry(torch.zeros(3))


def test_heads_learn_attributes_weights_fit_and_round_trip(tiny_lm_dir, tmp_path):
    names = ("n_a", "length")
    model = MultiObjectiveRewardModel.from_pretrained(tiny_lm_dir("llama"), names)
    words = ["aaa", "ba", "b", "cab", "a", "bbbb", "aba", "c", "aa", "cc"]
    prompts = ["x: "] * len(words) * 4
    responses = words * 4
    targets = torch.tensor([[w.count("a"), len(w)] for w in responses], dtype=torch.float32)
    before = ((model.predict_attributes(prompts, responses) - targets) ** 2).mean(0)
    cfg = RewardTrainingConfig(num_epochs=40, batch_size=8, learning_rate=3e-3, progress=False)
    history = train_objectives(model, prompts, responses, targets, cfg)
    after = ((model.predict_attributes(prompts, responses) - targets) ** 2).mean(0)
    assert (after < 0.3 * before).all(), (before, after)
    assert set(history[-1]) == {"loss", "mse/n_a", "mse/length"}
    # preferences that reward "a"s and ignore length: the fitted weight of n_a dominates
    pairs = Dataset.from_list(
        [{"prompt": "x: ", "chosen": c, "rejected": r} for c, r in [("aaa", "b"), ("aa", "cc"), ("a", "bbbb"),
                                                                     ("aba", "c"), ("cab", "ba")] * 4]
    )  # fmt: skip
    fit = fit_objective_weights(model, pairs)
    assert fit["accuracy"] > 0.9 and fit["weights"]["n_a"] > abs(fit["weights"]["length"])
    rewards = model(["x: "] * 2, ["aaa", "b"])
    assert rewards[0] > rewards[1]
    model.save_pretrained(tmp_path / "mo")
    again = MultiObjectiveRewardModel.from_pretrained(tmp_path / "mo")
    assert again.names == list(names)
    torch.testing.assert_close(again(["x: "] * 2, ["aaa", "b"]), rewards)
    torch.testing.assert_close(again.mean, model.mean)
    with pytest.raises(ValueError, match="not a multi-objective model"):
        MultiObjectiveRewardModel.from_pretrained(tiny_lm_dir("gpt2"))
    with pytest.raises(ValueError, match="targets of shape"):
        train_objectives(model, prompts, responses, targets[:, :1], cfg)
