"""Checks for the exercises of chapter 00 (welcome): reading the survey map (arXiv 2412.10400).

1. `check_where_taught(answers)`: for each method in `WHERE_QUESTIONS`, the number of a chapter teaching it.
2. `check_chapters_for_section(fn)`: fn(survey_map, section_id) -> sorted chapter numbers teaching it.
3. `check_route(fn)`: fn(survey_map, methods) -> the sorted chapters of a route that covers a list of methods:
   for each method the first (lowest-numbered) chapter teaching it.

A chapter teaches a method when the map credits the method to it (`Method.chapters`: the chapters of its part
whose notebook names it). The reference answers are computed from `rlsurvey/assets/survey_map.json`, so they
follow the data; the tests pin the answers the notebook's text announces.
"""

from __future__ import annotations

from rlsurvey.exercises import Exercise, ExerciseError, call_safely, passed
from rlsurvey.survey import SurveyMap, load_survey_map

__all__ = [
    "EXERCISES",
    "ROUTE_GOALS",
    "WHERE_QUESTIONS",
    "check_route",
    "reference_route",
    "reference_where_taught",
    "check_where_taught",
    "check_chapters_for_section",
    "reference_chapters_for_section",
]

WHERE_QUESTIONS = ("RLOO (Back to Basics)", "KTO", "RewardBench", "UCB1")
ROUTE_GOALS = (  # method lists the route check asks about; each name is on the map
    ("Bradley-Terry (reward model)", "DPO"),  # "train a reward model and run DPO": chapters 06 and 10
    ("GRPO (DeepSeekMath)",),
    ("UCB1", "GAE", "PPO", "Safe RLHF", "RewardBench"),
    ("DPO", "KTO", "SLiC-HF", "DPO"),
    ("SLiC-HF", "sDPO"),  # both in the part of chapters 10 and 11; only chapter 11 names them
)


def _chapters_teaching(survey: SurveyMap, method: str) -> set[int]:
    return {
        c for s in survey.sections for p in s.parts for m in p.methods if m.name == method for c in m.chapters
    }


def reference_where_taught() -> dict[str, int]:
    """The lowest-numbered chapter teaching each method of WHERE_QUESTIONS, read off the map."""
    survey = load_survey_map()
    return {m: min(_chapters_teaching(survey, m)) for m in WHERE_QUESTIONS}


def reference_route(survey: SurveyMap, methods) -> list[int]:
    """For each method the lowest-numbered chapter teaching it; the chapters sorted, without repeats."""
    route = set()
    for method in methods:
        chapters = _chapters_teaching(survey, method)
        if not chapters:
            raise KeyError(f"no chapter teaches {method!r}")
        route.add(min(chapters))
    return sorted(route)


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


def check_route(fn) -> bool:
    """fn(survey_map: SurveyMap, methods: list[str]) -> sorted chapter numbers, one per method (its
    lowest-numbered chapter), without repeats."""
    name = "a route through the course"
    survey = load_survey_map()
    for methods in ROUTE_GOALS:
        got = call_safely(name, fn, survey, list(methods))
        expected = reference_route(survey, methods)
        if not isinstance(got, (list, tuple)) or list(got) != expected:
            raise ExerciseError(
                f"{name}: for {list(methods)} expected {expected}, got {got!r}. Hint: the chapters teaching "
                "a method are its own `chapters` (not every chapter of its part), in every part that lists "
                "it; keep the smallest of each method, then drop repeats and sort."
            )
    return passed(name)


def _unfinished_chapters_for_section(survey_map, section_id):
    section = next(s for s in survey_map.sections if s.id == section_id)
    return list(section.parts[0].chapters)  # only the first part


def _unfinished_route(survey_map, methods):
    return sorted(
        c
        for m in methods
        for s in survey_map.sections
        for p in s.parts
        if m in [x.name for x in p.methods]
        for c in p.chapters
    )  # every chapter, with repeats


EXERCISES = (
    Exercise(1, "Reading the map", check_where_taught, reference_where_taught,
             {m: 13 for m in WHERE_QUESTIONS}, value=True),
    Exercise(2, "Querying the data", check_chapters_for_section, reference_chapters_for_section,
             _unfinished_chapters_for_section),
    Exercise(3, "Plan your route", check_route, reference_route, _unfinished_route, kind="open"),
)  # fmt: skip
