"""The curve file: the one contract between the trainer (writer) and results (reader).

One Parquet file per trial, one row per validation point. Pure pyarrow, so the trainer can
import it without results ever importing torch. The schema version lives in the file's
metadata; readers refuse versions they do not know.

Schema 2 carries only what every run has, whatever the study: labels (sweep, trial_id,
seed), the step budget, the measurements at each validation point, and `params`, the JSON
of every config field. A study's own axes are not columns: they are keys of `params`, and
the sweep that ran the trial names them (with its target) in the file metadata under
`"sweep"`. Schema 1 files, which also had preset, extra_embeddings, lambda_init,
token_lambdas and workers as columns, are still read (see load.py).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ablate.core import states
from ablate.core.errors import AblateError
from ablate.core.files import atomic_path
from ablate.results.arrays import values

SCHEMA_VERSION = 2
VERSION_KEY = b"ablate.schema_version"
META_KEY = b"ablate.trial"  # JSON of the trial's full config and provenance
SWEEP_KEY = "sweep"  # key of META_KEY's JSON: {"axes": [field, ...], "target": float | None}

SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("seed", pa.int64()),  # null where unknown (an imported record log)
        # The run's step budget: the lr schedule's length, and the M of a record log's
        # `step:N/M`. Every run has one, so it is a column and not only a params key.
        ("num_iterations", pa.int32()),
        ("step", pa.int64()),
        ("train_time_ms", pa.float64()),
        ("val_loss", pa.float64()),
        ("train_loss", pa.float64()),  # null at step 0 (nothing trained yet)
        ("tokens_seen", pa.int64()),
        ("lr", pa.float64()),  # lr multiplier of the schedule at this step
        ("peak_mem_mb", pa.float64()),
        ("lambdas", pa.list_(pa.list_(pa.float32()))),  # [layer][residual, x00, x01, ...]
        ("status", pa.string()),  # states.CURVE: "running" on all rows but the last
        ("params", pa.string()),  # JSON of every config field: what makes a config (configs.py)
    ]
)

# Schema 1 had this study's axes as columns; readers fold them into `params`.
SCHEMA_V1_EXTRA = pa.schema(
    [
        ("preset", pa.string()),
        ("extra_embeddings", pa.int32()),
        ("lambda_init", pa.string()),
        ("token_lambdas", pa.bool_()),
        ("workers", pa.int32()),
    ]
)


class CurveError(AblateError):
    """A curve file that is missing, corrupt, or of a schema this version cannot read (its
    metadata included); the message names the file."""


def curve_path(storage: str | os.PathLike, sweep: str, trial_id: str) -> Path:
    """Where a trial's curve lives: <storage>/<sweep>/curves/<trial_id>.parquet."""
    return Path(storage) / sweep / "curves" / f"{trial_id}.parquet"


def to_table(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> pa.Table:
    """Rows (dicts keyed by column) -> a table with the versioned schema.

    Only the schema's columns are taken from each row; other keys (a writer's own fields,
    already in `params`) are ignored. `meta["sweep"]`, if given, is checked (check_sweep_meta).
    """
    rows = list(rows)
    columns = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    file_meta = {VERSION_KEY: str(SCHEMA_VERSION).encode()}
    if meta is not None:
        if meta.get(SWEEP_KEY) is not None:
            check_sweep_meta(meta[SWEEP_KEY])
        file_meta[META_KEY] = json.dumps(meta, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(file_meta)


def check_sweep_meta(value: Any, where: str = "meta") -> dict[str, Any]:
    """The sweep's part of a curve's metadata, checked; CurveError names the bad key.

    {"axes": ["extra_embeddings", ...], "target": 3.28 or None} and optionally
    "baseline": {field: value, ...}, the config the others are compared with.
    """
    if not isinstance(value, Mapping):
        raise CurveError(f"{where}.sweep: must be a mapping, not {type(value).__name__}")
    unknown = sorted(set(value) - {"axes", "target", "baseline"})
    if unknown:
        raise CurveError(f"{where}.sweep.{unknown[0]}: unknown key (axes, target, baseline)")
    axes = value.get("axes", [])
    if not isinstance(axes, (list, tuple)) or not all(isinstance(a, str) and a for a in axes):
        raise CurveError(f"{where}.sweep.axes: must be a list of field names, not {axes!r}")
    target = value.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not math.isfinite(target)):
        raise CurveError(f"{where}.sweep.target: must be a finite number or null, not {target!r}")
    baseline = value.get("baseline")
    if baseline is not None and (not isinstance(baseline, Mapping) or not baseline
                                 or not all(isinstance(k, str) for k in baseline)):
        raise CurveError(f"{where}.sweep.baseline: must map field names to values, "
                         f"not {baseline!r}")
    out: dict[str, Any] = {"axes": list(axes),
                           "target": None if target is None else float(target)}
    if baseline is not None:
        out["baseline"] = dict(baseline)
    return out


def write_curve(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write atomically (core/files.py): a crash or a full disk leaves the previous file
    or the new one, never half. `meta` (JSON-able) goes into the file metadata; see
    check_sweep_meta for its "sweep" key."""
    path = Path(path)
    table = to_table(rows, meta)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # Python's OSError: errno words
            pq.write_table(table, f)
    except OSError as e:  # disk full, read-only storage, no permission
        raise CurveError(f"{path}: cannot write the curve ({e.strerror or e}); "
                         "the previous version, if any, is intact") from None
    return path


def read_curve(path: str | os.PathLike) -> pa.Table:
    """Read one curve file as written, checking its schema version; CurveError names the file."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise CurveError(f"{path}: no such curve file") from None
    except (pa.ArrowException, OSError) as e:
        raise CurveError(f"{path}: not a readable Parquet file ({e})") from None
    check_schema(table.schema, path)
    check_axes(table, path)
    return table


def check_axes(table: pa.Table, path: str | os.PathLike) -> None:
    """Step and training time are the axes of every table and plot: a null, negative or
    non-finite one would put points off the chart or make the fastest run take no time."""
    for name in ("step", "train_time_ms"):
        column = table[name]
        if column.null_count:
            raise CurveError(f"{path}: {name} is null on {column.null_count} row(s)")
        if all(_in_range(chunk) for chunk in column.chunks):
            continue  # the usual case, told by a min and a max: no temporary column
        # pyarrow.compute makes its functions at import: the checker cannot see them
        ok = pc.and_(pc.is_finite(column), pc.greater_equal(column, 0))  # pyright: ignore[reportAttributeAccessIssue]
        bad = pc.sum(pc.invert(ok)).as_py()  # pyright: ignore[reportAttributeAccessIssue]
        if bad:
            raise CurveError(f"{path}: {name} is negative or not finite on {bad} row(s)")


def _in_range(chunk: pa.Array) -> bool:
    """Whether every value of a numeric chunk without nulls is finite and at least 0 (a NaN
    makes min() NaN, which fails the comparison); False for other types (checked the slow way)."""
    if not (pa.types.is_integer(chunk.type) or pa.types.is_floating(chunk.type)):
        return False
    if len(chunk) == 0:
        return True
    numbers = values(chunk)
    return bool(numbers.min() >= 0 and numbers.max() < math.inf)


def schema_version(schema: pa.Schema, path: str | os.PathLike) -> int:
    """The file's schema version; CurveError if it has none or is newer than this ablate."""
    version = (schema.metadata or {}).get(VERSION_KEY)
    if version is None:
        raise CurveError(f"{path}: not an ablate curve (no schema version in its metadata)")
    try:
        number = int(version)
    except ValueError:
        raise CurveError(f"{path}: schema version {version[:20]!r} is not a number") from None
    if number > SCHEMA_VERSION:
        raise CurveError(f"{path}: schema version {number} is newer than this ablate "
                         f"reads ({SCHEMA_VERSION}); upgrade ablate")
    return number


def check_schema(schema: pa.Schema, path: str | os.PathLike) -> int:
    """Check the version and the columns it promises; returns the version."""
    version = schema_version(schema, path)
    wanted = list(SCHEMA.names) + (SCHEMA_V1_EXTRA.names if version < 2 else [])
    missing = [name for name in wanted if name not in schema.names]
    if missing:
        raise CurveError(f"{path}: missing columns {', '.join(missing)}")
    return version


def final_point(table: pa.Table) -> dict[str, Any] | None:
    """A curve's final point: its row at the highest step (the later row of two at one step);
    None for an empty curve. The trainer writes rows in step order, so this is its last row,
    but a curve written by hand or merged need not be."""
    if not table.num_rows:
        return None
    last = table.num_rows - 1
    if "step" in table.column_names and not table["step"].null_count:
        steps = table["step"].to_numpy()
        last -= int(steps[::-1].argmax())
    return table.slice(last, 1).to_pylist()[0]


def final_loss(point: Mapping[str, Any]) -> float | None:
    """A finished run's final val loss, from its final point (a curve row, or a trial's last
    report, which has the same keys): infinite if it diverged (a completed run's non-finite
    loss too), its val loss if it completed its step budget, None if it has not finished
    (running, failed, stopped early)."""
    status, loss = point.get("status"), point.get("val_loss")
    if status == states.DIVERGED:
        return math.inf
    if status == states.COMPLETED and loss is not None and point.get("step") == point.get("num_iterations"):
        return float(loss) if math.isfinite(loss) else math.inf
    return None


def ended(point: Mapping[str, Any] | None) -> bool:
    """Whether a curve has ended for good (completed or diverged): its trial never trains again."""
    return point is not None and point.get("status") in states.FINAL_CURVE


def trial_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The trial metadata stored in a curve file's footer (config, provenance)."""
    return meta_of(pq.read_schema(path))


def meta_of(schema: pa.Schema) -> dict[str, Any]:
    """The trial metadata of a file's schema; {} if it has none or it is not JSON."""
    raw = (schema.metadata or {}).get(META_KEY)
    try:
        value = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
