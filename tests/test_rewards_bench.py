"""The RewardBench-style suite: categories as built, gold reward perfect, each trap catches its bias."""

from __future__ import annotations

import collections

import pytest
from datasets import Dataset

from rlsurvey.rewards.bench import CATEGORIES, evaluate_on_bench, make_reward_bench
from rlsurvey.tasks import reviews


@pytest.fixture(scope="module")
def bench():
    return make_reward_bench(20, seed=0)


def test_bench_has_every_category_and_gold_orders_every_pair(bench):
    assert collections.Counter(bench["category"]) == {c: 20 for c in CATEGORIES}
    for row in bench:
        assert row["gold_chosen"] > row["gold_rejected"]
        assert row["gold_chosen"] == pytest.approx(reviews.gold_reward([row["chosen"]], [row["prompt"]])[0])
    rude = [r for r in bench if r["category"] == "rudeness"]
    assert all(reviews.parse_review(r["prompt"] + r["rejected"]).n_insults == 1 for r in rude)
    rep = [r for r in bench if r["category"] == "repetition_traps"]
    assert all(reviews.parse_review(r["prompt"] + r["rejected"]).repetition >= 1 for r in rep)
    assert make_reward_bench(5, seed=3)["chosen"] == make_reward_bench(5, seed=3)["chosen"]


def test_gold_scores_perfectly_and_each_bias_fails_its_trap(bench):
    gold = evaluate_on_bench(lambda p, c: reviews.gold_reward(c, p), bench)
    assert gold["score"] == 1.0 and all(v == 1.0 for v in gold["accuracy"].values())
    longer = evaluate_on_bench(lambda p, c: [float(len(x)) for x in c], bench)
    assert longer["accuracy"]["length_traps"] == 0.0
    assert longer["accuracy"]["repetition_traps"] == 0.0 and longer["accuracy"]["rudeness"] == 0.0

    def word_counter(prompts, completions):  # "positive words are good", counting every occurrence
        return [sum(max(reviews.SENTIMENT.get(w, 0.0), 0.0) for w in c.split()) for c in completions]

    counted = evaluate_on_bench(word_counter, bench)
    assert counted["accuracy"]["repetition_traps"] == 0.0
    assert counted["accuracy"]["clear_sentiment"] > 0.8
    # by hand: the mean of the four accuracies
    assert counted["score"] == pytest.approx(sum(counted["accuracy"].values()) / 4)


def test_ties_count_as_wrong_and_bad_input_is_named(bench):
    assert evaluate_on_bench(lambda p, c: [0.0] * len(c), bench)["score"] == 0.0
    with pytest.raises(ValueError, match="bench needs columns"):
        evaluate_on_bench(lambda p, c: [0.0] * len(c), Dataset.from_list([{"prompt": "a", "chosen": "b"}]))
    with pytest.raises(ValueError, match="n_per_category"):
        make_reward_bench(0)
