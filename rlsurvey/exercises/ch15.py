"""Checks for the exercises of chapter 15 (process reward models against outcome rewards).

1. `check_hard_estimate(fn)`: fn(q, n) -> the probability that Math-Shepherd's hard estimate (arXiv
   2312.08935) calls a step good when each of its n completions reaches the right answer with probability q,
   independently. The chapter measures the agreement of the estimate; it does not write this formula.
2. `check_local_labels(fn)`: fn(prompt, completion) -> a tuple of bools, one per step: the step's arithmetic
   is right and it continues the chain as written, from the previous step's result (or the prompt's first
   number) with the prompt's next operator and operand. The package's `step_labels` asks more (the step is on
   the one right path); after a first error the two differ.
3. `check_binary_auroc(fn)`: fn(tpr, fpr) -> the AUROC of a scorer that outputs only 0 or 1, with true
   positive rate tpr and false positive rate fpr (ties count 1/2).
4. `check_right_answer_wrong_steps(completion)`: a completion to `RIGHT_WRONG_PROMPT` whose final answer is
   right, whose reasoning writes every step the problem needs, and whose first step is wrong: a response an
   outcome reward pays in full.
"""

from __future__ import annotations

import re

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.tasks import reasoning

__all__ = [
    "EXERCISES",
    "RIGHT_WRONG_PROMPT",
    "check_binary_auroc",
    "check_hard_estimate",
    "check_local_labels",
    "check_right_answer_wrong_steps",
    "reference_binary_auroc",
    "reference_hard_estimate",
    "reference_local_labels",
    "reference_right_answer_wrong_steps",
]

RIGHT_WRONG_PROMPT = "4+7-2+5="  # exercise 4; its worked solution is [4+7=11;11-2=9;9+5=14]14


# --- 1. the hard estimate ----------------------------------------------------------------------------------


def reference_hard_estimate(q: float, n: int) -> float:
    return 1.0 - (1.0 - q) ** n


def check_hard_estimate(fn) -> bool:
    """Your P(hard estimate says good | success probability q, n rollouts)."""
    name = "hard estimate"
    hint = (
        "the hard label is 1 when at least one of the n independent completions is right; the complement "
        "is easier to count."
    )
    for q in (0.0, 0.05, 0.3, 0.5, 0.9, 1.0):
        for n in (1, 2, 4, 16, 64):
            got = call_safely(name, fn, q, n)
            assert_close(name, float(got), reference_hard_estimate(q, n), hint=hint, atol=1e-9)
    return passed(name)


# --- 2. local step labels ----------------------------------------------------------------------------------

_STEP = re.compile(r"^(0|[1-9][0-9]*)([+-])([0-9])=(0|[1-9][0-9]*)$")


def reference_local_labels(prompt: str, completion: str) -> tuple[bool, ...]:
    lab = reasoning.step_labels(prompt, completion)
    body = prompt[: prompt.index("=")]
    terms = [(body[i], int(body[i + 1])) for i in range(1, len(body), 2)]
    out, total = [], int(body[0])
    for k, step in enumerate(lab.steps):
        m = _STEP.match(step)
        if m is None or k >= len(terms):
            out.append(False)
            continue
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        ok = a == total and (op, b) == terms[k] and c == (a + b if op == "+" else a - b)
        out.append(ok)
        total = c  # the chain goes on from what was written
    return tuple(out)


_LOCAL_CASES = [
    ("3+8-5=", "[3+8=11;11-5=6]6"),
    ("3+8-5=", "[3+8=12;12-5=7]7"),  # a wrong sum, then a right step from it
    ("3+8-5=", "[3+8=12;11-5=6]6"),  # a wrong sum, then a step that ignores it
    ("3+8-5=", "[3+9=12;12-5=7]7"),  # a miscopied operand with right arithmetic
    ("3+8-5=", "[3+8=11;3+8=11;11-5=6]6"),
    ("3+8-5=", "[3+8=11;x]6"),
    ("3+8-5=", "[]6"),
    ("3+8-5=", "6"),
    ("3+8-5=[", "3+8=11;11-5=6]6"),
    ("9-4+7-8=", "[9-4=5;5+7=13;13-8=5]5"),
    ("9-4+7-8=", "[9-4=5;5+7=12;12-8=4]4"),
    ("2+2+2+2+2=", "[2+2=4;4+2=6;6+2=8;8+2=10;10+2=12]12"),
]


def check_local_labels(fn) -> bool:
    """Your per-step labels under the local rule (right arithmetic, continuing the chain as written)."""
    name = "local labels"
    hint = (
        "a step x op y = z is locally right when x is the previous step's written result (the prompt's first "
        "number for step 1), 'op y' is the prompt's next term, and z = x op y; an extra step has no term."
    )
    for prompt, completion in _LOCAL_CASES:
        got = call_safely(name, fn, prompt, completion)
        want = reference_local_labels(prompt, completion)
        if tuple(bool(v) for v in got) != want:
            raise ExerciseError(
                f"{name}: for {prompt!r} + {completion!r} expected {want}, got {got}. Hint: {hint}"
            )
    return passed(name)


# --- 3. the AUROC of a binary scorer -----------------------------------------------------------------------


def reference_binary_auroc(tpr: float, fpr: float) -> float:
    # P(pos scored 1, neg 0) + 1/2 P(tie) = tpr (1 − fpr) + 1/2 [tpr fpr + (1 − tpr)(1 − fpr)]
    return tpr * (1 - fpr) + 0.5 * (tpr * fpr + (1 - tpr) * (1 - fpr))


def check_binary_auroc(fn) -> bool:
    """Your AUROC of a 0/1 scorer with rates (tpr, fpr)."""
    name = "binary AUROC"
    hint = (
        "draw one positive and one negative: the positive wins when it scores 1 and the negative 0; "
        "they tie when both score 1 or both 0, and a tie counts 1/2."
    )
    for tpr in (0.0, 0.3, 0.8, 1.0):
        for fpr in (0.0, 0.1, 0.5, 1.0):
            got = call_safely(name, fn, tpr, fpr)
            assert_close(name, float(got), reference_binary_auroc(tpr, fpr), hint=hint, atol=1e-9)
    return passed(name)


# --- 4. a right answer over a wrong step -------------------------------------------------------------------


def reference_right_answer_wrong_steps() -> str:
    return "[4+7=12;12-2=10;10+5=15]14"  # every step written, the first one wrong, the answer right


def check_right_answer_wrong_steps(completion) -> bool:
    """Your completion to RIGHT_WRONG_PROMPT: right answer, all steps written, the first step wrong."""
    name = "right answer, wrong steps"
    if not isinstance(completion, str):
        raise ExerciseError(f"{name}: expected a str, got {type(completion).__name__}")
    lab = reasoning.step_labels(RIGHT_WRONG_PROMPT, completion)
    hint = (
        f"{RIGHT_WRONG_PROMPT!r} needs {lab.n_expected} steps in [...] separated by ';', then the answer "
        f"{reasoning.answer(RIGHT_WRONG_PROMPT)}; make the first step's sum wrong."
    )
    if not lab.answer_correct:
        raise ExerciseError(
            f"{name}: the verifier does not accept the answer of {completion!r}. Hint: {hint}"
        )
    if len(lab.steps) != lab.n_expected:
        raise ExerciseError(f"{name}: {len(lab.steps)} steps written, {lab.n_expected} needed. Hint: {hint}")
    if lab.correct[0]:
        raise ExerciseError(f"{name}: the first step {lab.steps[0]!r} is right. Hint: {hint}")
    return passed(name)


EXERCISES = (
    Exercise(1, "Math-Shepherd's hard estimate", check_hard_estimate, reference_hard_estimate,
             lambda q, n: q**n),
    Exercise(2, "Local step labels", check_local_labels, reference_local_labels,
             lambda p, c: reasoning.step_labels(p, c).correct),
    Exercise(3, "The AUROC of a 0/1 scorer", check_binary_auroc, reference_binary_auroc,
             lambda tpr, fpr: tpr - fpr),
    Exercise(4, "A right answer over wrong steps", check_right_answer_wrong_steps,
             reference_right_answer_wrong_steps, "[4+7=11;11-2=9;9+5=14]14", value=True),
)  # fmt: skip
