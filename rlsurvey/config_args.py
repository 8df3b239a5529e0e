"""Command-line options generated from the package's config dataclasses (used by `rlsurvey.cli`).

A config dataclass is the single description of a trainer's settings: its fields' types, defaults and the
comment beside each field. This module turns one into argparse options, so the command line, the notebooks
and the Python API can never disagree about a name, a default or what a setting means:

| field type | option |
|---|---|
| `int`, `float`, `str` | `--name VALUE` |
| `bool` (or `bool | None`) | `--name` / `--no-name` (None when neither is given) |
| `X | None` | `--name VALUE`, or `--name none` for None |
| `tuple[X, X]`, `tuple[X, ...]`, `list[X]` | `--name V1 V2` (a fixed or any number of values) |
| `Literal["a", "b"]`, or a field given choices | `--name {a,b}` |

The help text of a field is `field(metadata={"help": ...})` when there is one, otherwise the comment on the
line that defines the field, read from the class's source with `tokenize` (comments are not kept at run
time, and the configs document their fields in comments).

A field renamed with `rlsurvey.config_compat.renamed_fields` keeps its old option as a hidden alias that
warns (`--ppo-epochs 2` sets `epochs_per_rollout`, with a FutureWarning naming `--epochs-per-rollout`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
import warnings
from collections.abc import Iterable

from rlsurvey.config_compat import renamed_names

__all__ = ["add_config_arguments", "config_from_args", "field_help", "option_name"]

NONE_WORDS = ("none", "None", "null")


def option_name(field_name: str) -> str:
    """`learning_rate` -> `--learning-rate`."""
    return "--" + field_name.replace("_", "-")


def field_help(cls) -> dict[str, str]:
    """{field name: help text} of a dataclass: `metadata["help"]`, else the comment on the field's line.

    Comments are read from the class source: an annotated assignment in the class body owns the `#` comment
    on its last line (or its first, for a field spread over several lines). A field with neither gets "".
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass, got {cls!r}")
    comments: dict[int, str] = {}
    owners: dict[str, tuple[int, int]] = {}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined in a REPL: only metadata helps
        source = ""
    if source:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        body = ast.parse(source).body[0]
        for node in getattr(body, "body", []):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                owners[node.target.id] = (node.lineno, node.end_lineno or node.lineno)
    out = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") if f.metadata else None
        if text is None and f.name in owners:
            first, last = owners[f.name]
            text = comments.get(last) or comments.get(first) or ""
        out[f.name] = text or ""
    return out


def _unwrap_optional(tp) -> tuple[object, bool]:
    """(X, True) for `X | None` / `Optional[X]`; (tp, False) otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar(tp, optional: bool, name: str):
    """An argparse `type` callable for a scalar field type (with 'none' for None when optional)."""
    if tp not in (int, float, str):
        raise TypeError(f"field {name!r}: unsupported type {tp!r} for a command-line option")

    def parse(text: str):
        if optional and text in NONE_WORDS:
            return None
        try:
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {tp.__name__}, got {text!r}") from None

    parse.__name__ = tp.__name__  # argparse names the type in its error messages
    return parse


class _OldOption(argparse.Action):
    """A renamed field's old option: stores into the new field and warns (FutureWarning)."""

    def __init__(self, option_strings, dest, new_option: str = "", **kwargs):
        self.new_option = new_option
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            f"`{option_string}` is renamed `{self.new_option}`; the old name will be removed",
            FutureWarning,
            stacklevel=2,
        )
        setattr(namespace, self.dest, values)


def _describe(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls,
    defaults=None,
    skip: Iterable[str] = (),
    choices: dict[str, Iterable[str]] | None = None,
    title: str | None = None,
) -> list[str]:
    """Add one option per field of the dataclass `cls` to `parser`; returns the field names added.

    defaults: an instance of `cls` whose values become the defaults (e.g. a preset such as RLOO's);
    skip: fields set elsewhere (say by a common `--output-dir`); choices: allowed values of `str` fields
    whose type does not say them. Each option's help is the field's help text, its type and its default.
    """
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    defaults = cls() if defaults is None else defaults
    choices = choices or {}
    group = parser.add_argument_group(title or f"{cls.__name__} options")
    old_names: dict[str, list[str]] = {}
    for old, new in renamed_names(cls).items():
        old_names.setdefault(new, []).append(old)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = getattr(defaults, f.name)
        tp, optional = _unwrap_optional(hints[f.name])
        kwargs: dict = {"dest": f.name, "default": default}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        kind = ""
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kind = "flag"
        elif origin in (tuple, list):
            item = args[0] if args else str
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                kwargs["nargs"] = "+"
            elif origin is tuple:
                if len(set(args)) != 1:
                    raise TypeError(f"field {f.name!r}: mixed tuple types {args} are not supported")
                kwargs["nargs"] = len(args)
            else:
                kwargs["nargs"] = "+"
            kwargs["type"] = _scalar(item, False, f.name)
            kwargs["metavar"] = item.__name__.upper()
            kind = f"{kwargs['nargs'] if kwargs['nargs'] != '+' else 'one or more'} {item.__name__}"
        elif origin is typing.Literal:
            kwargs["choices"] = list(args) + (["none"] if optional else [])
            kwargs["type"] = _scalar(str, optional, f.name)
            kind = "one of " + ", ".join(map(str, args))
        else:
            kwargs["type"] = _scalar(tp, optional, f.name)
            kind = tp.__name__
            if f.name in choices:
                kwargs["choices"] = list(choices[f.name])
                kwargs["metavar"] = "{" + ",".join(kwargs["choices"]) + "}"
            else:
                kwargs["metavar"] = tp.__name__.upper()
        if optional and kind and tp is not bool:  # an optional flag stays None unless given
            kind += " or none"
        text = helps.get(f.name, "")
        kwargs["help"] = f"{text} [{kind}; default: {_describe(default)}]".strip().replace("%", "%%")
        group.add_argument(option_name(f.name), **kwargs)
        added.append(f.name)
        if kwargs.get("action") is None:  # the old names of the field, hidden: they still parse, and warn
            alias = {k: v for k, v in kwargs.items() if k not in ("default", "help")}
            for old in old_names.get(f.name, []):
                group.add_argument(
                    option_name(old), action=_OldOption, new_option=option_name(f.name),
                    default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias,
                )  # fmt: skip
    return added


def config_from_args(cls, args: argparse.Namespace, defaults=None, **fixed):
    """An instance of `cls` from the parsed options of `add_config_arguments` (tuples stay tuples);
    `fixed` sets fields that came from elsewhere. The dataclass's own checks (`__post_init__`) run."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in fixed:
            values[f.name] = fixed[f.name]
        elif hasattr(args, f.name):
            v = getattr(args, f.name)
            tp, _ = _unwrap_optional(hints[f.name])
            if isinstance(v, list) and typing.get_origin(tp) is tuple:
                v = tuple(v)
            values[f.name] = v
        elif defaults is not None:
            values[f.name] = getattr(defaults, f.name)
    return cls(**values)
