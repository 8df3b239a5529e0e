"""Which path runs (RLSURVEY_KERNELS, backend=, the interpreter), and clear errors for bad input."""

import subprocess
import sys

import pytest
import torch

import rlsurvey.kernels._dispatch as dispatch
from rlsurvey.kernels import fused_linear_token_logprobs, gae, token_entropy, token_logprobs
from rlsurvey.kernels._dispatch import resolve_backend

CPU = torch.zeros(2)


def test_auto_picks_the_reference_on_cpu_and_env_var_forces(monkeypatch):
    monkeypatch.delenv("RLSURVEY_KERNELS", raising=False)
    assert resolve_backend(None, CPU) == "torch"
    monkeypatch.setenv("RLSURVEY_KERNELS", "torch")
    assert resolve_backend(None, CPU) == "torch"
    monkeypatch.setenv("RLSURVEY_KERNELS", "cuda-please")
    with pytest.raises(ValueError, match="RLSURVEY_KERNELS must be one of"):
        resolve_backend(None, CPU)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("fast", CPU)


@pytest.mark.skipif(not dispatch.HAS_TRITON, reason="needs triton installed")
def test_forcing_triton_on_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(dispatch, "interpreter_active", lambda: False)
    monkeypatch.setenv("RLSURVEY_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        token_logprobs(torch.randn(2, 5), torch.tensor([1, 2]))
    monkeypatch.setenv("RLSURVEY_KERNELS", "auto")
    assert token_logprobs(torch.randn(2, 5), torch.tensor([1, 2])).shape == (2,)


@pytest.mark.skipif(not dispatch.HAS_TRITON, reason="needs triton installed")
def test_importing_rlsurvey_kernels_leaves_triton_unimported_and_mode_is_respected():
    script = """
import sys, torch
import rlsurvey.kernels as K
assert "triton" not in sys.modules, "importing rlsurvey.kernels imported triton"
x, t = torch.randn(3, 7), torch.tensor([0, 6, -100])
K.token_logprobs(x, t)  # auto on the CPU: the reference, still without triton
assert "triton" not in sys.modules, "the CPU reference path imported triton"
import triton  # compiled mode, as torch._dynamo would import it
assert not K.use_interpreter(), "use_interpreter must report that it is too late"
try:
    K.token_logprobs(x, t, backend="triton")
except RuntimeError as e:
    assert "TRITON_INTERPRET=1" in str(e)
else:
    raise AssertionError("forcing triton on CPU tensors in compiled mode must raise")
print("ok")
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# (call, exception type, text the message must contain)
LOGITS, TARGETS = torch.randn(3, 5), torch.tensor([0, 4, -100])
BAD_CALLS = [
    (lambda: token_logprobs([[0.0]], TARGETS), TypeError, "logits must be a torch.Tensor"),
    (lambda: token_logprobs(LOGITS.long(), TARGETS), TypeError, "logits must have dtype"),
    (lambda: token_logprobs(LOGITS, TARGETS.float()), TypeError, "targets must be int64 or int32"),
    (lambda: token_logprobs(LOGITS, TARGETS[:2]), ValueError, "targets must have shape logits.shape"),
    (
        lambda: token_logprobs(LOGITS, torch.tensor([0, 5, 1])),
        ValueError,
        r"targets must lie in \[0, 5\).*got 5",
    ),
    (lambda: token_logprobs(LOGITS, torch.tensor([0, -1, 1])), ValueError, "got -1"),
    (lambda: token_logprobs(LOGITS, TARGETS, ignore_index=1.5), TypeError, "ignore_index must be an int"),
    (lambda: token_logprobs(LOGITS, TARGETS, temperature=0.0), ValueError, "temperature must be > 0"),
    (lambda: token_logprobs(LOGITS, TARGETS, temperature="hot"), TypeError, "temperature must be"),
    (
        lambda: token_logprobs(LOGITS.to("meta"), TARGETS),
        ValueError,
        "targets is on cpu but logits is on meta",
    ),
    (lambda: token_logprobs(torch.randn(3, 0), TARGETS), ValueError, "non-empty last"),
    (lambda: token_entropy(LOGITS.int()), TypeError, "logits must have dtype"),
    (lambda: token_entropy(torch.tensor(1.0)), ValueError, "logits must have at least 1 dimensions"),
    (
        lambda: fused_linear_token_logprobs(torch.randn(2, 3, 4), torch.randn(5, 4), TARGETS),
        ValueError,
        "hidden",
    ),
    (
        lambda: fused_linear_token_logprobs(torch.randn(3, 4), torch.randn(5, 6), TARGETS),
        ValueError,
        "weight",
    ),
    (
        lambda: fused_linear_token_logprobs(torch.randn(3, 4), torch.randn(5, 4).double(), TARGETS),
        TypeError,
        "weight must have hidden's dtype",
    ),
    (
        lambda: fused_linear_token_logprobs(torch.randn(4, 4), torch.randn(5, 4), TARGETS),
        ValueError,
        "targets",
    ),
    (lambda: fused_linear_token_logprobs(torch.randn(3, 4), torch.randn(4, 4), TARGETS), ValueError, "got 4"),
    (
        lambda: fused_linear_token_logprobs(torch.randn(3, 4), torch.randn(5, 4, device="meta"), TARGETS),
        ValueError,
        "weight is on meta",
    ),
    (
        lambda: fused_linear_token_logprobs(torch.randn(3, 4), torch.randn(5, 4), TARGETS, chunk_bytes=0),
        ValueError,
        "chunk_bytes",
    ),
    (
        lambda: gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), 0.9, 0.9),
        ValueError,
        "values must",
    ),
    (lambda: gae(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 2), 0.9, 0.9), ValueError, "mask must"),
    (
        lambda: gae(torch.zeros(2, 3), torch.zeros(2, 3), torch.full((2, 3), 2), 0.9, 0.9),
        ValueError,
        "0 and 1",
    ),
    (
        lambda: gae(torch.zeros(2, 3).long(), torch.zeros(2, 3), torch.ones(2, 3), 0.9, 0.9),
        TypeError,
        "rewards",
    ),
    (lambda: gae(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), 1.5, 0.9), ValueError, "gamma"),
    (lambda: gae(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), 0.9, -0.1), ValueError, "lam"),
    (lambda: gae(torch.zeros(3), torch.zeros(3), torch.ones(3), 0.9, 0.9), ValueError, "rewards must have 2"),
    (
        lambda: gae(torch.zeros(2, 3), torch.zeros(2, 3, device="meta"), torch.ones(2, 3), 0.9, 0.9),
        ValueError,
        "values is on meta",
    ),
]


@pytest.mark.parametrize("call,exc,text", BAD_CALLS, ids=[f"bad{i}" for i in range(len(BAD_CALLS))])
def test_bad_input_raises_a_clear_error(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_custom_ignore_index_and_int32_targets_are_accepted():
    out = token_logprobs(LOGITS, torch.tensor([0, -1, 4], dtype=torch.int32), ignore_index=-1)
    assert out[1] == 0 and (out <= 0).all()
