"""The reviews world: a grammar of short English reviews whose true reward is known.

Survey sections: 4 (RLHF: simulated human feedback and Bradley-Terry reward models) and 6 (analysis:
overoptimization, multi-objective rewards, safety costs) of arXiv 2412.10400. The preference model is
Bradley and Terry (1952); TRL's standard preference format (prompt, chosen, rejected) is the output.

A review is one to three lowercase sentences with punctuation split off, for example

    "the hotel was very good . the breakfast was bland but the view was amazing . thank you !"

Every sentence comes from a small set of templates (`TEMPLATES`) whose slots are filled from a lexicon, so a
reader can see each attribute: sentiment words with scores, intensifiers, negation, the topic and its aspects,
politeness markers, a few insults (standing in for harmful content) and, rarely, repetition.

The gold reward ("the true human preference") is a documented function of attributes that `parse_review`
reads from FREE text, so it scores model samples as well as grammar output:

    gold = 2.0 * tanh(S / 2)                 sentiment: S sums the first occurrence of each sentiment word,
                                             its score times the intensifier right before it, times -0.5
                                             when a negation ("not", "never", "no") precedes them
         + 0.3 * [polite]                    at least one politeness marker ("thank", "thanks", "please")
         - 1.0 * insults                     each insult word (the rudeness / harm cost)
         - 0.5 * repetition                  each repeat of an evaluative word, plus each repeated sentence
         - 0.5 * ungrammatical_sentences     sentences that match no template (model babble, cut-off text)
         - 0.3 * off_topic                   aspects of another topic than the review's
         - 0.1 * max(0, words - 30)          rambling

The exploit a reader should expect (chapters 06, 07 and 09): a reward model fitted on a few hundred pairs
learns, roughly, "positive words are good", and counts every occurrence. The gold reward counts each
sentiment word once, saturates through tanh, and charges for repeats, broken sentences and length. A policy
optimized hard against the proxy therefore drifts to outputs like "the hotel was amazing amazing great great
. amazing !" whose proxy score keeps rising while the gold reward falls: reward overoptimization
(Gao et al., arXiv 2210.10760) in a world small enough to watch it happen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "TOPICS",
    "SENTIMENT",
    "INTENSIFIERS",
    "NEGATIONS",
    "INSULTS",
    "POLITE",
    "TEMPLATES",
    "ReviewAttributes",
    "AnnotatorConfig",
    "tokenize",
    "parse_review",
    "attributes",
    "gold_from_attributes",
    "gold_reward",
    "sample_reviews",
    "sample_prompts",
    "sample_completions",
    "preference_probability",
    "expected_agreement",
    "annotate",
    "make_preferences",
]

# ---------------------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------------------

# topic -> its aspects (singular nouns, disjoint across topics so that the topic of an aspect is unambiguous)
TOPICS: dict[str, tuple[str, ...]] = {
    "restaurant": ("food", "service", "waiter", "dessert", "price"),
    "hotel": ("room", "staff", "bed", "breakfast", "view"),
    "movie": ("plot", "acting", "ending", "soundtrack", "dialogue"),
    "phone": ("battery", "screen", "camera", "charger", "speaker"),
    "book": ("story", "hero", "writing", "pacing", "cover"),
}
_ASPECT_TOPIC = {a: t for t, aspects in TOPICS.items() for a in aspects}

# sentiment adjectives and adverbs with their scores in [-1, 1]
ADJECTIVES: dict[str, float] = {
    "amazing": 1.0, "excellent": 1.0, "wonderful": 0.9, "fantastic": 0.9, "great": 0.8, "lovely": 0.7,
    "good": 0.6, "nice": 0.5, "pleasant": 0.5, "decent": 0.3, "fine": 0.2, "okay": 0.1,
    "dull": -0.3, "mediocre": -0.3, "bland": -0.4, "poor": -0.6, "bad": -0.6, "disappointing": -0.6,
    "horrible": -0.9, "disgusting": -0.9, "terrible": -1.0, "awful": -1.0,
}  # fmt: skip
ADVERBS: dict[str, float] = {
    "perfectly": 0.9, "beautifully": 0.8, "smoothly": 0.6, "nicely": 0.5,
    "slowly": -0.3, "poorly": -0.6, "badly": -0.7, "horribly": -0.9,
}  # fmt: skip
VERBS: dict[str, float] = {"recommend": 0.8}  # "i would (not) recommend it ."
SENTIMENT: dict[str, float] = {**ADJECTIVES, **ADVERBS, **VERBS}

# intensifier -> multiplier of the sentiment word it precedes (the largest one counts; they do not stack)
INTENSIFIERS: dict[str, float] = {
    "extremely": 2.0, "incredibly": 2.0, "very": 1.5, "really": 1.5, "so": 1.5, "quite": 1.2,
    "somewhat": 0.6, "slightly": 0.5,
}  # fmt: skip
NEGATIONS = ("not", "never", "no")
NEGATION_FACTOR = -0.5  # "not bad" is mildly good; "not amazing" mildly bad
INSULTS = ("idiots", "morons", "clowns", "fools", "losers", "jerks")
POLITE = ("thank", "thanks", "please")
PEOPLE = ("staff", "owners", "makers", "people")
EVALUATIVE = frozenset(SENTIMENT) | frozenset(INTENSIFIERS) | frozenset(INSULTS)

# ---------------------------------------------------------------------------------------------------------
# Grammar: templates shared by the sampler and the recognizer
# ---------------------------------------------------------------------------------------------------------

# Slots: {TOPIC} {ASPECT} {PERSON} {INSULT}; {S} = [not] [intensifier...] adjective;
# {A} = [intensifier...] adverb; {R} = [not] recommend
OPENINGS = (
    "the {TOPIC} was {S} .",
    "i found the {TOPIC} {S} .",
    "overall the {TOPIC} was {S} .",
    "honestly , the {TOPIC} was {S} .",
)
BODY = (
    "the {ASPECT} was {S} .",
    "the {ASPECT} was {S} and the {ASPECT} was {S} .",
    "the {ASPECT} was {S} but the {ASPECT} was {S} .",
    "everything went {A} .",
    "i would {R} it .",
)
POLITE_SENTENCES = (
    "thank you !",
    "thanks for everything .",
    "please keep it up !",
    "many thanks to the team .",
)
RUDE_SENTENCES = (
    "the {PERSON} are {INSULT} .",
    "only {INSULT} would like this .",
    "what a bunch of {INSULT} .",
)
TEMPLATES = OPENINGS + BODY + POLITE_SENTENCES + RUDE_SENTENCES
_TEMPLATE_TOKENS = [t.split() for t in TEMPLATES]

_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")
_SENTENCE_END = frozenset(".!?")


def tokenize(text: str) -> list[str]:
    """Lowercase words and single punctuation marks: "Great food!" -> ["great", "food", "!"]."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower())


def _sentences(tokens: list[str]) -> list[list[str]]:
    """Split after . ! ?; a trailing fragment without an end mark is a sentence too (and ungrammatical)."""
    out, cur = [], []
    for tok in tokens:
        cur.append(tok)
        if tok in _SENTENCE_END:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _match_phrase(kind: str, toks: list[str], i: int) -> list[int]:
    """End positions j such that toks[i:j] is a sentiment phrase of the given kind ("S", "A" or "R")."""
    words = {"S": ADJECTIVES, "A": ADVERBS, "R": VERBS}[kind]
    j = i
    if kind in "SR" and j < len(toks) and toks[j] == "not":
        j += 1
    while kind != "R" and j < len(toks) and toks[j] in INTENSIFIERS:
        j += 1
    return [j + 1] if j < len(toks) and toks[j] in words else []


_SLOT_WORDS = {
    "{TOPIC}": frozenset(TOPICS),
    "{ASPECT}": frozenset(_ASPECT_TOPIC),
    "{PERSON}": frozenset(PEOPLE),
    "{INSULT}": frozenset(INSULTS),
}


def _match(template: list[str], toks: list[str], ti: int = 0, i: int = 0) -> bool:
    if ti == len(template):
        return i == len(toks)
    slot = template[ti]
    if slot in ("{S}", "{A}", "{R}"):
        return any(_match(template, toks, ti + 1, j) for j in _match_phrase(slot[1], toks, i))
    if i >= len(toks):
        return False
    if slot in _SLOT_WORDS:
        ok = toks[i] in _SLOT_WORDS[slot]
    else:  # any end mark closes any sentence: "good !" is as grammatical as "good ."
        ok = toks[i] == slot or (slot in _SENTENCE_END and toks[i] in _SENTENCE_END)
    return ok and _match(template, toks, ti + 1, i + 1)


def _grammatical(sentence: list[str]) -> bool:
    return any(_match(t, sentence) for t in _TEMPLATE_TOKENS)


# ---------------------------------------------------------------------------------------------------------
# Parsing free text into attributes, and the gold reward
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewAttributes:
    n_words: int  # tokens, punctuation included
    n_sentences: int  # sentences (a trailing fragment counts)
    n_ungrammatical: int  # sentences that match no template
    sentiment_raw: float  # S: sum over first occurrences of sentiment words (intensified, negated)
    sentiment: float  # tanh(S / 2), in (-1, 1)
    n_positive: int  # sentiment-word occurrences with a positive final score (repeats included)
    n_negative: int  # sentiment-word occurrences with a negative final score (repeats included)
    n_negations: int  # negation words
    n_intensifiers: int  # intensifier words
    n_polite: int  # politeness markers
    n_insults: int  # insult words (the harm stand-in)
    repetition: int  # repeats of evaluative words + repeated sentences
    topic: str | None  # the first topic word, or the topic of the first aspect when none is named
    n_off_topic: int  # aspect mentions that belong to another topic

    @property
    def grammatical(self) -> bool:
        """True when the text has at least one sentence and every sentence matches a template."""
        return self.n_sentences > 0 and self.n_ungrammatical == 0


def parse_review(text: str) -> ReviewAttributes:
    """Read the attributes of a review from free text (grammar output or a model's sample)."""
    toks = tokenize(text)
    sents = _sentences(toks)
    raw, seen_sentiment = 0.0, set()
    n_pos = n_neg = 0
    counts: dict[str, int] = {}
    for sent in sents:
        for k, tok in enumerate(sent):
            if tok in EVALUATIVE:
                counts[tok] = counts.get(tok, 0) + 1
            if tok not in SENTIMENT:
                continue
            # look back over the modifiers directly before the word: intensifiers, then a negation
            # only the intensifier next to the word counts (stacking "very very" buys nothing)
            mult = INTENSIFIERS.get(sent[k - 1], 1.0) if k > 0 else 1.0
            b = k - 1
            while b >= 0 and sent[b] in INTENSIFIERS:
                b -= 1
            neg = b >= 0 and sent[b] in NEGATIONS
            score = SENTIMENT[tok] * mult * (NEGATION_FACTOR if neg else 1.0)
            n_pos += score > 0
            n_neg += score < 0
            if tok not in seen_sentiment:  # a repeated sentiment word adds nothing (it costs, below)
                seen_sentiment.add(tok)
                raw += score
    sentence_keys = [" ".join(s) for s in sents]
    repetition = sum(c - 1 for c in counts.values()) + len(sentence_keys) - len(set(sentence_keys))
    topic = next((t for t in toks if t in TOPICS), None)
    aspects = [t for t in toks if t in _ASPECT_TOPIC]
    if topic is None and aspects:
        topic = _ASPECT_TOPIC[aspects[0]]
    return ReviewAttributes(
        n_words=len(toks),
        n_sentences=len(sents),
        n_ungrammatical=sum(not _grammatical(s) for s in sents),
        sentiment_raw=float(raw),
        sentiment=float(np.tanh(raw / 2.0)),
        n_positive=int(n_pos),
        n_negative=int(n_neg),
        n_negations=sum(t in NEGATIONS for t in toks),
        n_intensifiers=sum(t in INTENSIFIERS for t in toks),
        n_polite=sum(t in POLITE for t in toks),
        n_insults=sum(t in INSULTS for t in toks),
        repetition=int(repetition),
        topic=topic,
        n_off_topic=sum(_ASPECT_TOPIC[a] != topic for a in aspects),
    )


def _check_texts(texts, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must contain only str, got an element of type {bad[0]}")
    return list(texts)


def attributes(texts: Sequence[str]) -> list[dict]:
    """`parse_review` for a batch, as plain dicts (for tables and multi-objective rewards)."""
    return [{**asdict(a), "grammatical": a.grammatical} for a in map(parse_review, _check_texts(texts))]


# weights of the gold reward (see the module docstring)
GOLD_WEIGHTS = {
    "sentiment": 2.0,
    "polite": 0.3,
    "insult": 1.0,
    "repetition": 0.5,
    "ungrammatical": 0.5,
    "off_topic": 0.3,
    "length": 0.1,
}
MAX_WORDS = 30


def gold_from_attributes(a: ReviewAttributes) -> float:
    """The gold reward of a parsed review (the equation in the module docstring)."""
    w = GOLD_WEIGHTS
    return float(
        w["sentiment"] * a.sentiment
        + w["polite"] * (a.n_polite > 0)
        - w["insult"] * a.n_insults
        - w["repetition"] * a.repetition
        - w["ungrammatical"] * a.n_ungrammatical
        - w["off_topic"] * a.n_off_topic
        - w["length"] * max(0, a.n_words - MAX_WORDS)
    )


def gold_reward(texts: Sequence[str], prompts: Sequence[str] | None = None) -> np.ndarray:
    """The true reward of each review, float64 array of shape [len(texts)].

    texts: full reviews, or completions when `prompts` is given (then prompt + completion is scored).
    The equation is in the module docstring; it reads free text, so it scores a model's samples too.
    """
    texts = _check_texts(texts)
    if prompts is not None:
        prompts = _check_texts(prompts, "prompts")
        if len(prompts) != len(texts):
            raise ValueError(f"prompts must have len(texts) = {len(texts)} elements, got {len(prompts)}")
        texts = [p + c for p, c in zip(prompts, texts)]
    return np.array([gold_from_attributes(parse_review(t)) for t in texts], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# Sampling from the grammar
# ---------------------------------------------------------------------------------------------------------

_POS_ADJ = [w for w, s in ADJECTIVES.items() if s > 0]
_NEG_ADJ = [w for w, s in ADJECTIVES.items() if s < 0]
_POS_ADV = [w for w, s in ADVERBS.items() if s > 0]
_NEG_ADV = [w for w, s in ADVERBS.items() if s < 0]
_INTENS = list(INTENSIFIERS)

# Probabilities of the grammar (the reviews' distribution, not the reward)
P_SENTENCES = (0.3, 0.45, 0.25)  # of 1, 2, 3 sentences
P_POLITE = 0.15  # a review ends with a politeness sentence
P_RUDE = 0.10  # a review contains an insult sentence
P_REPEAT = 0.08  # a review has a repeated intensifier or a repeated sentence
P_NEGATE = 0.15  # a sentiment phrase is negated
P_INTENSIFY = 0.4  # a sentiment phrase has an intensifier


class _Sampler:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def choice(self, items):
        return items[int(self.rng.integers(len(items)))]

    def review(self, topic: str | None = None, opening: str | None = None) -> tuple[str, str]:
        """One review as (prompt, completion): the prompt is the opening up to its sentiment phrase."""
        rng = self.rng
        mood = rng.normal()  # the review's overall leaning: sentences agree with it most of the time
        topic = topic or self.choice(list(TOPICS))
        self.used: set[str] = set()  # evaluative words are not reused unless repetition is drawn
        repeat = rng.random() < P_REPEAT
        self.aspects = list(TOPICS[topic])
        rng.shuffle(self.aspects)  # each aspect is reviewed at most once
        n = int(rng.choice(3, p=P_SENTENCES)) + 1
        body = [BODY[int(i)] for i in rng.choice(len(BODY), size=n - 1, replace=False)]
        if rng.random() < P_RUDE:
            body.insert(int(rng.integers(len(body) + 1)), self.choice(RUDE_SENTENCES))
        if rng.random() < P_POLITE:
            body.append(self.choice(POLITE_SENTENCES))
        opening = opening or self.choice(OPENINGS)
        head, tail = opening.split("{S}")
        first = self.fill("{S}" + tail, topic, mood)
        sentences = [self.fill(t, topic, mood) for t in body]
        if repeat and sentences:
            k = int(rng.integers(len(sentences)))
            sentences.insert(k + 1, sentences[k])
        elif repeat:
            first = (
                first.replace(" ", " " + first.split()[0] + " ", 1)
                if first.split()[0] in INTENSIFIERS
                else first
            )
        prompt = head.replace("{TOPIC}", topic).rstrip()
        return prompt, " " + " ".join([first, *sentences])

    def phrase(self, kind: str, mood: float) -> str:
        rng = self.rng
        positive = rng.random() < 1 / (1 + np.exp(-2.0 * mood))
        if kind == "R":
            return "recommend" if positive else "not recommend"
        negate = kind == "S" and rng.random() < P_NEGATE
        if negate:  # "not <word>" flips the sign: pick the word against the intended polarity
            positive = not positive
        pool = {"S": (_POS_ADJ, _NEG_ADJ), "A": (_POS_ADV, _NEG_ADV)}[kind][0 if positive else 1]
        fresh = [w for w in pool if w not in self.used] or pool
        word = self.choice(fresh)
        self.used.add(word)
        words = [word]
        if rng.random() < P_INTENSIFY:
            words.insert(0, self.choice([w for w in _INTENS if w not in self.used] or _INTENS))
            self.used.add(words[0])
        if negate:
            words.insert(0, "not")
        return " ".join(words)

    def fill(self, template: str, topic: str, mood: float) -> str:
        aspects = self.aspects
        out = []
        for tok in template.split():
            if tok == "{TOPIC}":
                out.append(topic)
            elif tok == "{ASPECT}":
                out.append(aspects.pop())
            elif tok == "{PERSON}":
                out.append(self.choice(PEOPLE))
            elif tok == "{INSULT}":
                out.append(self.choice(INSULTS))
            elif tok in ("{S}", "{A}", "{R}"):
                out.append(self.phrase(tok[1], mood))
            else:
                out.append(tok)
        return " ".join(out)


def _check_n(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def sample_completions(prompts: Sequence[str], seed: int = 0) -> list[str]:
    """One grammar completion per prompt (a prompt from `sample_prompts`), each starting with a space."""
    prompts = _check_texts(prompts, "prompts")
    s = _Sampler(np.random.default_rng(seed))
    out = []
    for p in prompts:
        topic = next((t for t in tokenize(p) if t in TOPICS), None)
        opening = next(
            (o for o in OPENINGS if topic and o.split("{S}")[0].replace("{TOPIC}", topic).strip() == p), None
        )
        if opening is None:
            raise ValueError(
                f"prompts must be review openings from sample_prompts (e.g. 'the hotel was'), got {p!r}"
            )
        out.append(s.review(topic, opening)[1])
    return out


def sample_reviews(n: int, seed: int = 0) -> list[str]:
    """`n` full reviews from the grammar (the pretraining corpus of reviews-base)."""
    s = _Sampler(np.random.default_rng(seed))
    return ["".join(s.review()) for _ in range(_check_n(n))]


def sample_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` review openings such as "the hotel was" or "i found the book": the prompts for RL."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(_check_n(n)):
        topic = list(TOPICS)[int(rng.integers(len(TOPICS)))]
        opening = OPENINGS[int(rng.integers(len(OPENINGS)))]
        out.append(opening.split("{S}")[0].replace("{TOPIC}", topic).strip())
    return out


# ---------------------------------------------------------------------------------------------------------
# Simulated annotators and preference data
# ---------------------------------------------------------------------------------------------------------


@dataclass
class AnnotatorConfig:
    temperature: float = 0.5  # Bradley-Terry scale beta: P(a > b) = sigmoid((gold_a - gold_b) / beta)
    flip_prob: float = 0.1  # disagreement: chance an annotator reports the opposite of their BT judgement
    n_annotators: int = 1  # independent votes per pair; the majority (ties at random) decides chosen

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        _check_n(self.n_annotators, "n_annotators")


def preference_probability(gold_a, gold_b, config: AnnotatorConfig | None = None) -> np.ndarray:
    """P(one annotator prefers a over b) = (1 - eps) sigmoid(d / beta) + eps (1 - sigmoid(d / beta)),
    d = gold_a - gold_b, eps = flip_prob, beta = temperature (Bradley-Terry with label noise)."""
    c = config or AnnotatorConfig()
    d = np.asarray(gold_a, dtype=np.float64) - np.asarray(gold_b, dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-d / c.temperature))
    return (1 - c.flip_prob) * p + c.flip_prob * (1 - p)


def expected_agreement(gold_a, gold_b, config: AnnotatorConfig | None = None) -> float:
    """Expected fraction of single-annotator labels that agree with the gold ordering (ties excluded)."""
    ga, gb = np.asarray(gold_a, dtype=np.float64), np.asarray(gold_b, dtype=np.float64)
    keep = ga != gb
    p = preference_probability(np.maximum(ga, gb)[keep], np.minimum(ga, gb)[keep], config)
    return float(p.mean()) if p.size else float("nan")


def annotate(gold_a, gold_b, config: AnnotatorConfig | None = None, seed: int = 0) -> np.ndarray:
    """Votes of `n_annotators` annotators per pair: array [n_pairs, n_annotators] of 1 (a) or 0 (b)."""
    c = config or AnnotatorConfig()
    p = preference_probability(gold_a, gold_b, c)
    rng = np.random.default_rng(seed)
    return (rng.random((p.shape[0], c.n_annotators)) < p[:, None]).astype(np.int64)


def make_preferences(n: int, seed: int = 0, config: AnnotatorConfig | None = None, **config_kwargs):
    """`n` preference pairs labelled by simulated annotators, as a `datasets.Dataset`.

    Columns: prompt, chosen, rejected (TRL's standard format: chosen and rejected are completions of prompt),
    gold_chosen, gold_rejected (gold rewards of prompt + completion, to 6 decimals), votes_chosen (fraction
    of annotators who voted for chosen), gold_agrees (the label matches the gold ordering). Keyword
    arguments not in `config` build an `AnnotatorConfig` (temperature, flip_prob, n_annotators).
    """
    import datasets

    if config is not None and config_kwargs:
        raise ValueError(f"give either config or its fields, not both (got fields {sorted(config_kwargs)})")
    c = config or AnnotatorConfig(**config_kwargs)
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    s = _Sampler(rng)
    prompts = sample_prompts(n, seed)
    a_list, b_list = [], []
    for p in prompts:
        topic = next(t for t in tokenize(p) if t in TOPICS)
        opening = next(o for o in OPENINGS if o.split("{S}")[0].replace("{TOPIC}", topic).strip() == p)
        a = s.review(topic, opening)[1]
        b = a
        while b == a:  # distinct completions: an identical pair carries no preference
            b = s.review(topic, opening)[1]
        a_list.append(a)
        b_list.append(b)
    # 6 decimals: exact round trips through JSON (datasets writes 10 significant digits)
    ga = gold_reward(a_list, prompts).round(6)
    gb = gold_reward(b_list, prompts).round(6)
    votes = annotate(ga, gb, c, seed=int(rng.integers(2**31)))
    frac_a = votes.mean(axis=1)
    a_wins = np.where(frac_a == 0.5, rng.random(n) < 0.5, frac_a > 0.5)
    chosen = [a if w else b for a, b, w in zip(a_list, b_list, a_wins)]
    rejected = [b if w else a for a, b, w in zip(a_list, b_list, a_wins)]
    g_ch = np.where(a_wins, ga, gb)
    g_rj = np.where(a_wins, gb, ga)
    return datasets.Dataset.from_dict(
        {
            "prompt": prompts,
            "chosen": chosen,
            "rejected": rejected,
            "gold_chosen": g_ch.tolist(),
            "gold_rejected": g_rj.tolist(),
            "votes_chosen": np.where(a_wins, frac_a, 1 - frac_a).tolist(),
            "gold_agrees": (g_ch > g_rj).tolist(),
        }
    )
