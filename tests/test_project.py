"""The frame of the course: dependencies, notebook anatomy, and that every notebook is tested."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def _name(requirement: str) -> str:
    """'torch>=2.4; platform_system == "Linux"' -> 'torch'."""
    name = re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return CONDA_TO_PIP.get(name, name)


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["dev"]}
    listed = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("- ") and not line.endswith(":"):
            item = line[2:].strip()
            if item.startswith(("python", "pip", "-e")):
                continue
            listed.add(_name(item))
    assert listed == wanted, (
        f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    )


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_the_lock_pins_every_installed_package_and_the_readme_names_its_versions():
    """constraints.txt covers everything set-up installs; in the locked environment the versions match."""
    from importlib.metadata import distributions

    pins = _lock()
    installed = {_name(d.metadata["Name"]): d.version for d in distributions()}
    installed.pop("rlsurvey", None)
    installed.pop("pip", None)
    installed.pop("setuptools", None)  # the build backend; pip brings its own when it needs it
    if Path(sys.prefix).name != ".venv":
        pytest.skip(f"not the locked environment ({sys.prefix}); `course.py test --latest` runs newer ones")
    missing = sorted(set(installed) - set(pins))
    assert not missing, f"installed but not in constraints.txt: {missing}"
    differ = {n: (v, pins[n]) for n, v in installed.items() if v.split("+")[0] != pins[n]}
    assert not differ, f"installed version differs from the lock (installed, locked): {differ}"
    readme = (ROOT / "README.md").read_text()
    for name in ("torch", "transformers", "datasets", "tokenizers", "accelerate", "triton", "trl"):
        assert f"{name} {pins[name]}" in readme, f"README must name {name} {pins[name]}, the locked version"


def test_every_notebook_is_collected(request):
    """nbval must collect every notebook in notebooks/ whenever the notebooks are part of the run."""
    roots = [Path(a.split("::")[0]).resolve() for a in request.config.args] or [ROOT]
    nb_dir = (ROOT / "notebooks").resolve()
    if not any(nb_dir == r or r in nb_dir.parents for r in roots):
        pytest.skip("the notebooks are not part of this run")
    collected = {Path(str(item.fspath)).resolve() for item in request.session.items}
    missing = [nb.name for nb in NOTEBOOKS if nb.resolve() not in collected]
    assert not missing, f"notebooks not collected by nbval: {missing}"


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_anatomy(nb):
    """The conventions of notebooks/README.md that a program can check."""
    cells = _cells(nb)
    header = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and header.startswith("# "), "first cell must be the header"
    for field in ("Survey section", "Objectives", "Prerequisites", "CPU runtime"):
        assert field in header, f"the header lacks '{field}'"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "rlsurvey.setup(" in "".join(code[0]["source"]), "the first code cell must call rlsurvey.setup"
    tags = [t for c in cells for t in c.get("metadata", {}).get("tags", [])]
    assert tags.count("parameters") == 1, "exactly one cell must be tagged 'parameters'"
    source = "\n".join("".join(c["source"]) for c in code)
    assert "assert " in source, "a notebook must assert what it shows"
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "## Exercises" in markdown and "## Further reading" in markdown
    assert re.search(r"\d{4}\.\d{4,5}", markdown), "cite papers by arXiv id"
    assert "savefig" in source or "plt." in source or "plotting" in source, "at least one figure"
