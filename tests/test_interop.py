"""The worlds' data in TRL's dataset formats, written and read back; prompts for the online trainers."""

from __future__ import annotations

import datasets
import pytest

from rlsurvey.data import load_preferences
from rlsurvey.interop import (
    load_prompts,
    preferences_to_trl,
    preferences_to_unpaired,
    prompts_to_trl,
    save_dataset,
    world_dataset,
)
from rlsurvey.tasks import arithmetic, reviews, tools


def _is_message_list(value, role: str) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 1
        and set(value[0]) == {"role", "content"}
        and value[0]["role"] == role
        and isinstance(value[0]["content"], str)
    )


def test_standard_preferences_are_the_world_pairs():
    pairs = reviews.make_preferences(6, seed=3)
    ds = world_dataset("reviews", "preference", 6, seed=3)
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"]
    for col in ("prompt", "chosen", "rejected"):
        assert list(ds[col]) == list(pairs[col])


def test_conversational_preferences_hold_user_and_assistant_turns():
    pairs = reviews.make_preferences(5, seed=1)
    ds = preferences_to_trl(pairs, conversational=True)
    for row, ref in zip(ds, pairs):
        assert _is_message_list(row["prompt"], "user") and row["prompt"][0]["content"] == ref["prompt"]
        assert _is_message_list(row["chosen"], "assistant") and _is_message_list(row["rejected"], "assistant")
        assert row["chosen"][0]["content"] == ref["chosen"].strip()
    # read back into the standard format: the answers come back exactly (one leading space)
    back = load_preferences(ds)
    assert list(back["chosen"]) == [" " + c.strip() for c in pairs["chosen"]]
    assert back["prompt"][0] == f"user: {pairs[0]['prompt']}\nassistant:"


@pytest.mark.parametrize("conversational", [False, True])
def test_unpaired_rows_follow_the_pairs(conversational):
    pairs = reviews.make_preferences(4, seed=2)
    ds = preferences_to_unpaired(pairs, conversational)
    assert len(ds) == 8 and list(ds["label"]) == [True] * 4 + [False] * 4
    completions = [c[0]["content"] if conversational else c for c in ds["completion"]]
    expect = list(pairs["chosen"]) + list(pairs["rejected"])
    assert completions == ([e.strip() for e in expect] if conversational else expect)


def test_prompt_only_datasets():
    ds = world_dataset("arithmetic", "prompt", 7, seed=4)
    assert ds.column_names == ["prompt"] and list(ds["prompt"]) == arithmetic.sample_prompts(7, 4)
    conv = world_dataset("reviews", "prompt", 3, seed=0, conversational=True)
    assert all(_is_message_list(p, "user") for p in conv["prompt"])
    with pytest.raises(ValueError, match="prompts\\[1\\]"):
        prompts_to_trl(["a", ""])
    with pytest.raises(ValueError, match="arithmetic world has prompts"):
        world_dataset("arithmetic", "preference", 3)
    with pytest.raises(ValueError, match="world must be one of"):
        world_dataset("chess", "prompt", 3)


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.parquet", "pairs_dir"])
@pytest.mark.parametrize("conversational", [False, True])
def test_saved_files_read_back_identically(tmp_path, name, conversational):
    ds = world_dataset("reviews", "preference", 5, seed=0, conversational=conversational)
    path = save_dataset(ds, tmp_path / name)
    if path.is_dir():
        back = datasets.load_from_disk(str(path))
    elif path.suffix == ".parquet":
        back = datasets.Dataset.from_parquet(str(path))
    else:
        back = datasets.Dataset.from_json(str(path))
    for col in ("prompt", "chosen", "rejected"):
        assert list(back[col]) == list(ds[col])
    assert list(load_preferences(path)["chosen"]) == list(load_preferences(ds)["chosen"])


def test_save_dataset_rejects_bad_input(tmp_path):
    ds = world_dataset("reviews", "prompt", 2)
    with pytest.raises(ValueError, match=".csv"):
        save_dataset(ds, tmp_path / "x.csv")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        save_dataset({"prompt": ["a"]}, tmp_path / "x.jsonl")


def test_load_prompts_from_files_lists_and_messages(tmp_path):
    plain = save_dataset(world_dataset("arithmetic", "prompt", 6, seed=1), tmp_path / "p.jsonl")
    assert load_prompts(plain) == arithmetic.sample_prompts(6, 1)
    assert load_prompts(plain, limit=2) == arithmetic.sample_prompts(6, 1)[:2]
    conv = save_dataset(prompts_to_trl(["1+1="], conversational=True), tmp_path / "c.parquet")
    assert load_prompts(conv) == ["user: 1+1=\nassistant:"]
    assert load_prompts(["a", "b"]) == ["a", "b"]
    save_dataset(datasets.Dataset.from_dict({"text": ["a"]}), tmp_path / "t.jsonl")
    with pytest.raises(ValueError, match="'prompt' column"):
        load_prompts(tmp_path / "t.jsonl")
    with pytest.raises(ValueError, match="prompt 0"):
        load_prompts([""])


def test_the_tools_world_gives_prompts_only():
    ds = world_dataset("tools", "prompt", 6, seed=2)
    assert ds.column_names == ["prompt"] and list(ds["prompt"]) == tools.sample_prompts(6, 2)
    with pytest.raises(ValueError, match="calculator's observations"):
        world_dataset("tools", "sft", 3)
    with pytest.raises(ValueError, match="tools world has prompts and a verifier"):
        world_dataset("tools", "preference", 3)
