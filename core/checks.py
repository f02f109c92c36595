"""Rules declared once, on the dataclass a table fills.

A field's type hint and its `metadata` (see `checked`) say what a raw table (a TOML section,
a saved JSON spec) may hold for it; `check_table` refuses whatever does not fit, with one
line naming the field, and hands back the values ready for the dataclass. Rules between
fields (a worker needs a CPU or a GPU) stay with the caller, as plain steps after it.

Light on purpose: no pydantic (a CLI's `--help` imports this and must answer in well under a
second, and each refusal keeps its own words). It imports nothing of ours but core.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any, Literal, NoReturn, TypeGuard, cast

from ablate.core.errors import did_you_mean

Fail = Callable[[str, str], NoReturn]  # fail(field, why) raises the caller's own error
_KIND_NAMES = {float: "int or float", tuple: "list", list: "list"}  # a float may be given as an int


def checked(default: Any = MISSING, **rules: Any) -> Any:
    """A dataclass field (required without `default`) whose metadata holds its rules:

    range=(lo, hi)       inclusive bounds, None for an open end ('must be in 1..100,000')
    above=lo, below=hi   strict bounds ('must be > 1', 'must be in [0, 1)')
    unit="seconds"       said before the bound ('must be seconds in 1..604,800')
    why="a week"         said after it, in parentheses
    check=fn             fn(value) -> why the value is refused, or None: a rule beyond bounds
    missing="..."        why a required field must be given ('missing (every sweep needs a name)')
    accepts=(int, list)  the raw types, where the table's differ from the built field's
    """
    return field(default=default, metadata=rules)


@functools.cache
def table_fields(cls: type) -> dict[str, tuple[Field, Any]]:
    """The keys a table of `cls` may hold, in declaration order, each with its field and type
    hint: every init field but those that are a table of their own (metadata `section`) or
    come from elsewhere (metadata `internal`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in fields(cls)
            if f.init and "section" not in f.metadata and not f.metadata.get("internal")}


def check_table(table: Mapping[str, Any], cls: type, where: str, fail: Fail) -> dict[str, Any]:
    """`table`'s values checked against `cls`'s fields, ints made floats where a float is due;
    an unknown key, a missing required one or a value that breaks its field's type or rules
    -> fail(f"{where}.{key}", why)."""
    declared = table_fields(cls)
    for key in table:
        if key not in declared:
            fail(f"{where}.{key}", unknown_key(str(key), declared))
    values = {}
    for name, (spec, hint) in declared.items():
        if name in table:
            values[name] = check_value(table[name], hint, spec.metadata, f"{where}.{name}", fail)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            fail(f"{where}.{name}", _missing(hint, spec.metadata))
    return values


def unknown_key(key: str, expected: Iterable[str]) -> str:
    expected = list(expected)
    return f"unknown key (expected one of {', '.join(expected)}){did_you_mean(key, expected)}"


def check_value(value: Any, hint: Any, rules: Mapping[str, Any], where: str, fail: Fail) -> Any:
    """One value against its type hint (or `accepts`), then its bounds and `check`."""
    why = type_error(value, rules.get("accepts", hint))
    if why is None and _is_number(value):
        why = bound_error(value, rules)
    if why is None and value is not None and "check" in rules:
        why = rules["check"](value)
    if why is not None:
        fail(where, why)
    return float(value) if _is_number(value) and float in _arms(hint) else value


def type_error(value: Any, hint: Any) -> str | None:
    """Why `value` is not of `hint` (a type, a tuple of types, X | None, a Literal of choices),
    or None. A bool is no number, an int is a float, a list is a tuple."""
    arms = _arms(hint)
    if value is None and type(None) in arms:
        return None
    arms = [arm for arm in arms if arm is not type(None)]
    choices = [c for arm in arms if typing.get_origin(arm) is Literal for c in typing.get_args(arm)]
    if choices:
        if any(type(value) is type(c) and value == c for c in choices):
            return None
        near = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
        return f"must be {either(choices)}, got {value!r}{near}"
    kinds = [typing.get_origin(arm) or arm for arm in arms]
    if any(_fits(value, kind) for kind in kinds):
        return None
    names = " or ".join(dict.fromkeys(_KIND_NAMES.get(k, getattr(k, "__name__", str(k)))
                                      for k in kinds if not (k is int and float in kinds)))
    return f"must be {names}, got {type(value).__name__} {value!r}"


def bound_error(value: float, rules: Mapping[str, Any]) -> str | None:
    """Why a number breaks its `range`, `above`, `below` (NaN and infinity break every bound),
    or None."""
    lo, hi = rules.get("range", (None, None))
    above, below = rules.get("above"), rules.get("below")
    if math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi) \
            and (above is None or value > above) and (below is None or value < below):
        return None
    if (lo, hi, above, below) == (None, None, None, None):
        return f"must be a finite number, got {value}"
    return f"must be {bound_phrase(rules)}, got {value}"


def bound_phrase(rules: Mapping[str, Any]) -> str:
    """The bound in words: 'in 0..100', '>= 1', '> 0', 'in (0, 1]', with `unit` and `why`."""
    lo, hi = rules.get("range", (None, None))
    above, below = rules.get("above"), rules.get("below")
    low = f">= {number(lo)}" if lo is not None else f"> {number(above)}" if above is not None else ""
    high = f"<= {number(hi)}" if hi is not None else f"< {number(below)}" if below is not None else ""
    if lo is not None and hi is not None:
        text = f"in {number(lo)}..{number(hi)}"
    elif low and high:  # an interval with an open end (lo or above, hi or below: each end is set)
        left = f"[{number(lo)}" if lo is not None else f"({number(cast(float, above))}"
        right = f"{number(hi)}]" if hi is not None else f"{number(cast(float, below))})"
        text = f"in {left}, {right}"
    else:
        text = low or high
    unit = f"{rules['unit']} " if "unit" in rules else ""
    why = f" ({rules['why']})" if "why" in rules else ""
    return f"{unit}{text}{why}"


def number(value: float) -> str:
    """A bound as people read it: 1000; 100,000; 2^63-1 for the top of a 64-bit range."""
    if isinstance(value, int) and value >= 2**31 - 1 and (value + 1).bit_count() == 1:
        return f"2^{(value + 1).bit_length() - 1}-1"
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def either(choices: Iterable[Any]) -> str:
    """'a' or 'b'; 'a', 'b' or 'c'."""
    said = [repr(c) for c in choices]
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"


def _missing(hint: Any, rules: Mapping[str, Any]) -> str:
    if "missing" in rules:
        return f"missing ({rules['missing']})"
    choices = [c for arm in _arms(hint) if typing.get_origin(arm) is Literal for c in typing.get_args(arm)]
    return f"must be {either(choices)}, got nothing" if choices else "missing"


def _arms(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, tuple):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind in (int, float):
        return _is_number(value) and (kind is float or isinstance(value, int))
    if kind in (tuple, list):
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)
