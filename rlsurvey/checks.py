"""Range checks for the numbers of the trainers' config dataclasses.

Every trainer config's `__post_init__` calls `check_fields(self, LIMITS)` (GRPOConfig through its
`validate`, which its trainer runs again for a config changed after it was made), where LIMITS maps a field
name to its `Limit`, or to the same written short: ">0", ">=0", "int>=1", "(0,1]", "[0,0.5)". Whatever
LIMITS says, every `float` field (also inside `X | None` and tuples of floats) must be finite: NaN or an
infinity in a step size, a coefficient or a clip range trains nothing useful and says nothing, since a
comparison with NaN is always False. A bad value raises `FieldError`, a ValueError that records the field's
name, so the command line can name the option (`--learning-rate`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass

__all__ = [
    "COUNT",
    "FRACTION",
    "NON_NEGATIVE",
    "NON_NEGATIVE_INT",
    "POSITIVE",
    "PROBABILITY",
    "FieldError",
    "Limit",
    "check_fields",
]


class FieldError(ValueError):
    """A config field holds a value outside its range; `field` is the field's name."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Limit:
    """Allowed values: numbers between low and high (each bound open or closed), ints only when `integer`."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def allows(self, x) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if self.integer and not isinstance(x, int):
            return False
        if isinstance(x, float) and not math.isfinite(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def describe(self) -> str:
        kind = "an int" if self.integer else "a finite number"
        if self.integer and self.low == 1 and not self.low_open and self.high == math.inf:
            return "a positive int"
        if self.high == math.inf:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.low == -math.inf:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{'an int' if self.integer else 'a number'} in {left}{self.low:g}, {self.high:g}{right}"

    @staticmethod
    @functools.cache
    def parse(text: str) -> Limit:
        """The Limit that ">0", ">=0", "<1", "int>=1", "(0,1]" or "[0,1)" writes."""
        t = text.replace(" ", "")
        integer = t.startswith("int")
        t = t.removeprefix("int")
        if t[:1] in "([" and t[-1:] in ")]":
            low, high = (float(x) for x in t[1:-1].split(","))
            return Limit(low, high, t[0] == "(", t[-1] == ")", integer)
        for op in (">=", "<=", ">", "<"):
            if t.startswith(op):
                x = float(t[len(op) :])
                x = int(x) if integer else x
                if op[0] == ">":
                    return Limit(low=x, low_open=op == ">", integer=integer)
                return Limit(high=x, high_open=op == "<", integer=integer)
        raise ValueError(f"not a limit: {text!r}")


POSITIVE = Limit(0.0, low_open=True)  # a step size, a clip range, a temperature
NON_NEGATIVE = Limit(0.0)  # a coefficient that 0 switches off
PROBABILITY = Limit(0.0, 1.0)  # gamma, lambda
FRACTION = Limit(0.0, 1.0, high_open=True)  # a moment-decay rate such as Adam's betas
COUNT = Limit(1, integer=True)  # a batch size, a number of steps: 0 is meaningless
NON_NEGATIVE_INT = Limit(0, integer=True)  # 0 means "off" (top_k, warmup_steps)


@functools.cache
def _optional(cls) -> frozenset[str]:
    """The fields whose type admits None."""
    return frozenset(
        name for name, tp in typing.get_type_hints(cls).items() if type(None) in typing.get_args(tp)
    )


@functools.cache
def _float_fields(cls) -> dict[str, bool]:
    """{name: is a tuple} of the fields whose type is float, `float | None` or a tuple of floats."""
    out = {}
    for name, tp in typing.get_type_hints(cls).items():
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if typing.get_origin(tp) is tuple and args and all(a in (float, Ellipsis) for a in args):
            out[name] = True
        elif float in args and len(args) == 1:
            out[name] = False
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in out.items() if k in names}


def _values(name: str, value, is_tuple: bool):
    if is_tuple and isinstance(value, (tuple, list)):
        return [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [(name, value)]


def check_fields(config, limits: dict[str, Limit | str]) -> None:
    """Raise FieldError for the first field of `config` outside its limit in `limits` (None only where the
    field's type is `X | None`), or for any float field that is not finite. Limits of names that are not
    fields of `config` are ignored."""
    floats, optional = _float_fields(type(config)), _optional(type(config))
    names = {f.name for f in dataclasses.fields(config)}  # a limit of a field the config lacks is skipped
    limits = {k: Limit.parse(v) if isinstance(v, str) else v for k, v in limits.items() if k in names}
    for name in dict.fromkeys([*floats, *limits]):
        value = getattr(config, name)
        if value is None:
            if name in optional:
                continue
            want = limits[name].describe() if name in limits else "a finite number"
            raise FieldError(name, f"{name} must be {want}, got None")
        for label, v in _values(name, value, floats.get(name, False)):
            limit = limits.get(name)
            if limit is not None and not limit.allows(v):
                raise FieldError(name, f"{label} must be {limit.describe()}, got {v!r}")
            if limit is None and isinstance(v, float) and not math.isfinite(v):
                raise FieldError(name, f"{label} must be a finite number, got {v!r}")
