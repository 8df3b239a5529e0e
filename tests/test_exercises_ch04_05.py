"""Every exercise check of chapters 04 and 05 accepts its reference solution and rejects a wrong answer."""

from __future__ import annotations

import pytest
import torch

from rlsurvey.exercises import ExerciseError, ch04, ch05


def test_ch04_sequence_logprob():
    assert ch04.check_sequence_logprob(ch04.reference_sequence_logprob)
    with pytest.raises(ExerciseError, match="off by"):  # forgets the mask
        ch04.check_sequence_logprob(
            lambda lo, y, m: torch.log_softmax(lo, -1).gather(-1, y[..., None])[..., 0].sum(-1)
        )
    with pytest.raises(ExerciseError, match="shape"):
        ch04.check_sequence_logprob(lambda lo, y, m: lo.sum(-1))
    with pytest.raises(ExerciseError, match="raised"):
        ch04.check_sequence_logprob(lambda lo, y, m: 1 / 0)


def test_ch04_kl_k3():
    assert ch04.check_kl_k3(ch04.reference_kl_k3)
    with pytest.raises(ExerciseError):  # k1 instead of k3
        ch04.check_kl_k3(lambda lp, ref: lp - ref)
    with pytest.raises(ExerciseError):  # the ratio upside down
        ch04.check_kl_k3(lambda lp, ref: torch.expm1(lp - ref) - (lp - ref))


def test_ch04_entropy():
    assert ch04.check_entropy(ch04.reference_entropy)
    with pytest.raises(ExerciseError, match="temperature=0.5"):  # ignores the temperature
        ch04.check_entropy(lambda lo, t: ch04.reference_entropy(lo, 1.0))


def test_ch05_family_counts():
    assert ch05.check_family_counts(ch05.reference_family_counts())
    wrong = dict(ch05.reference_family_counts())
    wrong["RLAIF"] += 1
    with pytest.raises(ExerciseError, match="off"):
        ch05.check_family_counts(wrong)
    with pytest.raises(ExerciseError, match="expected the families"):
        ch05.check_family_counts({"PPO": 3})


def test_ch05_open_share():
    assert ch05.check_open_share(ch05.reference_open_share())
    with pytest.raises(ExerciseError, match="not it"):
        ch05.check_open_share(ch05.reference_open_share() + 0.05)
    with pytest.raises(ExerciseError, match="fraction"):
        ch05.check_open_share(1.5)


def test_ch05_chapter():
    assert ch05.check_chapter("DeepSeek-R1", "12")
    assert ch05.check_chapter("Phi-3", 10)
    with pytest.raises(ExerciseError, match="not chapter"):
        ch05.check_chapter("Phi-3", "07")
    with pytest.raises(ExerciseError, match="model must be one of"):
        ch05.check_chapter("GPT-7", "12")
