"""`rlsurvey train grpo --tool calculator`: multi-turn GRPO with the calculator from the command line, end to
end on a tiny random model whose vocabulary holds the call syntax, and its refusals."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from rlsurvey.cli import main
from rlsurvey.lm.models import random_causal_lm
from rlsurvey.lm.tokenizer import train_char_tokenizer

ALPHABET = "0123456789+-*/()<>{} error:abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory):
    tok = train_char_tokenizer([ALPHABET])
    model = random_causal_lm("llama", len(tok), tok.pad_token_id, tok.eos_token_id, seed=0)
    path = tmp_path_factory.mktemp("tool-lm")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_train_grpo_with_the_calculator(tool_model, tmp_path, monkeypatch):
    from rlsurvey.algos import multiturn

    seen = []
    real = multiturn.collect_episodes

    def spy(*args, **kw):
        roll = real(*args, **kw)
        seen.append((kw["env"].max_turns, roll.action_mask is not None, roll.gen.response_mask.shape[1]))
        return roll

    monkeypatch.setattr(multiturn, "collect_episodes", spy)
    out = tmp_path / "agent"
    argv = ["train", "grpo", "--tool", "calculator", "--max-turns", "2", "--model", tool_model,
            "--num-examples", "8", "--prompts-per-step", "2", "--group-size", "3", "--steps", "2",
            "--max-new-tokens", "16", "--temperature", "1.5", "--no-progress", "--no-report",
            "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert len(seen) == 2 and all(t == 2 and masked and width <= 16 for t, masked, width in seen)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("entropy" in r and "loss" in r for r in rows)
    record = json.loads((out / "train_config.json").read_text())
    assert record["tool"] == "calculator" and record["max_turns"] == 2
    assert record["reward"] == "verifier (tools)"
    AutoModelForCausalLM.from_pretrained(out)


def test_the_tool_option_is_refused_without_turns(tool_model, tmp_path, capsys):
    argv = ["train", "grpo", "--tool", "calculator", "--num-examples", "8", "--steps", "1", "--no-progress",
            "--output-dir", tmp_path / "x", "--max-turns", "0", "--model", tool_model]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert "--max-turns >= 1" in str(exc.value.code) + capsys.readouterr().err


def test_the_shipped_agent_trains_by_default_and_ends_with_its_held_out_report(tmp_path, monkeypatch):
    """No --model: tool-base on the tools world, the episode budget of the tools world unless given, and the
    held-out report of episodes with the calculator (prompts never trained on)."""
    import rlsurvey.cli as cli
    from rlsurvey.algos import multiturn

    seen, turns = {}, []
    real, real_collect = cli.train_report, multiturn.collect_episodes

    def spy(args, out, device, max_new_tokens=None):
        seen.update(world=args.world, tokens=max_new_tokens)
        return real(args, out, device, max_new_tokens)

    def spy_collect(*args, **kw):
        turns.append(kw["env"].max_turns)
        return real_collect(*args, **kw)

    monkeypatch.setattr(cli, "train_report", spy)
    monkeypatch.setattr(multiturn, "collect_episodes", spy_collect)
    out = tmp_path / "agent"
    argv = ["train", "grpo", "--tool", "calculator", "--num-examples", "16", "--prompts-per-step", "2",
            "--group-size", "2", "--steps", "1", "--max-turns", "2", "--no-progress",
            "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert turns == [2, 2, 2]  # the training rollout, then the report's start and trained policies
    record = json.loads((out / "train_config.json").read_text())
    assert record["model"] == "tool-base" and record["world"] == "tools"
    assert record["config"]["max_new_tokens"] == cli.DEFAULT_MAX_NEW_TOKENS["tools"] == seen["tokens"]
    results = json.loads((out / "results.json").read_text())
    assert seen["world"] == "tools" and results["reports"]["start"]["world"] == "tools"
    assert results["reports"]["trained"]["metric"] == "verifier accuracy"
    out2 = tmp_path / "agent16"
    argv = [str(a) for a in argv[:-1]] + [str(out2), "--max-new-tokens", "16"]
    assert main(argv) == 0
    assert json.loads((out2 / "train_config.json").read_text())["config"]["max_new_tokens"] == 16
