"""What the learning benchmarks share: pick some of their runs from the command line, and write a results file
that a run of only some of them updates in place (the other runs' figures are kept)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def chosen_names(argv: Sequence[str], names: Sequence[str], what: str) -> list[str]:
    """The names given on the command line (all of `names` when none is); exits on an unknown one."""
    chosen = list(argv) or list(names)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {list(names)}")
    return chosen


def write_merged(out: Path, result: dict, chosen: Sequence[str], names: Sequence[str], key: str) -> None:
    """Write `result` ({"runs": [...], "summary": {name: ...}, ...}) to `out` as JSON. When only some of
    `names` ran and `out` exists, its runs and summaries of the others (runs told apart by `key`) are kept."""
    if out.is_file() and set(chosen) != set(names):
        old = json.loads(out.read_text())
        result["runs"] = [r for r in old["runs"] if r[key] not in chosen] + result["runs"]
        kept = {k: v for k, v in old["summary"].items() if k not in chosen}
        result["summary"] = {**kept, **result["summary"]}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
