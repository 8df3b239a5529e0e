"""Tiny model configurations and one loader for any Hugging Face causal LM with its tokenizer.

Survey section 2.2 of arXiv 2412.10400 (the LM as a policy). The architecture is Llama's (Touvron et al.,
arXiv 2302.13971: RMSNorm, rotary positions, SwiGLU), shrunk until it trains in minutes on a laptop CPU; the
loader works for any causal LM (the tests also use a GPT-2 config, Radford et al. 2019), so nothing in the
course depends on Llama.

Loading rules: a shipped name ("reviews-base", "arith-base", "reason-base") or a local directory loads
offline; anything else is taken for a hub id and needs a network (HF_HUB_OFFLINE unset).
`trust_remote_code` is off unless the caller turns it on. The tokenizer pads on the left (prompts end where
the responses start) and always has a pad token: its EOS when it has none, otherwise an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

__all__ = [
    "TinyLlamaConfig",
    "context_length",
    "tiny_llama",
    "random_causal_lm",
    "prepare_tokenizer",
    "load_model",
    "load_tokenizer",
    "is_offline",
]


@dataclass
class TinyLlamaConfig:
    hidden_size: int = 128  # width of the residual stream
    num_hidden_layers: int = 4  # transformer blocks
    num_attention_heads: int = 4  # heads per block (head size = hidden_size / heads)
    intermediate_size: int = 256  # SwiGLU inner width
    max_position_embeddings: int = 128  # longest sequence (prompt + response) in tokens
    tie_word_embeddings: bool = True  # share input and output embeddings: half the parameters at this size


def tiny_llama(vocab_size: int, pad_token_id: int, eos_token_id: int, config: TinyLlamaConfig | None = None):
    """A randomly initialised `LlamaForCausalLM` of the given tiny size."""
    c = config or TinyLlamaConfig()
    hf = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_attention_heads,
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(hf)


def random_causal_lm(
    arch: str, vocab_size: int, pad_token_id: int, eos_token_id: int, seed: int = 0, width: int = 32
):
    """A randomly initialised tiny "llama" or "gpt2" causal LM (2 layers), in eval mode.

    Used by the tests, and by readers, to check that code runs on more than one architecture: GPT-2 has
    learned absolute positions and a fused attention projection where Llama has rotary positions.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    if arch == "llama":
        c = TinyLlamaConfig(
            hidden_size=width, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * width
        )
        model = tiny_llama(vocab_size, pad_token_id, eos_token_id, c)
    elif arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=width,
            n_layer=2,
            n_head=2,
            n_positions=128,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            bos_token_id=eos_token_id,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"arch must be 'llama' or 'gpt2', got {arch!r}")
    return model.eval()


def is_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set)."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _resolve(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """(where to load from, is it local)."""
    from rlsurvey.assets import SHIPPED_MODELS, model_path

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    s = str(name_or_path)
    if s in SHIPPED_MODELS:
        return str(model_path(s)), True
    if Path(s).exists():
        if not Path(s).is_dir():
            raise ValueError(f"name_or_path must be a model directory, got the file {s!r}")
        return s, True
    if is_offline():
        raise ValueError(
            f"name_or_path={s!r} is neither a shipped model {sorted(SHIPPED_MODELS)} nor a local "
            "directory, and the hub is offline (HF_HUB_OFFLINE=1). Use a shipped model, a directory saved "
            "with save_pretrained, or unset HF_HUB_OFFLINE on a machine with a network to download it."
        )
    return s, False


def prepare_tokenizer(tokenizer):
    """Left padding and a pad token (the EOS when there is none); error when neither exists."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "tokenizer has neither a pad token nor an eos token; set one, e.g. "
                "tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's embeddings"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name_or_path: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer of a shipped name, a local directory or a hub id, prepared for generation."""
    where, local = _resolve(name_or_path)
    tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, local_files_only=local)
    return prepare_tokenizer(tok)


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
):
    """(model, tokenizer) for a shipped name ("reviews-base"), a local HF directory or a hub id.

    The model is in eval mode on `device` (default: CPU, or CUDA when present) with `dtype` (default: the
    checkpoint's, float32 for the shipped models); the tokenizer pads on the left and has a pad token.
    """
    from rlsurvey.runtime import default_device

    where, local = _resolve(name_or_path)
    tok = prepare_tokenizer(
        AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, local_files_only=local)
    )
    kw = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(
        where, trust_remote_code=trust_remote_code, local_files_only=local, **kw
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.to(default_device(str(device) if device is not None else None)).eval(), tok


def context_length(model) -> int | None:
    """The longest sequence `model` accepts (its position table), or None when it has no fixed limit."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(model.config, name, None)
        if isinstance(value, int):
            return value
    return None
