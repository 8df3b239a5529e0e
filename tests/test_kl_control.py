"""KL reward shaping and the KL controllers, against hand computations."""

import math

import pytest
import torch

from rlsurvey.algos.kl_control import AdaptiveKLController, FixedKLController, shape_rewards


def test_shape_rewards_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -1.7, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    scores = torch.tensor([2.0, -1.0])
    beta = 0.1
    rewards, kl = shape_rewards(scores, logp, ref, mask, beta, "k1")
    want = [[-beta * 0.5, -beta * -1.0, 0.0 + 2.0], [0.0, -beta * 1.0 - 1.0, 0.0]]
    torch.testing.assert_close(rewards, torch.tensor(want))
    assert kl[1, 2] == 0  # off the mask
    _, kl3 = shape_rewards(scores, logp, ref, mask, beta, "k3")
    r = math.exp(-1.5 - -1.0)
    assert kl3[0, 0].item() == pytest.approx((r - 1) - math.log(r))
    assert (kl3 >= 0).all()


def test_adaptive_controller_moves_towards_target():
    c = AdaptiveKLController(value=0.1, target=6.0, horizon=100)
    assert c.update(12.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # error clipped at 0.2
    before = c.value
    assert c.update(3.0, 10) < before
    assert FixedKLController(0.05).update(100.0, 10) == 0.05


def test_empty_response_rejected():
    with pytest.raises(ValueError, match="no tokens"):
        shape_rewards(
            torch.zeros(1), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool), 0.1
        )
