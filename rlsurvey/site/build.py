"""Build the course site: one static HTML page per chapter notebook, the survey map as the landing page, and
the teacher's guide. Nothing is fetched from a network: styles and figures are inline, and the only script
is the site's own copy of MathJax (from the `jupyter-server-mathjax` package, in the `lab` and `dev` extras)
that typesets the equations, so the folder can be opened from disk or served by any static web server.
Without that package the pages show the equations' TeX source.
"""

from __future__ import annotations

import base64
import html
import io
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlsurvey.progress import tqdm
from rlsurvey.site.chapters import ChapterInfo, read_chapter
from rlsurvey.site.guide import chapter_card, landing, notation, teachers
from rlsurvey.site.render import MATHJAX_SKIP, mathjax_source, notebook_body, page
from rlsurvey.survey import NOTEBOOK_DIR, SurveyMap, draw_survey_map, load_survey_map

__all__ = ["build_site", "SiteReport", "COURSE"]

COURSE = "rlsurvey · RL for LLMs"


@dataclass
class SiteReport:
    out: Path  # the site folder
    pages: list[Path] = field(default_factory=list)  # every page written, index.html first
    unexecuted: list[str] = field(default_factory=list)  # notebooks built without outputs
    math: bool = False  # equations typeset: MathJax was found and copied into the site
    seconds: float = 0.0  # wall time of the build


def _survey_png(survey: SurveyMap) -> str:
    import matplotlib.pyplot as plt

    fig = draw_survey_map(survey)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _copy_mathjax(out: Path) -> bool:
    """Copy MathJax, less the parts the pages never load, into `out/mathjax`; False if it is not installed."""
    source = mathjax_source()
    if source is None:
        return False
    skip = {source / name for name in MATHJAX_SKIP}

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(folder) / n in skip]

    shutil.copytree(source, out / "mathjax", dirs_exist_ok=True, ignore=ignore)
    return True


def _pager(prev: ChapterInfo | None, nxt: ChapterInfo | None) -> str:
    left = (
        f'<a class="prev" href="{prev.page}">← {prev.number:02d} {html.escape(prev.title)}</a>'
        if prev
        else ""
    )
    right = (
        f'<a class="next" href="{nxt.page}">{nxt.number:02d} {html.escape(nxt.title)} →</a>' if nxt else ""
    )
    left = left or '<a class="prev" href="index.html">← Survey map</a>'
    return f'<nav class="pager">{left}{right}</nav>'


def build_site(
    out: str | Path,
    notebook_dir: str | Path | None = None,
    survey: SurveyMap | None = None,
    map_figure: bool = True,
    progress: bool = True,
) -> SiteReport:
    """Render every `NN_slug.ipynb` of `notebook_dir` (default: the checkout's notebooks/) into `out`.

    Writes index.html (the survey map), teachers.html (the teacher's guide), notation.html (the notation
    table and the evidence standard of the chapters' README.md) and one page per chapter with
    navigation. Notebooks that have not been executed are built anyway and marked on their page and in the
    navigation. `map_figure=False` skips drawing the survey map figure. Returns a `SiteReport`.
    """
    start = time.perf_counter()
    folder = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ValueError(
            f"notebook_dir must hold chapter notebooks NN_slug.ipynb, found none in {str(folder)!r}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    survey = survey or load_survey_map()
    chapters = [read_chapter(p) for p in paths]
    report = SiteReport(out=out, unexecuted=[c.path.name for c in chapters if not c.executed])
    report.math = math = _copy_mathjax(out)

    index = out / "index.html"
    index.write_text(
        page(
            "Survey map · " + COURSE,
            landing(survey, chapters, _survey_png(survey) if map_figure else None),
            chapters,
            "index.html",
            COURSE,
            math,
        ),
        encoding="utf-8",
    )
    report.pages.append(index)
    guide = out / "teachers.html"
    guide.write_text(
        page("Teacher's guide · " + COURSE, teachers(chapters), chapters, "teachers.html", COURSE, math),
        encoding="utf-8",
    )
    report.pages.append(guide)
    readme = folder / "README.md"
    readme = readme if readme.is_file() else NOTEBOOK_DIR / "README.md"
    symbols = out / "notation.html"
    symbols.write_text(
        page(
            "Notation · " + COURSE,
            notation(readme.read_text(encoding="utf-8")),
            chapters,
            "notation.html",
            COURSE,
            math,
        ),
        encoding="utf-8",
    )
    report.pages.append(symbols)
    for i, c in enumerate(tqdm(chapters, desc="chapters", disable=not progress)):
        prev = chapters[i - 1] if i > 0 else None
        nxt = chapters[i + 1] if i + 1 < len(chapters) else None
        main = chapter_card(c) + _pager(prev, nxt) + notebook_body(c) + _pager(prev, nxt)
        target = out / c.page
        target.write_text(
            page(f"{c.number:02d} {c.title} · {COURSE}", main, chapters, c.page, COURSE, math),
            encoding="utf-8",
        )
        report.pages.append(target)
    report.seconds = time.perf_counter() - start
    return report
