"""Load every curve under one or more storage roots into one pyarrow Table.

A sweep's storage is many small files written by different trials, some of which may be
half-copied, foreign, or from a newer ablate. A bad file found while walking a directory is
reported as a Problem and skipped, never silently dropped; a file named directly by the user
is an error instead, because they asked for exactly that file.

Every file is read into the current schema: a schema-1 file's config columns (preset,
extra_embeddings, ...) are folded into its `params`, where schema 2 keeps them. Besides the
rows, each file's sweep metadata (axes, target) and each trial's file are kept, so that a
report can default to the sweep's own axes and name the files behind a warning.

A file must be what its place says it is: in a `curves/` folder, `<trial_id>.parquet` holds
that trial's rows and no other's, and where the sweep's ledger (`<sweep>/trials.json`)
lists the trial, its params agree with the ledger's config. A curve copied over another
trial's is otherwise read as that trial, and the real trial silently disappears. A file
whose rows hold several trials and whose name is no trial's (a combined export, a schema-1
part file) is read as it is. A JSON field (params, the footer's metadata) that cannot be
parsed makes its file unreadable too: that file is named and skipped, not the whole report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:  # ParquetFile's own reader: it alone takes a memory pool (private: a later pyarrow may move it)
    from pyarrow._parquet import ParquetReader
except ImportError:  # pragma: no cover - then ParquetFile decodes, into Arrow's default pool
    ParquetReader = None

from ablate.results.configs import parse_params
from ablate.results.curves import (
    META_KEY,
    SCHEMA,
    SCHEMA_V1_EXTRA,
    SWEEP_KEY,
    CurveError,
    check_axes,
    check_schema,
    check_sweep_meta,
)
from ablate.results.errors import InputError

# Strings repeat on every row of a trial (sweep, trial_id, params, ...): keeping them
# dictionary-encoded is what lets ten million rows fit in memory.
_STRINGS = [f.name for f in SCHEMA if pa.types.is_string(f.type)]
LOAD_SCHEMA = pa.schema(
    [pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in _STRINGS else f
     for f in SCHEMA]
)
# Read from every file whatever columns are asked for: a file is checked on these (its
# trials and their params against its place, its step and time axes).
CHECKED = ("sweep", "trial_id", "step", "train_time_ms", "params")


@dataclass(frozen=True)
class Problem:
    """A curve file that was skipped, and why (the message names the file)."""

    path: Path
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Loaded:
    """Every readable row, the files they came from, and the files that were skipped."""

    table: pa.Table
    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sweeps: dict[Path, dict[str, Any]] = field(default_factory=dict)  # file -> its sweep meta
    trial_files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (sweep, id) -> file
    warnings: list[str] = field(default_factory=list)  # read, but something in it was ignored
    # each distinct `params` text, parsed (a dict; {} if not an object): parsed once, here
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CurveFile:
    """One file as read: its rows (LOAD_SCHEMA) and its sweep metadata (None if none)."""

    table: pa.Table
    sweep: dict[str, Any] | None
    warning: str | None = None  # e.g. malformed sweep metadata, ignored
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # text -> parsed


def find_curves(roots: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(files named directly, files found under directories), each sorted and deduplicated.

    A directory contributes every `**/curves/*.parquet` below it (the storage layout
    `<storage>/<sweep>/curves/<trial>.parquet`), or its own `*.parquet` if it is a `curves`
    folder itself. A root that does not exist is an InputError.
    """
    direct: dict[Path, Path] = {}
    found: dict[Path, Path] = {}
    for root in map(Path, roots):
        if root.is_file():
            direct.setdefault(root.resolve(), root)
        elif root.is_dir():
            paths = list(root.glob("**/curves/*.parquet"))
            if root.name == "curves":
                paths += root.glob("*.parquet")
            for path in paths:
                if path.is_file():
                    found.setdefault(path.resolve(), path)
        else:
            raise InputError(f"{root}: no such file or directory")
    found = {k: v for k, v in found.items() if k not in direct}
    return sorted(direct.values()), sorted(found.values())


def read_file(path: Path, lambdas: bool = True, ledgers: Ledgers | None = None,
              columns: Sequence[str] | None = None) -> CurveFile:
    """One curve file in the current schema, with its sweep metadata; CurveError names it.

    Without `lambdas` that column is not read (a nested list per row: the slowest column
    to decode, and only the lambda plots need it). `columns`, if given, are the only ones
    read besides those every file is checked on (CHECKED; `lambdas` then does not apply).
    A file that is not the trial its place says (module doc) is a CurveError too; `ledgers`
    caches the sweeps' ledgers.
    """
    schema = _schema(lambdas, columns)
    try:
        footer = pq.ParquetFile(path)
        version = check_schema(footer.schema_arrow, path)
        legacy = SCHEMA_V1_EXTRA.names if version < 2 else []
        table = _decode(path, footer, schema.names + legacy)
    except FileNotFoundError:
        raise CurveError(f"{path}: no such curve file") from None
    except (pa.ArrowException, OSError) as e:
        raise CurveError(f"{path}: not a readable Parquet file ({_one_line(e)})") from None
    meta = _json(path, "its metadata", (footer.schema_arrow.metadata or {}).get(META_KEY))
    params = {text: _json(path, "params", text) for text in _distinct_texts(table["params"])}
    try:
        if legacy:
            table = _fold_legacy(table)
            params = {text: json.loads(text) for text in _distinct_texts(table["params"])}
        table = table.replace_schema_metadata(None).cast(schema)
    except (pa.ArrowException, ValueError) as e:
        raise CurveError(f"{path}: columns of unexpected types ({_one_line(e)})") from None
    check_axes(table, path)
    params = {text: value if isinstance(value, dict) else {} for text, value in params.items()
              if text}
    (ledgers if ledgers is not None else Ledgers()).check(path, table, params)
    sweep, warning = None, None
    raw = meta.get(SWEEP_KEY) if isinstance(meta, dict) else None
    if raw is not None:
        try:
            sweep = check_sweep_meta(raw, where=f"{path}: meta")
        except ValueError as e:
            warning = f"{e}; ignored"
    return CurveFile(table, sweep, warning, params)


def _decode(path: Path, footer: pq.ParquetFile, names: list[str]) -> pa.Table:
    """The named columns of a curve file, in that order, decoded on this thread into
    READ_POOL (files are read in parallel already: Arrow's own threads on top of those
    cost several times the decoding on a busy machine)."""
    if ParquetReader is None:
        return footer.read(columns=names, use_threads=False)
    paths = footer.reader.column_paths  # a nested column (lambdas) is several leaves
    leaves = [i for name in names for i, leaf in enumerate(paths) if leaf[0] == name]
    reader = ParquetReader(memory_pool=READ_POOL)
    try:
        reader.open(str(path), read_dictionary=_STRINGS, metadata=footer.metadata)
        return reader.read_all(column_indices=leaves, use_threads=False)
    finally:
        reader.close()


def _read_pool() -> pa.MemoryPool:
    """jemalloc (else the system's malloc) rather than Arrow's default mimalloc, which
    backs its memory with transparent huge pages: decoding ten million rows then took 1.6x
    the table's size resident and twice the CPU time (page faults), on 2 cores."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return pa.system_memory_pool()


READ_POOL = _read_pool()


def _json(path: Path, what: str, text: str | bytes | None) -> Any:
    """A JSON field of a curve file, parsed; CurveError naming the file if it cannot be
    (invalid, or nested too deeply for the parser). None for a field that is not there."""
    if not text:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        raise CurveError(f"{path}: {what} is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CurveError(f"{path}: {what} is not valid JSON ({_one_line(e)})") from None


def _distinct_texts(column: pa.ChunkedArray) -> list[str]:
    """The distinct values of a string column (read dictionary-encoded: one per trial)."""
    if pa.types.is_dictionary(column.type):
        return [t for chunk in column.chunks for t in chunk.dictionary.to_pylist()]
    return pc.unique(column).to_pylist()  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import


class Ledgers:
    """The sweeps' ledgers (`<sweep>/trials.json`: {trial_id: {"state", "config": {axis:
    value, "seed": n}}}), each read once, and the check of a curve against its place.

    A ledger that cannot be read checks nothing (`ablate status` names it): the name rule
    still holds. A trial the ledger does not list yet is not foreign: the driver writes the
    ledger up to a second after the curve.
    """

    def __init__(self) -> None:
        self.read: dict[Path, dict[str, Any]] = {}

    def check(self, path: Path, table: pa.Table, params: dict[str, dict[str, Any]]) -> None:
        """CurveError "foreign curve: ..." if the file is not the trial its place says
        (`params`: the file's params texts, parsed)."""
        if path.parent.name != "curves":  # only the storage layout promises a name
            return
        name = path.name.removesuffix(".parquet")
        ids = [str(t) for t in _distinct_texts(table["trial_id"])]
        ledger = self.of(path.parent.parent)
        if len(ids) == 1 and ids[0] != name:
            raise CurveError(f"{path}: foreign curve: its rows say trial {ids[0]}")
        if len(ids) > 1 and (name in ids or name in ledger):
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            raise CurveError(f"{path}: foreign curve: its rows say trials {shown} "
                             f"(a trial's file holds that trial only)")
        entry = ledger.get(name)
        config = entry.get("config") if isinstance(entry, dict) else None
        if len(ids) != 1 or not isinstance(config, dict):
            return
        for parsed in params.values():
            for key, wanted in config.items():
                if wanted is None or key not in parsed:
                    continue
                if not _agree(parsed[key], wanted):
                    raise CurveError(
                        f"{path}: foreign curve: its params say {key}={parsed[key]!r}, "
                        f"{path.parent.parent / 'trials.json'} says {wanted!r} for trial {name}")

    def of(self, folder: Path) -> dict[str, Any]:
        """A sweep folder's ledger; {} if there is none or it cannot be read."""
        ledger = self.read.get(folder)
        if ledger is None:
            ledger = self.read[folder] = _read_ledger(folder / "trials.json")
        return ledger


def _agree(value: Any, wanted: Any) -> bool:
    """Equal as JSON values: numbers as numbers (1 = 1.0), booleans only with booleans."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return value == wanted
    return json.dumps(value, sort_keys=True) == json.dumps(wanted, sort_keys=True)


def _read_ledger(path: Path) -> dict[str, Any]:
    if not path.is_file():  # none, or a FIFO or device planted in its place
        return {}
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _fold_legacy(table: pa.Table) -> pa.Table:
    """A schema-1 table with its config columns moved into `params` (a key already in
    `params` wins: it is the trainer's own record). Each distinct combination is merged once."""
    names = ["params", *SCHEMA_V1_EXTRA.names]
    merged: dict[tuple[Any, ...], str] = {}
    values = []
    for combo in zip(*(table[n].to_pylist() for n in names)):
        text = merged.get(combo)
        if text is None:
            params = parse_params(combo[0])
            for key, value in zip(SCHEMA_V1_EXTRA.names, combo[1:]):
                if value is not None:
                    params.setdefault(key, value)
            text = merged[combo] = json.dumps(params, sort_keys=True)
        values.append(text)
    table = table.drop_columns(SCHEMA_V1_EXTRA.names)
    column = pc.dictionary_encode(pa.array(values, pa.string()))  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    return table.set_column(table.column_names.index("params"), "params", column)


def load_curves(roots: Sequence[str | os.PathLike], lambdas: bool = True,
                threads: int | None = None, columns: Sequence[str] | None = None) -> Loaded:
    """Read every curve under `roots`; problems are returned, not raised (see module doc).

    A trial (sweep, trial_id) found in a second file (e.g. a copied storage passed twice)
    is a problem too: its rows would otherwise be counted twice. `columns`: read only these
    and CHECKED (a report without plots needs a third of the bytes decoded; see read_file).
    """
    schema = _schema(lambdas, columns)  # an unknown column fails here, before any file
    direct, found = find_curves(roots)
    ledgers = Ledgers()
    # a file the user named fails fast, naming it; files found in folders are read in parallel
    named: list[CurveFile | CurveError] = [read_file(path, lambdas, ledgers, columns)
                                           for path in direct]
    paths = direct + found
    with ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool:
        results = named + list(pool.map(lambda path: _try_read(path, lambdas, ledgers, columns),
                                        found))

    tables: list[pa.Table] = []
    files: list[Path] = []
    problems: list[Problem] = []
    sweeps: dict[Path, dict[str, Any]] = {}
    warnings: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[Any, Any], Path] = {}
    for path, result in zip(paths, results):
        if isinstance(result, CurveError):
            problems.append(Problem(path, str(result)))
            continue
        if result.table.num_rows == 0:
            problems.append(Problem(path, f"{path}: no rows"))
            continue
        trials = _trial_keys(result.table)
        clash = next((t for t in trials if t in seen), None)
        if clash is not None:
            problems.append(Problem(path, f"{path}: trial {clash[0]}/{clash[1]} is already "
                                          f"loaded from {seen[clash]}; skipped"))
            continue
        seen.update(dict.fromkeys(trials, path))
        tables.append(result.table)
        files.append(path)
        if result.sweep is not None:
            sweeps[path] = result.sweep
        if result.warning is not None:
            warnings.append(result.warning)
        params.update(result.params)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return Loaded(table, files, problems, sweeps, seen, warnings, params)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _schema(lambdas: bool, columns: Sequence[str] | None = None) -> pa.Schema:
    """The columns a load keeps, in LOAD_SCHEMA's order."""
    if columns is None:
        return LOAD_SCHEMA if lambdas else LOAD_SCHEMA.remove(LOAD_SCHEMA.get_field_index("lambdas"))
    unknown = [name for name in columns if name not in LOAD_SCHEMA.names]
    if unknown:
        raise ValueError(f"columns: {', '.join(unknown)} not in the curve schema "
                         f"({', '.join(LOAD_SCHEMA.names)})")
    wanted = {*columns, *CHECKED}
    return pa.schema([f for f in LOAD_SCHEMA if f.name in wanted])


def _try_read(path: Path, lambdas: bool, ledgers: Ledgers,
              columns: Sequence[str] | None) -> CurveFile | CurveError:
    try:
        return read_file(path, lambdas, ledgers, columns)
    except CurveError as e:
        return e


def _trial_keys(table: pa.Table) -> list[tuple[Any, Any]]:
    """The (sweep, trial_id) pairs in a file: usually one sweep, so no pairing is needed."""
    sweeps = pc.unique(table["sweep"]).to_pylist()  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    if len(sweeps) == 1:
        return [(sweeps[0], t) for t in pc.unique(table["trial_id"]).to_pylist()]  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute makes it at import
    pairs = table.select(["sweep", "trial_id"]).group_by(["sweep", "trial_id"]).aggregate([])
    return list(zip(pairs["sweep"].to_pylist(), pairs["trial_id"].to_pylist()))
