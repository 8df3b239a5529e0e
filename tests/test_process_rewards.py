"""Step labels of the reasoning world, the step reward models (PRM and ORM), Math-Shepherd's rollouts, the
process advantages of GRPO, and `rlsurvey train prm` (chapter 15)."""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForTokenClassification

from rlsurvey.algos.advantages import process_advantages
from rlsurvey.algos.grpo import GRPOConfig, train_grpo
from rlsurvey.assets import model_path
from rlsurvey.lm import load_model
from rlsurvey.rewards import process as P
from rlsurvey.tasks import reasoning as R

PROMPT = "3+8-5="  # worked solution [3+8=11;11-5=6]6


# --- step labels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "steps", "correct", "every", "right"),
    [
        ("[3+8=11;11-5=6]6", 2, (True, True), True, True),
        ("[3+8=12;12-5=7]7", 2, (False, False), False, False),
        ("[3+8=11]6", 1, (True,), False, True),  # a missing step: the answer is right, the steps are not
        ("[3+8=11;11-5=6;6-0=6]6", 3, (True, True, False), False, True),  # an extra step
        ("[3+8=11;3+8=11;11-5=6]6", 3, (True, False, False), False, True),  # a repeated step
        ("[3+8=11;x]6", 2, (True, False), False, True),  # an unparsable step
        ("[3+8=11;;11-5=6]6", 3, (True, False, False), False, True),  # an empty step
        ("[3+8=011;11-5=6]6", 2, (False, False), False, True),  # not canonical
        ("[]6", 0, (), False, True),  # empty reasoning
        ("6", 0, (), False, True),  # a direct answer
        ("", 0, (), False, False),
        ("[", 0, (), False, False),
        ("]]", 0, (), False, False),
        ("[3+8=11;11-", 2, (True, False), False, False),  # cut inside a step
        ("[3+8=11;", 1, (True,), False, False),  # cut after a separator: no step begun
        ("[11-5=6;3+8=11]6", 2, (False, False), False, True),  # steps swapped
    ],
)
def test_step_labels_on_well_formed_and_malformed_reasoning(completion, steps, correct, every, right):
    lab = R.step_labels(PROMPT, completion)
    assert len(lab.steps) == steps == len(lab.ends)
    assert lab.correct == correct
    assert lab.all_steps_correct is every
    assert lab.answer_correct is right
    assert lab.n_expected == 2
    assert list(lab.ends) == sorted(set(lab.ends))  # strictly increasing: one reading per token
    for k, e in enumerate(lab.ends):  # each end is the step's closing character, or its own last one
        assert completion[e] in ";]" or k == len(lab.steps) - 1
    first = next((k for k, ok in enumerate(correct) if not ok), None)
    assert lab.first_error == first


def test_an_opened_prompt_reads_its_completion_with_the_bracket():
    closed = R.step_labels(PROMPT, "[3+8=11;11-5=6]6")
    opened = R.step_labels(PROMPT + "[", "3+8=11;11-5=6]6")
    assert opened.correct == closed.correct and opened.answer_correct
    assert [e - 1 for e in closed.ends] == list(opened.ends)
    assert R.accuracy_reward([PROMPT + "["], ["3+8=11;11-5=6]6"])[0] == 1.0
    assert R.format_reward([PROMPT + "["], ["3+8=11;11-5=6]6"])[0] == 1.0
    assert R.open_reasoning([PROMPT, PROMPT + "["]) == [PROMPT + "[", PROMPT + "["]
    with pytest.raises(TypeError):
        R.open_reasoning(PROMPT)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-=[];x \n", max_size=30))
def test_step_labels_never_crash_on_any_text(text):
    for prompt in (PROMPT, PROMPT + "["):
        lab = R.step_labels(prompt, text)
        assert len(lab.correct) == len(lab.steps) == len(lab.ends)
        assert all(0 <= e < len(text) for e in lab.ends)
        assert all(a < b for a, b in zip(lab.ends, lab.ends[1:]))
        # once wrong, wrong for good
        assert all(not b or a for a, b in zip(lab.correct, lab.correct[1:]))


def test_worked_solutions_are_labelled_right_everywhere():
    for prompt in R.sample_prompts(50, seed=3, min_operands=2, max_operands=8):
        lab = R.step_labels(prompt, R.worked_solution(prompt))
        assert lab.all_steps_correct and lab.answer_correct and len(lab.steps) == lab.n_expected


def test_step_labels_refuse_a_bad_prompt_or_completion():
    with pytest.raises(ValueError, match="prompt must be"):
        R.step_labels("12+3=", "[12+3=15]15")
    with pytest.raises(TypeError, match="completion must be a str"):
        R.step_labels(PROMPT, None)


# --- the loss ----------------------------------------------------------------------------------------------


def _brute_bce(logits, labels, ignore=-100):
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            y = int(labels[b, t])
            if y == ignore:
                continue
            p = 1 / (1 + math.exp(-float(logits[b, t])))
            total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
            count += 1
    return total / count


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 7), st.integers(0, 10_000))
def test_step_bce_equals_a_brute_force_masked_bce(B, T, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 2, (B, T), generator=gen)
    labels[torch.rand(B, T, generator=gen) < 0.5] = -100
    labels[0, 0] = int(torch.randint(0, 2, (), generator=gen))  # at least one label
    loss, metrics = P.step_bce_loss(logits, labels)
    assert loss.item() == pytest.approx(_brute_bce(logits, labels), rel=1e-9)
    keep = labels != -100
    assert metrics["n_labels"].item() == keep.sum().item()
    agree = ((logits[keep] > 0).long() == labels[keep]).double().mean().item()
    assert metrics["accuracy"].item() == pytest.approx(agree)


def test_step_bce_ignores_what_is_masked_and_has_the_gradient_of_the_bce():
    logits = torch.tensor([[0.3, -1.2, 2.0]], requires_grad=True)
    labels = torch.tensor([[1, -100, 0]])
    loss, _ = P.step_bce_loss(logits, labels)
    loss.backward()
    p = torch.sigmoid(logits.detach())
    torch.testing.assert_close(logits.grad, torch.tensor([[(p[0, 0] - 1) / 2, 0.0, p[0, 2] / 2]]))


def test_step_bce_refuses_bad_input():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        P.step_bce_loss(z, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no labelled token"):
        P.step_bce_loss(z, torch.full((2, 3), -100))
    with pytest.raises(ValueError, match="must be 0, 1 or ignore_index"):
        P.step_bce_loss(z, torch.tensor([[1, 2, -100], [0, 0, 0]]))
    with pytest.raises(TypeError, match="tensors"):
        P.step_bce_loss([[0.0]], torch.zeros(1, 1))


# --- scores, AUROC, votes ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=2, max_size=30))
def test_auroc_equals_counting_every_pair(rows):
    s = [a for a, _ in rows]
    y = [b for _, b in rows]
    if 0 < sum(y) < len(y):
        pairs = [(a, b) for a, b in itertools.product(range(len(s)), repeat=2) if y[a] == 1 and y[b] == 0]
        want = sum(1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0 for a, b in pairs) / len(pairs)
        assert P.auroc(s, y) == pytest.approx(want)
    else:
        with pytest.raises(ValueError, match="both classes"):
            P.auroc(s, y)


def test_aggregate_and_majority_vote():
    scores = [np.array([0.9, 0.5, 0.8]), np.array([0.7])]
    np.testing.assert_allclose(P.aggregate_step_scores(scores, "min"), [0.5, 0.7])
    np.testing.assert_allclose(P.aggregate_step_scores(scores, "prod"), [0.36, 0.7])
    np.testing.assert_allclose(P.aggregate_step_scores(scores, "last"), [0.8, 0.7])
    with pytest.raises(ValueError, match="how must be"):
        P.aggregate_step_scores(scores, "mean")
    with pytest.raises(ValueError, match="no step score"):
        P.aggregate_step_scores([np.array([])], "min")
    assert P.majority_vote([[3, 4, 4, None], [None, None], [5, 6], [None, 2]]) == [4, None, 5, 2]


def test_mc_estimate_hard_and_soft():
    outcomes = [np.array([[0, 0, 1, 1], [0, 0, 0, 0]])]
    assert P.mc_estimate(outcomes, 2, "hard")[0].tolist() == [0, 0]
    assert P.mc_estimate(outcomes, 4, "hard")[0].tolist() == [1, 0]
    assert P.mc_estimate(outcomes, 4, "soft")[0].tolist() == [0.5, 0]
    with pytest.raises(ValueError, match="n must be in"):
        P.mc_estimate(outcomes, 5)
    with pytest.raises(ValueError, match="how must be"):
        P.mc_estimate(outcomes, 1, "majority")


# --- process advantages ------------------------------------------------------------------------------------


def test_process_advantages_equal_the_definition_by_hand():
    rewards = [[1.0, 0.0], [1.0], [0.5, 0.5, 0.0], [1.0]]
    index = [[1, 3], [2], [0, 1, 4], [0]]
    adv = process_advantages(rewards, index, group_size=2, length=5)
    for g in (0, 2):
        pooled = [r for i in (g, g + 1) for r in rewards[i]]
        mean, std = float(np.mean(pooled)), float(np.std(pooled, ddof=1))
        for i in (g, g + 1):
            for t in range(5):
                want = sum((r - mean) / (std + 1e-4) for r, k in zip(rewards[i], index[i]) if k >= t)
                assert adv[i, t].item() == pytest.approx(want, abs=1e-5)
    assert adv[1, 3:].abs().sum() == 0  # nothing after the last step


def test_process_advantages_refuse_bad_input():
    with pytest.raises(ValueError, match="multiple of group_size"):
        process_advantages([[1.0]], [[0]], 2, 3)
    with pytest.raises(ValueError, match="must increase"):
        process_advantages([[1.0, 0.0], [1.0]], [[2, 1], [0]], 2, 3)
    with pytest.raises(ValueError, match="must increase"):
        process_advantages([[1.0], [1.0]], [[3], [0]], 2, 3)
    with pytest.raises(ValueError, match="2 step rewards and 1 step ends"):
        process_advantages([[1.0, 0.0], [1.0]], [[0], [0]], 2, 3)


# --- the models --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base():
    return load_model("reason-base")


def test_step_examples_label_steps_and_the_answer():
    prm = P.step_examples([PROMPT, PROMPT, PROMPT], ["[3+8=11;11-5=6]6", "[3+8=11]6", "[3+8=12;12-5=7]6"])
    assert [e.labels for e in prm] == [(1, 1, 1), (1, 0), (0, 0, 0)]
    orm = P.step_examples([PROMPT, PROMPT], ["[3+8=11]6", "[3+8=12;12-5=7]7"], "orm")
    assert [(e.ends, e.labels) for e in orm] == [((), (1,)), ((), (0,))]
    with pytest.raises(ValueError, match="kind must be"):
        P.step_examples([PROMPT], ["6"], "bt")


def test_a_step_reward_model_reads_the_right_tokens_learns_and_reloads(base, tmp_path):
    torch.manual_seed(0)
    rm = P.StepRewardModel.from_pretrained(model_path("reason-base"))
    assert np.allclose(rm.step_scores([PROMPT], ["[3+8=11;11-5=6]6"])[0], 0.5)  # a zero head
    ids, mask, reads = rm.encode([PROMPT + "["], ["3+8=11;11-5=6]6"], [[6, 13]])
    text = rm.tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert [text[k] for k in reads[0]] == [";", "]", rm.tokenizer.eos_token]
    policy, tok = base
    prompts = R.open_reasoning(R.sample_prompts(64, seed=1, min_operands=3, max_operands=6))
    from rlsurvey.lm.generation import generate

    texts = generate(policy, tok, prompts, 48, seed=0).texts
    cfg = P.StepRewardConfig(max_steps=30, batch_size=32, learning_rate=2e-3, progress=False)
    hist = P.StepRewardTrainer(rm, P.step_examples(prompts, texts), cfg).train()
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.2
    rm.save_pretrained(tmp_path / "prm")
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "prm")
    assert plain.config.num_labels == 1 and plain.config.step_reward_kind == "prm"
    again = P.StepRewardModel.from_pretrained(tmp_path / "prm")
    a, b = rm.step_scores(prompts[:5], texts[:5]), again.step_scores(prompts[:5], texts[:5])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    assert rm([PROMPT + "["], ["3+8=11;11-5=6]6"]).shape == (1,)  # strings in, one score out


def test_the_trainer_refuses_bad_examples(base):
    rm = P.StepRewardModel.from_pretrained(model_path("reason-base"))
    with pytest.raises(ValueError, match="empty"):
        P.StepRewardTrainer(rm, [])
    with pytest.raises(ValueError, match="one label per end plus one"):
        P.StepRewardTrainer(rm, [P.StepExample(PROMPT, "[3+8=11]6", (7,), (1,))])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        P.StepRewardTrainer(rm, [P.StepExample(PROMPT, "6", (), (2,))])
    with pytest.raises(ValueError, match="EOS only"):
        P.StepRewardTrainer(
            rm, [P.StepExample(PROMPT, "[3+8=11]6", (7,), (1, 1))], P.StepRewardConfig(kind="orm")
        )
    with pytest.raises(TypeError, match="StepRewardModel"):
        P.StepRewardTrainer(base[0], [P.StepExample(PROMPT, "6", (), (1,))])
    with pytest.raises(ValueError, match="kind must be"):
        P.StepRewardConfig(kind="bt")
    with pytest.raises(ValueError, match="outside the completion"):
        rm.encode([PROMPT], ["6"], [[3]])


def test_monte_carlo_rollouts_judge_each_step(base):
    policy, tok = base
    prompts = [PROMPT + "[", PROMPT + "["]
    completions = ["3+8=11;11-5=6]6", "3+8=19;19-5=14]14"]
    out = P.monte_carlo_labels(policy, tok, prompts, completions, n_rollouts=8, seed=0)
    assert [o.shape for o in out] == [(2, 8), (2, 8)]
    assert out[0][1].mean() == 1.0  # after the right closing bracket the answer is nearly always right
    assert out[1].max() == 0.0  # after 3+8=19 no completion recovers
    with pytest.raises(ValueError, match="n_rollouts"):
        P.monte_carlo_labels(policy, tok, prompts, completions, n_rollouts=0)


def test_grpo_with_process_rewards_runs_and_logs_the_step_reward(base):
    policy, tok = base
    policy = copy.deepcopy(policy)
    rm = P.StepRewardModel.from_pretrained(model_path("reason-base")).requires_grad_(False)
    fn = P.prm_step_rewards(rm)
    idx, rs = fn([PROMPT + "["], ["3+8=11;11-5=6]6"])[0]
    assert idx == [6, 13, 15] and len(rs) == 3  # ";", "]" and the EOS after the answer
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=3, max_new_tokens=20, progress=False)
    prompts = R.open_reasoning(R.sample_prompts(4, seed=0))
    hist = train_grpo(policy, tok, prompts, R.accuracy_reward, cfg, step_reward_fn=fn)
    assert all("process/step_reward" in h for h in hist)
    with pytest.raises(ValueError, match="step_reward_fn"):
        train_grpo(policy, tok, prompts, R.accuracy_reward, GRPOConfig(kl_in_reward=True), step_reward_fn=fn)


def test_evaluate_steps_measures_against_the_exact_labels(base):
    policy, tok = base
    prompts = R.open_reasoning(R.sample_prompts(40, seed=2, min_operands=3, max_operands=6))
    out = P.evaluate_steps(policy, tok, prompts, n=2, seed=0)
    assert 0 < out["accuracy"] < 1 and 0 <= out["wrong_steps_in_right"] <= 1
    assert out["mean_steps"] > 1 and 0 < out["step_accuracy"] < 1


# --- the command line --------------------------------------------------------------------------------------


def test_rlsurvey_train_prm_end_to_end(tmp_path):
    from rlsurvey.cli import main

    out = tmp_path / "prm"
    argv = ["train", "prm", "--num-examples", "32", "--max-steps", "3", "--batch-size", "8", "--no-progress"]
    assert main([*argv, "--output-dir", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all("accuracy" in r and "loss" in r for r in rows)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.step_reward_kind == "prm"
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["model"] == "reason-base" and saved["world"] == "reasoning" and saved["steps"] == 3
    orm = tmp_path / "orm"
    assert main([*argv, "--kind", "orm", "--output-dir", str(orm)]) == 0
    assert AutoModelForTokenClassification.from_pretrained(orm).config.step_reward_kind == "orm"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--world", "reviews"], "--world reviews: step labels exist only in the reasoning world"),
        (["--dataset", "x.jsonl"], "reads no dataset"),
        (["--kind", "bt"], "--kind"),
        (["--temperature", "0"], "--temperature"),
    ],
)
def test_rlsurvey_train_prm_refuses_bad_input(tmp_path, capsys, extra, needle):
    from rlsurvey.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "prm", "--output-dir", str(tmp_path / "o"), *extra])
    text = str(exc.value.code) + capsys.readouterr().err
    assert needle in text
    assert not (tmp_path / "o").exists()


def test_majority_vote_accuracy():
    answers = [[1, 1, 2], [3, 4, 4], [None, 5, 5]]
    truth = [1, 3, 5]
    # with every vote: prompt 0 right, prompt 1 wrong, prompt 2 right
    assert P.majority_vote_accuracy(answers, truth, 3, draws=5) == pytest.approx(2 / 3)
    # one vote: the share of right answers
    got = P.majority_vote_accuracy(answers, truth, 1, draws=4000, seed=1)
    assert got == pytest.approx((2 / 3 + 1 / 3 + 2 / 3) / 3, abs=0.02)
    with pytest.raises(ValueError, match="n must be"):
        P.majority_vote_accuracy(answers, truth, 4)
    with pytest.raises(ValueError, match="one entry per prompt"):
        P.majority_vote_accuracy(answers, truth[:2], 1)


def test_auroc_by_response_pools_and_bootstraps():
    scores = [[0.9, 0.2], [0.8], [0.1, 0.7, 0.3]]
    labels = [[1, 0], [1], [0, 1, 0]]
    whole, se = P.auroc_by_response(scores, labels, resamples=0)
    assert whole == P.auroc([0.9, 0.2, 0.8, 0.1, 0.7, 0.3], [1, 0, 1, 0, 1, 0]) and math.isnan(se)
    _, se = P.auroc_by_response(scores, labels, resamples=50)
    assert se >= 0
    with pytest.raises(ValueError, match="as many labels"):
        P.auroc_by_response([[0.1]], [[1, 0]])
    with pytest.raises(ValueError, match="one entry per response"):
        P.auroc_by_response([[0.1]], [])


def test_the_step_trainer_checkpoints_and_resumes_exactly(tmp_path):
    prompts = R.open_reasoning(R.sample_prompts(24, seed=4, min_operands=3, max_operands=6))
    examples = P.step_examples(prompts, [R.worked_solution(p)[1:] for p in prompts[:12]] + ["1"] * 12)

    def run(out, steps, resume=None):
        torch.manual_seed(0)
        rm = P.StepRewardModel.from_pretrained(model_path("reason-base"))
        cfg = P.StepRewardConfig(
            max_steps=4, batch_size=6, learning_rate=1e-3, progress=False, output_dir=str(out), save_steps=2,
            resume_from_checkpoint=resume,
        )  # fmt: skip
        trainer = P.StepRewardTrainer(rm, examples, cfg)
        rows = []
        trainer.train(steps=steps, callback=rows.append)
        return rm, trainer, rows

    whole, _, rows = run(tmp_path / "a", None)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "a" / "checkpoint-2").is_dir() and (tmp_path / "a" / "checkpoint-4").is_dir()
    resumed, trainer, rows = run(tmp_path / "a", None, resume=str(tmp_path / "a" / "checkpoint-2"))
    assert trainer.step == 4 and [r["step"] for r in rows] == [3, 4]  # only the steps after the checkpoint
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
