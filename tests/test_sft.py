"""The SFT trainer: the loss against a brute-force masked cross-entropy, no gradient from prompt tokens,
TRL's data formats, accumulation, learning, checkpoints, and clear errors on bad input."""

from __future__ import annotations

import copy

import datasets
import pytest
import torch
import torch.nn.functional as F

from rlsurvey.algos.sft import SFTConfig, SFTTrainer, sft_loss, tokenize_sft
from tests.conftest import tiny_causal_lm

DATA = {
    "prompt": ["the film was", "a", "the food was good and", "it", "the plot", "we saw"],
    "completion": [" great.", " fine film!", " cheap.", " works well", " was clever and kind.", " a show"],
}


def data(n: int = 6) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: v[:n] for k, v in DATA.items()})


def cfg(**kw) -> SFTConfig:
    return SFTConfig(**{"progress": False, "shuffle": False, "learning_rate": 1e-3, "batch_size": 3, **kw})


def brute_force_loss(model, tok, prompts, completions, completion_only: bool = True) -> torch.Tensor:
    """Each example alone through the model: cross-entropy of every next token, the prompt's masked out
    (label -100, as in Hugging Face's causal-LM loss), summed over examples / number of trained tokens."""
    total, count = 0.0, 0
    for p, c in zip(prompts, completions):
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        c_ids = tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p_ids + c_ids])
        labels = ids.clone()
        if completion_only:
            labels[0, : len(p_ids)] = -100
        logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        total = total + F.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
        count += int((target != -100).sum())
    return total / count


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("packing", [True, False])
@pytest.mark.parametrize("completion_only", [True, False])
def test_loss_equals_brute_force_masked_cross_entropy(arch, packing, completion_only):
    model, tok = tiny_causal_lm(arch, seed=1)
    model.eval()
    tr = SFTTrainer(model, tok, data(), cfg(packing=packing, completion_only_loss=completion_only))
    assert tr.packing == packing
    got, metrics = tr.compute_loss(range(6))
    want = brute_force_loss(model, tok, DATA["prompt"], DATA["completion"], completion_only)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    n_completion = sum(len(tok(c, add_special_tokens=False)["input_ids"]) + 1 for c in DATA["completion"])
    n_prompt = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in DATA["prompt"])
    assert metrics["num_tokens"] == (n_completion if completion_only else n_completion + n_prompt - 6)


def test_packed_gradients_equal_padded_and_brute_force_ones():
    model, tok = tiny_causal_lm("gpt2", seed=2)
    model.eval()
    grads = []
    for packing in (True, False, None):
        model.zero_grad()
        if packing is None:
            loss = brute_force_loss(model, tok, DATA["prompt"], DATA["completion"])
        else:
            loss = SFTTrainer(model, tok, data(), cfg(packing=packing)).compute_loss(range(6))[0]
        loss.backward()
        grads.append([q.grad.clone() for q in model.parameters()])
    for a, b, c in zip(*grads):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b, c, atol=1e-5, rtol=1e-4)


def test_prompt_tokens_get_no_gradient():
    """d loss / d logits is non-zero at every position that predicts a completion token; the head is asked
    only for the R + 1 positions from the last prompt token on (logits_to_keep), so no position that predicts
    a prompt token has logits at all (padded path)."""
    model, tok = tiny_causal_lm("llama", seed=3)
    model.eval()
    captured = {}

    def keep(_module, _inputs, out):
        out.retain_grad()
        captured["logits"] = out

    handle = model.get_output_embeddings().register_forward_hook(keep)
    try:
        tr = SFTTrainer(model, tok, data(2), cfg(packing=False))
        captured.clear()
        loss, _ = tr.compute_loss([0])
        loss.backward()
    finally:
        handle.remove()
    grad = captured["logits"].grad[0].abs().sum(-1)  # [R + 1]: row j predicts completion token j
    r = len(tok(DATA["completion"][0], add_special_tokens=False)["input_ids"]) + 1
    assert grad.shape[0] == r + 1, "the head must see only the last prompt token and the completion"
    assert torch.all(grad[:r] > 0), "a position predicting a completion token got no gradient"
    assert grad[r] == 0  # the last position predicts nothing


def test_gradient_accumulation_is_the_same_step():
    """Two micro-batches of 3 take the same step as one batch of 6: the loss is a mean over the step's
    completion tokens, not a mean of micro-batch means (their token counts differ)."""
    steps = []
    for bs, acc in ((6, 1), (3, 2)):
        model, tok = tiny_causal_lm("llama", seed=4)
        tr = SFTTrainer(model, tok, data(), cfg(batch_size=bs, gradient_accumulation_steps=acc, max_steps=1))
        hist = tr.train()
        steps.append((hist[0]["loss"], [q.detach().clone() for q in model.parameters()]))
    assert steps[0][0] == pytest.approx(steps[1][0], abs=1e-6)
    for a, b in zip(steps[0][1], steps[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_training_lowers_the_loss_and_raises_the_completion_likelihood():
    model, tok = tiny_causal_lm("llama", seed=5)
    before = copy.deepcopy(model)
    c = cfg(learning_rate=1e-2, num_epochs=30, batch_size=6, lr_scheduler="constant")
    tr = SFTTrainer(model, tok, data(), c)
    e0 = tr.evaluate(data())
    hist = tr.train()
    e1 = tr.evaluate(data())
    assert len(hist) == 30 and {"loss", "mean_token_logp", "num_tokens", "grad_norm", "learning_rate"} <= set(
        hist[0]
    )
    assert e1["eval_loss"] < 0.5 * e0["eval_loss"], (e0, e1)
    with torch.no_grad():
        want = SFTTrainer(before, tok, data(), cfg()).evaluate(data())["eval_loss"]
    assert e0["eval_loss"] == pytest.approx(want, abs=1e-6)


def test_conversational_formats_match_the_rendered_strings():
    model, tok = tiny_causal_lm("llama", seed=6)
    msgs = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": c.strip()}]
        for p, c in zip(DATA["prompt"], DATA["completion"])
    ]
    conv = datasets.Dataset.from_dict({"messages": msgs})
    pc = datasets.Dataset.from_dict({"prompt": [m[:1] for m in msgs], "completion": [m[1:] for m in msgs]})
    strings = datasets.Dataset.from_dict(
        {"prompt": [f"user: {p}\nassistant:" for p in DATA["prompt"]],
         "completion": [" " + c.strip() for c in DATA["completion"]]}
    )  # fmt: skip
    want = tokenize_sft(strings, tok)
    for ds in (conv, pc):
        got = tokenize_sft(ds, tok)
        for a, b in zip(got[0] + got[1], want[0] + want[1]):
            assert torch.equal(a, b)


def test_language_modeling_text_trains_every_token_but_the_first():
    model, tok = tiny_causal_lm("llama", seed=7)
    ds = datasets.Dataset.from_dict({"text": ["abc", "hello"]})
    prompts, completions = tokenize_sft(ds, tok)
    assert [len(p) for p in prompts] == [1, 1] and [len(c) for c in completions] == [3, 5]  # + EOS


def test_sft_loss_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="no completion tokens"):
        sft_loss(torch.zeros(0))


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"prompt": ["a"], "answer": ["b"]}, r"missing \['completion'\]"),
        ({"question": ["a"], "answer": ["b"]}, r"missing \['prompt', 'completion'\]"),
        ({"prompt": ["a"], "completion": [3]}, r"column 'completion' must hold strings; row 0"),
        ({"prompt": [""], "completion": ["b"]}, r"column 'prompt' row 0 has no tokens"),
        ({"messages": [[{"role": "user", "content": "hi"}]]}, r"row 0 has no assistant turn"),
    ],
)
def test_bad_data_names_the_column(columns, match):
    model, tok = tiny_causal_lm("llama")
    with pytest.raises((ValueError, TypeError), match=match):
        SFTTrainer(model, tok, datasets.Dataset.from_dict(columns), cfg())


def test_an_example_longer_than_the_context_names_the_lengths():
    model, tok = tiny_causal_lm("llama")  # context 128
    long_prompt = datasets.Dataset.from_dict({"prompt": ["x" * 130], "completion": ["y"]})
    with pytest.raises(ValueError, match=r"row 0: the prompt has 130 tokens.*the model's context \(128\)"):
        SFTTrainer(model, tok, long_prompt, cfg())
    too_long = datasets.Dataset.from_dict({"prompt": ["ok", "x" * 100], "completion": ["y", "z" * 40]})
    with pytest.raises(ValueError, match=r"row 1: prompt \(100 tokens\) \+ completion \(41 tokens, EOS "):
        SFTTrainer(model, tok, too_long, cfg())
    with pytest.raises(ValueError, match=r"more than max_length \(8\)"):
        SFTTrainer(model, tok, data(), cfg(max_length=8))


@pytest.mark.parametrize(
    ("field", "value"), [("learning_rate", 0), ("batch_size", 0), ("max_length", 1), ("lr_scheduler", "x")]
)
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_resume_continues_exactly(tmp_path):
    model, tok = tiny_causal_lm("llama", seed=8)
    start = copy.deepcopy(model)
    full = SFTTrainer(model, tok, data(), cfg(max_steps=6, shuffle=True, output_dir=str(tmp_path / "a")))
    full.train()
    half = copy.deepcopy(start)
    tr = SFTTrainer(half, tok, data(), cfg(max_steps=6, shuffle=True, output_dir=str(tmp_path / "b"),
                                          save_steps=3))  # fmt: skip
    tr.train(steps=3)
    again = copy.deepcopy(start)
    tr2 = SFTTrainer(again, tok, data(), cfg(max_steps=6, shuffle=True, output_dir=str(tmp_path / "b"),
                                             resume_from_checkpoint="latest"))  # fmt: skip
    hist = tr2.train()
    assert [h["step"] for h in hist] == list(range(1, 7))
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    for a, b in zip(model.parameters(), again.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
