"""The tool world: products and long sums that a tiny model gets wrong in its head and right with a tool.

Beyond the survey (arXiv 2412.10400): agents trained with RL over several turns, the model calling a tool,
reading its result and going on, rewarded at the end (Toolformer, arXiv 2302.04761, taught a model when to
call a calculator; ReAct, arXiv 2210.03629, interleaves actions and observations; ToRL, arXiv 2503.23383, and
ReTool, arXiv 2504.11536, train tool-integrated reasoning with outcome-reward RL).

A problem is a product of two two-digit numbers (`37*58=`) or a sum of several (`12+45+78+33=`); the answer is
the exact integer. The model may answer directly (`2146`) or call the calculator and let its result stand:

    37*58=<37*58>{2146}

The policy writes `<expression>`; the environment cuts the policy's turn at `>`, evaluates the expression with
`evaluate` and appends the observation `{2146}`; the policy writes again, up to `max_turns` turns: EOS to let
the result stand as its answer (a tool's result returned as the reply), an answer of its own, or another call.
The observation is the environment's text, not the policy's action, so a trainer must leave its tokens out of
the loss (`rlsurvey.algos.multiturn`). A malformed call gets an error observation (`{error:...}`) and the
episode goes on. The verifier (`accuracy_reward`) reads the text after the last observation strictly, and the
last observation itself when nothing follows it.

`evaluate` is an exact evaluator written for one grammar, never Python's `eval`:

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "//") factor)*
    factor := "-" factor | "(" expr ")" | digits

Integers only; `//` floors as integer division does; spaces are ignored. The call's length, every number's
and every intermediate result's digits and the nesting depth are bounded, so no input makes it slow or large.

`ToolEnv` is the interface for another tool: subclass it and write `run(call) -> str` (raise `ToolError` for
bad input); `observe` wraps the result as an observation and bounds its length, and `reset(prompt)` returns
the environment of one episode (itself, for a stateless tool). Mapping to the libraries' conventions:

- TRL's GRPOTrainer: a stateless tool is a plain function passed in `tools`; a stateful one is a class given
  as `environment_factory`, one instance per rollout, whose `reset` starts the episode and whose public
  methods are the tools. Here `reset(prompt)` plays the factory's part and `run` the tool's. TRL renders a
  call and its result through the model's chat template and keeps the tool result out of the loss; here the
  call and result are delimited by single characters (a chat template is text too) and the mask is
  `rlsurvey.algos.multiturn`'s action mask. TRL bounds the number of calls per rollout
  (`max_tool_calling_iterations`); here `max_turns` bounds the policy's turns (at most `max_turns - 1`
  calls are answered).
- verl's multi-turn rollout: a tool is a `BaseTool` subclass with `create` (per trajectory), `execute` (one
  call, returning the response), `calc_reward` and `release`; `reset` maps to `create`, `run` to `execute`,
  and the reward stays with the verifier (`accuracy_reward`). verl's `max_assistant_turns` is `max_turns`,
  its `max_tool_response_length` (with truncation) is `max_observation_chars` (here an over-long result is
  replaced by an error, since a cut number is a wrong number), and its loss mask, 1 on the assistant's
  tokens only, is the action mask.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlsurvey.tasks.arithmetic import _check_n, check_pairs

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "OBS_CLOSE",
    "OBSERVATION_ALPHABET",
    "OBS_OPEN",
    "CalcError",
    "CalculatorEnv",
    "FlakyCalculatorEnv",
    "ToolConfig",
    "ToolEnv",
    "ToolError",
    "accuracy_reward",
    "answer",
    "evaluate",
    "final_answer",
    "make_corpus",
    "n_calls",
    "sample_problems",
    "sample_prompts",
    "tool_solution",
]

CALL_OPEN, CALL_CLOSE = "<", ">"
OBS_OPEN, OBS_CLOSE = "{", "}"
# every character an observation can hold (results, and the error messages' words): a tokenizer for this
# world covers them all, so that no observation decodes to an unknown token
OBSERVATION_ALPHABET = "{}-0123456789:() abcdefghijklmnopqrstuvwxyz"
_NUMBER = re.compile(r"^(?:0|[1-9][0-9]*)$")
_PROMPT = re.compile(r"^[0-9]+(?:[*+][0-9]+)+=$")


class ToolError(ValueError):
    """A tool call the tool cannot answer; its message (a few words) becomes the error observation."""


class CalcError(ToolError):
    """An expression outside the calculator's grammar or its bounds."""


# ----------------------------------------------------------------------------------------------- evaluator


def _tokens(expr: str, max_digits: int) -> list[str]:
    out, i = [], 0
    while i < len(expr):
        c = expr[i]
        if c == " ":
            i += 1
        elif c.isdigit() and c.isascii():
            j = i
            while j < len(expr) and expr[j].isascii() and expr[j].isdigit():
                j += 1
            if j - i > max_digits:  # before int(): no conversion of a huge digit string
                raise CalcError("number too long")
            out.append(expr[i:j])
            i = j
        elif expr.startswith("//", i):
            out.append("//")
            i += 2
        elif c in "+-*()":
            out.append(c)
            i += 1
        else:
            raise CalcError("bad character")
    return out


class _Parser:
    """Recursive descent over the token list; every result is checked against the digit bound."""

    def __init__(self, tokens: list[str], max_digits: int, max_depth: int):
        self.tokens, self.pos, self.limit, self.max_depth = tokens, 0, 10**max_digits, max_depth

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise CalcError("unexpected end")
        self.pos += 1
        return tok

    def check(self, value: int) -> int:
        if abs(value) >= self.limit:
            raise CalcError("result too large")
        return value

    def expr(self, depth: int) -> int:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = self.check(value + rhs if op == "+" else value - rhs)
        return value

    def term(self, depth: int) -> int:
        value = self.factor(depth)
        while self.peek() in ("*", "//"):
            op = self.take()
            rhs = self.factor(depth)
            if op == "//" and rhs == 0:
                raise CalcError("division by zero")
            value = self.check(value * rhs if op == "*" else value // rhs)
        return value

    def factor(self, depth: int) -> int:
        if depth > self.max_depth:
            raise CalcError("too deep")
        tok = self.take()
        if tok == "-":
            return self.check(-self.factor(depth + 1))
        if tok == "(":
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise CalcError("expected )")
            return value
        if tok.isdigit():
            return self.check(int(tok))
        raise CalcError("syntax")


def evaluate(expr: str, max_digits: int = 30, max_depth: int = 8, max_length: int = 64) -> int:
    """The exact integer value of `expr` in the grammar of the module docstring; raises `CalcError` (a short
    message) for anything else: a character outside the grammar, a syntax error, an unbalanced parenthesis,
    division by zero, an input longer than `max_length` characters, a number or an intermediate result of
    more than `max_digits` digits, or more than `max_depth` nested parentheses and signs."""
    if not isinstance(expr, str):
        raise CalcError("not text")
    if len(expr) > max_length:
        raise CalcError("call too long")
    parser = _Parser(_tokens(expr, max_digits), max_digits, max_depth)
    if parser.peek() is None:
        raise CalcError("empty call")
    value = parser.expr(0)
    if parser.peek() is not None:
        raise CalcError("syntax")
    return value


# ----------------------------------------------------------------------------------------------- environment


class ToolEnv(ABC):
    """A tool the policy calls inside its response: `CALL_OPEN` call `CALL_CLOSE`, answered by the
    observation `OBS_OPEN` result `OBS_CLOSE`. Subclasses write `run`; the rest is shared.

    max_turns: the most policy turns per episode (a turn ends at a call, at EOS or at the token budget);
    max_observation_chars: the longest observation, delimiters included."""

    call_open, call_close = CALL_OPEN, CALL_CLOSE
    obs_open, obs_close = OBS_OPEN, OBS_CLOSE
    max_turns: int = 3
    max_observation_chars: int = 24

    @abstractmethod
    def run(self, call: str) -> str:
        """The tool's answer to the text between the call's delimiters; raise `ToolError` for bad input."""

    def reset(self, prompt: str) -> ToolEnv:
        """The environment of one episode on `prompt` (a stateful tool returns a fresh instance)."""
        return self

    def error(self, message: str) -> str:
        """The error observation `{error:message}`, the message cut to fit `max_observation_chars`."""
        head, tail = f"{self.obs_open}error:", self.obs_close
        room = max(0, self.max_observation_chars - len(head) - len(tail))
        return f"{head}{message[:room]}{tail}"

    def bound(self, observation: str) -> str:
        """`observation`, or the error "too long" when it is longer than `max_observation_chars`."""
        return observation if len(observation) <= self.max_observation_chars else self.error("too long")

    def observe(self, turn: str) -> str | None:
        """The observation that answers a policy turn, or None when the turn calls nothing (it opens no call
        and closes none: an answer). The call is the text between the turn's first `call_open` and the first
        `call_close` after it; text after the close (a token that holds more than one character) is
        ignored. Never raises, whatever the turn holds: a malformed, nested or unterminated call, or a
        `ToolError` from `run`, is answered with an error observation."""
        if not isinstance(turn, str):
            return self.error("not text")
        start = turn.find(self.call_open)
        close = turn.find(self.call_close, start + 1 if start >= 0 else 0)
        if start < 0 and close < 0:
            return None
        if start < 0 or (close >= 0 and turn.find(self.call_close) < start):
            return self.error("unopened call")
        if close < 0:
            return self.error("unterminated")
        try:
            result = self.run(turn[start + len(self.call_open) : close])
        except ToolError as exc:
            return self.error(str(exc) or "bad call")
        if not isinstance(result, str):
            return self.error("not text")
        return self.bound(f"{self.obs_open}{result}{self.obs_close}")


@dataclass
class CalculatorEnv(ToolEnv):
    """The calculator of the tool world: `run` is `evaluate` with these bounds."""

    max_turns: int = 3  # policy turns per episode: at most max_turns - 1 calls are answered
    max_observation_chars: int = 24  # the longest observation, delimiters included
    max_digits: int = 18  # digits of any number or intermediate result
    max_depth: int = 8  # nested parentheses and signs
    max_call_chars: int = 48  # the longest call

    def __post_init__(self):
        for name, low in (("max_turns", 1), ("max_observation_chars", 8), ("max_digits", 1),
                          ("max_depth", 1), ("max_call_chars", 1)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")

    def run(self, call: str) -> str:
        return str(evaluate(call, self.max_digits, self.max_depth, self.max_call_chars))


@dataclass
class FlakyCalculatorEnv(CalculatorEnv):
    """The calculator behind a busy server: each call fails, independently, with probability `failure_rate`,
    answered by the error observation `{error:busy try again}` (a retry may succeed). The failures are drawn
    from one generator seeded by `seed`, so a run's episodes are repeatable. The policy cannot prevent a
    failure; it can only retry. Chapter 16 trains on it to show what the observation mask is for."""

    failure_rate: float = 0.4
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        r = self.failure_rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise ValueError(f"failure_rate must be a number in [0, 1], got {r!r}")
        self._rng = np.random.default_rng(self.seed)

    def run(self, call: str) -> str:
        if self._rng.random() < self.failure_rate:
            raise ToolError("busy try again")
        return super().run(call)


# ----------------------------------------------------------------------------------------------- problems


@dataclass
class ToolConfig:
    product_fraction: float = 0.5  # share of products a*b; the rest are sums
    product_digits: int = 2  # digits of each factor of a product
    sum_terms: tuple[int, int] = (4, 5)  # a sum has this many terms (inclusive range)
    sum_digits: int = 2  # digits of each term of a sum

    def __post_init__(self):
        if not 0 <= self.product_fraction <= 1:
            raise ValueError(f"product_fraction must be in [0, 1], got {self.product_fraction!r}")
        for name in ("product_digits", "sum_digits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 6:
                raise ValueError(f"{name} must be an int in [1, 6], got {v!r}")
        lo, hi = self.sum_terms = tuple(self.sum_terms)
        if not 2 <= lo <= hi <= 12:
            raise ValueError(f"sum_terms must be (lo, hi) with 2 <= lo <= hi <= 12, got {self.sum_terms!r}")


def _config(config: ToolConfig | None, kwargs: dict) -> ToolConfig:
    if config is not None and kwargs:
        raise ValueError(f"give either config or its fields, not both (got fields {sorted(kwargs)})")
    return config or ToolConfig(**kwargs)


def _operand(rng: np.random.Generator, digits: int) -> int:
    return int(rng.integers(10 ** (digits - 1) if digits > 1 else 0, 10**digits))


def sample_problems(n: int, seed: int = 0, config: ToolConfig | None = None, **kwargs):
    """`n` problems as (prompt, answer) pairs, e.g. ("37*58=", 2146), deterministic under `seed`."""
    c = _config(config, kwargs)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(_check_n(n)):
        if rng.random() < c.product_fraction:
            a, b = _operand(rng, c.product_digits), _operand(rng, c.product_digits)
            out.append((f"{a}*{b}=", a * b))
        else:
            terms = [
                _operand(rng, c.sum_digits)
                for _ in range(int(rng.integers(c.sum_terms[0], c.sum_terms[1] + 1)))
            ]
            out.append(("+".join(map(str, terms)) + "=", sum(terms)))
    return out


def sample_prompts(n: int, seed: int = 0, config: ToolConfig | None = None, **kwargs) -> list[str]:
    """`n` prompts such as "37*58=" (the RL prompts)."""
    return [p for p, _ in sample_problems(n, seed, config, **kwargs)]


def answer(prompt: str) -> int:
    """The exact value of a prompt such as "37*58=" or "12+45+78=" (through the calculator's grammar)."""
    if not isinstance(prompt, str) or not _PROMPT.match(prompt):
        raise ValueError(f"prompt must look like '37*58=' or '12+45+78=', got {prompt!r}")
    return evaluate(prompt[:-1], max_digits=40, max_length=len(prompt))


def tool_solution(prompt: str) -> str:
    """The response that calls the calculator on the prompt and lets its result stand: "<37*58>{2146}"."""
    value = answer(prompt)
    return f"{CALL_OPEN}{prompt[:-1]}{CALL_CLOSE}{OBS_OPEN}{value}{OBS_CLOSE}"


def final_answer(completion: str) -> int | None:
    """The answer of an episode: the text after its last observation (the whole text without one), or, when
    nothing but whitespace follows the last observation, that observation's content; read strictly as a
    canonical non-negative integer (surrounding whitespace ignored); None if it is not one (an error)."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    end = completion.rfind(OBS_CLOSE)
    tail = completion[end + 1 :].strip()
    if not tail and end >= 0:  # the result stands: the observation's content is the answer
        tail = completion[completion.rfind(OBS_OPEN, 0, end) + 1 : end].strip()
    return int(tail) if _NUMBER.match(tail) and len(tail) <= 40 else None


def n_calls(completion: str) -> int:
    """The number of answered calls in an episode's text (observations the environment appended)."""
    return len(re.findall(rf"{re.escape(CALL_CLOSE)}{re.escape(OBS_OPEN)}[^{OBS_CLOSE}]*{OBS_CLOSE}",
                          completion))  # fmt: skip


def accuracy_reward(prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
    """1.0 where the episode's final answer (`final_answer`) is the prompt's value, else 0.0; with or
    without a call alike: the reward judges the answer, not the route."""
    prompts, completions = check_pairs(prompts, completions)
    return np.array([float(final_answer(c) == answer(p)) for p, c in zip(prompts, completions)])


def make_corpus(
    n: int,
    seed: int = 0,
    tool_fraction: float = 0.2,
    wrong_fraction: float = 0.7,
    config: ToolConfig | None = None,
    **kwargs,
) -> list[str]:
    """`n` pretraining lines `prompt + response`: a fraction `tool_fraction` (in expectation) call the
    calculator (`tool_solution`); the rest answer directly, a fraction `wrong_fraction` of them wrong (off
    by 1, 10 or 100), so that a model that imitates it calls the tool on a minority of prompts."""
    for name, v in (("tool_fraction", tool_fraction), ("wrong_fraction", wrong_fraction)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    rng = np.random.default_rng(seed + 1)
    lines = []
    for prompt, value in sample_problems(n, seed, config, **kwargs):
        if rng.random() < tool_fraction:
            lines.append(prompt + tool_solution(prompt))
        else:
            wrong = rng.random() < wrong_fraction
            off = int(rng.choice([1, 10, 100])) * (1 if value < 100 or rng.random() < 0.5 else -1)
            lines.append(f"{prompt}{value + off if wrong else value}")
    return lines
