"""Loading preference data in TRL's standard format, from a file, a `datasets.Dataset` or the hub.

Survey sections 4 (RLHF reward models) and 7 (DPO) of arXiv 2412.10400: both learn from pairs (prompt,
chosen, rejected). The standard format is three string columns; a completion is appended to its prompt as is
(`prompt + chosen`), which is what the reviews world produces (`rlsurvey.tasks.reviews.make_preferences`).

The conversational format (TRL's, and that of most hub datasets) holds lists of {"role", "content"} messages:
either an explicit `prompt` conversation with one-message `chosen` / `rejected` answers, or no `prompt` column
and two full conversations that share their first turns (the "implicit prompt"). `load_preferences` turns
both into the standard format: with a tokenizer that has a chat template the prompt is rendered by
`apply_chat_template(..., add_generation_prompt=True)`; otherwise as "role: content" lines ending in
"assistant:", and each answer becomes " " + its content. Other columns are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

__all__ = ["EXPECTED_COLUMNS", "load_preferences", "to_standard"]

EXPECTED_COLUMNS = ("prompt", "chosen", "rejected")
FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def _read(source, split: str) -> datasets.Dataset:
    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ValueError(f"split must be one of {sorted(source)}, got {split!r}")
        return source[split]
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, a hub id or a datasets.Dataset, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        return _read(loaded, split)
    if path.is_file():
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"source file must end in one of {sorted(FILE_FORMATS)}, got {path.name!r}")
        return (
            datasets.Dataset.from_json(str(path))
            if fmt == "json"
            else datasets.Dataset.from_parquet(str(path))
        )
    if path.suffix.lower() in FILE_FORMATS or str(source).startswith((".", "/", "~")):
        raise FileNotFoundError(f"source {str(source)!r} looks like a local file, but no such file exists")
    if _offline():
        raise ValueError(
            f"source {str(source)!r} is not a local file, so it was taken for a hub dataset id, but the "
            "hub is offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set). Use local data instead: a .json, "
            ".jsonl or .parquet file with prompt/chosen/rejected columns, a directory from "
            "Dataset.save_to_disk, or a datasets.Dataset (e.g. "
            "rlsurvey.tasks.reviews.make_preferences(1000)); or go online to download it."
        )
    return datasets.load_dataset(str(source), split=split)  # pragma: no cover - needs a network


def _is_conversation(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and {"role", "content"} <= set(m) for m in value
    )


def _render_prompt(messages: list[dict], tokenizer) -> str:
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def _render_answer(messages: list[dict]) -> str:
    return " " + "\n".join(str(m["content"]) for m in messages)


def _convert_row(row: dict, tokenizer) -> dict:
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    if prompt is None:  # implicit prompt: the turns the two conversations share
        k = 0
        while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
            k += 1
        prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
    if isinstance(prompt, list):
        prompt = _render_prompt(prompt, tokenizer)
    return {"prompt": prompt, "chosen": _render_answer(chosen), "rejected": _render_answer(rejected)}


def to_standard(ds: datasets.Dataset, tokenizer=None) -> datasets.Dataset:
    """The standard (string) format of a preference dataset in either format; see the module docstring."""
    cols = set(ds.column_names)
    conversational = {"chosen", "rejected"} <= cols and len(ds) > 0 and _is_conversation(ds[0]["chosen"])
    needed = {"chosen", "rejected"} if conversational else set(EXPECTED_COLUMNS)
    missing = needed - cols
    if missing:
        raise ValueError(
            f"preference data must have the columns {list(EXPECTED_COLUMNS)} (or, conversational, 'chosen' "
            f"and 'rejected' with an optional 'prompt'); found {sorted(cols)}, missing {sorted(missing)}"
        )
    if len(ds) == 0:
        raise ValueError("preference data has no rows")
    if conversational:
        ds = ds.map(lambda row: _convert_row(row, tokenizer), desc="to standard format")
    for col in EXPECTED_COLUMNS:
        bad = next((i for i, v in enumerate(ds[col]) if not isinstance(v, str)), None)
        if bad is not None:
            raise TypeError(
                f"column {col!r} must hold strings, but row {bad} holds {type(ds[bad][col]).__name__}"
            )
    return ds


def load_preferences(source, split: str = "train", tokenizer=None) -> datasets.Dataset:
    """Preference pairs in TRL's standard format (prompt, chosen, rejected: strings; other columns kept).

    source: a local .json / .jsonl / .parquet file, a directory saved by `Dataset.save_to_disk`, a
    `datasets.Dataset` or `DatasetDict`, or a hub dataset id (needs a network). split: used for dataset
    dicts and hub ids. tokenizer: renders conversational prompts with its chat template when it has one.
    """
    return to_standard(_read(source, split), tokenizer)
