"""Ahead-of-time compilation of every Triton kernel for real NVIDIA GPUs, on a machine without one.

The interpreter (`TRITON_INTERPRET=1`) that the CPU tests use runs a kernel's Python body with NumPy; it
accepts programs the compiler rejects (a type the backend cannot lower, a tile too large for registers) and
says nothing about registers or spills. Triton can compile for a target it is not running on: `triton.compile`
with a `GPUTarget` runs the whole pipeline (TTIR, TTGIR, LLVM IR, PTX, then the ptxas that ships in the
triton wheel) and returns the cubin. `compile_kernels` does that for every kernel of `rlsurvey.kernels`,
forward and backward, at the block sizes and warp counts the launchers choose for the smallest and the
largest vocabularies, in float32 and bfloat16, and reads each cubin's resource usage (registers, shared
memory, local memory = spills to the stack) with the `cuobjdump` of the same wheel.

    python benchmarks/compile_kernels.py   # writes benchmarks/results/kernels_compiled.json
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass

__all__ = [
    "ARCHS",
    "VOCABS",
    "CompiledKernel",
    "as_rows",
    "compile_kernels",
    "kernel_configs",
    "resource_usage",
]

ARCHS = (80, 90)  # A100 (sm_80) and H100 / H200 (sm_90)
VOCABS = (3, 151_936)  # the smallest vocabulary the tests use and Qwen's (the largest tile: BLOCK = 8192)
_DTYPES = {"float32": "*fp32", "bfloat16": "*bf16"}


@dataclass
class CompiledKernel:
    kernel: str  # the kernel function's name
    arch: int  # compute capability, e.g. 90 for sm_90
    dtype: str  # dtype of the logits (or "float32" for GAE)
    vocab: int | None  # the vocabulary the launcher sized the tile for (None for GAE)
    block: int | None  # BLOCK, as the launcher chooses it
    num_warps: int
    registers: int  # per thread
    shared_bytes: int  # static shared memory per program
    local_bytes: int  # local memory per thread: register spills and stack (0 is the goal)
    stack_bytes: int


def kernel_configs() -> list[dict]:
    """Every (kernel, signature, constexprs, num_warps) the launchers of rlsurvey.kernels can produce for
    `VOCABS` and the two dtypes, forward and backward."""
    import importlib

    # by module path: the package itself exports functions named like some of its modules (gae)
    entropy, gae, logprobs, both = (
        importlib.import_module(f"rlsurvey.kernels.{m}")
        for m in ("entropy", "gae", "logprobs", "logprobs_entropy")
    )

    out = []
    for dtype, ptr in _DTYPES.items():
        for vocab in VOCABS:
            block = logprobs.block_size(vocab)
            warps = logprobs.num_warps(block)
            common = {"dtype": dtype, "vocab": vocab, "block": block, "num_warps": warps}
            out.append(
                {
                    **common,
                    "fn": logprobs._logprobs_fwd_kernel,
                    "signature": {
                        "x_ptr": ptr,
                        "x_row_stride": "i64",
                        "t_ptr": "*i64",
                        "out_ptr": "*fp32",
                        "lse_ptr": "*fp32",
                        "n_cols": "i32",
                        "ignore_index": "i32",
                        "temperature": "fp32",
                        "BLOCK": "constexpr",
                    },
                }
            )
            out.append(
                {
                    **common,
                    "fn": logprobs._logprobs_bwd_kernel,
                    "signature": {
                        "x_ptr": ptr,
                        "x_row_stride": "i64",
                        "t_ptr": "*i64",
                        "lse_ptr": "*fp32",
                        "g_ptr": "*fp32",
                        "dx_ptr": ptr,
                        "dx_row_stride": "i64",
                        "n_cols": "i32",
                        "ignore_index": "i32",
                        "temperature": "fp32",
                        "BLOCK": "constexpr",
                    },
                }
            )
            out.append(
                {
                    **common,
                    "fn": entropy._entropy_fwd_kernel,
                    "signature": {
                        "x_ptr": ptr,
                        "x_row_stride": "i64",
                        "h_ptr": "*fp32",
                        "lse_ptr": "*fp32",
                        "m_ptr": "*fp32",
                        "q_ptr": "*fp32",
                        "n_cols": "i32",
                        "BLOCK": "constexpr",
                    },
                }
            )
            out.append(
                {
                    **common,
                    "fn": entropy._entropy_bwd_kernel,
                    "signature": {
                        "x_ptr": ptr,
                        "x_row_stride": "i64",
                        "lse_ptr": "*fp32",
                        "m_ptr": "*fp32",
                        "q_ptr": "*fp32",
                        "g_ptr": "*fp32",
                        "dx_ptr": ptr,
                        "dx_row_stride": "i64",
                        "n_cols": "i32",
                        "BLOCK": "constexpr",
                    },
                }
            )
            strided = {"x_ptr": ptr, "x_batch_stride": "i64", "x_row_stride": "i64", "rows_per_batch": "i64"}
            out.append(
                {
                    **common,
                    "fn": both._logprobs_entropy_fwd_kernel,
                    "signature": {
                        **strided,
                        "t_ptr": "*i64",
                        "logp_ptr": "*fp32",
                        "h_ptr": "*fp32",
                        "lse_ptr": "*fp32",
                        "m_ptr": "*fp32",
                        "q_ptr": "*fp32",
                        "n_cols": "i32",
                        "ignore_index": "i32",
                        "temperature": "fp32",
                        "BLOCK": "constexpr",
                    },
                }
            )
            out.append(
                {
                    **common,
                    "fn": both._logprobs_entropy_bwd_kernel,
                    "signature": {
                        **strided,
                        "dx_ptr": ptr,
                        "dx_batch_stride": "i64",
                        "dx_row_stride": "i64",
                        "t_ptr": "*i64",
                        "lse_ptr": "*fp32",
                        "m_ptr": "*fp32",
                        "q_ptr": "*fp32",
                        "glogp_ptr": "*fp32",
                        "gh_ptr": "*fp32",
                        "n_cols": "i32",
                        "ignore_index": "i32",
                        "temperature": "fp32",
                        "BLOCK": "constexpr",
                    },
                }
            )
    gae_common = {"dtype": "float32", "vocab": None, "block": None, "num_warps": 4}
    out.append(
        {
            **gae_common,
            "fn": gae._gae_fwd_kernel,
            "signature": {
                "r_ptr": "*fp32",
                "v_ptr": "*fp32",
                "m_ptr": "*i8",
                "adv_ptr": "*fp32",
                "ret_ptr": "*fp32",
                "T": "i32",
                "gamma": "fp32",
                "lam": "fp32",
            },
        }
    )
    out.append(
        {
            **gae_common,
            "fn": gae._gae_bwd_kernel,
            "signature": {
                "m_ptr": "*i8",
                "gadv_ptr": "*fp32",
                "gret_ptr": "*fp32",
                "dr_ptr": "*fp32",
                "dv_ptr": "*fp32",
                "T": "i32",
                "gamma": "fp32",
                "lam": "fp32",
            },
        }
    )
    return out  # fmt: skip


def _tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{name} is not in this triton wheel ({path}); install triton with its NVIDIA backend"
        )
    return path


def resource_usage(cubin: bytes) -> dict[str, int]:
    """Registers, shared, local and stack bytes of the one function in a cubin (cuobjdump's report)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        report = subprocess.run(
            [_tool("cuobjdump"), "--dump-resource-usage", path], capture_output=True, text=True, check=True
        ).stdout
    fields = dict(re.findall(r"\b(REG|SHARED|LOCAL|STACK):(\d+)", report))
    if not {"REG", "SHARED", "LOCAL", "STACK"} <= set(fields):
        raise RuntimeError(f"unexpected cuobjdump report:\n{report}")
    return {"registers": int(fields["REG"]), "shared_bytes": int(fields["SHARED"]),
            "local_bytes": int(fields["LOCAL"]), "stack_bytes": int(fields["STACK"])}  # fmt: skip


def compile_kernels(archs=ARCHS) -> list[CompiledKernel]:
    """Compile every configuration of `kernel_configs()` for each compute capability in `archs`; raises
    on a compile error. No GPU is needed."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the current default, set to silence its warning
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    results = []
    for config in kernel_configs():
        wrapper = config["fn"]
        wrapper.fn.__globals__["tl"] = tl  # the kernels' modules name `tl` lazily (see _dispatch)
        jitted = triton.jit(wrapper.fn)
        constexprs = {"BLOCK": config["block"]} if config["block"] is not None else {}
        for arch in archs:
            source = ASTSource(fn=jitted, signature=config["signature"], constexprs=constexprs)
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                      options={"num_warps": config["num_warps"]})  # fmt: skip
            usage = resource_usage(compiled.asm["cubin"])
            results.append(CompiledKernel(
                kernel=wrapper.fn.__name__, arch=arch, dtype=config["dtype"], vocab=config["vocab"],
                block=config["block"], num_warps=config["num_warps"], **usage,
            ))  # fmt: skip
    return results


def as_rows(results: list[CompiledKernel]) -> list[dict]:
    return [asdict(r) for r in results]
