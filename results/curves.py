"""The curve file: the one contract between the trainer (writer) and results (reader).

One Parquet file per trial, one row per validation point. Pure pyarrow, so the trainer can
import it without results ever importing torch. The schema version lives in the file's
metadata; readers refuse versions they do not know.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
VERSION_KEY = b"ablate.schema_version"
META_KEY = b"ablate.trial"  # JSON of the trial's full config and provenance

STATUSES = ("running", "completed", "diverged", "failed")

CONFIG_COLUMNS = (
    "preset",
    "extra_embeddings",
    "num_iterations",
    "lambda_init",
    "token_lambdas",
    "seed",
    "workers",
)

SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("preset", pa.string()),
        ("extra_embeddings", pa.int32()),
        ("num_iterations", pa.int32()),
        ("lambda_init", pa.string()),
        ("token_lambdas", pa.bool_()),
        ("seed", pa.int64()),
        ("workers", pa.int32()),
        ("step", pa.int64()),
        ("train_time_ms", pa.float64()),
        ("val_loss", pa.float64()),
        ("train_loss", pa.float64()),  # null at step 0 (nothing trained yet)
        ("tokens_seen", pa.int64()),
        ("lr", pa.float64()),  # lr multiplier of the schedule at this step
        ("peak_mem_mb", pa.float64()),
        ("lambdas", pa.list_(pa.list_(pa.float32()))),  # [layer][residual, x00, x01, ...]
        ("status", pa.string()),  # "running" on all rows but the last
        ("params", pa.string()),  # JSON of every config field, for --by on any axis
    ]
)


class CurveError(ValueError):
    """A curve file that is missing, corrupt, or of a schema this version cannot read."""


def curve_path(storage: str | os.PathLike, sweep: str, trial_id: str) -> Path:
    """Where a trial's curve lives: <storage>/<sweep>/curves/<trial_id>.parquet."""
    return Path(storage) / sweep / "curves" / f"{trial_id}.parquet"


def to_table(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> pa.Table:
    """Rows (dicts keyed by column) -> a table with the versioned schema."""
    rows = list(rows)
    columns = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    file_meta = {VERSION_KEY: str(SCHEMA_VERSION).encode()}
    if meta is not None:
        file_meta[META_KEY] = json.dumps(meta, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(file_meta)


def write_curve(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over the target.

    A crash (or a full disk) leaves either the previous file or the new one, never half.
    """
    path = Path(path)
    table = to_table(rows, meta)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):  # disk full, read-only storage, no permission
            raise CurveError(f"{path}: cannot write the curve ({e.strerror or e}); "
                             "the previous version, if any, is intact") from None
        raise
    return path


def read_curve(path: str | os.PathLike) -> pa.Table:
    """Read one curve file, checking its schema version; CurveError names the file."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise CurveError(f"{path}: no such curve file") from None
    except (pa.ArrowException, OSError) as e:
        raise CurveError(f"{path}: not a readable Parquet file ({e})") from None
    check_schema(table.schema, path)
    return table


def check_schema(schema: pa.Schema, path: str | os.PathLike) -> None:
    meta = schema.metadata or {}
    version = meta.get(VERSION_KEY)
    if version is None:
        raise CurveError(f"{path}: not an ablate curve (no schema version in its metadata)")
    if int(version) > SCHEMA_VERSION:
        raise CurveError(f"{path}: schema version {int(version)} is newer than this ablate "
                         f"reads ({SCHEMA_VERSION}); upgrade ablate")
    missing = [f.name for f in SCHEMA if f.name not in schema.names]
    if missing:
        raise CurveError(f"{path}: missing columns {', '.join(missing)}")


def trial_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The trial metadata stored in a curve file's footer (config, provenance)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(META_KEY)
    return json.loads(raw) if raw else {}
