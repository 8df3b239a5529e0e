"""PPO for language models as the InstructGPT line does it: a policy, a frozen reference, a value model.

Survey section 4.2 (arXiv 2412.10400). Papers: Ziegler et al., "Fine-tuning language models from human
preferences" (arXiv 1909.08593: the per-token KL penalty and the adaptive KL controller); Stiennon et al.
(arXiv 2009.01325); InstructGPT (arXiv 2203.02155, eq. 2: the objective below); PPO (arXiv 1707.06347,
eq. 7 and 9); GAE (arXiv 1506.02438); "The N+ implementation details of RLHF with PPO" (Huang et al., arXiv
2403.17031: the details this module follows, and TRL's metric names).

The objective is the reward of a sampled response minus β times its KL to the reference,

    max_π  E_{x, y~π}[ r(x, y) − β log π(y|x)/π_ref(y|x) ],                          (InstructGPT eq. 2)

spent as a reward per token: −β k_t on every response token (k1 or k3, `rlsurvey.algos.kl_control`) and
r(x, y) on the last one. A value model V(x, y_<t) (the same backbone with a scalar head, read at every
position) turns those rewards into advantages with GAE (γ = 1, λ = 0.95, `rlsurvey.kernels.gae`), which are
whitened over the rollout; then several epochs of minibatches minimize the clipped surrogate and the clipped
value loss.

One step: `collect_rollout` (sample at temperature T, score, old and reference log-probs at the same T, so
the first ratio is exactly 1) -> `prepare` (values, shaped rewards, advantages) -> `update` (epochs ×
minibatches).
A reward callable that returns the wrong number of scores or a NaN stops training with a `RewardError` before
any update on that batch; the last checkpoint written stays as it was.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from rlsurvey.algos.kl_control import AdaptiveKLController, FixedKLController, shape_rewards
from rlsurvey.algos.policy_loss import aggregate, clipped_surrogate
from rlsurvey.algos.rollout import (
    RewardError,
    RewardFn,
    Rollout,
    collect_rollout,
    compute_rewards,
    disable_dropout,
)
from rlsurvey.checkpoint import (
    CHECKPOINT_PREFIX,
    StopOnSignal,
    check_finite,
    check_weights,
    load_weights,
    resolve_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from rlsurvey.checks import check_fields
from rlsurvey.config_compat import renamed_fields
from rlsurvey.distributed import get_distributed
from rlsurvey.kernels import gae
from rlsurvey.lm.logprobs import response_logprobs
from rlsurvey.progress import tqdm
from rlsurvey.rewards.reward_model import RewardModel, _head
from rlsurvey.rl.ppo import clipped_value_loss

__all__ = [
    "PPOBatch",
    "RLHFPPOConfig",
    "RLHFPPOTrainer",
    "check_same_vocabulary",
    "evaluate_policy",
    "token_values",
    "value_model_from_policy",
]


@renamed_fields(
    ppo_epochs="epochs_per_rollout", adam_eps="adam_epsilon", target_kl="kl_target", cliprange="clip_eps",
    cliprange_value="clip_eps_value",
)  # fmt: skip
@dataclass
class RLHFPPOConfig:
    steps: int = 40  # PPO iterations: one rollout and its update each
    batch_size: int = 64  # prompts per rollout, one response each
    num_mini_batches: int = 2  # the rollout is split into this many minibatches per epoch
    epochs_per_rollout: int = 4  # passes over each rollout (PPO's K; TRL: num_ppo_epochs)
    learning_rate: float = 3e-4  # AdamW step size for policy and value; tiny models like it large, 7B ~1e-6
    adam_epsilon: float = 1e-5  # AdamW epsilon (PyTorch's 1e-8 is less stable with tiny gradients)
    max_grad_norm: float = 1.0  # global gradient-norm clip over policy and value parameters
    max_new_tokens: int = 24  # generation budget per response
    temperature: float = 1.0  # sampling temperature; log-probs, KL and ratios are taken at the same one
    top_k: int = 0  # top-k filter while sampling (0: off)
    top_p: float = 1.0  # nucleus filter while sampling (1.0: off)
    kl_coef: float = 0.05  # β of the per-token KL penalty (its start value when adaptive)
    kl_estimator: str = "k1"  # "k1" (log π − log π_ref, InstructGPT) or "k3" ((ρ − 1) − log ρ, never < 0)
    kl_target: float | None = None  # adaptive β aims at this KL (nats per response); None keeps β fixed
    kl_horizon: int = 10_000  # adaptive controller: samples over which β moves by a factor ~e at full error
    whiten_rewards: bool = False  # rescale shaped rewards to unit variance over the rollout (mean kept)
    whiten_advantages: bool = True  # advantages to mean 0, std 1 over the rollout's response tokens
    gamma: float = 1.0  # discount; 1 because the episode (a response) is short and the score comes at its end
    lam: float = 0.95  # GAE λ: trades the value model's bias against Monte Carlo variance
    clip_eps: float = 0.2  # ε of the clipped policy ratio (TRL: cliprange)
    clip_eps_value: float = 0.2  # the value update is clipped to V_old ± this (in reward units)
    vf_coef: float = 0.1  # weight of the value loss in the joint loss
    ent_coef: float = 0.0  # weight of an entropy bonus (0: none, as in InstructGPT)
    missing_eos_penalty: float | None = None  # subtracted from the score of responses cut without EOS
    output_dir: str | None = None  # checkpoints (policy and value as HF directories) go here
    save_steps: int | None = None  # write a checkpoint every this many steps (None: only at the end)
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir
    seed: int = 0  # prompt order, minibatch order and sampling
    progress: bool = True  # show a progress bar
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_mini_batches", "epochs_per_rollout", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RLHFPPOConfig.{name} must be a positive int, got {value!r}")
        if self.batch_size % self.num_mini_batches:
            raise ValueError(
                f"RLHFPPOConfig.num_mini_batches must divide batch_size={self.batch_size}, "
                f"got {self.num_mini_batches}"
            )
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"RLHFPPOConfig.kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        if not self.temperature > 0:
            raise ValueError(
                f"RLHFPPOConfig.temperature must be > 0 (PPO needs samples), got {self.temperature}"
            )
        for name in ("learning_rate", "clip_eps", "clip_eps_value", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RLHFPPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.kl_coef < 0:
            raise ValueError(f"RLHFPPOConfig.kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_target is not None and not self.kl_target > 0:
            raise ValueError(f"RLHFPPOConfig.kl_target must be > 0 or None, got {self.kl_target}")
        for name in ("gamma", "lam"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"RLHFPPOConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        check_fields(self, {
            "learning_rate": ">0", "adam_epsilon": ">0", "max_grad_norm": ">0", "temperature": ">0",
            "top_k": "int>=0", "top_p": "(0,1]", "kl_coef": ">=0", "kl_target": ">0", "kl_horizon": "int>=1",
            "gamma": "[0,1]", "lam": "[0,1]", "clip_eps": ">0", "clip_eps_value": ">0", "vf_coef": ">=0",
            "ent_coef": ">=0", "missing_eos_penalty": ">=0", "save_steps": "int>=1",
            "save_total_limit": "int>=1",
        })  # fmt: skip


def _vocab_size(model) -> int:
    emb = model.get_input_embeddings()
    return int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size)


def check_same_vocabulary(policy, other, name: str = "reference") -> None:
    """Raise ValueError unless `other` reads the policy's token ids (same embedding size). Log-prob ratios
    and values are computed on the policy's ids, so a model with another vocabulary would silently read
    different tokens."""
    a, b = _vocab_size(policy), _vocab_size(other)
    if a != b:
        raise ValueError(
            f"{name} must share the policy's vocabulary: the policy has {a} token embeddings, {name} has {b}"
        )


def value_model_from_policy(policy, tokenizer) -> RewardModel:
    """A value model: a copy of the policy's backbone with a zero scalar head, as a `RewardModel` (so it saves
    as an HF sequence-classification directory). InstructGPT starts it from the reward model instead; pass
    a trained `RewardModel` as `value_model` to do that."""
    cfg = copy.deepcopy(policy.config)
    cfg.num_labels = 1
    seq = AutoModelForSequenceClassification.from_config(cfg)
    missing = seq.base_model.load_state_dict(policy.base_model.state_dict(), strict=False)
    if missing.missing_keys:
        raise ValueError(f"could not copy the policy's backbone into a value model: {missing.missing_keys}")
    torch.nn.init.zeros_(_head(seq).weight)  # V starts at 0: no made-up value before any return is seen
    if getattr(_head(seq), "bias", None) is not None:
        torch.nn.init.zeros_(_head(seq).bias)
    first = next(policy.parameters())
    return RewardModel(seq.to(device=first.device, dtype=first.dtype), tokenizer)


def token_values(
    value_model: RewardModel, prompt_ids, prompt_mask, response_ids, response_mask
) -> torch.Tensor:
    """V(x, y_<t) for every response position t, read before token t is chosen.

    | argument | shape | meaning |
    |---|---|---|
    | prompt_ids, prompt_mask | [B, P] | left-padded prompts |
    | response_ids, response_mask | [B, R] | right-padded responses |
    | returns | [B, R] | the value head at position P − 1 + t (the state that emits token t) |
    """
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    attn = torch.cat([prompt_mask, response_mask], dim=1).long()
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # positions from each row's first real token, as in generation
    hidden = value_model.model.base_model(
        input_ids=ids, attention_mask=attn, position_ids=pos
    ).last_hidden_state
    v = _head(value_model.model)(hidden).squeeze(-1)  # [B, P + R]
    p, r = prompt_ids.shape[1], response_ids.shape[1]
    return v[:, p - 1 : p + r - 1].float()


@dataclass
class PPOBatch:
    rollout: Rollout  # samples, old and reference log-probs, scores (missing-EOS penalty included)
    values: torch.Tensor  # [B, R] V_old at each response token
    kl: torch.Tensor  # [B, R] per-token KL estimate (k1 or k3), 0 off the mask
    rewards: torch.Tensor  # [B, R] −β k_t, plus the score on the last token (whitened if configured)
    advantages: torch.Tensor  # [B, R] GAE advantages, whitened if configured
    returns: torch.Tensor  # [B, R] GAE returns A_t + V_t: the value target
    kl_coef: float  # β used for this batch


def _prompts_of(prompts) -> list[str]:
    if hasattr(prompts, "column_names"):  # a datasets.Dataset
        if "prompt" not in prompts.column_names:
            raise ValueError(f"the prompt dataset needs a 'prompt' column; it has {prompts.column_names}")
        prompts = prompts["prompt"]
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError(
            f"prompts must be a non-empty list of str or a Dataset, got {type(prompts).__name__}"
        )
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p:
            raise ValueError(f"prompts[{i}] must be a non-empty str, got {p!r}")
    return list(prompts)


class RLHFPPOTrainer:
    """PPO on a causal LM against any reward callable; the policy is trained in place.

    policy, tokenizer: the model to train (dropout is switched off) and its tokenizer (with a pad token).
    reward_fn(prompts, completions) -> one score per completion: a `RewardModel`, a gold function, a judge.
    reference: the frozen model of the KL term; None copies the policy before training.
    value_model: a `RewardModel` read at every token; None copies the policy's backbone with a zero head.
    gold_fn: optional true reward (same signature), logged as "objective/gold" but never optimized.

    Several processes (`accelerate launch --num_processes N script.py`, see `rlsurvey.distributed`):
    `batch_size` stays the global number of prompts; each process samples for its batch_size / N of them with
    its own seed, whitens with the statistics of the whole rollout, weights its loss by its share of the
    minibatch's tokens (so the DDP-averaged gradient is the token mean over all processes), and metrics are
    averaged over the processes; only the main process saves.
    """

    def __init__(
        self,
        policy,
        tokenizer,
        reward_fn: RewardFn,
        config: RLHFPPOConfig | None = None,
        reference=None,
        value_model: RewardModel | None = None,
        gold_fn: RewardFn | None = None,
    ):
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable (prompts, completions) -> scores, got {reward_fn!r}")
        self.config = config or RLHFPPOConfig()
        self.dist = get_distributed(self.config.distributed)
        world, c = self.dist.world_size, self.config
        if c.batch_size % world or (c.batch_size // world) % c.num_mini_batches:
            raise ValueError(
                f"batch_size ({c.batch_size}) must split into {world} processes x num_mini_batches "
                f"({c.num_mini_batches}) equal parts"
            )
        self.policy = disable_dropout(self.dist.place(policy))
        self.tokenizer = tokenizer
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError("tokenizer must have a pad token (see rlsurvey.lm.prepare_tokenizer)")
        if len(tokenizer) > _vocab_size(policy):
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens, the policy only {_vocab_size(policy)}"
            )
        if reference is not None:
            check_same_vocabulary(policy, reference, "reference")
        self.reference = (
            (copy.deepcopy(policy) if reference is None else reference).eval().requires_grad_(False)
        )
        if value_model is None:
            value_model = value_model_from_policy(policy, tokenizer)
        if not isinstance(value_model, RewardModel):
            raise TypeError(f"value_model must be a RewardModel, got {type(value_model).__name__}")
        check_same_vocabulary(policy, value_model.model, "value_model")
        self.value_model = self.dist.place(value_model)
        self.dist.place(self.reference)
        disable_dropout(value_model.model)
        self.reward_fn, self.gold_fn = reward_fn, gold_fn
        c = self.config
        self.kl_ctl = (
            FixedKLController(c.kl_coef)
            if c.kl_target is None
            else AdaptiveKLController(c.kl_coef, c.kl_target, c.kl_horizon)
        )
        params = [p for m in (policy, value_model) for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=c.learning_rate, eps=c.adam_epsilon, weight_decay=0.0)
        self.optimizer = self.dist.prepare(self.optimizer, generates=True, policy=policy, value=value_model)
        self._rng = random.Random(c.seed)
        self._order: list[str] = []
        self.step_count = 0
        self.episodes = 0
        self.last_checkpoint: Path | None = None
        self.history: list[dict] = []

    # ---- one step, in three parts -------------------------------------------------------------------------
    def rollout(self, prompts: Sequence[str]) -> Rollout:
        c = self.config
        seed = (self._rng.randrange(2**31) + 7919 * self.dist.rank) % 2**31  # each process its own samples
        return collect_rollout(
            self.policy, self.tokenizer, prompts, self.reward_fn, self.reference, c.max_new_tokens,
            c.temperature, c.top_k, c.top_p, seed=seed,
            missing_eos_penalty=c.missing_eos_penalty,
        )  # fmt: skip

    @torch.no_grad()
    def prepare(self, roll: Rollout) -> PPOBatch:
        """Values at rollout time, per-token shaped rewards, and (whitened) GAE advantages and returns."""
        c, g = self.config, roll.gen
        self.value_model.eval()
        values = token_values(self.value_model, g.prompt_ids, g.prompt_mask, g.response_ids, g.response_mask)
        mask = roll.mask
        values = values * mask
        beta = float(self.kl_ctl.value)
        rewards, kl = shape_rewards(roll.scores, roll.logprobs, roll.ref_logprobs, mask, beta, c.kl_estimator)
        if c.whiten_rewards:  # over the whole rollout, all processes' responses
            rewards = self.dist.whiten(rewards, mask.bool(), shift_mean=False)
        advantages, returns = gae(rewards, values, mask, c.gamma, c.lam)
        if c.whiten_advantages:
            advantages = self.dist.whiten(advantages, mask.bool())
        return PPOBatch(roll, values, kl, rewards, advantages, returns, beta)

    def minibatch_loss(self, batch: PPOBatch, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The joint loss on the responses `idx`: clipped surrogate (token mean) + vf_coef · clipped value
        loss on the masked tokens − ent_coef · entropy."""
        c, g, roll = self.config, batch.rollout.gen, batch.rollout
        args = (g.prompt_ids[idx], g.prompt_mask[idx], g.response_ids[idx], g.response_mask[idx])
        new = response_logprobs(self.policy, *args, temperature=c.temperature, with_entropy=c.ent_coef > 0)
        mask = roll.mask[idx]
        old, adv = roll.logprobs[idx], batch.advantages[idx]
        per_token, stats = clipped_surrogate(new.token_logps, old, adv, mask, c.clip_eps)
        pg_loss = aggregate(per_token, mask, "token_mean")
        on = mask.bool()
        v_new = token_values(self.value_model, *args)
        vf_loss, vstats = clipped_value_loss(
            v_new[on], batch.values[idx][on], batch.returns[idx][on], c.clip_eps_value
        )
        loss = pg_loss + c.vf_coef * vf_loss
        if c.ent_coef > 0:
            loss = loss - c.ent_coef * aggregate(new.entropy, mask, "token_mean")
        with torch.no_grad():
            ratio = torch.exp(new.token_logps - roll.logprobs[idx])[on]
            metrics = {
                "loss/policy_avg": pg_loss.item(),
                "loss/value_avg": vf_loss.item(),
                "val/clipfrac_avg": vstats["val/clipfrac_avg"],
                "val/ratio_var": ratio.var().item() if ratio.numel() > 1 else 0.0,
                **{k: float(v) for k, v in stats.items()},
            }
        return loss, metrics

    def update(self, batch: PPOBatch) -> dict:
        """`epochs_per_rollout` passes over the rollout in `num_mini_batches` shuffled minibatches; mean
        metrics."""
        c = self.config
        self.policy.train()
        self.value_model.train()
        n = batch.advantages.shape[0]
        size = n // c.num_mini_batches
        gen = torch.Generator().manual_seed(self._rng.randrange(2**31))
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        sums: dict[str, float] = {}
        count = 0
        for _ in range(c.epochs_per_rollout):
            order = torch.randperm(n, generator=gen).to(batch.advantages.device)
            for i in range(0, n, size):
                idx = order[i : i + size]
                loss, metrics = self.dist.run(self.minibatch_loss, batch, idx)
                self.optimizer.zero_grad(set_to_none=True)
                if self.dist.world_size > 1:  # this process's token mean -> its part of the global token mean
                    loss = loss * self.dist.share(batch.rollout.mask[idx].sum())
                self.dist.backward(loss)
                norm = self.dist.clip_grad_norm_(params, c.max_grad_norm)
                check_finite(  # before the update: a NaN would spread into every weight
                    {"loss": loss.item(), "grad_norm": float(norm)}, self.step_count + 1,
                    ("loss", "grad_norm"), self.last_checkpoint,
                )  # fmt: skip
                self.optimizer.step()
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        self.policy.eval()
        self.value_model.eval()
        return {k: v / count for k, v in sums.items()}

    def step(self, prompts: Sequence[str]) -> dict:
        """Rollout, prepare and update on `prompts`; returns the step's metrics (TRL's names)."""
        roll = self.rollout(self.dist.shard(prompts))  # a bad reward raises here, before anything changes
        gold = (
            None
            if self.gold_fn is None
            else compute_rewards(self.gold_fn, roll.gen.prompts, roll.completions)
        )
        batch = self.prepare(roll)
        stats = self.update(batch)
        mask = roll.mask
        seq_kl = batch.kl.sum(1)
        non_score = -batch.kl_coef * seq_kl
        self.step_count += 1
        self.episodes += len(prompts)
        row = {
            "step": self.step_count,
            "episode": self.episodes,
            "objective/kl": seq_kl.mean().item(),
            "objective/entropy": roll.entropy.sum(1).mean().item(),
            "objective/non_score_reward": non_score.mean().item(),
            "objective/rlhf_reward": (roll.scores + non_score).mean().item(),
            "objective/scores": roll.scores.mean().item(),
            "objective/kl_coef": batch.kl_coef,
            "policy/entropy_avg": (roll.entropy.sum() / mask.sum()).item(),
            "val/num_eos_tokens": int(roll.gen.finished.sum()),
            "completions/mean_length": mask.sum(1).mean().item(),
            **stats,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if gold is not None:
            row["objective/gold"] = gold.mean().item()
        if self.dist.world_size > 1:  # the processes' means (equal numbers of responses each)
            row = self.dist.mean_metrics(row)
            row["val/num_eos_tokens"] = round(row["val/num_eos_tokens"] * self.dist.world_size)
        self.kl_ctl.update(row["objective/kl"], len(prompts))
        self.history.append(row)
        return row

    # ---- the loop --------------------------------------------------------------------------------------
    def _next_prompts(self, pool: list[str]) -> list[str]:
        out = []
        while len(out) < self.config.batch_size:
            if not self._order:
                self._order = self._rng.sample(pool, len(pool))
            out.append(self._order.pop())
        return out

    def train(self, prompts, callback: Callable[[RLHFPPOTrainer, dict], None] | None = None) -> list[dict]:
        """Run `config.steps` steps on prompts drawn in shuffled order from `prompts` (a list of str or a
        Dataset with a "prompt" column); `callback(trainer, metrics)` runs after each step. Returns the
        history. On a bad reward it raises `RewardError` naming the last good checkpoint; on a NaN or
        infinite loss, NonFiniteLossError before the update. With `resume_from_checkpoint` ("latest" or a
        path) it first restores a checkpoint (policy, value model, optimizer, KL controller, prompt order,
        generators, history) and goes on as the uninterrupted run would. SIGINT or SIGTERM saves a
        checkpoint (with output_dir) and raises TrainingInterrupted."""
        pool = _prompts_of(prompts)
        c = self.config
        if c.resume_from_checkpoint is not None and self.step_count == 0:
            self.resume(resolve_checkpoint(c.resume_from_checkpoint, c.output_dir))
        bar = tqdm(range(self.step_count, c.steps), desc="PPO", disable=not c.progress)
        with StopOnSignal() as stop:
            for _ in bar:
                try:
                    row = self.step(self._next_prompts(pool))
                except RewardError as exc:
                    where = (
                        f"the last good checkpoint is {self.last_checkpoint}"
                        if self.last_checkpoint
                        else "no checkpoint was written yet (set config.output_dir and save_steps)"
                    )
                    raise RewardError(
                        f"training stopped at step {self.step_count + 1}: {exc}. The policy was not updated "
                        f"on this batch; {where}."
                    ) from exc
                if callback is not None:
                    callback(self, row)
                post = {"score": row["objective/scores"], "kl": row["objective/kl"]}
                if "objective/gold" in row:
                    post["gold"] = row["objective/gold"]
                bar.set_postfix({k: f"{v:.2f}" for k, v in post.items()})
                if c.output_dir and c.save_steps and self.step_count % c.save_steps == 0:
                    self.save_checkpoint()
                stop.stop_if_requested(self.step_count, self.save_checkpoint if c.output_dir else None)
        bar.close()
        if c.output_dir:
            self.save_checkpoint()
        return self.history

    def save_checkpoint(self) -> Path:
        """Write output_dir/checkpoint-<step>: policy/ (causal LM + tokenizer), value/ (sequence
        classification), the optimizer, the KL controller, the prompt order, the generators and
        trainer_state.json, into a temporary sibling renamed into place, so a crash never leaves half a
        checkpoint; only the newest `save_total_limit` are kept. On several processes only the main one
        writes; the others wait for it."""
        c = self.config
        path = Path(c.output_dir) / f"{CHECKPOINT_PREFIX}{self.step_count}"
        if self.dist.is_main:
            check_weights(self.policy, self.step_count, self.last_checkpoint)

            def write(tmp: Path) -> None:
                self.policy.save_pretrained(tmp / "policy", safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / "policy")
                self.value_model.save_pretrained(tmp / "value")

            state = {"episode": self.episodes, "kl_coef": float(self.kl_ctl.value), "config": asdict(c),
                     "history": self.history}  # fmt: skip
            own = {"rng": self._rng.getstate(), "order": list(self._order), "kl_ctl": dict(vars(self.kl_ctl))}
            save_checkpoint(
                c.output_dir, self.step_count, write, state, own, c.save_total_limit, self.optimizer
            )
        self.last_checkpoint = path
        self.dist.wait()
        return path

    def resume(self, path: str | Path) -> None:
        """Restore a checkpoint written by `save_checkpoint` into this trainer."""
        path = Path(path)
        load_weights(self.policy, path / "policy")
        load_weights(self.value_model.model, path / "value")
        state, own = restore_checkpoint(path, self.optimizer)
        self._rng.setstate(own["rng"])
        self._order = list(own["order"])
        vars(self.kl_ctl).update(own["kl_ctl"])
        self.step_count, self.episodes = int(state["step"]), int(state["episode"])
        self.history = list(state["history"])
        self.last_checkpoint = path


@torch.no_grad()
def evaluate_policy(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reference=None,
    reward_fn: RewardFn | None = None,
    gold_fn: RewardFn | None = None,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict:
    """Sample one response per prompt and report the mean reward, gold reward and KL to `reference`.

    KL is the mean over responses of Σ_t (log π − log π_ref) at `temperature`: an unbiased estimate of the
    sequence-level KL(π ‖ π_ref), the x-axis of every gold-against-KL plot in chapters 07 and 09.
    """
    zero = lambda p, c: [0.0] * len(c)  # noqa: E731 - a placeholder when only the gold reward matters
    roll = collect_rollout(
        policy, tokenizer, list(prompts), reward_fn or zero, reference, max_new_tokens, temperature, seed=seed
    )
    out = {"completions": roll.completions, "length": roll.mask.sum(1).mean().item()}
    if reward_fn is not None:
        out["score"] = roll.scores.mean().item()
    if gold_fn is not None:
        out["gold"] = compute_rewards(gold_fn, list(prompts), roll.completions).mean().item()
    out["kl"] = (
        math.nan if roll.ref_logprobs is None else (roll.logprobs - roll.ref_logprobs).sum(1).mean().item()
    )
    return out
