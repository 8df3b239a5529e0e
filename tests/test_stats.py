"""rlsurvey.stats against brute-force twins."""

import math
import statistics

import pytest

from rlsurvey.stats import mean_se, paired_mean_se, pm


def test_mean_se_matches_the_textbook_formula():
    xs = [0.3, 0.9, 0.4, 0.75, 0.61]
    m, se = mean_se(xs)
    assert m == pytest.approx(sum(xs) / 5)
    assert se == pytest.approx(statistics.stdev(xs) / math.sqrt(5))
    assert pm(xs, ".2f") == f"{m:.2f} ± {se:.2f}"


def test_paired_differences_and_edge_cases():
    a, b = [1.0, 2.0, 4.0], [0.5, 1.0, 1.0]
    assert paired_mean_se(a, b) == pytest.approx(mean_se([0.5, 1.0, 3.0]))
    assert math.isnan(mean_se([2.0])[1]) and mean_se([2.0])[0] == 2.0
    for bad in ([], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            mean_se(bad)
    with pytest.raises(ValueError, match="same length"):
        paired_mean_se([1.0], [1.0, 2.0])
