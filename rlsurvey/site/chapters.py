"""What the site needs to know about one chapter notebook, read from the notebook itself.

- `read_chapter(path)` parses the header cell (title, survey section, objectives, prerequisites, CPU runtime,
  GPU notes), says whether the notebook has been executed, and lists its exercises: the checked ones (a
  `check_*` function of `rlsurvey.exercises.chNN` tells the reader whether the answer holds) and the open ones
  (questions and experiments with no check).
- `solution_sources(number, check)` returns the reference solution(s) behind a check as source text, for the
  site's "Show solution" elements.

Nothing here is invented: every field is text from the notebook, or source code from the package.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from rlsurvey.survey import parse_header

__all__ = ["ChapterInfo", "Exercise", "read_chapter", "parse_header", "solution_sources", "NOTEBOOK_NAME"]

NOTEBOOK_NAME = re.compile(r"^(\d{2})_(\w+)\.ipynb$")
DATA_HELPERS = ("load_", "make_", "sample_", "draw_")  # data, not solutions
OPEN_MARK = re.compile(r"\((Open|No check)\b", re.I)


@dataclass
class Exercise:
    number: int  # the item's number in the chapter's exercise list
    text: str  # the item's Markdown, as written
    checked: bool  # True when a check function grades it


@dataclass
class ChapterInfo:
    number: int  # NN of NN_slug.ipynb
    slug: str
    path: Path
    title: str  # the header's first line without "# NN · "
    fields: dict[str, str]  # header fields by name ("Survey section", "CPU runtime", ...), Markdown text
    objectives: list[str]  # the header's objectives list, Markdown items
    executed: bool  # at least one code cell has run (has an execution count)
    code_cells: int
    unrun_cells: int  # code cells without an execution count (all of them when not executed)
    checks: list[str] = field(default_factory=list)  # check_* names used by the exercises, in order
    exercises: list[Exercise] = field(default_factory=list)

    @property
    def page(self) -> str:
        """The chapter's page in the site."""
        return f"{self.number:02d}_{self.slug}.html"

    @property
    def cpu_runtime(self) -> str:
        return self.fields.get("CPU runtime", "not stated")

    @property
    def prerequisites(self) -> str:
        return self.fields.get("Prerequisites", "not stated")

    @property
    def prerequisite_chapters(self) -> list[int]:
        """Chapter numbers named in the first sentence of the prerequisites ("chapters 06 and 07 ...")."""
        first = re.split(r"\.(?:\s|$)", self.prerequisites, maxsplit=1)[0]
        if "chapter" not in first.lower():
            return []
        return sorted({int(n) for n in re.findall(r"(?<![\d.])(\d{2})(?![\d.])", first)})


def _exercise_items(markdown: str) -> list[tuple[int, str]]:
    """The numbered items ('1. ...', with continuation lines) of the exercises' Markdown."""
    items: list[tuple[int, str]] = []
    for line in markdown.splitlines():
        m = re.match(r"^(\d+)\.\s+(.*)", line)
        if m:
            items.append((int(m.group(1)), m.group(2)))
        elif items and line.startswith("   ") and line.strip():
            items[-1] = (items[-1][0], items[-1][1] + " " + line.strip())
        elif items and not line.strip():
            continue
        elif items and not line.startswith(" "):
            items.append((-1, ""))  # a paragraph ends the list item before it
    return [(n, t) for n, t in items if n > 0]


def exercise_cells(cells: list[dict]) -> tuple[int, int]:
    """Indices [start, stop) of the cells from '## Exercises' up to '## Further reading' (or the end)."""
    start = stop = len(cells)
    for i, cell in enumerate(cells):
        text = "".join(cell.get("source", ""))
        if cell.get("cell_type") != "markdown":
            continue
        if start == len(cells) and re.search(r"^## Exercises", text, re.M):
            start = i
        if i >= start and re.search(r"^## Further reading", text, re.M):
            stop = i
            break
    return start, stop


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def read_chapter(path: str | Path) -> ChapterInfo:
    """Read a chapter notebook `NN_slug.ipynb`; a bad name or a header without a title raises ValueError."""
    path = Path(path)
    m = NOTEBOOK_NAME.match(path.name)
    if not m:
        raise ValueError(f"path must name a chapter notebook 'NN_slug.ipynb', got {path.name!r}")
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    if not cells or cells[0].get("cell_type") != "markdown":
        raise ValueError(f"{path.name}: the first cell must be the Markdown header")
    title, fields, objectives = parse_header(_source(cells[0]))
    code = [c for c in cells if c.get("cell_type") == "code" and _source(c).strip()]
    unrun = sum(c.get("execution_count") is None for c in code)
    info = ChapterInfo(
        int(m.group(1)), m.group(2), path, title, fields, objectives, unrun < len(code), len(code), unrun
    )

    start, stop = exercise_cells(cells)
    section = cells[start:stop]
    tail = _source(cells[stop]).split("## Further reading")[0] if stop < len(cells) else ""
    markdown = "\n".join([*(_source(c) for c in section if c.get("cell_type") == "markdown"), tail])
    module = _exercise_module(info.number)
    names: list[str] = []
    items = dict(_exercise_items(markdown.replace("## Exercises", "")))
    for cell in section:  # code cells first: the order in which the reader meets the checks
        if cell.get("cell_type") == "code":
            names += re.findall(r"\b(check_\w+)", _source(cell))
            for m in re.finditer(r"^# (\d+)\.\s+(.+)$", _source(cell), re.M):  # items written as comments
                items.setdefault(int(m.group(1)), m.group(2).strip())
    names += re.findall(r"\b(check_\w+)", markdown)
    info.checks = [
        n for n in dict.fromkeys(names) if module is not None and callable(getattr(module, n, None))
    ]
    for k, (n, text) in enumerate(sorted(items.items())):
        is_open = bool(OPEN_MARK.search(text)) or (k >= len(info.checks) and "check_" not in text)
        info.exercises.append(Exercise(n, text, not is_open))
    return info


def _exercise_module(number: int):
    try:
        return importlib.import_module(f"rlsurvey.exercises.ch{number:02d}")
    except ModuleNotFoundError:
        return None


def solution_sources(number: int, check: str) -> list[tuple[str, str]]:
    """The reference solution behind `rlsurvey.exercises.chNN.<check>` as [(qualified name, source)].

    The chapter module's `reference_<name>` (or `_<name>_reference`) when it has one; otherwise the package
    functions the check compares with (a function of another `rlsurvey` module, or a reference helper of the
    chapter module); otherwise the check itself, which computes the expected answer.
    """
    module = _exercise_module(number)
    fn = getattr(module, check, None) if module is not None else None
    if fn is None or not check.startswith("check_"):
        raise ValueError(
            f"check must name a check function of rlsurvey.exercises.ch{number:02d}, got {check!r}"
        )
    stem = check.removeprefix("check_")
    found = [getattr(module, n) for n in (f"reference_{stem}", f"_{stem}_reference") if hasattr(module, n)]
    if not found:
        for name in fn.__code__.co_names:
            obj = module.__dict__.get(name)
            if not inspect.isfunction(obj):
                continue
            own = obj.__module__ == module.__name__
            foreign = obj.__module__.startswith("rlsurvey.") and obj.__module__ != "rlsurvey.exercises"
            if (own and "reference" in name) or (not own and foreign and not name.startswith(DATA_HELPERS)):
                found.append(obj)
    if not found:
        found = [fn]
    return [(f"{f.__module__}.{f.__qualname__}", inspect.getsource(f)) for f in found]
