"""Group policy optimization without a critic: GRPO, Dr. GRPO and RLOO on one rollout (survey 3 and 4.2).

For each prompt the policy samples a *group* of G responses; each response's advantage is its reward compared
with the rest of its group, so no value model is trained. The choices that distinguish the methods:

| method | advantage (`rlsurvey.algos.advantages`) | loss averaging | KL to the reference |
|---|---|---|---|
| GRPO (arXiv 2402.03300, eq. 3) | (r − mean) / std | sequence_mean | k3 per token, in the loss |
| Dr. GRPO (arXiv 2503.20783) | r − mean | constant (÷ G·L) | none by default |
| RLOO (arXiv 2402.14740, eq. 5) | r − mean of the others | token or sequence | k1, in the reward |

All three share the clipped importance ratio of PPO (`rlsurvey.algos.policy_loss`), which matters only when a
rollout is reused for several updates (`epochs_per_rollout` > 1 or several minibatches).

Rewards come from any callable `reward_fn(prompts, completions)`: here usually a verifier, such as
`rlsurvey.tasks.arithmetic.verify`, whose answer a program checks instead of a learned reward model. That is
what the reasoning models of the survey's table (o1, DeepSeek-R1, Kimi k1.5) scaled up.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlsurvey.algos.advantages import group_advantages, leave_one_out_advantages, process_advantages
from rlsurvey.algos.policy_loss import (
    AGGREGATIONS,
    IMPORTANCE_LEVELS,
    LOSS_TYPES,
    SAMPLER_CORRECTIONS,
    aggregate,
    aggregate_loss_type,
    clipped_surrogate,
    policy_loss,
    sampler_correction_weights,
)
from rlsurvey.algos.rollout import (
    RewardError,
    RewardFn,
    Rollout,
    collect_rollout,
    disable_dropout,
    merge_rollouts,
    overlong_penalty,
    repeat_prompts,
)
from rlsurvey.checkpoint import (
    StopOnSignal,
    check_finite,
    check_weights,
    load_weights,
    resolve_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from rlsurvey.checks import FieldError, check_fields
from rlsurvey.config_compat import renamed_fields, translate
from rlsurvey.distributed import get_distributed
from rlsurvey.lm.kl import kl_estimate
from rlsurvey.lm.logprobs import response_logprobs
from rlsurvey.progress import tqdm

__all__ = [
    "ADVANTAGES",
    "DR_GRPO_DEFAULTS",
    "GRPOConfig",
    "dr_grpo_config",
    "group_step_advantages",
    "kl_metrics",
    "train_grpo",
]

ADVANTAGES = ("grpo", "dr_grpo", "rloo")


@renamed_fields(
    checkpoint_dir="output_dir", epochs="epochs_per_rollout", minibatch_size="mini_batch_size",
    eval_every="eval_steps",
)  # fmt: skip
@dataclass
class GRPOConfig:
    steps: int = 50  # optimizer rounds (one rollout each)
    prompts_per_step: int = 16  # distinct prompts per rollout
    group_size: int = 8  # G: responses sampled per prompt
    learning_rate: float = 1e-4  # AdamW step size (tiny shipped models; ~1e-6 for billion-parameter models)
    advantage: str = "grpo"  # "grpo" (÷ std), "dr_grpo" (no ÷ std) or "rloo" (leave-one-out baseline)
    aggregation: str = "sequence_mean"  # "sequence_mean" (GRPO), "token_mean" or "constant" (Dr. GRPO)
    clip_eps: float = 0.2  # ε of the clipped ratio
    clip_eps_high: float | None = (
        None  # a larger upper clip (DAPO's clip-higher); None: symmetric; CISPO's cap
    )
    loss_type: str | None = None  # TRL's loss_type (rlsurvey.algos.policy_loss); None: clip + `aggregation`
    importance_sampling_level: str = "token"  # "sequence": GSPO's one ratio per response (needs loss_type)
    sapo_temperature_pos: float = 1.0  # SAPO's gate temperature where A > 0
    sapo_temperature_neg: float = 1.05  # and where A <= 0
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards all agree and sample more prompts
    max_sampling_rounds: int = 3  # rollouts per step at most when refilling (the first one included)
    overlong_buffer: int | None = None  # DAPO's L_cache: soft length penalty in the last this many tokens
    overlong_penalty_factor: float = 1.0  # scale of that penalty (reward units)
    sampler_correction: str | None = None  # with a separate sampler: token_truncate (TIS), token_mask (MIS),
    # sequence_truncate or sequence_mask; None: no correction (TRL: vllm_importance_sampling_mode)
    sampler_correction_cap: float = 3.0  # C, the cap of the importance ratio π_θ / π_sampler
    epochs_per_rollout: int = 1  # passes over each rollout (the GRPO paper's μ; TRL: num_iterations)
    mini_batch_size: int | None = None  # responses per gradient step; None: the whole rollout at once
    kl_coef: float = 0.0  # β; 0 keeps no reference model unless one is passed (then the KL is only logged)
    kl_estimator: str = "k3"  # per-token KL estimator (rlsurvey.lm.kl): k1, k2 or k3
    kl_in_reward: bool = False  # True: subtract β·KL(sequence, k1) from the reward (RLOO); False: add to loss
    max_new_tokens: int = 16  # generation budget L; also the constant of "constant" aggregation
    temperature: float = 1.0  # sampling temperature (log-probs are taken at the same temperature)
    top_k: int = 0  # 0 disables top-k filtering
    top_p: float = 1.0  # 1.0 disables nucleus filtering
    missing_eos_penalty: float | None = None  # subtracted from responses cut at max_new_tokens
    max_grad_norm: float = 1.0  # global gradient-norm clip
    weight_decay: float = 0.0  # AdamW weight decay
    seed: int = 0  # prompt order and sampling
    eval_steps: int = 10  # call eval_fn every this many steps (and at the start and end)
    output_dir: str | None = None  # save the policy here at the end and before stopping on a bad reward
    save_steps: int | None = None  # also save output_dir/checkpoint-<step> every this many steps
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir
    progress: bool = True  # show a progress bar
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError (a FieldError for a number out of range) unless the settings make sense together.
        Runs at construction; the trainer runs it again, for a config changed after it was made."""
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {list(ADVANTAGES)}, got {self.advantage!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {list(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be at least 2 (the rest of a group is its baseline), got {self.group_size}"
            )
        for name in ("steps", "prompts_per_step", "epochs_per_rollout", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.loss_type is not None and self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)} or None, got {self.loss_type!r}")
        if self.importance_sampling_level not in IMPORTANCE_LEVELS:
            raise ValueError(
                f"importance_sampling_level must be one of {list(IMPORTANCE_LEVELS)}, "
                f"got {self.importance_sampling_level!r}"
            )
        if self.importance_sampling_level == "sequence" and self.loss_type is None:
            raise ValueError("importance_sampling_level='sequence' (GSPO) needs a loss_type, e.g. 'grpo'")
        if self.loss_type == "cispo" and self.clip_eps_high is None:
            raise ValueError(
                "loss_type='cispo' needs clip_eps_high, the cap of its importance weight (e.g. 5.0)"
            )
        if self.sampler_correction is not None and self.sampler_correction not in SAMPLER_CORRECTIONS:
            raise ValueError(
                f"sampler_correction must be one of {list(SAMPLER_CORRECTIONS)} or None, "
                f"got {self.sampler_correction!r}"
            )
        if not self.sampler_correction_cap >= 1:
            raise ValueError(f"sampler_correction_cap must be >= 1, got {self.sampler_correction_cap}")
        if self.overlong_buffer is not None and self.overlong_buffer > self.max_new_tokens:
            raise ValueError(
                f"overlong_buffer ({self.overlong_buffer}) must not exceed max_new_tokens "
                f"({self.max_new_tokens})"
            )
        if self.temperature == 0:
            raise FieldError(
                "temperature",
                "temperature must be > 0: at temperature 0 (greedy) the responses of a group are all the "
                "same, so every group advantage is 0 and nothing is learned",
            )
        check_fields(self, {
            "steps": "int>=1", "prompts_per_step": "int>=1", "group_size": "int>=2",
            "epochs_per_rollout": "int>=1", "mini_batch_size": "int>=1", "max_new_tokens": "int>=1",
            "eval_steps": "int>=1", "top_k": "int>=0",
            "learning_rate": ">0", "clip_eps": ">0", "clip_eps_high": ">0", "kl_coef": ">=0",
            "temperature": ">0", "top_p": "(0,1]", "missing_eos_penalty": ">=0", "max_grad_norm": ">0",
            "weight_decay": ">=0", "save_steps": "int>=1", "save_total_limit": "int>=1",
            "sapo_temperature_pos": ">0", "sapo_temperature_neg": ">0", "max_sampling_rounds": "int>=1",
            "overlong_buffer": "int>=1", "overlong_penalty_factor": ">=0", "sampler_correction_cap": ">=1",
        })  # fmt: skip


# Dr. GRPO (arXiv 2503.20783, section 3.2): both of its changes together, the advantage without the 1/std
# (no difficulty bias) and the constant normalizer (no length bias), and no KL term.
DR_GRPO_DEFAULTS = {"advantage": "dr_grpo", "aggregation": "constant", "kl_coef": 0.0}


def dr_grpo_config(**overrides) -> GRPOConfig:
    """A `GRPOConfig` with Dr. GRPO's choices (DR_GRPO_DEFAULTS), any other field overridden by keyword; e.g.
    `dr_grpo_config(steps=30, learning_rate=3e-4)`. Setting one of Dr. GRPO's own fields differently is
    refused: that is no longer Dr. GRPO."""
    from dataclasses import replace

    overrides = translate(GRPOConfig, overrides, stacklevel=2)  # old field names, with a FutureWarning
    unknown = set(overrides) - set(GRPOConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown GRPOConfig fields {sorted(unknown)}; see rlsurvey.algos.grpo.GRPOConfig")
    clash = {k: v for k, v in overrides.items() if k in DR_GRPO_DEFAULTS and v != DR_GRPO_DEFAULTS[k]}
    if clash:
        raise ValueError(f"Dr. GRPO fixes {DR_GRPO_DEFAULTS}; got {clash} (use GRPOConfig for other choices)")
    return replace(GRPOConfig(), **{**DR_GRPO_DEFAULTS, **overrides})


def group_step_advantages(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """The advantage of each response for the estimator `kind` ("grpo", "dr_grpo", "rloo"); [P*G] -> [P*G]."""
    if kind == "grpo":
        return group_advantages(rewards, group_size, scale_by_std=True)
    if kind == "dr_grpo":
        return group_advantages(rewards, group_size, scale_by_std=False)
    if kind == "rloo":
        return leave_one_out_advantages(rewards, group_size)
    raise ValueError(f"advantage must be one of {list(ADVANTAGES)}, got {kind!r}")


def _average(cfg: GRPOConfig, per_token, mask, total_tokens):
    """A per-token term averaged as the config says: `loss_type` when set, else `aggregation`."""
    if cfg.loss_type is None:
        return aggregate(per_token, mask, cfg.aggregation, cfg.max_new_tokens)
    return aggregate_loss_type(per_token, mask, cfg.loss_type, cfg.max_new_tokens, total_tokens)


def kl_metrics(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The KL of the policy to its reference as the trainer logs it, from the log-probs of the sampled tokens:
    "kl", as TRL's GRPOTrainer defines it, the k3 estimator per token averaged over every response token of
    the batch; "kl/sequence_k1", the k1 estimator summed over each response and averaged over responses
    (nats per response, the scale of a KL in the reward). logps, ref_logps, mask: [B, T]."""
    m = mask.to(logps.dtype)
    k3 = kl_estimate(logps, ref_logps, m, "k3")
    k1 = kl_estimate(logps, ref_logps, m, "k1", per_sequence=True)
    return {"kl": (k3.sum() / m.sum().clamp(min=1)).item(), "kl/sequence_k1": k1.mean().item()}


def _informative_rows(scores: torch.Tensor, group_size: int) -> list[int]:
    """The rows of the groups whose rewards are not all equal (dynamic sampling keeps only those)."""
    groups = scores.view(-1, group_size)
    keep = (groups.max(1).values > groups.min(1).values).nonzero().flatten().tolist()
    return [g * group_size + j for g in keep for j in range(group_size)]


def _prompt_sampler(prompts, seed: int) -> Callable[[int], list[str]]:
    if callable(prompts):
        return prompts
    pool = list(prompts)
    if not pool or not all(isinstance(p, str) and p for p in pool):
        raise ValueError("prompts must be a non-empty list of non-empty strings, or a callable n -> prompts")
    return _PromptCycle(pool, seed)


class _PromptCycle:
    """Cycles through a pool in a fresh shuffled order per pass; its state can be saved and restored."""

    def __init__(self, pool: list[str], seed: int):
        self.pool, self.rng, self.order = pool, random.Random(seed), []

    def __call__(self, n: int) -> list[str]:
        out = []
        while len(out) < n:
            if not self.order:
                self.order.extend(self.rng.sample(self.pool, len(self.pool)))
            out.append(self.order.pop())
        return out

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "order": list(self.order)}

    def set_state(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.order = list(state["order"])


def _save(policy, tokenizer, path: str | Path) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def _policy_pass(policy, gen, idx: torch.Tensor, temperature: float, with_entropy: bool = False):
    """log π_θ [b, R] of the rows `idx` of a rollout (with gradient) and their entropy (detached, or None).
    The rows of one group share their prompt, so the prompt is run once per group (same values)."""
    out = response_logprobs(
        policy, gen.prompt_ids[idx], gen.prompt_mask[idx], gen.response_ids[idx], gen.response_mask[idx],
        temperature=temperature, with_entropy=with_entropy, share_prompts=True,
    )  # fmt: skip
    # detached at once, so the entropy's autograd graph is freed before the backward pass
    return out.token_logps, None if out.entropy is None else out.entropy.detach()


def train_grpo(
    policy,
    tokenizer,
    prompts: Sequence[str] | Callable[[int], list[str]],
    reward_fn: RewardFn,
    config: GRPOConfig | None = None,
    reference=None,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    callback: Callable[[dict], None] | None = None,
    sampler=None,
    step_reward_fn: Callable[[list[str], list[str]], list[tuple[list[int], list[float]]]] | None = None,
    rollout_fn: Callable[..., Rollout] | None = None,
) -> list[dict]:
    """Train `policy` in place with group advantages; returns one dict of metrics per step.

    step_reward_fn: process supervision (DeepSeekMath, arXiv 2402.03300, section 4.1.3): called with the
    rollout's prompts and completions, it returns per response (the response-token indices where its steps
    end, their rewards), e.g. a process reward model's step scores (`rlsurvey.rewards.process.
    prm_step_rewards`); the advantages are then `process_advantages` per token, and `reward_fn` is only
    logged ("reward"). Logged: "process/step_reward", the mean step reward.

    prompts: a pool to cycle through in a shuffled order, or a function `n -> list of n prompts`.
    rollout_fn: what samples and scores a batch, with `collect_rollout`'s arguments (its default); e.g.
    `functools.partial(rlsurvey.algos.multiturn.collect_episodes, env=env)` for multi-turn episodes with a
    tool, whose observation tokens the rollout's action mask leaves out of the loss, the KL and the entropy.
    reference: the frozen policy for the KL term; None with kl_coef > 0 copies `policy` before training. Given
    with kl_coef = 0, the KL to it is measured and logged (`kl_metrics`: "kl" and "kl/sequence_k1") but not
    penalized: a run without the KL term can then be compared with one that has it.
    eval_fn: called with the policy at step 0, every `eval_steps` steps and at the end; its dict is logged
    under "eval/..." keys (held-out accuracy, say).

    callback(row): called with each history row as soon as it exists (the CLI appends it to metrics.jsonl).
    Checkpoints: with `output_dir` and `save_steps`, checkpoint-<step> directories (policy, optimizer,
    prompt order, generators) are written atomically; `resume_from_checkpoint` ("latest" or a path)
    continues exactly as the uninterrupted run would (pass the same starting policy: the reference is its
    copy). A NaN or infinite loss or gradient raises NonFiniteLossError before the update; SIGINT or SIGTERM
    saves a checkpoint and raises TrainingInterrupted.

    sampler: a separate generator, such as `rlsurvey.algos.sampler.MismatchedSampler` (anything with a
    `.model` to sample from and `.sync(policy)`), synced before every rollout; the update then runs on π_θ
    with the old log-probs recomputed by the policy, and `sampler_correction` reweights or masks the tokens
    by π_θ / π_sampler. Logged: sampler/logprob_gap, sampler/is_ratio_mean, sampler/masked_frac.

    Metric names follow TRL's GRPO trainer where one exists: reward, reward_std, frac_reward_zero_std,
    completions/mean_length, kl (TRL's: per-token k3, averaged over tokens), entropy, clip_ratio, loss;
    "kl/sequence_k1" is the per-response KL in nats.

    Several processes (`accelerate launch --num_processes N script.py`, see `rlsurvey.distributed`): each
    process samples the groups of its prompts_per_step / N prompts with its own seed, the gradients are
    averaged by DDP, metrics are averaged over the processes, and only the main process saves.
    """
    cfg = config or GRPOConfig()
    cfg.validate()
    if step_reward_fn is not None and rollout_fn is not None:
        raise ValueError("step_reward_fn (process rewards) reads single-turn responses; not with rollout_fn")
    if step_reward_fn is not None and (cfg.kl_in_reward or cfg.dynamic_sampling):
        raise ValueError(
            "step_reward_fn (process rewards) works with the KL in the loss and without dynamic sampling; "
            f"got kl_in_reward={cfg.kl_in_reward}, dynamic_sampling={cfg.dynamic_sampling}"
        )
    disable_dropout(policy)
    if reference is not None and reference is policy:
        raise ValueError(
            "reference must be a separate copy of the policy (it is frozen), got the policy itself"
        )
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError(
            "policy has no parameter with requires_grad=True; was it copied from a frozen reference? "
            "Copy the policy before passing the copy as `reference`, or call policy.requires_grad_(True)"
        )
    if cfg.kl_coef > 0 and reference is None:
        reference = copy.deepcopy(policy)
    if reference is not None:
        reference.eval().requires_grad_(False)
    dist = get_distributed(cfg.distributed)
    world = dist.world_size
    if cfg.prompts_per_step % world or (cfg.mini_batch_size or 0) % world:
        raise ValueError(
            f"on {world} processes prompts_per_step and mini_batch_size must be multiples of {world}, got "
            f"{cfg.prompts_per_step} and {cfg.mini_batch_size}"
        )
    dist.place(policy)
    dist.place(reference)
    next_prompts = _prompt_sampler(prompts, cfg.seed)
    # foreach: one batched update over all tensors; PyTorch picks it only on CUDA by default, but on a CPU it
    # also beats the per-tensor loop (about 10 ms a step for the shipped models)
    opt = torch.optim.AdamW(
        policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, foreach=True
    )
    opt = dist.prepare(opt, generates=True, policy=policy)
    gen_seed = random.Random(cfg.seed + 1)
    history: list[dict] = []
    start, last_checkpoint = 1, None
    resume = resolve_checkpoint(cfg.resume_from_checkpoint, cfg.output_dir)
    if resume is not None:
        load_weights(policy, resume)
        state, own = restore_checkpoint(resume, opt)
        if not callable(prompts):
            next_prompts.set_state(own["prompts"])
        gen_seed.setstate(own["gen_seed"])
        start, history, last_checkpoint = int(state["step"]) + 1, list(state["history"]), resume

    def checkpoint(step: int) -> Path | None:
        if not dist.is_main:
            return None
        check_weights(policy, step, last_checkpoint)
        own = {"gen_seed": gen_seed.getstate()}
        if not callable(prompts):
            own["prompts"] = next_prompts.state()
        state = {"config": asdict(cfg), "history": history}
        write = functools.partial(_save, policy, tokenizer)
        return save_checkpoint(cfg.output_dir, step, write, state, own, cfg.save_total_limit, opt)

    def log(row: dict) -> None:
        history.append(row)
        if callback is not None:
            callback(row)

    def evaluate(step: int) -> dict:
        if eval_fn is None:
            return {}
        was_training = policy.training
        policy.eval()
        with torch.no_grad():
            out = eval_fn(policy)
        policy.train(was_training)
        return {f"eval/{k}": v for k, v in out.items()} | {"step": step}

    if eval_fn is not None and start == 1:
        log(evaluate(0))
    policy.train()
    bar = tqdm(
        range(start, cfg.steps + 1),
        desc="GRPO" if cfg.advantage != "rloo" else "RLOO",
        disable=not cfg.progress,
    )
    with StopOnSignal() as stop:
        n = cfg.prompts_per_step * cfg.group_size // world  # this process's responses
        mb_size = (cfg.mini_batch_size or cfg.prompts_per_step * cfg.group_size) // world
        mb = mb_size
        # One update per rollout: the update's own forward pass sees the weights that sampled, so it
        # supplies π_old and the rollout skips its log-prob pass (the ratio is then exactly 1, as in TRL's
        # GRPOTrainer).
        single_pass = cfg.epochs_per_rollout == 1 and mb >= n
        temp = cfg.temperature if cfg.temperature > 0 else 1.0

        def sample(n_prompts: int):
            batch = repeat_prompts(dist.shard(next_prompts(n_prompts)), cfg.group_size)
            seed = (gen_seed.randrange(2**31) + 7919 * dist.rank) % 2**31  # each process its own samples
            if sampler is not None:
                sampler.sync(policy)
            try:
                roll = (rollout_fn or collect_rollout)(
                    policy if sampler is None else sampler.model, tokenizer, batch, reward_fn, reference,
                    cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, seed,
                    missing_eos_penalty=cfg.missing_eos_penalty,
                    score_policy=not single_pass or sampler is not None,
                )  # fmt: skip
            except RewardError:
                if cfg.output_dir and dist.is_main:
                    _save(policy, tokenizer, Path(cfg.output_dir) / "last-good")
                raise
            if cfg.overlong_buffer is not None:
                g = roll.gen
                pen = overlong_penalty(
                    g.response_mask.sum(1), g.finished, cfg.max_new_tokens, cfg.overlong_buffer
                )
                roll.scores = roll.scores + cfg.overlong_penalty_factor * pen.to(roll.scores.device)
            return roll

        for step in bar:
            roll = sample(cfg.prompts_per_step)
            sampled_groups, rounds = roll.scores.numel() // cfg.group_size, 1
            if cfg.dynamic_sampling:  # keep the groups with a signal; refill, a bounded number of times
                kept = [roll.select(_informative_rows(roll.scores, cfg.group_size))]
                have = kept[0].scores.numel() // cfg.group_size
                while have < cfg.prompts_per_step // world and rounds < cfg.max_sampling_rounds:
                    more = sample(cfg.prompts_per_step)
                    rounds, sampled_groups = (
                        rounds + 1,
                        sampled_groups + more.scores.numel() // cfg.group_size,
                    )
                    rows = _informative_rows(more.scores, cfg.group_size)
                    rows = rows[: (cfg.prompts_per_step // world - have) * cfg.group_size]
                    kept.append(more.select(rows))
                    have += len(rows) // cfg.group_size
                if have > 0:  # else: the last rollout as it is (every advantage 0, so no step is taken)
                    roll = merge_rollouts([k for k in kept if k.scores.numel()], tokenizer.pad_token_id)
            mask = roll.mask
            n = roll.scores.numel()
            mb = min(mb_size, n)  # single_pass stays as decided for the full batch (the rollout was taken so)
            g = roll.gen
            first = None
            if single_pass:
                first = dist.run(_policy_pass, policy, g, torch.arange(n, device=mask.device), temp, True)
                old_logps, entropy = first[0].detach(), first[1]
            elif sampler is not None:  # π_old is the trainer's policy, not the sampler that drew the tokens
                with torch.no_grad():
                    old_logps, entropy = _policy_pass(
                        policy, g, torch.arange(n, device=mask.device), temp, True
                    )
            else:
                old_logps, entropy = roll.logprobs, roll.entropy
            weights, sampler_stats = None, {}
            if sampler is not None:
                weights, sampler_stats = sampler_correction_weights(
                    old_logps, roll.logprobs, mask, cfg.sampler_correction or "token_truncate",
                    cfg.sampler_correction_cap,
                )  # fmt: skip
                if cfg.sampler_correction is None:
                    weights = None  # measured, not applied
                    sampler_stats["sampler/masked_frac"] = torch.zeros(())
            rewards = roll.scores.to(mask.device).float()
            seq_kl = None
            if roll.ref_logprobs is not None:
                seq_kl = kl_estimate(old_logps, roll.ref_logprobs, mask, "k1", per_sequence=True)
            if cfg.kl_in_reward and seq_kl is not None:
                rewards = rewards - cfg.kl_coef * seq_kl
            process_stats = {}
            if step_reward_fn is None:
                adv = group_step_advantages(rewards, cfg.group_size, cfg.advantage)
            else:
                lengths_now = mask.sum(1).tolist()
                ends, step_r = [], []
                for (idx, rs), n_tok in zip(step_reward_fn(list(g.prompts), list(g.texts)), lengths_now):
                    kept = [(k, r) for k, r in zip(idx, rs) if k < n_tok]  # past the end: cut, no EOS
                    ends.append([k for k, _ in kept])
                    step_r.append([r for _, r in kept])
                adv = process_advantages(step_r, ends, cfg.group_size, mask.shape[1]).to(mask.device)
                flat = [float(r) for rs in step_r for r in rs]
                process_stats["process/step_reward"] = sum(flat) / max(1, len(flat))

            stats: dict[str, list[float]] = {"loss": [], "clip_ratio": [], "kl_loss": []}
            for _ in range(cfg.epochs_per_rollout):
                order = torch.randperm(n) if mb < n else torch.arange(n)
                for i in range(0, n, mb):
                    idx = order[i : i + mb].to(mask.device)
                    new_logps = (
                        first[0] if first is not None else dist.run(_policy_pass, policy, g, idx, temp)[0]
                    )
                    m_idx = mask[idx]
                    w_idx = None if weights is None else weights[idx]
                    if cfg.loss_type is None:
                        per_token, pstats = clipped_surrogate(
                            new_logps, old_logps[idx], adv[idx], m_idx, cfg.clip_eps, cfg.clip_eps_high
                        )
                        clip_frac = pstats["policy/clipfrac_avg"]
                        if w_idx is not None:
                            per_token = per_token * w_idx
                        loss = _average(cfg, per_token, m_idx, mask.sum())
                    else:
                        loss, pstats = policy_loss(
                            new_logps, old_logps[idx], adv[idx], m_idx, cfg.loss_type, cfg.clip_eps,
                            cfg.clip_eps_high, cfg.importance_sampling_level, cfg.max_new_tokens,
                            num_items=mask.sum(), sapo_temperature_pos=cfg.sapo_temperature_pos,
                            sapo_temperature_neg=cfg.sapo_temperature_neg, token_weights=w_idx,
                        )  # fmt: skip
                        clip_frac = pstats.get("clip_ratio/region_mean", pstats.get("cispo_clip_ratio", 0.0))
                    if cfg.kl_coef > 0 and not cfg.kl_in_reward:
                        kl_tok = kl_estimate(new_logps, roll.ref_logprobs[idx], m_idx, cfg.kl_estimator)
                        stats["kl_loss"].append(_average(cfg, kl_tok.detach(), m_idx, mask.sum()).item())
                        loss = loss + cfg.kl_coef * _average(cfg, kl_tok, m_idx, mask.sum())
                    opt.zero_grad(set_to_none=True)
                    # the mean over all processes' tokens (token_mean) or responses (the other aggregations)
                    token_level = cfg.aggregation == "token_mean" if cfg.loss_type is None else (
                        cfg.loss_type in ("bnpo", "dapo", "cispo"))  # fmt: skip
                    count = mask[idx].sum() if token_level else len(idx)
                    dist.backward(loss * dist.share(count) if world > 1 else loss)
                    norm = dist.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                    row = {"loss": loss.item(), "grad_norm": float(norm)}  # checked before the update
                    check_finite(row, step, ("loss", "grad_norm"), last_checkpoint)
                    opt.step()
                    stats["loss"].append(loss.item())
                    stats["clip_ratio"].append(float(clip_frac))

            grouped = roll.scores.view(-1, cfg.group_size)
            lengths = mask.sum(1)
            row = {
                "step": step,
                "reward": roll.scores.mean().item(),
                "reward_std": grouped.std(1).mean().item(),
                "frac_reward_zero_std": (grouped.std(1) == 0).float().mean().item(),
                "completions/mean_length": lengths.mean().item(),
                "completions/clipped_ratio": (~g.finished).float().mean().item(),
                "entropy": ((entropy * mask).sum() / mask.sum().clamp(min=1)).item(),
                "clip_ratio": sum(stats["clip_ratio"]) / len(stats["clip_ratio"]),
                "loss": sum(stats["loss"]) / len(stats["loss"]),
            }
            if roll.ref_logprobs is None:
                row.update({"kl": math.nan, "kl/sequence_k1": math.nan})
            else:
                row.update(kl_metrics(old_logps, roll.ref_logprobs, mask))
            row.update({k: float(v) for k, v in sampler_stats.items()})
            row.update(process_stats)
            if cfg.dynamic_sampling:  # the share of sampled groups dropped for carrying no signal
                row["dynamic_sampling/frac_dropped"] = 1.0 - have / sampled_groups
                row["dynamic_sampling/rounds"] = float(rounds)
            if cfg.overlong_buffer is not None:
                row["completions/overlong_penalized"] = (
                    ((lengths > cfg.max_new_tokens - cfg.overlong_buffer) | ~g.finished).float().mean().item()
                )
            if stats["kl_loss"]:
                row["kl_loss"] = sum(stats["kl_loss"]) / len(stats["kl_loss"])
            row = dist.mean_metrics(row)
            log(row)
            bar.set_postfix(reward=f"{row['reward']:.3f}", len=f"{row['completions/mean_length']:.1f}")
            if eval_fn is not None and (step % cfg.eval_steps == 0 or step == cfg.steps):
                log(evaluate(step))
            if cfg.output_dir and cfg.save_steps and step % cfg.save_steps == 0:
                last_checkpoint = checkpoint(step) or last_checkpoint
            stop.stop_if_requested(step, functools.partial(checkpoint, step) if cfg.output_dir else None)
    bar.close()
    policy.eval()
    if cfg.output_dir and dist.is_main:
        _save(policy, tokenizer, cfg.output_dir)
        (Path(cfg.output_dir) / "grpo_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return history
