"""Exercises of chapter 05 (popular RL-enhanced LLMs, survey section 3 of arXiv 2412.10400).

1. `check_family_counts(counts)`: a dict {family: number of models in the table}.
2. `check_open_share(share)`: the fraction of open-weight models among those released in 2024 (by the
   table's date column), a float in [0, 1].
3. `check_chapter(model, chapter)`: the two-digit number of the course chapter that teaches the method
   family of `model` (its first chapter in the table), e.g. check_chapter("DeepSeek-R1", "12").
4. `check_new_row(row)`: a dict with the table's columns for a model released after the survey (later than
   `SURVEY_DATE`), not yet in the table, that `rlsurvey.popular.load_models` accepts, whose chapter column
   starts with a chapter that teaches its family. The model must be one whose report the check knows
   (`REPORTS`), and the row's date, open weights, family and source must agree with that report: the
   exercise is reading a technical report, so an invented model or a misread one is refused.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections import Counter
from datetime import date
from pathlib import Path

from rlsurvey.exercises import Exercise, ExerciseError, passed
from rlsurvey.popular import COLUMNS, FAMILIES, load_models

__all__ = [
    "EXERCISES",
    "REPORTS",
    "SURVEY_DATE",
    "check_family_counts",
    "check_open_share",
    "check_chapter",
    "check_new_row",
    "reference_chapter",
    "reference_family_counts",
    "reference_new_row",
    "reference_open_share",
]

SURVEY_DATE = date(2024, 12, 1)  # arXiv 2412.10400: a new row must be dated after this month

# Reports of models released after the survey, with the facts a reader must get from each: (arXiv id, first
# arXiv month, weights released, family of rlsurvey.popular.FAMILIES).
REPORTS = {
    "qwen3": (
        "2505.09388",
        "2025-05",
        "yes",
        "Reasoning RL",
    ),  # cold start, GRPO reasoning RL, then general RL
    "minimax-m1": ("2506.13585", "2025-06", "yes", "Reasoning RL"),  # large-scale RL with its CISPO objective
}


def reference_family_counts() -> dict[str, int]:
    return dict(Counter(r.family for r in load_models()))


def check_family_counts(counts) -> bool:
    name = "models per family"
    if not isinstance(counts, dict):
        raise ExerciseError(f"{name}: give a dict {{family: count}}, got {type(counts).__name__}")
    want = reference_family_counts()
    if set(counts) != set(want):
        raise ExerciseError(
            f"{name}: expected the families {sorted(want)}, got {sorted(counts)}. "
            "Hint: group load_models() rows by their .family attribute"
        )
    wrong = [f for f in want if counts[f] != want[f]]
    if wrong:
        raise ExerciseError(f"{name}: the counts of {wrong} are off. Hint: count every row once")
    return passed(name)


def reference_open_share() -> float:
    rows = [r for r in load_models() if r.date.year == 2024]
    return sum(r.open_weights for r in rows) / len(rows)


def check_open_share(share) -> bool:
    name = "open share in 2024"
    if not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ExerciseError(f"{name}: give a fraction in [0, 1], got {share!r}")
    if abs(share - reference_open_share()) > 1e-9:
        raise ExerciseError(
            f"{name}: {share:.3f} is not it. "
            "Hint: keep rows with r.date.year == 2024, then average r.open_weights"
        )
    return passed(name)


def reference_chapter(model: str) -> str:
    rows = {r.model: r for r in load_models()}
    if model not in rows:
        raise ExerciseError(f"model must be one of {sorted(rows)}, got {model!r}")
    return rows[model].chapter.split(",")[0].strip()


def check_chapter(model: str, chapter) -> bool:
    name = f"chapter for {model}"
    want = reference_chapter(model)
    if str(chapter).strip().zfill(2) != want:
        raise ExerciseError(
            f"{name}: not chapter {chapter!r}. Hint: find the model's method family, then the chapter that "
            "teaches that family (rlsurvey.popular.FAMILIES)"
        )
    return passed(name)


def reference_deepseek_v2_chapter() -> tuple[str, str]:
    """The arguments of exercise 3: DeepSeek-V2's family is GRPO, taught in chapter 12."""
    return "DeepSeek-V2", reference_chapter("DeepSeek-V2")


def reference_new_row() -> dict:
    """A model released after the survey, from its technical report (Qwen3, arXiv 2505.09388)."""
    return {
        "model": "Qwen3",
        "organization": "Alibaba",
        "parameters": "0.6B to 235B-A22B",
        "open_weights": "yes",
        "date": "2025-05",
        "family": "Reasoning RL",
        "method": "long chain-of-thought cold start, then reasoning RL with GRPO on verifiable problems, "
        "thinking-mode fusion and a general RL stage",
        "source": "arXiv 2505.09388",
        "chapter": "12",
    }


def check_new_row(row) -> bool:
    """row: {column: text} for one new model, with every column of the table."""
    name = "a new row"
    if not isinstance(row, dict) or set(row) != set(COLUMNS):
        got = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ExerciseError(f"{name}: expected a dict with the columns {list(COLUMNS)}, got {got}")
    row = {k: str(row[k]).strip() for k in COLUMNS}
    known = {r.model.lower() for r in load_models()}
    if row["model"].lower() in known:
        raise ExerciseError(f"{name}: {row['model']!r} is already in the table. Hint: pick a later model.")
    with tempfile.TemporaryDirectory() as tmp:  # the package's own reader validates the row
        path = Path(tmp) / "models.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerow(row)
        try:
            (new,) = load_models(path)
        except (ValueError, TypeError) as exc:
            raise ExerciseError(
                f"{name}: the table's reader refuses it: {exc}. Hint: dates are YYYY-MM, open_weights is "
                "yes or no, family is a key of rlsurvey.popular.FAMILIES, and every row needs a source."
            ) from exc
    if new.date <= SURVEY_DATE:
        raise ExerciseError(
            f"{name}: dated {new.date:%Y-%m}, not after the survey ({SURVEY_DATE:%Y-%m}). Hint: the "
            "exercise asks for a model the survey could not list."
        )
    teaching = set(re.findall(r"\b\d{2}\b", FAMILIES[new.family]))
    first = new.chapter.split(",")[0].strip()
    if first not in teaching:
        raise ExerciseError(
            f"{name}: chapter {first!r} does not teach the family {new.family!r} "
            f"(chapters {sorted(teaching)}). "
            "Hint: start the chapter column with a chapter listed in rlsurvey.popular.FAMILIES."
        )
    key = re.sub(r"[\s_]+", "-", new.model.lower())
    if key not in REPORTS:
        known = ", ".join(f"{k} (arXiv {v[0]})" for k, v in REPORTS.items())
        raise ExerciseError(
            f"{name}: this check can only verify models whose report it knows: {known}. Hint: pick one, read "
            "its technical report and fill in the row from it."
        )
    arxiv, month, open_weights, family = REPORTS[key]
    wrong = [
        column for column, ok in (
            ("date", f"{new.date:%Y-%m}" == month),
            ("open_weights", row["open_weights"].lower() == open_weights),
            ("family", new.family == family),
            ("source", arxiv in row["source"]),
        ) if not ok
    ]  # fmt: skip
    if wrong:
        raise ExerciseError(
            f"{name}: {', '.join(wrong)} disagree(s) with the report of {new.model}. Hint: the date is the "
            "report's first arXiv month, the source its arXiv id, and the family follows the RL recipe it "
            "describes (see rlsurvey.popular.FAMILIES and the rows of comparable models)."
        )
    return passed(name)


EXERCISES = (
    Exercise(1, "Models per family", check_family_counts, reference_family_counts, {"PPO-RLHF": 8},
             value=True),
    Exercise(2, "The open share in 2024", check_open_share, reference_open_share, 0.5, value=True),
    Exercise(3, "The chapter of DeepSeek-V2", check_chapter, reference_deepseek_v2_chapter,
             ("DeepSeek-V2", "07"), value=True, spread=True),
    Exercise(4, "A model after the survey", check_new_row, reference_new_row,
             {**reference_new_row(), "model": "DeepSeek-R1", "date": "2025-01"}, value=True, kind="open"),
)  # fmt: skip
