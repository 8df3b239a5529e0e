"""Training on several processes or GPUs: data parallelism through Hugging Face Accelerate.

The reward-model, RLHF-PPO, DPO and GRPO trainers of the package run the same code on one process and on
many. Launch any script that calls them with

    accelerate launch --multi_gpu --num_processes 2 train.py   # 2 GPUs; on a machine without one, 2 CPU
                                                               # processes (gloo). `--cpu` starts only one.
    torchrun --nproc_per_node 2 train.py                       # the same, without Accelerate's launcher

and each trainer finds the launcher's environment (WORLD_SIZE > 1) and trains data-parallel. On one process
nothing changes unless a config asks for it (`distributed=True`): `Distributed` is then an empty shell that
calls the plain PyTorch functions, so the notebooks neither import Accelerate nor pay for it.

How a trainer uses it (the recipe every trainer here follows):

1. Batch sizes in the configs are GLOBAL: every process draws the same global batch from the same seeded
   order, and `shard` hands it its contiguous slice. So N processes with 1/N of the batch each take the
   same optimizer steps as one process with the whole batch.
2. The loss is computed inside `run(fn, ...)`: the trained models sit in one wrapper module whose forward
   calls `fn`, so DDP's gradient hooks see every parameter the loss touched, even though the trainers call
   `model.base_model`, a value head or two models in one loss.
3. A loss that is a mean over the global batch is computed per process as the mean over the process's slice
   times `share(local_count)` = world_size · local_count / global_count; DDP averages gradients over the
   processes, so the averaged gradient is exactly the gradient of the global mean.
4. `backward`, `clip_grad_norm_` (the norm of the all-reduced gradient) and `no_sync` (gradient accumulation)
   go through the Accelerator; metrics are combined with `sum_metrics` / `mean_metrics`; only the main
   process writes checkpoints (`is_main`), and `wait` holds the others until it has.

Engines: DDP is what runs here by default (and what the tests check, two CPU processes with gloo). FSDP comes
through Accelerate's own configuration (`accelerate config`, or `--config_file`, see
examples/accelerate_fsdp.yaml) for the trainers that never sample during training (DPO, reward model):
with that file set to `use_cpu: true` and `mixed_precision: "no"`, FSDP 2 on two CPU processes gives the
one-process DPO losses of tests/dist_worker.py to 2e-7. PPO and GRPO generate with the whole model outside
the training forward, so they refuse FSDP with a clear error.
DeepSpeed is refused by all four: its engine steps the optimizer inside `backward`, which the trainers'
explicit clip-then-step loop does not follow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["Distributed", "get_distributed", "launched", "shutdown"]


def launched() -> bool:
    """True when a launcher (accelerate launch, torchrun) started this process as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


class _Held(nn.Module):
    """The trained models under one module, whose forward runs a function: what a DDP/FSDP wrapper wraps."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        self.held = nn.ModuleDict(modules)
        # FSDP's transformer auto-wrap policy reads the no-split classes of the module it wraps
        names = {n for m in modules.values() for n in (getattr(m, "_no_split_modules", None) or [])}
        self._no_split_modules = sorted(names)

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(*args, **kwargs)


class Distributed:
    """Data-parallel helpers around an `accelerate.Accelerator`, or plain PyTorch when `accelerator` is None.

    Build it with `get_distributed`. Attributes: `enabled`, `world_size`, `rank`, `is_main`, `device`.
    """

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self._wrapped: nn.Module | None = None
        self._names: list[str] = []

    # ---- who am I ----------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.accelerator is not None

    @property
    def world_size(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return 0 if self.accelerator is None else self.accelerator.process_index

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The device this process trains on (None: leave the models where they are)."""
        if self.accelerator is None or self.accelerator.device.type == "cpu":
            return None
        return self.accelerator.device

    def place(self, module):
        """Move `module` to this process's device (a GPU under a multi-GPU launch); a no-op elsewhere."""
        if module is not None and self.device is not None:
            module.to(self.device)
        return module

    # ---- the trained models --------------------------------------------------------------------------------
    def prepare(self, optimizer: torch.optim.Optimizer, *, generates: bool = False, **modules: nn.Module):
        """Wrap the trained `modules` (by name) for the engine and return the optimizer to step.

        generates: the trainer samples from these models outside the training forward, which needs every
        parameter whole on every process (DDP; not FSDP or DeepSpeed).
        """
        if self.accelerator is None:
            return optimizer
        kind = str(self.accelerator.distributed_type).rsplit(".", 1)[-1]
        if kind == "DEEPSPEED":
            raise NotImplementedError(
                "distributed_type DEEPSPEED is not supported by the rlsurvey trainers (DeepSpeed steps the "
                "optimizer inside backward); use DDP (the default) or, for DPO and reward models, FSDP"
            )
        if kind == "FSDP" and generates:
            raise NotImplementedError(
                "distributed_type FSDP shards the parameters, but this trainer samples with the whole model "
                "between training steps; launch it with DDP (accelerate's default multi-process setting)"
            )
        self._names = list(modules)
        self._wrapped, optimizer = self.accelerator.prepare(_Held(modules), optimizer)
        return optimizer

    def run(self, fn: Callable, *args, **kwargs):
        """`fn(*args, **kwargs)`, inside the forward of the wrapped models when there is a wrapper."""
        if self._wrapped is None:
            return fn(*args, **kwargs)
        return self._wrapped(fn, *args, **kwargs)

    def zero_loss(self, module: nn.Module) -> torch.Tensor:
        """0 · Σθ through the wrapper: what a process whose slice of a batch is empty backpropagates, so that
        the gradient all-reduce still meets every parameter on every process."""
        return self.run(lambda: sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm (after the all-reduce) and return it, as torch.nn.utils does."""
        if self.accelerator is None:
            return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        params = self._wrapped.parameters() if self._wrapped is not None else parameters
        return self.accelerator.clip_grad_norm_(params, max_norm)

    def no_sync(self, skip: bool = True):
        """A context without the gradient all-reduce (the first micro-batches of an accumulated step)."""
        if self._wrapped is None or not skip:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self._wrapped)

    def state_dict(self, name: str) -> dict | None:
        """The full state dict of the prepared module `name` where the engine shards it (FSDP; collective:
        call it on every process), else None: the module's own parameters are whole and current."""
        if self._wrapped is None or str(self.accelerator.distributed_type).rsplit(".", 1)[-1] != "FSDP":
            return None
        full = self.accelerator.get_state_dict(self._wrapped)
        prefix = f"held.{name}."
        if full is None:  # FSDP gathers the full state on the main process only
            return None
        return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}

    # ---- data and metrics ----------------------------------------------------------------------------------
    def shard(self, items: Sequence) -> list:
        """This process's contiguous slice of a global batch: rank r of W takes items[r·n/W : (r+1)·n/W]."""
        items = list(items)
        n, w, r = len(items), self.world_size, self.rank
        return items[r * n // w : (r + 1) * n // w]

    def share(self, local: float | torch.Tensor) -> float:
        """world_size · local / Σ_processes local: the factor that turns a mean over this process's slice into
        its part of the global mean once DDP has averaged the gradients (1.0 on one process)."""
        if self.world_size == 1:
            return 1.0
        local = float(local)
        total = float(self.sum(torch.tensor(local, dtype=torch.float64)))
        return 0.0 if total == 0 else self.world_size * local / total

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Σ over the processes of `tensor` (the tensor itself on one process)."""
        if self.world_size == 1:
            return tensor
        return self.accelerator.reduce(tensor.to(self.accelerator.device), "sum").to(tensor.device)

    def _gathered(self, metrics: dict) -> list[dict]:
        if self.world_size == 1:
            return [metrics]
        out: list = [None] * self.world_size
        torch.distributed.all_gather_object(out, metrics)
        return out

    def sum_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Σ over the processes of each value (each process's value already weighted by its share)."""
        if self.world_size == 1:
            return metrics
        total: dict[str, float] = {}
        for part in self._gathered(metrics):
            for k, v in part.items():
                total[k] = total.get(k, 0.0) + float(v)
        return total

    def mean_metrics(self, metrics: dict) -> dict:
        """The mean over the processes of each numeric value (non-numeric values: the main process's)."""
        if self.world_size == 1:
            return metrics
        parts = self._gathered(metrics)
        out = dict(metrics)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = [float(p[k]) for p in parts if k in p]
                mean = sum(vals) / len(vals)
                out[k] = type(v)(mean) if isinstance(v, int) and mean == int(mean) else mean
        return out

    def whiten(self, x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8):
        """`rlsurvey.algos.advantages.whiten` with the mean and variance of the entries of ALL processes."""
        from rlsurvey.algos.advantages import whiten

        if self.accelerator is None:
            return whiten(x, mask, shift_mean, eps)
        if mask.shape != x.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected the shape of x {tuple(x.shape)}")
        m = mask.to(torch.float64)
        xd = x.to(torch.float64)
        n, s = self.sum(m.sum()), self.sum((xd * m).sum())
        if n < 2:
            raise ValueError(f"whitening needs at least 2 unmasked entries, got {int(n)}")
        mean = s / n
        var = self.sum((((xd - mean) ** 2) * m).sum()) / (n - 1)
        out = (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + eps)
        if not shift_mean:
            out = out + mean.to(x.dtype)
        return out * mask.to(x.dtype)

    def wait(self) -> None:
        """A barrier: every process waits here for the others (a no-op on one process)."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def get_distributed(enabled: bool | None = None) -> Distributed:
    """The `Distributed` of this process.

    enabled: None (default) uses Accelerate only when launched on several processes (`launched()`); True
    always builds an `accelerate.Accelerator` (also on one process: the same code path as a multi-process
    run); False never does.
    """
    if enabled is None:
        enabled = launched()
    if not enabled:
        return Distributed(None)
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ImportError(
            "training on several processes needs Hugging Face Accelerate: pip install 'rlsurvey[dist]' "
            "(or pip install accelerate)"
        ) from exc

    # without a GPU, Accelerate only forms a multi-process (gloo) group when told to run on the CPU
    return Distributed(Accelerator(cpu=not torch.cuda.is_available()))


def shutdown(wait: bool = True) -> None:
    """End a multi-process run cleanly: wait for every process (unless `wait` is False, after an error, when
    the others may never arrive), then destroy the process group (a no-op when none was formed). Without it
    the gloo group is torn down at interpreter exit, in no fixed order, and a process can abort there
    ("terminate called without an active exception") after its work is done."""
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        if wait:
            torch_dist.barrier()
        torch_dist.destroy_process_group()
