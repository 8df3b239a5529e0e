"""GRPO on the CPU: `rlsurvey.algos.grpo.train_grpo` against TRL's `GRPOTrainer`, same work, one run.

Survey section 3 of arXiv 2412.10400 (GRPO, arXiv 2402.03300). A benchmark, not a test: it needs the `bench`
extra (TRL) and prints and saves numbers; the goal in issue 9 is at least 1.5x TRL's steps per second.

What is held equal: the model (the shipped "arith-base", loaded from disk, float32), the prompt pool
(`rlsurvey.tasks.arithmetic.sample_prompts`), prompts per step and group size G (so the same number of
completions per optimizer step), the generation budget, sampling (temperature 1, no top-k/top-p), the loss
(GRPO: group-normalized advantages, clipped ratio with ε = 0.2, per-sequence token mean, one update per
rollout, no KL term, so neither keeps a reference model), AdamW with a constant learning rate, gradient
clipping at 1, the reward (the exact-match verifier), the seed and the number of CPU threads.

What differs is how the same numbers are computed. rlsurvey runs each distinct prompt through the model once
per group, in generation (the prompt's KV cache is copied to its G rows) and in the training pass (the
responses run on top of the shared prompt's cache), tokenizes each distinct prompt once, and stops computing
rows that have ended; its tests check each shortcut against the plain computation. TRL recomputes the prompt
for every group member. Both skip the separate old-log-prob pass at one update per rollout.

How it is measured:
- Each trainer runs in its own fresh subprocess (`--worker`), one after the other, never at once, and the
  pair is repeated `--repeats` times with the order alternated, so a busy machine hurts both alike; the
  report keeps every repeat and summarizes them by the median.
- Steps per second: both trainers call the reward function exactly once per optimizer step, so a wrapper
  records a timestamp at every call; the step time is the interval between consecutive calls (it contains
  one backward pass, one optimizer step and one generation). The first `--warmup` intervals are dropped.
  Steps per CPU-second divide the same steps by the CPU time the worker itself used (time.process_time, all
  its threads): on a machine shared with other jobs it is the steadier of the two.
- Generated tokens per second: completion tokens (EOS included, as both trainers count them) of the steps
  inside the timed window, divided by its duration.
- Peak memory: the peak resident set size of the worker process (Linux VmHWM from /proc/self/status),
  and the same minus the resident size just before training starts (after imports and model loading), which
  is the memory training itself adds. Separate processes keep one trainer's allocations out of the other's.

Run: `python benchmarks/grpo_vs_trl.py` (defaults below; about three minutes on 2 busy cores). Output:
benchmarks/results/grpo_vs_trl.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@RESULT@@"


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_rss_mib() -> float:
    hwm = _proc_status_kib("VmHWM")
    if hwm is None:
        import resource

        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return hwm / 1024


def _rss_mib() -> float:
    rss = _proc_status_kib("VmRSS")
    return float("nan") if rss is None else rss / 1024


class StepClock:
    """A reward function that also times the steps: both trainers call it once per optimizer step."""

    def __init__(self, verify):
        self.verify = verify
        self.stamps: list[float] = []  # wall clock
        self.cpu_stamps: list[float] = []  # CPU time of this process (all its threads)
        self.__name__ = "verify"

    def __call__(self, prompts, completions, **kwargs):
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())
        return [float(x) for x in self.verify(list(prompts), list(completions))]


def _window(stamps: list[float], cpu_stamps: list[float], tokens_per_step: list[float], warmup: int) -> dict:
    """Steps/s and tokens/s over the intervals after `warmup`; interval i ends at the reward call of step
    i + 1, so it holds the generation of step i + 1. The CPU-time rate counts only this process's work, so
    other programs on a shared machine disturb it less than the wall-clock rate does."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][warmup:]
    if not gaps:
        raise ValueError(f"need more than warmup + 1 = {warmup + 1} steps to time anything")
    seconds = sum(gaps)
    cpu_seconds = cpu_stamps[-1] - cpu_stamps[warmup]
    tokens = sum(tokens_per_step[warmup + 1 :])
    return {
        "timed_steps": len(gaps),
        "timed_seconds": seconds,
        "steps_per_s": len(gaps) / seconds,
        "steps_per_cpu_s": len(gaps) / cpu_seconds,
        "median_step_s": statistics.median(gaps),
        "generated_tokens_per_s": tokens / seconds,
        "completion_tokens_per_step": tokens / len(gaps),
    }


def _setup(args):
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from rlsurvey.lm import load_model
    from rlsurvey.tasks.arithmetic import sample_prompts

    model, tok = load_model(args.model, device="cpu")
    prompts = sample_prompts(args.pool, seed=args.seed)
    return model, tok, prompts


def worker_rlsurvey(args) -> dict:
    from rlsurvey.algos.grpo import GRPOConfig, train_grpo
    from rlsurvey.tasks.arithmetic import verify

    model, tok, prompts = _setup(args)
    clock = StepClock(verify)
    cfg = GRPOConfig(
        steps=args.steps,
        prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        learning_rate=args.lr,
        advantage="grpo",
        aggregation="sequence_mean",
        clip_eps=0.2,
        kl_coef=0.0,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        max_grad_norm=1.0,
        seed=args.seed,
        progress=False,
    )
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    hist = train_grpo(model, tok, prompts, clock, cfg)
    wall = time.perf_counter() - t0
    batch = args.prompts_per_step * args.group_size
    tokens = [h["completions/mean_length"] * batch for h in hist]
    rewards = [h["reward"] for h in hist]
    return {"wall_s": wall, "rss_before_mib": rss_before, "tokens": tokens, "rewards": rewards,
            "stamps": clock.stamps, "cpu_stamps": clock.cpu_stamps}  # fmt: skip


def worker_trl(args) -> dict:
    import datasets
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from rlsurvey.tasks.arithmetic import verify

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    model, tok, prompts = _setup(args)
    clock = StepClock(verify)
    tokens: list[float] = []

    def counting_reward(prompts, completions, completion_ids, **kwargs):
        tokens.append(float(sum(len(c) for c in completion_ids)))
        return clock(prompts, completions)

    counting_reward.__name__ = "verify"
    out = tempfile.mkdtemp(prefix="trl-grpo-bench-")
    cfg = GRPOConfig(
        output_dir=out,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=args.prompts_per_step * args.group_size,
        gradient_accumulation_steps=1,
        num_generations=args.group_size,
        max_completion_length=args.max_new_tokens,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="grpo",
        scale_rewards="group",
        epsilon=0.2,
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        disable_dropout=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=args.seed,
    )
    data = datasets.Dataset.from_dict({"prompt": prompts})
    trainer = GRPOTrainer(
        model=model, reward_funcs=counting_reward, args=cfg, train_dataset=data, processing_class=tok
    )
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"wall_s": wall, "rss_before_mib": rss_before, "tokens": tokens, "rewards": rewards,
            "stamps": clock.stamps, "cpu_stamps": clock.cpu_stamps}  # fmt: skip


def run_worker(args) -> None:
    result = {"rlsurvey": worker_rlsurvey, "trl": worker_trl}[args.worker](args)
    if len(result["stamps"]) != args.steps:
        raise RuntimeError(f"expected {args.steps} reward calls (one per step), got {len(result['stamps'])}")
    timing = _window(result.pop("stamps"), result.pop("cpu_stamps"), result["tokens"], args.warmup)
    result.update(timing)
    result["peak_rss_mib"] = _peak_rss_mib()
    result["training_rss_mib"] = result["peak_rss_mib"] - result.pop("rss_before_mib")
    result["first_rewards"] = result["rewards"][:3]
    result["last_rewards"] = result.pop("rewards")[-3:]
    result.pop("tokens")
    print(MARK + json.dumps(result))


def _spawn(impl: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl]
    for k in ("model", "steps", "prompts_per_step", "group_size", "max_new_tokens", "lr", "pool", "threads",
              "seed", "warmup"):  # fmt: skip
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"the {impl} worker failed with exit code {proc.returncode}")
    return json.loads(lines[-1][len(MARK) :])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="arith-base", help="shipped name or local HF directory")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--pool", type=int, default=1024, help="prompts in the training pool")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in each worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2, help="step intervals left out of the timing")
    p.add_argument("--repeats", type=int, default=2, help="rlsurvey/TRL pairs, order alternated")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "grpo_vs_trl.json"))
    p.add_argument("--worker", choices=["rlsurvey", "trl"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args)
        return {}

    import torch
    import transformers
    import trl

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    runs = {"rlsurvey": [], "trl": []}
    for r in range(args.repeats):
        for impl in ("rlsurvey", "trl") if r % 2 == 0 else ("trl", "rlsurvey"):
            res = _spawn(impl, args)
            runs[impl].append(res)
            speed = f"{res['steps_per_s']:.3f} steps/s {res['generated_tokens_per_s']:.0f} tok/s"
            print(f"repeat {r} {impl:8s} {speed} peak {res['peak_rss_mib']:.0f} MiB", flush=True)

    def med(impl, key):
        return statistics.median(x[key] for x in runs[impl])

    summary = {
        impl: {
            k: med(impl, k)
            for k in (
                "steps_per_s",
                "steps_per_cpu_s",
                "generated_tokens_per_s",
                "peak_rss_mib",
                "training_rss_mib",
                "median_step_s",
            )
        }  # fmt: skip
        for impl in runs
    }
    ratio = summary["rlsurvey"]["steps_per_s"] / summary["trl"]["steps_per_s"]
    cpu_ratio = summary["rlsurvey"]["steps_per_cpu_s"] / summary["trl"]["steps_per_cpu_s"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "grpo_vs_trl",
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load,
        },
        "summary": summary,
        "steps_per_s_ratio": ratio,
        "steps_per_cpu_s_ratio": cpu_ratio,
        # each repeat's pair (run back to back, order alternated): the spread shows how much load moved them
        "pair_steps_per_s_ratios": [
            a["steps_per_s"] / b["steps_per_s"] for a, b in zip(runs["rlsurvey"], runs["trl"])
        ],
        "goal": ">= 1.5x TRL's steps/s on the CPU",
        "goal_met": ratio >= 1.5,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    cols = ("steps_per_s", "steps_per_cpu_s", "generated_tokens_per_s", "peak_rss_mib", "training_rss_mib")
    print("\n" + " " * 10 + "".join(f"{c:>24s}" for c in cols))
    for impl, row in summary.items():
        print(f"{impl:10s}" + "".join(f"{row[c]:24.3f}" for c in cols))
    verdict = "met" if ratio >= 1.5 else "NOT met"
    print(
        f"steps/s ratio rlsurvey / TRL: {ratio:.2f}x (goal 1.5x: {verdict}); per CPU-second: {cpu_ratio:.2f}x"
    )
    print("per repeat: " + ", ".join(f"{x:.2f}x" for x in report["pair_steps_per_s_ratios"]))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
