"""The reasoning world: problems, worked solutions, the strict verifier and the pretraining corpus."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsurvey.tasks import reasoning as rw


def _value_by_signed_terms(prompt: str) -> int:
    """The brute-force twin of `answer`: the sum of the signed terms."""
    return sum(int(t) for t in re.findall(r"[+-]?[0-9]+", prompt[:-1]))


def test_problems_are_deterministic_non_negative_and_match_the_brute_force_value():
    a, b = rw.sample_problems(500, seed=3), rw.sample_problems(500, seed=3)
    assert a == b and a != rw.sample_problems(500, seed=4)
    lengths = set()
    for prompt, value in a:
        assert value == rw.answer(prompt) == _value_by_signed_terms(prompt) >= 0
        terms = re.findall(r"[0-9]", prompt)
        lengths.add(len(terms))
        running = 0
        for t in re.findall(r"[+-]?[0-9]", prompt[:-1]):
            running += int(t)
            assert running >= 0, prompt  # no running total below zero
    assert lengths == {3, 4, 5}  # the default chain lengths all occur
    assert {len(re.findall("[0-9]", p)) for p in rw.sample_prompts(200, min_operands=4, max_operands=4)} == {
        4
    }


@given(st.integers(0, 10_000))
def test_the_worked_solution_is_right_well_formed_and_one_step_per_operator(seed):
    prompt, value = rw.sample_problems(1, seed=seed)[0]
    sol = rw.worked_solution(prompt)
    parsed = rw.parse(sol)
    assert parsed.answer == value and parsed.think is not None
    assert len(parsed.steps) == prompt.count("+") + prompt.count("-")
    for step in parsed.steps:  # every step is a true equation
        lhs, rhs = step.split("=")
        assert _value_by_signed_terms(lhs + "=") == int(rhs)
    assert rw.accuracy_reward([prompt], [sol])[0] == 1.0 and rw.format_reward([prompt], [sol])[0] == 1.0


PROMPT = "3+8-5+9="  # 15


@pytest.mark.parametrize(
    "response, accuracy, fmt",
    [
        ("15", 1, 0),  # a right direct answer: accurate, but no reasoning
        (" 15\n", 1, 0),  # surrounding whitespace (an EOS) is not text
        ("[3+8=11;11-5=6;6+9=15]15", 1, 1),
        ("[3+8=11;11-5=6;6+9=14]15", 1, 1),  # a wrong step: the layout is right, the answer too
        ("[3+8=11;11-5=6;6+9=15]14", 0, 1),  # a wrong final answer in the right layout
        ("14", 0, 0),
        ("15 15", 0, 0),  # two answers
        ("1515", 0, 0),  # two answers run together read as another number
        ("[3+8=11;11-5=6;6+9=15]", 0, 0),  # the answer only inside the reasoning
        ("15[3+8=11;11-5=6;6+9=15]", 0, 0),  # the answer before the reasoning
        ("[3+8=11;11-5=6;6+9=15]15[]15", 0, 0),  # a second block and a second answer
        ("[3+8=11;11-5=6;6+9=15]15 because", 0, 0),  # extra text
        ("the answer is 15", 0, 0),
        ("015", 0, 0),  # a leading zero
        ("[3+8=11;11-5=6;6+9=15]015", 0, 0),
        ("-15", 0, 0),  # a sign where none belongs
        ("+15", 0, 0),
        ("[3+8=11;11-5=6;6+9=15]-15", 0, 0),
        ("15.0", 0, 0),
        ("[3+8=11;11-5=6;6+9=15", 0, 0),  # the reasoning never closed
        ("[thinking hard]15", 1, 0),  # reasoning, but not in steps: accurate, not the format
        ("[]15", 1, 0),  # an empty block
        ("", 0, 0),
    ],
)
def test_the_strict_verifier_on_right_and_malformed_responses(response, accuracy, fmt):
    assert rw.accuracy_reward([PROMPT], [response])[0] == accuracy
    assert rw.format_reward([PROMPT], [response])[0] == fmt


def test_reasons_is_about_the_block_not_its_correctness():
    assert rw.reasons("[3+8=11]4") and rw.reasons("[3+8=11;11-5=6;6+9=15]15") and rw.reasons("[x]")
    assert not rw.reasons("15") and not rw.reasons("15[3+8=11]")


def test_corpus_is_deterministic_and_mixes_worked_and_wrong_answers_at_the_asked_rates():
    lines = rw.make_corpus(4000, seed=5, worked_fraction=0.3, wrong_fraction=0.6)
    assert lines == rw.make_corpus(4000, seed=5, worked_fraction=0.3, wrong_fraction=0.6)
    assert lines != rw.make_corpus(4000, seed=6, worked_fraction=0.3, wrong_fraction=0.6)
    prompts = [line[: line.index("=") + 1] for line in lines]
    responses = [line[line.index("=") + 1 :] for line in lines]
    worked = np.array([rw.reasons(r) for r in responses])
    right = rw.accuracy_reward(prompts, responses)
    n = len(lines)
    assert abs(worked.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)  # the asked rate within 4 SE
    assert right[worked].min() == 1.0  # worked solutions are always right
    direct_right = right[~worked].mean()
    assert abs(direct_right - 0.4) < 4 * np.sqrt(0.4 * 0.6 / (~worked).sum())
    assert all(rw.parse(r).answer is not None for r in responses)  # every line is well formed
    assert rw.format_reward(prompts, responses)[worked].min() == 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="min_operands"):
        rw.ReasoningConfig(min_operands=1)
    with pytest.raises(ValueError, match="must not exceed"):
        rw.ReasoningConfig(min_operands=5, max_operands=3)
    with pytest.raises(ValueError, match="ops"):
        rw.ReasoningConfig(ops=("*",))
    with pytest.raises(ValueError, match="worked_fraction"):
        rw.make_corpus(10, worked_fraction=1.5)
    with pytest.raises(ValueError, match="prompt must be"):
        rw.answer("37+58=")  # two-digit operands are not this world's
    with pytest.raises(ValueError, match="n must be"):
        rw.sample_prompts(0)
    with pytest.raises(ValueError, match="same length"):
        rw.accuracy_reward([PROMPT], ["15", "15"])
    with pytest.raises(TypeError, match="completion must be a str"):
        rw.parse(15)


def test_grpo_on_the_reasoning_world_runs_from_the_command_line(tmp_path):
    """`rlsurvey train grpo --world reasoning` trains the shipped reason-base on the strict verifier."""
    from rlsurvey.cli import main

    out = tmp_path / "grpo"
    args = ["train", "grpo", "--world", "reasoning", "--output-dir", str(out), "--steps", "2",
            "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "48",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "train_config.json").read_text())
    assert record["model"] == "reason-base" and record["reward"] == "verifier"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(0 <= r["reward"] <= 1 for r in rows)
    assert (out / "model.safetensors").is_file()


def test_the_data_command_writes_reasoning_prompts_and_refuses_pairs(tmp_path):
    from rlsurvey.cli import main
    from rlsurvey.interop import world_dataset

    assert (
        main(["data", "--world", "reasoning", "--type", "prompt", "-n", "5", str(tmp_path / "p.jsonl")]) == 0
    )
    prompts = [json.loads(x)["prompt"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert prompts == rw.sample_prompts(5, seed=0)
    with pytest.raises(ValueError, match="reasoning world has prompts and a verifier"):
        world_dataset("reasoning", "preference", 5)
