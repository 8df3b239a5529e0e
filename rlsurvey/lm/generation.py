"""Batched sampling from a causal LM: the policy acting, one token at a time.

Survey section 2.2 of arXiv 2412.10400: the state is the prompt plus the tokens so far, the action is the
next token, an episode ends at EOS or after `max_new_tokens`. Sampling controls: temperature, top-k and
nucleus (top-p, Holtzman et al., arXiv 1904.09751).

Prompts are padded on the LEFT so that every row's last prompt token sits in the same column and the first
response token of every row is produced by the same forward call; positions are counted from each row's
first real token, so padding changes nothing (the tests check that a padded batch samples exactly what each
prompt samples alone). Responses come back padded on the RIGHT with a mask that is 1 on the generated tokens,
the first EOS included, and 0 after it: the mask every loss in the course multiplies by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["GenerationOutput", "tokenize_prompts", "filter_logits", "generate"]


@dataclass
class GenerationOutput:
    prompts: list[str]  # the prompts, as given
    texts: list[str]  # decoded responses (special tokens removed)
    prompt_ids: torch.Tensor  # [B, P] prompt tokens, left-padded with the pad id
    prompt_mask: torch.Tensor  # [B, P] 1 on real prompt tokens
    response_ids: torch.Tensor  # [B, R] sampled tokens, right-padded with the pad id after EOS
    response_mask: torch.Tensor  # [B, R] 1 on generated tokens up to and including the first EOS
    finished: torch.Tensor  # [B] bool: the response ended with EOS (not cut at max_new_tokens)

    @property
    def input_ids(self) -> torch.Tensor:
        """[B, P + R] prompt and response side by side (the input of a log-prob pass)."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """[B, P + R] 1 on real tokens of prompt and response."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def _check_tokenizer(tokenizer) -> None:
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError(
            "tokenizer must have a pad token (tokenizer.pad_token_id is None); load it with "
            "rlsurvey.lm.load_model / prepare_tokenizer, or set tokenizer.pad_token = tokenizer.eos_token"
        )


def tokenize_prompts(tokenizer, prompts: Sequence[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, both [B, P] int64, without adding special tokens."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of str, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts must be a non-empty list of str, got an empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(p).__name__}")
        if not p:
            raise ValueError(f"prompts[{i}] is an empty string; every prompt needs at least one token")
    _check_tokenizer(tokenizer)
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits [B, V] with everything outside the top-k and outside the nucleus set to -inf.

    top-k keeps the k largest logits (0: off). top-p keeps the smallest set of tokens, by decreasing
    probability, whose probability sums to at least p (1.0: off); the most likely token is always kept.
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 turns it off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    out = logits.clone()
    if 0 < top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        before = probs.cumsum(-1) - probs  # mass strictly before each token
        drop_sorted = before >= top_p  # the token that crosses p is kept
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


@torch.no_grad()
def _generate_batch(model, tokenizer, prompts, max_new_tokens, temperature, top_k, top_p, generator):
    device = next(model.parameters()).device
    ids, mask = tokenize_prompts(tokenizer, prompts, device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # positions count from each row's first real token
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    tokens, alive = [], []
    attn, last_pos = mask, pos[:, -1:]
    for step in range(max_new_tokens):
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            scores = filter_logits(logits.float() / temperature, top_k, top_p)
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
        alive.append(~finished)
        nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        if eos is not None:
            finished = finished | (nxt == eos)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        last_pos = last_pos + 1
        out = model(
            input_ids=nxt[:, None],
            attention_mask=attn,
            position_ids=last_pos,
            past_key_values=past,
            use_cache=True,
        )
        past, logits = out.past_key_values, out.logits[:, -1, :]
    resp = torch.stack(tokens, dim=1)
    resp_mask = torch.stack(alive, dim=1).long()
    return ids, mask, resp, resp_mask, finished


def _pad_to(x: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    extra = width - x.shape[1]
    if extra == 0:
        return x
    fill = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], dim=1)


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 256,
) -> GenerationOutput:
    """Sample one response per prompt; temperature 0 is greedy decoding.

    | output        | shape  | meaning                                                     |
    |---------------|--------|-------------------------------------------------------------|
    | prompt_ids    | [B, P] | left-padded prompt tokens                                   |
    | prompt_mask   | [B, P] | 1 on real prompt tokens                                     |
    | response_ids  | [B, R] | sampled tokens y_t ~ softmax(filter(logits_t) / T), R <= max_new_tokens |
    | response_mask | [B, R] | 1 up to and including the first EOS, 0 after                |

    seed: seeds a private generator for the sampling (the global RNG is untouched); None draws one from the
    global RNG, so `rlsurvey.setup(seed)` still makes a notebook repeatable.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    filter_logits(torch.zeros(1, 2), top_k, top_p)  # validates top_k and top_p before any work
    tokenize_prompts(tokenizer, prompts)  # validates every prompt before any work
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()) if seed is None else seed)
    was_training = model.training
    model.eval()
    try:
        parts = [
            _generate_batch(
                model,
                tokenizer,
                list(prompts[i : i + batch_size]),
                max_new_tokens,
                temperature,
                top_k,
                top_p,
                gen,
            )
            for i in range(0, len(prompts), batch_size)
        ]
    finally:
        model.train(was_training)
    pad = tokenizer.pad_token_id
    p_w = max(p[0].shape[1] for p in parts)
    r_w = max(p[2].shape[1] for p in parts)
    prompt_ids = torch.cat([_pad_to(p[0], p_w, pad, True) for p in parts])
    prompt_mask = torch.cat([_pad_to(p[1], p_w, 0, True) for p in parts])
    response_ids = torch.cat([_pad_to(p[2], r_w, pad, False) for p in parts])
    response_mask = torch.cat([_pad_to(p[3], r_w, 0, False) for p in parts])
    finished = torch.cat([p[4] for p in parts])
    texts = tokenizer.batch_decode(
        [row[m.bool()].tolist() for row, m in zip(response_ids.cpu(), response_mask.cpu())],
        skip_special_tokens=True,
    )
    return GenerationOutput(
        list(prompts), texts, prompt_ids, prompt_mask, response_ids, response_mask, finished
    )
