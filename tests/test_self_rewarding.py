"""Self-rewarding DPO: pair construction by hand, and the loop's mechanics on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from rlsurvey.algos.dpo_trainer import DPOConfig
from rlsurvey.algos.self_rewarding import SelfRewardingConfig, best_worst_pairs, self_rewarding
from tests.conftest import tiny_causal_lm


def test_best_worst_pairs_by_hand():
    prompts = ["p"] * 3 + ["q"] * 3 + ["r"] * 3
    comps = ["a", "b", "c", "d", "e", "f", "g", "g", "g"]
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.3, 0.3, 1.0, 0.0, 0.5])
    rows = best_worst_pairs(prompts, comps, scores, 3)
    # group q is a tie, group r's best and worst are the same text: only p gives a pair
    assert rows == [{"prompt": "p", "chosen": "b", "rejected": "a", "score_gap": pytest.approx(0.8),
                     "index_chosen": 1, "index_rejected": 0}]  # fmt: skip
    assert best_worst_pairs(prompts, comps, scores, 3, min_gap=0.9) == []
    with pytest.raises(ValueError, match="multiple"):
        best_worst_pairs(prompts[:4], comps[:4], scores[:4], 3)


def test_loop_trains_on_its_own_judgement():
    policy, tok = tiny_causal_lm("llama", seed=0)
    judge_calls = []

    def make_judge(model):  # stands in for a judge built from the policy; here it simply likes length
        judge_calls.append(model)
        return lambda p, c: [float(len(x)) for x in c]

    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = SelfRewardingConfig(
        rounds=2, prompts_per_round=4, samples_per_prompt=3, max_new_tokens=6, progress=False,
        dpo=DPOConfig(max_steps=2, batch_size=2, learning_rate=1e-2, progress=False),
    )  # fmt: skip
    hist = self_rewarding(policy, tok, ["a ", "b ", "c ", "d ", "e "], make_judge, cfg,
                          reference_reward=lambda p, c: [float("e" in x) for x in c])  # fmt: skip
    assert len(judge_calls) == 2 and all(m is policy for m in judge_calls)
    assert [h["round"] for h in hist] == [0, 1, 2] and hist[0]["pairs"] > 0
    assert "judge_gold_agreement" in hist[0] and "dpo_loss" in hist[0]
    assert any(not torch.equal(v, before[k]) for k, v in policy.state_dict().items())


def test_reference_reward_is_measured_on_the_given_prompts_with_its_standard_error():
    policy, tok = tiny_causal_lm("llama", seed=0)
    seen = []

    def reference(prompts, completions):  # records which prompts the measurement used
        seen.append(list(prompts))
        return [float(len(c) % 3) for c in completions]

    cfg = SelfRewardingConfig(
        rounds=1, prompts_per_round=2, samples_per_prompt=2, max_new_tokens=4, progress=False,
        dpo=DPOConfig(max_steps=1, batch_size=2, progress=False),
    )  # fmt: skip
    held_out = [f"{c} " for c in "pqrstuvw"]

    def make_judge(model):
        return lambda p, c: [float(len(x)) for x in c]

    hist = self_rewarding(policy, tok, ["a ", "b ", "c "], make_judge, cfg, reference_reward=reference,
                          reference_prompts=held_out)  # fmt: skip
    measured = [s for s in seen if len(s) == len(held_out)]
    assert len(measured) == 2 and all(s == held_out for s in measured)  # before the round and after it
    for row in (hist[0], hist[-1]):
        assert row["reference_reward_se"] > 0 and 0 <= row["reference_reward"] <= 2
    with pytest.raises(ValueError, match="reference_prompts is empty"):
        self_rewarding(policy, tok, ["a "], make_judge, cfg, reference_reward=reference, reference_prompts=[])


def test_dpo_trains_on_the_sampled_tokens_not_re_tokenized_text(monkeypatch):
    """A response cut at the token budget has no EOS, and DPO must score it without one: the pairs handed
    to the DPO trainer carry the sampled token ids (as iterative DPO's do)."""
    import rlsurvey.algos.self_rewarding as sr

    policy, tok = tiny_causal_lm("llama", seed=1)
    seen = []
    real = sr.DPOTrainer

    def spy(model, tokenizer, data, config, **kw):
        seen.append(data)
        return real(model, tokenizer, data, config, **kw)

    monkeypatch.setattr(sr, "DPOTrainer", spy)
    cfg = SelfRewardingConfig(
        rounds=1, prompts_per_round=4, samples_per_prompt=3, max_new_tokens=3, progress=False,
        dpo=DPOConfig(max_steps=1, batch_size=2, progress=False),
    )  # fmt: skip
    self_rewarding(
        policy, tok, ["a ", "b ", "c ", "d "], lambda m: lambda p, c: [float(len(x)) for x in c], cfg
    )
    (data,) = seen
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(data.column_names)
    eos = tok.eos_token_id
    for row in data:
        for col in ("chosen_ids", "rejected_ids"):
            ids = row[col]
            assert len(ids) <= 3 and eos not in ids[:-1]
            text = tok.decode(ids, skip_special_tokens=True)
            assert text == row[col.removesuffix("_ids")], (ids, text)
    cut = [ids for row in data for ids in (row["chosen_ids"], row["rejected_ids"]) if ids[-1] != eos]
    assert cut, "some response hit the 3-token budget; those must stay without EOS"
