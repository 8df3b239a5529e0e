"""Benchmark: rlsurvey's log-prob kernels against eager PyTorch, torch.compile, a TRL-style loop and Liger.

Survey sections 4.2 and 7 of arXiv 2412.10400 (every RLHF and preference method computes per-token
log-probabilities); kernels in rlsurvey/kernels. Run from the repository root:

    .venv/bin/python benchmarks/bench_kernels.py          # the GPU part on CUDA, else the CPU part
    .venv/bin/python benchmarks/bench_kernels.py --cpu    # the CPU part even where CUDA exists
    .venv/bin/python benchmarks/bench_kernels.py --quick  # the smallest GPU shapes only
    bash benchmarks/gpu.sh                                # GPU tests, then this benchmark (at most 8 minutes)

GPU part (bf16; tokens in {4096, 16384}, vocabulary in {32000, 128256, 151936}). Methods for log-probs:
rlsurvey's Triton kernel, eager PyTorch (float32 log_softmax then gather), the same function under
torch.compile, a row loop over sequences of 512 tokens (how TRL's selective_log_softmax bounds memory for
bf16 logits), and Liger-Kernel's cross entropy with reduction="none" (its negative is the log-prob) when
liger_kernel is installed. Fused linear (hidden 4096): rlsurvey's chunked fused_linear_token_logprobs against
eager (matmul, then log-softmax and gather), torch.compile of eager, and Liger's fused linear cross entropy
(sum loss; it cannot give per-token gradients) when installed. Log-probs with entropy (tokens 8192,
vocabularies 32000 and 151936), what a GRPO step computes: rlsurvey's one-pass kernel
(token_logprobs_and_entropy), rlsurvey's two kernels one after the other, TRL's fused Triton kernel
(trl.kernels.selective_log_softmax_and_entropy, TRL 1.16) when trl imports, eager PyTorch and torch.compile
of it. The goals, computed in the output's "goals" entry: the one-pass kernel at 85% or more of the peak
bandwidth forward, at least 1.0x TRL's kernel and at least 2x eager forward plus backward at tokens 8192
and vocabulary 151936. Time: triton.testing.do_bench, the median and
the 20th and 80th percentiles in milliseconds, forward alone and forward plus backward. Bandwidth: the
floor on bytes moved (forward: read the bf16 logits once, 2 x tokens x vocab; forward plus backward: read
them twice and write their gradient once, 6 x tokens x vocab) over the median time, as a fraction of the
GPU's published peak memory bandwidth. Memory: torch.cuda.max_memory_allocated during one call, minus what
was allocated before it (the inputs), i.e. the extra memory the method needs.

CPU part (float32, vocabulary 32000): the chunked PyTorch reference against the naive full log-softmax
(rlsurvey's test reference, which also makes the logits / temperature copy) and plain eager (log_softmax of
the logits, then gather: what a reader would write). Peak
memory cannot be read from PyTorch's CPU allocator, so each (method, shape) runs in its own fresh process and
the script reads the operating system's peak resident set size (getrusage ru_maxrss): the peak extra memory
is ru_maxrss after the call minus the resident size just before it (read from /proc/self/statm after the
inputs exist). Fresh processes keep one measurement from inheriting another's peak. Time is one wall-clock
call after a warm-up, indicative only on a shared machine.

Results go to benchmarks/results/kernels_<device>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from rlsurvey.kernels import (
    fused_linear_token_logprobs,
    fused_linear_token_logprobs_naive,
    fused_linear_token_logprobs_reference,
    token_entropy,
    token_logprobs,
    token_logprobs_and_entropy,
    token_logprobs_naive,
    token_logprobs_reference,
)

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 2**20

# Published peak memory bandwidth (bytes/s) from the vendors' data sheets; matched on the device name.
PEAK_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM5
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("L4", 0.3e12),
    ("RTX 4090", 1.008e12),
]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


# ------------------------------------------------------------------------------------------------------
# The baselines
# ------------------------------------------------------------------------------------------------------


def eager_logprobs(logits, targets):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def rowloop_logprobs(logits, targets, seq_len: int = 512):
    """One sequence at a time, as TRL's selective_log_softmax does for bf16: memory of one [T, V] row."""
    out = [
        torch.log_softmax(x.float(), dim=-1).gather(-1, t[:, None]).squeeze(-1)
        for x, t in zip(logits.split(seq_len), targets.split(seq_len))
    ]
    return torch.cat(out)


def eager_fused(hidden, weight, targets):
    return eager_logprobs(hidden @ weight.T, targets)


def eager_logprobs_entropy(logits, targets):
    """What a reader writes: one float32 log-softmax, a gather for the log-probs and -sum p log p."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def entropy_methods() -> dict:
    """Log-probs and entropy: each method returns their sum, so one backward reaches both gradients."""

    def summed(fn):
        return lambda x, t: sum(fn(x, t))

    methods = {
        "rlsurvey one pass (triton)": summed(lambda x, t: token_logprobs_and_entropy(x, t, backend="triton")),
        "rlsurvey two kernels": summed(
            lambda x, t: (token_logprobs(x, t, backend="triton"), token_entropy(x, backend="triton"))
        ),
        "eager": summed(eager_logprobs_entropy),
        "torch.compile": summed(torch.compile(eager_logprobs_entropy, dynamic=False)),
    }
    try:
        from trl.kernels import selective_log_softmax_and_entropy
    except ImportError:
        return methods
    methods["TRL fused (selective_log_softmax_and_entropy)"] = summed(selective_log_softmax_and_entropy)
    return methods


def goals(rows: list[dict]) -> dict:
    """The goals of the one-pass kernel at tokens 8192, vocabulary 151936, from the measured rows."""
    at = {
        (r["method"], r["mode"]): r
        for r in rows
        if r["op"] == "logprobs+entropy" and r["tokens"] == 8192 and r["vocab"] == 151936 and "ms_p50" in r
    }
    ours_f, ours_b = (
        at.get(("rlsurvey one pass (triton)", "fwd")),
        at.get(("rlsurvey one pass (triton)", "fwd+bwd")),
    )
    trl_b = at.get(("TRL fused (selective_log_softmax_and_entropy)", "fwd+bwd"))
    eager_b = at.get(("eager", "fwd+bwd"))
    out = {
        "bandwidth_fraction_fwd": ours_f.get("bandwidth_fraction") if ours_f else None,
        "speedup_vs_trl_fwd_bwd": trl_b["ms_p50"] / ours_b["ms_p50"] if trl_b and ours_b else None,
        "speedup_vs_eager_fwd_bwd": eager_b["ms_p50"] / ours_b["ms_p50"] if eager_b and ours_b else None,
    }
    targets = {"bandwidth_fraction_fwd": 0.85, "speedup_vs_trl_fwd_bwd": 1.0, "speedup_vs_eager_fwd_bwd": 2.0}
    out["met"] = {k: (None if out[k] is None else out[k] >= t) for k, t in targets.items()}
    out["targets"] = targets
    return out  # fmt: skip


def liger_methods():
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy, liger_fused_linear_cross_entropy
    except ImportError:
        return {}, {}

    def ce(logits, targets):
        out = liger_cross_entropy(logits, targets, reduction="none")
        return -(out[0] if isinstance(out, tuple) else out)

    def flce(hidden, weight, targets):
        out = liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="sum")
        return -(out[0] if isinstance(out, tuple) else out)

    return {"liger cross entropy": ce}, {"liger fused linear CE (sum)": flce}


# ------------------------------------------------------------------------------------------------------
# GPU part
# ------------------------------------------------------------------------------------------------------


def _measure_gpu(make_call, grad_leaves):
    from triton.testing import do_bench

    call = make_call()
    call()  # compile and warm up outside the timed region
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    p50, p20, p80 = do_bench(call, quantiles=[0.5, 0.2, 0.8], grad_to_none=grad_leaves)
    return {"ms_p50": p50, "ms_p20": p20, "ms_p80": p80, "peak_extra_MiB": peak / MiB}


def _run_gpu_case(fn, inputs, leaves, backward):
    def make_call():
        if not backward:

            def call():
                with torch.no_grad():
                    fn(*inputs)

            return call

        def call():
            out = fn(*inputs)
            out.backward(torch.ones_like(out))

        return call

    try:
        return _measure_gpu(make_call, leaves if backward else None)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"error": "out of memory"}
    except Exception as exc:  # a baseline that does not support this case is reported, not fatal
        torch.cuda.empty_cache()
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def _bandwidth_rows(op: str, methods: dict, shapes, peak_bw) -> list[dict]:
    """Every method on bf16 logits [n, v] of every shape, forward and forward plus backward, with the floor on
    bytes moved (2 n v forward; 6 n v with the backward) and the share of peak bandwidth it reached."""
    from tqdm.auto import tqdm

    rows = []
    jobs = [(n, v, m, b) for n, v in shapes for m in methods for b in (False, True)]
    for n, v, method, backward in tqdm(jobs, desc=op):
        logits = torch.randn(n, v, device="cuda", dtype=torch.bfloat16).requires_grad_(backward)
        targets = torch.randint(0, v, (n,), device="cuda")
        res = _run_gpu_case(methods[method], (logits, targets), [logits], backward)
        floor = (6 if backward else 2) * n * v
        if "ms_p50" in res and peak_bw:
            res["bandwidth_fraction"] = floor / (res["ms_p50"] * 1e-3) / peak_bw
        mode = "fwd+bwd" if backward else "fwd"
        rows.append(
            {"op": op, "mode": mode, "tokens": n, "vocab": v, "method": method, "floor_bytes": floor, **res}
        )
        del logits, targets
    return rows


def gpu_part(quick: bool) -> dict:
    from tqdm.auto import tqdm

    name = torch.cuda.get_device_name()
    peak_bw = next((bw for key, bw in PEAK_BANDWIDTH if key in name), None)
    liger_lp, liger_fused = liger_methods()
    lp_methods = {
        "rlsurvey triton": lambda x, t: token_logprobs(x, t, backend="triton"),
        "eager": eager_logprobs,
        "torch.compile": torch.compile(eager_logprobs, dynamic=False),
        "row loop (TRL style)": rowloop_logprobs,
        **liger_lp,
    }
    fused_methods = {
        "rlsurvey fused (triton)": lambda h, w, t: fused_linear_token_logprobs(h, w, t, backend="triton"),
        "eager": eager_fused,
        "torch.compile": torch.compile(eager_fused, dynamic=False),
        **liger_fused,
    }
    shapes = [(4096, 32000)] if quick else [(n, v) for n in (4096, 16384) for v in (32000, 128256, 151936)]
    rows = _bandwidth_rows("token_logprobs", lp_methods, shapes, peak_bw)
    both_shapes = [(8192, 151936)] if quick else [(8192, 32000), (8192, 151936)]
    rows += _bandwidth_rows("logprobs+entropy", entropy_methods(), both_shapes, peak_bw)
    hidden_size = 4096
    jobs = [(n, v, m) for n, v in shapes for m in fused_methods]
    for n, v, method in tqdm(jobs, desc="fused linear"):
        hidden = torch.randn(n, hidden_size, device="cuda", dtype=torch.bfloat16).requires_grad_()
        weight = (torch.randn(v, hidden_size, device="cuda", dtype=torch.bfloat16) * 0.02).requires_grad_()
        targets = torch.randint(0, v, (n,), device="cuda")
        res = _run_gpu_case(fused_methods[method], (hidden, weight, targets), [hidden, weight], True)
        case = {"op": "fused_linear", "mode": "fwd+bwd", "tokens": n, "vocab": v, "hidden": hidden_size}
        rows.append({**case, "method": method, **res})
        del hidden, weight, targets
    return {
        "device": name,
        "peak_bandwidth_Bps": peak_bw,
        "peak_bandwidth_source": "vendor data sheet",
        "dtype": "bfloat16",
        "torch": torch.__version__,
        "memory_method": "torch.cuda.max_memory_allocated during one call minus memory allocated before it",
        "goals": goals(rows),
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------------
# CPU part: every measurement in its own process
# ------------------------------------------------------------------------------------------------------


def _current_rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def cpu_worker(spec: dict) -> dict:
    """Run one (op, method, shape) in this fresh process; report peak extra memory and one timing."""
    torch.manual_seed(0)
    torch.set_num_threads(spec.get("threads", 1))
    n, v, backward = spec["tokens"], spec["vocab"], spec["mode"] == "fwd+bwd"
    targets = torch.randint(0, v, (n,))
    if spec["op"] == "token_logprobs":
        leaves = [torch.randn(n, v).requires_grad_(backward)]
        fn = {
            "naive": token_logprobs_naive,
            "eager": eager_logprobs,
            "chunked reference": token_logprobs_reference,
        }
        fn = fn[spec["method"]]
    else:
        h = spec["hidden"]
        leaves = [torch.randn(n, h).requires_grad_(), (torch.randn(v, h) / h**0.5).requires_grad_()]
        fn = {
            "naive": fused_linear_token_logprobs_naive,
            "eager": eager_fused,
            "chunked reference": fused_linear_token_logprobs_reference,
        }[spec["method"]]

    def call():
        out = fn(*leaves, targets)
        if backward:
            out.sum().backward()
            for x in leaves:
                x.grad = None
        return out

    scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
    rss_before = _current_rss()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    call()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    t0 = time.perf_counter()
    call()
    ms = (time.perf_counter() - t0) * 1e3
    return {
        **spec,
        "rss_before_MiB": rss_before / MiB,
        "max_rss_before_MiB": max_before / MiB,
        "peak_extra_MiB": (max_after - rss_before) / MiB,
        "ms": ms,
    }


def cpu_part() -> dict:
    from tqdm.auto import tqdm

    specs = [
        {"op": "token_logprobs", "tokens": n, "vocab": 32000, "mode": mode, "method": m}
        for n in (1024, 4096)
        for mode in ("fwd", "fwd+bwd")
        for m in ("naive", "eager", "chunked reference")
    ]
    specs += [
        {"op": "fused_linear", "tokens": 1024, "vocab": 32000, "hidden": 256, "mode": "fwd+bwd", "method": m}
        for m in ("naive", "eager", "chunked reference")
    ]
    rows = []
    for spec in tqdm(specs, desc="CPU cases (one process each)"):
        cmd = [sys.executable, __file__, "--cpu-worker", json.dumps(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "dtype": "float32",
        "torch": torch.__version__,
        "memory_method": "ru_maxrss after the call minus resident size before it, one fresh process per case",
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------------
# Plot and main
# ------------------------------------------------------------------------------------------------------


def _case(row: dict) -> tuple:
    return (row["op"], row["mode"], row["tokens"], row["vocab"])


def plot(result: dict, path: Path) -> None:
    """Two panels: peak extra memory and time, one bar per method for every (op, mode, shape)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "peak_extra_MiB" in r]
    time_key = "ms_p50" if any("ms_p50" in r for r in rows) else "ms"
    cases = sorted({_case(r) for r in rows})
    methods = sorted({r["method"] for r in rows})
    by_key = {(_case(r), r["method"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        xs = [i + j * width for i in range(len(cases))]
        for ax, key in zip(axes, ("peak_extra_MiB", time_key)):
            ax.bar(
                xs, [by_key.get((c, method), {}).get(key, float("nan")) for c in cases], width, label=method
            )
    labels = [f"{op}\n{mode}\nN={n} V={v}" for op, mode, n, v in cases]
    time_label = "median time (ms)" if time_key == "ms_p50" else "time of one call (ms)"
    for ax, ylabel in zip(axes, ("peak extra memory (MiB)", time_label)):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))], labels, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"rlsurvey kernels on {result['device']} ({result['dtype']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run the CPU part even where CUDA exists")
    parser.add_argument("--quick", action="store_true", help="GPU: the smallest shape only")
    parser.add_argument("--replot", help="redraw the figure of an existing results JSON and exit")
    parser.add_argument("--cpu-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replot:
        path = Path(args.replot)
        plot(json.loads(path.read_text()), path.with_suffix(".png"))
        return
    if args.cpu_worker:
        print(json.dumps(cpu_worker(json.loads(args.cpu_worker))))
        return
    on_gpu = torch.cuda.is_available() and not args.cpu
    result = gpu_part(args.quick) if on_gpu else cpu_part()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"kernels_{slug(torch.cuda.get_device_name()) if on_gpu else 'cpu'}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, stem.with_suffix(".png"))
    for r in result["rows"]:
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
        print(shown)
    if "goals" in result:
        print("goals:", json.dumps(result["goals"]))
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
