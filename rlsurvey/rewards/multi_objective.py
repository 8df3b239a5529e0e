"""A multi-objective reward model: one head per human-readable attribute, combined by fitted weights.

Survey section 6 (arXiv 2412.10400, interpretability of rewards). ArmoRM (Wang et al., "Interpretable
preferences via multi-objective reward modeling and mixture-of-experts", arXiv 2406.12845) trains in two
stages: (1) regression heads on a shared backbone predict rated attributes (honesty, verbosity, safety, ...);
(2) a gating network fitted on preference pairs decides how much each attribute counts. A reader can then see
*why* one response scores higher. This module keeps both stages but replaces the prompt-dependent gate with
one weight vector w, fitted by Bradley-Terry on the pairs:

    o(x, y) ∈ R^K (standardized attribute predictions),    r(x, y) = w · o(x, y),
    stage 1:  min Σ_k (o_k − z_k)^2,  z_k the standardized attribute label     (ArmoRM's regression stage)
    stage 2:  min −Σ log σ(w · (o(x, y_w) − o(x, y_l))) + λ ||w||^2         (Bradley-Terry, linear in o)

For the reviews world `review_objectives` reads the attribute labels from text: sentiment, politeness,
rudeness (insults, also a cost for chapter 09's safety section), repetition and length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from rlsurvey.progress import tqdm
from rlsurvey.rewards.bradley_terry import RewardTrainingConfig, _pairs
from rlsurvey.rewards.reward_model import RewardModel, _head, last_token_index, load_quietly

__all__ = [
    "REVIEW_OBJECTIVES",
    "MultiObjectiveRewardModel",
    "fit_objective_weights",
    "fit_linear_bradley_terry",
    "review_objectives",
    "train_objectives",
]

REVIEW_OBJECTIVES = ("sentiment", "politeness", "rudeness", "repetition", "length")


def review_objectives(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """Attribute labels of reviews, [N, 5] in REVIEW_OBJECTIVES order: tanh sentiment, 1 if polite, insult
    count, repetition count, word count (all read by `rlsurvey.tasks.reviews.attributes`)."""
    from rlsurvey.tasks.reviews import attributes

    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts and {len(completions)} completions; they must pair up")
    rows = attributes([p + c for p, c in zip(prompts, completions)])
    return torch.tensor(
        [
            [a["sentiment"], float(a["n_polite"] > 0), a["n_insults"], a["repetition"], a["n_words"]]
            for a in rows
        ],
        dtype=torch.float32,
    )


class MultiObjectiveRewardModel(nn.Module):
    """K regression heads on a causal-LM backbone, read at the last real token; calling it on strings returns
    the weighted reward w · o. Saved as an `AutoModelForSequenceClassification` directory with num_labels=K;
    the objective names, the label standardization and the weights travel in config.json."""

    tokenize = RewardModel.tokenize  # prompt + response + EOS, right padded
    objectives = RewardModel.score  # [N, K] standardized objective predictions, batched, no gradient
    device = RewardModel.device

    def __init__(self, model: nn.Module, tokenizer, names: Sequence[str]):
        super().__init__()
        names = list(names)
        if model.config.num_labels != len(names):
            raise ValueError(f"the model has {model.config.num_labels} heads but {len(names)} names: {names}")
        if tokenizer.pad_token is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")
        self.model, self.tokenizer, self.names = model, tokenizer, names
        cfg = model.config
        k = len(names)
        self.register_buffer("mean", torch.tensor(getattr(cfg, "objective_mean", None) or [0.0] * k))
        self.register_buffer("std", torch.tensor(getattr(cfg, "objective_std", None) or [1.0] * k))
        self.register_buffer("weights", torch.tensor(getattr(cfg, "objective_weights", None) or [0.0] * k))
        cfg.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(
        cls, path: str | Path, names: Sequence[str] | None = None
    ) -> MultiObjectiveRewardModel:
        """Reload a saved model, or start one from a causal-LM checkpoint with heads `names` (zero heads)."""
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        probe = AutoConfig.from_pretrained(str(path))
        names = list(names or getattr(probe, "objective_names", None) or [])
        if not names:
            raise ValueError(f"{path} is not a multi-objective model; pass the objective names")
        model = load_quietly(path, num_labels=len(names))
        if getattr(model.config, "objective_names", None) is None:
            nn.init.zeros_(_head(model).weight)
        return cls(model, tokenizer, names)

    def save_pretrained(self, path: str | Path) -> None:
        cfg = self.model.config
        cfg.objective_names = self.names
        cfg.objective_mean, cfg.objective_std = self.mean.tolist(), self.std.tolist()
        cfg.objective_weights = self.weights.tolist()
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T] tokens -> [B, K] standardized objective predictions at each row's last real token."""
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
        return _head(self.model)(pooled)

    def predict_attributes(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """[N, K] predictions in the labels' own units (standardization undone)."""
        return self.objectives(prompts, responses) * self.std.cpu() + self.mean.cpu()

    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """The combined reward w · o, [N] (the interface of `RewardModel.score`)."""
        return self.objectives(prompts, responses, batch_size) @ self.weights.cpu()

    def __call__(self, *args, **kwargs):
        if args and isinstance(args[0], (list, tuple)) and args[0] and isinstance(args[0][0], str):
            return self.score(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def train_objectives(
    model: MultiObjectiveRewardModel,
    prompts: Sequence[str],
    responses: Sequence[str],
    targets: torch.Tensor,
    config: RewardTrainingConfig | None = None,
) -> list[dict]:
    """Stage 1: mean squared error of every head against its standardized label ([N, K] `targets`).
    Standardizing puts the heads' losses on one scale; the mean and std are stored in the model."""
    config = config or RewardTrainingConfig()
    n, k = len(prompts), len(model.names)
    if len(responses) != n or tuple(targets.shape) != (n, k):
        got = f"{len(responses)} and {tuple(targets.shape)}"
        raise ValueError(f"need {n} responses and targets of shape ({n}, {k}); got {got}")
    model.mean.copy_(targets.mean(0))
    model.std.copy_(targets.std(0).clamp(min=1e-6))
    z = ((targets - model.mean.cpu()) / model.std.cpu()).to(model.device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)
    steps = config.num_epochs * math.ceil(n / config.batch_size)
    history: list[dict] = []
    model.train()
    bar = tqdm(total=steps, desc="objective heads", disable=not config.progress)
    for _ in range(config.num_epochs):
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            enc = model.tokenize([prompts[j] for j in idx], [responses[j] for j in idx], config.max_length)
            per_head = (model(**enc) - z[idx]).pow(2).mean(0)  # [K]
            loss = per_head.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            opt.step()
            history.append(
                {"loss": loss.item(), **{f"mse/{nm}": v.item() for nm, v in zip(model.names, per_head)}}
            )
            bar.update(1)
            bar.set_postfix(mse=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return history


def fit_linear_bradley_terry(diff: torch.Tensor, l2: float = 1e-3, steps: int = 100) -> torch.Tensor:
    """w minimizing −mean log σ(diff @ w) + l2 ||w||^2 (L-BFGS; the problem is convex).

    | argument | shape | meaning |
    |---|---|---|
    | diff | [N, K] | features of the chosen minus features of the rejected response |
    | returns | [K] | the weights |
    """
    if diff.dim() != 2:
        raise ValueError(f"diff must be [N, K], got {tuple(diff.shape)}")
    d = diff.double()
    w = torch.zeros(d.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-10)

    def closure():
        opt.zero_grad()
        loss = -F.logsigmoid(d @ w).mean() + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float()


def fit_objective_weights(model: MultiObjectiveRewardModel, dataset, l2: float = 1e-3) -> dict:
    """Stage 2: fit w on preference pairs (columns prompt, chosen, rejected) with the heads frozen; stores
    w in the model and returns {"weights": {name: w_k}, "accuracy": pairwise accuracy of w · o}."""
    prompts, chosen, rejected = _pairs(dataset)
    diff = model.objectives(prompts, chosen) - model.objectives(prompts, rejected)
    w = fit_linear_bradley_terry(diff, l2)
    model.weights.copy_(w.to(model.weights.device))
    return {"weights": dict(zip(model.names, w.tolist())), "accuracy": ((diff @ w) > 0).float().mean().item()}
