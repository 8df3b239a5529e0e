"""Log-probabilities of a response given a prompt, per token and per sequence, with the response mask.

Survey section 2.2 of arXiv 2412.10400: a response y = (y_1 .. y_R) to a prompt x has probability
pi(y | x) = prod_t pi(y_t | x, y_<t), so

    log pi(y | x) = sum_t m_t log pi(y_t | x, y_<t),    log pi(y_t | .) = log softmax(z_t / T)[y_t]     (1)

with m_t the response mask (1 up to and including EOS) and T the sampling temperature (the policy that
sampled at temperature T is softmax(z / T); scoring it at T = 1 would be scoring a different policy). Every
policy-gradient loss (PPO, arXiv 1707.06347; GRPO, arXiv 2402.03300) and every preference loss (DPO, arXiv
2305.18290) starts from (1). The log-softmax-and-gather runs through `rlsurvey.kernels.token_logprobs` (fused
on a GPU), and log-probs with entropies through `rlsurvey.kernels.token_logprobs_and_entropy` (one pass).

Alignment: the logits at position P - 1 + t (the last prompt token, then each response token) predict
response token t. Prompts are left-padded and responses right-padded, and positions are counted from each
row's first real token, so padding changes no value (the tests check this against unpadded rows).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlsurvey.kernels import token_entropy, token_logprobs, token_logprobs_and_entropy

__all__ = [
    "ResponseLogprobs",
    "tokenize_responses",
    "response_logits",
    "response_logprobs",
    "sequence_logprobs",
    "cache_kwargs",
    "masked_entropy",
    "model_accepts",
    "returned_cache",
    "score_responses",
]


@dataclass
class ResponseLogprobs:
    token_logps: torch.Tensor  # [B, R] log pi(y_t | x, y_<t) at temperature T, 0 where the mask is 0
    seq_logps: torch.Tensor  # [B] sum over the masked tokens: log pi(y | x)
    mask: torch.Tensor  # [B, R] the response mask used (float)
    entropy: torch.Tensor | None = None  # [B, R] entropy of pi(. | x, y_<t) at temperature T, 0 off the mask


def tokenize_responses(tokenizer, responses: Sequence[str], add_eos: bool = True, device=None):
    """Right-padded response ids and mask, [B, R] int64; `add_eos` appends EOS to every response (a finished
    episode). Tokenized apart from the prompt, as generation produced them."""
    if isinstance(responses, str) or not isinstance(responses, Sequence):
        raise TypeError(f"responses must be a list of str, got {type(responses).__name__}")
    if len(responses) == 0:
        raise ValueError("responses must be a non-empty list of str, got an empty list")
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "tokenizer must have a pad token (pad_token_id is None); see rlsurvey.lm.prepare_tokenizer"
        )
    if add_eos and tokenizer.eos_token_id is None:
        raise ValueError("add_eos=True needs a tokenizer with an eos token (eos_token_id is None)")
    rows = []
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise TypeError(f"responses[{i}] must be a str, got {type(r).__name__}")
        ids = tokenizer(r, add_special_tokens=False)["input_ids"] + (
            [tokenizer.eos_token_id] if add_eos else []
        )
        if not ids:
            raise ValueError(f"responses[{i}] is empty and add_eos=False: nothing to score")
        rows.append(ids)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _check_shapes(prompt_ids, prompt_mask, response_ids, response_mask):
    for name, ids, mask in (("prompt", prompt_ids, prompt_mask), ("response", response_ids, response_mask)):
        if ids.shape != mask.shape:
            raise ValueError(
                f"{name}_mask must have {name}_ids' shape {tuple(ids.shape)}, got {tuple(mask.shape)}"
            )
    if prompt_ids.shape[0] != response_ids.shape[0]:
        raise ValueError(
            "prompts and responses must have the same batch size, "
            f"got {prompt_ids.shape[0]} and {response_ids.shape[0]}"
        )
    if prompt_ids.shape[1] == 0 or response_ids.shape[1] == 0:
        raise ValueError("prompt_ids and response_ids must each have at least one column")
    if bool((prompt_mask.sum(-1) == 0).any()):
        raise ValueError("every prompt needs at least one real token (a row of prompt_mask is all zeros)")


def model_accepts(model, name: str) -> bool:
    """Whether `model.forward` takes a keyword argument `name` (for example "logits_to_keep", which recent
    transformers models take and older or custom ones do not); False when its signature cannot be read."""
    forward = getattr(model, "forward", None)
    if forward is None:
        return False
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def returned_cache(out):
    """The KV cache a transformers forward pass returned: the `cache` field from transformers 5.25 on (which
    deprecates `past_key_values`, to be removed in 5.40), `past_key_values` before; None without one."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def cache_kwargs(model, cache) -> dict:
    """The keyword argument that hands a KV cache back to `model`: `cache=` where its forward takes it
    (transformers 5.25 and later), else `past_key_values=`."""
    return {"cache": cache} if model_accepts(model, "cache") else {"past_key_values": cache}


def _shared_prompt_logits(model, prompt_ids, prompt_mask, response_ids, response_mask) -> torch.Tensor | None:
    """response_logits with each distinct prompt computed once; None when no prompt repeats or the model
    cannot continue from a copied KV cache (then the caller takes the plain pass).

    Two passes: the distinct prompts [U, P] with their KV cache, then that cache copied to the B rows
    (index_select, so gradients flow back to the shared prompt) and the responses [B, R - 1] run on top of
    it with the same attention mask and positions as the one-pass input. Causal attention makes every
    value equal to the one-pass value; only the floating-point summation order of the prompt's gradient
    differs (G rows add into one).
    """
    from rlsurvey.lm.generation import _distinct_rows

    # checkpointed blocks run without a KV cache (the property was renamed in transformers 5)
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else None
    if getattr(model, name or "is_gradient_checkpointing", False):
        return None
    shared = _distinct_rows(prompt_ids, prompt_mask)
    if shared is None:
        return None
    first, inverse = shared
    u_mask = prompt_mask[first].long()
    u_pos = (u_mask.cumsum(-1) - 1).clamp(min=0)
    keep = {"logits_to_keep": 1} if model_accepts(model, "logits_to_keep") else {}
    out = model(
        input_ids=prompt_ids[first], attention_mask=u_mask, position_ids=u_pos, use_cache=True, **keep
    )
    past = returned_cache(out)
    if not hasattr(past, "reorder_cache"):
        return None
    head = out.logits[:, -1:, :][inverse]  # [B, 1, V]: the last prompt token predicts response token 0
    if response_ids.shape[1] == 1:
        return head
    past.reorder_cache(inverse)
    attn = torch.cat([prompt_mask, response_mask[:, :-1]], dim=1).long()
    pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, prompt_ids.shape[1] :]
    rest = model(
        input_ids=response_ids[:, :-1], attention_mask=attn, position_ids=pos, use_cache=True,
        **cache_kwargs(model, past),
    ).logits  # fmt: skip
    return torch.cat([head, rest], dim=1)


def response_logits(
    model, prompt_ids, prompt_mask, response_ids, response_mask, share_prompts: bool = False
) -> torch.Tensor:
    """Logits [B, R, V] whose row t predicts response token t (one forward pass over prompt + response).

    share_prompts: rows with the same prompt (a GRPO group) share one forward pass over that prompt; see
    `_shared_prompt_logits`. Same values as the one-pass path (the tests compare them, gradients too).
    """
    _check_shapes(prompt_ids, prompt_mask, response_ids, response_mask)
    if share_prompts:
        logits = _shared_prompt_logits(model, prompt_ids, prompt_mask, response_ids, response_mask)
        if logits is not None:
            return logits
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    attn = torch.cat([prompt_mask, response_mask], dim=1).long()
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    p, r = prompt_ids.shape[1], response_ids.shape[1]
    # logits only where they are read: the last r + 1 positions (the last prompt token predicts response
    # token 0), not [B, P + R, V]; use_cache=False: many configs default to True, which would build a KV
    # cache nobody reads
    if model_accepts(model, "logits_to_keep"):
        out = model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False, logits_to_keep=r + 1
        )
        return out.logits[:, :r, :]
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False).logits
    return logits[:, p - 1 : p + r - 1, :]


def response_logprobs(
    model,
    prompt_ids,
    prompt_mask,
    response_ids,
    response_mask,
    temperature: float = 1.0,
    with_entropy: bool = False,
    share_prompts: bool = False,
) -> ResponseLogprobs:
    """Equation (1) for a batch; differentiable (wrap in torch.no_grad() for a frozen reference).

    | argument      | shape  | meaning                                       |
    |---------------|--------|-----------------------------------------------|
    | prompt_ids    | [B, P] | left-padded prompt tokens                     |
    | prompt_mask   | [B, P] | 1 on real prompt tokens                       |
    | response_ids  | [B, R] | right-padded response tokens                  |
    | response_mask | [B, R] | 1 on response tokens to score (EOS included)  |

    share_prompts: compute each distinct prompt once for all the rows that repeat it (GRPO's groups), as in
    `response_logits`.
    """
    logits = response_logits(model, prompt_ids, prompt_mask, response_ids, response_mask, share_prompts)
    mask = response_mask.to(logits.device)
    targets = response_ids.masked_fill(mask == 0, -100)
    if with_entropy:  # one pass over the logits for both (rlsurvey.kernels.logprobs_entropy)
        tok, ent = token_logprobs_and_entropy(logits, targets, ignore_index=-100, temperature=temperature)
    else:
        tok, ent = token_logprobs(logits, targets, ignore_index=-100, temperature=temperature), None
    maskf = mask.to(tok.dtype)
    return ResponseLogprobs(tok * maskf, sequence_logprobs(tok, maskf), maskf, ent)


def sequence_logprobs(token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """sum_t m_t log pi(y_t | .) over the last dimension ([B, R] -> [B]); `average` divides by sum_t m_t
    (the length-normalized log-prob of SimPO, arXiv 2405.14734)."""
    m = mask.to(token_logps.dtype)
    total = (token_logps * m).sum(-1)
    return total / m.sum(-1).clamp(min=1) if average else total


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H_t = -sum_v pi_v log pi_v of softmax(logits / T) per token, [B, R, V] -> [B, R], 0 where mask is 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    h = token_entropy(logits if temperature == 1.0 else logits / temperature)
    return h * mask.to(h.dtype)


def score_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    temperature: float = 1.0,
    add_eos: bool = True,
    with_entropy: bool = False,
) -> ResponseLogprobs:
    """log pi(response | prompt) for strings: the preference-data path (DPO's chosen and rejected)."""
    from rlsurvey.lm.generation import tokenize_prompts

    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses must have the same length, got {len(prompts)} and {len(responses)}"
        )
    device = next(model.parameters()).device
    p_ids, p_mask = tokenize_prompts(tokenizer, prompts, device)
    r_ids, r_mask = tokenize_responses(tokenizer, responses, add_eos, device)
    return response_logprobs(model, p_ids, p_mask, r_ids, r_mask, temperature, with_entropy)
