"""Tokenizers for the synthetic worlds, trained with Hugging Face `tokenizers` and saved in the HF format.

Survey section 2.2 of arXiv 2412.10400 (the LM as a policy: its actions are tokens, so the tokenizer fixes
the action space).

- reviews: byte-level BPE (Sennrich et al., arXiv 1508.07909; GPT-2's byte-level variant) with a small
  vocabulary, enough for every word of the grammar to be one token while any text a model emits still
  encodes (256 byte symbols underneath).
- arithmetic: one token per character (digits, "+", "-", "="), so that the model must compute every digit
  rather than memorize multi-digit tokens.

Both have "<pad>" and "<eos>" special tokens (no BOS: prompts are never empty), are saved as tokenizer.json
plus tokenizer_config.json by `save_pretrained`, and load with `AutoTokenizer.from_pretrained(path)`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["PAD", "EOS", "UNK", "train_bpe_tokenizer", "train_char_tokenizer", "wrap"]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around a `tokenizers.Tokenizer`, with pad/eos set and left padding
    (generation pads prompts on the left so every prompt ends where the response starts)."""
    special = {"pad_token": PAD, "eos_token": EOS}
    if tok.token_to_id(UNK) is not None:
        special["unk_token"] = UNK
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", **special)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE with `vocab_size` entries (256 bytes + merges + 2 special tokens)."""
    if vocab_size < 260:
        raise ValueError(f"vocab_size must be at least 260 (256 bytes + specials), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return wrap(tok)


def train_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """One token per character seen in `texts`, plus "<pad>", "<eos>" and "<unk>" for anything unseen."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters join back without spaces
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, EOS, UNK], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return wrap(tok)
