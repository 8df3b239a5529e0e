"""A reward model: a causal-LM backbone with a scalar head that reads the last real token (survey 4.1).

InstructGPT (arXiv 2203.02155, section 3.5) trains its reward model by taking the pretrained (SFT) language
model, removing the unembedding layer and adding a linear head that maps the final hidden state of the
*last token* of prompt + response to one number. This module does the same for any Hugging Face causal LM.

The model is stored as a standard `AutoModelForSequenceClassification` directory with `num_labels=1`
(safetensors), the layout TRL's reward trainer and every HF pipeline understand. The forward pass does not
use that class's own pooling, which locates the last token by searching for the pad token id (fragile when
pad equals EOS, as with GPT-2); it takes the last position where `attention_mask` is 1, which is right for
left and right padding alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from rlsurvey.lm.models import context_length

__all__ = ["RewardModel", "last_token_index"]


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose attention mask is 1, per row; [B, T] -> [B].

    Works for left padding (the last column) and right padding (before the first pad). A row with no real
    token is an error, since it has no reward to read.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [B, T], got {tuple(attention_mask.shape)}")
    real = attention_mask.bool()
    if not real.any(dim=1).all():
        raise ValueError("a row of attention_mask has no real token (an empty sequence)")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return torch.where(real, positions, -1).amax(dim=1)


def load_quietly(path: str | Path, auto_class=AutoModelForSequenceClassification, **kwargs) -> nn.Module:
    """`auto_class.from_pretrained` (default AutoModelForSequenceClassification) without the load report and
    progress bar that transformers prints when it initializes a fresh head (expected when starting from a
    causal LM)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*newly initialized.*")
            return auto_class.from_pretrained(str(path), **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class RewardModel(nn.Module):
    """r_φ(x, y): a scalar score of a prompt and response.

    Build one from a causal-LM checkpoint (`RewardModel.from_pretrained(model_path("reviews-base"))`; the head
    starts at zero so every reward starts at 0) or reload a trained one from its directory.
    """

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        if getattr(model.config, "num_labels", None) != 1:
            raise ValueError(
                f"a reward model needs num_labels=1, got {getattr(model.config, 'num_labels', None)}"
            )
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            raise ValueError(
                "the tokenizer has no pad token; set tokenizer.pad_token before building a reward model"
            )
        self.model.config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> RewardModel:
        """Load a reward-model directory, or start one from a causal-LM checkpoint (head set to zero)."""
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # e.g. GPT-2; rewards are read by mask, not by pad id
        model = load_quietly(path, num_labels=1, **kwargs)
        head = _head(model)
        config_archs = getattr(model.config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in config_archs):
            nn.init.zeros_(head.weight)  # a fresh head: every reward starts at 0
            if getattr(head, "bias", None) is not None:
                nn.init.zeros_(head.bias)
        return cls(model, tokenizer)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the model (safetensors) and tokenizer as an HF directory; loadable by this class or by
        `AutoModelForSequenceClassification`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def max_length(self) -> int | None:
        """The longest prompt + response the model was trained on (None: its context). `train_reward_model`
        sets it, it is saved in config.json (`reward_max_length`), and `score` cuts to it, so a pair is
        scored exactly as it was seen in training."""
        return getattr(self.model.config, "reward_max_length", None)

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self.model.config.reward_max_length = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards of tokenized sequences.

        | argument | shape | meaning |
        |---|---|---|
        | input_ids | [B, T] | prompt + response tokens, left or right padded |
        | attention_mask | [B, T] | 1 on real tokens |
        | returns | [B] | the score read at each row's last real token |
        """
        # position ids from the mask: with left padding, the first real token is position 0, as unpadded (an
        # absolute-position model such as GPT-2 would otherwise read shifted positions)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        last = last_token_index(attention_mask)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [B, H]
        return _head(self.model)(pooled).squeeze(-1)

    def tokenize(self, prompts: Sequence[str], responses: Sequence[str], max_length: int | None = None):
        """Tokenize prompt + response (+ EOS if the tokenizer has one), right padded; a dict of tensors.
        max_length: default `self.max_length`, the length the model was trained at.

        A sequence longer than `max_length`, or than the model's context (its position table), loses tokens
        from the start of its prompt: the response, which is what tells two responses to one prompt apart,
        is kept whole. A response that alone is too long keeps one prompt token and its own first tokens.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts and {len(responses)} responses; they must pair up")
        eos = self.tokenizer.eos_token or ""
        limit = context_length(self.model)
        if max_length is None:  # the length trained at (read from the config, for classes that borrow this)
            max_length = getattr(self.model.config, "reward_max_length", None)
        if max_length is not None:
            limit = max_length if limit is None else min(limit, max_length)
        texts = [p + r + eos for p, r in zip(prompts, responses, strict=True)]
        rows = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        self.last_truncated = 0  # rows of the last call cut to fit (a training metric)
        for i, ids in enumerate(rows):
            if limit is not None and len(ids) > limit:
                rows[i] = self._fit(prompts[i], responses[i] + eos, limit)
                self.last_truncated += 1
        width = max((len(ids) for ids in rows), default=0)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows], dtype=torch.long)
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _fit(self, prompt: str, response: str, limit: int) -> list[int]:
        """Token ids of prompt + response in `limit` tokens, cut from the left of the prompt."""
        p, r = (self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in (prompt, response))
        if len(r) >= limit:  # the response alone fills the context
            return (p[-1:] + r[: limit - 1]) if p else r[:limit]
        return p[max(0, len(p) - (limit - len(r))) :] + r

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Rewards of text pairs, [N] on the CPU, in batches, without gradients."""
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(prompts), batch_size):
            enc = self.tokenize(prompts[i : i + batch_size], responses[i : i + batch_size])
            out.append(self(**enc).float().cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    def __call__(self, *args, **kwargs):
        # Strings in, rewards out: lets a reward model stand wherever a reward callable is expected.
        if args and isinstance(args[0], (list, tuple)) and args[0] and isinstance(args[0][0], str):
            return self.score(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def _head(model: nn.Module) -> nn.Module:
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            return head
    raise TypeError(f"{type(model).__name__} has no linear 'score' or 'classifier' head")
