"""The survey's map as data: its sections, the methods each names (arXiv ids), and the chapters teaching them.

Survey: "Reinforcement Learning Enhanced LLMs: A Survey", Wang et al., arXiv 2412.10400. The data lives in
`rlsurvey/assets/survey_map.json` so that the welcome chapter, the README and the tests read one source; the
descriptions there are this course's own summaries, not the survey's text.

- `load_survey_map()` reads and validates the file into dataclasses (`SurveyMap`, `Section`, `Part`,
  `Method`, `Chapter`).
- `draw_survey_map()` draws the map as a matplotlib figure: one row per part of a section, one column per
  chapter, a dot where the chapter teaches the part, and the methods named beside each row.
- `notebook_table()` lists the chapters with their notebook file and the CPU runtime measured in its header;
  `runtime_summary()` cuts a header's runtime field to its measurement ("107 s wall (87 s of CPU time)") and
  `runtime_table()` prints the table, so the welcome chapter never retypes a number a header states.
- `unnamed_credits()` lists every method that the map credits to a chapter whose notebook never names it.

A part of a section lists the chapters that teach it and the methods the survey names there. Each method also
says which of those chapters name it (`chapters` in the JSON, by default all of the part's); a method with no
chapter is one the survey names but the course does not teach, and the map shows it as such.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from rlsurvey.plotting import COLORS

__all__ = [
    "parse_header",
    "Method",
    "Part",
    "Section",
    "Chapter",
    "SurveyMap",
    "MAP_PATH",
    "load_survey_map",
    "parse_survey_map",
    "draw_survey_map",
    "notebook_table",
    "runtime_summary",
    "runtime_seconds",
    "runtime_table",
    "names_method",
    "unnamed_credits",
]

MAP_PATH = Path(__file__).parent / "assets" / "survey_map.json"
NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")


@dataclass(frozen=True)
class Method:
    name: str  # the method, paper or model as readers know it
    arxiv: str | None  # arXiv id such as "2305.18290"; None for work that is not on arXiv
    cite: str | None = None  # a bibliographic pointer when there is no arXiv id
    in_survey: bool = True  # False for work the course adds beside the survey's own lists
    chapters: tuple[int, ...] = ()  # the chapters of its part whose notebook names it; () if none does


@dataclass(frozen=True)
class Part:
    title: str  # the subsection or theme
    summary: str  # one sentence in this course's words
    chapters: tuple[int, ...]  # chapter numbers that teach it
    methods: tuple[Method, ...]  # what the survey names there

    @property
    def taught(self) -> tuple[Method, ...]:
        """The methods of this part that some chapter names."""
        return tuple(m for m in self.methods if m.chapters)

    @property
    def untaught(self) -> tuple[Method, ...]:
        """The methods the survey names here that no chapter of the course teaches."""
        return tuple(m for m in self.methods if not m.chapters)


@dataclass(frozen=True)
class Section:
    id: str  # "1" ... "9" for the survey's sections, "+" for the course's additions
    title: str
    summary: str
    parts: tuple[Part, ...]

    @property
    def chapters(self) -> tuple[int, ...]:
        return tuple(sorted({c for p in self.parts for c in p.chapters}))


@dataclass(frozen=True)
class Chapter:
    number: int  # 0 ... 13, the NN of notebooks/NN_slug.ipynb
    slug: str
    title: str
    section: str  # the survey section it follows, "-" for none
    device: str  # what it runs on with default parameters, and where a GPU helps
    teaches: str  # one line

    @property
    def notebook(self) -> str:
        return f"{self.number:02d}_{self.slug}.ipynb"


@dataclass(frozen=True)
class SurveyMap:
    title: str
    authors: str
    arxiv: str
    chapters: tuple[Chapter, ...]
    sections: tuple[Section, ...]

    def chapter(self, number: int) -> Chapter:
        for c in self.chapters:
            if c.number == number:
                return c
        raise KeyError(f"no chapter {number}; chapters are {[c.number for c in self.chapters]}")

    def sections_taught_by(self, number: int) -> list[tuple[Section, Part]]:
        """Every (section, part) that chapter `number` teaches."""
        return [(s, p) for s in self.sections for p in s.parts if number in p.chapters]

    def methods(self) -> list[Method]:
        """Every method named on the map, once per (name, arXiv id), in map order."""
        seen, out = set(), []
        for s in self.sections:
            for p in s.parts:
                for m in p.methods:
                    if (m.name, m.arxiv) not in seen:
                        seen.add((m.name, m.arxiv))
                        out.append(m)
        return out


def _need(obj: dict, key: str, kind: type, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}.{key} is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key} must be {kind.__name__}, got {type(value).__name__}: {value!r}")
    return value


def _method(raw: dict, where: str, part_chapters: list[int]) -> Method:
    name = _need(raw, "name", str, where)
    arxiv = raw.get("arxiv")
    if arxiv is not None and not (isinstance(arxiv, str) and ARXIV_ID.match(arxiv)):
        raise ValueError(f"{where}.arxiv must be an id like '2305.18290' or null, got {arxiv!r}")
    cite = raw.get("cite")
    if arxiv is None and not cite:
        raise ValueError(f"{where} ({name}) has no arXiv id, so it needs a 'cite' string")
    chapters = raw.get("chapters", part_chapters)
    if not isinstance(chapters, list) or any(c not in part_chapters for c in chapters):
        raise ValueError(
            f"{where}.chapters must list chapters of its part {part_chapters} (or be absent), "
            f"got {chapters!r}"
        )
    return Method(name, arxiv, cite, bool(raw.get("in_survey", True)), tuple(sorted(chapters)))


def parse_survey_map(data: dict) -> SurveyMap:
    """Validate the JSON structure of the map and build the dataclasses; errors name the faulty field."""
    survey = _need(data, "survey", dict, "map")
    chapters = []
    for i, raw in enumerate(_need(data, "chapters", list, "map")):
        where = f"chapters[{i}]"
        chapters.append(
            Chapter(
                number=_need(raw, "number", int, where),
                slug=_need(raw, "slug", str, where),
                title=_need(raw, "title", str, where),
                section=_need(raw, "section", str, where),
                device=_need(raw, "device", str, where),
                teaches=_need(raw, "teaches", str, where),
            )
        )
    numbers = [c.number for c in chapters]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"map.chapters must have distinct numbers, got {numbers}")
    sections = []
    for i, raw in enumerate(_need(data, "sections", list, "map")):
        where = f"sections[{i}]"
        parts = []
        for j, rp in enumerate(_need(raw, "parts", list, where)):
            pw = f"{where}.parts[{j}]"
            taught = _need(rp, "chapters", list, pw)
            unknown = [c for c in taught if c not in numbers]
            if not taught or unknown:
                raise ValueError(f"{pw}.chapters must name known chapters {numbers}, got {taught}")
            methods = tuple(
                _method(m, f"{pw}.methods[{k}]", taught) for k, m in enumerate(_need(rp, "methods", list, pw))
            )
            parts.append(
                Part(_need(rp, "title", str, pw), _need(rp, "summary", str, pw), tuple(taught), methods)
            )
        if not parts:
            raise ValueError(f"{where}.parts must not be empty")
        title, summary = _need(raw, "title", str, where), _need(raw, "summary", str, where)
        sections.append(Section(_need(raw, "id", str, where), title, summary, tuple(parts)))
    ids = [s.id for s in sections]
    if len(set(ids)) != len(ids):
        raise ValueError(f"map.sections must have distinct ids, got {ids}")
    return SurveyMap(
        title=_need(survey, "title", str, "survey"),
        authors=_need(survey, "authors", str, "survey"),
        arxiv=_need(survey, "arxiv", str, "survey"),
        chapters=tuple(sorted(chapters, key=lambda c: c.number)),
        sections=tuple(sections),
    )


def load_survey_map(path: str | Path | None = None) -> SurveyMap:
    """Read the map (the shipped `assets/survey_map.json` by default) and validate it."""
    path = Path(path) if path is not None else MAP_PATH
    if not path.is_file():
        raise ValueError(f"path must be an existing JSON file, got {str(path)!r}")
    return parse_survey_map(json.loads(path.read_text(encoding="utf-8")))


def _short(methods: tuple[Method, ...], limit: int = 70) -> str:
    text = ", ".join(m.name for m in methods)
    return text if len(text) <= limit else text[: limit - 1].rsplit(", ", 1)[0] + ", ..."


def draw_survey_map(survey: SurveyMap | None = None, chapters: range | None = None):
    """The survey as a grid: a row per part (grouped by section), a column per chapter, a dot where taught.

    Rows are labelled `§id · part`, coloured by section (legend below); the methods a chapter names are listed
    at the right, with a count of those the survey names there and no chapter teaches. `chapters` picks the
    columns (default: every chapter but the welcome). Returns the figure.
    """
    survey = survey or load_survey_map()
    cols = list(chapters or [c.number for c in survey.chapters if c.number > 0])
    rows = [(s, p) for s in survey.sections for p in s.parts]
    fig, ax = plt.subplots(figsize=(14, 0.32 * len(rows) + 2.6))
    labels, handles = [], {}
    for y, (section, part) in enumerate(rows):
        order = [s.id for s in survey.sections].index(section.id)
        colour = COLORS[order % len(COLORS)]
        taught = [cols.index(c) for c in part.chapters if c in cols]
        dots = ax.scatter(taught, [y] * len(taught), s=80, color=colour, zorder=3)
        handles.setdefault(section.id, dots)
        extra = f" (+{len(part.untaught)} not taught)" if part.untaught else ""
        label = (_short(part.taught) if part.taught else "no method taught") + extra
        ax.text(len(cols) - 0.2, y, label, va="center", fontsize=7.5, color="#333333")
        labels.append(f"§{section.id} · {part.title}")
    starts = [i for i, (s, _) in enumerate(rows) if i == 0 or rows[i - 1][0] is not s]
    for y in starts[1:]:
        ax.axhline(y - 0.5, color="#bbbbbb", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xticks(
        range(len(cols)), [f"{c:02d} {survey.chapter(c).slug}" for c in cols], fontsize=7.5, rotation=90
    )
    ax.xaxis.tick_top()
    ax.set_xlim(-0.5, len(cols) + 8.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    names = [f"§{s.id} {s.title}" for s in survey.sections]
    ax.legend(list(handles.values()), names, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=5,
              fontsize=7.5, frameon=False)  # fmt: skip
    ax.set_title(f"{survey.title} (arXiv {survey.arxiv}): which chapter teaches what", fontsize=10)
    fig.tight_layout()
    return fig


HEADER_FIELD = re.compile(r"^\*\*([A-Za-z][A-Za-z ]*):\*\*[ \t]*", re.M)


def parse_header(source: str) -> tuple[str, dict[str, str], list[str]]:
    """Split a header cell into (title, fields, objectives).

    The title is the first line without '# ' and the chapter number; a field is a paragraph that starts with
    '**Name:**' and runs to the next field; objectives are the '- ' items of the 'Objectives' field.
    """
    lines = source.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"a header must start with '# NN · Title', got {lines[:1]!r}")
    title = re.sub(r"^#\s+\d{2}\s*[·:.-]\s*", "", lines[0]).strip()
    body = "\n".join(lines[1:])
    marks = list(HEADER_FIELD.finditer(body))
    fields = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        fields[m.group(1).strip()] = body[m.end() : nxt.start() if nxt else len(body)].strip()
    objectives, current = [], None
    for line in fields.get("Objectives", "").splitlines():
        if line.lstrip().startswith("- "):
            current = line.lstrip()[2:].strip()
            objectives.append(current)
        elif current is not None and line.strip():
            objectives[-1] += " " + line.strip()
    return title, fields, objectives


RUNTIME = re.compile(r"^(?P<wall>(?:(?P<min>\d+) min )?(?P<sec>\d+(?:\.\d+)?) s) wall\b")


def runtime_summary(field: str) -> str:
    """The measurement at the start of a header's CPU runtime field, whole: its first clause, up to the first
    comma, semicolon or sentence end outside parentheses ("107 s wall (87 s of CPU time)"). A field that does
    not start with a wall time ("N s wall" or "M min N s wall") is returned as its first sentence."""
    text = " ".join(field.split())
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        sentence_end = ch == "." and (i + 1 == len(text) or text[i + 1] == " ") and not text[i - 1].isdigit()
        end = ch in ",;" or sentence_end
        if depth == 0 and end:
            return text[:i].strip()
    return text.strip()


def runtime_seconds(field: str) -> float | None:
    """The wall time a header's CPU runtime field starts with, in seconds; None if it starts otherwise."""
    m = RUNTIME.match(" ".join(field.split()))
    if m is None:
        return None
    return 60 * int(m.group("min") or 0) + float(m.group("sec"))


def _header_runtime(path: Path) -> str | None:
    """The '**CPU runtime:**' field of a notebook's header cell, whole, or None."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    if not cells:
        return None
    try:
        _, fields, _ = parse_header("".join(cells[0].get("source", [])))
    except ValueError:
        return None
    runtime = fields.get("CPU runtime", "").strip()
    return runtime or None


def _notebook_folder(notebook_dir: str | Path | None) -> Path:
    """`notebook_dir`; by default the checkout's notebooks/, else the working directory (a notebook's)."""
    if notebook_dir is not None:
        return Path(notebook_dir)
    has_chapters = [d for d in (NOTEBOOK_DIR, Path.cwd()) if any(d.glob("[0-9][0-9]_*.ipynb"))]
    return has_chapters[0] if has_chapters else NOTEBOOK_DIR


def notebook_table(notebook_dir: str | Path | None = None, survey: SurveyMap | None = None) -> list[dict]:
    """One row per chapter: number, notebook, title, survey section, device, and the measured CPU runtime
    from the notebook's own header: `cpu_runtime` its measurement (`runtime_summary`), `cpu_seconds` the wall
    time in seconds, `runtime_field` the whole field ("not written yet" when the notebook does not exist)."""
    survey = survey or load_survey_map()
    folder = _notebook_folder(notebook_dir)
    rows = []
    for c in survey.chapters:
        path = folder / c.notebook
        field = _header_runtime(path) if path.is_file() else None
        runtime = runtime_summary(field) if field else None
        rows.append(
            {
                "number": c.number,
                "notebook": c.notebook,
                "title": c.title,
                "section": c.section,
                "device": c.device,
                "exists": path.is_file(),
                "cpu_runtime": runtime or ("not stated" if path.is_file() else "not written yet"),
                "cpu_seconds": runtime_seconds(field) if field else None,
                "runtime_field": field or "",
            }
        )
    return rows


def runtime_table(notebook_dir: str | Path | None = None, survey: SurveyMap | None = None) -> str:
    """The chapters as a text table: number, notebook, survey section, device, and the CPU runtime each
    notebook's header states (its measurement, whole), with the total wall time of the written chapters."""
    rows = notebook_table(notebook_dir, survey)
    width = max(len(r["notebook"]) for r in rows)
    device = max(len(r["device"]) for r in rows)
    head = f"{'NN':3s} {'notebook':{width}s} {'survey':7s} {'runs on':{device}s}"
    lines = [f"{head} CPU runtime (from its header)"]
    for r in rows:
        cells = f"{r['number']:02d}  {r['notebook']:{width}s} {r['section']:7s} {r['device']:{device}s}"
        lines.append(f"{cells} {r['cpu_runtime']}")
    timed = [r["cpu_seconds"] for r in rows if r["cpu_seconds"] is not None]
    total = sum(timed)
    written = sum(r["exists"] for r in rows)
    lines.append(
        f"\n{written} of {len(rows)} chapters are in this checkout; the {len(timed)} timed ones take "
        f"{total / 60:.1f} min of wall time in all."
    )
    return "\n".join(lines)


_NAME_CUTS = (" (", " /")


def names_method(text: str, method: Method) -> bool:
    """Whether `text` names `method`: its arXiv id, or its name (or the name before a parenthesis or a slash,
    "RLOO" for "RLOO (Back to Basics)") as a whole word."""
    if method.arxiv and method.arxiv in text:
        return True
    names = {method.name} | {method.name.split(cut)[0] for cut in _NAME_CUTS}
    return any(re.search(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])", text) for n in names if n)


def _notebook_text(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return "\n".join("".join(c.get("source", [])) for c in cells)


def unnamed_credits(survey: SurveyMap | None = None, notebook_dir: str | Path | None = None) -> list[str]:
    """Every credit of the map that the chapter's notebook does not back: '§id part: method -> chapter NN'
    for each method credited to a chapter whose notebook (its cells' source) never names it."""
    survey = survey or load_survey_map()
    folder = _notebook_folder(notebook_dir)
    texts = {}
    problems = []
    for s in survey.sections:
        for p in s.parts:
            for m in p.methods:
                for c in m.chapters:
                    if c not in texts:
                        path = folder / survey.chapter(c).notebook
                        texts[c] = _notebook_text(path) if path.is_file() else ""
                    if not names_method(texts[c], m):
                        problems.append(f"§{s.id} {p.title}: {m.name} -> chapter {c:02d}")
    return problems
