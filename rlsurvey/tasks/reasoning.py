"""The reasoning world: chains of one-digit additions and subtractions, solved in one shot or step by step.

Survey section 3 of arXiv 2412.10400 (o1, DeepSeek-R1, Kimi k1.5): RL with a verifier's reward teaches a model
to reason before it answers. DeepSeek-R1 (arXiv 2501.12948) writes its reasoning inside `<think>...</think>`
and then the answer, and is rewarded for a correct answer (accuracy) and for that layout (format). This world
keeps both rewards and the layout, with one character per tag so that a character-level model stays tiny:
`[` opens the reasoning and `]` closes it.

A problem is a chain of `n_operands` one-digit numbers joined by `+` or `-`, such as `3+8-5+9=`; the running
total never goes below zero, so every answer is a non-negative integer. A response is either

- a direct answer: `15`, or
- a worked solution, one step per operator, then the answer: `[3+8=11;11-5=6;6+9=15]15`.

A tiny model adds two numbers far more reliably than it adds four in its head, so the worked solution is the
way to be right, and its length grows with the number of operands.

The verifier is strict (`parse`): a response is exactly an optional reasoning block followed by one answer in
canonical decimal form (no sign, no leading zeros, nothing after it). Two answers, an answer only inside the
reasoning, an answer before the reasoning, extra text, leading zeros or a minus sign all score 0.

Step labels (`step_labels`, chapter 15): the world knows the worked solution, so it can say of every step a
response writes whether it is right. Step k is labelled correct when the first k steps of the response are
exactly the first k steps of the worked solution: the reasoning is still on the one right path after it. A
missing, repeated, unparsable or extra step is wrong, and so is every step after it (the running total is
no longer the prompt's).

The pretraining corpus (`make_corpus`) mixes worked solutions (a fraction `worked_fraction`, always right)
with direct answers, a fraction `wrong_fraction` of which is deliberately wrong (off by 1, 2, 3 or 10): a
model that imitates it reasons on a minority of prompts and is often wrong when it does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlsurvey.tasks.arithmetic import _check_n, check_pairs

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "Parsed",
    "ReasoningConfig",
    "StepLabels",
    "accuracy_reward",
    "answer",
    "format_reward",
    "make_corpus",
    "open_reasoning",
    "parse",
    "reasons",
    "sample_problems",
    "sample_prompts",
    "step_labels",
    "worked_solution",
]

THINK_OPEN, THINK_CLOSE = "[", "]"
STEP_SEP = ";"
_NUMBER = r"(?:0|[1-9][0-9]*)"
_RESPONSE = re.compile(rf"^(?:\[(?P<think>[^\[\]]*)\])?(?P<answer>{_NUMBER})$")
_STEP = re.compile(rf"^(?P<a>{_NUMBER})(?P<op>[+-])(?P<b>[0-9])=(?P<c>{_NUMBER})$")
_PROMPT = re.compile(r"^[0-9](?:[+-][0-9])+=\[?$")


@dataclass
class ReasoningConfig:
    min_operands: int = 3  # the shortest chain (two operators)
    max_operands: int = 5  # the longest chain; drawn uniformly in [min_operands, max_operands]
    ops: tuple[str, ...] = ("+", "-")  # the operators to draw from ("-" only where the total stays >= 0)

    def __post_init__(self):
        for name in ("min_operands", "max_operands"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 12:
                raise ValueError(f"{name} must be an int in [2, 12], got {v!r}")
        if self.min_operands > self.max_operands:
            raise ValueError(
                f"min_operands ({self.min_operands}) must not exceed max_operands ({self.max_operands})"
            )
        self.ops = tuple(self.ops)
        if (
            not self.ops
            or any(op not in ("+", "-") for op in self.ops)
            or len(set(self.ops)) != len(self.ops)
        ):
            raise ValueError(f"ops must be a non-empty subset of ('+', '-'), got {self.ops!r}")
        if self.ops == ("-",):
            raise ValueError("ops=('-',) alone would drive most totals below zero; include '+'")


def _config(config: ReasoningConfig | None, kwargs: dict) -> ReasoningConfig:
    if config is not None and kwargs:
        raise ValueError(f"give either config or its fields, not both (got fields {sorted(kwargs)})")
    return config or ReasoningConfig(**kwargs)


def sample_problems(n: int, seed: int = 0, config: ReasoningConfig | None = None, **kwargs):
    """`n` problems as (prompt, answer) pairs, e.g. ("3+8-5+9=", 15), deterministic under `seed`."""
    c = _config(config, kwargs)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(_check_n(n)):
        k = int(rng.integers(c.min_operands, c.max_operands + 1))
        total = int(rng.integers(0, 10))
        text = str(total)
        for _ in range(k - 1):
            b = int(rng.integers(0, 10))
            op = c.ops[int(rng.integers(len(c.ops)))]
            if op == "-" and total < b:
                op = "+"  # keep every running total, and so every answer, non-negative
            total = total + b if op == "+" else total - b
            text += f"{op}{b}"
        out.append((text + "=", total))
    return out


def sample_prompts(n: int, seed: int = 0, config: ReasoningConfig | None = None, **kwargs) -> list[str]:
    """`n` prompts such as "3+8-5+9=" (the RL prompts)."""
    return [p for p, _ in sample_problems(n, seed, config, **kwargs)]


def _terms(prompt: str) -> tuple[int, list[tuple[str, int]]]:
    if not isinstance(prompt, str) or not _PROMPT.match(prompt):
        raise ValueError(
            f"prompt must be a chain of one-digit numbers such as '3+8-5+9=' (or '3+8-5+9=[', the reasoning "
            f"opened), got {prompt!r}"
        )
    body = prompt[: prompt.index("=")]
    return int(body[0]), [(body[i], int(body[i + 1])) for i in range(1, len(body), 2)]


def answer(prompt: str) -> int:
    """The exact value of a prompt such as "3+8-5+9=" (left to right)."""
    total, rest = _terms(prompt)
    for op, b in rest:
        total = total + b if op == "+" else total - b
    return total


def worked_solution(prompt: str) -> str:
    """The step-by-step response to `prompt`: "[3+8=11;11-5=6;6+9=15]15"."""
    total, rest = _terms(prompt)
    steps = []
    for op, b in rest:
        new = total + b if op == "+" else total - b
        steps.append(f"{total}{op}{b}={new}")
        total = new
    return f"{THINK_OPEN}{STEP_SEP.join(steps)}{THINK_CLOSE}{total}"


@dataclass(frozen=True)
class Parsed:
    """A response taken apart by `parse`: `answer` is None when the response breaks the strict format."""

    think: str | None  # the reasoning between the brackets, or None without a reasoning block
    answer: int | None  # the final answer, or None when the response is malformed
    steps: tuple[str, ...] = ()  # the reasoning split at ";" (empty without reasoning)


def parse(completion: str) -> Parsed:
    """Take a response apart strictly. Surrounding whitespace (an EOS turned into a newline) is ignored;
    anything else outside `[reasoning]answer` makes the response malformed (answer None)."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    m = _RESPONSE.match(completion.strip())
    if m is None:
        think = None
        text = completion.strip()
        if text.startswith(THINK_OPEN) and THINK_CLOSE in text:
            think = text[1 : text.index(THINK_CLOSE)]
        return Parsed(think, None, tuple(think.split(STEP_SEP)) if think else ())
    think = m.group("think")
    return Parsed(think, int(m.group("answer")), tuple(think.split(STEP_SEP)) if think else ())


def reasons(completion: str) -> bool:
    """True when the response opens with a reasoning block (whether or not it is right)."""
    return parse(completion).think is not None


def open_reasoning(prompts: Sequence[str]) -> list[str]:
    """The prompts with the reasoning block opened, "3+8-5=" -> "3+8-5=[": every response then reasons.
    The rewards and `step_labels` read such a prompt's completion as if it began with "["."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of str, got a single str")
    return [p if p.endswith(THINK_OPEN) else p + THINK_OPEN for p in prompts]


def _whole(prompt: str, completion: str) -> str:
    """The response as the verifier reads it: with the "[" that an opened prompt (`open_reasoning`) holds."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    return THINK_OPEN + completion if isinstance(prompt, str) and prompt.endswith(THINK_OPEN) else completion


def _well_formed_steps(steps: Sequence[str]) -> bool:
    return bool(steps) and all(_STEP.match(s) for s in steps)


def accuracy_reward(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """1.0 where the response is well formed (`parse`) and its final answer is the prompt's value, else 0.0.
    A direct answer and a worked solution count alike: the reward judges the answer, not the route."""
    prompts, completions = check_pairs(prompts, completions)
    out = np.zeros(len(prompts), dtype=np.float64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        got = parse(_whole(p, c)).answer
        out[i] = float(got is not None and got == answer(p))
    return out


def format_reward(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """1.0 where the response reasons in the expected layout, whatever its arithmetic: a reasoning block of
    `x+y=z` / `x-y=z` steps separated by ";", then one well-formed answer. Else 0.0."""
    prompts, completions = check_pairs(prompts, completions)
    out = np.zeros(len(prompts), dtype=np.float64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        parsed = parse(_whole(p, c))
        out[i] = float(
            parsed.answer is not None and parsed.think is not None and _well_formed_steps(parsed.steps)
        )
    return out


def _wrong(value: int, rng: np.random.Generator) -> int:
    """A plausible wrong direct answer: off by 1, 2, 3 or 10, never negative."""
    for _ in range(100):
        w = value + int(rng.choice([-1, 1])) * int(rng.choice([1, 2, 3, 10]))
        if w >= 0 and w != value:
            return w
    return value + 1


def make_corpus(
    n: int,
    seed: int = 0,
    worked_fraction: float = 0.3,
    wrong_fraction: float = 0.6,
    config: ReasoningConfig | None = None,
    **kwargs,
) -> list[str]:
    """`n` pretraining lines `prompt + response`: a fraction `worked_fraction` (in expectation) are worked
    solutions, always right; the rest are direct answers, a fraction `wrong_fraction` of them wrong."""
    for name, v in (("worked_fraction", worked_fraction), ("wrong_fraction", wrong_fraction)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    c = _config(config, kwargs)
    rng = np.random.default_rng(seed + 1)
    lines = []
    for prompt, value in sample_problems(n, seed, c):
        if rng.random() < worked_fraction:
            lines.append(prompt + worked_solution(prompt))
        else:
            lines.append(f"{prompt}{_wrong(value, rng) if rng.random() < wrong_fraction else value}")
    return lines


@dataclass(frozen=True)
class StepLabels:
    """The steps of one response and their exact labels (`step_labels`).

    `ends[k]` is the index, in the completion string, of the character that closes step k: the ";" after
    it, the "]" after the last one, or the step's own last character when the response stops inside it.
    A process reward model reads its score there (for a one-character-per-token tokenizer the index is
    also the token's index in the response)."""

    steps: tuple[str, ...]  # the reasoning split at ";" (an unclosed reasoning runs to the end)
    ends: tuple[int, ...]  # per step: index of its closing character in the completion
    correct: tuple[bool, ...]  # per step: the first k steps equal those of the worked solution
    n_expected: int  # the number of steps of the worked solution (one per operator)
    answer_correct: bool  # the strict verifier's verdict on the whole response (`accuracy_reward`)

    @property
    def all_steps_correct(self) -> bool:
        """Every expected step is written and right, and no other step is."""
        return len(self.correct) == self.n_expected and all(self.correct)

    @property
    def first_error(self) -> int | None:
        """Index of the first wrong step, or None when every written step is right."""
        return next((k for k, ok in enumerate(self.correct) if not ok), None)


def step_labels(prompt: str, completion: str) -> StepLabels:
    """Label every step of `completion` against the worked solution of `prompt`; never raises on a
    malformed completion (the prompt must be a valid one; an opened prompt "3+8-5=[" is read with its "[").

    | response | steps | correct |
    |---|---|---|
    | `[3+8=11;11-5=6]6` to `3+8-5=` | 2 | (True, True) |
    | `[3+8=12;12-5=7]7` (a wrong sum) | 2 | (False, False) |
    | `[3+8=11]6` (a missing step) | 1 | (True,); `all_steps_correct` is False |
    | `[3+8=11;3+8=11;11-5=6]6` (a repeated step) | 3 | (True, False, False) |
    | `[3+8=11;x]6` (an unparsable step) | 2 | (True, False) |
    | `[]6` (empty reasoning), `6` (a direct answer) | 0 | () |
    """
    expected = worked_solution(prompt)[1:].split(THINK_CLOSE)[0].split(STEP_SEP)
    whole = _whole(prompt, completion)
    right = bool(accuracy_reward([prompt], [completion])[0])
    # indices into `completion`: skip leading whitespace; an opened prompt holds the "[" (index -1)
    offset = len(whole) - len(whole.lstrip()) - (len(whole) - len(completion))
    text = whole.strip()
    steps: list[str] = []
    ends: list[int] = []
    if text.startswith(THINK_OPEN):
        close = text.find(THINK_CLOSE)
        body = text[1:] if close < 0 else text[1:close]
        parts = body.split(STEP_SEP) if body else []
        if close < 0 and parts and not parts[-1]:
            parts.pop()  # cut right after a ";": the next step was never begun
        start = 1
        if parts:
            for part in parts:
                stop = start + len(part)  # the separator's index, or the closing bracket's
                steps.append(part)
                ends.append(offset + (stop if stop < len(text) else stop - 1))
                start = stop + 1
    correct, on_track = [], True
    for k, step in enumerate(steps):
        m = _STEP.match(step)
        on_track = on_track and m is not None and k < len(expected) and step == expected[k]
        correct.append(on_track)
    return StepLabels(tuple(steps), tuple(ends), tuple(correct), len(expected), right)
