"""Every Triton kernel compiles for real GPUs (sm_80, sm_90), forward and backward, at the tiles its launcher
chooses, with no register spills, on a machine without a GPU (rlsurvey.kernels.aot); the committed record in
benchmarks/results/kernels_compiled.json lists every one of them."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from rlsurvey.kernels import HAS_TRITON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="needs triton")
RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kernels_compiled.json"


def _tools_present() -> bool:
    import triton

    return os.path.exists(
        os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    )


@pytest.fixture(scope="module")
def compiled():
    if not _tools_present():
        pytest.skip("this triton wheel has no NVIDIA backend tools (cuobjdump)")
    from rlsurvey.kernels.aot import compile_kernels

    return compile_kernels()


def _key(row) -> tuple:
    return (row["kernel"], row["arch"], row["dtype"], row["vocab"])


def test_every_kernel_compiles_for_sm80_and_sm90_without_spills(compiled):
    assert {k.arch for k in compiled} == {80, 90}
    spilled = [k for k in compiled if k.local_bytes or k.stack_bytes]
    assert not spilled, f"register spills: {spilled}"
    assert all(0 < k.registers <= 255 for k in compiled)


def test_every_triton_kernel_of_the_package_is_compiled(compiled):
    from rlsurvey.kernels._dispatch import triton_kernel

    names = set()
    for module in ("entropy", "gae", "logprobs", "logprobs_entropy"):
        mod = importlib.import_module(f"rlsurvey.kernels.{module}")
        names |= {v.fn.__name__ for v in vars(mod).values() if isinstance(v, triton_kernel)}
    assert names and names == {k.kernel for k in compiled}
    kernels_dir = Path(importlib.import_module("rlsurvey.kernels").__file__).parent
    decorated = sum(p.read_text().count("\n@triton_kernel\n") for p in kernels_dir.glob("*.py"))
    assert decorated == len(names), "a kernel module not listed here: add it to kernels.aot"


def test_the_committed_record_lists_every_compiled_kernel_with_zero_spills(compiled):
    from dataclasses import asdict

    record = json.loads(RECORD.read_text())["kernels"]
    assert {_key(r) for r in record} == {_key(asdict(k)) for k in compiled}, (
        "benchmarks/results/kernels_compiled.json is stale: run python benchmarks/compile_kernels.py"
    )
    assert all(r["local_bytes"] == 0 and r["stack_bytes"] == 0 for r in record)


def test_a_tile_too_large_for_the_registers_is_reported_as_spills():
    """The check can fail: one warp holding an 8192-wide float32 tile (256 values per thread) does not fit
    in its registers, and the compiler puts the rest on the stack (the launcher gives that tile 16 warps)."""
    if not _tools_present():
        pytest.skip("this triton wheel has no NVIDIA backend tools (cuobjdump)")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rlsurvey.kernels import aot
    from rlsurvey.kernels.logprobs import _logprobs_bwd_kernel

    config = next(c for c in aot.kernel_configs() if c["fn"] is _logprobs_bwd_kernel)
    _logprobs_bwd_kernel.fn.__globals__["tl"] = tl
    source = ASTSource(fn=triton.jit(_logprobs_bwd_kernel.fn), signature=config["signature"],
                       constexprs={"BLOCK": 8192})  # fmt: skip
    binary = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1})
    usage = aot.resource_usage(binary.asm["cubin"])
    assert usage["local_bytes"] > 0 or usage["stack_bytes"] > 0, usage
