#!/usr/bin/env python3
"""The course's two commands, and the set-up they share.

    python3 course.py lab     set everything up if needed, then open JupyterLab on notebooks/
    python3 course.py test    set everything up if needed, then run every test, notebooks included
    python3 course.py site    set everything up if needed, then build the course site into site/ (--out DIR)

    python3 course.py test --latest   the same suite against the newest releases (in .venv-latest)
    python3 course.py lock            write constraints.txt from .venv-latest, after `test --latest` passed

Set-up makes a virtual environment in .venv (or uses the active conda or virtual environment when
RLSURVEY_USE_ACTIVE_ENV=1), installs PyTorch first and the package with its development extras second.
PyTorch is installed first on purpose: on a machine without an NVIDIA GPU it takes a CPU build (a local
wheel if pip can find one, otherwise PyTorch's CPU index), so pip never downloads the multi-gigabyte CUDA
build. Set RLSURVEY_TORCH_INDEX to a pip index URL to choose the build yourself.
Everything else comes from the lock, constraints.txt: the exact versions the notebooks' outputs were made
with, so a fresh machine reproduces the printed numbers whatever pip would resolve today. `--latest` (after
lab, test or site) instead uses a second environment, .venv-latest, upgraded to the newest releases on every
call; run the suite that way before a change is merged, and `python3 course.py lock` to move the lock
forward once it passes (then re-execute the notebooks, so their outputs match the lock again).
Only the standard library is used here, so this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LATEST_VENV = ROOT / ".venv-latest"
LOCK = ROOT / "constraints.txt"
TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
EXTRAS = "dev"


def _python(venv_dir: Path = VENV) -> Path:
    """The interpreter of the environment the course runs in."""
    if os.environ.get("RLSURVEY_USE_ACTIVE_ENV") == "1":
        return Path(sys.executable)
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return venv_dir / sub


def _run(cmd: list[str | Path], **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], **kw)


def _has_nvidia_gpu() -> bool:
    return (
        shutil.which("nvidia-smi") is not None and _run(["nvidia-smi", "-L"], stdout=subprocess.DEVNULL) == 0
    )


def _stamp() -> str:
    """Changes whenever the files that decide the environment change."""
    h = hashlib.sha256()
    for name in ("pyproject.toml", "course.py", LOCK.name):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _install_torch(py: Path) -> None:
    if subprocess.call([str(py), "-c", "import torch"], stderr=subprocess.DEVNULL) == 0:
        return
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    index = os.environ.get("RLSURVEY_TORCH_INDEX")
    if index:
        code = _run([*pip, TORCH, "--index-url", index])
    elif _has_nvidia_gpu() or sys.platform == "darwin":
        code = _run([*pip, TORCH])  # PyPI's default build: CUDA on Linux, the only build on macOS
    else:
        # A CPU build that pip can already see without an index (a local wheel in pip's find-links) first,
        # then PyTorch's CPU index, whose "+cpu" builds sort above PyPI's CUDA build of the same version.
        code = _run([*pip, "--no-index", "--no-deps", TORCH], stderr=subprocess.DEVNULL)
        if code == 0:
            code = _run([*pip, TORCH])  # torch is in place: this only adds its pure-Python dependencies
        else:
            code = _run([*pip, TORCH, "--extra-index-url", CPU_INDEX])
    if code != 0:
        sys.exit(f"could not install {TORCH}; set RLSURVEY_TORCH_INDEX to a pip index that has it")


def setup(latest: bool = False) -> Path:
    """Create and fill the environment unless it is already current; return its interpreter.

    latest=False installs the locked versions of constraints.txt into .venv; latest=True upgrades
    .venv-latest to the newest releases that the package's own lower bounds admit (torch stays at TORCH).
    """
    venv_dir = LATEST_VENV if latest else VENV
    py = _python(venv_dir)
    stamp_file = (venv_dir if py.is_relative_to(venv_dir) else ROOT) / ".rlsurvey-installed"
    if not latest and py.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp():
        return py
    if not py.exists():
        print(f"creating the virtual environment {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    _install_torch(py)
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    if latest:
        cmd = [*pip, "--upgrade", "--upgrade-strategy", "eager", TORCH, "-e", f"{ROOT}[{EXTRAS}]"]
    else:
        cmd = [*pip, "-c", LOCK, "-e", f"{ROOT}[{EXTRAS}]"]
    if _run(cmd) != 0:
        sys.exit("installing the package failed; see pip's message above")
    stamp_file.write_text(_stamp())
    return py


def lock() -> int:
    """Write constraints.txt from what .venv-latest holds (run `test --latest` first)."""
    py = _python(LATEST_VENV)
    if not py.exists():
        sys.exit("no .venv-latest yet: run `python3 course.py test --latest` first")
    frozen = subprocess.run(
        [str(py), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    pins = sorted(
        (TORCH if line.lower().startswith("torch==") else line)  # no local label: +cpu and CUDA builds match
        for line in frozen
        if "==" in line and not line.startswith("-e")
    )
    header = [
        "# The lock: the versions the notebooks' outputs were made with (pip constraints; course.py installs",
        "# with them). Regenerate with `python3 course.py test --latest && python3 course.py lock`, then",
        "# re-execute the notebooks. The package itself (pyproject.toml) keeps lower bounds only.",
    ]
    LOCK.write_text("\n".join(header + pins) + "\n")
    print(f"wrote {len(pins)} pins to {LOCK.name}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"lab", "test", "site", "setup", "lock"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "lock":
        return lock()
    latest = "--latest" in rest
    rest = [a for a in rest if a != "--latest"]
    py = setup(latest=latest)
    if command == "setup":
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    if command == "test":
        return _run([py, "-m", "pytest", *rest], cwd=ROOT, env=env)
    if command == "site":
        return _run([py, "-m", "rlsurvey.site", *rest], cwd=ROOT, env=env)
    lab = [py, "-m", "jupyter", "lab", f"--notebook-dir={ROOT / 'notebooks'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lab.append("--allow-root")  # containers often run as root; JupyterLab refuses to start without it
    return _run([*lab, *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
