"""rlsurvey.evaluation: held-out prompts never met in training, reports against each world's truth checked
by hand, and the shipped base models measured as their model cards say."""

import json
import math

import numpy as np
import pytest
import torch

from rlsurvey import evaluation as ev
from rlsurvey.assets import model_path
from rlsurvey.interop import world_dataset
from rlsurvey.lm import load_model
from rlsurvey.lm.generation import generate
from rlsurvey.tasks import arithmetic, reviews, tools


def test_the_held_out_fifth_is_fixed_and_disjoint_from_training():
    openings = sorted(set(reviews.sample_prompts(5000, seed=0)))
    held = [p for p in openings if ev.is_heldout(p)]
    assert held == ["honestly , the restaurant was", "i found the book", "overall the book was",
                    "overall the phone was", "the book was"]  # named in the module docstring  # fmt: skip
    for world in ev.WORLDS:
        heldout = ev.heldout_prompts(world, 300)
        assert len(heldout) == 300 and all(ev.is_heldout(p) for p in heldout)
        if world == "tools":  # a world of RL prompts only (rlsurvey.interop's datasets do not include it)
            source = tools.sample_prompts(2000, seed=3)
        else:
            source = list(world_dataset(world, "prompt", 2000, seed=3)["prompt"])
        train = ev.training_prompts(source)
        assert not set(train) & set(heldout)
    share = np.mean([ev.is_heldout(p) for p in set(arithmetic.sample_prompts(5000, seed=1))])
    assert 0.15 < share < 0.25
    pairs = ev.training_pairs(reviews.make_preferences(400, seed=5))
    assert len(pairs) < 400 and not any(ev.is_heldout(p) for p in pairs["prompt"])
    held_pairs = ev.heldout_pairs(50)
    assert len(held_pairs) == 50 and all(ev.is_heldout(p) for p in held_pairs["prompt"])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="env is for the tools world"):
        ev.evaluate_policy_on_world(None, None, "arithmetic", ["1+1="], env=tools.CalculatorEnv())
    with pytest.raises(ValueError, match="world"):
        ev.heldout_prompts("chess")
    with pytest.raises(ValueError, match="positive"):
        ev.heldout_prompts("reviews", 0)
    with pytest.raises(TypeError):
        ev.is_heldout(3)
    with pytest.raises(ValueError, match="nothing is left"):
        ev.training_prompts(["the book was"])
    with pytest.raises(ValueError, match="compare"):
        ev.compare_reports({"metric": "gold reward"}, {"metric": "verifier accuracy"})


def test_a_policy_report_equals_the_world_truth_computed_by_hand():
    model, tok = load_model("reviews-base")
    prompts = ev.heldout_prompts("reviews", 40)
    report = ev.evaluate_policy_on_world(model, tok, "reviews", prompts, reference=model, seed=7)
    gen = generate(model, tok, prompts, 24, 1.0, seed=7)  # the same sampler, the same seed
    gold = reviews.gold_reward(gen.texts, prompts)
    assert report["values"] == pytest.approx(gold.tolist())
    assert report["mean"] == pytest.approx(gold.mean()) and report["se"] == pytest.approx(
        gold.std(ddof=1) / math.sqrt(40)
    )
    assert report["length"] == pytest.approx(gen.response_mask.sum(1).double().mean().item())
    assert report["kl"] == pytest.approx(0.0, abs=1e-6)  # the model against itself
    assert report["metric"] == "gold reward" and json.dumps(report)


def test_compare_reports_pairs_by_prompt():
    before = {"metric": "gold reward", "mean": 0.0, "se": 0.1, "values": [0.0, 1.0, -1.0, 0.5]}
    after = {"metric": "gold reward", "mean": 0.5, "se": 0.1, "values": [1.0, 1.5, 0.0, 0.5]}
    out = ev.compare_reports(before, after)
    d = np.array([1.0, 0.5, 1.0, 0.0])
    assert out["paired"] and out["change"] == pytest.approx(d.mean())
    assert out["se"] == pytest.approx(d.std(ddof=1) / 2) and out["standard_errors"] == pytest.approx(
        d.mean() / (d.std(ddof=1) / 2)
    )
    unpaired = ev.compare_reports(before, {**after, "values": [1.0, 2.0]})
    assert not unpaired["paired"] and unpaired["se"] == pytest.approx(math.hypot(0.1, 0.1))
    table = ev.format_reports({"start": {**before, "n": 4}, "trained": {**after, "n": 4}})
    assert "gold reward" in table.splitlines()[0] and "0.500 ± 0.100" in table


class _Scorer:  # a reward model that scores by a given function of the response
    def __init__(self, fn):
        self.fn = fn

    def score(self, prompts, responses):
        return torch.as_tensor(self.fn(prompts, responses))


def test_a_reward_models_accuracy_against_gold():
    pairs = ev.heldout_pairs(200)
    gold = _Scorer(lambda p, r: reviews.gold_reward(r, p))
    assert ev.evaluate_reward_model_on_world(gold, pairs)["mean"] == 1.0
    anti = _Scorer(lambda p, r: -reviews.gold_reward(r, p))
    out = ev.evaluate_reward_model_on_world(anti, pairs)
    assert out["mean"] == 0.0 and out["n"] == int(
        (np.array(pairs["gold_chosen"]) != pairs["gold_rejected"]).sum()
    )


@pytest.mark.parametrize(
    "name, world, key, max_new_tokens",
    [("reviews-base", "reviews", "gold_mean", 64), ("arith-base", "arithmetic", "accuracy_sampled", 5),
     ("reason-base", "reasoning", "accuracy_sampled", 48), ("tool-base", "tools", "accuracy_sampled", 48)],
)  # fmt: skip
def test_rlsurvey_eval_measures_the_shipped_models_as_their_model_cards_say(name, world, key, max_new_tokens):
    """`rlsurvey eval --model NAME --world W -n 500`: the card's figure (all prompts, seed 1234) and the
    evaluation's (held-out prompts, another seed) are two samples of the same quantity, so they must agree
    within 3 standard errors of their difference."""
    from rlsurvey.cli import build_parser
    from rlsurvey.cli_report import run_eval

    card = json.loads((model_path(name) / "metrics.json").read_text())["quality"]
    argv = ["eval", "--model", name, "--world", world, "-n", "500", "--max-new-tokens", str(max_new_tokens)]
    report = run_eval(build_parser().parse_args(argv))["reports"][name]
    if world == "reviews":
        card_se = card["gold_std"] / math.sqrt(card["n_samples"])
    else:
        card_se = math.sqrt(card[key] * (1 - card[key]) / card["n_samples"])
    assert report["n"] == 500
    assert abs(report["mean"] - card[key]) < 3 * math.hypot(report["se"], card_se), (
        report["mean"],
        card[key],
    )
