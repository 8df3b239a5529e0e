"""Benchmark: rlsurvey's DPOTrainer against TRL's, with the same model, data and settings, on the CPU.

Survey section 7 of arXiv 2412.10400 (DPO, arXiv 2305.18290). Run from the repository root:

    .venv/bin/python benchmarks/dpo_vs_trl.py                      # the shipped reviews-base, 1 CPU thread
    .venv/bin/python benchmarks/dpo_vs_trl.py --steps 20 --repeats 1   # a quick look

What is identical in the two runs: the model directory (float32, dropout off), the preference pairs
(`rlsurvey.tasks.reviews.make_preferences`), their order (no shuffling), the tokens (checked: TRL's prompt,
chosen and rejected ids equal rlsurvey's, EOS appended to every response), the sigmoid loss with β, the batch
size, the learning rate and its linear decay, AdamW (fused, no weight decay), gradient clipping at 1.0, the
number of steps, and the CPU thread count. TRL runs without gradient checkpointing and in float32 (its
defaults are checkpointing and bfloat16, which would make it slower and its losses different).

Two reference settings are timed, each for both trainers: "live" (a frozen reference model runs a forward
pass every step) and "precomputed" (the reference scores the data once before training; TRL's
`precompute_ref_log_probs=True`). rlsurvey's default is "precomputed", TRL's is "live".

How it is measured. Every (trainer, setting, repeat) runs in its own fresh Python process, in alternation, so
that neither inherits the other's memory and both see the same machine load. Speed: optimizer steps per
second from the wall-clock time between the end of the first step and the end of the last (the first step
pays one-off costs), the median over repeats; the end-to-end time (loading, tokenizing, precomputing,
training) is reported too. Memory: the peak resident set size of the process (`ru_maxrss`), which counts
everything the process ever held (Python, libraries, model, reference, activations, optimizer state), and the
part of it above the resident size measured just before the trainer is built. Agreement: the loss of the first
step (same initial weights, same batch) and of the second (after one identical AdamW update).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("live", "precomputed")
IMPLS = ("rlsurvey", "trl")


def _rss_mb() -> float:
    """Current resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _setup(args):
    """The model, tokenizer and pairs both trainers get (imports kept inside: each worker pays its own)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from rlsurvey.lm import load_model
    from rlsurvey.tasks.reviews import make_preferences

    model, tok = load_model(args.model, device="cpu", dtype=torch.float32)
    data = make_preferences(args.pairs, seed=args.data_seed).select_columns(["prompt", "chosen", "rejected"])
    return model, tok, data


def worker_rlsurvey(args) -> dict:
    from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer

    model, tok, data = _setup(args)
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    config = DPOConfig(
        loss_type="sigmoid", beta=args.beta, learning_rate=args.lr, batch_size=args.batch_size,
        max_steps=args.steps, lr_scheduler="linear", weight_decay=0.0, max_grad_norm=1.0, shuffle=False,
        precompute_ref_log_probs=args.mode == "precomputed", progress=False,
    )  # fmt: skip
    trainer = DPOTrainer(model, tok, data, config)
    t_built = time.perf_counter()
    stamps = []
    step = trainer.training_step

    def timed_step():
        out = step()
        stamps.append((time.perf_counter(), time.process_time()))
        return out

    trainer.training_step = timed_step
    history = trainer.train()
    t_end = time.perf_counter()
    return {
        "losses": [h["loss"] for h in history],
        "stamps": stamps,
        "build_s": t_built - t0,
        "train_s": t_end - t_built,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_trl(args) -> dict:
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tok, data = _setup(args)
    rss_before = _rss_mb()
    stamps, losses = [], []

    class Stamp(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            stamps.append((time.perf_counter(), time.process_time()))

    class Recorded(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            losses.append(float(loss.detach()))  # the Trainer's own log rounds to 4 decimals
            return loss

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out, loss_type=["sigmoid"], beta=args.beta, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
            lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            optim="adamw_torch_fused", train_sampling_strategy="sequential",
            precompute_ref_log_probs=args.mode == "precomputed", gradient_checkpointing=False, bf16=False,
            fp16=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
            disable_tqdm=True, dataloader_num_workers=0, max_length=None, seed=0, disable_dropout=True,
        )  # fmt: skip
        trainer = Recorded(
            model=model, args=config, train_dataset=data, processing_class=tok, callbacks=[Stamp()]
        )
        t_built = time.perf_counter()
        trainer.train()
        t_end = time.perf_counter()
        peak = _peak_rss_mb()
        ids = {k: trainer.train_dataset[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
    return {
        "losses": losses,
        "stamps": stamps,
        "build_s": t_built - t0,
        "train_s": t_end - t_built,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "same_tokens": _same_tokens(ids, data, tok),
    }


def _same_tokens(trl_ids: dict, data, tok) -> bool:
    """TRL tokenizes prompt + completion + eos as one string; rlsurvey tokenizes them apart. Same ids?"""
    from rlsurvey.algos.dpo_trainer import DPOConfig, _Tokenized

    ours = _Tokenized(data, tok, DPOConfig())
    mine = {
        "prompt_ids": ours.prompt,
        "chosen_ids": ours.responses["chosen"],
        "rejected_ids": ours.responses["rejected"],
    }
    for name, rows in mine.items():
        if [list(r.tolist()) for r in rows] != [list(x) for x in trl_ids[name]]:
            return False
    return True


def _run_worker(impl: str, mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--mode", mode, "--model", str(args.model)]
    for k in ("pairs", "batch_size", "steps", "lr", "beta", "threads", "data_seed"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{impl}/{mode} worker failed:\n{out.stderr[-4000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    s = res["stamps"]
    res["steps_per_s"] = (len(s) - 1) / (s[-1][0] - s[0][0])
    res["steps_per_cpu_s"] = (len(s) - 1) / (s[-1][1] - s[0][1])
    return res


def _summary(runs: list[dict]) -> dict:
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    return {
        "steps_per_s": med("steps_per_s"),
        "steps_per_cpu_s": med("steps_per_cpu_s"),
        "steps_per_s_each_run": [round(r["steps_per_s"], 3) for r in runs],
        "steps_per_cpu_s_each_run": [round(r["steps_per_cpu_s"], 3) for r in runs],
        "end_to_end_s": med("process_s"),
        "build_s": med("build_s"),
        "peak_rss_mb": med("peak_rss_mb"),
        "peak_rss_above_setup_mb": statistics.median(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
        "loss_step1": runs[0]["losses"][0],
        "loss_step2": runs[0]["losses"][1],
    }


def _compare(ours: dict, theirs: dict) -> dict:
    return {
        "speedup_wall": ours["steps_per_s"] / theirs["steps_per_s"],
        "speedup_cpu": ours["steps_per_cpu_s"] / theirs["steps_per_cpu_s"],
        "peak_rss_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        "loss_step1_abs_diff": abs(ours["loss_step1"] - theirs["loss_step1"]),
        "loss_step2_abs_diff": abs(ours["loss_step2"] - theirs["loss_step2"]),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="reviews-base", help="shipped name or HF directory")
    p.add_argument("--pairs", type=int, default=256, help="preference pairs in the data set")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step (both trainers)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps (both trainers)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each worker process")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="runs per (trainer, reference setting)")
    p.add_argument("--modes", default="live,precomputed", help="reference settings to time")
    p.add_argument("--out", default=str(RESULTS / "dpo_vs_trl.json"))
    p.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, default="live", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        res = (worker_rlsurvey if args.worker == "rlsurvey" else worker_trl)(args)
        print(json.dumps(res))
        return res

    import torch
    import transformers
    import trl

    modes = [m.strip() for m in args.modes.split(",")]
    runs = {(i, m): [] for i in IMPLS for m in modes}
    load_before = os.getloadavg()[0]
    for rep in range(args.repeats):
        for m in modes:
            for impl in IMPLS if rep % 2 == 0 else IMPLS[::-1]:  # alternate who goes first
                r = _run_worker(impl, m, args)
                runs[(impl, m)].append(r)
                speed = f"{r['steps_per_s']:6.2f} steps/s, {r['steps_per_cpu_s']:6.2f} steps/CPU-s"
                print(f"[{rep}] {impl:8s} {m:11s} {speed}, peak {r['peak_rss_mb']:.0f} MiB")
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
    setup = ("model", "pairs", "batch_size", "steps", "lr", "beta", "threads", "repeats")
    result = {
        "benchmark": "DPO training steps on the CPU: rlsurvey.algos.dpo_trainer against trl.DPOTrainer",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": [load_before, os.getloadavg()[0]],
        },  # fmt: skip
        "versions": versions,
        "setup": {k: getattr(args, k) for k in setup},
        "method": __doc__.split("How it is measured. ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
        "tokens_identical": all(r["same_tokens"] for m in modes for r in runs[("trl", m)]),
        "results": {},
    }
    for m in modes:
        ours, theirs = _summary(runs[("rlsurvey", m)]), _summary(runs[("trl", m)])
        result["results"][m] = {"rlsurvey": ours, "trl": theirs, **_compare(ours, theirs)}
    if "live" in modes and "precomputed" in modes:  # each trainer in its default setting
        ours, theirs = result["results"]["precomputed"]["rlsurvey"], result["results"]["live"]["trl"]
        result["results"]["defaults"] = {"rlsurvey": "precomputed", "trl": "live", **_compare(ours, theirs)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    brief = {m: {k: v for k, v in r.items() if k not in IMPLS} for m, r in result["results"].items()}
    print(json.dumps(brief, indent=1))
    return result


if __name__ == "__main__":
    main()
