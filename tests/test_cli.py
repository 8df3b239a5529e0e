"""`rlsurvey train {sft,reward,ppo,rloo,dpo,grpo}` end to end on the shipped models, a few tiny steps
each, and `rlsurvey data`; the outputs load in plain transformers."""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlsurvey.algos.dpo_trainer import DPOConfig
from rlsurvey.algos.grpo import GRPOConfig
from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig
from rlsurvey.algos.rloo import RLOO_DEFAULTS
from rlsurvey.algos.sft import SFTConfig
from rlsurvey.assets import model_path
from rlsurvey.cli import BOUND, main
from rlsurvey.config_args import option_name
from rlsurvey.rewards.bradley_terry import RewardTrainingConfig

CONFIGS = {
    "sft": SFTConfig,
    "reward": RewardTrainingConfig,
    "ppo": RLHFPPOConfig,
    "rloo": GRPOConfig,
    "dpo": DPOConfig,
    "grpo": GRPOConfig,
}
TINY = {
    "sft": "--num-examples 12 --batch-size 4 --max-steps 3",
    "reward": "--num-examples 12 --batch-size 4 --num-epochs 1",
    "dpo": "--num-examples 12 --batch-size 4 --max-steps 2",
    "ppo": "--num-examples 8 --batch-size 4 --num-mini-batches 2 --epochs-per-rollout 1 --steps 2 "
    "--max-new-tokens 6",
    "rloo": "--num-examples 8 --prompts-per-step 2 --group-size 2 --steps 2 --max-new-tokens 6",
    "grpo": "--num-examples 8 --prompts-per-step 2 --group-size 3 --steps 3 --max-new-tokens 4",
}
STEPS = {"sft": 3, "reward": 3, "dpo": 2, "ppo": 2, "rloo": 2, "grpo": 3}


def _run(argv: list[str]) -> int:
    return main([str(a) for a in argv])


def _train(name: str, out: Path, *extra) -> Path:
    assert _run(["train", name, *TINY[name].split(), "--no-progress", "--output-dir", out, *extra]) == 0
    return out


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        _run([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_help_documents_every_config_field(capsys, name):
    text = _help(capsys, "train", name)
    for f in dataclasses.fields(CONFIGS[name]):
        if f.name in BOUND:  # set by a common option whose help names the field
            assert BOUND[f.name] in text and f.name in text.replace("\n", " ")
        else:
            assert option_name(f.name) in text, f"{name}: {f.name} has no option"
    for common in ("--model", "--dataset", "--output-dir", "--seed"):
        assert common in text
    assert ("--reward" in text) == (name in ("ppo", "rloo", "grpo"))


def test_rloo_options_default_to_the_rloo_preset(capsys):
    text = " ".join(_help(capsys, "train", "rloo").split())
    assert "--kl-in-reward | --no-kl-in-reward" in text
    assert f"[int; default: {RLOO_DEFAULTS['group_size']}]" in text
    assert "default: constant" in text  # the aggregation of the preset, not GRPO's sequence_mean


def test_reward_then_ppo_on_the_learned_reward(tmp_path):
    rm = _train("reward", tmp_path / "rm")
    rows = _metrics(rm)
    assert [r["step"] for r in rows] == [1, 2, 3] and all("accuracy" in r for r in rows)
    seq = AutoModelForSequenceClassification.from_pretrained(rm)
    assert seq.config.num_labels == 1
    saved = json.loads((rm / "train_config.json").read_text())
    assert saved["config"]["batch_size"] == 4 and saved["model"] == "reviews-base"

    ppo = _train("ppo", tmp_path / "ppo", "--reward", rm)
    rows = _metrics(ppo)
    assert [r["step"] for r in rows] == [1, 2]
    assert all("objective/gold" in r and "objective/kl" in r for r in rows)  # gold logged beside the RM
    policy = AutoModelForCausalLM.from_pretrained(ppo)
    assert AutoModelForSequenceClassification.from_pretrained(ppo / "value").config.num_labels == 1
    base = AutoModelForCausalLM.from_pretrained(Path(__file__).parents[1] / "rlsurvey/assets/reviews-base")
    changed = any(not torch.equal(a, b) for a, b in zip(policy.parameters(), base.parameters()))
    assert changed, "PPO did not change the policy"
    assert not (ppo / "checkpoint-2").exists()  # no intermediate saves asked for


@pytest.mark.parametrize("name", ["sft", "dpo", "rloo", "grpo"])
def test_each_trainer_writes_a_checkpoint_and_its_metrics(tmp_path, name):
    out = _train(name, tmp_path / name, "--seed", "1")
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS[name] + 1))
    key = {"dpo": "rewards/margins", "sft": "loss"}.get(name, "reward")
    assert all(key in r for r in rows)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size > 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["seed"] == 1 and saved["config"]["seed"] == 1 and saved["steps"] == STEPS[name]
    if name == "rloo":
        assert saved["config"]["advantage"] == "rloo" and saved["config"]["kl_in_reward"] is True
    if name == "grpo":
        assert saved["reward"] == "verifier" and saved["model"] == "arith-base"
    if name == "sft":  # the reasoning world's worked solutions, learned by reason-base
        assert saved["model"] == "reason-base" and saved["world"] == "reasoning"
        assert rows[-1]["loss"] < rows[0]["loss"]


def test_sft_learns_worked_solutions_and_reads_every_data_format(tmp_path):
    """SFT on 200 worked solutions makes reason-base reason on most prompts (it does on about a quarter);
    the data command's demonstrations, in both formats, feed it."""
    from rlsurvey.lm import load_model
    from rlsurvey.rewards.verifiable import evaluate_reasoning
    from rlsurvey.tasks import reasoning

    out = tmp_path / "sft"
    argv = ["train", "sft", "--num-examples", "200", "--num-epochs", "2", "--learning-rate", "1e-3",
            "--no-progress", "--output-dir", out]  # fmt: skip
    assert _run(argv) == 0
    prompts = reasoning.sample_prompts(100, seed=77)
    share = {}
    for name, path in (("base", model_path("reason-base")), ("sft", out)):
        model, tok = load_model(path)
        share[name] = evaluate_reasoning(model, tok, prompts, n=2, seed=1)["reasoning_share"]
    assert share["base"] < 0.4 and share["sft"] > 0.7, share
    for conversational in ([], ["--conversational"]):
        demos = tmp_path / f"demos{len(conversational)}.jsonl"
        assert _run(["data", demos, "--world", "reasoning", "--type", "sft", "-n", "6", *conversational]) == 0
        row = json.loads(demos.read_text().splitlines()[0])
        assert (
            reasoning.accuracy_reward(
                [row["prompt"] if not conversational else row["prompt"][0]["content"]],
                [row["completion"] if not conversational else row["completion"][0]["content"]],
            )[0]
            == 1.0
        )
        done = _train("sft", tmp_path / f"from{len(conversational)}", "--dataset", demos, "--max-steps", "1")
        assert len(_metrics(done)) == 1


def test_data_command_feeds_dpo_and_grpo(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    assert _run(["data", pairs, "--type", "preference", "--conversational", "-n", "8"]) == 0
    first = json.loads(pairs.read_text().splitlines()[0])
    assert first["chosen"][0]["role"] == "assistant"
    out = _train("dpo", tmp_path / "dpo", "--dataset", pairs)
    assert len(_metrics(out)) == 2
    prompts = tmp_path / "prompts.parquet"
    assert _run(["data", prompts, "--world", "arithmetic", "--type", "prompt", "-n", "5"]) == 0
    out = _train("grpo", tmp_path / "grpo", "--dataset", prompts)
    assert json.loads((out / "train_config.json").read_text())["dataset"] == str(prompts)


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # what accelerate launch / torchrun set in a second process
    _train("grpo", tmp_path / "rank1")
    assert not (tmp_path / "rank1").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "grpo", "--reward", "gold"], "reviews world's reward"),
        (["train", "ppo", "--reward", "verifier"], "answers of the arithmetic or reasoning world"),
        (["train", "ppo", "--reward", "no/such/dir"], "reward-model directory"),
        (["train", "ppo", "--batch-size", "4", "--num-mini-batches", "3"], "num_mini_batches must divide"),
        (["train", "reward", "--world", "arithmetic"], "no preference pairs"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        _run([*argv, "--output-dir", tmp_path / "x", "--num-examples", "4", "--no-progress"])


def test_choices_are_checked_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _run(["train", "ppo", "--kl-estimator", "k2", "--output-dir", tmp_path])
    assert "--kl-estimator" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli(tmp_path, monkeypatch, capsys):
    out = tmp_path / "p.jsonl"
    monkeypatch.setattr(sys, "argv", ["rlsurvey", "data", str(out), "--type", "prompt", "-n", "3"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("rlsurvey", run_name="__main__")
    assert exc.value.code == 0 and len(out.read_text().splitlines()) == 3
    assert "wrote 3 prompt rows" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_launch_on_two_processes_equals_one(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m rlsurvey train dpo ...` on a machine without a GPU
    (two CPU processes, gloo) trains the same weights as the same command on one process: the batch is
    global, so each process takes half of it. (Accelerate's `--cpu` flag would start a single process.)"""
    pytest.importorskip("accelerate")
    args = [*TINY["dpo"].split(), "--no-progress", "--seed", "3"]
    one = _train("dpo", tmp_path / "one", "--seed", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if torch.cuda.is_available():
        pytest.skip("checks two CPU processes; with a GPU, --multi_gpu would use it")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port()), "-m", "rlsurvey", "train", "dpo"]
    two = tmp_path / "two"
    run = subprocess.run(
        [*launch, *args, "--output-dir", str(two)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["step"] for r in _metrics(two)] == [1, 2]  # one metrics file, written by the main process
    assert json.loads((two / "train_config.json").read_text())["processes"] == 2
    assert json.loads((one / "train_config.json").read_text())["processes"] == 1
    a = AutoModelForCausalLM.from_pretrained(one).state_dict()
    b = AutoModelForCausalLM.from_pretrained(two).state_dict()
    assert a.keys() == b.keys()
    for name in a:  # two halves of each batch, gradients averaged by DDP: measured 8e-8 at most
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=name)
    moved = AutoModelForCausalLM.from_pretrained(model_path("reviews-base")).state_dict()
    assert any(not torch.equal(moved[k], a[k]) for k in a)  # the run trained something


def test_data_command_writes_the_tools_worlds_prompts(tmp_path):
    from rlsurvey.tasks import tools

    out = tmp_path / "tool_prompts.jsonl"
    assert _run(["data", out, "--world", "tools", "--type", "prompt", "-n", "4", "--seed", "5"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == tools.sample_prompts(4, 5)
    bad = tmp_path / "tool_sft.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["data", str(bad), "--world", "tools", "--type", "sft", "-n", "4"])
    assert "calculator's observations" in str(exc.value.code) and not bad.exists()
