"""Which path a kernel call takes: the Triton kernel or the PyTorch reference.

Survey section: infrastructure for every algorithm in sections 4 to 8 of arXiv 2412.10400 (they all turn
logits into per-token log-probabilities).

Rules, in order:

1. `backend=` given to the public function ("triton" or "torch") wins;
2. else the environment variable `RLSURVEY_KERNELS` = `triton` | `torch` | `auto` (default `auto`);
3. `auto` picks Triton when every tensor is on a CUDA device and `import triton` works, the reference
   otherwise (CPU, MPS, or no Triton).

Forcing Triton on CPU tensors is allowed only under Triton's interpreter (`TRITON_INTERPRET=1` set before
triton is first imported): that is how the tests run the real kernels on a machine without a GPU.

Why kernels are wrapped by `triton_kernel` instead of `@triton.jit` directly: Triton decides at import time
whether its own standard library (`tl.sum`, `tl.max`, ...) is compiled or interpreted. The wrapper keeps the
plain Python function and builds the interpreted or the compiled kernel on first launch, matching whatever
mode triton itself was imported in, so the kernel modules can be imported before or after that choice.
"""

from __future__ import annotations

import os

import torch

try:  # Triton is optional: macOS and Windows readers run the references.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    HAS_TRITON = False

    class _StubLanguage:
        """Just enough of `triton.language` for kernel signatures to be defined without Triton."""

        class constexpr:  # noqa: N801 - mirrors triton.language.constexpr
            pass

    tl = _StubLanguage()

__all__ = ["HAS_TRITON", "interpreter_active", "resolve_backend", "tl", "triton", "triton_kernel"]

BACKENDS = ("triton", "torch", "auto")


def interpreter_active() -> bool:
    """True when triton was imported in interpreter mode (TRITON_INTERPRET=1 before its first import)."""
    if not HAS_TRITON:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.sum, InterpretedFunction)


def resolve_backend(backend: str | None, *tensors: torch.Tensor) -> str:
    """Return "triton" or "torch" for a call on `tensors` (see the module docstring for the rules)."""
    choice = backend if backend is not None else os.environ.get("RLSURVEY_KERNELS", "auto").strip().lower()
    if choice not in BACKENDS:
        source = "backend" if backend is not None else "RLSURVEY_KERNELS"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    on_cuda = all(t.device.type == "cuda" for t in tensors)
    if choice == "auto":
        return "triton" if (on_cuda and HAS_TRITON) else "torch"
    if choice == "triton":
        if not HAS_TRITON:
            raise RuntimeError("the Triton path was requested but `import triton` failed; install triton")
        if not on_cuda and not interpreter_active():
            devices = sorted({str(t.device) for t in tensors})
            raise RuntimeError(
                f"the Triton path needs CUDA tensors (got {devices}); to run it on the CPU set "
                "TRITON_INTERPRET=1 before triton is first imported"
            )
    return choice


class triton_kernel:  # noqa: N801 - used as a decorator, like triton.jit
    """Decorator: a Triton kernel that compiles (CUDA) or interprets (CPU) depending on triton's mode.

    `kernel[grid](*args)` launches it like a `@triton.jit` function; `kernel.fn` is the Python source
    (the notebook prints it with `inspect.getsource`).
    """

    def __init__(self, fn):
        self.fn = fn
        self._compiled = None
        self._interpreted = None

    def __getitem__(self, grid):
        if not HAS_TRITON:
            raise RuntimeError(f"{self.fn.__name__} needs triton, which is not installed")
        if interpreter_active():
            if self._interpreted is None:
                from triton.runtime.interpreter import InterpretedFunction

                self._interpreted = InterpretedFunction(self.fn)
            return self._interpreted[grid]
        if self._compiled is None:
            self._compiled = triton.jit(self.fn)
        return self._compiled[grid]
