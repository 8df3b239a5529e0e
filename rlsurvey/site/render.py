"""Turning one executed chapter notebook into the body of a site page, and the page shell around it.

The body comes from nbconvert's HTMLExporter with JupyterLab's cell markup (`lab/base.html.j2`) but none of
its page template: the stock page loads RequireJS and MathJax from a CDN, which an offline reader cannot
reach, so the page shell, the styles and the syntax-highlighting colours are written here and every page is
self-contained (figures are inline PNG data URIs). Before export the notebook is adjusted:

- the header cell is dropped (the page shows it as the chapter card on top);
- tqdm progress widgets become static bars with their final state (the widget state saved in the notebook),
  since the page has no widget manager to run them;
- after each exercise cell a placeholder is inserted that becomes a closed `<details>` element holding the
  reference solution of the checks the cell calls: solutions show only when the reader asks.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from rlsurvey.site.chapters import ChapterInfo, exercise_cells, solution_sources

__all__ = ["notebook_body", "page", "STYLE"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SLOT = "RLSURVEY-SOLUTION-SLOT-{}"
# Only the cells: JupyterLab's cell markup without its page (no scripts, no CDN). Pygments' highlighted code
# is already escaped, so the input skips the HTML sanitizer, which took most of the build's time.
CELLS_TEMPLATE = """{%- extends 'base.html.j2' -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
{%- endblock input %}
"""


class _CellsExporter(HTMLExporter):
    """HTMLExporter without its final BeautifulSoup pass (alt text and tab stops), done here by `_finish`."""

    def from_notebook_node(self, nb, resources=None, **kw):
        lang = nb.metadata.get("language_info", {})
        lexer = lang.get("pygments_lexer", lang.get("name"))
        self.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        self.register_filter(
            "filter_data_type",
            WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources),
        )
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


def _finish(body: str) -> str:
    return body.replace("<img src=", '<img alt="A figure of this chapter" src=')


@functools.cache
def _exporter() -> HTMLExporter:
    exporter = _CellsExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"rlsurvey_cells.html.j2": CELLS_TEMPLATE})],
        template_file="rlsurvey_cells.html.j2",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    return exporter


def _progress_html(view: dict, state: dict) -> str | None:
    """A static bar for a tqdm widget (an HBox of description, FloatProgress and postfix) from saved state."""
    box = state.get(view.get("model_id", ""), {}).get("state", {})
    parts = [state.get(ref.removeprefix("IPY_MODEL_"), {}) for ref in box.get("children", [])]
    bars = [p["state"] for p in parts if p.get("model_name") in ("FloatProgressModel", "IntProgressModel")]
    if not bars:
        return None
    texts = [p["state"].get("value", "") for p in parts if p.get("model_name") == "HTMLModel"]
    desc, post = (texts + ["", ""])[:2]
    bar = bars[0]
    done = bar.get("value", 0) >= bar.get("max", 1)
    return (
        f'<div class="progress{" done" if done else ""}"><span class="desc">{desc}</span>'
        f'<progress max="{bar.get("max", 1)}" value="{bar.get("value", 0)}"></progress>'
        f'<span class="post">{post}</span></div>'
    )


def _static_widgets(nb) -> None:
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                static = _progress_html(data[WIDGET_VIEW], state)
                text = data.get("text/plain", "")
                data.pop(WIDGET_VIEW)
                data.pop("text/plain", None)
                data["text/html"] = static or f"<pre>{html.escape(''.join(text))}</pre>"
    nb.metadata.pop("widgets", None)


def _solution_html(info: ChapterInfo, checks: list[str]) -> str:
    blocks = []
    fmt = HtmlFormatter(cssclass="highlight")
    for check in checks:
        sources = solution_sources(info.number, check)
        code = "\n\n".join(src for _, src in sources)
        names = ", ".join(f"<code>{html.escape(n)}</code>" for n, _ in sources)
        blocks.append(
            f'<details class="solution"><summary>Show solution: <code>{check}</code></summary>'
            f'<div class="solution-body"><p class="solution-from">Reference solution from {names}.</p>'
            f"{highlight(code, PythonLexer(), fmt)}</div></details>"
        )
    return "\n".join(blocks)


def _with_solution_slots(nb, info: ChapterInfo) -> dict[str, str]:
    """Insert a raw placeholder cell after each exercise cell; return placeholder -> solution HTML."""
    start, stop = exercise_cells(nb.cells)
    slots, seen, cells = {}, set(), []
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        if not (start <= i < stop) or cell.cell_type != "code":
            continue
        called = [c for c in dict.fromkeys(re.findall(r"\b(check_\w+)", cell.source)) if c in info.checks]
        last_exercise_cell = not any(c.cell_type == "code" for c in nb.cells[i + 1 : stop])
        if last_exercise_cell:  # checks only named in the text come with the last cell
            called += [c for c in info.checks if c not in called and c not in seen]
        called = [c for c in called if c not in seen]
        if called:
            seen.update(called)
            key = SLOT.format(len(slots))
            slots[key] = _solution_html(info, called)
            cells.append(nbformat.v4.new_raw_cell(key, metadata={"raw_mimetype": "text/html"}))
    nb.cells = cells
    return slots


def notebook_body(info: ChapterInfo) -> str:
    """The HTML of the chapter's cells after the header, with figures inline and solutions collapsed."""
    nb = nbformat.read(info.path, as_version=4)
    nb.cells = nb.cells[1:]  # the header becomes the chapter card
    _static_widgets(nb)
    slots = _with_solution_slots(nb, info)
    body, _ = _exporter().from_notebook_node(nb)
    body = _finish(body)
    for key, block in slots.items():
        body = body.replace(key, block)
    return body


def _short_title(title: str, limit: int = 34) -> str:
    """A chapter's title for the sidebar: up to the colon, cut at a word before `limit` characters."""
    short = title.split(":")[0]
    return short if len(short) <= limit else short[:limit].rsplit(" ", 1)[0] + " …"


def _nav(chapters: list[ChapterInfo], current: str) -> str:
    items = []
    for c in chapters:
        mark = "" if c.executed else ' <span class="dot" title="not executed yet: no outputs">●</span>'
        cls = ' class="current"' if c.page == current else ""
        items.append(
            f'<li{cls}><a href="{c.page}"><span class="num">{c.number:02d}</span> '
            f"{html.escape(_short_title(c.title))}{mark}</a></li>"
        )
    return "\n".join(items)


# Math: MathJax 2 from the `jupyter-server-mathjax` package (the copy Jupyter's classic notebook served),
# copied into the site's `mathjax/` folder by the builder, typesets the TeX of the markdown cells with the
# STIX web fonts that come with it; code cells and outputs (<pre>, <code>) are left alone. The settings keep
# every request inside the site: no assistive MathML (whose styles name fonts the package does not ship),
# and a `local()` source for the blank font MathJax measures web fonts against.
MATHJAX_SKIP = ("jax/output/SVG", "localization", "extensions/a11y")  # parts the settings below never load
MATHJAX_HEAD = r"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true},
  TeX: {extensions: ["AMSmath.js", "AMSsymbols.js", "noErrors.js", "noUndefined.js"]},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}},
  "fast-preview": {disabled: true}, AssistiveMML: {disabled: true}, menuSettings: {assistiveMML: false},
  showMathMenu: false, messageStyle: "none"
});
</script>
<script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"></script>"""


def mathjax_source() -> Path | None:
    """MathJax's folder inside the installed `jupyter-server-mathjax` package, or None without it."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    return folder if (folder / "MathJax.js").is_file() else None


def page(
    title: str, main: str, chapters: list[ChapterInfo], current: str, course: str, math: bool = False
) -> str:
    """A whole page: top bar, chapter sidebar, main column; nothing fetched from outside the site.
    `math=True` loads the site's own copy of MathJax to typeset the equations."""
    top = [("index.html", "Survey map"), ("notation.html", "Notation"), ("teachers.html", "Teacher's guide")]
    links = " ".join(
        f'<a href="{href}"{" class=current" if href == current else ""}>{label}</a>' for href, label in top
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>{MATHJAX_HEAD if math else ""}</head>
<body>
<header class="topbar"><a class="brand" href="index.html">{html.escape(course)}</a><nav>{links}</nav></header>
<div class="layout">
<aside class="sidebar"><p class="side-title">Chapters</p><ol>{_nav(chapters, current)}</ol></aside>
<main class="content">
{main}
</main></div>
</body></html>
"""


STYLE = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d8dee4; --accent:#0b5cad; --soft:#f6f8fa; --warn:#fff4ce;
  --code-bg:#f6f8fa;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; color: var(--fg); font-family: var(--sans); line-height: 1.6; background: #fff; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
code, pre { font-family: var(--mono); font-size: 0.86rem; }
:not(pre) > code { background: var(--soft); padding: 0.1em 0.35em; border-radius: 4px; }
.topbar { position: sticky; top: 0; z-index: 10; display: flex; align-items: center; gap: 1.5rem;
  padding: 0.6rem 1.5rem; background: #10243e; color: #fff; }
.topbar .brand { color: #fff; font-weight: 650; letter-spacing: 0.01em; }
.topbar nav a { color: #cfe0f5; margin-right: 1rem; } .topbar nav a.current { color: #fff; font-weight: 600; }
.layout { display: grid; grid-template-columns: 17rem minmax(0, 1fr); max-width: 84rem; margin: 0 auto; }
.sidebar { position: sticky; top: 2.9rem; align-self: start; max-height: calc(100vh - 3rem); overflow-y: auto;
  padding: 1.2rem 1rem 2rem 1.5rem; border-right: 1px solid var(--line); font-size: 0.9rem; }
.side-title { margin: 0 0 0.5rem; color: var(--muted); text-transform: uppercase; font-size: 0.75rem;
  letter-spacing: 0.08em; }
.sidebar ol { list-style: none; margin: 0; padding: 0; }
.sidebar li { padding: 0.2rem 0.4rem; border-radius: 6px; }
.sidebar li.current { background: #e7f0fb; } .sidebar li.current a { font-weight: 600; }
.sidebar .num, .chapter-num { font-family: var(--mono); color: var(--muted); font-size: 0.8rem; }
.dot { color: #d4a72c; font-size: 0.7rem; margin-left: 0.25rem; }
.sidebar li a { display: block; }
.badge { display: inline-block; font-size: 0.68rem; padding: 0 0.4rem; border-radius: 8px;
  background: var(--warn);
  color: #7a4d00; border: 1px solid #f0d58c; white-space: nowrap; }
.content { padding: 1.5rem 2.5rem 4rem; min-width: 0; }
h1 { font-size: 1.9rem; line-height: 1.25; margin: 0.4rem 0 0.8rem; }
h2 { font-size: 1.4rem; margin-top: 2.2rem; padding-bottom: 0.25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.15rem; margin-top: 1.6rem; }
.lead { font-size: 1.08rem; color: #333c45; max-width: 52rem; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.25rem; background: #fbfcfd;
  margin: 0.8rem 0 1.4rem; }
.card dl { display: grid; grid-template-columns: 10rem minmax(0, 1fr); gap: 0.3rem 1rem; margin: 0; }
.card dt { color: var(--muted); font-weight: 600; } .card dd { margin: 0; }
.card ul { margin: 0.2rem 0 0; padding-left: 1.2rem; }
.warning { background: var(--warn); border: 1px solid #f0d58c; border-radius: 8px; padding: 0.6rem 1rem; }
.pager { display: flex; justify-content: space-between; gap: 1rem; margin: 2.5rem 0 0; padding-top: 1rem;
  border-top: 1px solid var(--line); }
.pager a { display: block; max-width: 48%; padding: 0.5rem 0.8rem; border: 1px solid var(--line);
  border-radius: 8px; }
.pager .next { text-align: right; margin-left: auto; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--line); padding: 0.35rem 0.6rem; vertical-align: top; text-align: left; }
th { background: var(--soft); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(19rem, 1fr)); gap: 1rem; }
.grid .card { margin: 0; }
.card h3 { margin: 0 0 0.3rem; font-size: 1.05rem; }
.meta { color: var(--muted); font-size: 0.88rem; }
.chips a { display: inline-block; margin: 0.1rem 0.25rem 0.1rem 0; padding: 0 0.5rem; border-radius: 10px;
  background: #e7f0fb; font-size: 0.82rem; font-family: var(--mono); }
.section-block { margin: 1.2rem 0 1.6rem; }
.part { margin: 0.5rem 0; padding: 0.5rem 0.9rem; border-left: 3px solid #b6cbe4; background: #fbfcfd; }
.part .methods { color: var(--muted); font-size: 0.86rem; } .part .untaught { font-style: italic; }
figure.map { margin: 1rem 0; } figure.map img { width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 8px; }
figure.map figcaption { color: var(--muted); font-size: 0.88rem; }
/* notebook cells (JupyterLab markup) */
.jp-Cell { margin: 0.9rem 0; }
.jp-Collapser, .jp-InputPrompt, .jp-OutputPrompt { display: none; }
.jp-CodeCell .jp-InputArea-editor { background: var(--code-bg); border: 1px solid #e3e8ee; border-radius: 8px;
  overflow-x: auto; }
.jp-CodeCell .highlight pre { margin: 0; padding: 0.7rem 0.9rem; line-height: 1.45; }
.highlight { background: transparent !important; }
.jp-OutputArea { margin-top: 0.35rem; }
.jp-OutputArea pre { margin: 0; padding: 0.45rem 0.9rem; white-space: pre-wrap; word-break: break-word;
  font-size: 0.82rem; color: #333c45; border-left: 3px solid #e3e8ee; }
.jp-RenderedImage img { max-width: 100%; height: auto; display: block; margin: 0.4rem 0; }
.jp-RenderedMarkdown img { max-width: 100%; }
.jp-RenderedMarkdown p, .jp-RenderedMarkdown li { max-width: 52rem; }
.jp-RenderedMarkdown h1 { display: none; }
.progress { display: flex; align-items: center; gap: 0.6rem; font-family: var(--mono); font-size: 0.8rem;
  color: var(--muted); padding: 0.2rem 0.9rem; } .progress progress { width: 12rem; }
details.solution { margin: 0.4rem 0 1.2rem; border: 1px solid #c9dcc3; border-radius: 8px;
  background: #f6fbf4; }
details.solution summary { cursor: pointer; padding: 0.45rem 0.9rem; color: #2d5f22; font-weight: 600; }
details.solution .solution-body { padding: 0 0.9rem 0.6rem; overflow-x: auto; }
details.solution pre { margin: 0; padding: 0.6rem 0.8rem; background: #fff; border-radius: 6px; }
.solution-from { font-size: 0.85rem; color: var(--muted); margin: 0.2rem 0 0.5rem; }
.ansi-red-fg { color: #b42318; } .ansi-green-fg { color: #1a7f37; } .ansi-yellow-fg { color: #9a6700; }
.ansi-blue-fg { color: #0b5cad; } .ansi-bold { font-weight: 700; }
@media (max-width: 900px) {
  .layout { grid-template-columns: 1fr; }
  .sidebar { position: static; max-height: none; border-right: 0; border-bottom: 1px solid var(--line); }
  .sidebar ol { columns: 2; } .content { padding: 1rem; }
  .card dl { grid-template-columns: 1fr; }
}
""" + HtmlFormatter(style="default").get_style_defs(".highlight")
