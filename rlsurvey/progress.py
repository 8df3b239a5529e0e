"""Progress bars that suit where their output goes.

Every trainer in the package shows its progress with `rlsurvey.progress.tqdm`, a drop-in for `tqdm.auto.tqdm`
that picks one of three displays:

- in a Jupyter kernel, tqdm's notebook widget (one bar that updates in place);
- on a terminal, tqdm's text bar, redrawn in place with carriage returns;
- on anything else (a file, a pipe, a CI log), one plain line every `PIPE_INTERVAL` seconds at most, each
  ending in a newline, plus a last line when the bar closes. A redrawn bar written to a file keeps every
  redraw, so a long run would write megabytes of carriage-return updates; a line every few seconds keeps a
  log readable and small.

`disable=True` (the trainers' `progress=False`, the command line's `--no-progress`) writes nothing in
all three.
The environment variable `RLSURVEY_PROGRESS` forces a display: `notebook`, `terminal`, `lines` or `off`.
"""

from __future__ import annotations

import os
import sys

from tqdm import std

__all__ = ["PIPE_INTERVAL", "display_kind", "tqdm"]

PIPE_INTERVAL = 10.0  # seconds between two lines of a bar written to a file or a pipe
_KINDS = ("notebook", "terminal", "lines", "off")


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def display_kind(file=None) -> str:
    """Which display a bar writing to `file` (default: standard error) gets: one of notebook, terminal, lines
    or off (see the module docstring); `RLSURVEY_PROGRESS` overrides the choice."""
    forced = os.environ.get("RLSURVEY_PROGRESS", "").strip().lower()
    if forced:
        if forced not in _KINDS:
            raise ValueError(f"RLSURVEY_PROGRESS={forced!r}: use one of {', '.join(_KINDS)}")
        return forced
    if _in_notebook() and file is None:
        return "notebook"
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    try:
        return "terminal" if isatty is not None and isatty() else "lines"
    except ValueError:  # a closed stream
        return "lines"


class _Lines:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        getattr(self.stream, "flush", lambda: None)()


class _LineBar(std.tqdm):
    """tqdm's text bar, drawn as one line per update at most every PIPE_INTERVAL seconds."""

    def __init__(self, *args, **kwargs):
        stream = kwargs.pop("file", None) or sys.stderr
        kwargs["file"] = _Lines(stream)
        kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), PIPE_INTERVAL)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", 10.0), PIPE_INTERVAL)
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    # a trainer sets its postfix (loss, reward) every step; redrawn at once it would be a line per step
    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)


def tqdm(*args, **kwargs):
    """A progress bar for where its output goes (see the module docstring); takes tqdm's arguments."""
    kind = display_kind(kwargs.get("file"))
    if kind == "off":
        kwargs["disable"] = True
        return std.tqdm(*args, **kwargs)
    if kind == "notebook":  # tqdm.auto falls back to the text bar where ipywidgets is missing
        from tqdm.auto import tqdm as notebook_bar

        return notebook_bar(*args, **kwargs)
    if kind == "terminal":
        return std.tqdm(*args, **kwargs)
    return _LineBar(*args, **kwargs)
