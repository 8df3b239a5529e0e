"""The arithmetic world: "37+58=" prompts with an exact verifier, the course's verifiable-reward task.

Survey section 3 (o1, DeepSeek-R1, Kimi k1.5: RL with rule-based rewards) of arXiv 2412.10400; the RL
recipes that use it are GRPO (DeepSeekMath, arXiv 2402.03300), Dr. GRPO (arXiv 2503.20783) and RLOO
(arXiv 2402.14740), whose reward is simply "is the answer right?" (DeepSeek-R1, arXiv 2501.12948).

A problem is `a+b=` or `a-b=` with operands of `digits` digits; its answer is the exact integer. With
`allow_negative=False` (the default) subtraction puts the larger operand first, so every answer is a
non-negative integer and the vocabulary is just 0-9, "+", "-" and "=".

The pretraining corpus (`make_corpus`) is deliberately noisy: a fraction `wrong_fraction` of its lines carry
a plausible wrong answer (an off-by-one, a dropped carry, a swapped digit, or a small random offset). A model
that imitates the corpus is then right only part of the time, which leaves RL with verifiable rewards room to
improve it, and the errors are the kind a verifier, not a likelihood, can tell apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ArithmeticConfig",
    "sample_problems",
    "sample_prompts",
    "answer",
    "verify",
    "check_pairs",
    "make_corpus",
]


@dataclass
class ArithmeticConfig:
    digits: int = 2  # operands are drawn uniformly from 0 .. 10**digits - 1
    ops: tuple[str, ...] = ("+", "-")  # the operations to draw from
    allow_negative: bool = False  # False: a-b puts the larger operand first, so answers are >= 0

    def __post_init__(self):
        if isinstance(self.digits, bool) or not isinstance(self.digits, int) or not 1 <= self.digits <= 9:
            raise ValueError(f"digits must be an int in [1, 9], got {self.digits!r}")
        self.ops = tuple(self.ops)
        if not self.ops or any(op not in ("+", "-") for op in self.ops):
            raise ValueError(f"ops must be a non-empty subset of ('+', '-'), got {self.ops!r}")


def _config(config: ArithmeticConfig | None, kwargs: dict) -> ArithmeticConfig:
    if config is not None and kwargs:
        raise ValueError(f"give either config or its fields, not both (got fields {sorted(kwargs)})")
    return config or ArithmeticConfig(**kwargs)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return int(n)


def sample_problems(n: int, seed: int = 0, config: ArithmeticConfig | None = None, **kwargs):
    """`n` problems as (prompt, answer) pairs, e.g. ("37+58=", 95)."""
    c = _config(config, kwargs)
    rng = np.random.default_rng(seed)
    hi = 10**c.digits
    out = []
    for _ in range(_check_n(n)):
        a, b = (int(x) for x in rng.integers(0, hi, size=2))
        op = c.ops[int(rng.integers(len(c.ops)))]
        if op == "-" and not c.allow_negative and a < b:
            a, b = b, a
        out.append((f"{a}{op}{b}=", a + b if op == "+" else a - b))
    return out


def sample_prompts(n: int, seed: int = 0, config: ArithmeticConfig | None = None, **kwargs) -> list[str]:
    """`n` prompts such as "37+58=" (the RL prompts); keyword arguments build an `ArithmeticConfig`."""
    return [p for p, _ in sample_problems(n, seed, config, **kwargs)]


def answer(prompt: str) -> int:
    """The exact answer of a prompt "a+b=" or "a-b=" (a leading minus on `a` is allowed)."""
    if not isinstance(prompt, str) or not prompt.endswith("="):
        raise ValueError(f"prompt must look like '37+58=', got {prompt!r}")
    body = prompt[:-1].strip()
    for i in range(1, len(body)):  # the operator is the first + or - after the first character
        if body[i] in "+-":
            a, op, b = body[:i], body[i], body[i + 1 :]
            try:
                x, y = int(a), int(b)
            except ValueError:
                break
            return x + y if op == "+" else x - y
    raise ValueError(f"prompt must look like '37+58=', got {prompt!r}")


def check_pairs(prompts: Sequence[str], completions: Sequence[str]) -> tuple[list, list]:
    """The argument check every reward callable of this world shares: two sequences of equal length (not a
    single str). Returns them as lists."""
    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError("prompts and completions must be lists of str, not a single str")
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}"
        )
    return prompts, completions


def verify(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """Exact-match reward: 1.0 where completion.strip() is the answer's decimal string, else 0.0.

    Returns a float64 array of shape [len(prompts)]. "95", " 95" and "95\\n" count; "95 " followed by more
    text, "095" or "95.0" do not: the verifier is strict, as a rule-based reward should be.
    """
    prompts, completions = check_pairs(prompts, completions)
    out = np.zeros(len(prompts), dtype=np.float64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if not isinstance(c, str):
            raise TypeError(f"completions[{i}] must be a str, got {type(c).__name__}")
        out[i] = float(c.strip() == str(answer(p)))
    return out


def _wrong(value: int, rng: np.random.Generator, allow_negative: bool) -> int:
    """A plausible wrong answer: the mistakes people and small models make."""
    for _ in range(100):
        kind = int(rng.integers(4))
        s = str(abs(value))
        if kind == 0:  # off by one
            w = value + int(rng.choice([-1, 1]))
        elif kind == 1:  # a dropped or spurious carry: off by a power of ten
            w = value + int(rng.choice([-1, 1])) * 10 ** int(rng.integers(1, len(s) + 1))
        elif kind == 2 and len(s) > 1:  # two neighbouring digits swapped
            i = int(rng.integers(len(s) - 1))
            w = int(s[:i] + s[i + 1] + s[i] + s[i + 2 :]) * (1 if value >= 0 else -1)
        else:  # a small random offset
            w = value + int(rng.integers(-9, 10))
        if w != value and (allow_negative or w >= 0):
            return w
    return value + 1


def make_corpus(
    n: int, seed: int = 0, wrong_fraction: float = 0.5, config: ArithmeticConfig | None = None, **kwargs
) -> list[str]:
    """`n` lines "a+b=c" of which a fraction `wrong_fraction` (in expectation) has a wrong c."""
    if not 0 <= wrong_fraction <= 1:
        raise ValueError(f"wrong_fraction must be in [0, 1], got {wrong_fraction!r}")
    c = _config(config, kwargs)
    rng = np.random.default_rng(seed + 1)
    lines = []
    for prompt, value in sample_problems(n, seed, c):
        if rng.random() < wrong_fraction:
            value = _wrong(value, rng, c.allow_negative)
        lines.append(f"{prompt}{value}")
    return lines
