"""Do the command line's defaults learn? Each `rlsurvey train` subcommand with its defaults, over 3 seeds.

Every subcommand runs on its default synthetic world with nothing but `--output-dir` and `--seed`, as the
README shows it, and ends with its held-out report (`rlsurvey.cli_report`): the world's truth (gold reward or
verifier accuracy; a reward model's pair accuracy against gold; a step reward model's step AUROC against the
exact labels, where an untrained one scores 0.5) for the starting and the trained model on
prompts that never entered training, their difference paired by prompt, and that difference in standard
errors. The goal: every seed of every subcommand at least 3 standard errors
better than where it started, in at most 2 minutes of wall time on 2 cores. Run from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cli_defaults.py            # all, 3 seeds
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cli_defaults.py dpo grpo   # some
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cli_defaults.py grpo-tool  # grpo --tool calculator

It writes benchmarks/results/cli_defaults.json (a run of some commands replaces only theirs) and prints one
line per run and a summary per subcommand (mean ± standard error over seeds of the change, the smallest
per-seed margin in standard errors, the slowest wall time). The wall time covers the whole command: loading,
training, saving and the report.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from results_file import chosen_names, write_merged

from rlsurvey.cli import main
from rlsurvey.stats import mean_se

COMMANDS = ("sft", "reward", "ppo", "rloo", "dpo", "grpo", "prm", "grpo-tool")
ARGV = {"grpo-tool": ["grpo", "--tool", "calculator"]}  # a run that is a subcommand with an option
SEEDS = (0, 1, 2)
GOAL_SE, GOAL_SECONDS = 3.0, 120.0
OUT = Path(__file__).parent / "results" / "cli_defaults.json"
_UNTRAINED = {"reward": 0.5, "prm": 0.5}  # a reward model's coin flip, a step reward model's chance AUROC


def run(name: str, seed: int, root: Path) -> dict:
    out = root / f"{name}_{seed}"
    start = time.perf_counter()
    status = main(
        ["train", *ARGV.get(name, [name]), "--output-dir", str(out), "--seed", str(seed), "--no-progress"]
    )
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(
            f"rlsurvey train {' '.join(ARGV.get(name, [name]))} --seed {seed} ended with status {status}"
        )
    results = json.loads((out / "results.json").read_text())
    shutil.rmtree(out)
    change = results["change"]
    return {"command": name, "seed": seed, "wall_s": round(wall, 1), "metric": change["metric"],
            "start": results["reports"].get("start", {}).get("mean", _UNTRAINED.get(name)),
            "trained": results["reports"]["trained"]["mean"], "change": change["change"], "se": change["se"],
            "standard_errors": change["standard_errors"]}  # fmt: skip


def main_(names: list[str]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for seed in SEEDS:
                row = run(name, seed, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for name in names:
        mine = [r for r in rows if r["command"] == name]
        m, se = mean_se([r["change"] for r in mine])
        summary[name] = {
            "metric": mine[0]["metric"], "change_mean": m, "change_se_over_seeds": se,
            "min_standard_errors": min(r["standard_errors"] for r in mine),
            "max_wall_s": max(r["wall_s"] for r in mine),
            "meets_goal": min(r["standard_errors"] for r in mine) >= GOAL_SE
            and max(r["wall_s"] for r in mine) <= GOAL_SECONDS,
        }  # fmt: skip
        s = summary[name]
        print(f"{name:9s} {s['metric']:>27s}: change {m:+.3f} ± {se:.3f} over {len(mine)} seeds; smallest "
              f"margin {s['min_standard_errors']:.1f} SE; slowest {s['max_wall_s']:.0f} s; "
              f"{'meets' if s['meets_goal'] else 'MISSES'} the goal")  # fmt: skip
    machine = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    goal = {"standard_errors": GOAL_SE, "seconds": GOAL_SECONDS}
    result = {"machine": machine, "goal": goal, "runs": rows, "summary": summary}
    return result


if __name__ == "__main__":
    chosen = chosen_names(sys.argv[1:], COMMANDS, "subcommands")
    result = main_(chosen)
    write_merged(OUT, result, chosen, COMMANDS, key="command")
    if not all(s["meets_goal"] for s in result["summary"].values()):
        sys.exit(1)
