"""Shipped models and the loader: sizes, tokenizers, measured quality reproduced, offline errors."""

from __future__ import annotations

import inspect
import json
import warnings

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from rlsurvey.assets import SHIPPED_MODELS, model_path
from rlsurvey.config_compat import load_config
from rlsurvey.lm import load_model, load_tokenizer
from rlsurvey.lm.models import random_causal_lm
from rlsurvey.lm.pretrain import PretrainConfig, world_corpus
from rlsurvey.lm.quality import measure_quality
from rlsurvey.lm.tokenizer import EOS, train_char_tokenizer

WORLD = {
    "reviews-base": "reviews",
    "arith-base": "arithmetic",
    "reason-base": "reasoning",
    "tool-base": "tools",
}


def test_model_path_names_and_errors():
    for name in SHIPPED_MODELS:
        assert (model_path(name) / "config.json").is_file()
    names = r"\['arith-base', 'reason-base', 'reviews-base', 'tool-base'\]"
    with pytest.raises(ValueError, match="name must be one of " + names):
        model_path("gpt-5")


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_directory_is_small_complete_and_loads(name):
    path = model_path(name)
    total = sum(p.stat().st_size for p in path.iterdir())
    assert total < 8 * 2**20, f"{name} is {total / 2**20:.1f} MiB"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (path / f).is_file(), f
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>" and tok.pad_token_id != tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == len(tok)
    model, tok = load_model(name)
    assert tok.padding_side == "left" and not model.training


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_model_card_figures_are_reproduced_and_meet_the_bar(name):
    """Re-measure the card's quality figures from scratch; they must match metrics.json and the card."""
    path = model_path(name)
    metrics = json.loads((path / "metrics.json").read_text())
    with warnings.catch_warnings():  # the shipped runs saved old names (lr, warmup, grad_clip, eval_every)
        warnings.simplefilter("ignore", FutureWarning)
        config = load_config(PretrainConfig, path)
    _, val = world_corpus(config)
    q = measure_quality(path, config, val)
    card = (path / "README.md").read_text()
    assert q["heldout_perplexity"] == pytest.approx(metrics["quality"]["heldout_perplexity"], rel=1e-4)
    assert f"{q['heldout_perplexity']:.3f}" in card
    if config.world == "reviews":
        assert q["parse_rate"] >= 0.95
        assert q["frac_gold_positive"] > 0.2 and q["frac_gold_negative"] > 0.2  # spread
        keys = ("parse_rate", "gold_mean", "frac_gold_positive")
    elif config.world == "reasoning":
        # the bar of a base model for R1-Zero: right on a minority of prompts, reasoning on a minority, and
        # far more often right when it reasons than when it answers at once (RL has something to reinforce)
        assert 0.15 <= q["accuracy_sampled"] <= 0.45 and 0.05 <= q["reasoning_share"] <= 0.35
        assert q["accuracy_when_reasoning"] >= q["accuracy_when_direct"] + 0.40
        keys = ("accuracy_sampled", "reasoning_share", "accuracy_when_reasoning", "accuracy_when_direct")
    elif config.world == "tools":
        # the bar of an agent's base model: it calls the calculator on a minority of problems, and is far more
        # often right when it calls than when it answers in its head (RL has a tool use to reinforce)
        assert 0.05 <= q["call_rate"] <= 0.5 and q["accuracy_sampled"] <= 0.5
        assert q["accuracy_when_calling"] >= q["accuracy_when_direct"] + 0.40
        keys = ("accuracy_sampled", "call_rate", "accuracy_when_calling", "accuracy_when_direct")
    else:
        # sampled at T=1, as RL samples: right only part of the time; greedy shows the mode is often right
        assert 0.2 <= q["accuracy_sampled"] <= 0.6 and q["accuracy_greedy"] > q["accuracy_sampled"]
        keys = ("accuracy_sampled", "accuracy_greedy")
    for k in keys:  # the same seeds: equal up to float noise deciding a rare near-tie sample
        assert q[k] == pytest.approx(metrics["quality"][k], abs=0.01), k


def test_load_model_offline_hub_id_and_bad_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="hub is offline") as err:
        load_model("Qwen/Qwen2.5-0.5B")
    assert "reviews-base" in str(err.value) and "save_pretrained" in str(err.value)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a model directory"):
        load_model(tmp_path / "f.txt")
    with pytest.raises(TypeError, match="name_or_path"):
        load_tokenizer(3)
    assert inspect.signature(load_model).parameters["trust_remote_code"].default is False


def test_a_saved_gpt2_without_pad_token_loads_with_pad_set_to_eos(tmp_path):
    tok = train_char_tokenizer(["0123456789+-="])
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=EOS)
    model = random_causal_lm("gpt2", len(tok), None, tok.eos_token_id)
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path)
    bare.save_pretrained(tmp_path)
    loaded, ltok = load_model(tmp_path)
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    assert ltok.pad_token_id == ltok.eos_token_id and ltok.padding_side == "left"
    assert loaded.config.pad_token_id == ltok.eos_token_id
