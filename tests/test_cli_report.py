"""rlsurvey.cli_report: the held-out report of `rlsurvey eval` and of the end of `rlsurvey train`."""

import argparse
import json

import pytest

from rlsurvey import cli_report
from rlsurvey.assets import model_path


def _eval_args(**kw):
    base = {"model": ["arith-base"], "world": "arithmetic", "reference": None, "num_examples": 64,
            "max_new_tokens": None, "seed": 0, "json": None, "device": "cpu",
            "trust_remote_code": False}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_checkpoint_kind(tmp_path):
    assert cli_report.checkpoint_kind("reviews-base") == "policy"
    assert cli_report.checkpoint_kind(model_path("reviews-base")) == "policy"
    cases = (("LlamaForSequenceClassification", "reward"), ("LlamaForTokenClassification", "step-reward"),
             ("LlamaForCausalLM", "policy"))  # fmt: skip
    for arch, kind in cases:
        (tmp_path / "config.json").write_text(json.dumps({"architectures": [arch]}))
        assert cli_report.checkpoint_kind(tmp_path) == kind


def test_eval_of_two_checkpoints_side_by_side(tmp_path, capsys):
    """The same model twice: the same prompts and the same sampling seed, so the paired change is exactly 0;
    its KL to itself is 0, and the JSON holds the table's figures."""
    out = tmp_path / "eval.json"
    result = cli_report.run_eval(
        _eval_args(model=["arith-base", str(model_path("arith-base"))], json=str(out))
    )
    text = capsys.readouterr().out
    assert "verifier accuracy" in text.splitlines()[0] and "minus arith-base: +0.000 ± 0.000" in text
    a, b = result["reports"].values()
    assert a["mean"] == b["mean"] and a["kl"] == pytest.approx(0.0, abs=1e-6) and a["n"] == 64
    saved = json.loads(out.read_text())
    assert (
        saved["reports"]["arith-base"]["mean"] == a["mean"] and "values" not in saved["reports"]["arith-base"]
    )


def test_eval_refuses_what_it_cannot_score(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(SystemExit, match="reviews"):
        cli_report.run_eval(_eval_args(model=[str(tmp_path)]))
    with pytest.raises(SystemExit, match="mixes"):
        cli_report.run_eval(_eval_args(model=[str(tmp_path), "reviews-base"], world="reviews"))
    with pytest.raises(SystemExit, match="at least 2"):
        cli_report.run_eval(_eval_args(num_examples=1))
    with pytest.raises(SystemExit, match="positive"):
        cli_report.run_eval(_eval_args(max_new_tokens=0))


def _train_argv(name, out, *extra):
    tiny = {"dpo": ["--num-examples", "12", "--batch-size", "4", "--max-steps", "2"],
            "reward": ["--num-examples", "12", "--batch-size", "4", "--num-epochs", "1"],
            "grpo": ["--num-examples", "8", "--prompts-per-step", "2", "--group-size", "3", "--steps", "2",
                     "--max-new-tokens", "4"]}[name]  # fmt: skip
    return ["train", name, *tiny, "--no-progress", "--output-dir", str(out), *extra]


def test_a_train_run_ends_with_its_held_out_report(tmp_path, capsys):
    from rlsurvey.cli import main

    assert main(_train_argv("grpo", tmp_path / "g")) == 0
    text = capsys.readouterr().out
    assert "held-out report (16 prompts never trained on" in text and "change in verifier accuracy" in text
    results = json.loads((tmp_path / "g" / "results.json").read_text())
    start, trained = results["reports"]["start"], results["reports"]["trained"]
    assert start["metric"] == "verifier accuracy" and start["n"] == trained["n"] == 16
    assert start["kl"] == pytest.approx(0.0, abs=1e-6) and results["max_new_tokens"] == 4
    assert results["change"]["change"] == pytest.approx(trained["mean"] - start["mean"])

    assert main(_train_argv("reward", tmp_path / "r")) == 0
    assert "above the coin flip" in capsys.readouterr().out
    rm = json.loads((tmp_path / "r" / "results.json").read_text())["reports"]["trained"]
    assert rm["metric"] == "pair accuracy against gold" and 0 <= rm["mean"] <= 1

    assert main(_train_argv("dpo", tmp_path / "d", "--no-report")) == 0
    assert "held-out report" not in capsys.readouterr().out and not (tmp_path / "d" / "results.json").exists()


def test_generated_training_data_leaves_the_held_out_prompts_out(tmp_path):
    from rlsurvey import cli
    from rlsurvey.evaluation import is_heldout

    for name, world in (
        ("dpo", "reviews"),
        ("sft", "reasoning"),
        ("grpo", "arithmetic"),
        ("rloo", "reviews"),
    ):
        args = cli.build_parser().parse_args(["train", name, "--output-dir", str(tmp_path), "--world", world])
        args.num_examples = 400
        if name == "dpo":
            prompts = cli._preferences(args, None)["prompt"]
        elif name == "sft":
            prompts = cli._demonstrations(args)["prompt"]
        else:
            from rlsurvey.lm import load_model

            prompts = cli._prompts(args, load_model(cli._model_name(args))[1])
        assert len(prompts) == 400 and not any(is_heldout(p) for p in prompts), name


def test_a_default_run_piped_to_a_file_writes_under_10_kb(tmp_path):
    """The README's `rlsurvey train dpo --output-dir runs/dpo`, its stdout and stderr sent to a file."""
    import os
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    with log.open("w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "rlsurvey", "train", "dpo", "--output-dir", str(tmp_path / "dpo")],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2"},
            timeout=600,
        )  # fmt: skip
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert len(text.encode()) < 10_000 and "\r" not in text, text
    assert "held-out report (512 prompts" in text and "change in gold reward" in text


def test_a_step_reward_model_is_reported_against_the_exact_labels(tmp_path, capsys):
    """`rlsurvey train prm` ends with its step AUROC on held-out prompts (an ORM: its answer AUROC), and its
    training prompts leave the held-out ones out."""
    from rlsurvey.cli import main

    argv = ["train", "prm", "--num-examples", "32", "--max-steps", "2", "--batch-size", "8", "--no-progress"]
    assert main([*argv, "--output-dir", str(tmp_path / "prm")]) == 0
    assert "step AUROC against exact labels" in capsys.readouterr().out
    results = json.loads((tmp_path / "prm" / "results.json").read_text())
    trained = results["reports"]["trained"]
    assert trained["n"] == 24 and trained["steps"] > 24 and 0 <= trained["mean"] <= 1
    assert results["change"]["change"] == pytest.approx(trained["mean"] - 0.5)
    assert main([*argv, "--kind", "orm", "--output-dir", str(tmp_path / "orm")]) == 0
    orm = json.loads((tmp_path / "orm" / "results.json").read_text())["reports"]["trained"]
    assert orm["metric"] == "answer AUROC against exact labels"
