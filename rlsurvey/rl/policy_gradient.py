"""REINFORCE, with and without a learned baseline, and the one-step actor-critic, on gymnasium CartPole.

Survey section 2.1 (arXiv 2412.10400): the policy-gradient theorem is the root of every RL method the survey
applies to LLMs; RLOO and GRPO (chapters 07 and 12) are REINFORCE with cleverer baselines.
Papers: REINFORCE, Williams 1992 (Machine Learning 8:229-256, no arXiv id); policy-gradient theorem,
Sutton et al. 1999 (NeurIPS); actor-critic and baselines, Sutton and Barto 2018, ch. 13; GAE
(arXiv 1506.02438), whose section 2 discusses the variance that baselines remove; A3C (arXiv 1602.01783)
for the synchronous many-environment actor-critic used here.

The policies are small MLPs over CartPole's 4 observations with a categorical head. A batch of episodes is
collected from a gymnasium SyncVectorEnv, one complete episode per sub-environment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsurvey.checks import check_fields
from rlsurvey.config_compat import renamed_fields
from rlsurvey.progress import tqdm
from rlsurvey.rl.returns import discounted_returns

__all__ = [
    "MLPPolicy",
    "ValueMLP",
    "EpisodeBatch",
    "make_vector_env",
    "collect_episodes",
    "reinforce_loss",
    "policy_gradient",
    "gradient_variance",
    "fit_value",
    "PGConfig",
    "PGHistory",
    "train_reinforce",
    "train_actor_critic",
]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_out)
    )


class MLPPolicy(nn.Module):
    """pi(a|s) = softmax(MLP(s))_a: a two-layer tanh MLP with a categorical head."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 2, hidden: int = 32):
        super().__init__()
        self.net = _mlp(obs_dim, hidden, n_actions)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a_t|s_t): obs [S, obs_dim], actions [S] -> [S]."""
        return torch.log_softmax(self.net(obs), -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """One action per row of obs [N, obs_dim] -> [N]."""
        return torch.multinomial(torch.softmax(self.net(obs), -1), 1).squeeze(-1)


class ValueMLP(nn.Module):
    """V(s): a two-layer tanh MLP with one output; `scale` lets the net work in units of ~1 when returns
    are in the hundreds."""

    def __init__(self, obs_dim: int = 4, hidden: int = 32, scale: float = 1.0):
        super().__init__()
        self.net = _mlp(obs_dim, hidden, 1)
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [S, obs_dim] -> V(s) [S]."""
        return self.net(obs).squeeze(-1) * self.scale


@dataclass
class EpisodeBatch:
    """Complete episodes laid end to end: step t of the batch belongs to episode `episode[t]`."""

    obs: torch.Tensor  # [S, obs_dim] observations s_t
    actions: torch.Tensor  # [S] actions a_t
    rewards: torch.Tensor  # [S] rewards r_t
    dones: torch.Tensor  # [S] 1.0 at the last step of each episode
    lengths: list  # steps of each episode

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def episode_returns(self) -> list:
        """Undiscounted return of each episode."""
        ends = np.cumsum(self.lengths)
        sums = np.concatenate([[0.0], np.cumsum(self.rewards.numpy())])
        return (sums[ends] - sums[ends - np.asarray(self.lengths)]).tolist()

    def reward_to_go(self, gamma: float) -> torch.Tensor:
        """G_t = sum_{k >= t} gamma^(k - t) r_k within each episode: [S]."""
        return discounted_returns(self.rewards, self.dones, gamma)


def make_vector_env(num_envs: int, env_id: str = "CartPole-v1") -> gym.vector.SyncVectorEnv:
    """`num_envs` copies of `env_id` that reset in the step that ends an episode."""
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        envs.close()
        raise ValueError(f"env_id must have a Discrete action space, got {envs.single_action_space}")
    return envs


def collect_episodes(
    envs: gym.vector.SyncVectorEnv, policy: MLPPolicy, seed: int | None = None
) -> EpisodeBatch:
    """Run `policy` until every sub-environment of `envs` has finished one episode; return those episodes.

    Sub-environments that finish early keep stepping (a vector env steps all of them) but their extra steps
    are discarded, so each episode is an unbiased sample of the policy's trajectory distribution.
    """
    obs, _ = envs.reset(seed=seed)
    running = np.ones(envs.num_envs, dtype=bool)
    obs_l, act_l, rew_l, alive_l = [], [], [], []
    while running.any():
        o = torch.as_tensor(obs, dtype=torch.float32)
        actions = policy.sample(o)
        obs, reward, term, trunc, _ = envs.step(actions.numpy())
        obs_l.append(o)
        act_l.append(actions)
        rew_l.append(torch.as_tensor(reward, dtype=torch.float32))
        alive_l.append(torch.from_numpy(running.copy()))
        running &= ~(term | trunc)
    alive = torch.stack(alive_l, 1)  # [N, L]: True while sub-environment i is still in its first episode
    lengths = alive.sum(1).tolist()
    dones = torch.zeros(sum(lengths))
    dones[torch.as_tensor(np.cumsum(lengths) - 1)] = 1.0
    # boolean indexing walks [N, L] row by row, so each episode's steps come out contiguous and in order
    return EpisodeBatch(
        obs=torch.stack(obs_l, 1)[alive],
        actions=torch.stack(act_l, 1)[alive],
        rewards=torch.stack(rew_l, 1)[alive],
        dones=dones,
        lengths=lengths,
    )


def reinforce_loss(
    policy: MLPPolicy, batch: EpisodeBatch, gamma: float = 0.99, baseline: nn.Module | None = None
) -> tuple[torch.Tensor, dict]:
    """REINFORCE surrogate whose gradient is the policy-gradient estimate (Williams 1992).

    Equation: L = -(1/M) sum_episodes sum_t log pi(a_t|s_t) (G_t - b(s_t)), so that
    -grad L = (1/M) sum sum grad log pi(a_t|s_t) (G_t - b(s_t)), an unbiased estimate of grad J for any b
    that does not depend on a_t. M is the number of episodes; b = 0 without a baseline.

    | name     | shape          | meaning                                  |
    |----------|----------------|------------------------------------------|
    | batch    | S steps, M eps | complete episodes (`EpisodeBatch`)       |
    | G_t      | [S]            | reward-to-go, restarted at episode ends  |
    | b(s_t)   | [S]            | baseline values, treated as constants    |
    | loss     | []             | the surrogate                            |
    """
    logp = policy.log_prob(batch.obs, batch.actions)  # [S]
    rtg = batch.reward_to_go(gamma)  # [S]
    weights = rtg
    if baseline is not None:
        with torch.no_grad():
            weights = rtg - baseline(batch.obs)
    loss = -(logp * weights).sum() / batch.num_episodes
    metrics = {
        "loss/policy": loss.item(),
        "env/episodic_return": float(np.mean(batch.episode_returns)),
        "policy/weight_std": weights.std().item() if weights.numel() > 1 else 0.0,
    }
    return loss, metrics


def policy_gradient(
    policy: MLPPolicy, batch: EpisodeBatch, gamma: float = 0.99, baseline: nn.Module | None = None
) -> torch.Tensor:
    """The REINFORCE estimate of grad J on one batch, flattened over all policy parameters: [P]."""
    policy.zero_grad(set_to_none=True)
    loss, _ = reinforce_loss(policy, batch, gamma, baseline)
    grads = torch.autograd.grad(-loss, list(policy.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


def gradient_variance(
    policy: MLPPolicy, batches: list, gamma: float = 0.99, baseline: nn.Module | None = None
) -> dict:
    """Spread of the REINFORCE estimate across independent batches from the same policy.

    total_variance = sum_p Var_k[g_k,p] (the trace of the estimate's covariance, unbiased over K batches);
    mean_sq_norm = |mean_k g_k|^2, the squared length of the averaged gradient, for scale.
    Returns {"total_variance", "mean_sq_norm", "grads" [K, P]}.
    """
    if len(batches) < 2:
        raise ValueError(f"batches must hold at least 2 batches to measure a variance, got {len(batches)}")
    grads = torch.stack([policy_gradient(policy, b, gamma, baseline) for b in batches])  # [K, P]
    return {
        "total_variance": grads.var(dim=0).sum().item(),
        "mean_sq_norm": grads.mean(0).pow(2).sum().item(),
        "grads": grads,
    }


def fit_value(value: ValueMLP, optimizer, obs: torch.Tensor, targets: torch.Tensor, steps: int) -> float:
    """Regress V(obs) on `targets` [S] by `steps` full-batch squared-error steps; returns the last loss."""
    loss = torch.zeros(())
    for _ in range(steps):
        loss = 0.5 * (value(obs) - targets).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


@renamed_fields(lr="learning_rate", value_lr="value_learning_rate")
@dataclass
class PGConfig:
    env_id: str = "CartPole-v1"  # a gymnasium id with a Box observation and Discrete actions
    baseline: bool = True  # REINFORCE only: subtract a learned V(s) from the reward-to-go
    iterations: int = 30  # REINFORCE: batches of num_envs episodes; actor-critic: vector-env steps
    num_envs: int = 8  # REINFORCE: episodes per batch; actor-critic: parallel environments
    gamma: float = 0.99  # discount
    learning_rate: float = 1e-2  # Adam step size of the policy
    value_learning_rate: float = 1e-2  # Adam step size of the critic / baseline
    value_steps: int = 10  # REINFORCE baseline: regression steps per batch
    hidden: int = 32  # hidden width of policy and value MLPs
    value_scale: float = 20.0  # V's output is multiplied by this (CartPole returns reach ~100 at gamma .99)
    seed: int = 0  # seeds the environments and the networks
    progress: bool = True  # tqdm progress bar

    def __post_init__(self):
        for name in ("iterations", "num_envs", "value_steps", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PGConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"PGConfig.gamma must be in [0, 1], got {self.gamma!r}")
        for name in ("learning_rate", "value_learning_rate", "value_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PGConfig.{name} must be > 0, got {getattr(self, name)!r}")
        check_fields(self, {
            "iterations": "int>=1", "num_envs": "int>=1", "gamma": "[0,1]", "learning_rate": ">0",
            "value_learning_rate": ">0", "value_steps": "int>=1", "hidden": "int>=1", "value_scale": ">0",
        })  # fmt: skip


@dataclass
class PGHistory:
    policy: MLPPolicy
    value: ValueMLP | None
    episode_return: list = field(default_factory=list)  # undiscounted return of each finished episode
    episode_step: list = field(default_factory=list)  # env steps taken when each episode finished
    updates: list = field(default_factory=list)  # one metric dict per update
    seconds: float = 0.0  # wall time of training

    def last_mean_return(self, window: int = 20) -> float:
        return float(np.mean(self.episode_return[-window:])) if self.episode_return else float("nan")


def _networks(cfg: PGConfig, envs):
    torch.manual_seed(cfg.seed)
    obs_dim = envs.single_observation_space.shape[0]
    policy = MLPPolicy(obs_dim, int(envs.single_action_space.n), cfg.hidden)
    value = ValueMLP(obs_dim, cfg.hidden, cfg.value_scale)
    return policy, value


def train_reinforce(cfg: PGConfig) -> PGHistory:
    """REINFORCE: each iteration collects `num_envs` episodes, takes one Adam step on `reinforce_loss`, and
    (with `baseline`) first fits V to the batch's reward-to-go so that b(s) comes from earlier data only.
    """
    envs = make_vector_env(cfg.num_envs, cfg.env_id)
    policy, value = _networks(cfg, envs)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    v_opt = torch.optim.Adam(value.parameters(), lr=cfg.value_learning_rate)
    hist = PGHistory(policy=policy, value=value if cfg.baseline else None)
    steps, t0 = 0, time.perf_counter()
    name = "REINFORCE" + (" + baseline" if cfg.baseline else "")
    try:
        for it in tqdm(range(cfg.iterations), desc=name, disable=not cfg.progress):
            batch = collect_episodes(envs, policy, seed=cfg.seed if it == 0 else None)
            for length, ret in zip(batch.lengths, batch.episode_returns):
                steps += length
                hist.episode_return.append(ret)
                hist.episode_step.append(steps)
            loss, metrics = reinforce_loss(policy, batch, cfg.gamma, value if cfg.baseline else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.baseline:  # fitted after the policy step: the baseline never sees the batch it weights
                metrics["loss/value"] = fit_value(
                    value, v_opt, batch.obs, batch.reward_to_go(cfg.gamma), cfg.value_steps
                )
            hist.updates.append(metrics)
    finally:
        envs.close()
    hist.seconds = time.perf_counter() - t0
    return hist


def train_actor_critic(cfg: PGConfig) -> PGHistory:
    """One-step actor-critic on `num_envs` synchronous environments: every vector step updates both nets.

    Equations: delta_t = r_t + gamma * (1 - term_t) * V(s_{t+1}) - V(s_t) (a time-limit cut bootstraps
    from the final observation); actor loss -mean log pi(a_t|s_t) delta_t (delta held constant); critic
    loss 0.5 mean delta_t^2. Sutton and Barto's extra gamma^t factor is dropped, as in practice everywhere.
    Runs `iterations` vector steps.
    """
    envs = make_vector_env(cfg.num_envs, cfg.env_id)
    policy, value = _networks(cfg, envs)
    v_opt = torch.optim.Adam(value.parameters(), lr=cfg.value_learning_rate)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    hist = PGHistory(policy=policy, value=value)
    n = cfg.num_envs
    ep_ret, steps, t0 = np.zeros(n), 0, time.perf_counter()
    obs, _ = envs.reset(seed=cfg.seed)
    try:
        for _ in tqdm(range(cfg.iterations), desc="actor-critic", disable=not cfg.progress):
            o = torch.as_tensor(obs, dtype=torch.float32)
            actions = policy.sample(o)
            obs, reward, term, trunc, info = envs.step(actions.numpy())
            steps += n
            nxt = np.array(obs, dtype=np.float32)
            if "final_obs" in info:  # the true s_{t+1} of an episode that just ended is in final_obs
                for i in np.nonzero(info["_final_obs"])[0]:
                    nxt[i] = info["final_obs"][i]
            with torch.no_grad():
                target = torch.as_tensor(reward, dtype=torch.float32)
                target += (
                    cfg.gamma * torch.as_tensor(~term, dtype=torch.float32) * value(torch.from_numpy(nxt))
                )
            delta = target - value(o)
            v_opt.zero_grad(set_to_none=True)
            (0.5 * delta.pow(2).mean()).backward()
            v_opt.step()
            p_loss = -(policy.log_prob(o, actions) * delta.detach()).mean()
            opt.zero_grad(set_to_none=True)
            p_loss.backward()
            opt.step()
            ep_ret += reward
            for i in np.nonzero(term | trunc)[0]:
                hist.episode_return.append(float(ep_ret[i]))
                hist.episode_step.append(steps)
                ep_ret[i] = 0.0
    finally:
        envs.close()
    hist.seconds = time.perf_counter() - t0
    return hist
