"""Chapter 12's exercise checks: each passes the reference solution and an independent one, and refuses
typical wrong answers."""

import pytest
import torch

from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch12 as ex
from rlsurvey.tasks import reasoning


def by_hand_verifier(prompt, completion):
    """An independent step checker: evaluates each step with Python and rebuilds the chain by regex."""
    import re

    m = re.fullmatch(r"\[([^\[\]]*)\](0|[1-9][0-9]*)", completion.strip())
    if not m:
        return False
    steps = m.group(1).split(";")
    terms = re.findall(r"[+-]?[0-9]", prompt[:-1])
    value = int(terms[0])
    if len(steps) != len(terms) - 1:
        return False
    for step, term in zip(steps, terms[1:]):
        expected = f"{value}{term[0]}{term[1]}"
        value = eval(expected)  # noqa: S307 - digits and one operator
        if step != f"{expected}={value}":
            return False
    return int(m.group(2)) == value


def test_step_verifier():
    assert ex.check_step_verifier(ex.reference_step_verifier)
    assert ex.check_step_verifier(by_hand_verifier)
    p = "3+8-5+9="
    assert ex.reference_step_verifier(p, reasoning.worked_solution(p))
    assert not ex.reference_step_verifier(p, "[3+8=11;11-5=7;7+9=15]15")  # wrong step, right answer
    assert not ex.reference_step_verifier(p, "15")
    final_only = lambda p, c: bool(reasoning.accuracy_reward([p], [c])[0])  # noqa: E731
    layout_only = lambda p, c: bool(reasoning.format_reward([p], [c])[0])  # noqa: E731
    for wrong in (final_only, layout_only, lambda p, c: True, lambda p, c: 1):
        with pytest.raises(ExerciseError):
            ex.check_step_verifier(wrong)


def test_sft_labels():
    assert ex.check_sft_labels(ex.reference_sft_labels)
    ids, mask, labels = ex.reference_sft_labels([([5, 6], [7]), ([8], [9, 10, 11])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 9, 10, 11]] and mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert labels.tolist() == [[-100, -100, 7, -100], [-100, 9, 10, 11]]

    def shifted(examples, pad_id):
        ids, mask, labels = ex.reference_sft_labels(examples, pad_id)
        return ids, mask, torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], 1)

    def left_padded(examples, pad_id):
        ids, mask, labels = ex.reference_sft_labels(examples, pad_id)
        return ids.flip(1), mask.flip(1), labels.flip(1)

    for wrong in (shifted, left_padded, lambda e, p: None):
        with pytest.raises(ExerciseError):
            ex.check_sft_labels(wrong)


def test_sft_labels_give_the_package_loss():
    """The reference labels, fed to a Hugging Face model, give SFTTrainer's loss (the conventions agree)."""
    import datasets

    from rlsurvey.algos.sft import SFTConfig, SFTTrainer
    from tests.conftest import tiny_causal_lm

    model, tok = tiny_causal_lm("llama", seed=2)
    ds = datasets.Dataset.from_dict({"prompt": ["ab", "c"], "completion": ["de", "fgh"]})
    tr = SFTTrainer(model, tok, ds, SFTConfig(progress=False, shuffle=False))
    examples = [(tr.train_data.prompt[i].tolist(), tr.train_data.completion[i].tolist()) for i in range(2)]
    ids, mask, labels = ex.reference_sft_labels(examples, tok.pad_token_id)
    with torch.no_grad():
        hf = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        ours = tr.compute_loss([0, 1])[0]
    torch.testing.assert_close(hf, ours, atol=1e-5, rtol=1e-5)


def test_token_weights():
    assert ex.check_token_weights(ex.reference_token_weights)
    adv, lengths = torch.tensor([1.0, -1.0]), torch.tensor([2, 8])
    # GRPO: a long wrong response's tokens are pushed down four times less than a short one's would be
    w = ex.reference_token_weights(adv, lengths, "sequence_mean", 8)
    assert w.tolist() == [-0.25, 0.0625]
    assert ex.reference_token_weights(adv, lengths, "constant", 8).tolist() == [-1 / 16, 1 / 16]
    positive = lambda a, n, agg, L: -ex.reference_token_weights(a, n, agg, L)  # noqa: E731 - sign
    seq_everywhere = lambda a, n, agg, L: ex.reference_token_weights(a, n, "sequence_mean", L)  # noqa: E731
    for wrong in (positive, seq_everywhere, lambda a, n, agg, L: -a):
        with pytest.raises(ExerciseError):
            ex.check_token_weights(wrong)


def test_reference_shrink_by_enumeration():
    """The (G-1)/G factor, checked by exact enumeration on a 3-armed softmax policy."""
    G = ex.SHRINK_G
    logits = torch.tensor([0.3, -0.5, 1.1], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 2.0])
    p = torch.softmax(logits, 0)

    def grad_logp(a):
        return torch.autograd.grad(torch.log_softmax(logits, 0)[a], logits)[0]

    plain = sum(p[a] * rewards[a] * grad_logp(a) for a in range(3))
    # E[(r_1 - mean(r_1..r_G)) grad log pi(o_1)] with o_2..o_G independent: E[r_j] = sum p r
    mean_r = (p * rewards).sum()
    with_baseline = sum(
        p[a] * (rewards[a] - (rewards[a] + (G - 1) * mean_r) / G) * grad_logp(a) for a in range(3)
    )
    torch.testing.assert_close(with_baseline, plain * (G - 1) / G)
    assert ex.check_baseline_shrink((G - 1) / G)


def test_baseline_shrink_refuses():
    G = ex.SHRINK_G
    for wrong in (1.0, G / (G - 1), 1 / G, 0.75, "0.75", float("nan"), True):
        with pytest.raises(ExerciseError):
            ex.check_baseline_shrink(wrong)
