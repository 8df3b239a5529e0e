"""Preference data loading: files, datasets, the conversational format, and clear errors."""

from __future__ import annotations

import datasets
import pytest

from rlsurvey.data import load_preferences
from rlsurvey.tasks.reviews import make_preferences


@pytest.fixture(scope="module")
def prefs():
    return make_preferences(25, seed=0)


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "disk"])
def test_save_and_load_round_trip(tmp_path, prefs, kind):
    path = tmp_path / f"prefs.{kind}"
    if kind == "parquet":
        prefs.to_parquet(str(path))
    elif kind == "disk":
        prefs.save_to_disk(str(path))
    else:
        prefs.to_json(str(path), lines=kind == "jsonl")
    back = load_preferences(path)
    assert back.column_names == prefs.column_names
    assert back.to_list() == prefs.to_list()
    assert load_preferences(str(path)).to_list() == prefs.to_list()  # str paths too


def test_dataset_and_dataset_dict(prefs):
    assert load_preferences(prefs) is prefs
    dd = datasets.DatasetDict({"train": prefs, "test": prefs.select(range(3))})
    assert len(load_preferences(dd, split="test")) == 3
    with pytest.raises(ValueError, match="split must be one of"):
        load_preferences(dd, split="validation")


def test_conversational_explicit_prompt():
    ds = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": "Review the hotel."}],
                "chosen": [{"role": "assistant", "content": "It was lovely."}],
                "rejected": [{"role": "assistant", "content": "It was awful."}],
                "id": 7,
            }
        ]
    )
    row = load_preferences(ds)[0]
    assert row == {
        "prompt": "user: Review the hotel.\nassistant:",
        "chosen": " It was lovely.",
        "rejected": " It was awful.",
        "id": 7,
    }


def test_conversational_implicit_prompt():
    sys = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "How was the movie?"}
    ds = datasets.Dataset.from_list(
        [
            {
                "chosen": [sys, user, {"role": "assistant", "content": "Great."}],
                "rejected": [sys, user, {"role": "assistant", "content": "Bad."}],
            }
        ]
    )
    row = load_preferences(ds)[0]
    assert row["prompt"] == "system: Be brief.\nuser: How was the movie?\nassistant:"
    assert (row["chosen"], row["rejected"]) == (" Great.", " Bad.")


def test_conversational_with_a_chat_template():
    class Templated:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt=False):
            assert not tokenize
            text = "".join(f"<{m['role']}>{m['content']}<end>" for m in messages)
            return text + "<assistant>" if add_generation_prompt else text

    ds = datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
          "rejected": [{"role": "assistant", "content": "b"}]}]
    )  # fmt: skip
    row = load_preferences(ds, tokenizer=Templated())[0]
    assert row["prompt"] == "<user>hi<end><assistant>"
    # the answer is what the template adds after the prompt: no leading space, the end-of-turn tag kept
    assert (row["chosen"], row["rejected"]) == ("a<end>", "b<end>")


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _chatml_tokenizer():
    from rlsurvey.lm import load_model

    _, tok = load_model("reason-base")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_a_real_chat_template_gives_answers_without_a_leading_space_and_with_the_end_of_turn():
    """With a Jinja ChatML template the answer is what the template adds after the generation prompt: no
    space before it (the prompt ends in a newline) and the end-of-turn token after it, as TRL renders."""
    tok = _chatml_tokenizer()
    user = {"role": "user", "content": "1+2="}
    ds = datasets.Dataset.from_list(
        [{"prompt": [user], "chosen": [{"role": "assistant", "content": "3"}],
          "rejected": [{"role": "assistant", "content": "4"}]}]
    )  # fmt: skip
    row = load_preferences(ds, tokenizer=tok)[0]
    assert row["prompt"] == "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n"
    assert row["chosen"] == "3<|im_end|>\n" and row["rejected"] == "4<|im_end|>\n"
    assert row["prompt"] + row["chosen"] == tok.apply_chat_template(
        [user, {"role": "assistant", "content": "3"}], tokenize=False
    )


def test_missing_column_lists_found_and_expected(tmp_path, prefs):
    path = tmp_path / "broken.jsonl"
    prefs.remove_columns(["rejected"]).to_json(str(path))
    with pytest.raises(ValueError) as err:
        load_preferences(path)
    msg = str(err.value)
    assert "['prompt', 'chosen', 'rejected']" in msg and "found [" in msg and "'gold_chosen'" in msg
    assert "missing ['rejected']" in msg


def test_hub_id_offline_says_how_to_use_local_data(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match="offline") as err:
        load_preferences("trl-lib/ultrafeedback_binarized")
    assert ".jsonl" in str(err.value) and "make_preferences" in str(err.value)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_preferences(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="must end in one of"):
        load_preferences(tmp_path / "x.csv")
    with pytest.raises(TypeError, match="source must be"):
        load_preferences(42)
    with pytest.raises(TypeError, match="column 'chosen' must hold strings"):
        load_preferences(datasets.Dataset.from_dict({"prompt": ["p"], "chosen": [1], "rejected": ["r"]}))
    with pytest.raises(ValueError, match="no rows"):
        load_preferences(datasets.Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}))
