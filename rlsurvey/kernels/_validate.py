"""Argument checks shared by the kernels: every error names the argument, what was expected and what came.

The kernels read raw pointers, so a wrong shape or an out-of-range index would silently read the wrong
memory instead of raising; these checks run before any launch, on every path.
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation and output dtype: float64 for float64 inputs, float32 for every other float."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_tensor(name: str, x, dtypes=None, ndim_min: int | None = None, ndim: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dtypes is not None and x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(x.dtype).replace('torch.', '')}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if ndim_min is not None and x.dim() < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimensions, got shape {tuple(x.shape)}")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    first_name, first = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(f"{name} is on {dev} but {first_name} is on {first}; put them on one device")


def check_targets(name: str, targets: torch.Tensor, vocab: int, ignore_index: int) -> None:
    """Integer targets in [0, vocab) or equal to ignore_index."""
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {str(targets.dtype).replace('torch.', '')}")
    if not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if targets.numel() == 0:
        return
    bad = ((targets < 0) | (targets >= vocab)) & (targets != ignore_index)
    if bool(bad.any()):
        value = targets[bad][0].item()
        raise ValueError(f"{name} must lie in [0, {vocab}) or equal ignore_index={ignore_index}, got {value}")


def sanitize_targets(name: str, targets: torch.Tensor, vocab: int, ignore_index: int):
    """Targets made safe to index with, without a host synchronisation on a GPU.

    On the CPU this is `check_targets` (an out-of-range id raises, naming the value) and returns
    (targets, None). On any other device reading a value back would stall the stream on every call, so
    nothing is read: ids outside [0, vocab) other than `ignore_index` become `ignore_index` (the kernels never
    index with them) and the mask of those positions is returned, for the caller to set its outputs to NaN
    there. A wrong id then shows up as a NaN loss rather than as memory read from the wrong row.
    """
    if targets.device.type == "cpu":
        check_targets(name, targets, vocab, ignore_index)
        return targets, None
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {str(targets.dtype).replace('torch.', '')}")
    if not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    return mask_bad_targets(targets, vocab, ignore_index)


def mask_bad_targets(targets: torch.Tensor, vocab: int, ignore_index: int):
    """(targets with ids outside [0, vocab) set to ignore_index, the mask of those ids), by tensor
    operations only: no value leaves the device."""
    bad = ((targets < 0) | (targets >= vocab)) & (targets != ignore_index)
    return targets.masked_fill(bad, ignore_index), bad


def check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a positive float, got {type(temperature).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
