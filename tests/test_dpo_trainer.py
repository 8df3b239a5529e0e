"""The DPO trainer: exact log-probs (packed, padded, fused), one step's effect, precomputed against live
reference, gradient accumulation, checkpoints, and clear errors on bad input."""

from __future__ import annotations

import copy
import json
import math

import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

import rlsurvey.algos.dpo_trainer as dt
from rlsurvey.algos.dpo import LOSS_TYPES
from rlsurvey.algos.dpo_trainer import ALL_LOSS_TYPES, DPOConfig, DPOTrainer, packed_logps, padded_logps
from rlsurvey.lm.logprobs import score_responses
from tests.conftest import tiny_causal_lm

PAIRS = {
    "prompt": ["the film was", "a", "the food was good and", "it", "the plot", "we saw"],
    "chosen": [" great.", " fine film!", " cheap.", " works well", " was clever and kind.", " a show"],
    "rejected": [" bad", " dull film, really.", " slow", " broke", " made no sense at all", " nothing?"],
}


def pairs(n: int = 6) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: v[:n] for k, v in PAIRS.items()})


def cfg(**kw) -> DPOConfig:
    return DPOConfig(**{"progress": False, "shuffle": False, "learning_rate": 1e-3, "batch_size": 3, **kw})


def _ids(tok, texts, eos: bool):
    return [torch.tensor(tok(t, add_special_tokens=False)["input_ids"] + ([1] if eos else [])) for t in texts]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("fused", [False, True])
def test_packed_and_padded_logps_equal_score_responses(arch, fused):
    """One packed forward gives every sequence exactly the log-prob it has alone (rlsurvey.lm's reference)."""
    model, tok = tiny_causal_lm(arch, seed=3)
    model.eval()  # GPT-2 has dropout
    prompts, responses = PAIRS["prompt"] * 2, PAIRS["chosen"] + PAIRS["rejected"]
    want = score_responses(model, tok, prompts, responses).seq_logps
    p, r = _ids(tok, prompts, False), _ids(tok, responses, True)
    with torch.no_grad():
        got_packed = packed_logps(model, p, r, tok.pad_token_id, fused_lm_head=fused)
        got_padded = padded_logps(model, p, r, tok.pad_token_id, fused_lm_head=fused)
    torch.testing.assert_close(got_packed, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got_padded, want, atol=1e-4, rtol=1e-5)


def test_packed_logps_gradients_equal_padded_ones():
    model, tok = tiny_causal_lm("gpt2", seed=4)
    model.eval()
    p, r = _ids(tok, PAIRS["prompt"], False), _ids(tok, PAIRS["rejected"], True)
    grads = []
    for fn in (packed_logps, padded_logps):
        model.zero_grad()
        (fn(model, p, r, tok.pad_token_id) * torch.linspace(-1, 1, len(p))).sum().backward()
        grads.append([q.grad.clone() for q in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_trainer_metrics_are_trl_names_and_equal_direct_logps():
    model, tok = tiny_causal_lm("llama", seed=5)
    tr = DPOTrainer(model, tok, pairs(), cfg(batch_size=6, max_steps=1))
    want_c = score_responses(model, tok, PAIRS["prompt"], PAIRS["chosen"]).seq_logps.mean().item()
    hist = tr.train()
    trl_names = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected", "grad_norm", "learning_rate", "step", "epoch"}  # fmt: skip
    assert trl_names <= set(hist[0])
    assert hist[0]["logps/chosen"] == pytest.approx(want_c, abs=1e-4)
    assert hist[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference at step 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("precompute", [True, False])
def test_one_step_changes_every_trainable_parameter_and_no_reference_parameter(arch, precompute):
    model, tok = tiny_causal_lm(arch, seed=6)
    model.train()
    reference = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref_before = {n: p.detach().clone() for n, p in reference.named_parameters()}
    tr = DPOTrainer(
        model, tok, pairs(), cfg(precompute_ref_log_probs=precompute, max_steps=1), ref_model=reference
    )
    tr.train()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated by one step: {unchanged}"
    for n, p in reference.named_parameters():
        assert torch.equal(p, ref_before[n]), f"reference parameter {n} changed"
    if not precompute:  # the default frozen copy is not the policy
        tr2 = DPOTrainer(model, tok, pairs(), cfg(precompute_ref_log_probs=False))
        assert tr2.ref_model is not model and not any(p.requires_grad for p in tr2.ref_model.parameters())


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "dpop", "bdpo", "robust", "kto", "npo"])
def test_precomputed_reference_gives_the_same_losses_as_a_live_reference(loss_type):
    runs = []
    for precompute in (True, False):
        model, tok = tiny_causal_lm("llama", seed=7)
        c = cfg(
            loss_type=loss_type,
            precompute_ref_log_probs=precompute,
            max_steps=3,
            label_smoothing=0.1 * (loss_type == "robust"),
        )
        tr = DPOTrainer(model, tok, pairs(), c)
        assert (tr.ref_model is None) == precompute  # precomputing keeps no reference model at all
        runs.append(tr.train())
    for a, b in zip(*runs):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a.get("rewards/chosen", 0.0) == pytest.approx(b.get("rewards/chosen", 0.0), abs=1e-5)


def test_reference_free_losses_keep_no_reference():
    for loss_type in ("simpo", "orpo"):
        model, tok = tiny_causal_lm("llama", seed=8)
        tr = DPOTrainer(
            model, tok, pairs(), cfg(loss_type=loss_type, precompute_ref_log_probs=False, max_steps=1)
        )
        assert tr.ref_model is None and not tr.train_data.ref
        assert math.isfinite(tr.train()[0]["loss"])


def test_gradient_accumulation_equals_one_large_batch():
    params = []
    for batch, accum in ((6, 1), (3, 2), (2, 3)):
        model, tok = tiny_causal_lm("llama", seed=9)
        DPOTrainer(
            model, tok, pairs(), cfg(batch_size=batch, gradient_accumulation_steps=accum, max_steps=1)
        ).train()
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(params[1], params[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(params[2], params[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "simpo", "kto"])
def test_training_learns_the_preferences(loss_type):
    model, tok = tiny_causal_lm("llama", seed=10)
    tr = DPOTrainer(
        model, tok, pairs(), cfg(loss_type=loss_type, max_steps=30, lr_scheduler="constant", beta=0.5)
    )
    hist = tr.train()
    first, last = hist[0], hist[-1]
    assert last["loss"] < 0.7 * first["loss"]
    if loss_type != "kto":
        assert last["rewards/accuracies"] == 1.0 and last["rewards/margins"] > first["rewards/margins"] + 0.1


def test_bdpo_keeps_a_running_margin_baseline():
    model, tok = tiny_causal_lm("llama", seed=11)
    tr = DPOTrainer(model, tok, pairs(), cfg(loss_type="bdpo", max_steps=4, bdpo_momentum=0.5))
    hist = tr.train()
    want = hist[0]["bdpo/batch_margin"]
    for h in hist[1:]:
        assert h["bdpo/beta"] == pytest.approx(
            0.1 * (1 + 0.6 * (h["bdpo/batch_margin"] - want)), rel=1e-4, abs=1e-3 * 0.1
        )
        want = 0.5 * want + 0.5 * h["bdpo/batch_margin"]
    assert tr._bdpo_baseline == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_unpaired_data_for_kto_and_npo():
    unpaired = datasets.Dataset.from_dict(
        {
            "prompt": ["a", "b", "c", "d"],
            "completion": [" x", " yy", " z", " w"],
            "label": [True, False, True, False],
        }
    )
    model, tok = tiny_causal_lm("llama", seed=12)
    tr = DPOTrainer(model, tok, unpaired, cfg(loss_type="kto", batch_size=4, max_steps=1))
    assert len(tr.train_data) == 4 and tr.train_data.label.tolist() == [True, False, True, False]
    assert "kl" in tr.train()[0]
    tr = DPOTrainer(model, tok, unpaired, cfg(loss_type="npo", max_steps=1))
    assert len(tr.train_data) == 2  # only the undesirable responses are forgotten
    tr = DPOTrainer(model, tok, pairs(), cfg(loss_type="kto", max_steps=1))  # paired data is unpaired
    assert len(tr.train_data) == 12 and tr.train_data.label.sum() == 6


def test_npo_lowers_the_likelihood_of_the_forget_set():
    model, tok = tiny_causal_lm("llama", seed=13)
    before = score_responses(model, tok, PAIRS["prompt"], PAIRS["rejected"]).seq_logps.mean().item()
    DPOTrainer(model, tok, pairs(), cfg(loss_type="npo", max_steps=10, beta=0.5)).train()
    after = score_responses(model, tok, PAIRS["prompt"], PAIRS["rejected"]).seq_logps.mean().item()
    assert after < before - 1.0


def test_truncation_keeps_prompt_ends_and_response_starts():
    model, tok = tiny_causal_lm("llama", seed=14)
    tr = DPOTrainer(model, tok, pairs(), cfg(max_prompt_length=2, max_completion_length=3, max_steps=1))
    last_two = tok("the film was", add_special_tokens=False)["input_ids"][-2:]
    assert tr.train_data.prompt[0].tolist() == last_two
    assert tr.train_data.responses["chosen"][0].tolist() == tok(" gr", add_special_tokens=False)["input_ids"]
    assert tr.train_data.responses["chosen"][3][-1].item() != tok.eos_token_id
    full = DPOTrainer(model, tok, pairs(), cfg(max_steps=1))
    assert full.train_data.responses["chosen"][0][-1].item() == tok.eos_token_id


def test_checkpoints_are_hf_directories(tmp_path):
    model, tok = tiny_causal_lm("llama", seed=15)
    tr = DPOTrainer(model, tok, pairs(), cfg(max_steps=3, save_steps=2, output_dir=str(tmp_path)))
    tr.train(steps=2)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr.train()
    ckpt = tmp_path / "checkpoint-2"
    loaded = AutoModelForCausalLM.from_pretrained(ckpt)
    for n, p in loaded.named_parameters():
        torch.testing.assert_close(p, snapshot[n])
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["config"]["loss_type"] == "sigmoid" and len(state["history"]) == 2
    assert (ckpt / "tokenizer.json").exists() and not (tmp_path / "checkpoint-3").exists()


def test_evaluate_on_held_out_pairs():
    model, tok = tiny_causal_lm("llama", seed=16)
    tr = DPOTrainer(model, tok, pairs(4), cfg(max_steps=2), eval_dataset=pairs(6))
    ev = tr.evaluate()
    assert ev["eval_loss"] == pytest.approx(math.log(2), abs=1e-6) and "eval_rewards/accuracies" in ev
    with pytest.raises(ValueError, match="precompute_ref_log_probs=False"):
        tr.evaluate(pairs(3))  # no reference kept: a new dataset cannot be scored against it
    live = DPOTrainer(model, tok, pairs(4), cfg(precompute_ref_log_probs=False))
    assert live.evaluate(pairs(3))["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_packing_falls_back_to_padding_when_inexact(monkeypatch):
    model, tok = tiny_causal_lm("llama", seed=17)
    real = dt.packed_logps
    monkeypatch.setattr(dt, "packed_logps", lambda *a, **k: real(*a, **k) + 1.0)  # a model that leaks
    with pytest.warns(UserWarning, match="packing is off"):
        tr = DPOTrainer(model, tok, pairs(), cfg(max_steps=1))
    assert tr.packing is False
    assert tr.train()[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def test_unknown_loss_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match="loss_type must be one of") as err:
        DPOConfig(loss_type="dpo")
    for name in ALL_LOSS_TYPES:
        assert repr(name) in str(err.value)
    assert set(LOSS_TYPES) < set(ALL_LOSS_TYPES) and {"kto", "npo"} < set(ALL_LOSS_TYPES)


@pytest.mark.parametrize("eps", [0.5, 0.7, -0.1])
def test_label_smoothing_outside_its_range(eps):
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\), got"):
        DPOConfig(loss_type="cdpo", label_smoothing=eps)


def test_chosen_equal_to_rejected_is_refused():
    model, tok = tiny_causal_lm("llama")
    bad = pairs().to_dict()
    bad["rejected"][2] = bad["chosen"][2]
    with pytest.raises(ValueError, match=r"chosen must differ from rejected.*row 2"):
        DPOTrainer(model, tok, datasets.Dataset.from_dict(bad), cfg())


def test_dataset_without_prompt_column_is_refused():
    model, tok = tiny_causal_lm("llama")
    with pytest.raises(ValueError, match=r"missing \['prompt'\]"):
        DPOTrainer(model, tok, pairs().remove_columns("prompt"), cfg())
    unpaired = datasets.Dataset.from_dict({"completion": ["a"], "label": [True]})
    with pytest.raises(ValueError, match=r"missing \['prompt'\]"):
        DPOTrainer(model, tok, unpaired, cfg(loss_type="kto"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 0.0}, "beta must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"max_steps": 1.5}, "max_steps must be a positive int or None"),
        ({"lr_scheduler": "cosine"}, "lr_scheduler must be"),
        ({"save_steps": 2}, "save_steps needs an output_dir"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
    ],
)
def test_bad_config_fields_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPOConfig(**kwargs)


def test_other_bad_input():
    model, tok = tiny_causal_lm("llama")
    with pytest.raises(TypeError, match="config must be a DPOConfig"):
        DPOTrainer(model, tok, pairs(), {"loss_type": "sigmoid"})
    with pytest.raises(ValueError, match="ref_model must be a separate model"):
        DPOTrainer(model, tok, pairs(), cfg(), ref_model=model)
    with pytest.raises(TypeError, match="datasets.Dataset"):
        DPOTrainer(model, tok, [{"prompt": "a"}], cfg())
    labels = datasets.Dataset.from_dict({"prompt": ["a"], "completion": [" b"], "label": [1]})
    with pytest.raises(TypeError, match="'label' must hold bools"):
        DPOTrainer(model, tok, labels, cfg(loss_type="kto"))
    only_good = datasets.Dataset.from_dict({"prompt": ["a"], "completion": [" b"], "label": [True]})
    with pytest.raises(ValueError, match="npo' needs undesirable"):
        DPOTrainer(model, tok, only_good, cfg(loss_type="npo"))
    with pytest.raises(ValueError, match="needs a dataset or an eval_dataset"):
        DPOTrainer(model, tok, pairs(), cfg()).evaluate()


def test_token_id_columns_are_taken_exactly():
    """prompt_ids/chosen_ids/rejected_ids (TRL's names) are used as given: no EOS is added."""
    model, tok = tiny_causal_lm("llama", seed=18)
    enc = lambda texts, eos: [tok(t, add_special_tokens=False)["input_ids"] + [1] * eos for t in texts]  # noqa: E731
    ids = datasets.Dataset.from_dict({"prompt_ids": enc(PAIRS["prompt"], False),
                                      "chosen_ids": enc(PAIRS["chosen"], True),
                                      "rejected_ids": enc(PAIRS["rejected"], True)})  # fmt: skip
    a = DPOTrainer(model, tok, ids, cfg(max_steps=1))
    b = DPOTrainer(copy.deepcopy(model), tok, pairs(), cfg(max_steps=1))
    for col in ("chosen", "rejected"):
        assert [r.tolist() for r in a.train_data.responses[col]] == [
            r.tolist() for r in b.train_data.responses[col]
        ]
        torch.testing.assert_close(a.train_data.ref[col], b.train_data.ref[col])
    no_eos = DPOTrainer(model, tok, ids.map(lambda r: {"chosen_ids": r["chosen_ids"][:-1]}), cfg(max_steps=1))
    assert no_eos.train_data.responses["chosen"][0][-1].item() != tok.eos_token_id


def _gemma2_with_softcap(cap: float = 1.0):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from tests.conftest import char_tokenizer

    tok = char_tokenizer()
    torch.manual_seed(0)
    cfg = Gemma2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
        bos_token_id=1, final_logit_softcapping=cap, attn_implementation="eager",
    )  # fmt: skip
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # large logits, so that the cap matters
    return model, tok


def test_packed_log_probs_apply_the_models_own_logit_transform():
    """Gemma 2 caps its logits after the output layer; the packed path calls the layer itself and must cap
    too (before the fix it gave -23.10 where the model gives -22.87), and so must the fused path, which never
    builds the logits (it passes the cap to the chunked kernel; before, it refused such a model). The
    fused path's gradients match the model's own through the cap as well."""
    model, tok = _gemma2_with_softcap()
    prompts, responses = PAIRS["prompt"][:3], PAIRS["chosen"][:3]
    want = score_responses(model, tok, prompts, responses).seq_logps
    p, r = _ids(tok, prompts, False), _ids(tok, responses, True)
    with torch.no_grad():
        torch.testing.assert_close(packed_logps(model, p, r, tok.pad_token_id), want, atol=1e-4, rtol=1e-5)
    assert dt.fused_logit_args(model) == {"softcap": 1.0}
    fused = padded_logps(model, p, r, tok.pad_token_id, fused_lm_head=True)
    torch.testing.assert_close(fused.detach(), want, atol=1e-4, rtol=1e-5)
    head = model.get_output_embeddings().weight
    (g_fused,) = torch.autograd.grad(fused.sum(), head)
    (g_want,) = torch.autograd.grad(score_responses(model, tok, prompts, responses).seq_logps.sum(), head)
    torch.testing.assert_close(g_fused, g_want, atol=1e-4, rtol=1e-4)


def test_fused_logit_args_combine_scale_and_cap():
    from types import SimpleNamespace

    args = dt.fused_logit_args(SimpleNamespace(config=SimpleNamespace(logit_scale=0.5, logits_scaling=4.0)))
    assert args == {"logit_scale": 0.125}
    assert dt.fused_logit_args(SimpleNamespace(config=SimpleNamespace(final_logit_softcapping=None))) == {}
    cohere = dt.fused_logit_args(SimpleNamespace(config=SimpleNamespace(logit_scale=0.0625)))
    assert cohere == {"logit_scale": 0.0625}


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [("final_logit_softcapping", 2.0, lambda z: 2.0 * torch.tanh(z / 2.0)),
     ("logit_scale", 0.0625, lambda z: z * 0.0625), ("logits_scaling", 8.0, lambda z: z / 8.0)],
)  # fmt: skip
def test_logit_transforms_of_gemma_cohere_and_granite(attr, value, expected):
    from types import SimpleNamespace

    z = torch.linspace(-20, 20, 11)
    name, fn = dt.logit_transform(SimpleNamespace(config=SimpleNamespace(**{attr: value})))
    assert name == attr
    torch.testing.assert_close(fn(z), expected(z))
    assert dt.logit_transform(SimpleNamespace(config=SimpleNamespace(**{attr: None}))) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=24))
def test_packed_rows_hold_every_sequence_once_and_no_more_positions_than_rows_of_the_longest(lens):
    width, fill, place = dt._pack_rows(lens)
    assert max(lens) <= width <= 2 * max(lens)
    used = {}
    for i, (row, col) in enumerate(place):
        assert col + lens[i] <= width
        for c in range(col, col + lens[i]):
            assert (row, c) not in used, "two sequences overlap"
            used[(row, c)] = i
    assert [sum(lens[i] for i, (r, _) in enumerate(place) if r == row) for row in range(len(fill))] == fill
    narrow = dt._first_fit(lens, max(lens))[0]
    assert len(fill) * width <= len(narrow) * max(lens)


def test_packed_layout_equals_a_slow_layout_built_one_sequence_at_a_time():
    gen = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(2, 50, (int(n),), generator=gen) for n in torch.randint(1, 6, (9,), generator=gen)
    ]
    responses = [
        torch.randint(2, 50, (int(n),), generator=gen) for n in torch.randint(1, 9, (9,), generator=gen)
    ]
    b = dt.SequenceBatch(prompts, responses, pad_id=0, packing=True)
    width = b.ids.shape[1]
    for i, (p, r) in enumerate(zip(prompts, responses)):
        seq = torch.cat([p, r])
        hits = [
            (row, col) for row in range(b.ids.shape[0]) for col in range(width - len(seq) + 1)
            if torch.equal(b.ids[row, col : col + len(seq)], seq)
            and torch.equal(b.pos[row, col : col + len(seq)], torch.arange(len(seq)))
        ]  # fmt: skip
        assert hits, f"sequence {i} is not laid out with restarting positions"
        assert torch.equal(b.targets[b.owner == i], r)  # its response, in order, scored once
