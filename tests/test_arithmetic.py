"""The arithmetic world: prompts, exact answers, the verifier and the noisy corpus."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsurvey.tasks import arithmetic as ar


def test_prompts_are_deterministic_and_well_formed():
    assert ar.sample_prompts(50, seed=1) == ar.sample_prompts(50, seed=1)
    assert ar.sample_prompts(50, seed=1) != ar.sample_prompts(50, seed=2)
    for p, v in ar.sample_problems(500, seed=0, digits=3):
        assert p.endswith("=") and ("+" in p or "-" in p)
        assert v == eval(p[:-1]) and v >= 0  # brute force: Python's own arithmetic
        assert max(len(x) for x in p[:-1].replace("-", "+").split("+")) <= 3
    assert {p[1:-1].strip("0123456789")[0] for p in ar.sample_prompts(200, digits=1)} == {"+", "-"}
    assert all("+" in p for p in ar.sample_prompts(20, ops=("+",)))


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.sampled_from("+-"))
def test_answer_matches_python(a, b, op):
    assert ar.answer(f"{a}{op}{b}=") == eval(f"{a}{op}{b}")
    assert ar.answer(f"-{a}{op}{b}=") == eval(f"-{a}{op}{b}")


def test_verify_is_exact():
    prompts = ["37+58=", "90-12=", "5+5="]
    assert ar.verify(prompts, ["95", " 78\n", "10"]).tolist() == [1.0, 1.0, 1.0]
    assert ar.verify(prompts, ["94", "78 and more", "010"]).tolist() == [0.0, 0.0, 0.0]
    assert ar.verify(["3-5="], ["-2"]).tolist() == [1.0]
    assert ar.verify(prompts, ["", "x", "9 5"]).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("wrong_fraction", [0.0, 0.3, 0.6, 1.0])
def test_corpus_error_rate_matches_configuration(wrong_fraction):
    lines = ar.make_corpus(4000, seed=0, wrong_fraction=wrong_fraction)
    prompts = [line[: line.index("=") + 1] for line in lines]
    answers = [line[line.index("=") + 1 :] for line in lines]
    right = ar.verify(prompts, answers).mean()
    se = np.sqrt(max(wrong_fraction * (1 - wrong_fraction), 1e-12) / 4000)
    assert abs((1 - right) - wrong_fraction) <= 4 * se + 1e-12
    assert all(int(a) >= 0 for a in answers)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="digits"):
        ar.sample_prompts(3, digits=0)
    with pytest.raises(ValueError, match="ops"):
        ar.sample_prompts(3, ops=("*",))
    with pytest.raises(ValueError, match="same length"):
        ar.verify(["1+1="], [])
    with pytest.raises(ValueError, match="prompt must look like"):
        ar.verify(["hello"], ["2"])
    with pytest.raises(TypeError, match="lists of str"):
        ar.verify("1+1=", "2")
    with pytest.raises(ValueError, match="wrong_fraction"):
        ar.make_corpus(3, wrong_fraction=1.5)
    with pytest.raises(ValueError, match="n must be a positive int"):
        ar.sample_prompts(0)
