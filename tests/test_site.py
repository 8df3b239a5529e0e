"""The course site: the builder on small notebooks, and the real site in headless Chromium.

The Chromium test builds the site from the committed notebooks, serves it on a loopback port, and drives
Debian's `/usr/bin/chromium` over the DevTools protocol (JSON messages separated by NUL bytes on file
descriptors 3 and 4, `--remote-debugging-pipe`), with the standard library only. Every page must load without
console errors, exceptions or failed requests, every image in it must be loaded and displayed, and MathJax
must typeset every formula. A screenshot of the landing page is kept in the test's folder and in
test-output/site-landing.png, one of chapter 07's equations in test-output/site-chapter-07.png.
"""

from __future__ import annotations

import base64
import functools
import http.server
import importlib.util
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from chromium import CHROMIUM, Chromium

from rlsurvey.site import SYLLABUS, build_site, read_chapter, solution_sources, syllabus_problems
from rlsurvey.site.chapters import parse_header

ROOT = Path(__file__).resolve().parents[1]
# A 1x1 red PNG: a figure output for the small notebooks.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="

HEADER = """# {nn} · {title}

**Survey section:** 7 (arXiv 2412.10400), a test.

**Objectives:**
- write a loss
  over two lines;
- check it.

**Prerequisites:** chapters 00 and 01 (the basics). Chapter 12 is mentioned, not needed.

**CPU runtime:** 12 s measured on 2 cores. On a GPU, nothing changes.
"""


def _small_notebook(path: Path, nn: str, title: str, executed: bool) -> None:
    nb = nbformat.v4.new_notebook()
    setup = nbformat.v4.new_code_cell("import rlsurvey\nrlsurvey.setup(seed=0)")
    figure = nbformat.v4.new_code_cell("plt.plot([1, 2])")
    exercise = nbformat.v4.new_code_cell(
        "from rlsurvey.exercises import ExerciseError, ch10\n\n# 1. The DPO loss.\n"
        "try:\n    ch10.check_dpo_loss(lambda *a: 0)\nexcept ExerciseError as e:\n    print(e)"
    )
    if executed:
        for i, cell in enumerate((setup, figure, exercise), 1):
            cell.execution_count = i
        figure.outputs = [
            nbformat.v4.new_output("display_data", {"image/png": PNG, "text/plain": "<Figure>"})
        ]
        exercise.outputs = [nbformat.v4.new_output("stream", name="stdout", text="dpo loss: off by 0.7\n")]
    nb.cells = [
        nbformat.v4.new_markdown_cell(HEADER.format(nn=nn, title=title)),
        setup,
        nbformat.v4.new_markdown_cell("## 1. A section\n\nSome $x^2$ math and a figure."),
        figure,
        nbformat.v4.new_markdown_cell("## Exercises\n\nThe attempt below is unfinished."),
        exercise,
        nbformat.v4.new_markdown_cell(
            "2. (Open) Try another beta.\n\n## Further reading\n\n- arXiv 2305.18290"
        ),
    ]
    nbformat.write(nb, path)


@pytest.fixture
def small_site(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _small_notebook(nbs / "10_dpo.ipynb", "10", "Direct preference optimization", executed=True)
    _small_notebook(nbs / "11_dpo_variants.ipynb", "11", "The DPO family", executed=False)
    report = build_site(tmp_path / "site", nbs, map_figure=False, progress=False)
    return report


def test_parse_header_fields_and_objectives():
    title, fields, objectives = parse_header(HEADER.format(nn="10", title="DPO: derived"))
    assert title == "DPO: derived"
    assert fields["CPU runtime"] == "12 s measured on 2 cores. On a GPU, nothing changes."
    assert objectives == ["write a loss over two lines;", "check it."]
    with pytest.raises(ValueError, match="must start with '# NN"):
        parse_header("no title here")


def test_read_chapter_exercises_and_prerequisites(tmp_path):
    path = tmp_path / "10_dpo.ipynb"
    _small_notebook(path, "10", "DPO", executed=False)
    info = read_chapter(path)
    assert (info.number, info.slug, info.executed) == (10, "dpo", False)
    assert info.prerequisite_chapters == [0, 1]  # the second sentence's "Chapter 12" is not a prerequisite
    assert info.checks == ["check_dpo_loss"]
    assert [(e.number, e.checked) for e in info.exercises] == [(1, True), (2, False)]
    with pytest.raises(ValueError, match="NN_slug.ipynb"):
        read_chapter(tmp_path / "dpo.ipynb")


def test_solution_sources_are_the_package_references(monkeypatch, tmp_path):
    (name, source), *_ = solution_sources(10, "check_dpo_loss")
    assert name == "rlsurvey.exercises.ch10.reference_dpo_loss" and source.startswith(
        "def reference_dpo_loss"
    )
    with pytest.raises(ValueError, match="check must name"):
        solution_sources(10, "reference_dpo_loss")
    # a check with no reference_* function: the package function it compares with, else the check itself
    source = tmp_path / "ch99.py"
    source.write_text(
        "from rlsurvey.algos.advantages import group_advantages\n"
        "from rlsurvey.survey import load_survey_map\n"
        "def check_adv(fn):\n    load_survey_map()\n    return fn(1) == group_advantages(1)\n"
        "def check_number(x):\n    return x == 3\n"
    )
    spec = importlib.util.spec_from_file_location("rlsurvey.exercises.ch99", source)
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "rlsurvey.exercises.ch99", fake)
    assert [n for n, _ in solution_sources(99, "check_adv")] == ["rlsurvey.algos.advantages.group_advantages"]
    assert solution_sources(99, "check_number")[0][1].startswith("def check_number")


@pytest.mark.parametrize("number", range(14))
def test_every_check_of_the_course_has_a_solution(number):
    path = next((ROOT / "notebooks").glob(f"{number:02d}_*.ipynb"), None)
    if path is None:
        pytest.skip(f"chapter {number:02d} is not written")
    info = read_chapter(path)
    assert info.checks, "a chapter's exercises call check functions"
    for check in info.checks:
        for name, source in solution_sources(number, check):
            assert name.startswith("rlsurvey.") and source.lstrip().startswith(("def ", "@"))
            compile(source.strip(), name, "exec")  # whole functions, not fragments


def test_builder_on_small_notebooks(small_site):
    out = small_site.out
    names = sorted(p.name for p in small_site.pages)
    assert names == ["10_dpo.html", "11_dpo_variants.html", "index.html", "notation.html", "teachers.html"]
    assert small_site.unexecuted == ["11_dpo_variants.ipynb"]
    done, todo = (out / "10_dpo.html").read_text(), (out / "11_dpo_variants.html").read_text()
    # the chapter card: objectives and timing on top, before the first cell
    assert done.index("check it.") < done.index("A section") and "12 s measured on 2 cores" in done
    assert "On a GPU, nothing changes" not in done.split("<dt>CPU runtime</dt>")[1].split("</dd>")[0]
    # figures inline, solutions collapsed behind <details>, the unexecuted chapter marked
    assert f"data:image/png;base64,{PNG}" in done
    solution = re.search(r"<details class=\"solution\">(.*?)</details>", done, re.S)
    assert solution and "Show solution" in solution.group(1) and "reference_dpo_loss" in solution.group(1)
    assert '<details class="solution" open' not in done
    assert "has not been executed yet" in todo and "has not been executed yet" not in done
    # navigation: home, the sidebar of every chapter, next/previous
    assert 'href="index.html"' in done and 'href="11_dpo_variants.html"' in done
    assert 'href="10_dpo.html"' in todo
    # the notation table of notebooks/README.md, linked from every page
    symbols = (out / "notation.html").read_text()
    assert "<h2>Notation</h2>" in symbols and r"$\rho_t$" in symbols and symbols.count("<tr>") > 30
    assert all('href="notation.html"' in p.read_text() for p in small_site.pages)
    # the only scripts: the site's own MathJax and its settings
    assert small_site.math and (out / "mathjax" / "MathJax.js").is_file()
    assert not (out / "mathjax" / "jax" / "output" / "SVG").exists()
    for page in small_site.pages:
        text = page.read_text()
        scripts = re.findall(r"<script([^>]*)>", text)
        assert scripts == [
            ' type="text/x-mathjax-config"',
            ' src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"',
        ], f"{page.name}: {scripts}"
        assert not re.search(r"(src|href)=\"(https?:)?//(?!arxiv\.org)", text), f"{page.name} loads remotely"
        for href in re.findall(r'href="([^"#:]+\.html)"', text):
            assert (out / href).is_file(), f"{page.name} links to a missing page {href}"


def test_teachers_guide_from_the_notebooks(small_site):
    guide = (small_site.out / "teachers.html").read_text()
    assert "12 s measured on 2 cores" in guide  # the header's own number, not an invented one
    assert "check_dpo_loss" in guide and "Try another beta" in guide
    assert guide.index("Homework (checked, 1)") < guide.index("Try another beta")


def test_syllabus_covers_every_chapter_after_its_prerequisites():
    chapters = [read_chapter(p) for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert len(SYLLABUS) == 7
    assert all(2 <= len(numbers) <= 3 for _, _, numbers in SYLLABUS), "two or three chapters a week"
    assert syllabus_problems(chapters) == []
    swapped = ((1, "a", (0, 1, 3)), (2, "b", (2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)))
    assert any("needs chapter 02 first" in p for p in syllabus_problems(chapters, swapped))
    assert any("in no week" in p for p in syllabus_problems(chapters, SYLLABUS[:-1]))


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, error log entries and failed requests among DevTools events."""
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"request failed: {p.get('errorText')}")
    return out


IMAGES = """JSON.stringify(Array.from(document.images).map(i => { const r = i.getBoundingClientRect();
  return {src: i.src.slice(0, 40), complete: i.complete, width: i.naturalWidth, shown: r.width > 0 &&
  r.height > 0 && getComputedStyle(i).visibility !== 'hidden' && i.offsetParent !== null}; }))"""
# Waits until MathJax has typeset the page; then counts the formulas and any TeX it could not parse.
MATH = """new Promise(done => MathJax.Hub.Queue(() => done(JSON.stringify({
  typeset: document.querySelectorAll('.MathJax, .MathJax_Display').length,
  failed: Array.from(document.querySelectorAll('.noError, merror'))
    .map(e => e.textContent.slice(0, 80))}))))"""
SOLUTIONS = """JSON.stringify(Array.from(document.querySelectorAll('details.solution')).map(d => {
  const body = d.querySelector('.solution-body'); const before = [d.open, body.checkVisibility() ? 1 : 0];
  d.querySelector('summary').click(); return before.concat([d.open, body.checkVisibility() ? 1 : 0]); }))"""


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    report = build_site(out, progress=False)
    print(f"built {len(report.pages)} pages in {time.perf_counter() - start:.1f} s")
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield report, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_every_page_in_headless_chromium(served_site, tmp_path):
    report, base = served_site
    browser = Chromium(CHROMIUM)
    try:
        session = browser.new_page(1280, 900)
        problems, images, solutions, formulas = {}, 0, 0, 0
        for page in report.pages:
            browser.events.clear()
            browser.send("Page.navigate", {"url": f"{base}/{page.name}"}, session=session)
            browser.wait_for("Page.loadEventFired")
            found = browser.send(
                "Runtime.evaluate", {"expression": IMAGES, "returnByValue": True}, session=session
            )["result"]["value"]
            bad = [i for i in json.loads(found) if not (i["complete"] and i["width"] > 0 and i["shown"])]
            images += len(json.loads(found))
            math = json.loads(
                browser.send(
                    "Runtime.evaluate",
                    {"expression": MATH, "returnByValue": True, "awaitPromise": True},
                    session=session,
                    timeout=60,
                )["result"]["value"]
            )
            formulas += math["typeset"]
            if page.name.startswith("07_"):  # a chapter page with equations, kept beside the landing page
                show = "document.querySelector('.MathJax_Display').scrollIntoView({block: 'center'})"
                browser.send("Runtime.evaluate", {"expression": show}, session=session)
                shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
                (ROOT / "test-output").mkdir(exist_ok=True)
                (ROOT / "test-output" / "site-chapter-07.png").write_bytes(base64.b64decode(shot))
            if page.name == "index.html":
                shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
                landing = tmp_path / "site-landing.png"
                landing.write_bytes(base64.b64decode(shot))
                stable = ROOT / "test-output" / "site-landing.png"
                stable.parent.mkdir(exist_ok=True)
                shutil.copyfile(landing, stable)
                print(f"landing page screenshot: {landing} (copied to {stable})")
            states = json.loads(
                browser.send(
                    "Runtime.evaluate", {"expression": SOLUTIONS, "returnByValue": True}, session=session
                )["result"]["value"]
            )
            hidden_first = all(s == [False, 0, True, 1] for s in states)
            solutions += len(states)
            browser.send("Runtime.evaluate", {"expression": "0"}, session=session)  # let late events arrive
            errors = _errors(browser.events) + [f"image not displayed: {i}" for i in bad]
            errors += [f"TeX that MathJax could not typeset: {t}" for t in math["failed"]]
            if not hidden_first:
                errors.append(f"solutions not collapsed until clicked: {states}")
            if errors:
                problems[page.name] = errors
        assert not problems, problems
        assert images >= 20, f"only {images} images across the site"
        assert solutions >= 30, f"only {solutions} solution elements across the site"
        assert formulas >= 300, f"only {formulas} typeset formulas across the site"
        assert (tmp_path / "site-landing.png").stat().st_size > 10_000
    finally:
        browser.close()


def test_readme_syllabus_matches_the_site():
    readme = (ROOT / "README.md").read_text().split("## For teachers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| ([\d, ]+) \|", readme, re.M)
    assert [(int(w), tuple(int(n) for n in c.split(","))) for w, c in rows] == [
        (week, numbers) for week, _, numbers in SYLLABUS
    ]
