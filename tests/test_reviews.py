"""The reviews world: grammar, parser, gold reward, annotators and the documented exploit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlsurvey.tasks import reviews as rv

REVIEWS = rv.sample_reviews(400, seed=3)


def test_sampling_is_deterministic_under_a_seed():
    assert rv.sample_reviews(50, seed=1) == rv.sample_reviews(50, seed=1)
    assert rv.sample_reviews(50, seed=1) != rv.sample_reviews(50, seed=2)
    assert rv.sample_prompts(20, seed=4) == rv.sample_prompts(20, seed=4)
    a, b = rv.make_preferences(30, seed=5), rv.make_preferences(30, seed=5)
    assert a.to_dict() == b.to_dict()


def test_grammar_output_parses_and_has_every_attribute():
    attrs = [rv.parse_review(t) for t in REVIEWS]
    assert all(a.grammatical for a in attrs)
    assert all(1 <= a.n_sentences <= 5 for a in attrs)  # 1-3 content sentences, + rude / polite / repeat
    for field in ("n_insults", "n_polite", "repetition", "n_negations", "n_intensifiers"):
        assert any(getattr(a, field) > 0 for a in attrs), field
    gold = rv.gold_reward(REVIEWS)
    assert (gold > 0.5).mean() > 0.2 and (gold < -0.5).mean() > 0.2  # spread, not one-sided
    assert {a.topic for a in attrs} == set(rv.TOPICS)


def test_parser_reads_free_text():
    a = rv.parse_review("The Hotel was VERY good! The staff are idiots")
    assert a.topic == "hotel" and a.n_sentences == 2 and a.n_ungrammatical == 1  # no end mark on the second
    assert a.n_insults == 1 and a.sentiment_raw == pytest.approx(0.6 * 1.5)
    assert rv.parse_review("").n_sentences == 0 and rv.gold_reward([""])[0] == 0.0
    babble = rv.parse_review("zx ! qq the the")
    assert babble.n_ungrammatical == 2 and not babble.grammatical


def test_sentiment_modifiers_by_hand():
    def raw(t):
        return rv.parse_review(t).sentiment_raw

    assert raw("the food was good .") == pytest.approx(0.6)
    assert raw("the food was extremely good .") == pytest.approx(1.2)
    assert raw("the food was not good .") == pytest.approx(-0.3)
    assert raw("the food was not very bad .") == pytest.approx(0.45)
    assert raw("the food was very very good .") == pytest.approx(0.9)  # intensifiers do not stack
    assert raw("the food was good . the view was good .") == pytest.approx(0.6)  # first occurrence only
    assert raw("i would not recommend it .") == pytest.approx(-0.4)


def test_gold_reward_equation_by_hand():
    text = (
        "the hotel was great . the view was great . thank you ! the food was nice . what a bunch of fools ."
    )
    a = rv.parse_review(text)
    assert (a.repetition, a.n_off_topic, a.n_insults, a.n_polite) == (1, 1, 1, 1)
    expected = 2.0 * np.tanh((0.8 + 0.5) / 2) + 0.3 - 1.0 - 0.5 * 1 - 0.3 * 1 - 0.1 * max(0, a.n_words - 30)
    assert rv.gold_reward([text])[0] == pytest.approx(expected)


def test_gold_reward_with_prompts_concatenates():
    p, c = ["the hotel was"], [" very good ."]
    assert rv.gold_reward(c, prompts=p)[0] == rv.gold_reward(["the hotel was very good ."])[0]
    with pytest.raises(ValueError, match="prompts"):
        rv.gold_reward(c, prompts=p * 2)
    with pytest.raises(TypeError, match="texts"):
        rv.gold_reward("the hotel was good .")


# --- property tests: gold is monotone in sentiment, decreasing in rudeness and repetition ---

review = st.sampled_from(REVIEWS)
POSITIVE = sorted(rv.ADJECTIVES, key=rv.ADJECTIVES.get)


@settings(max_examples=200, deadline=None)
@given(review, st.data())
def test_gold_increases_with_a_higher_scored_sentiment_word(text, data):
    toks = text.split()
    # positions of adjectives used once, not negated (a negation flips the direction), not already maxed
    spots = [
        i
        for i, t in enumerate(toks)
        if t in rv.ADJECTIVES and toks.count(t) == 1 and "not" not in toks[max(0, i - 3) : i]
    ]
    if not spots:
        return
    i = data.draw(st.sampled_from(spots))
    better = [w for w in rv.ADJECTIVES if rv.ADJECTIVES[w] > rv.ADJECTIVES[toks[i]] and w not in toks]
    if not better:
        return
    new = toks[:i] + [data.draw(st.sampled_from(better))] + toks[i + 1 :]
    assert rv.gold_reward([" ".join(new)])[0] > rv.gold_reward([text])[0]


@settings(max_examples=200, deadline=None)
@given(review, st.sampled_from(rv.RUDE_SENTENCES), st.sampled_from(rv.INSULTS), st.sampled_from(rv.PEOPLE))
def test_gold_decreases_when_an_insult_is_added(text, template, insult, person):
    rude = template.replace("{INSULT}", insult).replace("{PERSON}", person)
    assert rv.parse_review(text + " " + rude).n_insults == rv.parse_review(text).n_insults + 1
    assert rv.gold_reward([text + " " + rude])[0] < rv.gold_reward([text])[0]


@settings(max_examples=200, deadline=None)
@given(review, st.integers(1, 4), st.booleans())
def test_gold_decreases_with_repetition(text, times, whole_sentence):
    if whole_sentence:  # repeat the last sentence
        last = " ".join(rv._sentences(rv.tokenize(text))[-1])
        longer = text + (" " + last) * times
    else:  # repeat an evaluative word in place ("great" -> "great great great")
        toks = text.split()
        spot = next((i for i, t in enumerate(toks) if t in rv.SENTIMENT), None)
        if spot is None:
            return
        longer = " ".join(toks[: spot + 1] + [toks[spot]] * times + toks[spot + 1 :])
    assert rv.parse_review(longer).repetition > rv.parse_review(text).repetition
    assert rv.gold_reward([longer])[0] < rv.gold_reward([text])[0]


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-0.99, 0.99), st.floats(0.001, 1.0), st.integers(0, 3), st.integers(0, 3), st.integers(0, 40)
)
def test_gold_from_attributes_is_monotone(sentiment, step, insults, repetition, words):
    base = rv.ReviewAttributes(words, 2, 0, 0.0, sentiment, 1, 0, 0, 0, 0, insults, repetition, "hotel", 0)
    g = rv.gold_from_attributes
    up = min(sentiment + step, 0.999)
    if up > sentiment:
        assert g(base.__class__(**{**base.__dict__, "sentiment": up})) > g(base)
    assert g(base.__class__(**{**base.__dict__, "n_insults": insults + 1})) < g(base)
    assert g(base.__class__(**{**base.__dict__, "repetition": repetition + 1})) < g(base)


# --- annotators ---


@pytest.mark.parametrize("temperature,flip_prob", [(0.25, 0.0), (0.5, 0.1), (1.0, 0.3)])
def test_annotator_agreement_matches_configured_noise(temperature, flip_prob):
    ds = rv.make_preferences(3000, seed=11, temperature=temperature, flip_prob=flip_prob)
    gc, gr = np.array(ds["gold_chosen"]), np.array(ds["gold_rejected"])
    keep = gc != gr
    observed = (gc[keep] > gr[keep]).mean()
    # expected agreement from the BT + flip model on the same pairs, and its sampling error
    p = rv.preference_probability(
        np.maximum(gc, gr)[keep], np.minimum(gc, gr)[keep], rv.AnnotatorConfig(temperature, flip_prob)
    )
    se = np.sqrt((p * (1 - p)).sum()) / keep.sum()
    assert abs(observed - p.mean()) < 4 * se, (observed, p.mean(), se)
    assert p.mean() == pytest.approx(
        rv.expected_agreement(gc, gr, rv.AnnotatorConfig(temperature, flip_prob))
    )


def test_more_annotators_agree_more_with_gold():
    one = np.mean(rv.make_preferences(1500, seed=2, temperature=1.0, flip_prob=0.2)["gold_agrees"])
    five = np.mean(
        rv.make_preferences(1500, seed=2, temperature=1.0, flip_prob=0.2, n_annotators=5)["gold_agrees"]
    )
    assert five > one + 0.03


def test_annotate_votes_follow_bradley_terry():
    ga, gb = np.zeros(20000), np.full(20000, -0.5)
    c = rv.AnnotatorConfig(temperature=0.5, flip_prob=0.0, n_annotators=1)
    votes = rv.annotate(ga, gb, c, seed=0)
    p = 1 / (1 + np.exp(-1.0))
    assert abs(votes.mean() - p) < 4 * np.sqrt(p * (1 - p) / 20000)


def test_preference_dataset_format():
    ds = rv.make_preferences(40, seed=0, n_annotators=3)
    assert set(ds.column_names) >= {"prompt", "chosen", "rejected", "gold_chosen", "gold_rejected"}
    for row in ds:
        assert row["chosen"] != row["rejected"] and row["chosen"].startswith(" ")
        assert row["gold_chosen"] == pytest.approx(
            rv.gold_reward([row["prompt"] + row["chosen"]])[0], abs=1e-6
        )
        assert row["votes_chosen"] >= 0.5
    assert set(ds["prompt"]) <= set(rv.sample_prompts(40, seed=0))


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="temperature"):
        rv.AnnotatorConfig(temperature=0)
    with pytest.raises(ValueError, match="flip_prob"):
        rv.make_preferences(3, flip_prob=2.0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        rv.sample_reviews(0)
    with pytest.raises(ValueError, match="prompts must be review openings"):
        rv.sample_completions(["hello"])
    with pytest.raises(ValueError, match="either config or its fields"):
        rv.make_preferences(3, config=rv.AnnotatorConfig(), temperature=1.0)


def test_sample_completions_continue_their_prompts():
    prompts = rv.sample_prompts(30, seed=9)
    comps = rv.sample_completions(prompts, seed=1)
    assert all(rv.parse_review(p + c).grammatical for p, c in zip(prompts, comps))


# --- the documented exploit ---


def test_proxy_from_few_pairs_is_exploited_by_repetition():
    """A bag-of-words Bradley-Terry proxy fitted on 300 pairs rewards repeated praise; gold falls."""
    ds = rv.make_preferences(300, seed=0)
    vocab = sorted({t for row in ds for k in ("chosen", "rejected") for t in rv.tokenize(row[k])})
    index = {t: i for i, t in enumerate(vocab)}

    def bow(texts):
        x = torch.zeros(len(texts), len(vocab))
        for r, t in enumerate(texts):
            for tok in rv.tokenize(t):
                if tok in index:
                    x[r, index[tok]] += 1
        return x

    xc, xr = bow(ds["chosen"]), bow(ds["rejected"])
    w = torch.zeros(len(vocab), requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(300):
        loss = -torch.nn.functional.logsigmoid((xc - xr) @ w).mean() + 1e-3 * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    base = "the hotel was great ."
    gamed = [
        "the hotel was great .",
        "the hotel was great great .",
        "the hotel was great great great amazing amazing .",
    ]
    proxy = (bow(gamed) @ w).detach().numpy()
    gold = rv.gold_reward(gamed)
    assert np.all(np.diff(proxy) > 0), proxy
    assert np.all(np.diff(gold) < 0), gold
    assert gold[0] == rv.gold_reward([base])[0]
