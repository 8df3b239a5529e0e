"""The survey's table of popular RL-enhanced LLMs, as data: loading, counting and plotting it.

Survey section 3 of arXiv 2412.10400 ("Popular LLMs enhanced by RL"). The rows (model, organization,
parameters, open weights) are the survey's; the method column was written from each model's own technical
report, named in the `source` column (an arXiv id where one exists, otherwise the model card or blog post).
Each row also names the method `family` and the course chapters that teach it.
"""

from __future__ import annotations

import csv
import textwrap
from collections import Counter
from dataclasses import dataclass
from datetime import date

from rlsurvey.assets import table_path

__all__ = ["FAMILIES", "ModelRow", "load_models", "family_counts", "plot_timeline", "plot_open_closed"]

# method family -> the chapters of the course that teach it
FAMILIES = {
    "PPO-RLHF": "06 reward models, 07 RLHF with PPO",
    "RLHF (algorithm unnamed)": "06 reward models, 07 RLHF with PPO",  # the report names no RL algorithm
    "RLAIF": "08 RLAIF",
    "DPO family": "10 DPO, 11 DPO variants",
    "GRPO": "12 RL for reasoning",
    "Reasoning RL": "12 RL for reasoning",
}
COLUMNS = (
    "model",
    "organization",
    "parameters",
    "open_weights",
    "date",
    "family",
    "method",
    "source",
    "chapter",
)


@dataclass(frozen=True)
class ModelRow:
    model: str  # model name as in the survey
    organization: str  # who trained it
    parameters: str  # sizes as published ("-" when undisclosed)
    open_weights: bool  # weights downloadable
    date: date  # month of the technical report or release (first of the month)
    family: str  # method family, a key of FAMILIES
    method: str  # the RL / preference-tuning recipe, from the source
    source: str  # where the method statement comes from (arXiv id, model card or blog)
    chapter: str  # course chapters that teach the family


def load_models(path=None) -> list[ModelRow]:
    """The model table (default: the shipped rlsurvey/assets/models.csv), sorted by date."""
    path = path or table_path("models.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(
                f"the model table must have the columns {list(COLUMNS)}, found {reader.fieldnames}"
            )
        rows = []
        for i, r in enumerate(reader):
            if r["family"] not in FAMILIES:
                raise ValueError(
                    f"row {i} ({r['model']}): family must be one of {list(FAMILIES)}, got {r['family']!r}"
                )
            if r["open_weights"] not in ("yes", "no"):
                raise ValueError(
                    f"row {i} ({r['model']}): open_weights must be 'yes' or 'no', got {r['open_weights']!r}"
                )
            if not r["source"].strip():
                raise ValueError(f"row {i} ({r['model']}): every row needs a source")
            year, month = (int(x) for x in r["date"].split("-"))
            rows.append(
                ModelRow(
                    **{**r, "open_weights": r["open_weights"] == "yes", "date": date(year, month, 1)}  # type: ignore[arg-type]
                )
            )
    return sorted(rows, key=lambda r: (r.date, r.model))


def family_counts(rows: list[ModelRow]) -> dict[str, dict[str, int]]:
    """{family: {"open": n, "closed": n}} in FAMILIES order."""
    c = Counter((r.family, r.open_weights) for r in rows)
    return {f: {"open": c[(f, True)], "closed": c[(f, False)]} for f in FAMILIES}


def plot_timeline(ax, rows: list[ModelRow]):
    """One row per model, oldest at the top, at its date; colour = method family, filled = open weights."""
    from rlsurvey.plotting import COLORS

    colour = {fam: COLORS[k] for k, fam in enumerate(FAMILIES)}
    n = len(rows)
    for i, r in enumerate(rows):
        face = colour[r.family] if r.open_weights else "none"
        ax.scatter(r.date, n - 1 - i, s=50, color=colour[r.family], facecolors=face, linewidths=1.5)
        ax.annotate(r.model, (r.date, n - 1 - i), xytext=(7, -3), textcoords="offset points", fontsize=8)
    for fam in FAMILIES:  # legend entries, one per family
        ax.scatter([], [], s=50, color=colour[fam], label=fam)
    ax.set_yticks([])
    ax.set_ylim(-1, n)
    ax.set_xlabel("technical report / release")
    ax.set_title("RL methods of popular LLMs over time (hollow: closed weights)")
    ax.legend(frameon=False, loc="lower left")
    return ax


def plot_open_closed(ax, rows: list[ModelRow]):
    """Stacked bars: models per family, open weights against closed."""
    counts = family_counts(rows)
    fams = list(counts)
    opened = [counts[f]["open"] for f in fams]
    closed = [counts[f]["closed"] for f in fams]
    ax.bar(fams, opened, label="open weights")
    ax.bar(fams, closed, bottom=opened, label="closed")
    ax.set_ylabel("models in the table")
    ax.set_title("Open versus closed, per method family")
    ax.set_xticks(range(len(fams)), [textwrap.fill(f, 12) for f in fams], fontsize=9)  # long names wrapped
    ax.legend(frameon=False)
    return ax
