"""Checkpoints that survive crashes, runs that resume exactly, and runs that stop cleanly.

Every trainer of the package (reward model, PPO, RLOO/GRPO, the DPO family) uses the same pieces:

- `save_checkpoint`: `checkpoint-<step>` is written into a temporary directory and renamed into place, so a
  crash while saving never leaves a half-written checkpoint; only the newest `save_total_limit` are kept.
- `resolve_checkpoint`: `resume_from_checkpoint="latest"` (or a path) finds the newest complete checkpoint.
- `rng_state` / `set_rng_state`: Python's, NumPy's and torch's generators, so the resumed run draws what
  the uninterrupted one would have.
- `check_finite`: a NaN or infinite loss stops the run, naming the step and the metric, before any update.
- `StopOnSignal`: SIGINT and SIGTERM finish the current step, save a checkpoint and stop cleanly.
- `MetricsFile`: metrics.jsonl is appended and flushed at every logging step; a resumed run drops the rows
  after its checkpoint, so the file reads as one uninterrupted run.

A checkpoint directory holds the model (safetensors and tokenizer, loadable by plain transformers),
`optimizer.pt` and `scheduler.pt` where the trainer has them, `rng_state.pt` (generators and the trainer's own
sampling state) and `trainer_state.json` (the step, the history so far, the config).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_PREFIX",
    "MetricsFile",
    "NonFiniteLossError",
    "StopOnSignal",
    "TrainingInterrupted",
    "check_finite",
    "json_safe",
    "check_weights",
    "load_weights",
    "list_checkpoints",
    "read_trainer_state",
    "restore_checkpoint",
    "resolve_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
RNG_FILE = "rng_state.pt"
OPTIMIZER_FILE = "optimizer.pt"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


class NonFiniteLossError(FloatingPointError):
    """A loss or metric became NaN or infinite; the update of that step was not applied."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; a checkpoint was saved (its path is `.checkpoint`)."""

    def __init__(self, message: str, checkpoint: Path | None):
        super().__init__(message)
        self.checkpoint = checkpoint


# ---------------------------------------------------------------------------------------------------------
# Random generators
# ---------------------------------------------------------------------------------------------------------


def rng_state() -> dict:
    """The state of every global generator a training step may draw from."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global generator is what code seeds)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------------------
# Writing and finding checkpoints
# ---------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest step first (temporary directories are not listed)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found) if (p / TRAINER_STATE).is_file()]


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    write: Callable[[Path], None],
    state: dict,
    trainer: dict | None = None,
    total_limit: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write `output_dir/checkpoint-<step>` atomically and return its path.

    write(path) stores the model (and anything else of the trainer's own) into `path`, a temporary directory
    beside the final one; then the optimizer goes to optimizer.pt, the global generators and `trainer` (the
    trainer's own sampling state: data order, private generators) to rng_state.pt, and `state` (JSON) to
    trainer_state.json, the file whose presence marks a complete checkpoint; then the directory is renamed
    into place in one step. Older checkpoints beyond `total_limit` are removed after the new one is in
    place. `restore_checkpoint` reads it back.
    """
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save({"global": rng_state(), "trainer": trainer or {}}, tmp / RNG_FILE)
    with (tmp / TRAINER_STATE).open("w") as f:
        json.dump(json_safe({"step": step, **state}), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():  # the same step saved again (a resumed run): replace it whole
        old = root / f".old-{CHECKPOINT_PREFIX}{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if total_limit is not None:
        for stale in list_checkpoints(root)[:-total_limit]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def resolve_checkpoint(resume: str | Path | None, output_dir: str | Path | None) -> Path | None:
    """The checkpoint to resume from: None, "latest" (the newest complete one in `output_dir`) or a path."""
    if resume is None or resume is False:
        return None
    if str(resume) == "latest":
        if output_dir is None:
            raise ValueError("resume_from_checkpoint='latest' needs an output_dir to look in")
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"resume_from_checkpoint='latest': no checkpoint in {output_dir}")
        return found[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a checkpoint (no {TRAINER_STATE})")
    return path


def read_trainer_state(path: str | Path) -> dict:
    """trainer_state.json of a checkpoint: its step, history and config."""
    return json.loads((Path(path) / TRAINER_STATE).read_text())


def restore_checkpoint(path: str | Path, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict]:
    """Restore what `save_checkpoint` wrote beside the weights: the optimizer's state (when given) and the
    global generators. Call it after loading the weights (loading may draw from the generators). Returns
    (trainer_state.json, the `trainer` dict that was saved)."""
    path = Path(path)
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=False))
    rng = torch.load(path / RNG_FILE, weights_only=False)
    set_rng_state(rng["global"])
    return read_trainer_state(path), rng["trainer"]


def json_safe(value):
    """JSON-safe: tensors and NumPy numbers to Python, NaN and infinities to null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------------------
# Stopping
# ---------------------------------------------------------------------------------------------------------


def check_finite(row: dict, step: int, keys: Iterable[str] = ("loss",), last_checkpoint=None) -> None:
    """Raise NonFiniteLossError if any of `keys` in `row` is NaN or infinite (missing keys are skipped)."""
    for key in keys:
        if key in row and row[key] is not None and not math.isfinite(float(row[key])):
            kept = (
                f"the last good checkpoint is {last_checkpoint}"
                if last_checkpoint
                else "no checkpoint was written before it"
            )
            raise NonFiniteLossError(
                f"stopped at step {step}: {key} is {float(row[key])}; the update was not applied; {kept}"
            )


class StopOnSignal:
    """Within `with StopOnSignal() as stop:`, SIGINT and SIGTERM set `stop.requested` instead of killing
    the process, so the loop can finish its step and save. A second signal stops at once. Outside the main
    thread (where handlers cannot be installed) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: str | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.requested is not None:  # asked twice: give up waiting
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def stop_if_requested(self, step: int, save: Callable[[], Path | None] | None) -> None:
        """After a finished step: if a signal came, call `save` (when given) and raise TrainingInterrupted."""
        if self.requested is None:
            return
        saved = save() if save is not None else None
        done = f"saved {saved}; resume with resume_from_checkpoint" if saved else "nothing saved"
        raise TrainingInterrupted(f"{self.requested} at step {step}: {done}", saved)

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


# ---------------------------------------------------------------------------------------------------------
# metrics.jsonl
# ---------------------------------------------------------------------------------------------------------


REPORT_TO = ("none", "all", "tensorboard", "trackio")


class MetricsFile:
    """Appends one JSON object per logged step to `path` and flushes it at once; optionally also sends each
    row to TensorBoard and/or Trackio (transformers' `report_to` names; each only where installed).

    resume_step: a resumed run keeps the rows up to that step and drops the later ones (written after the
    checkpoint by the interrupted run), so the file reads as one run. None starts a new file.
    report_to: a list of REPORT_TO names ("all": every tracker that is installed; "none": none).
    run_dir: where TensorBoard writes its event files (run_dir/runs) and the run's name for Trackio.
    """

    def __init__(
        self,
        path: str | Path,
        resume_step: int | None = None,
        enabled: bool = True,
        report_to: Iterable[str] | str | None = None,
        run_dir: str | Path | None = None,
    ):
        self.path, self.enabled, self.count = Path(path), enabled, 0
        self.trackers = _trackers(report_to, Path(run_dir or self.path.parent)) if enabled else []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= resume_step:
                    kept.append(line)
        self.count = len(kept)
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, row: dict) -> None:
        self.count += 1
        if not self.enabled:
            return
        clean = json_safe(row)
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
        numbers = {k: v for k, v in clean.items() if isinstance(v, (int, float)) and k != "step"}
        for tracker in self.trackers:
            tracker.log(numbers, int(clean.get("step", self.count)))

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


class _TensorBoard:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "runs"))

    def log(self, numbers: dict, step: int) -> None:
        for k, v in numbers.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Trackio:
    def __init__(self, run_dir: Path):
        import trackio

        self.trackio = trackio
        trackio.init(project="rlsurvey", name=run_dir.resolve().name)

    def log(self, numbers: dict, step: int) -> None:
        self.trackio.log({**numbers, "step": step})

    def close(self) -> None:
        self.trackio.finish()


def _installed(tracker: str) -> bool:
    import importlib.util

    module = {"tensorboard": "tensorboard", "trackio": "trackio"}[tracker]
    return importlib.util.find_spec(module) is not None


def _trackers(report_to, run_dir: Path) -> list:
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise ValueError(f"report_to: {unknown[0]!r} is not one of {list(REPORT_TO)}")
    if "none" in names:
        if len(names) > 1:
            raise ValueError(f"report_to: 'none' cannot be combined with other trackers, got {names}")
        return []
    wanted = [n for n in ("tensorboard", "trackio") if "all" in names or n in names]
    if "all" in names:
        wanted = [n for n in wanted if _installed(n)]
    for n in wanted:
        if not _installed(n):
            raise ValueError(f"report_to: {n} is not installed (pip install {n}), or leave it out")
    return [{"tensorboard": _TensorBoard, "trackio": _Trackio}[n](run_dir) for n in wanted]


def check_weights(model, step: int, last_checkpoint=None) -> None:
    """Refuse to save weights that are no longer finite (the last good checkpoint stays the newest)."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "none was kept"
            raise NonFiniteLossError(f"stopped at step {step}: parameter {name} is not finite; {kept}")


def load_weights(model, path: str | Path) -> None:
    """Copy the weights of the HF directory `path` into the HF model `model` in place (tied weights too)."""
    loaded = type(model).from_pretrained(path, dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict())
