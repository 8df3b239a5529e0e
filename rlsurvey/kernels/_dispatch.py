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

Two details make this work in any import order. Triton is imported lazily (importing rlsurvey never
imports it), because its first import fixes, for the whole process, whether `tl.sum`, `tl.max` and the rest
of its standard library are compiled or interpreted. And kernels are wrapped by `triton_kernel` instead of
`@triton.jit`: the wrapper keeps the plain Python function and builds the interpreted or the compiled kernel
on first launch, matching the mode triton was imported in. `use_interpreter()` puts a fresh process in
interpreter mode (the tests and chapter 13 call it).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

# Triton is optional (macOS and Windows readers run the references) and imported lazily: the first import
# fixes interpreter-or-compiled mode for the whole process, so importing rlsurvey must not trigger it.
HAS_TRITON = importlib.util.find_spec("triton") is not None

__all__ = [
    "HAS_TRITON",
    "import_triton",
    "interpreter_active",
    "resolve_backend",
    "triton_kernel",
    "use_interpreter",
]


def import_triton():
    """Import triton (once) and return the module; a clear error where it is missing or broken."""
    if not HAS_TRITON:
        raise RuntimeError("the Triton path was requested but triton is not installed")
    try:
        import triton
        import triton.language  # noqa: F401 - the kernels' `tl`
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RuntimeError(f"the Triton path was requested but `import triton` failed: {exc}") from exc
    return triton


def use_interpreter() -> bool:
    """Import triton in interpreter mode if it is not imported yet; True when the interpreter is active.

    Sets TRITON_INTERPRET=1 only around the import and pins triton's own switch afterwards, so child
    processes (notebook kernels, subprocesses) do not inherit the variable. Returns False where triton is
    missing or was already imported compiled; a new process is then the only way to interpret.
    """
    if not HAS_TRITON:
        return False
    if "triton" not in sys.modules:
        previous = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            triton = import_triton()
            triton.knobs.runtime.interpret = True
        finally:
            if previous is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = previous
    return interpreter_active()


BACKENDS = ("triton", "torch", "auto")


def interpreter_active() -> bool:
    """True when triton is (or, imported now, would be) in interpreter mode for this process."""
    if not HAS_TRITON:
        return False
    if "triton" not in sys.modules and os.environ.get("TRITON_INTERPRET", "0") != "1":
        return False  # answer without importing triton, which would fix its mode
    triton = import_triton()
    from triton.runtime.interpreter import InterpretedFunction

    # The standard library is decorated when triton.language is imported: it shows the mode actually in use.
    return isinstance(triton.language.sum, InterpretedFunction)


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
        import_triton()
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
    (the notebook prints it with `inspect.getsource`). The kernel's module names `tl` without importing
    it (annotations are strings there); the first launch binds `tl` to triton.language in that module.
    """

    def __init__(self, fn):
        self.fn = fn
        self._compiled = None
        self._interpreted = None

    def __getitem__(self, grid):
        triton = import_triton()
        self.fn.__globals__["tl"] = triton.language
        if interpreter_active():
            if self._interpreted is None:
                from triton.runtime.interpreter import InterpretedFunction

                self._interpreted = InterpretedFunction(self.fn)
            return self._interpreted[grid]
        if self._compiled is None:
            self._compiled = triton.jit(self.fn)
        return self._compiled[grid]
