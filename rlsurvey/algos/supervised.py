"""The optimization loop shared by the offline trainers (`SFTTrainer`, `DPOTrainer`).

Both train on a fixed dataset with AdamW, a linear or constant learning-rate schedule with warm-up, gradient
accumulation over micro-batches, gradient clipping, and the checkpoint format of `rlsurvey.checkpoint`. What
differs is the loss: a subclass provides `compute_loss(idx)` -> (loss, metrics) and, when its loss is not a
mean over examples, `micro_weight` (SFT averages over completion tokens).

A subclass's `__init__` calls `_init_model(model, tokenizer, config)`, sets `train_data` (anything with a
length), then calls `_init_optimization(params)`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from rlsurvey.algos.rollout import disable_dropout
from rlsurvey.checkpoint import (
    NonFiniteLossError,
    StopOnSignal,
    check_finite,
    check_weights,
    load_weights,
    resolve_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from rlsurvey.distributed import get_distributed
from rlsurvey.progress import tqdm

__all__ = ["SupervisedTrainer"]


class SupervisedTrainer:
    """Steps, schedule, data order, logging, checkpoints and saving for a loss over a fixed dataset."""

    progress_name = "training"

    def _init_model(self, model, tokenizer, config) -> None:
        """Keep the model, tokenizer and config; place the model for this process; drop dropout if asked."""
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.dist = get_distributed(config.distributed)
        if config.batch_size < self.dist.world_size:
            raise ValueError(
                f"batch_size must be at least the number of processes ({self.dist.world_size}), "
                f"got {config.batch_size}"
            )
        self.dist.place(model)
        self.device = next(model.parameters()).device
        if config.disable_dropout:
            disable_dropout(model)

    def _init_optimization(self, params) -> None:
        c = self.config
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters (requires_grad is False everywhere)")
        per_step = c.batch_size * c.gradient_accumulation_steps
        self.num_steps = c.max_steps or max(1, math.ceil(c.num_epochs * len(self.train_data) / per_step))
        optimizer = torch.optim.AdamW(
            params, lr=c.learning_rate, betas=c.adam_betas, eps=c.adam_epsilon, weight_decay=c.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        self.optimizer = self.dist.prepare(optimizer, model=self.model)
        self.step, self.history = 0, []
        self.last_checkpoint: Path | None = None
        self._order, self._cursor, self._epoch = torch.empty(0, dtype=torch.long), 0, 0
        self._gen = torch.Generator().manual_seed(c.seed)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return step / c.warmup_steps
        if c.lr_scheduler == "constant":
            return 1.0
        return max(0.0, (self.num_steps - step) / max(1, self.num_steps - c.warmup_steps))

    def _next_indices(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self._cursor >= len(self._order):
                size = len(self.train_data)
                shuffled = torch.randperm(size, generator=self._gen) if self.config.shuffle else None
                self._order = torch.arange(size) if shuffled is None else shuffled
                self._cursor, self._epoch = 0, self._epoch + 1
            take = self._order[self._cursor : self._cursor + n - len(out)].tolist()
            self._cursor += len(take)
            out += take
        return out

    # --- hooks -------------------------------------------------------------------------------------------

    def compute_loss(self, idx, data=None) -> tuple[torch.Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def micro_weight(self, local: list[int], batch: list[int]) -> float:
        """This process's micro-batch `local` as a share of the optimizer step's `batch` (the loss of a step
        is the mean over its examples; SFT's is over its completion tokens)."""
        return len(local) / len(batch)

    def after_micro_batch(self, metrics: dict) -> None:
        """Called after each micro-batch's backward pass (β-DPO updates its running baseline here)."""

    def own_state(self) -> dict:
        """What a checkpoint keeps of this trainer beyond weights, optimizer, schedule and data order."""
        return {}

    def set_own_state(self, own: dict) -> None:
        """Restore what `own_state` returned."""

    # --- training ----------------------------------------------------------------------------------------

    def training_step(self) -> dict:
        """One optimizer step over `gradient_accumulation_steps` micro-batches; returns its metrics."""
        c = self.config
        if not self.model.training:  # .train() walks every module: not on every step
            self.model.train()
        idx = self._next_indices(c.batch_size * c.gradient_accumulation_steps)
        sums: dict[str, float] = {}
        micros = [idx[i : i + c.batch_size] for i in range(0, len(idx), c.batch_size)]
        for j, micro in enumerate(micros):
            local = self.dist.shard(micro)  # this process's slice (the whole micro-batch on one process)
            with self.dist.no_sync(j < len(micros) - 1):  # all-reduce the gradients once, after the last
                loss, metrics = self.dist.run(self.compute_loss, local)
                # the mean over the whole batch, whatever the micro-batch sizes; x world size because DDP
                # averages the processes' gradients where the batch mean needs their sum
                weight = self.micro_weight(local, idx)
                self.dist.backward(loss * (weight * self.dist.world_size))
            for k, v in {"loss": loss.detach(), **metrics}.items():
                if not math.isnan(v := float(v)):
                    sums[k] = sums.get(k, 0.0) + weight * v
            self.after_micro_batch(metrics)
        sums = self.dist.sum_metrics(sums)  # each process's weighted part -> the whole batch's
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = self.dist.clip_grad_norm_(params, c.max_grad_norm or float("inf"))
        lr = self.scheduler.get_last_lr()[0]
        try:  # a NaN or infinite loss or gradient: stop before the update spreads it into the weights
            check_finite({**sums, "grad_norm": float(norm)}, self.step + 1, ("loss", "grad_norm"),
                         self.last_checkpoint)  # fmt: skip
            if "loss" not in sums:
                raise NonFiniteLossError(f"stopped at step {self.step + 1}: the loss is NaN")
        except NonFiniteLossError:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {**sums, "grad_norm": float(norm), "learning_rate": lr}

    def train(self, steps: int | None = None, callback=None) -> list[dict]:
        """Run `steps` optimizer steps (default: up to `num_steps`); returns `history`, one dict per logged
        step (the loss's metrics, grad_norm, learning_rate, step and epoch).

        callback(row) is called with each logged row as soon as it exists (the CLI appends it to
        metrics.jsonl). With `resume_from_checkpoint` the run first restores a checkpoint (weights,
        optimizer, scheduler, step, data order, generators) and goes on exactly as the uninterrupted run
        would have. A NaN or infinite loss or gradient raises NonFiniteLossError before the update; SIGINT or
        SIGTERM saves a checkpoint (when output_dir is set) and raises TrainingInterrupted."""
        c = self.config
        if c.resume_from_checkpoint is not None and self.step == 0:
            self.resume(resolve_checkpoint(c.resume_from_checkpoint, c.output_dir))
        end = self.num_steps if steps is None else self.step + steps
        pending: list[dict] = []
        bar = tqdm(range(self.step, end), desc=self.progress_name, disable=not c.progress, leave=False)
        with StopOnSignal() as stop:
            for _ in bar:
                pending.append(self.training_step())
                if len(pending) == c.logging_steps or self.step == end:
                    keys = {k for p in pending for k in p}
                    entry = {
                        k: sum(p[k] for p in pending if k in p) / sum(k in p for p in pending) for k in keys
                    }
                    epoch = self._epoch - 1 + self._cursor / len(self.train_data)
                    self.history.append({**entry, "step": self.step, "epoch": epoch})
                    if callback is not None:
                        callback(self.history[-1])
                    bar.set_postfix(loss=f"{entry['loss']:.4f}")
                    pending = []
                if c.save_steps and self.step % c.save_steps == 0:
                    self.save_checkpoint()
                stop.stop_if_requested(self.step, self.save_checkpoint if c.output_dir else None)
        return self.history

    # --- saving ------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write output_dir/checkpoint-<step> atomically with everything `resume` needs."""
        c = self.config
        weights = self.dist.state_dict("model")
        path = None
        if self.dist.is_main:
            check_weights(self.model, self.step, self.last_checkpoint)

            def write(tmp: Path) -> None:
                self.model.save_pretrained(tmp, safe_serialization=True, state_dict=weights)
                self.tokenizer.save_pretrained(tmp)
                torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")

            own = {"gen": self._gen.get_state(), "order": self._order, "cursor": self._cursor,
                   "epoch": self._epoch, **self.own_state()}  # fmt: skip
            state = {"config": asdict(c), "history": self.history}
            path = save_checkpoint(
                c.output_dir, self.step, write, state, own, c.save_total_limit, self.optimizer
            )
            self.last_checkpoint = path
        self.dist.wait()
        return path

    def resume(self, path: str | Path) -> None:
        """Restore a checkpoint written by `save_checkpoint` into this trainer."""
        path = Path(path)
        load_weights(self.model, path)
        state, own = restore_checkpoint(path, self.optimizer)
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        self._gen.set_state(own["gen"])
        self._order, self._cursor, self._epoch = own["order"], own["cursor"], own["epoch"]
        self.set_own_state(own)
        self.step, self.history = int(state["step"]), list(state["history"])
        self.last_checkpoint = path

    def save(self, path) -> Path:
        """Write an HF directory: the model (safetensors), its tokenizer, and trainer_state.json. On several
        processes only the main one writes (call it on all: FSDP gathers the weights, the others wait)."""
        path = Path(path)
        weights = self.dist.state_dict("model")
        if self.dist.is_main:
            path.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(path, safe_serialization=True, state_dict=weights)
            self.tokenizer.save_pretrained(path)
            state = {"step": self.step, "config": asdict(self.config), "history": self.history}
            (path / "trainer_state.json").write_text(json.dumps(state, indent=1))
        self.dist.wait()
        return path
