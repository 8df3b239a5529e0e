"""RewardEnsemble.calibrate: a Bradley-Terry reward is defined up to an additive constant, so an ensemble's
spread must not depend on each member's arbitrary offset (or scale) once the members are standardized."""

from __future__ import annotations

import pytest
import torch

from rlsurvey.rewards import RewardEnsemble, RewardModel


class Shifted:
    """A member whose rewards are another's times `scale` plus `offset`: the same preferences."""

    def __init__(self, model, offset: float, scale: float = 1.0):
        self.model, self.offset, self.scale = model, offset, scale

    def score(self, prompts, responses):
        return self.scale * self.model.score(prompts, responses) + self.offset


def _members(tiny_lm_dir, n=3):
    out = []
    for seed in range(n):
        rm = RewardModel.from_pretrained(tiny_lm_dir("llama"))
        torch.manual_seed(seed)
        torch.nn.init.normal_(rm.model.score.weight)
        out.append(rm)
    return out


REF_P, REF_R = ["a ", "b ", "c ", "d "], ["good.", "bad.", "fine.", "so so."]
NEW_P, NEW_R = ["e ", "f ", "g "], ["1 + 1 = 2", "great great great", "ok."]


def test_calibrated_scores_are_each_members_standardized_rewards(tiny_lm_dir):
    members = _members(tiny_lm_dir)
    ens = RewardEnsemble(members).calibrate(REF_P, REF_R)
    ref = torch.stack([m.score(REF_P, REF_R) for m in members])
    new = torch.stack([m.score(NEW_P, NEW_R) for m in members])
    want = (new - ref.mean(1, keepdim=True)) / ref.std(1, keepdim=True)
    torch.testing.assert_close(ens.scores(NEW_P, NEW_R), want)
    torch.testing.assert_close(ens.raw_scores(NEW_P, NEW_R), new)
    torch.testing.assert_close(ens.scores(REF_P, REF_R).mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    mean, std = ens.mean_std(NEW_P, NEW_R)
    torch.testing.assert_close(std, want.std(0))
    torch.testing.assert_close(ens(NEW_P, NEW_R), mean)


def test_offsets_and_scales_do_not_change_a_calibrated_spread(tiny_lm_dir):
    members = _members(tiny_lm_dir)
    moved = [Shifted(members[0], 5.0), Shifted(members[1], -3.0, 2.0), members[2]]
    plain, shifted = RewardEnsemble(members), RewardEnsemble(moved)
    # uncalibrated, the constants alone change the spread: the failure calibration exists for
    assert not torch.allclose(plain.mean_std(NEW_P, NEW_R)[1], shifted.mean_std(NEW_P, NEW_R)[1], atol=1e-3)
    plain.calibrate(REF_P, REF_R)
    shifted.calibrate(REF_P, REF_R)
    torch.testing.assert_close(shifted.mean_std(NEW_P, NEW_R)[1], plain.mean_std(NEW_P, NEW_R)[1])


def test_calibration_refuses_what_it_cannot_standardize(tiny_lm_dir):
    members = _members(tiny_lm_dir, 2)
    with pytest.raises(ValueError, match="at least 2 reference"):
        RewardEnsemble(members).calibrate(REF_P[:1], REF_R[:1])
    with pytest.raises(ValueError, match="same reward"):
        zero_head = RewardModel.from_pretrained(tiny_lm_dir("llama"))  # a fresh head: every reward is 0
        RewardEnsemble([members[0], zero_head]).calibrate(REF_P, REF_R)
