"""Process reward models (a score for every step) and outcome reward models (one for the answer).

Beyond the survey (arXiv 2412.10400), chapter 15. "Let's Verify Step by Step" (Lightman et al., arXiv
2305.20050) trains a process reward model (PRM) on a label for each step of a solution and compares it with
an outcome reward model (ORM) trained on final answers only. Math-Shepherd (Wang et al., arXiv 2312.08935)
labels steps without a labeller: from the end of a step, N completions are sampled, and the step is good
when they reach the right answer (hard estimate: at least one does; soft estimate: the share that do).
DeepSeekMath (Shao et al., arXiv 2402.03300, section 4.1.3) uses a PRM's step scores inside GRPO's
advantages ("process supervision"); that part lives in `rlsurvey.algos.advantages.process_advantages`.

Both models here are one architecture: a causal-LM backbone with a one-output linear head read at chosen
tokens, stored as an `AutoModelForTokenClassification` directory with `num_labels=1` (safetensors). The PRM
reads it at the token that closes each step and at the EOS after the answer; the ORM only at that EOS. The
loss is the binary cross-entropy between the head's logit and the label at each labelled token (eq. 1 of
`step_bce_loss`); every other token is ignored.

A response is split into steps by a `step_ends(prompt, completion) -> character indices` function; the
default is the reasoning world's (`rlsurvey.tasks.reasoning.step_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForTokenClassification, AutoTokenizer

from rlsurvey.algos.supervised import SupervisedTrainer
from rlsurvey.rewards.reward_model import load_quietly

__all__ = [
    "IGNORE_INDEX",
    "KINDS",
    "StepExample",
    "StepRewardConfig",
    "StepRewardModel",
    "StepRewardTrainer",
    "aggregate_step_scores",
    "auroc",
    "auroc_by_response",
    "evaluate_steps",
    "majority_vote",
    "majority_vote_accuracy",
    "mc_estimate",
    "monte_carlo_labels",
    "prm_step_rewards",
    "reasoning_step_ends",
    "step_bce_loss",
    "step_examples",
]

IGNORE_INDEX = -100
KINDS = ("prm", "orm")


def step_bce_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, dict]:
    """The masked binary cross-entropy of a step reward model, and metrics.

        L(φ) = −(1/|S|) Σ_{(b,t) ∈ S} [ y_bt log σ(z_bt) + (1 − y_bt) log(1 − σ(z_bt)) ]        (1)

    where S is the set of labelled tokens (label ≠ ignore_index) and z_bt the head's logit there.

    | argument | shape | meaning |
    |---|---|---|
    | logits | [B, T] | the head's output at every token |
    | labels | [B, T] | 1 or 0 at a labelled token (a step's end, the EOS), `ignore_index` elsewhere |
    | returns | (), dict | the mean over S; "accuracy" (σ(z) > 0.5 agrees), "n_labels", "positive_rate" |
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"logits and labels must be tensors, got {type(logits).__name__} and {type(labels).__name__}"
        )
    if logits.dim() != 2 or labels.shape != logits.shape:
        raise ValueError(
            f"logits and labels must both be [B, T]; got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    keep = labels != ignore_index
    if not keep.any():
        raise ValueError(f"labels has no labelled token (every entry is ignore_index={ignore_index})")
    y = labels[keep].to(logits.dtype)
    if not torch.all((y == 0) | (y == 1)):
        bad = labels[keep][(y != 0) & (y != 1)][0].item()
        raise ValueError(f"labels must be 0, 1 or ignore_index={ignore_index}, got {bad}")
    z = logits[keep]
    loss = F.binary_cross_entropy_with_logits(z, y)
    with torch.no_grad():
        metrics = {
            "accuracy": ((z > 0).to(y.dtype) == y).float().mean(),
            "n_labels": torch.tensor(float(y.numel())),
            "positive_rate": y.float().mean(),
        }
    return loss, metrics


def reasoning_step_ends(prompt: str, completion: str) -> list[int]:
    """Character indices in `completion` where the reasoning world's steps end (`step_labels`)."""
    from rlsurvey.tasks.reasoning import step_labels

    return list(step_labels(prompt, completion).ends)


@dataclass(frozen=True)
class StepExample:
    """One training example: a response with labels at the ends of its steps and at its EOS."""

    prompt: str
    completion: str
    ends: tuple[int, ...]  # character indices in `completion` of the labelled step ends (the EOS comes after)
    labels: tuple[int, ...]  # one per end, then one for the EOS (so len(labels) == len(ends) + 1)


def step_examples(prompts: Sequence[str], completions: Sequence[str], kind: str = "prm") -> list[StepExample]:
    """Training examples with the reasoning world's exact labels (`rlsurvey.tasks.reasoning.step_labels`).

    kind "prm": a label at each step's end (the step and all before it are right) and at the EOS (every
    step the problem needs is written and right, and the answer is right). kind "orm": one label, at the
    EOS: the strict verifier's verdict on the answer, whatever the steps."""
    from rlsurvey.tasks.reasoning import step_labels

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if isinstance(prompts, str) or isinstance(completions, str) or len(prompts) != len(completions):
        raise ValueError("prompts and completions must be lists of str of one length")
    out = []
    for p, c in zip(prompts, completions):
        lab = step_labels(p, c)
        if kind == "orm":
            out.append(StepExample(p, c, (), (int(lab.answer_correct),)))
        else:
            final = int(lab.all_steps_correct and lab.answer_correct)
            out.append(StepExample(p, c, lab.ends, (*map(int, lab.correct), final)))
    return out


class StepRewardModel(nn.Module):
    """A PRM or an ORM: p_φ(step is right) = σ(z_t) read at the tokens that end steps (and at the EOS).

    `StepRewardModel.from_pretrained(model_path("reason-base"))` starts one from a causal LM (the head at
    zero, so every probability starts at 1/2); a trained one reloads from its directory, which plain
    transformers also loads (`AutoModelForTokenClassification`).
    """

    def __init__(
        self, model: nn.Module, tokenizer, step_ends: Callable[[str, str], Sequence[int]] | None = None
    ):
        super().__init__()
        if getattr(model.config, "num_labels", None) != 1:
            raise ValueError(
                f"a step reward model needs num_labels=1, got {getattr(model.config, 'num_labels', None)}"
            )
        if tokenizer.pad_token is None or tokenizer.eos_token is None:
            raise ValueError(
                "the tokenizer needs a pad token and an EOS token (the answer's score is read at EOS)"
            )
        self.model, self.tokenizer = model, tokenizer
        self.step_ends = step_ends or reasoning_step_ends
        self.model.config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str | Path, step_ends=None, **kwargs) -> StepRewardModel:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = load_quietly(path, AutoModelForTokenClassification, num_labels=1, **kwargs)
        archs = getattr(model.config, "architectures", None) or []
        if not any(a.endswith("ForTokenClassification") for a in archs):
            head = model.score if hasattr(model, "score") else model.classifier
            nn.init.zeros_(head.weight)
            if getattr(head, "bias", None) is not None:
                nn.init.zeros_(head.bias)
        return cls(model, tokenizer, step_ends)

    @property
    def kind(self) -> str | None:
        """The kind, "prm" or "orm" once trained (saved in config.json as `step_reward_kind`)."""
        return getattr(self.model.config, "step_reward_kind", None)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits z_t at every token: [B, T] ints -> [B, T] floats (read them where a step ends)."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        return out.logits.squeeze(-1)

    def encode(self, prompts: Sequence[str], completions: Sequence[str], ends: Sequence[Sequence[int]]):
        """Right-padded ids of prompt + completion + EOS and, per row, the token indices to read: the token
        holding each character index of `ends` (in the completion), then the EOS. Returns
        (input_ids [B, T], attention_mask [B, T], list of index lists)."""
        eos = self.tokenizer.eos_token
        rows, reads = [], []
        for p, c, e in zip(prompts, completions, ends, strict=True):
            enc = self.tokenizer(p + c, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
            starts = np.array([a for a, _ in offsets] or [0])
            idx = []
            for k in e:
                if not 0 <= k < len(c):
                    raise ValueError(f"a step end ({k}) lies outside the completion {c!r}")
                idx.append(int(np.searchsorted(starts, len(p) + k, side="right") - 1))
            ids += self.tokenizer(eos, add_special_tokens=False)["input_ids"]
            rows.append(ids)
            reads.append(idx + [len(ids) - 1])
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        return input_ids.to(self.device), mask.to(self.device), reads

    @torch.no_grad()
    def step_scores(
        self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 256
    ) -> list[np.ndarray]:
        """p_φ at each step's end and, last, at the EOS: one array of length (steps + 1) per response.
        An ORM has been trained only at the EOS, so read only its last entry."""
        if isinstance(prompts, str) or isinstance(completions, str) or len(prompts) != len(completions):
            raise ValueError("prompts and completions must be lists of str of one length")
        was = self.training
        self.eval()
        out = []
        try:
            for i in range(0, len(prompts), batch_size):
                ps, cs = list(prompts[i : i + batch_size]), list(completions[i : i + batch_size])
                ends = [self.step_ends(p, c) for p, c in zip(ps, cs)]
                ids, mask, reads = self.encode(ps, cs, ends)
                prob = torch.sigmoid(self(ids, mask).float()).cpu().numpy()
                out += [prob[j, r] for j, r in enumerate(reads)]
        finally:
            self.train(was)
        return out

    def score(self, prompts, completions, how: str | None = None) -> np.ndarray:
        """One score per response: `aggregate_step_scores` of its step scores; `how` defaults to "min"
        for a PRM and "last" (the EOS) for an ORM."""
        how = how or ("last" if self.kind == "orm" else "min")
        return aggregate_step_scores(self.step_scores(prompts, completions), how)

    def __call__(self, *args, **kwargs):
        # strings in, one score per response out: a trained PRM or ORM can stand where a reward_fn does
        if args and isinstance(args[0], (list, tuple)) and args[0] and isinstance(args[0][0], str):
            return self.score(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def prm_step_rewards(model: StepRewardModel, batch_size: int = 256):
    """A `step_reward_fn` for `rlsurvey.algos.grpo.train_grpo` (process supervision): per response, the
    response-token indices where its steps end, then its EOS, and the model's probabilities there. The
    indices come from re-tokenizing the text, which gives the sampled tokens back for a tokenizer with one
    token per character (the reasoning world's); the trainer drops an index past a response's end (a
    response cut at max_new_tokens has no EOS)."""
    if not isinstance(model, StepRewardModel):
        raise TypeError(f"model must be a StepRewardModel, got {type(model).__name__}")

    def step_reward_fn(prompts, completions):
        scores = model.step_scores(prompts, completions, batch_size=batch_size)
        out = []
        for p, c, sc in zip(prompts, completions, scores):
            n_prompt = len(model.tokenizer(p, add_special_tokens=False)["input_ids"])
            _, _, reads = model.encode([p], [c], [model.step_ends(p, c)])
            out.append(([k - n_prompt for k in reads[0]], [float(x) for x in sc]))
        return out

    return step_reward_fn


def aggregate_step_scores(step_scores: Sequence[np.ndarray], how: str = "min") -> np.ndarray:
    """One number per response from its step probabilities: "min" (the weakest step; Lightman et al. and
    Math-Shepherd both use the minimum), "prod" (the chance that every step is right, were they
    independent), or "last" (the final entry alone: the EOS, what an ORM reads)."""
    if how not in ("min", "prod", "last"):
        raise ValueError(f"how must be 'min', 'prod' or 'last', got {how!r}")
    out = np.empty(len(step_scores))
    for i, s in enumerate(step_scores):
        s = np.asarray(s, dtype=np.float64)
        if s.size == 0:
            raise ValueError(f"response {i} has no step score (every response has at least its EOS)")
        out[i] = s.min() if how == "min" else (np.prod(s) if how == "prod" else s[-1])
    return out


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The area under the ROC curve: P(score of a random positive > score of a random negative), ties 1/2
    (the Mann-Whitney U statistic over n_pos · n_neg)."""
    s, y = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have one length, got {s.size} and {y.size}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"AUROC needs both classes, got {pos.size} positives and {neg.size} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    i = 0
    while i < s.size:  # average ranks over ties
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y == 1].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def majority_vote(answers: Sequence[Sequence[int | None]]) -> list[int | None]:
    """Self-consistency (Wang et al., arXiv 2203.11171): per prompt, the most frequent final answer among
    its samples (None, a malformed response, never wins while any answer exists; ties go to the answer seen
    first)."""
    out = []
    for row in answers:
        counts: dict[int, int] = {}
        for a in row:
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
        out.append(max(counts, key=lambda a: counts[a]) if counts else None)  # max keeps the first on ties
    return out


def majority_vote_accuracy(
    answers: Sequence[Sequence[int | None]], truth: Sequence[int], n: int, draws: int = 64, seed: int = 0
) -> float:
    """The accuracy of self-consistency with `n` votes: for each prompt, `draws` random n-subsets of its N
    sampled answers (without replacement), each decided by `majority_vote`; the mean over prompts and
    draws. With n = N every draw is the whole set."""
    rows = [list(a) for a in answers]
    if len(rows) != len(truth) or not rows:
        raise ValueError(
            f"answers and truth must have one entry per prompt, got {len(rows)} and {len(truth)}"
        )
    big_n = min(len(r) for r in rows)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= big_n:
        raise ValueError(f"n must be an int in [1, N={big_n}], got {n!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    rng = np.random.default_rng(seed)
    hits = 0
    for row, t in zip(rows, truth):
        subsets = [[row[j] for j in rng.choice(len(row), n, replace=False)] for _ in range(draws)]
        hits += sum(v == t for v in majority_vote(subsets))
    return hits / (len(rows) * draws)


def monte_carlo_labels(
    policy,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    n_rollouts: int,
    verifier: Callable[[Sequence[str], Sequence[str]], Sequence[float]] | None = None,
    step_ends: Callable[[str, str], Sequence[int]] | None = None,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 1024,
) -> list[np.ndarray]:
    """Math-Shepherd's rollouts (arXiv 2312.08935, section 3.3): from the end of each step, `n_rollouts`
    completions by `policy`, each judged by the verifier (default: the reasoning world's strict check).
    Returns, per response, a [steps, n_rollouts] array of 0/1 outcomes; `mc_estimate` turns its first n
    columns into the hard estimate (1 when any of the n completions is right) or the soft one (their mean).
    One generation call serves every N up to `n_rollouts`."""
    from rlsurvey.lm.generation import generate
    from rlsurvey.tasks.reasoning import accuracy_reward

    if isinstance(n_rollouts, bool) or not isinstance(n_rollouts, int) or n_rollouts < 1:
        raise ValueError(f"n_rollouts must be a positive int, got {n_rollouts!r}")
    if isinstance(prompts, str) or isinstance(completions, str) or len(prompts) != len(completions):
        raise ValueError("prompts and completions must be lists of str of one length")
    verifier = verifier or accuracy_reward
    step_ends = step_ends or reasoning_step_ends
    starts, owners = [], []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        for k, e in enumerate(step_ends(p, c)):
            starts.append((p, c[: e + 1]))
            owners.append((i, k))
    out = [np.zeros((len(step_ends(p, c)), n_rollouts)) for p, c in zip(prompts, completions)]
    if not starts:
        return out
    batch_prompts = [p + prefix for p, prefix in starts for _ in range(n_rollouts)]
    gen = generate(
        policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=seed, batch_size=batch_size
    )
    full = [starts[j // n_rollouts][1] + gen.texts[j] for j in range(len(batch_prompts))]
    base = [starts[j // n_rollouts][0] for j in range(len(batch_prompts))]
    right = np.asarray(verifier(base, full), dtype=np.float64).reshape(len(starts), n_rollouts)
    for (i, k), r in zip(owners, right):
        out[i][k] = r
    return out


def mc_estimate(outcomes: Sequence[np.ndarray], n: int, how: str = "hard") -> list[np.ndarray]:
    """Math-Shepherd's step labels from the first `n` rollouts of `monte_carlo_labels`' outcomes: "hard"
    (1.0 when at least one completion reaches the right answer) or "soft" (the share that do)."""
    if how not in ("hard", "soft"):
        raise ValueError(f"how must be 'hard' or 'soft', got {how!r}")
    out = []
    for o in outcomes:
        o = np.asarray(o, dtype=np.float64)
        if o.ndim != 2 or not 1 <= n <= o.shape[1]:
            raise ValueError(f"n must be in [1, {o.shape[1] if o.ndim == 2 else '?'}], got {n!r}")
        part = o[:, :n]
        out.append(part.max(1) if how == "hard" else part.mean(1))
    return out


@dataclass
class StepRewardConfig:
    kind: str = "prm"  # "prm": a label at every step's end and the EOS; "orm": at the EOS only
    learning_rate: float = 1e-3  # AdamW peak rate (tiny models; ~1e-5 for billions of parameters)
    batch_size: int = 64  # responses per micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    max_steps: int | None = None  # optimizer steps; None: num_epochs passes over the data
    num_epochs: float = 1.0  # passes over the data when max_steps is None
    lr_scheduler: str = "linear"  # "linear" (decay to 0 after warm-up) or "constant"
    warmup_steps: int = 10  # linear warm-up from 0 to learning_rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    adam_epsilon: float = 1e-8  # AdamW denominator guard
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (None: no clipping)
    max_new_tokens: int = 48  # the generated data (CLI): longest sampled response
    temperature: float = 1.0  # the generated data (CLI): sampling temperature of the policy
    shuffle: bool = True  # reshuffle the data every epoch
    seed: int = 0  # seeds the shuffling
    disable_dropout: bool = True  # a reward model is trained without dropout
    logging_steps: int = 1  # optimizer steps averaged into one history entry
    save_steps: int | None = None  # save output_dir/checkpoint-<step> every this many steps (None: never)
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    output_dir: str | None = None  # checkpoints: HF directories (model, tokenizer, trainer_state.json)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir
    progress: bool = True  # show a tqdm progress bar
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes

    def __post_init__(self):
        from rlsurvey.checks import check_fields

        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.lr_scheduler not in ("linear", "constant"):
            raise ValueError(f"lr_scheduler must be 'linear' or 'constant', got {self.lr_scheduler!r}")
        if self.save_steps is not None and self.output_dir is None:
            raise ValueError("save_steps needs an output_dir, got output_dir=None")
        check_fields(self, {
            "learning_rate": ">0", "batch_size": "int>=1", "gradient_accumulation_steps": "int>=1",
            "max_steps": "int>=1", "num_epochs": ">0", "warmup_steps": "int>=0", "weight_decay": ">=0",
            "adam_betas": "[0,1)", "adam_epsilon": ">0", "max_grad_norm": ">0", "max_new_tokens": "int>=1",
            "temperature": ">0", "logging_steps": "int>=1", "save_steps": "int>=1",
            "save_total_limit": "int>=1",
        })  # fmt: skip


class StepRewardTrainer(SupervisedTrainer):
    """Trains a `StepRewardModel` on `StepExample`s with the masked BCE (`step_bce_loss`). Metrics per
    logged step: loss, accuracy, n_labels, positive_rate, grad_norm, learning_rate (and step, epoch)."""

    progress_name = "step RM"

    def __init__(
        self, model: StepRewardModel, examples: Sequence[StepExample], config: StepRewardConfig | None = None
    ):
        config = config or StepRewardConfig()
        if not isinstance(model, StepRewardModel):
            raise TypeError(f"model must be a StepRewardModel, got {type(model).__name__}")
        examples = list(examples)
        if not examples:
            raise ValueError("examples is empty; give at least one StepExample")
        for i, ex in enumerate(examples):
            if not isinstance(ex, StepExample):
                raise TypeError(f"examples[{i}] must be a StepExample, got {type(ex).__name__}")
            if len(ex.labels) != len(ex.ends) + 1:
                raise ValueError(
                    f"examples[{i}] has {len(ex.ends)} step ends and {len(ex.labels)} labels; it needs one "
                    "label per end plus one for the EOS"
                )
            if any(v not in (0, 1) for v in ex.labels):
                raise ValueError(f"examples[{i}].labels must be 0 or 1, got {ex.labels}")
            if config.kind == "orm" and ex.ends:
                raise ValueError(f"examples[{i}] has step labels; an ORM ('orm') is trained at the EOS only")
        self.reward_model = model
        # the loop trains and saves the transformers model inside (an AutoModelForTokenClassification)
        self._init_model(model.model, model.tokenizer, config)
        model.model.config.step_reward_kind = config.kind
        self.train_data = examples
        self._init_optimization(model.parameters())

    def compute_loss(self, idx, data=None) -> tuple[torch.Tensor, dict]:
        batch = [self.train_data[i] for i in idx]
        rm = self.reward_model
        ids, mask, reads = rm.encode(
            [b.prompt for b in batch], [b.completion for b in batch], [b.ends for b in batch]
        )
        labels = torch.full(ids.shape, IGNORE_INDEX, dtype=torch.long, device=ids.device)
        for j, (r, b) in enumerate(zip(reads, batch)):
            labels[j, r] = torch.tensor(b.labels, dtype=torch.long, device=ids.device)
        return step_bce_loss(rm(ids, mask), labels)


def evaluate_steps(
    policy,
    tokenizer,
    prompts: Sequence[str],
    prm: StepRewardModel | None = None,
    n: int = 1,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict:
    """Sample `n` responses per prompt of the reasoning world and measure them against the exact step
    labels: "accuracy" (the strict verifier), "step_accuracy" (the share of written steps labelled right),
    "all_steps_correct" (every needed step written and right), "wrong_steps_in_right" (among right answers,
    the share whose steps are not all right), "mean_steps", "mean_length" (tokens, EOS included) and, with a
    `prm`, "prm_min" (the mean of its minimum step score) and "prm_step_mean" (its mean step score over the
    same steps as "step_accuracy", the EOS excluded)."""
    from rlsurvey.algos.rollout import repeat_prompts
    from rlsurvey.lm.generation import generate
    from rlsurvey.tasks.reasoning import step_labels

    batch = repeat_prompts(list(prompts), n)
    gen = generate(policy, tokenizer, batch, max_new_tokens, temperature, seed=seed)
    labs = [step_labels(p, c) for p, c in zip(batch, gen.texts)]
    right = np.array([lab.answer_correct for lab in labs])
    every = np.array([lab.all_steps_correct for lab in labs])
    flat = [ok for lab in labs for ok in lab.correct]
    out = {
        "accuracy": float(right.mean()),
        "step_accuracy": float(np.mean(flat)) if flat else math.nan,
        "all_steps_correct": float(every.mean()),
        "wrong_steps_in_right": float((~every[right]).mean()) if right.any() else math.nan,
        "mean_steps": float(np.mean([len(lab.steps) for lab in labs])),
        "mean_length": float(gen.response_mask.sum(1).float().mean()),
    }
    if prm is not None:
        scores = prm.step_scores(batch, gen.texts)
        steps = np.concatenate([s[:-1] for s in scores])
        out["prm_min"] = float(np.mean([s.min() for s in scores]))
        out["prm_step_mean"] = float(steps.mean()) if steps.size else math.nan
    return out


def auroc_by_response(
    scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]], resamples: int = 200, seed: int = 0
) -> tuple[float, float]:
    """The AUROC of all entries of all responses pooled (steps, or one score per response), and its standard
    error from a bootstrap over responses (`resamples` draws with replacement; 0: NaN)."""
    if len(scores) != len(labels) or not len(scores):
        raise ValueError(
            f"scores and labels need one entry per response, got {len(scores)} and {len(labels)}"
        )
    s = [np.asarray(x, dtype=np.float64).ravel() for x in scores]
    y = [np.asarray(x).ravel() for x in labels]
    if any(a.shape != b.shape for a, b in zip(s, y)):
        raise ValueError("each response needs as many labels as scores")
    whole = auroc(np.concatenate(s), np.concatenate(y))
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"resamples must be an int >= 0, got {resamples!r}")
    if resamples == 0:
        return whole, math.nan
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, len(s), len(s))
        yy = np.concatenate([y[i] for i in idx])
        if 0 < yy.sum() < yy.size:
            draws.append(auroc(np.concatenate([s[i] for i in idx]), yy))
    return whole, float(np.std(draws, ddof=1)) if len(draws) > 1 else math.nan
