"""Means with standard errors, the form in which the chapters report every effect of training.

An effect measured over several seeds (or prompts) is reported as mean ± standard error, SE = s / √n with s
the sample standard deviation (n − 1 in the denominator), and a claim holds when it clears its bar by two
standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_se", "paired_mean_se", "pm"]


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of `values`; the SE of a single value is NaN."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_se needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_se needs finite values, got {x.tolist()}")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
    return float(x.mean()), se


def paired_mean_se(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean, SE) of the paired differences a_i − b_i (the same seed or prompt on both sides)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same length, got {a.size} and {b.size}")
    return mean_se(a - b)


def pm(values: Sequence[float], fmt: str = ".3f") -> str:
    """'mean ± SE' of `values`, formatted with `fmt`."""
    m, se = mean_se(values)
    return f"{m:{fmt}} ± {se:{fmt.lstrip('+')}}"
