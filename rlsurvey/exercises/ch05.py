"""Exercises of chapter 05 (popular RL-enhanced LLMs, survey section 3 of arXiv 2412.10400).

1. `check_family_counts(counts)`: a dict {family: number of models in the table}.
2. `check_open_share(share)`: the fraction of open-weight models among those released in 2024 (by the
   table's date column), a float in [0, 1].
3. `check_chapter(model, chapter)`: the two-digit number of the course chapter that teaches the method
   family of `model` (its first chapter in the table), e.g. check_chapter("DeepSeek-R1", "12").
"""

from __future__ import annotations

from collections import Counter

from rlsurvey.exercises import ExerciseError, passed
from rlsurvey.popular import load_models

__all__ = ["check_family_counts", "check_open_share", "check_chapter"]


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
