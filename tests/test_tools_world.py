"""The tool world: the calculator's exact evaluator, the tool environment's observations, the problems and the
verifier. No input makes the environment raise or run anything but the grammar."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.tasks import tools as tw

ENV = tw.CalculatorEnv()


def _brute(expr: str) -> int:
    """The brute-force twin of `evaluate` for flat expressions (no parentheses, no unary minus): integer
    values term by term, with `//` as the floor of the exact rational quotient."""
    total, sign = 0, 1
    for part in re.split(r"([+-])", expr.replace(" ", "")):
        if part in "+-":
            sign = 1 if part == "+" else -1
            continue
        factors = re.split(r"(\*|//)", part)
        value = int(factors[0])
        for op, x in zip(factors[1::2], factors[2::2]):
            value = value * int(x) if op == "*" else int(Fraction(value, int(x)).__floor__())
        total += sign * value
    return total


@given(
    st.lists(st.integers(0, 999), min_size=1, max_size=5),
    st.lists(st.sampled_from(["+", "-", "*", "//"]), min_size=4, max_size=4),
)
def test_evaluate_equals_the_brute_force_value_on_flat_expressions(nums, ops):
    ops = [op if not (op == "//" and nums[i + 1] == 0) else "+" for i, op in enumerate(ops[: len(nums) - 1])]
    expr = str(nums[0]) + "".join(op + str(x) for op, x in zip(ops, nums[1:]))
    assert tw.evaluate(expr) == _brute(expr)


@pytest.mark.parametrize(
    "expr, value",
    [("2+3*4", 14), ("(2+3)*4", 20), ("7//2", 3), ("-7//2", -4), ("7//-2", -4), ("2-3-4", -5),
     ("--5", 5), (" 12 * 3 ", 36), ("100//7*7+100-100//7*7", 100), ("0", 0), ("007", 7)],
)  # fmt: skip
def test_evaluate_follows_precedence_associativity_and_floor_division(expr, value):
    assert tw.evaluate(expr) == value


PYTHON = [
    "__import__('os').system('echo hi')", "__import__", "(1).real", "1 .real", "().__class__", "x", "a+b",
    "eval('1')", "exec('1')", "open('f')", "1;2", "1,2", "[1]", "{1}", "1 if 1 else 2", "lambda:1", "1e3",
    "1.5", "0x10", "1_000", "2**3", "2^3", "1/2", "5%3", "1<2", "'1'", "\\x31", "١٢", "²",
]  # fmt: skip


@pytest.mark.parametrize("expr", PYTHON)
def test_python_syntax_and_names_are_refused(expr, monkeypatch):
    import builtins

    def forbidden(*a, **k):
        raise AssertionError("the calculator must never call eval, exec or compile")

    for name in ("eval", "exec", "compile", "__import__"):
        monkeypatch.setattr(builtins, name, forbidden)
    with pytest.raises(tw.CalcError):
        tw.evaluate(expr)
    obs = ENV.observe(f"<{expr}>")
    assert obs.startswith("{error:") and obs.endswith("}")


@pytest.mark.parametrize(
    "turn, message",
    [
        ("<3*4", "unterminated"),  # no closing marker
        ("<(3*4>", "unexpected end"),  # an unbalanced parenthesis
        ("<3*4)>", "syntax"),
        ("<3*<4+5>>", "bad character"),  # a nested call
        ("<<3>>", "bad character"),
        ("3*4>", "unopened call"),
        ("><3>", "unopened call"),
        ("<>", "empty call"),
        ("<   >", "empty call"),
        ("<3+>", "unexpected end"),
        ("<*3>", "syntax"),
        ("<3 4>", "syntax"),
        ("<1//0>", "division by zero"),
        ("<5//(3-3)>", "division by zero"),
        ("<((((((((((1))))))))))>", "too deep"),
        ("<" + "-" * 20 + "1>", "too deep"),
        ("<" + "9" * 19 + ">", "number too long"),
        ("<999999999*999999999*99>", "result too large"),
        ("<" + "1+" * 30 + "1>", "call too long"),
    ],
)
def test_malformed_calls_get_an_error_observation(turn, message):
    assert ENV.observe(turn) == "{error:" + message + "}"


def test_an_enormous_number_is_refused_before_it_is_converted():
    huge = "9" * 10_000  # int() of it would raise ValueError past Python's digit limit (4300)
    assert ENV.observe(f"<{huge}>") == "{error:call too long}"
    assert ENV.observe(f"<{huge}*{huge}>") == "{error:call too long}"
    with pytest.raises(tw.CalcError, match="number too long"):
        tw.evaluate(huge, max_length=100_000)
    with pytest.raises(tw.CalcError, match="result too large"):
        tw.evaluate("9" * 30 + "*" + "9" * 30, max_digits=40, max_length=100)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_observe_never_raises_and_every_observation_is_bounded(text):
    for turn in (text, f"<{text}>", f"<{text}", f"{text}>"):
        obs = ENV.observe(turn)
        assert obs is None or (
            len(obs) <= ENV.max_observation_chars and obs.startswith("{") and obs.endswith("}")
        )


@given(st.text(alphabet="0123456789+-*/() ", max_size=40))
def test_grammar_text_either_evaluates_exactly_or_raises_calc_error(text):
    try:
        value = tw.evaluate(text, ENV.max_digits, ENV.max_depth, ENV.max_call_chars)
    except tw.CalcError:
        return
    assert isinstance(value, int) and abs(value) < 10**ENV.max_digits
    assert ENV.observe(f"<{text}>") in (f"{{{value}}}", "{error:too long}")


def test_a_result_longer_than_the_observation_bound_is_an_error_not_a_cut_number():
    env = tw.CalculatorEnv(max_observation_chars=8)
    assert env.observe("<12*3>") == "{36}"
    assert env.observe("<123456*1000>") == env.error("too long") == "{error:}"
    assert len(env.observe("<123456*1000>")) <= 8
    assert env.observe("<1//0>") == env.error("division by zero") and len(env.error("x" * 50)) <= 8


def test_another_tool_through_the_interface():
    class Reverse(tw.ToolEnv):
        max_observation_chars = 12

        def run(self, call: str) -> str:
            if not call.isalpha():
                raise tw.ToolError("letters only")
            return call[::-1]

    env = Reverse()
    assert env.observe("ok <abc>") == "{cba}"
    assert env.observe("<ab1>") == env.error("letters only") == "{error:lett}"
    assert env.observe("<" + "a" * 30 + ">") == env.error("too long")
    assert env.observe("no call") is None and env.reset("p") is env


def test_environment_settings_are_checked():
    with pytest.raises(ValueError, match="max_turns"):
        tw.CalculatorEnv(max_turns=0)
    with pytest.raises(ValueError, match="max_observation_chars"):
        tw.CalculatorEnv(max_observation_chars=2)


def test_problems_solutions_and_the_verifier():
    problems = tw.sample_problems(300, seed=1)
    assert problems == tw.sample_problems(300, seed=1) != tw.sample_problems(300, seed=2)
    kinds = {"*" in p for p, _ in problems}
    assert kinds == {True, False}
    for prompt, value in problems:
        assert tw.answer(prompt) == value == _brute(prompt[:-1])
        sol = tw.tool_solution(prompt)
        assert ENV.observe(sol[: sol.index(">") + 1]) == f"{{{value}}}"
        assert tw.final_answer(sol) == value and tw.n_calls(sol) == 1
    prompt, value = "37*58=", 2146
    # the text after the last observation is the answer; with nothing after it, the observation is
    cases = {
        "2146": 1, " 2146\n": 1, "<37*58>{2146}2146": 1, "<37*5>{185}<37*58>{2146}2146": 1,
        "2147": 0, "<37*58>{2146}": 1, "<37*58>{2146} ": 1, "<37*58>{2146}2146 ": 1, "<37*58>{2146}02146": 0,
        "<37*58>{2146}2147": 0, "<37*5>{185}": 0, "<37*58>{2146}<37*5>{185}": 0, "<9//0>{error:syntax}": 0,
        "<37*58>{2146}2146x": 0, "<37*58": 0, "": 0, "{2146}2146": 1, "-2146": 0, "}": 0, "{}": 0,
    }  # fmt: skip
    got = tw.accuracy_reward([prompt] * len(cases), list(cases))
    assert got.tolist() == [float(v) for v in cases.values()]
    assert tw.n_calls("<37*5>{185}<37*58>{2146}2146") == 2 and tw.n_calls("2146") == 0
    with pytest.raises(ValueError, match="prompt"):
        tw.answer("37/58=")


def test_the_corpus_calls_the_tool_on_a_minority_and_is_often_wrong_without_it():
    lines = tw.make_corpus(2000, seed=0, tool_fraction=0.2, wrong_fraction=0.7)
    calls = [ln for ln in lines if "<" in ln]
    assert 0.15 < len(calls) / len(lines) < 0.25
    prompts = [ln[: ln.index("=") + 1] for ln in lines]
    right = tw.accuracy_reward(prompts, [ln[ln.index("=") + 1 :] for ln in lines])
    tool_right = [r for r, ln in zip(right, lines) if "<" in ln]
    direct_right = [r for r, ln in zip(right, lines) if "<" not in ln]
    assert min(tool_right) == 1.0 and 0.2 < sum(direct_right) / len(direct_right) < 0.4


def test_the_flaky_calculator_fails_at_its_rate_repeatably_and_never_raises():
    env = tw.FlakyCalculatorEnv(failure_rate=0.4, seed=3)
    obs = [env.observe("<37*58>") for _ in range(2000)]
    again = tw.FlakyCalculatorEnv(failure_rate=0.4, seed=3)
    assert obs == [again.observe("<37*58>") for _ in range(2000)]
    assert set(obs) == {"{2146}", "{error:busy try again}"}
    share = obs.count("{error:busy try again}") / len(obs)
    assert abs(share - 0.4) < 3 * (0.4 * 0.6 / len(obs)) ** 0.5  # binomial: within 3 standard errors
    assert len("{error:busy try again}") <= env.max_observation_chars
    assert set("{error:busy try again}") <= set(tw.OBSERVATION_ALPHABET)
    never = tw.FlakyCalculatorEnv(failure_rate=0.0)
    assert {never.observe("<2*3>") for _ in range(50)} == {"{6}"}
    always = tw.FlakyCalculatorEnv(failure_rate=1.0)
    assert always.observe("<2*3>") == "{error:busy try again}" and always.observe("9") is None
    assert always.observe("<__import__('os')>").startswith("{error:")
    for bad in (-0.1, 1.5, "0.3", True):
        with pytest.raises(ValueError, match="failure_rate"):
            tw.FlakyCalculatorEnv(failure_rate=bad)
