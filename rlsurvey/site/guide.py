"""The site's own pages: the landing page (the survey map), the chapter card, and the teacher's guide.

The notation page is the evidence standard and the notation table of `notebooks/README.md`, rendered as they
are written there, so the site and the book's conventions cannot differ.

The teacher's guide is a 7-week syllabus (`SYLLABUS`) over the chapters, with each chapter's measured CPU
runtime and prerequisites as its notebook header states them, and its exercises sorted into checked ones
(graded by a check function: homework) and open ones (questions and experiments: discussion or projects).
`syllabus_problems()` says where the syllabus would teach a chapter before one of its prerequisites.
"""

from __future__ import annotations

import html
import re

from nbconvert.filters.markdown import markdown2html

from rlsurvey.site.chapters import ChapterInfo
from rlsurvey.survey import SurveyMap

__all__ = [
    "SYLLABUS",
    "md",
    "chapter_card",
    "landing",
    "teachers",
    "syllabus_problems",
    "readme_sections",
    "notation",
]

# week, theme, chapters. Each chapter comes after the chapters its header names as prerequisites.
SYLLABUS: tuple[tuple[int, str, tuple[int, ...]], ...] = (
    (1, "Foundations: the course, RL problems, policy gradients", (0, 1, 2)),
    (2, "PPO, and the language model as a policy", (3, 4, 5)),
    (3, "Reward models and RLHF with PPO", (6, 7)),
    (4, "What goes wrong in RLHF; direct preference optimization", (9, 10)),
    (5, "The DPO family and AI feedback", (11, 8)),
    (6, "RL for reasoning with verifiable rewards, before and after the survey", (12, 14)),
    (7, "Process rewards, agents with tools, and GPU kernels", (15, 16, 13)),
)


def md(text: str, inline: bool = False) -> str:
    """Markdown to HTML; `inline` drops the paragraph around a one-paragraph result."""
    out = markdown2html(text).strip()
    if inline:
        out = re.sub(r"^<p>(.*)</p>$", r"\1", out, flags=re.S)
    return out


def _runtime(info: ChapterInfo) -> str:
    """The header's CPU runtime, without the GPU advice some headers append to it."""
    return re.split(r"\s+On a GPU\b", info.cpu_runtime, maxsplit=1)[0].strip()


def chapter_card(info: ChapterInfo) -> str:
    """The top of a chapter page: survey section, objectives, prerequisites, timing."""
    objectives = "".join(f"<li>{md(o, inline=True)}</li>" for o in info.objectives)
    rows = [
        ("Survey section", md(info.fields.get("Survey section", "-"), inline=True)),
        ("Objectives", f"<ul>{objectives}</ul>"),
        ("Prerequisites", md(info.prerequisites, inline=True)),
        ("CPU runtime", md(_runtime(info), inline=True)),
    ]
    if "On a GPU" in info.fields:
        rows.append(("On a GPU", md(info.fields["On a GPU"], inline=True)))
    checked = sum(e.checked for e in info.exercises)
    rows.append(("Exercises", f"{checked} checked, {len(info.exercises) - checked} open"))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    if not info.executed:
        warn = (
            '<p class="warning">This chapter\'s notebook has not been executed yet, so the page shows '
            "its code without outputs or figures. Run it in JupyterLab to see them.</p>"
        )
    elif info.unrun_cells:
        warn = (
            f'<p class="warning">{info.unrun_cells} code cell(s) of this notebook have not been run yet.</p>'
        )
    else:
        warn = ""
    return (
        f'<p class="chapter-num">Chapter {info.number:02d}</p><h1>{html.escape(info.title)}</h1>'
        f'<div class="card"><dl>{dl}</dl></div>{warn}'
    )


def _chips(numbers, by_number: dict[int, ChapterInfo]) -> str:
    out = []
    for n in numbers:
        c = by_number.get(n)
        label = f"{n:02d}" + ("" if c else " (not written)")
        out.append(
            f'<a href="{c.page}" title="{html.escape(c.title)}">{label}</a>' if c else f"<a>{label}</a>"
        )
    return f'<span class="chips">{"".join(out)}</span>'


def _method(m) -> str:
    name = html.escape(m.name)
    return f'<a href="https://arxiv.org/abs/{m.arxiv}">{name}</a>' if m.arxiv else name


def landing(survey: SurveyMap, chapters: list[ChapterInfo], map_png: str | None) -> str:
    """The survey map: its sections, each part with the chapters teaching it; then a card per chapter."""
    by_number = {c.number: c for c in chapters}
    out = [
        f"<h1>Reinforcement learning for large language models</h1>"
        f'<p class="lead">A course in {len(chapters)} notebooks following the survey '
        f"<em>{html.escape(survey.title)}</em> ({html.escape(survey.authors)}, arXiv "
        f'<a href="https://arxiv.org/abs/{survey.arxiv}">{survey.arxiv}</a>). Each part of the survey below '
        "links to the chapters that teach it; each chapter page opens with its objectives, prerequisites "
        'and measured CPU time. Teachers: see the <a href="teachers.html">teacher\'s guide</a>.</p>'
    ]
    if map_png:
        out.append(
            f'<figure class="map"><img src="data:image/png;base64,{map_png}" alt="The survey map: a row per '
            'part of the survey, a column per chapter, a dot where the chapter teaches the part">'
            "<figcaption>Which chapter teaches which part of the survey.</figcaption></figure>"
        )
    out.append("<h2>The survey, section by section</h2>")
    for s in survey.sections:
        label = f"§{s.id}" if s.id != "+" else "Beyond the survey"
        parts = []
        for p in s.parts:
            methods = ", ".join(_method(m) for m in p.taught)
            untaught = ", ".join(_method(m) for m in p.untaught)
            parts.append(
                f'<div class="part"><strong>{html.escape(p.title)}</strong> {_chips(p.chapters, by_number)}'
                f"<br>{html.escape(p.summary)}"
                + (f'<div class="methods">{methods}</div>' if methods else "")
                + (
                    f'<div class="methods untaught">Named by the survey, not taught here: {untaught}</div>'
                    if untaught
                    else ""
                )
                + "</div>"
            )
        out.append(
            f'<div class="section-block"><h3>{label} {html.escape(s.title)}</h3>'
            f"<p>{html.escape(s.summary)}</p>{''.join(parts)}</div>"
        )
    out.append('<h2>The chapters</h2><div class="grid">')
    for c in chapters:
        objectives = "".join(f"<li>{md(o, inline=True)}</li>" for o in c.objectives)
        badge = "" if c.executed else ' <span class="badge">no outputs yet</span>'
        out.append(
            f'<div class="card"><h3><a href="{c.page}"><span class="chapter-num">{c.number:02d}</span> '
            f"{html.escape(c.title)}</a>{badge}</h3>"
            f'<p class="meta">Survey: {md(c.fields.get("Survey section", "-").split(",")[0], inline=True)}'
            f"<br>CPU: {md(_runtime(c), inline=True)}</p>"
            f"<details><summary>Objectives</summary><ul>{objectives}</ul></details></div>"
        )
    out.append("</div>")
    return "\n".join(out)


def syllabus_problems(chapters: list[ChapterInfo], syllabus=SYLLABUS) -> list[str]:
    """Every chapter the syllabus leaves out or teaches twice, and every prerequisite taught later."""
    week_of: dict[int, int] = {}
    problems = []
    order = [n for _, _, week in syllabus for n in week]
    for week, _, numbers in syllabus:
        for n in numbers:
            if n in week_of:
                problems.append(f"chapter {n:02d} is in weeks {week_of[n]} and {week}")
            week_of[n] = week
    for c in chapters:
        if c.number not in week_of:
            problems.append(f"chapter {c.number:02d} is in no week")
            continue
        for p in c.prerequisite_chapters:
            if p in week_of and order.index(p) > order.index(c.number):
                problems.append(
                    f"chapter {c.number:02d} (week {week_of[c.number]}) needs chapter {p:02d} first"
                )
    return problems


def _exercise_list(items, by_number) -> str:
    return "".join(f"<li><strong>{e.number}.</strong> {md(e.text, inline=True)}</li>" for e in items)


def teachers(chapters: list[ChapterInfo], syllabus=SYLLABUS) -> str:
    """The teacher's guide: syllabus, runtimes, prerequisites, and the exercises that suit homework."""
    by_number = {c.number: c for c in chapters}
    out = [
        "<h1>Teacher's guide</h1>"
        '<p class="lead">A seven-week course over the chapters, two or three a week. Every chapter runs '
        "offline on a laptop CPU; the times below are the ones measured in each notebook's header (most "
        "on a 2-core machine, often shared with other jobs, so an idle machine is faster). Students need "
        "Python 3.11 or newer; <code>python3 course.py lab</code> sets everything up and opens "
        "JupyterLab.</p>",
        "<h2>Syllabus</h2><table><thead><tr><th>Week</th><th>Theme</th><th>Chapters</th><th>CPU runtime "
        "(from each notebook's header)</th></tr></thead><tbody>",
    ]
    for week, theme, numbers in syllabus:
        names = "<br>".join(
            f'<a href="{by_number[n].page}">{n:02d} {html.escape(by_number[n].title.split(":")[0])}</a>'
            if n in by_number
            else f"{n:02d} (not written yet)"
            for n in numbers
        )
        times = "<br>".join(
            f"{n:02d}: {md(_runtime(by_number[n]), inline=True)}" for n in numbers if n in by_number
        )
        out.append(f"<tr><td>{week}</td><td>{html.escape(theme)}</td><td>{names}</td><td>{times}</td></tr>")
    out.append("</tbody></table>")
    problems = syllabus_problems(chapters, syllabus)
    if problems:
        out.append(f'<p class="warning">Syllabus issues: {html.escape("; ".join(problems))}.</p>')
    out.append(
        "<h2>Prerequisites</h2><p>Before week 1: Python, NumPy, expectations and conditional probability; "
        "from week 2, PyTorch autograd. Each chapter's own prerequisites, as its header states them:</p>"
        "<table><thead><tr><th>Chapter</th><th>Prerequisites</th><th>Needs chapters</th></tr></thead><tbody>"
    )
    for c in chapters:
        needs = ", ".join(f"{p:02d}" for p in c.prerequisite_chapters) or "-"
        out.append(
            f'<tr><td><a href="{c.page}">{c.number:02d}</a></td><td>{md(c.prerequisites, inline=True)}</td>'
            f"<td>{needs}</td></tr>"
        )
    out.append("</tbody></table>")
    out.append(
        "<h2>Exercises and homework</h2><p><strong>Checked</strong> exercises suit homework: each has "
        "a check function in <code>rlsurvey.exercises.chNN</code> that runs the student's answer on "
        "inputs the student has not seen and either prints <code>[ok]</code> or raises "
        "<code>ExerciseError</code> with a hint, so students know when they are done and a grader can "
        "run the same check on a submitted function. Their reference solutions are on each chapter page "
        "behind <em>Show solution</em>; do not hand the site to students before a graded deadline. "
        "<strong>Open</strong> exercises (experiments and questions without a check) suit class "
        "discussion, lab sessions or a short written report.</p>"
    )
    for c in chapters:
        checked = [e for e in c.exercises if e.checked]
        open_ = [e for e in c.exercises if not e.checked]
        out.append(
            f'<h3><a href="{c.page}">{c.number:02d} {html.escape(c.title)}</a></h3>'
            f"<p class='meta'>Homework (checked, {len(checked)}): "
            f"{', '.join(f'<code>{n}</code>' for n in c.checks) or 'none'}</p>"
            f"<ul>{_exercise_list(checked, by_number)}</ul>"
            + (
                f"<p class='meta'>Discussion or project (open, {len(open_)}):</p>"
                f"<ul>{_exercise_list(open_, by_number)}</ul>"
                if open_
                else ""
            )
        )
    return "\n".join(out)


NOTATION_SECTIONS = ("The evidence standard", "Notation")


def readme_sections(text: str, titles=NOTATION_SECTIONS) -> dict[str, str]:
    """The `## Title` sections of a Markdown text, by title, without their headings; missing ones left out."""
    found = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        if title.strip() in titles:
            found[title.strip()] = body.strip()
    return found


def notation(readme: str) -> str:
    """The notation page: the evidence standard and the notation table of notebooks/README.md."""
    sections = readme_sections(readme)
    if "Notation" not in sections:
        raise ValueError("the chapters' README must have a '## Notation' section with the notation table")
    out = [
        "<h1>Notation and the evidence standard</h1>"
        '<p class="lead">Every chapter uses the symbols below with one meaning each, and holds its claims '
        "to the standard that follows. Both are the text of <code>notebooks/README.md</code>, where new "
        "chapters start.</p>"
    ]
    for title in NOTATION_SECTIONS:
        if title in sections:
            out.append(f"<h2>{html.escape(title)}</h2>{md(sections[title])}")
    return "\n".join(out)
