"""Checks of the `rlsurvey` command's inputs, run before any model is loaded or any file written.

`check_args` looks at everything a `rlsurvey train ...` run takes: every number of the trainer's config (its
dataclass's own range checks, see `rlsurvey.checks`), the seed and the example count, the model, reward
model and dataset paths, every row of a dataset file, the model's context against the generation budget,
and the room left on the output directory's filesystem. A problem raises `InputError`, whose message is one
line, `<option, file, line or row>: <what was expected>`; `rlsurvey.cli.main` prints it as
`rlsurvey: <message>` and exits with status 1, with a traceback only under `--debug` (or RLSURVEY_DEBUG=1).
Since nothing has been loaded or written when a check fails, a refused command leaves the output directory
as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import torch

__all__ = [
    "DISK_FACTOR",
    "InputError",
    "check_args",
    "check_data_args",
    "debug_requested",
    "error_line",
    "fit_prompts",
    "looks_like_path",
    "model_context",
]

SEED_LIMIT = 2**32  # numpy's legacy generator, which the runtime seeds too, takes seeds below 2**32
DISK_FACTOR = 3  # free space wanted on the output's filesystem, in multiples of the model's weight files
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".txt", ".arrow")
MAX_MESSAGE = 600  # characters of an error message shown (a row of data can be very long)
MAX_GENERATED = 1_000_000  # examples generated from a synthetic world (more is a typo, not a dataset)


class InputError(ValueError):
    """A bad command-line input; its message is one line: `<option, file or row>: <what was expected>`."""


def debug_requested(args) -> bool:
    """--debug on the command line, or RLSURVEY_DEBUG set to anything but 0 / false / no / off."""
    env = os.environ.get("RLSURVEY_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no", "off")


def error_line(exc: BaseException) -> str:
    """The one line `rlsurvey.cli.main` shows for an error, without `--debug`."""
    text = " ".join(str(exc).split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + " ..."
    if isinstance(exc, InputError):
        return f"rlsurvey: {text}"
    if isinstance(exc, (ValueError, TypeError, OSError)) and text:
        return f"rlsurvey: {text} (--debug shows the traceback)"
    return f"rlsurvey: {type(exc).__name__}: {text} (--debug shows the traceback)"


def looks_like_path(value: str) -> bool:
    """True for a value meant as a local path, not a hub id: it starts with ./, ../, / or ~, holds a
    backslash (or the platform's separator other than /) or two slashes (a hub id is 'name' or
    'owner/name'), or ends in a data file's suffix."""
    if value in (".", "..") or value.startswith(("./", "../", "/", "~", ".\\", "..\\")):
        return True
    if "\\" in value or (os.sep != "/" and os.sep in value) or value.count("/") >= 2:
        return True
    return value.lower().endswith(DATA_SUFFIXES)


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------


def _local_model_dir(name: str) -> Path | None:
    """The directory of a shipped model name or a local path; None for a hub id."""
    from rlsurvey.assets import SHIPPED_MODELS, model_path

    if name in SHIPPED_MODELS:
        return model_path(name)
    return Path(name) if Path(name).exists() else None


def _context_from_config(config: dict) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable model config ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object (a model config), got {type(config).__name__}")
    return config


def model_context(name: str) -> int | None:
    """The longest sequence (prompt + response) the model `name` reads, from its config.json: a shipped
    model, a local directory, or a hub model already in the local cache; None when unknown."""
    where = _local_model_dir(name)
    config_file = where / "config.json" if where is not None else None
    if config_file is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repo id, or no cache: unknown
            cached = None
        config_file = Path(cached) if isinstance(cached, str) else None
    if config_file is None or not config_file.is_file():
        return None
    return _context_from_config(_read_config(config_file))


def _check_model_dir(option: str, value: str, what: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise InputError(f"{option} {value}: is a file; expected {what} directory")
    if not (path / "config.json").is_file():
        raise InputError(
            f"{option} {value}: no config.json in it; expected {what} directory (written by save_pretrained)"
        )
    _read_config(path / "config.json")
    return path


def _check_model(args) -> Path | None:
    """The local directory of --model (None for a hub id), after checking it is there."""
    from rlsurvey import cli
    from rlsurvey.assets import SHIPPED_MODELS
    from rlsurvey.lm.models import _resolve

    name = cli._model_name(args)
    if name not in SHIPPED_MODELS:
        if Path(name).exists():
            return _check_model_dir("--model", name, "a model")
        if looks_like_path(name):
            raise InputError(f"--model {name}: no such directory")
    try:
        _resolve(name)  # a shipped model that is present, or a hub id while the hub may be used
    except (ValueError, OSError) as exc:
        raise InputError(f"--model {name}: {' '.join(str(exc).split())}") from None
    return _local_model_dir(name)


def reward_spec(args) -> str:
    """The --reward of a prompt trainer ('gold', 'verifier' or a directory), checked against the world."""
    from rlsurvey import cli

    spec = args.reward or cli.WORLD_REWARD[args.world]
    if spec == "gold":
        if args.world != "reviews":
            raise InputError("--reward gold: gold is the reviews world's reward; use --world reviews")
        return spec
    if spec == "verifier":
        if args.world not in ("arithmetic", "reasoning", "tools"):
            raise InputError(
                "--reward verifier: the verifier checks answers of the arithmetic or reasoning world (or "
                "the tools world's, with grpo --tool calculator); use --world arithmetic or --world reasoning"
            )
        return spec
    expected = "expected 'gold', 'verifier' or a reward-model directory"
    if not Path(spec).exists():
        where = "no such directory" if looks_like_path(spec) else "not a reward name"
        raise InputError(f"--reward {spec}: {where}; {expected}")
    _check_model_dir("--reward", spec, "a reward-model")
    return spec


# ----------------------------------------------------------------------------------------------------------
# Config, data, output
# ----------------------------------------------------------------------------------------------------------


def _option_of(exc: Exception, cls) -> str | None:
    """The option a config error is about: its `field`, or the field its message starts with."""
    import dataclasses

    from rlsurvey import cli
    from rlsurvey.config_args import option_name

    names = {f.name for f in dataclasses.fields(cls)}
    field = getattr(exc, "field", None)
    if field is None:
        m = re.match(r"(?:\w+\.)?(\w+)", str(exc))
        field = m.group(1) if m else None
    if field not in names:
        return None
    return cli.BOUND.get(field) or option_name(field)


def _check_config(cmd, args):
    """The run's config, built as `train` builds it; a bad number becomes an InputError naming its option."""
    from rlsurvey import cli

    try:
        cfg = cli._config(cmd, args, cli.is_main_process(), Path(args.output_dir))  # checked as it is made
    except SystemExit as exc:  # _config's own message; its cause is the config's error
        if not isinstance(exc.__cause__, (ValueError, TypeError)):
            raise
        err = exc.__cause__
    except (ValueError, TypeError) as exc:
        err = exc
    else:
        return cfg
    option = _option_of(err, cmd.config)
    text = " ".join(str(err).split())
    raise InputError(f"{option}: {text}" if option else f"rlsurvey train {args.algo}: {text}") from err


def _check_common(args) -> None:
    for option in ("output_dir", "model", "dataset", "reward", "split", "device"):
        value = getattr(args, option, None)
        if value is not None and not str(value).strip():
            raise InputError(f"--{option.replace('_', '-')}: expected a value, got an empty string")
    if not 0 <= args.seed < SEED_LIMIT:
        raise InputError(f"--seed {args.seed}: expected an int in [0, 2**32)")
    if args.num_examples is not None and args.num_examples < 1:
        raise InputError(
            f"--num-examples {args.num_examples}: expected a positive int (how many examples to use)"
        )
    if args.dataset is None and args.num_examples is not None and args.num_examples > MAX_GENERATED:
        raise InputError(
            f"--num-examples {args.num_examples}: at most {MAX_GENERATED:,} examples are generated from a "
            "world; pass --dataset for more"
        )
    if args.device is not None:
        try:
            dev = torch.device(args.device)
        except (RuntimeError, ValueError):
            raise InputError(f"--device {args.device}: expected cpu, cuda, cuda:<index> or mps") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError(f"--device {args.device}: CUDA is not available on this machine")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise InputError(
                    f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
                )


def _strip_source(text: str, source: str) -> str:
    """`text` without a leading '<source>: ' (the loaders name the file; the option names it already)."""
    for prefix in (str(Path(source)), source):
        if text.startswith(prefix + ":"):
            return text[len(prefix) + 1 :].strip()
    return text


def _check_data(args, cmd) -> None:
    """--dataset (or the world's generated data): present, readable, every row well-formed."""
    from rlsurvey.data import check_preferences
    from rlsurvey.interop import check_prompts

    if cmd.data == "steps":
        if args.world != "reasoning":
            raise InputError(
                f"--world {args.world}: step labels exist only in the reasoning world; use --world reasoning"
            )
        if args.dataset is not None:
            raise InputError(
                f"--dataset {args.dataset}: rlsurvey train prm samples its responses from --model on the "
                "reasoning world and labels them exactly; it reads no dataset"
            )
        return
    if args.dataset is None:
        if cmd.data == "preference" and args.world != "reviews":
            raise InputError(
                f"--world {args.world}: the {args.world} world has no preference pairs; "
                "pass --dataset or --world reviews"
            )
        return
    source = args.dataset
    if not Path(source).exists() and looks_like_path(source):
        raise InputError(f"--dataset {source}: no such file or directory")
    try:
        if cmd.data == "sft":
            from rlsurvey.algos.sft import sft_columns
            from rlsurvey.data import load_sft

            sft_columns(load_sft(source, args.split))
            return
        if cmd.data == "preference":
            ds = check_preferences(source, args.split)
        else:
            check_prompts(source, args.split)
            return
    except (ValueError, TypeError, OSError) as exc:
        text = _strip_source(" ".join(str(exc).split()), source)
        if text.startswith("split must be"):
            raise InputError(f"--split {args.split}: {source} has no such split; {text}") from None
        raise InputError(f"--dataset {source}: {text}") from None
    if "chosen" in ds.column_names and "rejected" in ds.column_names:
        same = next((i for i, (c, r) in enumerate(zip(ds["chosen"], ds["rejected"])) if c == r), None)
        if same is not None:
            raise InputError(
                f"--dataset {source}: row {same}: chosen and rejected are the same; a preference pair needs "
                "two different responses"
            )
    margin = getattr(args, "margin_column", None)
    if margin is not None:
        _check_margin(margin, ds, source)


def _check_margin(column: str, ds, source: str) -> None:
    if column not in ds.column_names:
        raise InputError(
            f"--margin-column {column}: no such column in {source}; it has {sorted(ds.column_names)}"
        )
    for i, v in enumerate(ds[column]):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(
                f"--margin-column {column}: row {i} of {source} holds {v!r}; expected a finite number"
            )


def _check_generated_margin(args) -> None:
    margin = getattr(args, "margin_column", None)
    if margin is None or args.dataset is not None:
        return
    from rlsurvey.tasks import reviews

    sample = reviews.make_preferences(2, seed=args.seed)
    if margin not in sample.column_names:
        raise InputError(
            f"--margin-column {margin}: the {args.world} world's pairs have no such column; "
            f"they have {sorted(sample.column_names)}"
        )


def _check_context(args, cfg, model_dir: Path | None) -> None:
    """A prompt trainer's generation budget must leave room for a prompt in the model's context."""
    new = getattr(cfg, "max_new_tokens", None)
    if new is None:
        return
    from rlsurvey import cli

    limit = model_context(str(model_dir) if model_dir is not None else cli._model_name(args))
    if limit is not None and new >= limit:
        raise InputError(
            f"--max-new-tokens {new}: the model reads at most {limit} tokens (its context), so no prompt "
            f"fits before {new} new tokens; expected at most {limit - 1}"
        )


def _weights_bytes(model_dir: Path | None) -> int | None:
    if model_dir is None or not model_dir.is_dir():
        return None
    sizes = [f.stat().st_size for f in model_dir.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES]
    return sum(sizes) or None


def _check_output(args, model_dir: Path | None) -> None:
    """--output-dir can be made and written, and its filesystem has room for the model's files."""
    given = args.output_dir
    out = Path(given)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {given}: is a file; expected a directory")
    anchor = out
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise InputError(f"--output-dir {given}: {anchor} is a file, so no directory can be made in it")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise InputError(f"--output-dir {given}: {anchor} is not writable")
    weights = _weights_bytes(model_dir)
    if weights is None:  # a hub model: its size is not known before it is downloaded
        return
    need, free = DISK_FACTOR * weights, shutil.disk_usage(anchor).free
    if free < need:
        raise InputError(
            f"--output-dir {given}: {free:,} bytes free on its filesystem, about {need:,} needed "
            f"({DISK_FACTOR} x the model's {weights:,} bytes of weights)"
        )


def check_args(args) -> None:
    """Check every input of `rlsurvey train <algo>` (see the module docstring); raises InputError."""
    from rlsurvey import cli

    cmd = cli._commands()[args.algo]
    _check_common(args)
    cfg = _check_config(cmd, args)
    model_dir = _check_model(args)
    if cmd.data == "prompt":
        reward_spec(args)
    _check_data(args, cmd)
    _check_generated_margin(args)
    _check_context(args, cfg, model_dir)
    if cli.is_main_process():
        _check_output(args, model_dir)


def check_data_args(args) -> None:
    """Check the options of `rlsurvey data` before anything is generated or written."""
    if not 1 <= args.num_examples <= MAX_GENERATED:
        raise InputError(f"-n/--num-examples {args.num_examples}: expected an int in [1, {MAX_GENERATED:,}]")
    if not 0 <= args.seed < SEED_LIMIT:
        raise InputError(f"--seed {args.seed}: expected an int in [0, 2**32)")
    path = Path(args.path)
    if path.suffix.lower() not in ("", ".jsonl", ".json", ".parquet"):
        raise InputError(f"{args.path}: expected a path ending in .jsonl, .json or .parquet, or a directory")
    if path.suffix and path.is_dir():
        raise InputError(f"{args.path}: is a directory; expected a file path")


# ----------------------------------------------------------------------------------------------------------
# Prompts longer than the model's context
# ----------------------------------------------------------------------------------------------------------


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _tail(tokenizer, text: str, budget: int) -> str:
    """The longest end of `text` that tokenizes to at most `budget` tokens (found by bisection)."""
    lo, hi = 0, len(text)  # lo characters always fit; hi may not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _count(tokenizer, text[len(text) - mid :]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo :]


def fit_prompts(prompts: list[str], tokenizer, budget: int, source: str = "the prompts") -> list[str]:
    """Prompts cut on the left to at most `budget` tokens (the model's context less the generation budget),
    with a note on stderr naming how many were cut and the first one's row."""
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > budget]
    if not long:
        return prompts
    out = list(prompts)
    for i in long:
        out[i] = _tail(tokenizer, prompts[i], budget)
        if not out[i]:
            raise InputError(
                f"{source}: row {i}: not even the prompt's last character fits in {budget} tokens"
            )
    first = long[0]
    print(
        f"rlsurvey: note: {len(long)} prompt(s) of {source} longer than {budget} tokens (the model's context "
        f"less --max-new-tokens) keep only their end, e.g. row {first} ({lengths[first]} tokens)",
        file=sys.stderr,
    )
    return out
