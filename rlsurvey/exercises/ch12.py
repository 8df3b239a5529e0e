"""Checks for the exercises of chapter 12 (RL for reasoning with verifiable rewards, survey section 3 of arXiv
2412.10400: SFT, GRPO and Dr. GRPO on the reasoning world).

1. `check_step_verifier(fn)`: fn(prompt, completion) -> bool, a *process* check of the reasoning world: True
   only when the response reasons, every step is right arithmetic that continues from the previous result
   with the prompt's next operator and operand, and the final answer is the last step's result.
2. `check_sft_labels(fn)`: fn(examples, pad_id) -> (input_ids, attention_mask, labels), a right-padded batch
   in Hugging Face's causal-LM convention, with -100 wherever no loss is taken (prompt and padding).
3. `check_token_weights(fn)`: fn(advantages [B], lengths [B], aggregation, L) -> [B], the weight that each
   token of response i gets in the policy-gradient loss, d loss / d log π(o_i,t), for GRPO's
   "sequence_mean", "token_mean" and Dr. GRPO's "constant".
4. `check_baseline_shrink(value)`: the factor by which the group-mean baseline (the sample itself included)
   shrinks the expected policy gradient, for a group of `SHRINK_G` samples.

None of these is computed in a cell of the chapter: exercise 1 asks for more than the package's verifier
(which reads only the final answer) and its format reward (which reads only the layout), exercise 2 for what
`rlsurvey.algos.sft` does without building labels, exercise 3 for the gradient that section 7 measures only
through its effect on length. Each check runs the reader's answer on inputs it has not seen and compares
with the reference solution below.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlsurvey.algos.policy_loss import aggregate, clipped_surrogate
from rlsurvey.exercises import Exercise, ExerciseError, assert_close, call_safely, passed
from rlsurvey.tasks import reasoning

__all__ = [
    "EXERCISES",
    "SHRINK_G",
    "check_baseline_shrink",
    "check_sft_labels",
    "check_step_verifier",
    "check_token_weights",
    "reference_baseline_shrink",
    "reference_sft_labels",
    "reference_step_verifier",
    "reference_token_weights",
]

SHRINK_G = 6  # the group size of exercise 4 (section 2 measures G = 4)


# --- 1. a process check of the reasoning -------------------------------------------------------------------


def reference_step_verifier(prompt: str, completion: str) -> bool:
    """Every step `a±b=c` is right, starts from the previous result (the prompt's first number for the
    first step), uses the prompt's next operator and operand, and the final answer is the last result."""
    parsed = reasoning.parse(completion)
    if parsed.answer is None or parsed.think is None:
        return False
    numbers = [int(d) for d in prompt[:-1].replace("-", "+").split("+")]
    ops = [ch for ch in prompt[:-1] if ch in "+-"]
    if len(parsed.steps) != len(ops):
        return False
    value = numbers[0]
    for step, op, b in zip(parsed.steps, ops, numbers[1:]):
        want = f"{value}{op}{b}={value + b if op == '+' else value - b}"
        if step != want:
            return False
        value = value + b if op == "+" else value - b
    return parsed.answer == value


def _step_cases() -> list[tuple[str, str]]:
    rng = np.random.default_rng(12)
    prompts = reasoning.sample_prompts(40, seed=1212)
    cases = []
    for i, p in enumerate(prompts):
        good = reasoning.worked_solution(p)
        think, ans = good[1:].split("]")
        steps = think.split(";")
        kind = i % 8
        if kind == 0:
            cases.append((p, good))  # right throughout
        elif kind == 1:  # a wrong middle result, final answer still right
            k = int(rng.integers(len(steps)))
            a, c = steps[k].split("=")
            steps[k] = f"{a}={int(c) + 1}"
            cases.append((p, "[" + ";".join(steps) + "]" + ans))
        elif kind == 2:  # a skipped step: the answer right, the chain one step short
            cases.append((p, "[" + ";".join(steps[:-2] + steps[-1:]) + "]" + ans))
        elif kind == 3:  # right steps, wrong final answer
            cases.append((p, "[" + think + "]" + str(int(ans) + 1)))
        elif kind == 4:  # a direct answer, right
            cases.append((p, ans))
        elif kind == 5:  # steps that are right arithmetic but not the prompt's operands
            a, c = steps[0].split("=")
            x, y = a.split("+") if "+" in a else a.split("-")
            other = (int(y) + 1) % 10
            op = "+" if "+" in a else "-"
            value = int(x) + other if op == "+" else int(x) - other
            if value < 0:
                cases.append((p, good))
                continue
            cases.append((p, f"[{x}{op}{other}={value}]" + str(value)))
        elif kind == 6:  # malformed: text after the answer
            cases.append((p, good + "!"))
        else:  # the answer before the reasoning
            cases.append((p, ans + "[" + think + "]"))
    return cases


def check_step_verifier(fn) -> bool:
    """fn(prompt: str, completion: str) -> bool: the response's reasoning is right step by step."""
    name = "step verifier"
    hint = (
        "parse the response with rlsurvey.tasks.reasoning.parse; refuse it unless it reasons, then walk the "
        "prompt's operators and operands in order from its first number: step k must read exactly "
        "'<previous result><op><operand>=<new result>', there must be one step per operator, and the final "
        "answer must equal the last result."
    )
    for prompt, completion in _step_cases():
        got = call_safely(name, fn, prompt, completion)
        if not isinstance(got, (bool, np.bool_)):
            raise ExerciseError(f"{name}: expected a bool, got {type(got).__name__}. Hint: {hint}")
        want = reference_step_verifier(prompt, completion)
        if bool(got) != want:
            verdict = "accepted" if got else "refused"
            raise ExerciseError(f"{name}: {verdict} {prompt}{completion!r}. Hint: {hint}")
    return passed(name)


# --- 2. SFT labels -----------------------------------------------------------------------------------------


def reference_sft_labels(examples, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] input ids (prompt then completion), attention mask, and labels equal to the
    input ids on completion tokens and -100 elsewhere (the model shifts them by one internally)."""
    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, c) in enumerate(examples):
        seq = list(p) + list(c)
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(p) : len(seq)] = torch.tensor(list(c))
    return ids, mask, labels


def check_sft_labels(fn) -> bool:
    """fn(examples: list of (prompt ids, completion ids), pad_id: int) -> (input_ids, attention_mask,
    labels), three [B, T] integer tensors."""
    name = "SFT labels"
    hint = (
        "concatenate prompt and completion, pad on the right to the longest example, mask 1 on real tokens; "
        "labels copy the input ids on completion tokens only and are -100 on the prompt and the padding "
        "(Hugging Face shifts labels by one inside the model, so do not shift them yourself)."
    )
    rng = np.random.default_rng(5)
    for batch in (2, 3, 5):
        sizes = [(int(rng.integers(1, 7)), int(rng.integers(1, 6))) for _ in range(batch)]
        examples = [(rng.integers(3, 50, p).tolist(), rng.integers(3, 50, c).tolist()) for p, c in sizes]
        got = call_safely(name, fn, [(list(p), list(c)) for p, c in examples], 0)
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise ExerciseError(f"{name}: expected (input_ids, attention_mask, labels). Hint: {hint}")
        for part, g, w in zip(
            ("input_ids", "attention_mask", "labels"), got, reference_sft_labels(examples, 0)
        ):
            assert_close(f"{name} ({part})", torch.as_tensor(g), w, hint=hint, atol=0, rtol=0)
    return passed(name)


# --- 3. how each aggregation weighs a response's tokens ----------------------------------------------------


def reference_token_weights(advantages, lengths, aggregation: str, max_tokens: int) -> torch.Tensor:
    """d loss / d log π(o_i,t) at ratio 1: −A_i / (B |o_i|) (sequence_mean), −A_i / Σ_j |o_j| (token_mean),
    −A_i / (B L) (constant)."""
    adv = torch.as_tensor(advantages, dtype=torch.float64)
    n = torch.as_tensor(lengths, dtype=torch.float64)
    if aggregation == "sequence_mean":
        return -adv / (len(adv) * n)
    if aggregation == "token_mean":
        return -adv / n.sum()
    return -adv / (len(adv) * max_tokens)


def _autograd_weights(adv: torch.Tensor, lengths: torch.Tensor, aggregation: str, L: int) -> torch.Tensor:
    """The same weights read off the package's loss by autograd: the ground truth of the check."""
    mask = (torch.arange(L)[None, :] < lengths[:, None]).double()
    logps = torch.zeros(len(adv), L, dtype=torch.float64, requires_grad=True)
    per_token, _ = clipped_surrogate(logps, logps.detach(), adv, mask, 0.2)
    aggregate(per_token, mask, aggregation, L).backward()
    return logps.grad[:, 0]


def check_token_weights(fn) -> bool:
    """fn(advantages: Tensor [B], lengths: Tensor [B], aggregation: str, max_tokens: int) -> Tensor [B]."""
    name = "token weights"
    hint = (
        "at ratio 1 the per-token loss is −A_i · ratio, and d ratio / d log π = 1; then the aggregation "
        "divides: sequence_mean by |o_i| and by B, token_mean by the batch's total token count, constant "
        "by B · L. Mind the sign: the loss is minimized."
    )
    gen = torch.Generator().manual_seed(7)
    for B, L in ((4, 10), (6, 24), (3, 5)):
        adv = torch.randn(B, generator=gen, dtype=torch.float64)
        lengths = torch.randint(1, L + 1, (B,), generator=gen)
        for aggregation in ("sequence_mean", "token_mean", "constant"):
            want = _autograd_weights(adv, lengths, aggregation, L)
            got = call_safely(name, fn, adv.clone(), lengths.clone(), aggregation, L)
            assert_close(f"{name} ({aggregation})", torch.as_tensor(got).reshape(-1), want, hint=hint)
    return passed(name)


# --- 4. the group mean's shrink ----------------------------------------------------------------------------


def reference_baseline_shrink() -> float:
    """The group mean holds r_i with weight 1/G; the other terms vanish in expectation: (G − 1) / G."""
    return (SHRINK_G - 1) / SHRINK_G


def check_baseline_shrink(value) -> bool:
    """Your s in E[(r_i − group mean) ∇ log π(o_i)] = s · E[r_i ∇ log π(o_i)], for G = SHRINK_G."""
    name = "baseline shrink"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExerciseError(f"{name}: expected a number, got {value!r}")
    hint = (
        "the mean includes r_i with weight 1/G; the other G − 1 terms are independent of o_i and vanish in "
        "expectation, so only r_i (1 − 1/G) survives."
    )
    assert_close(name, value, (SHRINK_G - 1) / SHRINK_G, hint=hint)
    return passed(name)


def _final_answer_only(prompt: str, completion: str) -> bool:
    return reasoning.reasons(completion) and bool(reasoning.accuracy_reward([prompt], [completion])[0])


def _labels_without_masking(examples, pad_id):
    ids, mask, _ = reference_sft_labels(examples, pad_id)
    return ids, mask, ids.masked_fill(mask == 0, -100)


def _per_token_mean(adv, lengths, aggregation, L):
    return -torch.as_tensor(adv, dtype=torch.float64) / torch.as_tensor(lengths, dtype=torch.float64)


EXERCISES = (
    Exercise(1, "A step-by-step verifier", check_step_verifier, reference_step_verifier, _final_answer_only),
    Exercise(2, "SFT labels", check_sft_labels, reference_sft_labels, _labels_without_masking),
    Exercise(3, "How each aggregation weighs a token", check_token_weights, reference_token_weights,
             _per_token_mean),
    Exercise(4, "The group mean's shrink", check_baseline_shrink, reference_baseline_shrink, 1.0, value=True),
)  # fmt: skip
