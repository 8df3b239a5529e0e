"""Plot helpers shared by the chapters, so every figure in the course looks alike.

Only the pieces more than one chapter needs live here; a chapter's one-off figure is drawn in the chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["COLORS", "new_figure", "smooth", "plot_curves"]

# A colour-blind-safe cycle (Okabe and Ito), used in this order by every chapter.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
plt.rcParams["axes.prop_cycle"] = plt.cycler(color=COLORS)


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.4, **kw):
    """A figure with `nrows` x `ncols` axes of a common size; returns (fig, axes)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    return fig, (axes[0, 0] if axes.size == 1 else axes.squeeze())


def smooth(values: Sequence[float], window: int = 10) -> np.ndarray:
    """Trailing moving average over `window` points (shorter at the start), same length as the input."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(ax, curves: dict, xlabel: str, ylabel: str, window: int = 1, title: str | None = None):
    """Draw named curves on `ax`. `curves` maps a label to y values or to an (x, y) pair."""
    for label, data in curves.items():
        x, y = data if isinstance(data, tuple) else (np.arange(len(data)), data)
        ax.plot(x, smooth(y, window) if window > 1 else y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend(frameon=False)
    return ax
