"""PPO (rlsurvey.rl.ppo): the clipped losses against hand-derived values and gradients, a short smoke run on
discrete and continuous control, the rollout's time-limit handling, and bad input."""

import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlsurvey.rl import ppo
from rlsurvey.rl.ppo import PPOConfig, clipped_policy_loss, clipped_value_loss, train

EPS = 0.2


def _policy_case(ratio, adv, clip=True):
    logp = torch.tensor([math.log(ratio)], dtype=torch.float64, requires_grad=True)
    loss, metrics = clipped_policy_loss(
        logp, torch.zeros(1, dtype=torch.float64), torch.tensor([adv]), EPS, clip
    )
    loss.backward()
    return loss.item(), logp.grad.item(), metrics


# (ratio, advantage, clipped term active?) - the clipped term is the minimum (so the gradient vanishes)
# only where the ratio has moved past the clip edge in the direction the advantage rewards.
CASES = [
    (1.1, 2.0, False),  # inside the range
    (0.9, 2.0, False),
    (1.1, -2.0, False),
    (0.9, -2.0, False),
    (1.5, 2.0, True),  # A > 0, ratio above 1 + eps: no more push up
    (0.5, 2.0, False),  # A > 0, ratio below 1 - eps: pulled back up, unclipped
    (1.5, -2.0, False),  # A < 0, ratio above 1 + eps: pulled back down, unclipped
    (0.5, -2.0, True),  # A < 0, ratio below 1 - eps: no more push down
]


@pytest.mark.parametrize("ratio,adv,active", CASES)
def test_clipped_policy_loss_value_and_gradient(ratio, adv, active):
    loss, grad, metrics = _policy_case(ratio, adv)
    # reference: the objective min(r A, clip(r) A) written with Python floats
    clipped_r = min(max(ratio, 1 - EPS), 1 + EPS)
    assert loss == pytest.approx(-min(ratio * adv, clipped_r * adv))
    # d/dlogp of -r A is -r A (because dr/dlogp = r); the clipped branch is flat
    assert grad == pytest.approx(0.0 if active else -ratio * adv)
    assert metrics["policy/clipfrac_avg"] == (1.0 if abs(ratio - 1) > EPS else 0.0)
    assert metrics["val/ratio"] == pytest.approx(ratio)


@pytest.mark.parametrize("ratio,adv,active", CASES)
def test_unclipped_ablation_never_stops_the_gradient(ratio, adv, active):
    loss, grad, _ = _policy_case(ratio, adv, clip=False)
    assert loss == pytest.approx(-ratio * adv)
    assert grad == pytest.approx(-ratio * adv)


def test_policy_loss_kl_estimators_and_mean():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(50, generator=g, dtype=torch.float64)
    new = old + 0.3 * torch.randn(50, generator=g, dtype=torch.float64)
    adv = torch.randn(50, generator=g, dtype=torch.float64)
    loss, m = clipped_policy_loss(new, old, adv, EPS)
    r = (new - old).exp().tolist()
    want = -sum(min(ri * a, min(max(ri, 1 - EPS), 1 + EPS) * a) for ri, a in zip(r, adv.tolist())) / 50
    assert loss.item() == pytest.approx(want)
    assert m["policy/approxkl_k1_avg"] == pytest.approx(sum(-math.log(ri) for ri in r) / 50)
    assert m["policy/approxkl_k3_avg"] == pytest.approx(sum(ri - 1 - math.log(ri) for ri in r) / 50)
    assert m["policy/approxkl_k3_avg"] >= 0  # k3 is non-negative sample by sample
    assert m["policy/clipfrac_avg"] == pytest.approx(sum(abs(ri - 1) > EPS for ri in r) / 50)
    assert m["loss/policy_avg"] == pytest.approx(want)


# (V_new, V_old, R, expected loss, expected dloss/dV_new)
VALUE_CASES = [
    (1.1, 1.0, 2.0, 0.5 * 0.9**2, -0.9),  # moved inside the range: plain squared error
    (1.5, 1.0, 2.0, 0.5 * 0.8**2, 0.0),  # moved past the range towards R: the clipped (larger) error wins
    (0.5, 1.0, 2.0, 0.5 * 1.5**2, -1.5),  # moved past the range away from R: the unclipped error is larger
    (1.5, 1.0, 0.0, 0.5 * 1.5**2, 1.5),  # overshoot away from R (R below): unclipped error wins
    (0.5, 1.0, 0.0, 0.5 * 0.8**2, 0.0),  # moved past the range towards R (R below): clipped wins
]


@pytest.mark.parametrize("v,v_old,ret,want,want_grad", VALUE_CASES)
def test_clipped_value_loss_value_and_gradient(v, v_old, ret, want, want_grad):
    values = torch.tensor([v], dtype=torch.float64, requires_grad=True)
    old, target = torch.tensor([v_old], dtype=torch.float64), torch.tensor([ret], dtype=torch.float64)
    loss, m = clipped_value_loss(values, old, target, EPS)
    loss.backward()
    assert loss.item() == pytest.approx(want)
    assert values.grad.item() == pytest.approx(want_grad)
    assert m["val/clipfrac_avg"] == (1.0 if abs(v - v_old) > EPS else 0.0)
    values.grad = None
    loss, _ = clipped_value_loss(values, old, target, EPS, clip=False)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * (v - ret) ** 2)
    assert values.grad.item() == pytest.approx(v - ret)


def test_loss_shape_mismatch_names_every_shape():
    with pytest.raises(ValueError, match=r"\(3,\), \(4,\) and \(3,\)"):
        clipped_policy_loss(torch.zeros(3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(3,\), \(3,\) and \(2, 3\)"):
        clipped_value_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="clip_eps must be > 0"):
        clipped_policy_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), clip_eps=0.0)


def _smoke(env_id, **kw):
    cfg = PPOConfig(env_id=env_id, total_steps=512, num_envs=2, num_steps=64, progress=False, **kw)
    return train(cfg)


def test_smoke_run_discrete_changes_every_parameter():
    torch.manual_seed(0)
    ref = ppo.ActorCritic(4, gym.spaces.Discrete(2))  # train() seeds init with cfg.seed: rebuild it here
    history = _smoke("CartPole-v1", seed=0)
    assert len(history.updates) == 4
    row = history.updates[-1]
    for key in (
        "global_step",
        "lr",
        "loss/policy_avg",
        "loss/value_avg",
        "policy/entropy_avg",
        "policy/approxkl_k1_avg",
        "policy/approxkl_k3_avg",
        "policy/clipfrac_avg",
        "val/clipfrac_avg",
        "val/explained_variance",
        "env/return_window",
    ):
        assert key in row and np.isfinite(row[key]), key
    assert row["global_step"] == 512
    assert history.updates[0]["lr"] > history.updates[-1]["lr"]  # annealed
    assert len(history.episode_return) > 5 and all(r >= 1 for r in history.episode_return)
    assert history.episode_step == sorted(history.episode_step)
    # orthogonal init is seeded by cfg.seed: same start, and training moved every tensor
    for (name, p0), p1 in zip(ref.named_parameters(), history.agent.parameters()):
        assert p0.shape == p1.shape
        assert not torch.equal(p0, p1), f"{name} did not change"


def test_smoke_run_continuous_and_ablations():
    history = _smoke("Pendulum-v1", clip_policy=False, norm_adv=False, clip_vloss=False, ent_coef=0.01)
    assert history.agent.log_std is not None
    assert len(history.episode_return) == 2  # Pendulum episodes last 200 steps: 2 envs x 256 steps
    assert all(-2000 < r < 0 for r in history.episode_return)
    assert np.isfinite(history.updates[-1]["loss/value_avg"])
    returns = ppo.evaluate(history.agent, "Pendulum-v1", episodes=1)
    assert returns.shape == (1,) and returns[0] < 0


def test_target_kl_stops_the_epochs_early():
    history = _smoke("CartPole-v1", target_kl=1e-12, epochs_per_rollout=5)
    assert all(u["epochs"] == 1 for u in history.updates)
    history = _smoke("CartPole-v1", epochs_per_rollout=3)
    assert all(u["epochs"] == 3 for u in history.updates)


class _Counter(gym.Env):
    """obs = [steps taken]; reward 1 per step; never terminates (a TimeLimit cuts it)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], dtype=np.float32), 1.0, False, False, {}


class _BadActions(_Counter):
    action_space = gym.spaces.MultiDiscrete([2, 3])


class _BadObs(_Counter):
    observation_space = gym.spaces.Discrete(4)


gym.register("RlsurveyTestCounter-v0", entry_point=_Counter, max_episode_steps=3)
gym.register("RlsurveyTestBadActions-v0", entry_point=_BadActions, max_episode_steps=3)
gym.register("RlsurveyTestBadObs-v0", entry_point=_BadObs, max_episode_steps=3)


def test_rollout_marks_time_limits_and_keeps_the_final_observation():
    cfg = PPOConfig(
        env_id="RlsurveyTestCounter-v0", num_envs=2, num_steps=7, num_mini_batches=1, progress=False
    )
    envs = ppo.make_envs(cfg.env_id, cfg.num_envs)
    agent = ppo.ActorCritic(1, envs.single_action_space)
    T, N = cfg.num_steps, cfg.num_envs
    buf = ppo._buffers(T, N, 1, envs.single_action_space)
    stats = {"ret": np.zeros(N), "len": np.zeros(N, dtype=np.int64), "step": 0, "episodes": []}
    obs, _ = envs.reset(seed=0)
    obs = ppo._rollout(cfg, envs, agent, obs, buf, stats, 0.0)
    envs.close()
    cut = [False, False, True] * 2 + [False]  # the limit of 3 steps ends steps 2 and 5
    assert buf["trunc"][:, 0].tolist() == cut and buf["dones"][:, 0].tolist() == [float(c) for c in cut]
    assert buf["trunc"][:, 1].tolist() == cut
    assert buf["final_obs"][2, :, 0].tolist() == [3.0, 3.0]  # the observation the cut episode reached
    assert buf["obs"][:, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]  # the reset observation follows
    assert buf["rewards"][0, 0].item() == pytest.approx(cfg.reward_scale)
    assert [e[2] for e in stats["episodes"]] == [3.0] * 4  # returns are logged unscaled
    assert stats["step"] == 14 and obs[0, 0] == 1.0


def test_unsupported_spaces_are_rejected():
    with pytest.raises(ValueError, match=r"action space must be Discrete or a 1-D Box, got MultiDiscrete"):
        train(PPOConfig(env_id="RlsurveyTestBadActions-v0", total_steps=64, progress=False))
    with pytest.raises(ValueError, match=r"observation space must be a 1-D Box, got Discrete\(4\)"):
        train(PPOConfig(env_id="RlsurveyTestBadObs-v0", total_steps=64, progress=False))
    with pytest.raises(ValueError, match="action space must be"):
        ppo.check_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2, 2)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
        ({"lam": -0.1}, r"lam must be in \[0, 1\], got -0.1"),
        ({"num_envs": 0}, "num_envs must be a positive int, got 0"),
        ({"num_steps": 2.5}, "num_steps must be a positive int, got 2.5"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"target_kl": -1.0}, "target_kl must be > 0 or None"),
        ({"num_envs": 3, "num_steps": 5, "num_mini_batches": 2}, "num_mini_batches must divide the batch"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**kwargs)


def test_train_wants_a_config():
    with pytest.raises(TypeError, match="config must be a PPOConfig, got dict"):
        train({"env_id": "CartPole-v1"})


def test_history_window_helpers():
    h = ppo.PPOHistory(config=PPOConfig(return_window=2), agent=None)
    h.episode_return = [1.0, 3.0, 5.0, 9.0]
    h.episode_step = [10, 20, 30, 40]
    h.episode_time = [0.1, 0.2, 0.3, 0.4]
    assert h.window_mean().tolist() == [1.0, 2.0, 4.0, 7.0]
    assert h.last_mean_return() == 7.0
    assert h.first_reach(4.0) == {"step": 30, "time": 0.3, "episode": 3}
    assert h.first_reach(1.0)["episode"] == 2  # needs a full window first
    assert h.first_reach(100.0) is None


def test_stop_at_return_ends_training_early():
    cfg = PPOConfig(total_steps=4096, num_envs=2, num_steps=64, return_window=3, stop_at_return=5.0)
    history = train(replace(cfg, progress=False))
    assert len(history.updates) == 1  # any 3 CartPole episodes average at least 5 steps
    assert history.last_mean_return() >= 5.0


def test_advantages_bootstrap_a_time_limit_but_not_a_termination():
    cfg = PPOConfig(num_envs=1, num_steps=4, num_mini_batches=1, gamma=0.5, lam=1.0, reward_scale=1.0)
    agent = ppo.ActorCritic(1, gym.spaces.Discrete(2))
    with torch.no_grad():  # a critic that says V(s) = 2 everywhere
        agent.critic[-1].weight.zero_()
        agent.critic[-1].bias.fill_(2.0)
    buf = ppo._buffers(4, 1, 1, gym.spaces.Discrete(2))
    buf["rewards"][:, 0] = 1.0
    buf["dones"][:, 0] = [0, 1, 0, 1]  # step 1 ends by a time limit, step 3 by termination
    buf["trunc"][:, 0] = [False, True, False, False]
    batch = ppo._advantages(cfg, agent, buf, next_obs=np.zeros((1, 1), np.float32))
    # returns with lam = 1: G_1 = 1 + 0.5 * V(final) = 2, G_0 = 1 + 0.5 * G_1 = 2; G_3 = 1, G_2 = 1.5
    torch.testing.assert_close(batch["returns"], torch.tensor([2.0, 2.0, 1.5, 1.0]))
    torch.testing.assert_close(batch["adv"], batch["returns"] - 2.0)
    logp, _ = agent.log_prob_entropy(batch["obs"], batch["actions"])
    torch.testing.assert_close(batch["logp"], logp)


def test_chapter_03_detail_table_names_exist():
    """Every `name` in the right-hand column of chapter 03's table of implementation details is a PPOConfig
    field or an attribute of a package module (`ppo.x`, `returns.x`): the table must not point at renamed
    code."""
    import json
    import re
    from dataclasses import fields
    from pathlib import Path

    from rlsurvey.rl import returns

    nb = json.loads((Path(__file__).parent.parent / "notebooks" / "03_ppo.ipynb").read_text())
    table = next(
        "".join(c["source"]) for c in nb["cells"] if "| detail | what it does |" in "".join(c["source"])
    )
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 15
    modules = {"ppo": ppo, "returns": returns}
    config_fields = {f.name for f in fields(PPOConfig)}
    checked = 0
    for row in rows:
        for name in re.findall(r"`([^`]+)`", row.rstrip(" |").rsplit("|", 1)[-1]):
            owner, _, attr = name.rpartition(".")
            if not owner:
                assert hasattr(ppo, attr), name
            elif owner == "PPOConfig":
                assert attr in config_fields, name
            else:
                assert hasattr(modules[owner], attr), name
            checked += 1
    assert checked >= 20
