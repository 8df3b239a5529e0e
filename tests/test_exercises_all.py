"""Every exercise of every chapter, discovered from `rlsurvey.exercises.registry()`: its reference
solution passes its check, a typical wrong answer is refused with a hint, and the notebooks and the registry
agree (every exercise cell calls a registered check of its chapter, every registered check is called)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

from rlsurvey.exercises import CHAPTERS, Exercise, ExerciseError, registry, solutions

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REGISTRY = registry()
ALL = [(ch, ex) for ch, exercises in REGISTRY.items() for ex in exercises]
IDS = [f"ch{ch:02d}-ex{ex.number}" for ch, ex in ALL]


@pytest.mark.parametrize("chapter, exercise", ALL, ids=IDS)
def test_reference_solution_passes(chapter, exercise: Exercise, capsys):
    assert exercise.run(exercise.answer()) is True
    assert "[ok]" in capsys.readouterr().out


@pytest.mark.parametrize("chapter, exercise", ALL, ids=IDS)
def test_wrong_answer_is_refused_with_a_hint(chapter, exercise: Exercise):
    with pytest.raises(ExerciseError) as info:
        exercise.run(exercise.wrong)
    message = str(info.value)
    assert "Hint" in message and len(message) > 40, message


def test_every_chapter_has_numbered_exercises():
    assert set(REGISTRY) == set(CHAPTERS)
    for chapter, exercises in REGISTRY.items():
        assert [e.number for e in exercises] == list(range(1, len(exercises) + 1)), chapter
        assert all(e.kind in ("checked", "open") for e in exercises)


def test_solutions_for_teachers():
    for chapter in CHAPTERS:
        rows = solutions(chapter)
        assert [r[0] for r in rows] == [e.number for e in REGISTRY[chapter]]
        for number, title, check_name, source, kind in rows:
            assert title and check_name.startswith("check_") and kind in ("checked", "open")
            assert source.lstrip().startswith("def "), (chapter, number, source[:80])
    assert solutions("07") == solutions(7)
    for bad in (17, -1, "x", None, True):
        with pytest.raises(ValueError, match="chapter must be one of"):
            solutions(bad)


def _notebook(chapter: int):
    (path,) = NOTEBOOKS.glob(f"{chapter:02d}_*.ipynb")
    return nbformat.read(path, as_version=4)


def _exercise_section(nb):
    """The cells from the markdown holding '## Exercises' up to the one holding '## Further reading'."""
    start = next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source
    )
    section = [nb.cells[start]]
    for c in nb.cells[start + 1 :]:
        section.append(c)
        if c.cell_type == "markdown" and "## Further reading" in c.source:
            break
    return section


def _called_names(source: str) -> set[str]:
    """Names check_* in the code, comments excluded (a commented-out call does not count)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.string for t in tokens if t.type == tokenize.NAME and t.string.startswith("check_")}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_exercise_cells_call_registered_checks(chapter):
    section = _exercise_section(_notebook(chapter))
    registered = {e.check.__name__ for e in REGISTRY[chapter]}
    used = set()
    for cell in section:
        if cell.cell_type != "code":
            continue
        names = _called_names(cell.source)
        assert names, f"notebook {chapter:02d}: an exercise cell calls no check:\n{cell.source[:200]}"
        assert names <= registered, f"notebook {chapter:02d}: unregistered checks {names - registered}"
        used |= names
    assert registered <= used, f"notebook {chapter:02d} never calls {registered - used}"
    text = "\n".join(c.source for c in section if c.cell_type == "markdown")
    for e in REGISTRY[chapter]:
        assert re.search(rf"^\s*{e.number}\. ", text, re.M) or f"# {e.number}. " in "\n".join(
            c.source for c in section
        ), f"notebook {chapter:02d}: exercise {e.number} ({e.title}) is not in the Exercises section"
