"""Loading preference data in TRL's standard format, from a file, a `datasets.Dataset` or the hub.

Survey sections 4 (RLHF reward models) and 7 (DPO) of arXiv 2412.10400: both learn from pairs (prompt,
chosen, rejected). The standard format is three string columns; a completion is appended to its prompt as is
(`prompt + chosen`), which is what the reviews world produces (`rlsurvey.tasks.reviews.make_preferences`).

The conversational format (TRL's, and that of most hub datasets) holds lists of {"role", "content"} messages:
either an explicit `prompt` conversation with one-message `chosen` / `rejected` answers, or no `prompt` column
and two full conversations that share their first turns (the "implicit prompt"). `load_preferences` turns
both into the standard format: with a tokenizer that has a chat template the prompt is rendered by
`apply_chat_template(..., add_generation_prompt=True)`; otherwise as "role: content" lines ending in
"assistant:", and each answer becomes " " + its content (with a template: what the template adds after the
prompt, end-of-turn token included, and no leading space). Other columns are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets

__all__ = ["EXPECTED_COLUMNS", "check_preferences", "load_preferences", "load_sft", "to_standard"]

EXPECTED_COLUMNS = ("prompt", "chosen", "rejected")
FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def _json_rows(path: Path) -> list[tuple[str, object]]:
    """The rows of a .json / .jsonl file as (where, value): JSON lines, or one JSON array (or object) over
    the whole file. A problem becomes a ValueError naming the file and the line (datasets' own reader
    stops with a bare StopIteration on an empty file and buries the line of bad JSON in a traceback)."""
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path}: the file is empty; expected one JSON object per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = raw.count(b"\n", 0, exc.start) + 1, exc.start - raw.rfind(b"\n", 0, exc.start)
        raise ValueError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {col}); "
            "save the file as UTF-8"
        ) from None
    rows: list[tuple[str, object]] = []
    array = text.lstrip().startswith("[")  # one JSON array of rows, not JSON lines
    if array:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"{path}: line {exc.lineno}"
            raise ValueError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from None
        rows = [(f"{path}: item {i} of the array", v) for i, v in enumerate(items)]
    for n, line in enumerate([] if array else text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}: line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            try:  # not JSON lines: perhaps one object spread over several lines
                rows = [(str(path), json.loads(text))]
            except json.JSONDecodeError:
                raise ValueError(f"{path}: line {n}: invalid JSON ({exc.msg}, column {exc.colno})") from None
            break
    if not rows:
        raise ValueError(f"{path}: the file has no rows; expected one JSON object per line")
    for where, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object (one row), got {type(row).__name__}")
    return rows


def _check_messages(value, where: str, col: str) -> None:
    if not value:
        raise ValueError(f"{where}: column {col!r} is an empty list; expected 'role'/'content' messages")
    for k, m in enumerate(value):
        if not isinstance(m, dict):
            raise ValueError(
                f"{where}: column {col!r}, message {k}: expected an object with 'role' and 'content', "
                f"got {type(m).__name__}"
            )
        for key in ("role", "content"):
            if m.get(key) is None:
                raise ValueError(
                    f"{where}: column {col!r}, message {k}: no {key!r}; a message needs 'role' and 'content'"
                )
            if not isinstance(m[key], str):
                got = type(m[key]).__name__
                raise ValueError(f"{where}: column {col!r}, message {k}: {key!r} must be a string, got {got}")


def _check_text(row: dict, col: str, where: str, conversational: bool, empty_ok: bool = False) -> None:
    """One value of a text column: a string (non-empty unless empty_ok), or with `conversational` a list of
    {'role', 'content'} messages."""
    value = row.get(col)
    if value is None:
        raise ValueError(f"{where}: column {col!r} is missing or null; expected " + (
            "a list of messages" if conversational else "a string"))  # fmt: skip
    if conversational and isinstance(value, list):
        return _check_messages(value, where, col)
    if not isinstance(value, str):
        want = "lists of messages (the first row's format)" if conversational else "strings"
        raise TypeError(f"{where}: column {col!r} must hold {want}, got {type(value).__name__}")
    if not value and not empty_ok:
        raise ValueError(f"{where}: column {col!r} is an empty string; expected text")


def _check_preference_row(row: dict, where: str, conversational: bool, columns) -> None:
    """A preference row (standard or conversational, as the first row is): every value well-formed."""
    for col in ("chosen", "rejected"):
        if col in columns:
            _check_text(row, col, where, conversational)
    if "prompt" in columns and not (conversational and row.get("prompt") is None):  # implicit prompt
        value = row.get("prompt")
        _check_text(row, "prompt", where, conversational and isinstance(value, list), empty_ok=True)


def _check_prompt_row(row: dict, where: str) -> None:
    value = row.get("prompt")
    _check_text(row, "prompt", where, isinstance(value, list))


def _check_json_file(path: Path, kind: str | None) -> None:
    """Refuse a JSON file that datasets would read wrongly or with an opaque error, naming its line."""
    rows = _json_rows(path)
    if kind is None:
        return
    columns = set().union(*(row for _, row in rows))  # a column absent everywhere: reported by the loader
    first = rows[0][1]
    conversational = isinstance(first.get("chosen"), list)
    for where, row in rows:
        if kind == "preference":
            _check_preference_row(row, where, conversational, columns)
        elif "prompt" in columns:
            _check_prompt_row(row, where)


def _read(source, split: str, kind: str | None = None) -> datasets.Dataset:
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
        if fmt == "json":
            _check_json_file(path, kind)
            return datasets.Dataset.from_json(str(path))
        try:
            return datasets.Dataset.from_parquet(str(path))
        except Exception as exc:  # pyarrow's errors name neither the file nor what was expected
            raise ValueError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
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


def _render_answer(messages: list[dict], prompt_messages=None, prompt_text: str = "", tokenizer=None) -> str:
    """An answer's text. With a chat template the answer is what the template adds after the prompt (its
    end-of-turn token included, with no space of its own), as TRL renders conversational pairs; without
    one, a space and the contents, after the plain "assistant:"."""
    plain = "\n".join(str(m["content"]) for m in messages)
    if (
        isinstance(prompt_messages, list)
        and tokenizer is not None
        and getattr(tokenizer, "chat_template", None)
    ):
        whole = tokenizer.apply_chat_template(prompt_messages + list(messages), tokenize=False)
        return whole[len(prompt_text) :] if whole.startswith(prompt_text) else plain
    return " " + plain


def _convert_row(row: dict, tokenizer) -> dict:
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    if prompt is None:  # implicit prompt: the turns the two conversations share
        k = 0
        while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
            k += 1
        prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
    turns = prompt if isinstance(prompt, list) else None
    if turns is not None:
        prompt = _render_prompt(turns, tokenizer)
    return {
        "prompt": prompt,
        "chosen": _render_answer(chosen, turns, prompt, tokenizer),
        "rejected": _render_answer(rejected, turns, prompt, tokenizer),
    }


def _check_preferences(ds: datasets.Dataset) -> bool:
    """Check a preference dataset's columns and every row; returns whether it is conversational."""
    cols = set(ds.column_names)
    conversational = {"chosen", "rejected"} <= cols and len(ds) > 0 and isinstance(ds[0]["chosen"], list)
    needed = {"chosen", "rejected"} if conversational else set(EXPECTED_COLUMNS)
    missing = needed - cols
    if missing:
        raise ValueError(
            f"preference data must have the columns {list(EXPECTED_COLUMNS)} (or, conversational, 'chosen' "
            f"and 'rejected' with an optional 'prompt'); found {sorted(cols)}, missing {sorted(missing)}"
        )
    if len(ds) == 0:
        raise ValueError("preference data has no rows")
    present = [c for c in EXPECTED_COLUMNS if c in cols]
    for i, values in enumerate(zip(*(ds[c] for c in present))):
        _check_preference_row(dict(zip(present, values)), f"row {i}", conversational, present)
    return conversational


def check_preferences(source, split: str = "train") -> datasets.Dataset:
    """Read preference data as `load_preferences` does and check every row, without converting it (no
    tokenizer needed); returns it as read. Errors name the file and line, or the row and column."""
    ds = _read(source, split, "preference")
    _check_preferences(ds)
    return ds


def to_standard(ds: datasets.Dataset, tokenizer=None) -> datasets.Dataset:
    """The standard (string) format of a preference dataset in either format; see the module docstring."""
    conversational = _check_preferences(ds)
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
    return to_standard(_read(source, split, "preference"), tokenizer)


def load_sft(source, split: str = "train") -> datasets.Dataset:
    """SFT demonstrations as read (see `rlsurvey.algos.sft` for the accepted columns): a local .json /
    .jsonl / .parquet file, a `save_to_disk` directory, a `datasets.Dataset` or `DatasetDict`, or a hub id
    (needs a network). The columns are checked when the trainer tokenizes them, row by row."""
    return _read(source, split)
