"""The pretraining recipe: a shortened run learns, saves a loadable model atomically, and is repeatable."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlsurvey.lm import load_model
from rlsurvey.lm.models import TinyLlamaConfig
from rlsurvey.lm.pretrain import PretrainConfig, main, pretrain

SMALL = TinyLlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def test_shortened_cli_run_saves_a_loadable_model_whose_loss_falls(tmp_path):
    out = tmp_path / "arith-small"
    torch.set_num_threads(3)
    hist = main(["--world", "arithmetic", "--steps", "60", "--n-train", "1000", "--out", str(out)])
    assert torch.get_num_threads() == 3, "main() trains on its --threads and gives the caller's count back"
    first, last = sum(hist["train_loss"][:5]) / 5, sum(hist["train_loss"][-10:]) / 10
    assert last < first - 0.5, (first, last)
    assert hist["eval_step"] == [0, 60] and hist["val_loss"][-1] < hist["val_loss"][0] - 0.5
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "metrics.json"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "llama" and tok.pad_token == "<pad>" and tok.eos_token == "<eos>"
    model, tok = load_model(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quality"]["heldout_nll"] == pytest.approx(hist["val_loss"][-1], rel=1e-4)
    card = (out / "README.md").read_text()
    assert "## Measured quality" in card and f"{metrics['quality']['heldout_perplexity']:.3f}" in card


def test_reviews_loss_falls_and_runs_are_repeatable():
    cfg = PretrainConfig.for_world("reviews", steps=40, n_train=800, n_val=50, eval_steps=20, model=SMALL)
    a = pretrain(cfg, None, progress=False)
    b = pretrain(cfg, None, progress=False)
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert a["val_loss"][-1] < a["val_loss"][0] and a["train_loss"][-1] < a["train_loss"][0] - 1.0


def test_a_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    import rlsurvey.lm.quality as quality

    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("the previous model")

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted while measuring")

    monkeypatch.setattr(quality, "measure_quality", boom)
    cfg = PretrainConfig.for_world("arithmetic", steps=2, n_train=200, n_val=20, model=SMALL)
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrain(cfg, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary directory left
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the previous model untouched


def test_bad_configs_get_clear_errors():
    with pytest.raises(ValueError, match="world must be one of"):
        PretrainConfig(world="chess")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        PretrainConfig(steps=0)
    tiny_context = TinyLlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=4
    )
    with pytest.raises(ValueError, match="max_position_embeddings must cover"):
        pretrain(
            PretrainConfig.for_world("arithmetic", steps=1, n_train=50, n_val=5, model=tiny_context),
            progress=False,
        )
