"""Helpers the kernel tests share: gradients of every input, and running a test file under the interpreter.

Triton's interpreter must be chosen before triton is first imported in a process. In a CPU-only test run the
kernel test modules call `use_interpreter()` at import and run the kernels in-process. Where that is not
possible (triton already imported compiled, as torch._dynamo does when a conftest imports transformers, or
a GPU present whose tests need compiled kernels), `interpreter_failures` runs the modules' interpreter
tests in one fresh process instead and reports each module's outcome to that module's driver test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import torch

__all__ = ["interpreter_failures", "outputs_and_grads"]


def outputs_and_grads(fn, inputs: dict, seed: int = 0):
    """Call fn(**inputs), backpropagate a fixed random upstream gradient, return (outputs, {name: grad}).

    Floating-point tensors in `inputs` are cloned as leaves that require grad, so two calls on the same
    `inputs` (say the kernel and the reference) are compared on identical data and identical upstream
    gradients. `fn` may return a tensor or a tuple of tensors.
    """
    leaves = {
        k: v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        for k, v in inputs.items()
    }
    out = fn(**leaves)
    outs = out if isinstance(out, tuple) else (out,)
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device) for o in outs]
    loss = sum((o.double() * u).sum() for o, u in zip(outs, upstream))
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    return tuple(o.detach() for o in outs), grads


_RESULTS: dict[tuple, dict] = {}  # one child process per set of test files, shared by their drivers


def interpreter_failures(test_file: str, request) -> list[str]:
    """Failures of `test_file`'s tests when run under the interpreter in a child process.

    Called from each kernel test module's driver test. The first driver of a pytest session runs every
    module whose driver is collected in one child process (importing torch and triton once, not once per
    module) and caches the per-module outcome; the other drivers read it. A module counts as failed when
    any of its tests failed or errored in the child, or when its interpreter tests were skipped there.
    """
    name = request.node.originalname
    items = request.session.items  # notebook cells (nbval) have no originalname
    files = tuple(sorted({str(i.path) for i in items if getattr(i, "originalname", None) == name}))
    if files not in _RESULTS:
        _RESULTS[files] = _run_in_child(files, exclude=name)
    stem = Path(test_file).stem
    return _RESULTS[files].get(stem, [f"{stem}: no results from the interpreter child process"])


def _run_in_child(files, exclude: str, timeout: int = 1800) -> dict:
    """Run `files` under TRITON_INTERPRET=1 without a visible GPU; map module stem -> list of failures."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        # --noconftest: the kernel tests need no fixtures, and conftests that import transformers would
        # import torch._dynamo, and with it triton, before the test module can choose the interpreter.
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest"]
        cmd += [*files, "-k", f"not {exclude}", f"--junitxml={report}"]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # reported once, then read from the cache by every driver
            tail = (exc.stdout or b"")[-3000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            return {Path(f).stem: [f"the child pytest ran past {timeout} s:\n{tail}"] for f in files}
        if not report.exists():
            tail = proc.stdout[-3000:] + proc.stderr[-3000:]
            crash = f"the child pytest crashed (exit {proc.returncode}):\n{tail}"
            return {Path(f).stem: [crash] for f in files}
        cases = ElementTree.parse(report).getroot().iter("testcase")
        out: dict[str, list[str]] = {Path(f).stem: [] for f in files}
        for case in cases:
            stem = case.get("classname", "").split(".")[-1]
            for tag in ("failure", "error"):
                for node in case.findall(tag):
                    out.setdefault(stem, []).append(f"{case.get('name')}: {tag}\n{(node.text or '')[-3000:]}")
            for node in case.findall("skipped"):
                if "interpreter not active" in (node.get("message") or ""):
                    out.setdefault(stem, []).append(f"{case.get('name')}: skipped in the interpreter child")
    return out
