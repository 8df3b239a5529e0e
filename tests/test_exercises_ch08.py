"""Chapter 08's exercise checks pass their reference solutions and refuse wrong answers."""

import numpy as np
import pytest

from rlsurvey.exercises import ExerciseError, ch08


def test_debiased():
    assert ch08.check_debiased(lambda a, b: 0.5 * (a + 1 - b))
    with pytest.raises(ExerciseError):
        ch08.check_debiased(lambda a, b: a)
    with pytest.raises(ExerciseError):
        ch08.check_debiased(lambda a, b: 0.5 * (a + b))


def test_agreement():
    def right(p, ga, gb):
        keep = ga != gb
        return float(((p > 0.5) == (ga > gb))[keep].mean())

    assert ch08.check_agreement(right)
    with pytest.raises(ExerciseError):
        ch08.check_agreement(lambda p, ga, gb: float(((p > 0.5) == (ga > gb)).mean()))  # keeps the ties
    with pytest.raises(ExerciseError):
        ch08.check_agreement(lambda p, ga, gb: np.nan)
