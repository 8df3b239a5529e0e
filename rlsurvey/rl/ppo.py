"""Proximal policy optimization for classic control, with the implementation details that make it work.

Survey section 2.1 (arXiv 2412.10400): PPO is the policy optimizer inside every RLHF system of the survey's
model table; chapter 03 builds it here, on gymnasium vector environments, before chapter 07 puts it on an LM.
Papers: PPO, Schulman et al. 2017 (arXiv 1707.06347); GAE (arXiv 1506.02438); "The 37 implementation details
of PPO", Huang et al. 2022 (ICLR blog track); "Implementation matters in deep policy gradients",
Engstrom et al. 2020 (arXiv 2005.12729); Adam (arXiv 1412.6980).

Where each detail lives: vectorized environments in `make_envs`; the rollout (sampling only, per step) in
`_rollout`; old log-probs, values, time-limit bootstrapping and GAE (`rlsurvey.rl.returns.gae_advantages`),
batched once per rollout, in `_advantages`; orthogonal initialization in `ActorCritic`; minibatch epochs,
advantage normalization, entropy bonus, global gradient clipping and the target-KL early stop in `_update`;
Adam epsilon and learning-rate annealing in `train`; the clipped surrogate, approximate KL (k1, k3) and clip
fraction in `clipped_policy_loss`; value-loss clipping in `clipped_value_loss`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlsurvey.checks import check_fields
from rlsurvey.config_compat import renamed_fields, renamed_kwargs
from rlsurvey.progress import tqdm
from rlsurvey.rl.returns import gae_advantages

__all__ = [
    "PPOConfig",
    "PPOHistory",
    "ActorCritic",
    "make_envs",
    "check_spaces",
    "clipped_policy_loss",
    "clipped_value_loss",
    "train",
    "evaluate",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@renamed_fields(
    num_minibatches="num_mini_batches", update_epochs="epochs_per_rollout", adam_eps="adam_epsilon",
    gae_lambda="lam", clip_coef="clip_eps", clip_coef_vf="clip_eps_value",
)  # fmt: skip
@dataclass
class PPOConfig:
    env_id: str = "CartPole-v1"  # gymnasium id: Box observations, Discrete or 1-D Box actions
    env_kwargs: dict = field(default_factory=dict)  # passed to gymnasium.make
    total_steps: int = 150_000  # environment steps, summed over the parallel environments
    num_envs: int = 8  # parallel environments in the SyncVectorEnv
    num_steps: int = 64  # steps per environment per rollout; batch = num_envs * num_steps
    num_mini_batches: int = 2  # the batch is split into this many minibatches per epoch
    epochs_per_rollout: int = 4  # passes over each batch (PPO's K)
    learning_rate: float = 1e-3  # Adam step size at the start
    anneal_lr: bool = True  # decay the step size linearly to 0 over training
    adam_epsilon: float = 1e-5  # Adam epsilon; PyTorch's 1e-8 default is less stable here
    gamma: float = 0.99  # discount
    lam: float = 0.9  # GAE lambda: 0 = one-step TD (low variance), 1 = Monte Carlo (no bias)
    clip_eps: float = 0.2  # epsilon of the clipped surrogate: the ratio is kept in [1 - eps, 1 + eps]
    clip_policy: bool = True  # ablation switch: False uses the unclipped surrogate ratio * A
    norm_adv: bool = True  # normalize advantages per minibatch (mean 0, std 1)
    clip_vloss: bool = True  # clip the value update around the rollout's values
    clip_eps_value: float | None = None  # value clipping range; None reuses clip_eps (in reward units)
    vf_coef: float = 0.5  # weight of the value loss
    ent_coef: float = 0.0  # weight of the entropy bonus
    max_grad_norm: float = 0.5  # global gradient-norm clip over all parameters
    target_kl: float | None = None  # stop an update's epochs early once the k3 approx KL exceeds this
    reward_scale: float = 0.1  # rewards are multiplied by this before GAE (returns are logged unscaled)
    hidden: int = 64  # width of both hidden layers of the actor and the critic
    seed: int = 0  # seeds the environments, the network initialization and the sampling
    return_window: int = 20  # episodes averaged for the logged "env/return_window"
    stop_at_return: float | None = None  # end training once that window mean reaches this (None: never)
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self):
        ints = ("total_steps", "num_envs", "num_steps", "num_mini_batches", "epochs_per_rollout", "hidden")
        for name in ints + ("return_window",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive int, got {value!r}")
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {value!r}")
        for name in ("learning_rate", "adam_epsilon", "clip_eps", "max_grad_norm", "reward_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.clip_eps_value is not None and not self.clip_eps_value > 0:
            raise ValueError(f"PPOConfig.clip_eps_value must be > 0 or None, got {self.clip_eps_value!r}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"PPOConfig.target_kl must be > 0 or None, got {self.target_kl!r}")
        if (self.num_envs * self.num_steps) % self.num_mini_batches:
            raise ValueError(
                f"PPOConfig.num_mini_batches must divide the batch num_envs * num_steps = "
                f"{self.num_envs * self.num_steps}, got {self.num_mini_batches}"
            )
        check_fields(self, {
            "total_steps": "int>=1", "num_envs": "int>=1", "num_steps": "int>=1", "hidden": "int>=1",
            "num_mini_batches": "int>=1", "epochs_per_rollout": "int>=1", "learning_rate": ">0",
            "adam_epsilon": ">0", "gamma": "[0,1]", "lam": "[0,1]", "clip_eps": ">0", "clip_eps_value": ">0",
            "vf_coef": ">=0", "ent_coef": ">=0", "max_grad_norm": ">0", "target_kl": ">0",
            "reward_scale": ">0", "return_window": "int>=1",
        })  # fmt: skip


def check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise ValueError unless observations are a 1-D Box and actions Discrete or a 1-D Box."""
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
        raise ValueError(f"observation space must be a 1-D Box, got {observation_space}")
    if isinstance(action_space, gym.spaces.Discrete):
        return
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return
    raise ValueError(f"action space must be Discrete or a 1-D Box, got {action_space}")


def make_envs(env_id: str, num_envs: int, env_kwargs: dict | None = None) -> gym.vector.SyncVectorEnv:
    """A SyncVectorEnv whose finished environments reset in the same step (the final observation is in
    ``info["final_obs"]``), after checking the spaces are ones `ActorCritic` supports."""
    kwargs = dict(env_kwargs or {})
    probe = gym.make(env_id, **kwargs)
    try:
        check_spaces(probe.observation_space, probe.action_space)
    finally:
        probe.close()
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def _layer(n_in: int, n_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, std)  # orthogonal init keeps activations' scale through depth
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(n_in: int, hidden: int, n_out: int, out_std: float) -> nn.Sequential:
    g = math.sqrt(2)
    return nn.Sequential(
        _layer(n_in, hidden, g),
        nn.Tanh(),
        _layer(hidden, hidden, g),
        nn.Tanh(),
        _layer(hidden, n_out, out_std),
    )


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (two tanh layers). Discrete actions: a categorical over logits.
    Box actions: a diagonal Gaussian with a state-independent learned log standard deviation.

    The actor's last layer starts at scale 0.01 so the first policy is near uniform (or near zero-mean),
    the critic's at scale 1.
    """

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: int = 64):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        n_out = int(action_space.n) if self.discrete else int(action_space.shape[0])
        self.critic = _mlp(obs_dim, hidden, 1, 1.0)
        self.actor = _mlp(obs_dim, hidden, n_out, 0.01)
        self.log_std = None if self.discrete else nn.Parameter(torch.zeros(n_out))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """[B, obs_dim] -> V(s) of shape [B]."""
        return self.critic(obs).squeeze(-1)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor):
        """log pi(a|s) and the policy's entropy at s, both [B]. Actions: [B] ints or [B, act_dim] floats."""
        out = self.actor(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return logp, -(logp_all.exp() * logp_all).sum(-1)
        z = (actions - out) * torch.exp(-self.log_std)
        logp = (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(-1)
        entropy = (0.5 + _LOG_SQRT_2PI + self.log_std).sum().expand(obs.shape[0])
        return logp, entropy

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions for a batch of observations: sampled from pi(.|s), or its mode if deterministic.
        torch.distributions is avoided on purpose: its argument checks cost more than the MLP here."""
        out = self.actor(obs)
        if self.discrete:
            if deterministic:
                return out.argmax(-1)
            return (out - torch.empty_like(out).exponential_().log()).argmax(-1)  # Gumbel-max sampling
        return out if deterministic else out + torch.randn_like(out) * self.log_std.exp()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False):
        """(actions, log pi(actions|s)) for a batch of observations."""
        actions = self.sample(obs, deterministic)
        return actions, self.log_prob_entropy(obs, actions)[0]


@renamed_kwargs(clip_coef="clip_eps")
def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.2,
    clip: bool = True,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (eq. 7 of arXiv 1707.06347), as a loss to minimize.

    Equation: L = -mean_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t), with r_t = exp(logp_t - old_logp_t).
    clip=False gives the unclipped surrogate -mean_t r_t A_t (the ablation). Metrics: the clip fraction
    (share of samples where the clipped term is the active one and has zero gradient) and two estimators of
    KL(old || new) from samples of the old policy: k1 = mean(-log r), k3 = mean((r - 1) - log r).

    | argument   | shape | meaning                                |
    |------------|-------|----------------------------------------|
    | logp       | [B]   | log pi_theta(a|s), with gradient        |
    | old_logp   | [B]   | log pi_old(a|s) from the rollout        |
    | advantages | [B]   | A_t (already normalized if wanted)      |
    | loss       | []    | scalar                                  |
    """
    if logp.shape != old_logp.shape or logp.shape != advantages.shape:
        raise ValueError(
            f"logp, old_logp and advantages must share one shape, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)} and {tuple(advantages.shape)}"
        )
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps!r}")
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    if clip:
        clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
        loss = -torch.min(unclipped, clipped).mean()
    else:
        loss = -unclipped.mean()
    with torch.no_grad():
        metrics = {
            "loss/policy_avg": loss.item(),
            "policy/approxkl_k1_avg": (-log_ratio).mean().item(),
            "policy/approxkl_k3_avg": ((ratio - 1.0) - log_ratio).mean().item(),
            "policy/clipfrac_avg": ((ratio - 1.0).abs() > clip_eps).float().mean().item(),
            "val/ratio": ratio.mean().item(),
        }
    return loss, metrics


@renamed_kwargs(clip_coef="clip_eps")
def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_eps: float = 0.2,
    clip: bool = True,
) -> tuple[torch.Tensor, dict]:
    """The critic's loss with PPO-style clipping around the rollout's values (as in OpenAI baselines).

    Equation: L = 0.5 * mean max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2);
    clip=False gives 0.5 * mean (V - R)^2. Metric val/clipfrac_avg: share of samples where V moved more
    than eps from V_old.

    | argument   | shape | meaning                                 |
    |------------|-------|-----------------------------------------|
    | values     | [B]   | V_theta(s), with gradient                |
    | old_values | [B]   | V(s) recorded at rollout time            |
    | returns    | [B]   | the regression target (GAE's A + V_old)  |
    | loss       | []    | scalar                                   |
    """
    if values.shape != old_values.shape or values.shape != returns.shape:
        raise ValueError(
            f"values, old_values and returns must share one shape, got {tuple(values.shape)}, "
            f"{tuple(old_values.shape)} and {tuple(returns.shape)}"
        )
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps!r}")
    unclipped = (values - returns).pow(2)
    if clip:
        moved = (values - old_values).clamp(-clip_eps, clip_eps)
        loss = 0.5 * torch.max(unclipped, (old_values + moved - returns).pow(2)).mean()
    else:
        loss = 0.5 * unclipped.mean()
    with torch.no_grad():
        clipfrac = ((values - old_values).abs() > clip_eps).float().mean().item()
    return loss, {"loss/value_avg": loss.item(), "val/clipfrac_avg": clipfrac}


@dataclass
class PPOHistory:
    """What `train` returns: the per-update metrics, every finished episode, and the trained agent."""

    config: PPOConfig
    agent: ActorCritic
    updates: list = field(default_factory=list)  # one metric dict per update (see `train`)
    episode_step: list = field(default_factory=list)  # global env step at which each episode ended
    episode_time: list = field(default_factory=list)  # seconds since training started, same episodes
    episode_return: list = field(default_factory=list)  # undiscounted, unscaled return of each episode
    episode_length: list = field(default_factory=list)

    def window_mean(self, window: int | None = None) -> np.ndarray:
        """Mean return of the last `window` episodes after each episode (shorter at the start)."""
        w = window or self.config.return_window
        r = np.asarray(self.episode_return, dtype=float)
        c = np.concatenate([[0.0], np.cumsum(r)])
        idx = np.arange(1, r.size + 1)
        lo = np.maximum(0, idx - w)
        return (c[idx] - c[lo]) / (idx - lo)

    def last_mean_return(self, window: int | None = None) -> float:
        """Mean return of the last `window` finished episodes (nan before any episode ends)."""
        w = window or self.config.return_window
        return float(np.mean(self.episode_return[-w:])) if self.episode_return else float("nan")

    def first_reach(self, threshold: float, window: int | None = None) -> dict | None:
        """Env step and wall time at which the mean of the last `window` episodes first reached `threshold`
        (only once `window` episodes exist); None if it never did."""
        w = window or self.config.return_window
        means = self.window_mean(w)
        hits = np.nonzero(means[w - 1 :] >= threshold)[0]
        if hits.size == 0:
            return None
        i = int(hits[0]) + w - 1
        return {"step": int(self.episode_step[i]), "time": float(self.episode_time[i]), "episode": i + 1}


def _buffers(T: int, N: int, obs_dim: int, action_space: gym.Space) -> dict:
    """NumPy rollout storage, [T, N, ...]: writing one step into NumPy costs a fraction of a tensor write,
    and torch.from_numpy turns the filled arrays into tensors without a copy."""
    discrete = isinstance(action_space, gym.spaces.Discrete)
    act_shape = () if discrete else action_space.shape
    return {
        "obs": np.zeros((T, N, obs_dim), np.float32),
        "final_obs": np.zeros(
            (T, N, obs_dim), np.float32
        ),  # observation an episode cut by a time limit reached
        "actions": np.zeros((T, N, *act_shape), np.int64 if discrete else np.float32),
        "rewards": np.zeros((T, N), np.float32),  # scaled by cfg.reward_scale
        "dones": np.zeros((T, N), np.float32),  # 1 where the episode ended with this step (either way)
        "trunc": np.zeros((T, N), bool),  # True where it ended by the time limit alone
    }


def _rollout(cfg, envs, agent, obs, buf, stats, t0):
    """Fill the rollout buffers with num_steps vector steps; return the observation after the last one.
    Only the actor's sampling runs per step; log-probs and values are computed afterwards in one batch."""
    N = envs.num_envs
    low, high = None, None
    if not agent.discrete:
        low, high = envs.single_action_space.low, envs.single_action_space.high
    for t in range(buf["obs"].shape[0]):
        buf["obs"][t] = obs
        actions = agent.sample(torch.from_numpy(buf["obs"][t])).numpy()
        buf["actions"][t] = actions
        obs, reward, term, trunc, info = envs.step(
            np.clip(actions, low, high) if low is not None else actions
        )
        stats["ret"] += reward
        stats["len"] += 1
        stats["step"] += N
        done = term | trunc
        buf["rewards"][t] = reward * cfg.reward_scale
        buf["dones"][t] = done
        buf["trunc"][t] = cut = trunc & ~term  # a time limit is not a terminal state: bootstrap there
        if cut.any():
            buf["final_obs"][t, cut] = np.stack(info["final_obs"][cut])
        if done.any():
            now = time.perf_counter() - t0
            for i in np.nonzero(done)[0]:
                stats["episodes"].append((stats["step"], now, float(stats["ret"][i]), int(stats["len"][i])))
            stats["ret"][done] = 0.0
            stats["len"][done] = 0
    return obs


def _advantages(cfg, agent, buf, next_obs):
    """Batch the per-step work: old log-probs, critic values, time-limit bootstraps, then GAE.
    Returns a dict of flat [T * N, ...] tensors for the update."""
    T, N, obs_dim = buf["obs"].shape
    obs = torch.from_numpy(buf["obs"]).reshape(T * N, obs_dim)
    actions = torch.from_numpy(buf["actions"]).reshape(T * N, *buf["actions"].shape[2:])
    trunc = torch.from_numpy(buf["trunc"])
    with torch.no_grad():
        logp, _ = agent.log_prob_entropy(obs, actions)
        values = agent.value(obs).reshape(T, N)
        next_value = agent.value(torch.from_numpy(np.asarray(next_obs, dtype=np.float32)))
        rewards = torch.from_numpy(buf["rewards"]).clone()
        if trunc.any():
            rewards[trunc] += cfg.gamma * agent.value(torch.from_numpy(buf["final_obs"])[trunc])
        dones = torch.from_numpy(buf["dones"])
        adv, returns = gae_advantages(rewards, values, dones, next_value, cfg.gamma, cfg.lam)
    return {
        "obs": obs,
        "actions": actions,
        "logp": logp,
        "adv": adv.reshape(-1),
        "values": values.reshape(-1),
        "returns": returns.reshape(-1),
    }


def _update(cfg, agent, optimizer, b):
    """`epochs_per_rollout` passes of shuffled minibatches over the batch `b`; returns (mean metrics,
    epochs)."""
    clip_vf = cfg.clip_eps_value if cfg.clip_eps_value is not None else cfg.clip_eps
    sums, count, epochs = {}, 0, 0
    for _ in range(cfg.epochs_per_rollout):
        epochs += 1
        epoch_kl = []
        size = len(b["adv"])
        for idx in torch.randperm(size).split(size // cfg.num_mini_batches):
            logp, entropy = agent.log_prob_entropy(b["obs"][idx], b["actions"][idx])
            mb_adv = b["adv"][idx]
            if cfg.norm_adv:
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            pg_loss, pm = clipped_policy_loss(logp, b["logp"][idx], mb_adv, cfg.clip_eps, cfg.clip_policy)
            new_values = agent.value(b["obs"][idx])
            v_loss, vm = clipped_value_loss(
                new_values, b["values"][idx], b["returns"][idx], clip_vf, cfg.clip_vloss
            )
            ent = entropy.mean()
            loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)  # one norm over all weights
            optimizer.step()
            for k, v in {**pm, **vm, "policy/entropy_avg": ent.item()}.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            epoch_kl.append(pm["policy/approxkl_k3_avg"])
        if cfg.target_kl is not None and np.mean(epoch_kl) > cfg.target_kl:
            break
    return {k: v / count for k, v in sums.items()}, epochs


def train(config: PPOConfig) -> PPOHistory:
    """Train PPO with `config`; returns a `PPOHistory`.

    Each update logs: global_step, time, lr, episodes, env/episodic_return (mean over episodes finished in
    this update, nan if none), env/return_window, loss/policy_avg, loss/value_avg, policy/entropy_avg,
    policy/approxkl_k1_avg, policy/approxkl_k3_avg, policy/clipfrac_avg, val/clipfrac_avg, val/ratio,
    val/explained_variance, epochs (how many ran before a target-KL stop).
    """
    if not isinstance(config, PPOConfig):
        raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
    cfg = config
    envs = make_envs(cfg.env_id, cfg.num_envs, cfg.env_kwargs)
    torch.manual_seed(cfg.seed)
    obs_dim = envs.single_observation_space.shape[0]
    agent = ActorCritic(obs_dim, envs.single_action_space, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=cfg.adam_epsilon, fused=True)
    T, N = cfg.num_steps, cfg.num_envs
    num_updates = max(1, cfg.total_steps // (T * N))
    buf = _buffers(T, N, obs_dim, envs.single_action_space)
    history = PPOHistory(config=cfg, agent=agent)
    stats = {"ret": np.zeros(N), "len": np.zeros(N, dtype=np.int64), "step": 0, "episodes": []}
    obs, _ = envs.reset(seed=cfg.seed)
    t0 = time.perf_counter()
    bar = tqdm(total=num_updates * T * N, disable=not cfg.progress, desc=f"PPO {cfg.env_id}", unit="step")
    try:
        for update in range(num_updates):
            lr = cfg.learning_rate * (1.0 - update / num_updates if cfg.anneal_lr else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            n_before = len(stats["episodes"])
            obs = _rollout(cfg, envs, agent, obs, buf, stats, t0)
            batch = _advantages(cfg, agent, buf, obs)
            metrics, epochs = _update(cfg, agent, optimizer, batch)
            new_eps = stats["episodes"][n_before:]
            for step, when, ret, length in new_eps:
                history.episode_step.append(step)
                history.episode_time.append(when)
                history.episode_return.append(ret)
                history.episode_length.append(length)
            b_values, b_returns = batch["values"], batch["returns"]
            var_r = b_returns.var().item()
            history.updates.append(
                {
                    "global_step": stats["step"],
                    "time": time.perf_counter() - t0,
                    "lr": lr,
                    "episodes": len(history.episode_return),
                    "env/episodic_return": float(np.mean([e[2] for e in new_eps])) if new_eps else math.nan,
                    "env/return_window": history.last_mean_return(),
                    **metrics,
                    # share of the returns' variance the critic explains (1 = perfect, <= 0 = useless)
                    "val/explained_variance": 1 - (b_returns - b_values).var().item() / var_r
                    if var_r > 0
                    else math.nan,
                    "epochs": epochs,
                }
            )
            bar.update(T * N)
            bar.set_postfix(
                episodes=len(history.episode_return), ret=f"{history.last_mean_return():.1f}", refresh=False
            )
            done_early = cfg.stop_at_return is not None and len(history.episode_return) >= cfg.return_window
            if done_early and history.last_mean_return() >= cfg.stop_at_return:
                break
    finally:
        bar.close()
        envs.close()
    return history


def evaluate(agent: ActorCritic, env_id: str, episodes: int = 10, seed: int = 10_000, deterministic=True):
    """Undiscounted returns of `episodes` episodes of `agent` (the mode action if deterministic)."""
    env = gym.make(env_id)
    out = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, done = 0.0, False
            while not done:
                a, _ = agent.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=deterministic)
                a = a[0].numpy()
                if not agent.discrete:
                    a = np.clip(a, env.action_space.low, env.action_space.high)
                obs, r, term, trunc, _ = env.step(a if not agent.discrete else int(a))
                total += float(r)
                done = term or trunc
            out.append(total)
    finally:
        env.close()
    return np.asarray(out)
