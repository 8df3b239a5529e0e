"""Command-line options from config dataclasses: help text from comments, every field type, the checks."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from rlsurvey.config_args import add_config_arguments, config_from_args, field_help, option_name


@dataclass
class Toy:
    steps: int = 3  # how many steps
    lr: float = 0.5  # step size
    name: str = "a"  # a name
    flag: bool = True  # a switch
    cap: int | None = None  # an optional cap
    pair: tuple[float, float] = (0.9, 0.99)  # two numbers
    ops: tuple[str, ...] = ("+", "-")  # any number of strings
    mode: Literal["x", "y"] = "x"  # a literal choice
    noted: float = field(default=1.0, metadata={"help": "from metadata"})  # not this comment
    spread: int = (  # spread over lines
        7
    )
    bare: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_arguments(p, Toy, **kw)
    return p


def test_field_help_reads_comments_and_metadata():
    assert field_help(Toy) == {
        "steps": "how many steps",
        "lr": "step size",
        "name": "a name",
        "flag": "a switch",
        "cap": "an optional cap",
        "pair": "two numbers",
        "ops": "any number of strings",
        "mode": "a literal choice",
        "noted": "from metadata",
        "spread": "spread over lines",
        "bare": "",
    }


def test_field_help_rejects_non_dataclass():
    with pytest.raises(TypeError, match="dataclass"):
        field_help(int)


def test_defaults_round_trip_to_an_equal_config():
    args = _parser().parse_args([])
    assert config_from_args(Toy, args) == Toy()


def test_every_type_parses():
    args = _parser().parse_args(
        "--steps 5 --lr 1e-3 --name b --no-flag --cap 9 --pair 0.5 0.6 --ops + --mode y --noted 2 "
        "--spread 1 --bare 4".split()
    )
    cfg = config_from_args(Toy, args)
    assert cfg == Toy(5, 1e-3, "b", False, 9, (0.5, 0.6), ("+",), "y", 2.0, 1, 4)
    assert isinstance(cfg.pair, tuple) and isinstance(cfg.ops, tuple)
    assert config_from_args(Toy, _parser().parse_args(["--cap", "none"])).cap is None


def test_bad_values_are_rejected_with_the_option_named(capsys):
    p = _parser()
    for argv in (["--steps", "x"], ["--mode", "z"], ["--pair", "1"], ["--steps", "none"]):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        assert argv[0] in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps must be >= 1"):
        config_from_args(Toy, p.parse_args(["--steps", "0"]))


def test_help_lists_every_field_with_its_text_and_default():
    text = _parser().format_help()
    for f in dataclasses.fields(Toy):
        assert option_name(f.name) in text
    assert "--no-flag" in text and "how many steps [int; default: 3]" in text
    assert "[int or none; default: none]" in text


def test_skip_choices_and_preset_defaults():
    p = _parser(skip={"bare"}, choices={"name": ("a", "b")}, defaults=Toy(steps=8))
    assert "--bare" not in p.format_help()
    assert p.parse_args([]).steps == 8
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "c"])
    cfg = config_from_args(Toy, p.parse_args([]), defaults=Toy(bare=3), name="b")
    assert (cfg.bare, cfg.name, cfg.steps) == (3, "b", 8)


def test_unsupported_field_type_is_an_error():
    @dataclass
    class Bad:
        table: dict = field(default_factory=dict)  # no option for a dict

    with pytest.raises(TypeError, match="table"):
        add_config_arguments(argparse.ArgumentParser(), Bad)
