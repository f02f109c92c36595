"""Config identity: which trials are runs of the same config, decided by the data.

A trial's `params` holds every field of its config. Two trials are the same config when
every field is equal except those whose role (ablate.core.fields) is replicate (the seed),
label (names, an imported log's provenance) or placement (where the curve, the shards, the
checkpoints and the weights go): fields that change neither what a run computes nor what is
measured. A field that no list foresaw (an lr swept by hand, a new model option) therefore
always tells configs apart; `--by` pools configs deliberately.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ablate.core.errors import did_you_mean
from ablate.core.fields import OUTSIDE_CONFIG
from ablate.results.errors import InputError


@dataclass(frozen=True)
class Configs:
    """Trials grouped into configs. `index` maps trial -> config; configs are sorted by
    their shown fields."""

    fields: tuple[str, ...]  # shown as columns: the fields whose value differs between configs
    fixed: dict[str, Any]  # fields with one value in every config (shown in the title)
    keys: list[dict[str, Any]]  # every field of each config (the `by` fields when pooled)
    index: np.ndarray  # trial -> config
    identity: np.ndarray  # trial -> config identity (equal to `index` unless pooled)
    by: tuple[str, ...] | None  # the fields pooled by (`--by`); None: config identity

    def __len__(self) -> int:
        return len(self.keys)

    def key_dict(self, config: int) -> dict[str, Any]:
        """The config's shown fields and their values."""
        return {f: self.keys[config].get(f) for f in self.fields}


def trial_params(info: pa.Table, parsed: Mapping[str, dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
    """Each trial's params dict (info has one row per trial); each distinct JSON parsed once
    (`parsed`: texts already parsed, as load.Loaded.params keeps them)."""
    column = info["params"]
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    combined = column.combine_chunks()
    known = parsed or {}
    each = [known[text] if text in known else parse_params(text) for text in combined.dictionary.to_pylist()]
    empty: dict[str, Any] = {}
    return [empty if i is None else each[i] for i in combined.indices.to_pylist()]


def group_configs(info: pa.Table, by: Sequence[str] | None = None,
                  axes: Sequence[str] = (), params: Sequence[dict[str, Any]] | None = None
                  ) -> Configs:
    """Configs of the trials in `info` (one row per trial, with `params`; `params`: each
    trial's params dict, if already parsed).

    Without `by`: config identity (module doc); the shown fields are the sweep's `axes`
    that vary, then any other varying field that the axes do not already determine (a
    preset's sizes follow the preset). With `by`: trials pooled by those fields (params
    keys or info columns); an unknown field is an InputError that lists the known ones.
    """
    params = trial_params(info) if params is None else params
    identity, identity_keys = _distinct(_identities(params))
    if by is None:
        first = np.unique(identity, return_index=True)[1]  # a trial of each config
        keys = [{k: params[t][k] for k in identity_keys[c][0]} for c, t in enumerate(first)]
        fields, fixed = shown_fields(keys, _field_order(params), axes)
        index = identity
    else:
        by = tuple(by)
        columns = {name: info[name].to_pylist() for name in by
                   if name in info.column_names and name != "params"}
        known = set(columns) | {k for p in params for k in p}
        unknown = [name for name in by if name not in known]
        if unknown:
            choices = sorted({k for p in params for k in p}
                             | (set(info.column_names) - {"params"}))
            raise InputError(f"--by: unknown field {', '.join(unknown)} "
                             f"(known: {', '.join(choices)}){did_you_mean(unknown[0], choices)}")
        values = [tuple((name, _hashable(p[name] if name in p else columns[name][t]))
                        for name in by) for t, p in enumerate(params)]
        index, distinct = _distinct(values)
        keys = [dict(k) for k in distinct]
        fields = tuple(f for f in by if len({_hashable(k.get(f)) for k in keys}) > 1)
        fixed = {f: keys[0][f] for f in by if f not in fields} if keys else {}
    order = sorted(range(len(keys)), key=lambda i: (
        tuple(_sortable(keys[i].get(f)) for f in fields), json.dumps(keys[i], sort_keys=True,
                                                                      default=str)))
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys))
    return Configs(fields=fields, fixed=fixed, keys=[keys[i] for i in order],
                   index=rank[index] if len(index) else index, identity=identity,
                   by=by)


def shown_fields(keys: Sequence[dict[str, Any]], order: Sequence[str],
                 axes: Sequence[str] = ()) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(fields that vary between configs, in display order; fields with one value everywhere).

    A field missing from some configs but not others varies (missing reads as None).
    """
    names = list(dict.fromkeys([*order, *(k for key in keys for k in key)]))
    values = {f: [key.get(f) for key in keys] for f in names}
    varying = [f for f in names if _varies(values[f])]
    values.update({f: [_hashable(v) for v in values[f]] for f in varying})
    fixed = {f: keys[0][f] for f in names if f not in varying and keys and f in keys[0]}
    shown_axes = [a for a in axes if a in varying]
    if not shown_axes:
        return tuple(varying), fixed
    along = list(zip(*(values[a] for a in shown_axes)))
    others = [f for f in varying if f not in shown_axes
              and not determined(along, values[f])]
    return tuple(shown_axes + others), fixed


def field_value(text: str) -> Any:
    """A value typed on the command line, as JSON if it parses (0, 0.008, true, null,
    [1, 2]), else the text itself (zero, tiny)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def same_value(value: Any, typed: str) -> bool:
    """Whether a config's field value is what the user typed (`typed` as in field_value).

    Numbers compare as numbers (0.5 = 0.50), booleans only with booleans (1 is not true),
    and anything also matches its own display text.
    """
    wanted = field_value(typed)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted \
            or str(value).lower() == typed.lower()
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return value == wanted
    return _hashable(value) == _hashable(wanted) or display(value) == typed


def display(value: Any) -> str:
    """A field value as the tables show it ("-" for a field the config does not have)."""
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _identities(params: Sequence[dict[str, Any]]) -> list[tuple[tuple[str, ...], str]]:
    """Each trial's identity: its identity field names (sorted) and their values as JSON.

    JSON text compares values as the trainer wrote them (each field with its one type) and
    treats lists, dicts and NaN alike without a Python loop over every value; the sorted
    names are worked out once per set of names (one per sweep, usually).
    """
    names_of: dict[frozenset[str], tuple[str, ...]] = {}
    encode = json.JSONEncoder(default=str).encode
    out = []
    for p in params:
        keys = frozenset(p)
        names = names_of.get(keys)
        if names is None:
            names = names_of[keys] = tuple(sorted(k for k in keys if k not in OUTSIDE_CONFIG))
        out.append((names, encode(list(map(p.__getitem__, names)))))
    return out


def _distinct(items: Sequence[Hashable]) -> tuple[np.ndarray, list[Any]]:
    """(index of each item's class, the classes in order of first appearance)."""
    position: dict[Hashable, int] = {}
    index = np.fromiter((position.setdefault(item, len(position)) for item in items),
                        dtype=np.int64, count=len(items))
    return index, list(position)


def _field_order(params: Iterable[dict[str, Any]]) -> list[str]:
    """Fields in the order trials list them (the trainer's own order), first seen first."""
    seen: dict[str, None] = {}
    last: dict[str, Any] | None = None
    for p in params:
        if p is not last:  # trials of one file share one parsed dict: look at it once
            seen.update(dict.fromkeys(p))
            last = p
    return [k for k in seen if k not in OUTSIDE_CONFIG]


def _varies(values: Sequence[Any]) -> bool:
    """More than one distinct value (lists, dicts and NaN compared as their JSON)."""
    try:
        if len(set(values)) < 2:
            return False
    except TypeError:  # a list or dict: compare as text
        pass
    return len(set(map(_hashable, values))) > 1


def determined(along: Sequence[Any], values: Sequence[Any]) -> bool:
    """Whether `values` is a function of `along` (one value per distinct `along`)."""
    seen: dict[tuple[Any, ...], Any] = {}
    return all(seen.setdefault(a, v) == v for a, v in zip(along, values))


def _hashable(value: Any) -> Hashable:
    """Lists and dicts as their JSON text; NaN as text (NaN never equals itself)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def parse_params(text: str | None) -> dict[str, Any]:
    """A `params` JSON text as a dict; {} for none, bad JSON or not an object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # load.py names such a file and skips it
        return {}
    return value if isinstance(value, dict) else {}


def _sortable(value: Any) -> tuple[int, float, str]:
    """Sort key that orders None first, then numbers, then text, without TypeErrors."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (bool, int, float)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def config_label(fields: Sequence[str], key: dict[str, Any]) -> str:
    """A config's name in tables: its shown fields as `k=v, ...` ("all" if there are none)."""
    return ", ".join(f"{f}={display(key.get(f))}" for f in fields) or "all"
