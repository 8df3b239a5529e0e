"""rlsurvey.cli_report: the held-out report of `rlsurvey eval` and of the end of `rlsurvey train`."""

import argparse
import json

import pytest

from rlsurvey import cli_report
from rlsurvey.assets import model_path


def _eval_args(**kw):
    base = {"model": ["arith-base"], "world": "arithmetic", "reference": None, "num_examples": 64,
            "max_new_tokens": None, "seed": 0, "json": None, "device": "cpu",
            "trust_remote_code": False}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_checkpoint_kind(tmp_path):
    assert cli_report.checkpoint_kind("reviews-base") == "policy"
    assert cli_report.checkpoint_kind(model_path("reviews-base")) == "policy"
    cases = (("LlamaForSequenceClassification", "reward"), ("LlamaForTokenClassification", "step-reward"),
             ("LlamaForCausalLM", "policy"))  # fmt: skip
    for arch, kind in cases:
        (tmp_path / "config.json").write_text(json.dumps({"architectures": [arch]}))
        assert cli_report.checkpoint_kind(tmp_path) == kind


def test_eval_of_two_checkpoints_side_by_side(tmp_path, capsys):
    """The same model twice: the same prompts and the same sampling seed, so the paired change is exactly 0;
    its KL to itself is 0, and the JSON holds the table's figures."""
    out = tmp_path / "eval.json"
    result = cli_report.run_eval(
        _eval_args(model=["arith-base", str(model_path("arith-base"))], json=str(out))
    )
    text = capsys.readouterr().out
    assert "verifier accuracy" in text.splitlines()[0] and "minus arith-base: +0.000 ± 0.000" in text
    a, b = result["reports"].values()
    assert a["mean"] == b["mean"] and a["kl"] == pytest.approx(0.0, abs=1e-6) and a["n"] == 64
    saved = json.loads(out.read_text())
    assert (
        saved["reports"]["arith-base"]["mean"] == a["mean"] and "values" not in saved["reports"]["arith-base"]
    )


def test_eval_refuses_what_it_cannot_score(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(SystemExit, match="reviews"):
        cli_report.run_eval(_eval_args(model=[str(tmp_path)]))
    with pytest.raises(SystemExit, match="mixes"):
        cli_report.run_eval(_eval_args(model=[str(tmp_path), "reviews-base"], world="reviews"))
    with pytest.raises(SystemExit, match="at least 2"):
        cli_report.run_eval(_eval_args(num_examples=1))
    with pytest.raises(SystemExit, match="positive"):
        cli_report.run_eval(_eval_args(max_new_tokens=0))
