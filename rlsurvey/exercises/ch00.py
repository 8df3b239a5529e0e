"""Checks for the exercises of chapter 00 (welcome): reading the survey map (arXiv 2412.10400).

1. `check_where_taught(answers)`: for each method in `WHERE_QUESTIONS`, the number of a chapter teaching it.
2. `check_chapters_for_section(fn)`: fn(survey_map, section_id) -> sorted chapter numbers teaching it.

The reference answers are computed from `rlsurvey/assets/survey_map.json`, so they follow the data.
"""

from __future__ import annotations

from rlsurvey.exercises import ExerciseError, call_safely, passed
from rlsurvey.survey import SurveyMap, load_survey_map

__all__ = [
    "WHERE_QUESTIONS",
    "check_where_taught",
    "check_chapters_for_section",
    "reference_chapters_for_section",
]

WHERE_QUESTIONS = ("RLOO (Back to Basics)", "KTO", "RewardBench", "UCB1")


def _chapters_teaching(survey: SurveyMap, method: str) -> set[int]:
    return {
        c for s in survey.sections for p in s.parts for m in p.methods if m.name == method for c in p.chapters
    }


def reference_chapters_for_section(survey: SurveyMap, section_id: str) -> list[int]:
    """Sorted numbers of the chapters that teach any part of section `section_id`."""
    for s in survey.sections:
        if s.id == section_id:
            return sorted({c for p in s.parts for c in p.chapters})
    raise KeyError(f"no section {section_id!r}")


def check_where_taught(answers: dict) -> bool:
    """answers: {method name: chapter number}, one entry per name in WHERE_QUESTIONS."""
    name = "where is it taught"
    if not isinstance(answers, dict):
        raise ExerciseError(f"{name}: expected a dict {{method: chapter}}, got {type(answers).__name__}")
    survey = load_survey_map()
    for method in WHERE_QUESTIONS:
        if method not in answers:
            raise ExerciseError(
                f"{name}: no answer for {method!r}. Hint: answer every name in WHERE_QUESTIONS."
            )
        right = _chapters_teaching(survey, method)
        if answers[method] not in right:
            raise ExerciseError(
                f"{name}: chapter {answers[method]!r} does not teach {method!r}. Hint: find its row in the "
                "map (the methods are listed at the right) and read off a column with a dot."
            )
    return passed(name)


def check_chapters_for_section(fn) -> bool:
    """fn(survey_map: SurveyMap, section_id: str) -> list of chapter numbers, sorted, without repeats."""
    name = "chapters for a section"
    survey = load_survey_map()
    for section in survey.sections:
        got = call_safely(name, fn, survey, section.id)
        expected = reference_chapters_for_section(survey, section.id)
        if not isinstance(got, (list, tuple)) or list(got) != expected:
            raise ExerciseError(
                f"{name}: for section {section.id!r} expected {expected}, got {got!r}. Hint: a section has "
                "several parts, each with its own chapters; collect them all, drop repeats, sort."
            )
    return passed(name)
