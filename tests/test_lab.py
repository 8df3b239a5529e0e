"""The README's main command starts JupyterLab on notebooks/, and chapter 00 runs in it as a user runs it.

Both tests start `python3 course.py lab` on a loopback port with a token. The first fetches the lab page and
the contents API and checks that the API lists every notebook. The second opens chapter 00 in headless
Chromium (Debian's `/usr/bin/chromium`, driven over the DevTools protocol), clears its outputs and runs all
its cells with mouse clicks on the menus, waits for the kernel to finish, and checks that every code cell ran
and none shows an error; a screenshot is kept in test-output/lab_chapter00.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from chromium import CHROMIUM, Chromium

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "00_welcome.ipynb"
SCREENSHOT = ROOT / "test-output" / "lab_chapter00.png"
ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


@contextlib.contextmanager
def _lab(log: Path, *extra: str, env: dict | None = None, timeout: float = 120) -> Iterator[tuple[str, str]]:
    """`python3 course.py lab` on a free loopback port; yields its URL and token once /lab answers."""
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, str(ROOT / "course.py"), "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", *extra]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, page = _get(f"{base}/lab", token)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log.read_text(errors="replace")[-4000:]) from None
                time.sleep(0.5)
        assert status == 200 and b"JupyterLab" in page
        yield base, token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_main_command_serves_the_notebooks(tmp_path):
    with _lab(tmp_path / "lab.log") as (base, token):
        status, body = _get(f"{base}/api/contents/", token)
        listed = {item["name"] for item in json.loads(body)["content"]}
        expected = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert expected and expected <= listed, f"served {sorted(listed)}, expected {sorted(expected)}"


# What the page shows: every code cell's prompt ("[ ]:" not run, "[*]:" running or queued, "[3]:" done) with
# its error outputs, the kernel's state in the notebook toolbar and in the status bar, and open dialogs.
STATE = f"""(() => {{
  const cells = Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-CodeCell'));
  const indicator = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
  return {{
    cells: cells.map(c => ({{
      prompt: (c.querySelector('.jp-InputPrompt') || {{}}).textContent || '',
      source: Array.from(c.querySelectorAll('.jp-InputArea-editor .cm-line'))
        .map(l => l.textContent).join('\\n'),
      errors: Array.from(c.querySelectorAll('{ERROR_OUTPUT}')).map(e => e.textContent),
    }})),
    all_cells: document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length,
    indicator: indicator ? indicator.dataset.status : null,
    status: Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
      .map(e => e.textContent.trim()).filter(t => / \\| /.test(t)),
    dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.textContent.trim()),
    images: Array.from(document.querySelectorAll('.jp-OutputArea-output img'))
      .map(i => i.complete && i.naturalWidth > 0),
  }};
}})()"""


def _center(browser: Chromium, session: str, selector: str, text: str) -> list[float] | None:
    """The viewport point at the middle of the visible element that matches selector and shows text."""
    find = f"""(() => {{
      const e = Array.from(document.querySelectorAll({json.dumps(selector)}))
        .find(e => e.textContent.trim() === {json.dumps(text)} && e.getClientRects().length > 0);
      if (!e) return null;
      const r = e.getBoundingClientRect();
      return [r.x + r.width / 2, r.y + r.height / 2];
    }})()"""
    return browser.evaluate(session, find)


def _menu(browser: Chromium, session: str, menu: str, item: str) -> None:
    """Click a menu of the menu bar, then one of its items, with the mouse."""
    for selector, text in ((".lm-MenuBar-item", menu), (".lm-Menu-item .lm-Menu-itemLabel", item)):
        deadline = time.monotonic() + 10
        while (point := _center(browser, session, selector, text)) is None:
            assert time.monotonic() < deadline, f"no {text!r} in the menus ({menu} > {item})"
            time.sleep(0.2)
        browser.click(session, *point)


def _kernel_idle(state: dict) -> bool:
    return state["indicator"] == "idle" and any(
        s.endswith("| Idle") and not s.startswith("No Kernel") for s in state["status"]
    )


def _wait(browser: Chromium, session: str, ready, deadline: float, what: str) -> dict:
    """Poll the page's state until ready(state); accept the "Select Kernel" dialog if it shows."""
    while True:
        state = browser.evaluate(session, STATE)
        if any("Select Kernel" in d for d in state["dialogs"]):
            point = _center(browser, session, ".jp-Dialog .jp-Dialog-button.jp-mod-accept", "Select")
            if point:
                browser.click(session, *point)
        elif ready(state):
            return state
        if time.monotonic() > deadline:
            browser.screenshot(session, SCREENSHOT)
            raise AssertionError(f"timed out waiting for {what}: {json.dumps(state)[:4000]}")
        time.sleep(0.5)


def run_all_in_lab(notebook: Path, workdir: Path, timeout: float = 300) -> dict:
    """Open a copy of a notebook in JupyterLab in headless Chromium, run all its cells from the Run menu.

    The lab serves a copy in workdir, so the notebook itself is never written (JupyterLab autosaves), and its
    settings and workspaces live in workdir too. Returns the page's final state (see STATE) and saves a
    screenshot of the executed notebook.
    """
    deadline = time.monotonic() + timeout
    served = workdir / "served"
    served.mkdir()
    (served / notebook.name).write_bytes(notebook.read_bytes())
    settings = workdir / "lab-settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "official Jupyter news?" toast over the notebook
    env = dict(
        os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workdir / "ws")
    )
    # course.py fixes the server's root to notebooks/ (a second --notebook-dir is an error, not an override):
    # the files and the kernels' working directory are moved to the copy's folder instead.
    moved = [f"--FileContentsManager.root_dir={served}", f"--MappingKernelManager.root_dir={served}"]
    with _lab(workdir / "lab.log", *moved, env=env, timeout=deadline - time.monotonic()) as (base, token):
        browser = Chromium(CHROMIUM)
        try:
            session = browser.new_page(1280, 1000)
            url = f"{base}/lab/tree/{notebook.name}?reset&token={token}"
            browser.send("Page.navigate", {"url": url}, session=session)

            count_cells = len(nbformat.read(notebook, as_version=4).cells)

            def opened(state: dict) -> bool:  # every cell rendered and a kernel started and idle
                return state["all_cells"] == count_cells and _kernel_idle(state)

            _wait(browser, session, opened, deadline, "the notebook and an idle kernel")
            _menu(browser, session, "Edit", "Clear Outputs of All Cells")
            _wait(browser, session, lambda s: all(c["prompt"] == "[ ]:" for c in s["cells"]), deadline,
                  "cleared outputs")  # fmt: skip
            _menu(browser, session, "Run", "Run All Cells")
            # Finished: no cell running or queued and the kernel idle in two polls in a row, once every cell
            # ran or one failed (a failure cancels the cells after it); in 20 polls (10 s) otherwise.
            quiet = [0]  # polls in a row with nothing running

            def finished(state: dict) -> bool:
                running = any(c["prompt"] == "[*]:" for c in state["cells"]) or not _kernel_idle(state)
                quiet[0] = 0 if running else quiet[0] + 1
                done = all(c["prompt"] != "[ ]:" for c in state["cells"])
                failed = any(c["errors"] for c in state["cells"])
                return quiet[0] >= (2 if done or failed else 20)

            _wait(browser, session, finished, deadline, "the cells to finish")
            figure = "document.querySelector('.jp-OutputArea-output[data-mime-type=\"image/png\"]')"
            browser.evaluate(session, f"{figure} && {figure}.scrollIntoView({{block: 'center'}})")
            time.sleep(0.5)
            browser.screenshot(session, SCREENSHOT)
            return browser.evaluate(session, STATE)
        finally:
            browser.close()


def test_chapter_00_runs_in_the_lab_ui(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    before = CHAPTER.read_bytes()
    start = time.monotonic()
    try:
        state = run_all_in_lab(CHAPTER, tmp_path)
    finally:
        assert CHAPTER.read_bytes() == before, f"{CHAPTER} was modified on disk"
    print(f"chapter 00 opened, run and checked in {time.monotonic() - start:.1f} s; screenshot {SCREENSHOT}")
    code_cells = [c for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "code"]
    errors = [f"cell {c['prompt']} {c['source'][:60]!r}:\n" + "\n".join(c["errors"])[-3000:]
              for c in state["cells"] if c["errors"]]  # fmt: skip
    assert not errors, "cells with error output:\n" + "\n\n".join(errors)
    executed = [c for c in state["cells"] if re.fullmatch(r"\[\d+\]:", c["prompt"])]
    prompts = [c["prompt"] for c in state["cells"]]
    assert len(executed) == len(code_cells), f"{len(executed)} of {len(code_cells)} code cells ran: {prompts}"
    assert state["images"] and all(state["images"]), f"figure not displayed: {state['images']}"
    assert SCREENSHOT.stat().st_size > 10_000
