"""Training and evaluating reward models on pairwise preferences with the Bradley-Terry model (survey 4.1).

Bradley and Terry (1952) model the probability that response y_w is preferred to y_l as a logistic function
of the difference of their scores; InstructGPT (arXiv 2203.02155, eq. 1) fits a reward model by maximizing
that likelihood:

    P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)),     L(φ) = −E log σ(r_φ(x, y_w) − r_φ(x, y_l) − m)

The optional margin m (Llama 2, arXiv 2307.09288, eq. 2) asks for a larger gap on pairs the labeler was sure
about. Because only differences enter the loss, a reward model is defined up to a constant per prompt.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from rlsurvey.checkpoint import (
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
from rlsurvey.progress import tqdm
from rlsurvey.rewards.reward_model import RewardModel

__all__ = [
    "RewardTrainingConfig",
    "bradley_terry_loss",
    "calibration",
    "evaluate_reward_model",
    "train_reward_model",
]


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | float | None = None
) -> tuple[torch.Tensor, dict]:
    """−mean log σ(r_w − r_l − m); returns `(loss, metrics)` with TRL's accuracy and margin names.

    | argument | shape | meaning |
    |---|---|---|
    | chosen_rewards, rejected_rewards | [B] | rewards of the preferred and the other response |
    | margin | [B] or scalar | optional required gap m |
    """
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.dim() != 1:
        raise ValueError(
            f"chosen_rewards {tuple(chosen_rewards.shape)} and rejected_rewards "
            f"{tuple(rejected_rewards.shape)} must both be [B]"
        )
    diff = chosen_rewards - rejected_rewards
    target = diff if margin is None else diff - torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
    loss = -F.logsigmoid(target).mean()
    with torch.no_grad():
        metrics = {
            "accuracy": (diff > 0).float().mean(),
            "margin": diff.mean(),
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
        }
    return loss, metrics


def calibration(probabilities: torch.Tensor, outcomes: torch.Tensor, bins: int = 10) -> dict:
    """Reliability of predicted preference probabilities.

    probabilities [N]: the model's P(first ≻ second); outcomes [N]: 1 where the first was preferred.
    Returns the expected calibration error (the bin-weighted mean |accuracy − confidence|), and per bin the
    mean predicted probability, the observed frequency and the count, for a reliability plot.
    """
    p, y = probabilities.double().flatten(), outcomes.double().flatten()
    if p.shape != y.shape:
        raise ValueError(f"probabilities {tuple(p.shape)} and outcomes {tuple(y.shape)} must match")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    which = torch.clamp((p * bins).long(), max=bins - 1)
    mean_p, freq, count = [], [], []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        count.append(n)
        if n == 0:
            mean_p.append(math.nan)
            freq.append(math.nan)
            continue
        mean_p.append(p[sel].mean().item())
        freq.append(y[sel].mean().item())
        ece += n / len(p) * abs(mean_p[-1] - freq[-1])
    return {"ece": ece, "mean_predicted": mean_p, "observed": freq, "count": count}


@renamed_fields(epochs="num_epochs")
@dataclass
class RewardTrainingConfig:
    learning_rate: float = 1e-3  # AdamW step size; tiny models like a large one, 7B models ~1e-5
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_size: int = 32  # preference pairs per optimizer step
    num_epochs: int = 2  # passes over the pairs (TRL: num_train_epochs)
    max_length: int | None = 128  # truncate prompt + response to this many tokens (None: no truncation)
    margin_column: str | None = None  # a dataset column holding a per-pair margin m, if any
    center_rewards_coefficient: float = 0.0  # weight of mean((r_c + r_r)^2), as TRL: pins the free constant
    # near 0 without shrinking the margin r_c - r_r (Eisenstein et al., arXiv 2312.09244)
    max_grad_norm: float = 1.0  # global gradient-norm clip
    seed: int = 0  # shuffling seed
    progress: bool = True  # show a progress bar
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes
    output_dir: str | None = None  # checkpoints go here as checkpoint-<step> (HF directories)
    save_steps: int | None = None  # save a checkpoint every this many steps (None: never)
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir

    def __post_init__(self):
        check_fields(self, {
            "learning_rate": ">0", "weight_decay": ">=0", "batch_size": "int>=1", "num_epochs": "int>=1",
            "max_length": "int>=2", "center_rewards_coefficient": ">=0", "max_grad_norm": ">0",
            "save_steps": "int>=1", "save_total_limit": "int>=1",
        })  # fmt: skip


def _pairs(dataset) -> tuple[list[str], list[str], list[str]]:
    cols = set(dataset.column_names)
    need = {"prompt", "chosen", "rejected"}
    if not need <= cols:
        raise ValueError(f"the dataset needs columns {sorted(need)}; it has {sorted(cols)}")
    prompts, chosen, rejected = list(dataset["prompt"]), list(dataset["chosen"]), list(dataset["rejected"])
    if any(not c or not r for c, r in zip(chosen, rejected, strict=True)):
        raise ValueError("the dataset has an empty chosen or rejected response")
    return prompts, chosen, rejected


def _pair_rewards(model: RewardModel, prompts, chosen, rejected, max_length):
    enc = model.tokenize(list(prompts) * 2, list(chosen) + list(rejected), max_length=max_length)
    r = model(**enc)  # one forward for both halves
    return r[: len(prompts)], r[len(prompts) :]


def _pair_loss(model, config, idx, prompts, chosen, rejected, margins):
    """The Bradley-Terry loss (plus the centring term) of the pairs `idx`: (loss, metrics)."""
    rc, rr = _pair_rewards(
        model,
        [prompts[j] for j in idx],
        [chosen[j] for j in idx],
        [rejected[j] for j in idx],
        config.max_length,
    )
    m = None if margins is None else margins[idx].to(rc.device)
    loss, metrics = bradley_terry_loss(rc, rr, m)
    # the share of this batch's sequences cut to max_length (from the left of the prompt; EOS kept)
    metrics["truncated_frac"] = torch.tensor(model.last_truncated / (2 * len(idx)))
    if config.center_rewards_coefficient:
        loss = loss + config.center_rewards_coefficient * (rc + rr).pow(2).mean()
    return loss, metrics


def train_reward_model(
    model: RewardModel, dataset, config: RewardTrainingConfig | None = None, callback=None
) -> list[dict]:
    """Fit `model` to the pairs of `dataset` (columns prompt, chosen, rejected) by the Bradley-Terry loss.

    Returns the history: one dict of metrics per optimizer step (loss, accuracy, margin, truncated_frac: the
    share of sequences cut to max_length, grad_norm). The model keeps max_length for scoring.
    callback(row) gets each row as soon as it exists (the CLI appends it to metrics.jsonl).

    Checkpoints: with `output_dir` and `save_steps`, checkpoint-<step> directories are written atomically
    (the model, optimizer, data order and generators); `resume_from_checkpoint` (a path, or "latest")
    continues such a run exactly as if it had not stopped. A NaN or infinite loss or gradient raises
    NonFiniteLossError before the update; SIGINT or SIGTERM saves a checkpoint and raises
    TrainingInterrupted.

    On several processes (`accelerate launch --num_processes N script.py`, see `rlsurvey.distributed`)
    `batch_size` stays the global batch: each process scores its slice, DDP averages the gradients so that
    they equal the whole batch's, and the logged metrics are those of the whole batch.
    """
    config = config or RewardTrainingConfig()
    prompts, chosen, rejected = _pairs(dataset)
    margins = None if config.margin_column is None else torch.tensor(dataset[config.margin_column]).float()
    dist = get_distributed(config.distributed)
    dist.place(model)
    model.max_length = config.max_length  # saved with the model: scoring cuts pairs as training does
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    opt = dist.prepare(opt, model=model)
    g = torch.Generator().manual_seed(config.seed)
    n = len(prompts)
    per_epoch = math.ceil(n / config.batch_size)
    steps = config.num_epochs * per_epoch
    history: list[dict] = []
    step, last_checkpoint = 0, None
    epoch_start = g.get_state()  # the generator before this epoch's shuffle: enough to redo the order
    resume = resolve_checkpoint(config.resume_from_checkpoint, config.output_dir)
    if resume is not None:
        load_weights(model.model, resume)
        state, own = restore_checkpoint(resume, opt)
        step, history, last_checkpoint = int(state["step"]), list(state["history"]), resume
        epoch_start = own["epoch_start"]
        g.set_state(own["generator"])

    def checkpoint() -> Path | None:
        if not dist.is_main:
            return None
        check_weights(model, step, last_checkpoint)
        own = {"epoch_start": epoch_start, "generator": g.get_state()}
        state = {"config": asdict(config), "history": history}
        return save_checkpoint(
            config.output_dir, step, model.save_pretrained, state, own, config.save_total_limit, opt
        )

    model.train()
    bar = tqdm(total=steps, initial=step, desc="reward model", disable=not config.progress)
    with StopOnSignal() as stop:
        for epoch in range(step // per_epoch if step < steps else config.num_epochs, config.num_epochs):
            skip = step - epoch * per_epoch  # batches of this epoch already done (a resumed run)
            if skip == 0:
                epoch_start = g.get_state()
            else:
                g.set_state(epoch_start)
            order = torch.randperm(n, generator=g).tolist()
            for i in range(skip * config.batch_size, n, config.batch_size):
                batch = order[i : i + config.batch_size]
                idx = dist.shard(batch)  # this process's pairs (all of them on one process)
                opt.zero_grad(set_to_none=True)
                if idx:
                    loss, metrics = dist.run(
                        _pair_loss, model, config, idx, prompts, chosen, rejected, margins
                    )
                    row = {"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}}
                else:  # more processes than pairs left: this one still joins the gradient all-reduce
                    loss, row = dist.zero_loss(model), {}
                # mean over this process's pairs -> its part of the mean over the batch (see distributed.py)
                dist.backward(
                    loss * (len(idx) / len(batch) * dist.world_size) if dist.world_size > 1 else loss
                )
                norm = dist.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                row = dist.sum_metrics({k: v * len(idx) / len(batch) for k, v in row.items()})
                row["grad_norm"] = float(norm)  # before clipping, of the whole batch's gradient
                check_finite(row, step + 1, ("loss", "grad_norm"), last_checkpoint)  # before the update
                opt.step()
                step += 1
                history.append(row)
                if callback is not None:
                    callback({"step": step, **row})
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
                if config.output_dir and config.save_steps and step % config.save_steps == 0:
                    last_checkpoint = checkpoint() or last_checkpoint
                stop.stop_if_requested(step, checkpoint if config.output_dir else None)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def evaluate_reward_model(model: RewardModel, dataset, batch_size: int = 128, bins: int = 10) -> dict:
    """Pairwise accuracy, mean margin, and calibration of σ(r_w − r_l) against the labels.

    Calibration is measured on both orders of each pair (P(w ≻ l) with outcome 1 and P(l ≻ w) with outcome 0),
    so the reliability curve spans [0, 1] rather than only its upper half.
    """
    prompts, chosen, rejected = _pairs(dataset)
    rc = model.score(prompts, chosen, batch_size)
    rr = model.score(prompts, rejected, batch_size)
    diff = rc - rr
    p = torch.sigmoid(diff)
    cal = calibration(torch.cat([p, 1 - p]), torch.cat([torch.ones_like(p), torch.zeros_like(p)]), bins)
    return {
        "accuracy": (diff > 0).float().mean().item(),
        "margin": diff.mean().item(),
        "ece": cal["ece"],
        "calibration": cal,
        "chosen_rewards": rc,
        "rejected_rewards": rr,
    }
