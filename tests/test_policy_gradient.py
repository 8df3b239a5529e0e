"""REINFORCE and actor-critic (rlsurvey.rl.policy_gradient): the gradient estimate against a step-by-step
brute-force sum, episode collection, the variance helper, short training runs and bad input."""

import numpy as np
import pytest
import torch

from rlsurvey.rl import policy_gradient as pg


@pytest.fixture(scope="module")
def envs():
    e = pg.make_vector_env(3)
    yield e
    e.close()


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return pg.MLPPolicy(hidden=8)


def _brute_gradient(policy, batch, gamma, baseline=None):
    """(1/M) sum_episodes sum_t grad log pi(a_t|s_t) (G_t - b(s_t)), one step at a time, G_t by loop."""
    params = list(policy.parameters())
    total = [torch.zeros_like(p) for p in params]
    start = 0
    for length in batch.lengths:
        rewards = batch.rewards[start : start + length].tolist()
        for t in range(length):
            g = sum(gamma ** (k - t) * rewards[k] for k in range(t, length))
            s, a = batch.obs[start + t : start + t + 1], batch.actions[start + t : start + t + 1]
            if baseline is not None:
                g -= baseline(s).item()
            grads = torch.autograd.grad(policy.log_prob(s, a).sum(), params)
            for acc, gr in zip(total, grads):
                acc += gr * g
        start += length
    return torch.cat([t.reshape(-1) for t in total]) / len(batch.lengths)


def test_collect_episodes_lays_complete_episodes_end_to_end(envs, policy):
    batch = pg.collect_episodes(envs, policy, seed=0)
    assert batch.num_episodes == 3 and sum(batch.lengths) == batch.obs.shape[0] == batch.actions.shape[0]
    ends = np.cumsum(batch.lengths) - 1
    assert torch.nonzero(batch.dones).flatten().tolist() == ends.tolist()
    assert batch.episode_returns == [float(n) for n in batch.lengths]  # CartPole pays 1 per step
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert batch.obs[starts].abs().max() <= 0.05  # each episode begins at a reset state
    again = pg.collect_episodes(envs, policy, seed=0)  # the same seed resets to the same start state
    assert torch.equal(again.obs[starts[0]], batch.obs[starts[0]])


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_gradient_equals_brute_force_sum(envs, policy, gamma):
    torch.manual_seed(2)
    batch = pg.collect_episodes(envs, policy, seed=3)
    got = pg.policy_gradient(policy, batch, gamma)
    torch.testing.assert_close(got, _brute_gradient(policy, batch, gamma), rtol=1e-4, atol=1e-5)
    value = pg.ValueMLP(hidden=8, scale=5.0)
    got = pg.policy_gradient(policy, batch, gamma, baseline=value)
    torch.testing.assert_close(got, _brute_gradient(policy, batch, gamma, value), rtol=1e-4, atol=1e-5)
    loss, metrics = pg.reinforce_loss(policy, batch, gamma, value)
    assert loss.ndim == 0 and metrics["env/episodic_return"] == np.mean(batch.episode_returns)


class _Oracle(torch.nn.Module):
    """Returns the batch's own reward-to-go: weights become zero, so must the gradient (wiring check)."""

    def __init__(self, rtg):
        super().__init__()
        self.rtg = rtg

    def forward(self, obs):
        return self.rtg


def test_gradient_variance_matches_a_direct_computation(envs, policy):
    torch.manual_seed(4)
    batches = [pg.collect_episodes(envs, policy) for _ in range(4)]
    out = pg.gradient_variance(policy, batches, 0.99)
    g = np.stack([pg.policy_gradient(policy, b, 0.99).numpy() for b in batches])
    assert out["grads"].shape == g.shape
    assert out["total_variance"] == pytest.approx(g.var(axis=0, ddof=1).sum(), rel=1e-4)
    assert out["mean_sq_norm"] == pytest.approx((g.mean(0) ** 2).sum(), rel=1e-4)
    oracle = pg.policy_gradient(policy, batches[0], 0.99, _Oracle(batches[0].reward_to_go(0.99)))
    assert oracle.abs().max() == 0
    with pytest.raises(ValueError, match="at least 2 batches to measure a variance, got 1"):
        pg.gradient_variance(policy, batches[:1])


def test_fit_value_reduces_the_error():
    torch.manual_seed(0)
    value = pg.ValueMLP(hidden=16, scale=10.0)
    obs = torch.randn(64, 4)
    targets = 10 * obs[:, 0] + 5
    before = 0.5 * (value(obs) - targets).pow(2).mean().item()
    after = pg.fit_value(value, torch.optim.Adam(value.parameters(), lr=1e-2), obs, targets, steps=200)
    assert after < 0.05 * before


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_smoke(baseline):
    hist = pg.train_reinforce(pg.PGConfig(iterations=3, num_envs=2, baseline=baseline, progress=False))
    assert len(hist.episode_return) == 6 and len(hist.updates) == 3
    assert hist.episode_step == sorted(hist.episode_step) and hist.episode_step[-1] == sum(
        hist.episode_return
    )
    assert ("loss/value" in hist.updates[-1]) == baseline
    assert (hist.value is not None) == baseline
    assert np.isfinite(hist.last_mean_return())


def test_actor_critic_smoke_updates_both_networks():
    torch.manual_seed(0)
    ref_policy, ref_value = pg.MLPPolicy(hidden=8), pg.ValueMLP(hidden=8)  # what train seeds and builds
    hist = pg.train_actor_critic(
        pg.PGConfig(iterations=60, num_envs=4, hidden=8, learning_rate=1e-3, progress=False)
    )
    assert len(hist.episode_return) >= 4 and hist.episode_step[-1] <= 240
    for ref, net in ((ref_policy, hist.policy), (ref_value, hist.value)):
        for p0, p1 in zip(ref.parameters(), net.parameters()):
            assert not torch.equal(p0, p1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gamma": 1.01}, r"gamma must be in \[0, 1\], got 1.01"),
        ({"iterations": 0}, "iterations must be a positive int, got 0"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0, got -1.0"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pg.PGConfig(**kwargs)


def test_continuous_actions_are_rejected():
    with pytest.raises(ValueError, match=r"Discrete action space, got Box"):
        pg.make_vector_env(1, "Pendulum-v1")
    with pytest.raises(ValueError, match="num_envs must be a positive int, got 0"):
        pg.make_vector_env(0)
