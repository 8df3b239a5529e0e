"""Check functions for the exercises at the end of every chapter.

Each chapter has a module here (`ch01`, `ch02`, ...). An exercise's check function takes the reader's answer
(a number, a tensor or a function), compares it with a reference solution on inputs the reader has not seen,
prints a short confirmation when it holds and raises `ExerciseError` with a hint when it does not. The tests
run every check on its reference solution (it must pass) and on a wrong answer (it must fail).

Every chapter module lists its exercises in `EXERCISES`, a tuple of `Exercise` records (number, title, check,
reference solution, a typical wrong answer, and whether the exercise is "open": checked, with a discussion
question as its follow-up). `registry()` collects them for every chapter; the test suite discovers the
exercises there, and checks that every exercise cell of a notebook calls a registered check.

For teachers, `solutions(chapter)` returns the reference solutions without running anything:

    >>> from rlsurvey.exercises import solutions
    >>> for number, title, check_name, source, kind in solutions(12):
    ...     print(number, title, check_name, kind)  # `source`: the solution's code, shown on request

`chapter` is a number (12) or a two-digit string ("12"); `kind` is "checked" or "open".
"""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHAPTERS",
    "Exercise",
    "ExerciseError",
    "assert_close",
    "call_safely",
    "passed",
    "registry",
    "solutions",
]

CHAPTERS = tuple(range(17))  # one module chNN per notebook NN


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


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter, as the notebook numbers it."""

    number: int  # the exercise's number in the notebook
    title: str  # a few words
    check: Callable  # the check function the notebook calls
    solution: Any  # the reference solution: what the reader passes to `check` (see `value`)
    wrong: Any  # a typical wrong answer, which `check` must refuse with an ExerciseError
    value: bool = False  # True: `solution` is a zero-argument function that computes the answer (a number...)
    spread: bool = False  # True: the answer is a tuple of the check's positional arguments
    kind: str = "checked"  # "checked", or "open": checked, with a discussion question as its follow-up

    def __post_init__(self):
        if self.kind not in ("checked", "open"):
            raise ValueError(f"Exercise.kind must be 'checked' or 'open', got {self.kind!r}")

    def answer(self):
        """The reference answer, in the form the check takes."""
        return self.solution() if self.value else self.solution

    def run(self, answer) -> bool:
        """Run the check on `answer` (raises ExerciseError when it does not hold)."""
        return self.check(*answer) if self.spread else self.check(answer)

    def solution_source(self) -> str:
        """The Python source of the reference solution."""
        return textwrap.dedent(inspect.getsource(self.solution))


def _chapter_number(chapter) -> int:
    try:
        number = int(chapter)
    except (TypeError, ValueError):
        number = None
    if number not in CHAPTERS or isinstance(chapter, bool):
        raise ValueError(f"chapter must be one of {list(CHAPTERS)} (or '00' ... '13'), got {chapter!r}")
    return number


def registry() -> dict[int, tuple[Exercise, ...]]:
    """{chapter number: its exercises in order}, from every module `rlsurvey.exercises.chNN`."""
    out = {}
    for number in CHAPTERS:
        module = importlib.import_module(f"{__name__}.ch{number:02d}")
        exercises = tuple(getattr(module, "EXERCISES", ()))
        numbers = [e.number for e in exercises]
        if numbers != sorted(set(numbers)):
            raise RuntimeError(f"ch{number:02d}.EXERCISES: numbers must be increasing, got {numbers}")
        out[number] = exercises
    return out


def solutions(chapter) -> list[tuple[int, str, str, str, str]]:
    """The reference solutions of one chapter: a list of (number, title, check_name, solution_source,
    kind) with kind "checked" or "open"; nothing is run."""
    number = _chapter_number(chapter)
    return [(e.number, e.title, e.check.__name__, e.solution_source(), e.kind) for e in registry()[number]]
