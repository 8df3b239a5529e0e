"""Batched sampling from a causal LM: the policy acting, one token at a time.

Survey section 2.2 of arXiv 2412.10400: the state is the prompt plus the tokens so far, the action is the
next token, an episode ends at EOS or after `max_new_tokens`. Sampling controls: temperature, top-k and
nucleus (top-p, Holtzman et al., arXiv 1904.09751).

Prompts are padded on the LEFT so that every row's last prompt token sits in the same column and the first
response token of every row is produced by the same forward call; positions are counted from each row's
first real token, so padding changes nothing (the tests check that a padded batch samples exactly what each
prompt samples alone). Responses come back padded on the RIGHT with a mask that is 1 on the generated tokens,
the first EOS included, and 0 after it: the mask every loss in the course multiplies by.

Two shortcuts compute the same values with less work (the tests check that they sample the very tokens of
the plain computation and of a sampler without a cache): a prompt that occurs several times in a batch (a
group of G samples in GRPO) is run through the model once and its KV cache copied to each of its rows, and
rows that have ended are dropped from the batch, while every row is still sampled at each step so that the
random numbers drawn stay the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlsurvey.lm.logprobs import cache_kwargs, model_accepts, returned_cache

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


# end-of-turn tokens of common chat templates (ChatML, Llama 3, Gemma, Phi-3, Mistral's [/INST]-less ones)
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endoftext|>")


def stop_token_ids(model, tokenizer) -> list[int]:
    """The token ids that end a response: the tokenizer's EOS, every id of the model's
    `generation_config.eos_token_id` (an int or a list: chat models list their end-of-turn token there), and,
    when the tokenizer has a chat template, the template's end-of-turn token if the vocabulary has one of
    `END_OF_TURN_TOKENS` as a special token. Sorted, without repeats; empty if there is none."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    if extra is not None:
        ids.update(int(i) for i in ([extra] if isinstance(extra, int) else extra))
    if getattr(tokenizer, "chat_template", None):
        special = set(getattr(tokenizer, "all_special_tokens", ())) | set(
            getattr(tokenizer, "added_tokens_encoder", {}) or {}
        )
        for token in END_OF_TURN_TOKENS:
            if token in special:
                ids.add(int(tokenizer.convert_tokens_to_ids(token)))
    return sorted(ids)


def _check_tokenizer(tokenizer) -> None:
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise ValueError(
            "tokenizer must have a pad token (tokenizer.pad_token_id is None); load it with "
            "rlsurvey.lm.load_model / prepare_tokenizer, or set tokenizer.pad_token = tokenizer.eos_token"
        )


def tokenize_prompts(tokenizer, prompts: Sequence[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, both [B, P] int64, without adding special tokens.

    Each distinct prompt is tokenized once, in one batched call (a GRPO batch repeats every prompt G times).
    """
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
    distinct = list(dict.fromkeys(prompts))
    encoded = dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"]))
    rows = [encoded[p] for p in prompts]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max())
    # row i holds its tokens in the last lengths[i] columns; filling the mask's ones in row-major order
    # places the concatenated tokens exactly there
    mask = (torch.arange(width) >= (width - lengths)[:, None]).long()
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    ids[mask.bool()] = torch.tensor([t for r in rows for t in r], dtype=torch.long)
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


def _distinct_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first, inverse) for the distinct rows of a padded prompt batch: row i equals row first[inverse[i]].
    None when every row is distinct (nothing to share)."""
    _, inverse = torch.unique(torch.cat([ids, mask.to(ids.dtype)], dim=1), dim=0, return_inverse=True)
    n = int(inverse.max()) + 1
    if n == ids.shape[0]:
        return None
    rows = torch.arange(ids.shape[0], device=ids.device)
    first = torch.full((n,), ids.shape[0], dtype=torch.long, device=ids.device).scatter_reduce(
        0, inverse, rows, reduce="amin"
    )
    return first, inverse


def _prefill(model, ids, mask, pos, share_prompts: bool):
    """The prompt forward pass with its KV cache. With `share_prompts`, each distinct prompt is computed once
    and its cache copied to every row that repeats it (rows are independent, so the values are the same)."""
    shared = _distinct_rows(ids, mask) if share_prompts else None
    # only the last position's logits are needed: [B, 1, V] instead of [B, P, V]
    keep = {"logits_to_keep": 1} if model_accepts(model, "logits_to_keep") else {}
    if shared is None:
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **keep)
        return returned_cache(out), out.logits[:, -1, :]
    first, inverse = shared
    out = model(
        input_ids=ids[first], attention_mask=mask[first], position_ids=pos[first], use_cache=True, **keep
    )
    past = returned_cache(out)
    if not hasattr(past, "reorder_cache"):  # not a transformers Cache: fall back to the plain pass
        return _prefill(model, ids, mask, pos, share_prompts=False)
    past.reorder_cache(inverse)  # index_select along the batch: row i gets its prompt's keys and values
    return past, out.logits[:, -1, :][inverse]


@torch.no_grad()
def _generate_batch(
    model, ids, mask, eos, pad, max_new_tokens, temperature, top_k, top_p, generator, share_prompts
):
    device = ids.device
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # positions count from each row's first real token
    past, logits = _prefill(model, ids, mask, pos, share_prompts)
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    filtering = top_k > 0 or top_p < 1.0
    can_drop, owned = hasattr(past, "reorder_cache"), False
    tokens, alive = [], []
    rows = torch.arange(ids.shape[0], device=device)  # the rows still in the model's batch
    attn, last_pos = mask, pos[:, -1:]
    for step in range(max_new_tokens):
        # every row is sampled, finished ones from stale logits, so that the generator draws the same numbers
        # whatever the batch holds; a finished row's token is then replaced by the pad id
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            scores = logits.float() / temperature
            if filtering:
                scores = filter_logits(scores, top_k, top_p)
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        alive.append(~finished)
        nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        if eos is not None:
            finished = finished | torch.isin(nxt, eos)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        live = (~finished[rows]).nonzero().squeeze(1)  # positions in the current batch
        if can_drop and 8 * live.numel() <= 7 * rows.numel():
            # drop finished rows (once an eighth of the batch has ended): rows are computed independently,
            # so the others' logits do not change, and finished rows need no more forward passes
            past.reorder_cache(live)
            rows, attn, last_pos = rows[live], attn[live], last_pos[live]
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
        last_pos = last_pos + 1
        out = model(
            input_ids=nxt[rows][:, None],
            attention_mask=attn,
            position_ids=last_pos,
            use_cache=True,
            **cache_kwargs(model, past),
        )
        past = returned_cache(out)
        if rows.numel() == logits.shape[0]:
            logits = out.logits[:, -1, :]
        else:
            if not owned:  # a private copy once; later steps write into it
                logits, owned = logits.clone(), True
            logits[rows] = out.logits[:, -1, :].to(logits.dtype)
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
    share_prompts: bool = True,
) -> GenerationOutput:
    """Sample one response per prompt; temperature 0 is greedy decoding.

    | output        | shape  | meaning                                                     |
    |---------------|--------|-------------------------------------------------------------|
    | prompt_ids    | [B, P] | left-padded prompt tokens                                   |
    | prompt_mask   | [B, P] | 1 on real prompt tokens                                     |
    | response_ids  | [B, R] | sampled tokens y_t ~ softmax(filter(logits_t) / T), R <= max_new_tokens |
    | response_mask | [B, R] | 1 up to and including the first EOS, 0 after                |

    seed: seeds a private generator on the model's device for the sampling (the global RNG is untouched);
    None draws one from the global RNG, so `rlsurvey.setup(seed)` still makes a notebook repeatable.
    share_prompts: a prompt that occurs several times in a chunk (a group of G samples) is run through the
    model once and its KV cache is copied to each of its rows; the rows are independent, so the sampled
    tokens are those of the plain pass (False), which the tests check.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    filter_logits(torch.zeros(1, 2), top_k, top_p)  # validates top_k and top_p before any work
    all_ids, all_mask = tokenize_prompts(tokenizer, prompts)  # validates every prompt before any work
    device = next(model.parameters()).device
    # the generator lives where the logits are, so a token is drawn without copying [B, V] to the host; a
    # seed gives the same tokens on every run of one device type (CPU and CUDA streams differ)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(torch.randint(2**62, ()).item()) if seed is None else seed)
    stops = stop_token_ids(model, tokenizer)
    eos = torch.tensor(stops, dtype=torch.long, device=device) if stops else None
    pad = tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    parts = []
    try:
        for i in range(0, len(prompts), batch_size):
            ids, mask = all_ids[i : i + batch_size], all_mask[i : i + batch_size]
            left = int((mask.sum(0) == 0).sum())  # columns that are padding in every row of this chunk
            parts.append(
                _generate_batch(
                    model,
                    ids[:, left:].to(device),
                    mask[:, left:].to(device),
                    eos,
                    pad,
                    max_new_tokens,
                    temperature,
                    top_k,
                    top_p,
                    gen,
                    share_prompts,
                )  # fmt: skip
            )
    finally:
        model.train(was_training)
    p_w = max(p[0].shape[1] for p in parts)
    r_w = max(p[2].shape[1] for p in parts)
    prompt_ids = torch.cat([_pad_to(p[0], p_w, pad, True) for p in parts])
    prompt_mask = torch.cat([_pad_to(p[1], p_w, 0, True) for p in parts])
    response_ids = torch.cat([_pad_to(p[2], r_w, pad, False) for p in parts])
    response_mask = torch.cat([_pad_to(p[3], r_w, 0, False) for p in parts])
    finished = torch.cat([p[4] for p in parts])
    # the mask is one block from the start of each row, so its sum is the length to keep
    lengths = response_mask.sum(1).tolist()
    texts = tokenizer.batch_decode(
        [row[:n] for row, n in zip(response_ids.tolist(), lengths)], skip_special_tokens=True
    )
    return GenerationOutput(
        list(prompts), texts, prompt_ids, prompt_mask, response_ids, response_mask, finished
    )
