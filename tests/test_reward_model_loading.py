"""RewardModel.from_pretrained on a checkpoint whose tokenizer has no pad token (GPT-2 style hub models)."""

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from conftest import char_tokenizer, tiny_causal_lm
from rlsurvey.rewards.reward_model import RewardModel


def test_from_pretrained_without_pad_token_uses_eos(tmp_path):
    model, tok = tiny_causal_lm("gpt2")
    no_pad = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(char_tokenizer().backend_tokenizer.to_str()),
        eos_token="<eos>",
        unk_token="<unk>",
    )
    assert no_pad.pad_token is None
    model.save_pretrained(tmp_path)
    no_pad.save_pretrained(tmp_path)
    rm = RewardModel.from_pretrained(tmp_path)
    assert rm.tokenizer.pad_token == "<eos>"
    torch.manual_seed(0)
    torch.nn.init.normal_(rm.model.score.weight)  # a fresh head is zero; make the rewards differ
    # rewards are read at the last real token, so padding with EOS changes nothing
    r_batch = rm.score(["ab", "a"], [" cd", " c"])
    r_single = torch.cat([rm.score(["ab"], [" cd"]), rm.score(["a"], [" c"])])
    torch.testing.assert_close(r_batch, r_single, atol=1e-5, rtol=0)
