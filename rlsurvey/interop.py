"""The synthetic worlds' data in TRL's dataset formats, and prompt loading for the online trainers.

Survey sections 4.1, 4.2, 7 and 3 of arXiv 2412.10400 need three kinds of data, which TRL (and the engines
that read its formats) call *types*; each comes in two *formats*:

| type | standard format (strings) | conversational format | used by |
|---|---|---|---|
| preference | prompt, chosen, rejected | the same columns as message lists | reward models, DPO |
| unpaired preference | prompt, completion; label: bool | prompt, completion as messages | KTO, NPO |
| prompt-only | prompt | prompt as messages | PPO, RLOO, GRPO |

A message list is `[{"role": "user", "content": ...}]` (an assistant turn for a completion).

In the standard format a completion continues its prompt as text (`prompt + chosen` is the whole review);
the conversational one puts the prompt in a user turn and the completion in an assistant turn, for chat
models. `save_dataset` writes any of them as JSON lines, Parquet or a `save_to_disk` directory, which TRL's
trainers, `datasets.load_dataset` and `rlsurvey.data.load_preferences` all read back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from rlsurvey.data import _check_messages, _read, _render_prompt, load_preferences
from rlsurvey.evaluation import WORLDS

__all__ = [
    "DATA_TYPES",
    "WORLDS",
    "check_prompts",
    "load_prompts",
    "preferences_to_trl",
    "preferences_to_unpaired",
    "demonstrations",
    "prompts_to_trl",
    "save_dataset",
    "world_dataset",
]

DATA_TYPES = ("preference", "unpaired", "prompt", "sft")


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text.strip()}]


def preferences_to_trl(ds: datasets.Dataset, conversational: bool = False) -> datasets.Dataset:
    """A preference dataset (any format `rlsurvey.data.load_preferences` reads) in TRL's standard or
    conversational preference format. Extra columns (gold rewards, votes) are kept; TRL ignores them."""
    ds = load_preferences(ds)
    if not conversational:
        return ds
    return ds.map(
        lambda row: {
            "prompt": _user(row["prompt"]),
            "chosen": _assistant(row["chosen"]),
            "rejected": _assistant(row["rejected"]),
        },
        desc="to conversational",
    )


def preferences_to_unpaired(ds: datasets.Dataset, conversational: bool = False) -> datasets.Dataset:
    """Pairs as TRL's unpaired preference type (KTO's): every chosen becomes a row with label True and
    every rejected a row with label False, in that order (2n rows; only prompt/completion/label kept)."""
    ds = load_preferences(ds)
    prompts = list(ds["prompt"])
    completions = list(ds["chosen"]) + list(ds["rejected"])
    out = datasets.Dataset.from_dict(
        {"prompt": prompts * 2, "completion": completions, "label": [True] * len(ds) + [False] * len(ds)}
    )
    if not conversational:
        return out
    return out.map(
        lambda row: {"prompt": _user(row["prompt"]), "completion": _assistant(row["completion"])},
        desc="to conversational",
    )


def prompts_to_trl(prompts: Sequence[str], conversational: bool = False) -> datasets.Dataset:
    """A prompt-only dataset (TRL's type for PPO, RLOO and GRPO) from a list of prompts."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts must be a non-empty list of str, got {type(prompts).__name__}")
    bad = next((i for i, p in enumerate(prompts) if not isinstance(p, str) or not p), None)
    if bad is not None:
        raise ValueError(f"prompts[{bad}] must be a non-empty str, got {prompts[bad]!r}")
    return datasets.Dataset.from_dict({"prompt": [_user(p) if conversational else p for p in prompts]})


def demonstrations(world: str, n: int, seed: int = 0, conversational: bool = False) -> datasets.Dataset:
    """`n` demonstrations of a world in TRL's prompt-completion format, the data of SFT: worked solutions
    (reasoning), right answers (arithmetic), or for reviews the best of 4 grammar completions of each prompt
    by the true reward (the careful labeler of InstructGPT's demonstrations, arXiv 2203.02155, 3.4)."""
    from rlsurvey.tasks import arithmetic, reasoning, reviews

    if world not in WORLDS:
        raise ValueError(f"world must be one of {list(WORLDS)}, got {world!r}")
    if world == "tools":
        raise ValueError(
            "the tools world has no SFT demonstrations: a worked episode holds the calculator's "
            "observations, which supervised fine-tuning would train the policy to write itself; train it "
            "with `rlsurvey train grpo --tool calculator`, whose loss masks them"
        )
    if world == "reasoning":
        prompts = reasoning.sample_prompts(n, seed)
        completions = [reasoning.worked_solution(p) for p in prompts]
    elif world == "arithmetic":
        prompts = arithmetic.sample_prompts(n, seed)
        completions = [str(arithmetic.answer(p)) for p in prompts]
    else:
        prompts = reviews.sample_prompts(n, seed)
        drafts = [reviews.sample_completions(prompts, seed=seed * 4 + k + 1) for k in range(4)]
        gold = np.stack([reviews.gold_reward(d, prompts) for d in drafts])  # [4, n]
        completions = [drafts[k][i] for i, k in enumerate(gold.argmax(0))]
    if conversational:
        return datasets.Dataset.from_dict(
            {"prompt": [_user(p) for p in prompts], "completion": [_assistant(c) for c in completions]}
        )
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})


def world_dataset(
    world: str, data_type: str, n: int, seed: int = 0, conversational: bool = False
) -> datasets.Dataset:
    """`n` examples of a synthetic world in a TRL format: ("reviews", "preference" | "unpaired" |
    "prompt" | "sft"), ("arithmetic" | "reasoning", "prompt" | "sft"), ("tools", "prompt"); the arithmetic,
    reasoning and tools worlds have a verifier, not preferences. "sft": prompt-completion demonstrations
    (`demonstrations`)."""
    from rlsurvey.tasks import arithmetic, reasoning, reviews, tools

    if world not in WORLDS:
        raise ValueError(f"world must be one of {list(WORLDS)}, got {world!r}")
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type must be one of {list(DATA_TYPES)}, got {data_type!r}")
    if data_type == "sft":
        return demonstrations(world, n, seed, conversational)
    if data_type == "prompt":
        worlds = {"reviews": reviews, "arithmetic": arithmetic, "reasoning": reasoning, "tools": tools}
        sample = worlds[world].sample_prompts
        return prompts_to_trl(sample(n, seed), conversational)
    if world != "reviews":
        raise ValueError(
            f"the {world} world has prompts and a verifier, not preference pairs; got data_type={data_type!r}"
        )
    pairs = reviews.make_preferences(n, seed)
    if data_type == "unpaired":
        return preferences_to_unpaired(pairs, conversational)
    return preferences_to_trl(pairs, conversational)


def save_dataset(ds: datasets.Dataset, path: str | os.PathLike) -> Path:
    """Write `ds` by the path's suffix: .jsonl / .json (JSON lines), .parquet, else a `save_to_disk`
    directory. Returns the path; parent directories are made."""
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"ds must be a datasets.Dataset, got {type(ds).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        ds.to_json(str(path), lines=True, force_ascii=False)
    elif suffix == ".parquet":
        ds.to_parquet(str(path))
    elif suffix:
        raise ValueError(f"path must end in .jsonl, .json or .parquet, or be a directory; got {path.name!r}")
    else:
        ds.save_to_disk(str(path))
    return path


def load_prompts(source, split: str = "train", tokenizer=None, limit: int | None = None) -> list[str]:
    """Prompts for the online trainers, as strings.

    source: a list of str, a prompt-only `datasets.Dataset`, a .json / .jsonl / .parquet file or a
    `save_to_disk` directory with a "prompt" column, or a hub id (needs a network). Conversational prompts
    are rendered with the tokenizer's chat template when it has one, else as "role: content" lines ending in
    "assistant:" (as `rlsurvey.data` does). limit: keep the first this many.
    """
    if isinstance(source, (list, tuple)):
        prompts = list(source)
    else:
        ds = _read(source, split, "prompt")
        if "prompt" not in ds.column_names:
            raise ValueError(f"a prompt dataset needs a 'prompt' column; it has {sorted(ds.column_names)}")
        prompts = list(ds["prompt"])
    if limit is not None:
        prompts = prompts[:limit]
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, list):
            _check_messages(p, f"prompt {i}", "prompt")
            p = _render_prompt(p, tokenizer)
        if not isinstance(p, str) or not p:
            raise ValueError(f"prompt {i} must be a non-empty string or a list of messages, got {p!r}")
        out.append(p)
    if not out:
        raise ValueError("the prompt dataset has no rows")
    return out


def check_prompts(source, split: str = "train", limit: int | None = None) -> int:
    """Read and check prompts as `load_prompts` does (conversations rendered without a chat template);
    returns how many there are. Errors name the file and line, or the prompt's row."""
    return len(load_prompts(source, split, None, limit))
