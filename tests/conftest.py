"""Shared fixtures: tiny random causal LMs (Llama and GPT-2) with a character-level tokenizer, saved as HF
directories, so tests exercise the same loading code as the shipped models without any download."""

from __future__ import annotations

import string

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHARS = string.ascii_lowercase + string.digits + " .,!?+-="


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer with <pad> = 0 and <eos> = 1."""
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(CHARS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_causal_lm(arch: str = "llama", seed: int = 0, vocab_size: int | None = None):
    tok = char_tokenizer()
    torch.manual_seed(seed)
    v = vocab_size or len(tok)
    if arch == "llama":
        cfg = LlamaConfig(
            vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            pad_token_id=0, eos_token_id=1, bos_token_id=1,
        )  # fmt: skip
        model = LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=128, pad_token_id=0, eos_token_id=1,
            bos_token_id=1,
        )  # fmt: skip
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(arch)
    return model, tok


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every test starts with the same CPU thread count: a test that changes it (or calls code that does)
    must not change the arithmetic, and so the sampled tokens, of the tests after it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _small_cli_reports(monkeypatch):
    """The held-out report that ends every `rlsurvey train` scores 256 prompts (500 pairs) per model; the
    tests run the command line dozens of times on tiny budgets, so there it scores 16 (40; 24 for a step
    reward model)."""
    from rlsurvey import cli_report

    monkeypatch.setattr(cli_report, "REPORT_PROMPTS", 16)
    monkeypatch.setattr(cli_report, "REPORT_PAIRS", 40)
    monkeypatch.setattr(cli_report, "REPORT_STEP_PROMPTS", 24)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A factory: tiny_lm_dir("llama" | "gpt2") -> path of a saved random causal LM with its tokenizer."""
    cache = {}

    def make(arch: str = "llama"):
        if arch not in cache:
            model, tok = tiny_causal_lm(arch)
            path = tmp_path_factory.mktemp(f"tiny-{arch}")
            model.save_pretrained(path, safe_serialization=True)
            tok.save_pretrained(path)
            cache[arch] = path
        return cache[arch]

    return make
