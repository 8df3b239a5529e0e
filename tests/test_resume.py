"""Checkpoints and resume: a run stopped at step k and resumed equals the uninterrupted run, for every
trainer; checkpoints are written atomically and rotated; a NaN stops a run and keeps the last good
checkpoint; SIGTERM saves and stops."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import pytest
import torch

from rlsurvey.checkpoint import (
    MetricsFile,
    NonFiniteLossError,
    list_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from tests.conftest import tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["the film was ", "a ", "my day, in short: ", "ok"]
PAIRS = {
    "prompt": ["the film was", "a", "the food was good and", "it", "the plot", "we saw", "so", "then"],
    "chosen": [
        " great.",
        " fine film!",
        " cheap.",
        " works well",
        " was clever.",
        " a show",
        " good",
        " yes",
    ],
    "rejected": [" bad", " dull film.", " slow", " broke", " made no sense", " nothing?", " no", " ugh"],
}


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_run(full_hist, full_params, resumed_hist, resumed_params):
    assert len(full_hist) == len(resumed_hist)
    for a, b in zip(full_hist, resumed_hist):
        assert set(a) == set(b)
        for k in a:
            if isinstance(a[k], (int, float)) and not (isinstance(a[k], float) and math.isnan(a[k])):
                assert b[k] == pytest.approx(a[k], abs=1e-6, rel=1e-6), (k, a, b)
    for k, v in full_params.items():
        torch.testing.assert_close(resumed_params[k], v, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# The shared pieces
# ---------------------------------------------------------------------------------------------------------


def test_save_checkpoint_is_atomic_rotates_and_resolves_latest(tmp_path):
    def write(path):
        (path / "weights.txt").write_text("w")

    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, write, {"history": []}, total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    assert resolve_checkpoint("latest", tmp_path).name == "checkpoint-6"
    (tmp_path / "checkpoint-9").mkdir()  # a directory without trainer_state.json is not a checkpoint
    assert resolve_checkpoint("latest", tmp_path).name == "checkpoint-6"
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        resolve_checkpoint(tmp_path / "checkpoint-9", tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint("latest", tmp_path / "empty")

    def crash(path):
        (path / "weights.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 8, crash, {"history": []}, total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]


def test_metrics_file_flushes_each_row_and_drops_rows_after_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsFile(path)
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
        assert len(path.read_text().splitlines()) == step  # on disk at once, not when training ends
    log = MetricsFile(path, resume_step=3)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
    log.write({"step": 4, "loss": float("nan")})
    assert json.loads(path.read_text().splitlines()[-1]) == {"step": 4, "loss": None}


# ---------------------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------------------


def _dpo(out, **kw):
    from rlsurvey.algos.dpo_trainer import DPOConfig, DPOTrainer

    model, tok = tiny_causal_lm("llama", seed=5)
    kw = {
        "progress": False,
        "learning_rate": 1e-3,
        "batch_size": 3,
        "max_steps": 6,
        "output_dir": str(out),
        **kw,
    }
    cfg = DPOConfig(**kw)
    return DPOTrainer(model, tok, datasets.Dataset.from_dict(PAIRS), cfg)


def test_dpo_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full = _dpo(tmp_path / "full")
    full_hist = full.train()
    part = _dpo(tmp_path / "part", save_steps=2, save_total_limit=2)
    part.train(steps=3)  # interrupted after step 3: the newest checkpoint is step 2
    assert [p.name for p in list_checkpoints(tmp_path / "part")] == ["checkpoint-2"]
    resumed = _dpo(tmp_path / "part", save_steps=2, save_total_limit=2, resume_from_checkpoint="latest")
    hist = resumed.train()
    _assert_same_run(full_hist, _params(full.model), hist, _params(resumed.model))
    assert [p.name for p in list_checkpoints(tmp_path / "part")] == ["checkpoint-4", "checkpoint-6"]


def test_dpo_nan_loss_stops_and_keeps_the_last_finite_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = _dpo(tmp_path, save_steps=1, learning_rate=1e30)
    with pytest.raises(NonFiniteLossError, match=r"stopped at step \d+: (loss|grad_norm|parameter)"):
        trainer.train()
    kept = list_checkpoints(tmp_path)
    for ckpt in kept:
        model = AutoModelForCausalLM.from_pretrained(ckpt)
        assert all(torch.isfinite(p).all() for p in model.parameters()), ckpt
    assert len(kept) < 6, "the run went on after its loss stopped being finite"


# ---------------------------------------------------------------------------------------------------------
# Reward model
# ---------------------------------------------------------------------------------------------------------


def _reward(out, **kw):
    from rlsurvey.algos.rlhf_ppo import value_model_from_policy
    from rlsurvey.rewards import RewardModel, RewardTrainingConfig

    policy, tok = tiny_causal_lm("llama", seed=2)
    torch.manual_seed(0)
    rm = RewardModel(value_model_from_policy(policy, tok).model, tok)
    cfg = {
        "num_epochs": 3,
        "batch_size": 3,
        "learning_rate": 3e-3,
        "progress": False,
        "output_dir": str(out),
        **kw,
    }
    return rm, RewardTrainingConfig(**cfg)


def test_reward_model_resumed_run_equals_the_uninterrupted_one(tmp_path):
    from rlsurvey.rewards import train_reward_model

    data = datasets.Dataset.from_dict(PAIRS)  # 8 pairs, batch 3: 3 steps an epoch, the last one short
    rm, cfg = _reward(tmp_path / "full")
    full_hist = train_reward_model(rm, data, cfg)
    full_params = _params(rm)
    assert len(full_hist) == 9
    for stop_at in (4, 6):  # inside an epoch, and on an epoch's boundary
        out = tmp_path / f"part{stop_at}"
        rm, cfg = _reward(out, save_steps=1, num_epochs=3)

        def interrupt(row, stop_at=stop_at):
            if row["step"] == stop_at:
                raise KeyboardInterrupt  # a crash right after checkpoint-<stop_at - 1> was written

        with pytest.raises(KeyboardInterrupt):
            train_reward_model(rm, data, cfg, callback=interrupt)
        assert list_checkpoints(out)[-1].name == f"checkpoint-{stop_at - 1}"
        rm, cfg = _reward(out, save_steps=1, resume_from_checkpoint="latest")
        hist = train_reward_model(rm, data, cfg)
        _assert_same_run(full_hist, full_params, hist, _params(rm))


def test_reward_model_nan_loss_stops_before_the_update(tmp_path):
    from rlsurvey.rewards import train_reward_model

    rm, cfg = _reward(tmp_path, save_steps=1, learning_rate=1e30)
    with pytest.raises(NonFiniteLossError, match=r"stopped at step \d+"):
        train_reward_model(rm, datasets.Dataset.from_dict(PAIRS), cfg)
    assert list_checkpoints(tmp_path), "the steps before the NaN were saved"


# ---------------------------------------------------------------------------------------------------------
# GRPO and RLOO
# ---------------------------------------------------------------------------------------------------------


def _count_a(prompts, completions):
    return [float(c.count("a")) for c in completions]


@pytest.mark.parametrize("preset", ["grpo", "rloo"])
def test_grpo_and_rloo_resumed_runs_equal_the_uninterrupted_ones(tmp_path, preset):
    from rlsurvey.algos.grpo import GRPOConfig, train_grpo
    from rlsurvey.algos.rloo import rloo_config

    def run(out, reward=_count_a, **kw):
        policy, tok = tiny_causal_lm("llama", seed=1)
        base = GRPOConfig() if preset == "grpo" else rloo_config()
        fields = {"steps": 6, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 5,
                  "learning_rate": 3e-3, "progress": False, "output_dir": str(out), "epochs_per_rollout": 2,
                  "mini_batch_size": 4, "kl_coef": 0.05, **kw}  # fmt: skip
        cfg = base.__class__(**{**base.__dict__, **fields})
        return policy, train_grpo(policy, tok, PROMPTS, reward, cfg)

    def crash(prompts, completions, calls=[0]):  # noqa: B006 (a call counter)
        calls[0] += 1
        if calls[0] == 5:  # killed in the fifth rollout: checkpoint-4 is the newest
            raise KeyboardInterrupt
        return _count_a(prompts, completions)

    policy, full_hist = run(tmp_path / "full")
    full_params = _params(policy)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part", crash, save_steps=2, save_total_limit=1)
    assert [p.name for p in list_checkpoints(tmp_path / "part")] == ["checkpoint-4"]
    policy, hist = run(tmp_path / "part", save_steps=2, resume_from_checkpoint="latest")
    _assert_same_run(full_hist, full_params, hist, _params(policy))


# ---------------------------------------------------------------------------------------------------------
# PPO
# ---------------------------------------------------------------------------------------------------------


def _ppo(out, **kw):
    from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig, RLHFPPOTrainer

    policy, tok = tiny_causal_lm("llama", seed=1)
    cfg = {"steps": 5, "batch_size": 8, "num_mini_batches": 2, "epochs_per_rollout": 2, "max_new_tokens": 6,
           "progress": False, "seed": 3, "kl_target": 0.05, "output_dir": str(out), **kw}  # fmt: skip
    return RLHFPPOTrainer(policy, tok, _count_a, RLHFPPOConfig(**cfg))


def test_ppo_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full = _ppo(tmp_path / "full")
    full_hist = full.train(PROMPTS)
    full_params = {**_params(full.policy), **{f"v.{k}": v for k, v in _params(full.value_model).items()}}

    def crash(trainer, row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _ppo(tmp_path / "part", save_steps=1, save_total_limit=2).train(PROMPTS, callback=crash)
    assert [p.name for p in list_checkpoints(tmp_path / "part")] == ["checkpoint-2", "checkpoint-3"]
    resumed = _ppo(tmp_path / "part", save_steps=1, save_total_limit=2, resume_from_checkpoint="latest")
    hist = resumed.train(PROMPTS)
    params = {**_params(resumed.policy), **{f"v.{k}": v for k, v in _params(resumed.value_model).items()}}
    _assert_same_run(full_hist, full_params, hist, params)
    assert resumed.kl_ctl.value == pytest.approx(full.kl_ctl.value, rel=1e-9)  # the adaptive β came back


# ---------------------------------------------------------------------------------------------------------
# The command line: output directories, kills, signals, NaN, trackers
# ---------------------------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "rlsurvey", "train"]
SMALL = ["--num-examples", "24", "--batch-size", "4", "--no-progress"]


def _snapshot(path: Path) -> dict:
    return {
        p.relative_to(path): (p.stat().st_mtime_ns, p.read_bytes()) for p in path.rglob("*") if p.is_file()
    }


def _cli(args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, **kw)


def _dpo_cli(out, *extra) -> int:
    from rlsurvey.cli import main

    return main(["train", "dpo", "--output-dir", str(out), *SMALL, *extra])


def test_a_second_run_into_the_same_output_dir_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    _dpo_cli(out, "--max-steps", "2", "--save-steps", "1")
    before = _snapshot(out)
    done = _cli(["dpo", "--output-dir", str(out), *SMALL, "--max-steps", "2"])
    assert done.returncode != 0
    assert "holds another run's outputs" in done.stderr and "--overwrite-output-dir" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no traceback
    assert _snapshot(out) == before
    _dpo_cli(out, "--max-steps", "1", "--overwrite-output-dir")
    assert not list_checkpoints(out), "the replaced run's checkpoints are gone (never resumed by mistake)"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


KILL_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import rlsurvey.checkpoint as ck
    real = ck.save_checkpoint

    def dying(output_dir, step, write, *args, **kwargs):
        if step == 3:  # killed half-way through writing checkpoint-3: the weights are on disk, the rest not
            def half(tmp):
                write(tmp)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(output_dir, step, half, *args, **kwargs)
        return real(output_dir, step, write, *args, **kwargs)

    import rlsurvey.algos.supervised as loop  # the DPO trainer's checkpoints are written by its base class
    loop.save_checkpoint = dying
    from rlsurvey.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_run_killed_while_writing_a_checkpoint_leaves_the_previous_one_resumable(tmp_path):
    from safetensors.torch import load_file

    full, out = tmp_path / "full", tmp_path / "killed"
    _dpo_cli(full, "--max-steps", "5")
    args = ["train", "dpo", "--output-dir", str(out), *SMALL, "--max-steps", "5", "--save-steps", "1"]
    done = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    assert any(p.name.startswith(".tmp-checkpoint-3") for p in out.iterdir()), "the kill hit the write"
    _dpo_cli(out, "--max-steps", "5", "--save-steps", "1", "--resume-from-checkpoint", "latest")
    want = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    _assert_same_run(want, {}, got, {})
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    args = ["grpo", "--output-dir", str(out), "--steps", "200", "--prompts-per-step", "4",
            "--group-size", "4", "--max-new-tokens", "4", "--num-examples", "64",
            "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "SIGTERM at step" in err
    saved = list_checkpoints(out)
    assert saved, "a checkpoint was written on the way out"
    step = int(saved[-1].name.split("-")[1])
    assert 2 <= step < 200
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert rows[-1]["step"] == step, "every finished step's metrics were flushed before the exit"


def test_a_nan_loss_stops_the_cli_run_keeping_finite_checkpoints(tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    done = _cli(["dpo", "--output-dir", str(out), *SMALL, "--learning-rate", "1e30", "--max-steps", "4",
                 "--logging-steps", "4", "--save-steps", "1"])  # fmt: skip
    assert done.returncode != 0
    assert re.search(r"stopped at step \d: (loss|grad_norm|parameter)", done.stderr), done.stderr[-2000:]
    assert not (out / "model.safetensors").exists(), "no final model from a run that diverged"
    for ckpt in list_checkpoints(out):
        model = AutoModelForCausalLM.from_pretrained(ckpt)
        assert all(torch.isfinite(p).all() for p in model.parameters()), ckpt


class _FakeTracker:
    rows: list = []

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def log(self, numbers, step):
        self.rows.append((step, numbers))

    def close(self):
        self.rows.append("closed")


def test_report_to_sends_every_logged_row_to_the_trackers(tmp_path, monkeypatch):
    import rlsurvey.checkpoint as ck

    monkeypatch.setattr(ck, "_installed", lambda name: name == "trackio")
    monkeypatch.setattr(ck, "_Trackio", _FakeTracker)
    _FakeTracker.rows = []
    log = MetricsFile(tmp_path / "metrics.jsonl", report_to=["all"])
    for step in (1, 2):
        log.write({"step": step, "loss": 0.5 / step, "name": "text is not a metric"})
    log.close()
    assert _FakeTracker.rows == [(1, {"loss": 0.5}), (2, {"loss": 0.25}), "closed"]
    with pytest.raises(ValueError, match="tensorboard is not installed"):
        MetricsFile(tmp_path / "m2.jsonl", report_to=["tensorboard"])
    with pytest.raises(ValueError, match="'wandb' is not one of"):
        MetricsFile(tmp_path / "m3.jsonl", report_to=["wandb"])
    assert MetricsFile(tmp_path / "m4.jsonl", report_to=["none"]).trackers == []


def test_the_command_line_keeps_the_newest_three_checkpoints_by_default(tmp_path):
    out = tmp_path / "run"
    _dpo_cli(out, "--max-steps", "6", "--save-steps", "1")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-4", "checkpoint-5", "checkpoint-6"]
    _dpo_cli(
        out, "--max-steps", "2", "--save-steps", "1", "--save-total-limit", "none", "--overwrite-output-dir"
    )
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
