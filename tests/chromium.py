"""A headless Chromium for the browser tests, driven over the DevTools protocol with the standard library.

Debian's `/usr/bin/chromium` (or $RLSURVEY_CHROMIUM) is started with `--remote-debugging-pipe`: JSON messages
separated by NUL bytes, commands on the child's file descriptor 3 and replies on 4.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = Path(os.environ.get("RLSURVEY_CHROMIUM", "/usr/bin/chromium"))


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 of the child).

    Without a profile folder it makes a fresh one and removes it on close(). The browser runs in its own
    process group, which close() kills if the browser does not exit by itself.
    """

    def __init__(self, binary: Path = CHROMIUM, profile: Path | None = None):
        # A short profile path: Chromium's singleton socket path must fit in 108 bytes, tmp_path may not.
        self._own_profile = profile is None
        profile = Path(tempfile.mkdtemp(prefix="rlsurvey-chromium-")) if profile is None else profile
        self.profile = profile
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above 9, so that the shell's "3<&r 4>&w" cannot overwrite one with the other.
        to_child_r, from_child_w = (self._high(fd) for fd in (to_child_r, from_child_w))
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
        ]
        # bash moves the pipe ends to fds 3 (commands in) and 4 (replies out) before exec'ing Chromium.
        moves = f"3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-"
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", f'exec "$0" "$@" {moves}', str(binary), *flags],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._inbox: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    @staticmethod
    def _high(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._from_child, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))
        self._inbox.put(None)

    def _closed(self) -> RuntimeError:
        return RuntimeError(
            f"Chromium closed the DevTools pipe: {self.log.read_text(errors='replace')[-2000:]}"
        )

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=30.0):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._inbox.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply is None:
                raise self._closed()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout=30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            reply = self._inbox.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply is None:
                raise self._closed()
            self.events.append(reply)

    def new_page(self, width: int, height: int, domains=("Page", "Runtime", "Log", "Network")) -> str:
        """Open a blank tab of the given viewport size with the given domains enabled; return its session."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in domains:
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        return session

    def evaluate(self, session: str, expression: str, timeout=30.0):
        """The value of a JavaScript expression in the page (promises awaited); page exceptions raise."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        reply = self.send("Runtime.evaluate", params, session=session, timeout=timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise RuntimeError(
                f"{expression[:80]}: {details.get('exception', {}).get('description', details)}"
            )
        return reply["result"].get("value")

    def click(self, session: str, x: float, y: float) -> None:
        """A left click at a point of the viewport, as the mouse gives it: move, press, release."""
        for kind, buttons in (("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)):
            params = {"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1}
            self.send("Input.dispatchMouseEvent", params, session=session)

    def screenshot(self, session: str, path: Path) -> Path:
        """Save what the tab shows as a PNG."""
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # the renderer and helper processes share the browser's process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._to_child)
        if self._own_profile:
            shutil.rmtree(self.profile, ignore_errors=True)
