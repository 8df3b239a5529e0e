"""Check functions for the exercises at the end of every chapter.

Each chapter has a module here (`ch01`, `ch02`, ...). An exercise's check function takes the reader's answer
(a number, a tensor or a function), compares it with a reference solution on inputs the reader has not seen,
prints a short confirmation when it holds and raises `ExerciseError` with a hint when it does not. The tests
run every check on its reference solution (it must pass) and on a wrong answer (it must fail).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["ExerciseError", "assert_close", "call_safely", "passed"]


class ExerciseError(AssertionError):
    """The reader's answer does not hold; the message says why and gives a hint."""


def passed(name: str) -> bool:
    print(f"[ok] {name}: your answer holds.")
    return True


def _as_float64(x) -> torch.Tensor:
    # np.array copies first: torch.as_tensor refuses NumPy views with negative strides (x[::-1]).
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).cpu()
    return torch.from_numpy(np.array(x, dtype=np.float64))


def assert_close(name: str, got, expected, hint: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Raise ExerciseError unless `got` equals `expected` (numbers, arrays or tensors) within tolerance."""
    g = _as_float64(got)
    e = _as_float64(expected)
    if g.shape != e.shape:
        raise ExerciseError(f"{name}: expected shape {tuple(e.shape)}, got {tuple(g.shape)}. Hint: {hint}")
    if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=False):
        err = (g - e).abs().max().item()
        raise ExerciseError(f"{name}: off by up to {err:.3g} from the reference. Hint: {hint}")


def call_safely(name: str, fn: Callable, *args, **kwargs):
    """Call the reader's function, turning its exception into an ExerciseError that names the exercise."""
    try:
        return fn(*args, **kwargs)
    except ExerciseError:
        raise
    except Exception as exc:  # the reader's code failed: say so, keep the original as the cause
        raise ExerciseError(f"{name}: your function raised {type(exc).__name__}: {exc}") from exc
