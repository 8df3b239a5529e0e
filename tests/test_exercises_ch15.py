"""Chapter 15's exercise checks: each passes the reference solution and an independent one, and refuses
typical wrong answers."""

import itertools
import random

import pytest

from rlsurvey.exercises import ExerciseError
from rlsurvey.exercises import ch15 as ex
from rlsurvey.tasks import reasoning


def test_hard_estimate_by_enumeration():
    def by_enumeration(q, n):  # sum over every outcome of the n rollouts with at least one success
        total = 0.0
        for outcome in itertools.product((0, 1), repeat=n if n <= 16 else 0):
            if any(outcome):
                k = sum(outcome)
                total += q**k * (1 - q) ** (n - k)
        return total if n <= 16 else 1 - (1 - q) ** n

    assert ex.check_hard_estimate(ex.reference_hard_estimate)
    assert ex.check_hard_estimate(by_enumeration)
    for wrong in (lambda q, n: q**n, lambda q, n: q, lambda q, n: min(1.0, n * q), lambda q, n: (1 - q) ** n):
        with pytest.raises(ExerciseError, match="Hint"):
            ex.check_hard_estimate(wrong)


def test_local_labels_by_a_second_route():
    def by_replay(prompt, completion):  # replay the prompt's terms with a running value taken from the text
        whole = ("[" + completion) if prompt.endswith("[") else completion
        if not whole.startswith("[") or "]" not in whole:
            return ()
        inner = whole[1 : whole.index("]")]
        if not inner:
            return ()
        terms = prompt.rstrip("[").rstrip("=")
        ops = list(zip(terms[1::2], terms[2::2]))
        prev, out = terms[0], []
        for k, step in enumerate(inner.split(";")):
            want_ok = False
            if k < len(ops) and "=" in step:
                left, right = step.split("=", 1)
                want_left = f"{prev}{ops[k][0]}{ops[k][1]}"
                if left == want_left and right.isdigit() and str(int(right)) == right:
                    want_ok = int(right) == eval(left)  # noqa: S307 - digits and one operator
            out.append(want_ok)
            if "=" in step:
                prev = step.split("=", 1)[1]
        return tuple(out)

    assert ex.check_local_labels(ex.reference_local_labels)
    assert ex.check_local_labels(by_replay)
    with pytest.raises(ExerciseError, match="Hint"):  # the package's prefix labels differ after an error
        ex.check_local_labels(lambda p, c: reasoning.step_labels(p, c).correct)
    with pytest.raises(ExerciseError, match="Hint"):  # arithmetic alone misses a miscopied operand
        ex.check_local_labels(
            lambda p, c: tuple(
                bool(s)
                and "=" in s
                and s.split("=")[1].isdigit()
                and eval(s.split("=")[0]) == int(s.split("=")[1])
                for s in reasoning.step_labels(p, c).steps
            )
        )
    with pytest.raises(ExerciseError, match="raised"):
        ex.check_local_labels(lambda p, c: 1 / 0)


def test_local_labels_agree_with_prefix_labels_until_the_first_error():
    rng = random.Random(0)
    for prompt in reasoning.sample_prompts(40, seed=5):
        steps = reasoning.worked_solution(prompt)[1:].split("]")[0].split(";")
        k = rng.randrange(len(steps))
        a, c = steps[k].split("=")
        steps[k] = f"{a}={int(c) + 1}"
        completion = "[" + ";".join(steps) + "]0"
        local = ex.reference_local_labels(prompt, completion)
        prefix = reasoning.step_labels(prompt, completion).correct
        assert local[:k] == prefix[:k] and local[k] is False and prefix[k] is False


def test_binary_auroc_against_counting_pairs():
    from rlsurvey.rewards.process import auroc

    def by_pairs(tpr, fpr):  # 100 positives and 100 negatives with those rates
        pos = [1] * round(100 * tpr) + [0] * (100 - round(100 * tpr))
        neg = [1] * round(100 * fpr) + [0] * (100 - round(100 * fpr))
        if tpr in (0.0, 1.0) and fpr in (0.0, 1.0) and tpr == fpr:
            return 0.5
        return auroc(pos + neg, [1] * 100 + [0] * 100)

    assert ex.check_binary_auroc(ex.reference_binary_auroc)
    assert ex.check_binary_auroc(by_pairs)
    for wrong in (lambda t, f: t - f, lambda t, f: t * (1 - f), lambda t, f: (t + 1 - f) / 2 + 0.01):
        with pytest.raises(ExerciseError, match="Hint"):
            ex.check_binary_auroc(wrong)


def test_right_answer_wrong_steps():
    assert ex.check_right_answer_wrong_steps(ex.reference_right_answer_wrong_steps())
    assert ex.check_right_answer_wrong_steps("[4+7=10;10-2=8;8+5=13]14")
    for wrong in (
        "[4+7=11;11-2=9;9+5=14]14",  # all right
        "[4+7=12;12-2=10;10+5=15]15",  # wrong answer
        "[4+7=12;12-2=10]14",  # a step missing
        "14",  # no reasoning
        "[4+7=12;12-2=10;10+5=15]014",  # not canonical
    ):
        with pytest.raises(ExerciseError, match="Hint"):
            ex.check_right_answer_wrong_steps(wrong)
    with pytest.raises(ExerciseError, match="expected a str"):
        ex.check_right_answer_wrong_steps(14)
