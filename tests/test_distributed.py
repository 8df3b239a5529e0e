"""Data parallelism (rlsurvey.distributed): two CPU processes (gloo, DDP through Accelerate) against one.

The trainers keep their batch sizes global and shard each batch over the processes, so two processes with
half a batch each must take the same steps as one process with the whole batch. For DPO and the reward model
the per-step loss and gradient norm, and the final parameters, must agree within float32 round-off (the
gradient norm is there because AdamW's steps hardly change when every gradient is scaled by the same factor,
so a wrong loss weight would slip past the loss and the parameters). Measured here on a 2-core CPU: losses
and norms within 2e-7 relative, parameters within 1e-6 absolute; the bounds below allow about 10x that.
PPO and GRPO sample with a seed per process, so their runs differ from one process by design: a smoke run
checks finite losses, parameters that moved, and the same parameters on both processes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

from rlsurvey.distributed import Distributed, get_distributed
from tests import dist_worker
from tests.conftest import tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL, LOSS_ATOL = 2e-6, 1e-6  # per-step loss and gradient norm, float32
PARAM_ATOL = 1e-5  # final parameters after 4-6 AdamW steps at lr 1e-3, float32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Run every trainer of tests/dist_worker.py on two CPU processes once; the folder of their outputs."""
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "tests.dist_worker", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _load(out: Path, name: str, rank: int) -> tuple[list[float], dict]:
    losses = json.loads((out / f"{name}-rank{rank}.json").read_text())["losses"]
    return losses, load_file(str(out / f"{name}-rank{rank}.safetensors"))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the launched processes
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["dpo", "reward_model"])
def test_two_processes_equal_one_with_the_same_global_batch(two_processes, name):
    single_losses, single_params = dist_worker.RUNS[name](distributed=False)
    for rank in (0, 1):
        losses, params = _load(two_processes, name, rank)
        assert len(losses) == len(single_losses) and all(map(math.isfinite, losses))
        torch.testing.assert_close(
            torch.tensor(losses, dtype=torch.float64),
            torch.tensor(single_losses, dtype=torch.float64),
            rtol=LOSS_RTOL,
            atol=LOSS_ATOL,
        )
        assert params.keys() == single_params.keys()
        for k, v in single_params.items():
            torch.testing.assert_close(params[k], v, rtol=0, atol=PARAM_ATOL, msg=f"{name} parameter {k}")


@pytest.mark.parametrize("name", ["ppo", "grpo"])
def test_ppo_and_grpo_run_on_two_processes(two_processes, name):
    initial = {"ppo": 1, "grpo": 2}[name]  # the seeds dist_worker builds the policies with
    start = tiny_causal_lm("llama", seed=initial)[0].state_dict()
    (losses0, params0), (losses1, params1) = _load(two_processes, name, 0), _load(two_processes, name, 1)
    assert len(losses0) == 2 and all(map(math.isfinite, losses0)) and losses0 == losses1
    for k, v in params0.items():
        assert torch.equal(v, params1[k]), f"{name}: parameter {k} differs between the processes"
    moved = [k for k, v in params0.items() if not torch.equal(v, start[k])]
    assert len(moved) >= len(params0) - 1, (
        f"{name}: parameters that did not move: {set(params0) - set(moved)}"
    )


def test_one_process_through_accelerate_equals_plain_pytorch():
    """distributed=True on one process runs the Accelerate code path; it must not change a thing."""
    from accelerate.state import AcceleratorState

    try:
        for name in ("dpo", "reward_model"):
            plain_losses, plain_params = dist_worker.RUNS[name](distributed=False)
            acc_losses, acc_params = dist_worker.RUNS[name](distributed=True)
            assert acc_losses == plain_losses
            assert all(torch.equal(acc_params[k], v) for k, v in plain_params.items())
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_single_process_helpers_are_plain_pytorch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = get_distributed()
    assert isinstance(d, Distributed) and not d.enabled and d.accelerator is None
    assert (d.world_size, d.rank, d.is_main, d.device) == (1, 0, True, None)
    assert d.shard(range(5)) == [0, 1, 2, 3, 4] and d.share(3) == 1.0
    assert d.run(lambda a, b: a + b, 2, b=3) == 5
    metrics = {"loss": 0.5, "n": 3}
    assert d.sum_metrics(metrics) is metrics and d.mean_metrics(metrics) is metrics
    x, m = torch.randn(3, 4), torch.rand(3, 4) > 0.3
    from rlsurvey.algos.advantages import whiten

    torch.testing.assert_close(d.whiten(x, m), whiten(x, m))
    monkeypatch.setenv("WORLD_SIZE", "not a number")
    assert not get_distributed().enabled


@pytest.mark.parametrize("world, n", [(2, 5), (3, 7), (4, 2)])
def test_shards_partition_a_batch_in_order(world, n):
    """The slices of all ranks, in rank order, are the batch: nothing lost, nothing twice."""

    class Fake:
        num_processes, process_index = world, 0

    parts = []
    for rank in range(world):
        Fake.process_index = rank
        parts.append(Distributed(Fake()).shard(list(range(n))))
    assert sum(parts, []) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_bad_sizes_for_several_processes_are_named():
    class Two(Distributed):
        world_size = 2

    from rlsurvey.algos import dpo_trainer, grpo, rlhf_ppo, sft, supervised

    policy, tok = tiny_causal_lm("llama", seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grpo, "get_distributed", lambda flag: Two(None))
        with pytest.raises(ValueError, match="multiples of 2"):
            grpo.train_grpo(
                policy, tok, ["a"], lambda p, c: [0.0] * len(c), grpo.GRPOConfig(prompts_per_step=3)
            )
        mp.setattr(supervised, "get_distributed", lambda flag: Two(None))  # the DPO and SFT trainers' base
        with pytest.raises(ValueError, match="at least the number of processes"):
            dpo_trainer.DPOTrainer(policy, tok, dist_worker.pairs(2), dpo_trainer.DPOConfig(batch_size=1))
        with pytest.raises(ValueError, match="at least the number of processes"):
            demos = datasets.Dataset.from_dict({"prompt": ["a"], "completion": ["b"]})
            sft.SFTTrainer(policy, tok, demos, sft.SFTConfig(batch_size=1))
        mp.setattr(rlhf_ppo, "get_distributed", lambda flag: Two(None))
        with pytest.raises(ValueError, match="must split into 2 processes"):
            cfg = rlhf_ppo.RLHFPPOConfig(batch_size=4, num_mini_batches=4)
            rlhf_ppo.RLHFPPOTrainer(policy, tok, lambda p, c: [0.0] * len(c), cfg)


def test_shutdown_without_a_process_group_is_a_no_op():
    """`shutdown` (what the command line calls last) must be safe on one process, where no group exists."""
    import torch.distributed as torch_dist

    from rlsurvey.distributed import shutdown

    assert not (torch_dist.is_available() and torch_dist.is_initialized())
    shutdown()
    shutdown(wait=False)
