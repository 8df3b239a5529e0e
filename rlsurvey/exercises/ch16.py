"""Checks for the exercises of chapter 16 (agents: multi-turn RL with a tool in the loop).

1. `check_sum_tool(fn)`: fn(call) -> str is the `run` of a `rlsurvey.tasks.tools.ToolEnv` for sums: it adds
   non-negative integers written `a+b+...` (at most 8 terms of at most 6 digits each) and raises `ToolError`
   for anything else; the chapter's calculator takes a whole grammar, this tool only sums. The check puts it
   in a ToolEnv and compares its observations with a reference's on calls right and wrong, hostile ones
   included.
2. `check_signal_share(fn)`: fn(f, p_call, p_direct, k) -> the expected share of GRPO groups of K = k
   episodes whose rewards are not all equal (the groups that carry a gradient), for a policy that calls the
   tool with probability f (its call rate) and is right with probability p_call when it calls and p_direct
   when it does not, episodes independent.
3. `check_character_mask(fn)`: fn(text) -> a list of 0/1, one per character of an episode's text in the
   calculator world: 1 on what the policy wrote, 0 on the observations `{...}` that the environment appended
   (braces included). The chapter builds the token mask of one scripted episode; this is every episode.
"""

from __future__ import annotations

from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.tasks import tools

__all__ = [
    "EXERCISES",
    "check_character_mask",
    "check_signal_share",
    "check_sum_tool",
    "reference_character_mask",
    "reference_signal_share",
    "reference_sum_tool",
]


# --- 1. a tool of one's own --------------------------------------------------------------------------------


def reference_sum_tool(call: str) -> str:
    terms = call.split("+")
    if not 1 <= len(terms) <= 8:
        raise tools.ToolError("too many terms")
    for t in terms:
        if not (t.isascii() and t.isdigit()) or len(t) > 6:
            raise tools.ToolError("not a sum")
    return str(sum(int(t) for t in terms))


def _as_tool(run) -> tools.ToolEnv:
    """A ToolEnv whose `run` is the function `run(call)`."""
    return type("SumTool", (tools.ToolEnv,), {"run": lambda self, call: run(call)})()


_SUM_TURNS = [
    "<12+30>", "<5>", "<0+0+0>", "<999999+1>", "<1+2+3+4+5+6+7+8>", "<1+2+3+4+5+6+7+8+9>", "<1234567+1>",
    "<3*4>", "<12+-3>", "<+5>", "<5+>", "<>", "<1 + 2>", "<__import__('os')>", "<(1+2)>", "<٣+1>",
    "<9" + "9" * 10_000 + "+1>", "<1+2", "1+2>", "42", "<1+2><3+4>",
]  # fmt: skip


def check_sum_tool(fn) -> bool:
    """Your `run(call)` of a ToolEnv for sums: its observations must equal the reference's on every turn."""
    name = "sum tool"
    hint = (
        "split the call on '+', check that there are 1 to 8 terms and that every term is ASCII digits (at "
        "most 6), raise tools.ToolError otherwise; ToolEnv.observe does the rest."
    )
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function run(call) -> str, got {fn!r}. Hint: {hint}")
    env, ref = _as_tool(fn), _as_tool(reference_sum_tool)
    for turn in _SUM_TURNS:
        got, want = call_safely(name, env.observe, turn), ref.observe(turn)
        ok_got = got is not None and not got.startswith(f"{tools.OBS_OPEN}error")
        ok_want = want is not None and not want.startswith(f"{tools.OBS_OPEN}error")
        if (got is None) != (want is None) or ok_got != ok_want or (ok_want and got != want):
            shown = turn if len(turn) < 40 else turn[:20] + "..." + turn[-10:]
            raise ExerciseError(f"{name}: on the turn {shown!r} expected {want!r}, got {got!r}. Hint: {hint}")
    return passed(name)


# --- 2. groups with a signal -------------------------------------------------------------------------------


def reference_signal_share(f: float, p_call: float, p_direct: float, k: int) -> float:
    p = f * p_call + (1 - f) * p_direct  # one episode's chance of being right (f: the call rate)
    return 1.0 - p**k - (1.0 - p) ** k  # neither all right nor all wrong


def check_signal_share(fn) -> bool:
    """Your expected share of groups of K episodes whose rewards differ."""
    name = "signal share"
    hint = (
        "an episode is right with probability p = f p_call + (1 - f) p_direct (f the call rate); a group "
        "carries no signal when its K episodes are all right or all wrong."
    )
    for f in (0.0, 0.3, 1.0):
        for p_call, p_direct in ((0.9, 0.05), (0.5, 0.5), (1.0, 0.0)):
            for k in (1, 2, 8):
                got = call_safely(name, fn, f, p_call, p_direct, k)
                want = reference_signal_share(f, p_call, p_direct, k)
                assert_close(name, float(got), want, hint=hint, atol=1e-9)
    return passed(name)


# --- 3. the mask of any episode ----------------------------------------------------------------------------


def reference_character_mask(text: str) -> list[int]:
    mask, inside = [], False
    for ch in text:
        if ch == tools.OBS_OPEN:
            inside = True
        mask.append(0 if inside else 1)
        if ch == tools.OBS_CLOSE:
            inside = False
    return mask


_MASK_CASES = [
    "2146", "<37*58>{2146}", "<37*58>{2146}2146", "<37*5>{185}<37*58>{2146}", "<9//0>{error:syntax}",
    "<9//0>{error:division by zero}<9*9>{81}81", "", "<37*58", "<1+1>{2}<2+2>{4}<4+4>{8}8",
]  # fmt: skip


def check_character_mask(fn) -> bool:
    """Your per-character action mask of a calculator-world episode."""
    name = "character mask"
    hint = (
        "an observation runs from an OBS_OPEN '{' to the next OBS_CLOSE '}', both included; every other "
        "character, calls and answers alike, is the policy's."
    )
    for text in _MASK_CASES:
        got = [int(v) for v in call_safely(name, fn, text)]
        want = reference_character_mask(text)
        if got != want:
            raise ExerciseError(f"{name}: for {text!r} expected {want}, got {got}. Hint: {hint}")
    return passed(name)


EXERCISES = (
    Exercise(1, "A tool of your own", check_sum_tool, reference_sum_tool,
             lambda call: str(tools.evaluate(call))),
    Exercise(2, "Groups that carry a signal", check_signal_share, reference_signal_share,
             lambda f, p_call, p_direct, k: 1.0 - (f * p_call + (1 - f) * p_direct) ** k),
    Exercise(3, "The mask of any episode", check_character_mask, reference_character_mask,
             lambda text: [0 if ch in "{}" else 1 for ch in text]),
)  # fmt: skip
