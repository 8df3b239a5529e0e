"""Run-time set-up shared by every notebook's first code cell and by the tests.

`setup(seed)` makes a run repeatable and says what it runs on: it seeds Python, NumPy and PyTorch, fixes
the CPU thread count (so timings and results are stable on a 2-core laptop), picks the device, and prints
the versions a reader would quote in a bug report.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RunInfo", "setup", "default_device", "seed_everything"]


@dataclass(frozen=True)
class RunInfo:
    seed: int  # the seed given to every generator
    device: torch.device  # where tensors and models go by default
    threads: int  # CPU threads PyTorch uses
    versions: dict  # package name -> version string


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds the legacy global generator readers may use)
    torch.manual_seed(seed)


def default_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given ("cpu", "cuda", "cuda:1", "mps"), else CUDA when present, else the CPU."""
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={prefer!r} was asked for, but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("rlsurvey", "torch", "transformers", "datasets", "gymnasium", "triton"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def setup(
    seed: int = 0, device: str | None = None, threads: int | None = None, quiet: bool = False
) -> RunInfo:
    """Seed everything, fix the CPU thread count, pick the device and print the environment.

    threads: CPU threads for PyTorch; default $RLSURVEY_THREADS, else min(4, cores), which keeps runs stable
    on small machines without starving the notebook server. With more than one thread the order of some
    floating-point sums varies between runs, so a seed repeats a run only up to rounding, and a long run that
    amplifies small differences (RL without a KL penalty, say) can end elsewhere; `threads=1` repeats a run
    bit for bit.
    """
    seed_everything(seed)
    if threads is None:
        threads = int(os.environ.get("RLSURVEY_THREADS", min(4, os.cpu_count() or 1)))
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    dev = default_device(device)
    info = RunInfo(seed=seed, device=dev, threads=threads, versions=_versions())
    if not quiet:
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none"
        print(" | ".join(f"{k} {v}" for k, v in info.versions.items()))
        print(f"device {dev} (GPU: {gpu}) | CPU threads {threads} | seed {seed}")
    return info
