"""rlsurvey.progress: a bar written to a file or a pipe is a few whole lines, not a flood of redraws."""

import io

import pytest
from tqdm import std

from rlsurvey import progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_display_kind_follows_the_stream_and_the_override(monkeypatch):
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    assert progress.display_kind(io.StringIO()) == "lines"
    assert progress.display_kind(_Tty()) == "terminal"
    closed = io.StringIO()
    closed.close()
    assert progress.display_kind(closed) == "lines"
    for kind in ("notebook", "terminal", "lines", "off"):
        monkeypatch.setenv("RLSURVEY_PROGRESS", kind.upper())
        assert progress.display_kind(io.StringIO()) == kind
    monkeypatch.setenv("RLSURVEY_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="RLSURVEY_PROGRESS"):
        progress.display_kind(io.StringIO())


def test_a_bar_on_a_file_writes_whole_lines_and_little(monkeypatch):
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    lines, redrawn = io.StringIO(), io.StringIO()
    for _ in progress.tqdm(range(50_000), desc="train", file=lines, mininterval=0):
        pass
    for _ in std.tqdm(range(50_000), desc="train", file=redrawn, mininterval=0):  # what tqdm writes alone
        pass
    text = lines.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert all(line.startswith("train:") for line in text.splitlines())
    assert "50000/50000" in text.splitlines()[-1]  # the last line is the finished bar
    assert len(text.splitlines()) <= 3  # the first draw, at most one timed update, the last
    assert len(redrawn.getvalue()) > 20 * len(text)  # the carriage-return redraws it replaces


def test_a_line_every_interval(monkeypatch):
    """With the interval at zero every refresh becomes a line: the interval is what bounds the output."""
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "PIPE_INTERVAL", 0.0)
    out = io.StringIO()
    bar = progress.tqdm(total=5, desc="steps", file=out, mininterval=0, miniters=1)
    for _ in range(5):
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split("|")[0].split()[-1] for line in lines][:2] == ["0%", "20%"]
    assert len(lines) >= 6 and lines[-1].startswith("steps: 100%")


def test_disabled_or_off_writes_nothing(monkeypatch):
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    out = io.StringIO()
    for _ in progress.tqdm(range(10), file=out, disable=True):
        pass
    monkeypatch.setenv("RLSURVEY_PROGRESS", "off")
    for _ in progress.tqdm(range(10), file=out):
        pass
    assert out.getvalue() == ""


def test_a_terminal_gets_tqdms_own_bar(monkeypatch):
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    tty = _Tty()
    bar = progress.tqdm(range(3), file=tty)
    assert type(bar) is std.tqdm
    list(bar)
    assert "\r" in tty.getvalue()


def test_a_postfix_every_step_does_not_add_lines(monkeypatch):
    """Trainers set their postfix (loss, reward) at every step; on a file that must not force a line each."""
    monkeypatch.delenv("RLSURVEY_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress.tqdm(total=2000, desc="GRPO", file=out)
    for step in range(2000):
        bar.set_postfix(loss=1.0 / (step + 1), reward=step / 2000)
        bar.set_description(f"GRPO {step}")
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 3 and "reward=" in lines[-1] and "2000/2000" in lines[-1]
