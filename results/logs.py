"""Published record logs <-> curve files.

modded-nanogpt publishes a text log per run (logparse.py reads every format it has used).
Importing a tree of them puts the records on the same tables and plots as one's own trials,
each run a trial whose params say where it came from (records.py); exporting a curve in
that format lets a run be compared with the records by eye or script.

An import never stops at a file it cannot read: the file is skipped with its reason and the
rest goes on (`strict` refuses instead, before anything is written). A run found twice (a
copied log, a run inside a multi-run file and again on its own) is one trial. Curves already
in the output folder are never rewritten: importing the same tree again adds nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ablate.core import states
from ablate.core.files import default_mode
from ablate.results.curves import (
    META_KEY,
    SCHEMA,
    SCHEMA_VERSION,
    VERSION_KEY,
    CurveError,
    curve_path,
    meta_of,
)
from ablate.results.errors import InputError
from ablate.results.logparse import MAX_STEPS, LogError, LogPoint, Parsed, Run, parse_runs
from ablate.results.records import Place, place_of, track_by_loss, trial_id_of

__all__ = ["MAX_STEPS", "LOG_SUFFIXES", "LogPoint", "ImportResult", "import_logs", "parse_log",
           "to_record_log", "record_line"]

PRESET = "record"
LOG_SUFFIXES = (".txt", ".log", ".out", ".stdout")
IMPORTED_BY = "ablate import-logs"


@dataclass(frozen=True)
class Skip:
    """A file (or one run of it) left out, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ImportResult:
    """What an import did: curves written, files skipped, copies merged, runs already there."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    copies: list[tuple[str, str]] = field(default_factory=list)  # (copy, the kept run's source)
    present: list[Path] = field(default_factory=list)  # the same run is already imported
    files: int = 0  # log files looked at

    def summary(self) -> str:
        runs = len(self.written)
        line = (f"imported {runs:,} run{'s' * (runs != 1)} from {self.files:,} "
                f"file{'s' * (self.files != 1)}; skipped {len(self.skipped):,}; "
                f"merged {len(self.copies):,} duplicate{'s' * (len(self.copies) != 1)}")
        if self.present:
            line += f"; {len(self.present):,} already imported"
            if not runs:
                line += " (nothing new)"
        return line


@dataclass
class _Trial:
    file: Path
    run: Run
    params: dict[str, Any]
    trial_id: str
    copies: list[str] = field(default_factory=list)


def import_logs(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
                sweep: str = "records", strict: bool = False) -> ImportResult:
    """Import every run log under `paths` (folders are searched for LOG_SUFFIXES files; a
    file given is read whatever its name) as `<out>/<sweep>/curves/<trial_id>.parquet`.

    InputError for a path that does not exist, a bad sweep name, with `strict` the first
    file that would be skipped, or when no run at all was found; in each case nothing is
    written. Otherwise see ImportResult.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", sweep) or sweep.strip(".") == "":
        raise InputError(f"--sweep: {sweep!r} is not a usable folder name")
    found = list(_log_files(paths))
    result = ImportResult(files=len(found))
    parsed = _parse_all([file for file, _ in found])
    trials: list[_Trial] = []
    for (file, root), outcome in zip(found, parsed):
        if isinstance(outcome, Skip):
            _skip(result, outcome, strict)
            continue
        place = place_of(file, root)
        several = len(outcome.runs) > 1
        for k, run in enumerate(outcome.runs):
            trials.append(_trial(file, place, run, k + 1 if several else None,
                                 outcome.hardware[k], outcome.dates[k], sweep))
    kept = _merge_copies(trials, result)
    _settle_ids(kept)
    jobs = []
    for trial in kept:
        dest = curve_path(out, sweep, trial.trial_id)
        if dest.exists():
            if _same_run(dest, trial.params["sha256"]):
                result.present.append(dest)
            else:
                name = f"{trial.file} run {trial.params['run']}" if "run" in trial.params \
                    else str(trial.file)
                _skip(result, Skip(Path(name), f"a different run is already imported as {dest}; "
                                                "refusing to overwrite it"), strict)
            continue
        jobs.append((dest, trial))
    if not jobs and not result.present:
        first = f": {result.skipped[0]}" if result.skipped else ""
        raise InputError(f"import-logs: no run imported from {len(found)} "
                         f"file{'s' * (len(found) != 1)}{first}")
    result.written = _write_all([(dest, _table(trial, sweep)) for dest, trial in jobs])
    return result


def parse_log(text: str, name: str) -> list[LogPoint]:
    """The validation points of a one-run log; InputError naming `name` if it has none, a
    bad line, or several runs (import_logs splits those)."""
    try:
        parsed = parse_runs(text.encode("utf-8", errors="replace"))
    except LogError as e:
        raise InputError(f"{name}: {e}") from None
    if len(parsed.runs) > 1:
        raise InputError(f"{name}: holds {len(parsed.runs)} runs")
    return parsed.runs[0].points


def _log_files(paths: Sequence[str | os.PathLike]) -> Iterator[tuple[Path, Path | None]]:
    """(file, the folder given that holds it, or None for a file given), each file once."""
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists() and not root.is_symlink():
            raise InputError(f"{root}: no such file or directory")
    seen: set[Path] = set()
    for root in roots:
        if root.is_dir():
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(LOG_SUFFIXES):
                        file = Path(folder, name)
                        if file.absolute() not in seen:
                            seen.add(file.absolute())
                            yield file, root
        elif root.absolute() not in seen:
            seen.add(root.absolute())
            yield root, None


def _read(file: Path) -> Parsed | Skip:
    """The runs of one file, or why it is skipped."""
    try:
        if not file.is_file():  # a FIFO would block, a device never end
            return Skip(file, "not a regular file")
        data = file.read_bytes()
    except OSError as e:
        return Skip(file, f"cannot read ({e.strerror or e})")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            return Skip(file, f"not UTF-8 (byte {e.start:,})")
    try:
        return parse_runs(data)
    except LogError as e:
        return Skip(file, str(e))


def _parse_all(files: list[Path]) -> list[Parsed | Skip]:
    # bytes.find and the Parquet writer release the GIL: two threads keep two cores busy
    if len(files) < 32:
        return [_read(f) for f in files]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(_read, files))


def _skip(result: ImportResult, skip: Skip, strict: bool) -> None:
    if strict:
        raise InputError(f"{skip} (--strict: nothing imported)")
    result.skipped.append(skip)


def _trial(file: Path, place: Place, run: Run, number: int | None, hardware: str, smi_date: str,
           sweep: str) -> _Trial:
    last = run.points[-1]
    params: dict[str, Any] = {
        "preset": PRESET, "num_iterations": run.total, "source": place.source,
        "record": place.record, "variant": place.variant,
        "date": place.date or smi_date, "track": place.track or track_by_loss(last.val_loss),
        "hardware": hardware, "sha256": run.sha256(), "timed": run.timed,
    }
    if number is not None:
        params["run"] = number
    return _Trial(file, run, params, trial_id_of(place.source, number))


def _merge_copies(trials: list[_Trial], result: ImportResult) -> list[_Trial]:
    """One trial per distinct run (the first by source path); its params name the copies."""
    groups: dict[str, list[_Trial]] = defaultdict(list)
    for trial in trials:
        groups[trial.params["sha256"]].append(trial)
    kept = []
    for group in groups.values():
        group.sort(key=lambda t: (t.params["source"], t.params.get("run", 0), str(t.file)))
        first = group[0]
        for copy in group[1:]:
            name = copy.params["source"] + (f" run {copy.params['run']}" if "run" in copy.params
                                            else "")
            first.copies.append(name)
            result.copies.append((str(copy.file), first.params["source"]))
        if first.copies:
            first.params["copies"] = first.copies
        kept.append(first)
    kept.sort(key=lambda t: (t.params["source"], t.params.get("run", 0)))
    return kept


def _settle_ids(trials: list[_Trial]) -> None:
    """Runs whose ids coincide (the same file name under two folders given, names that
    differ only in characters an id cannot hold) each get their content hash appended."""
    by_id: dict[str, list[_Trial]] = defaultdict(list)
    for trial in trials:
        by_id[trial.trial_id.lower()].append(trial)  # a case-insensitive disk is one file
    for group in by_id.values():
        if len(group) > 1:
            for trial in group:
                trial.trial_id = f"{trial.trial_id}-{trial.params['sha256'][:10]}"


def _same_run(dest: Path, sha256: str) -> bool:
    try:
        meta = meta_of(pq.read_schema(dest))
    except (pa.ArrowException, OSError):
        return False
    return meta.get("sha256") == sha256


def _table(trial: _Trial, sweep: str) -> pa.Table:
    """The trial's curve: schema-2 columns, then `step_avg_ms` and every other numeric field
    of its lines (`ema_beta`, `val_avg_loss`, ...; a name the schema has gets `log_`)."""
    points = trial.run.points
    n = len(points)
    last = points[-1]
    status = states.DIVERGED if not math.isfinite(last.val_loss) else states.COMPLETED
    params = json.dumps(trial.params, sort_keys=True)
    columns: dict[str, Any] = {name: pa.nulls(n, SCHEMA.field(name).type) for name in SCHEMA.names}
    columns.update({
        "sweep": pa.array([sweep] * n, pa.string()),
        "trial_id": pa.array([trial.trial_id] * n, pa.string()),
        "num_iterations": pa.array([trial.run.total] * n, pa.int32()),
        "step": pa.array([p.step for p in points], pa.int64()),
        "train_time_ms": pa.array([p.train_time_ms for p in points], pa.float64()),
        "val_loss": pa.array([p.val_loss for p in points], pa.float64()),
        "status": pa.array([states.RUNNING] * (n - 1) + [status], pa.string()),
        "params": pa.array([params] * n, pa.string()),
    })
    table = pa.table([columns[name] for name in SCHEMA.names], schema=SCHEMA)
    extra: dict[str, list[float | None]] = {}
    if any(p.step_avg_ms is not None for p in points):
        extra["step_avg_ms"] = [p.step_avg_ms for p in points]
    for i, point in enumerate(points):
        for key, value in point.extra:
            name = f"log_{key}" if key in SCHEMA.names or key == "step_avg_ms" else key
            extra.setdefault(name, [None] * n)[i] = value
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values, pa.float64()))
    meta = {"source": trial.params["source"], "sha256": trial.params["sha256"],
            "imported_by": IMPORTED_BY, "log_format": trial.run.log_format()}
    return table.replace_schema_metadata({
        VERSION_KEY: str(SCHEMA_VERSION).encode(), META_KEY: json.dumps(meta).encode()})


def _write_all(jobs: list[tuple[Path, pa.Table]]) -> list[Path]:
    """Write every curve beside its place, flush them all to disk with one sync (one fsync
    per file would cost more than the parsing), then link each into place: a crash leaves
    whole files or hidden temp files, and an existing file is never replaced."""
    staged: list[tuple[Path, Path]] = []
    mode = default_mode()

    def stage(job: tuple[Path, pa.Table]) -> tuple[Path, Path]:
        dest, table = job
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, write_statistics=False)  # a curve is read whole: no use
        os.chmod(tmp, mode)
        return tmp, dest

    try:
        for folder in {dest.parent for dest, _ in jobs}:
            folder.mkdir(parents=True, exist_ok=True)
        if len(jobs) < 32:
            staged = [stage(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                for done in pool.map(stage, jobs):
                    staged.append(done)
        os.sync()
        written = []
        for tmp, dest in staged:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise InputError(f"{dest}: appeared while importing; refusing to overwrite "
                                 "it") from None
            written.append(dest)
        return written
    except OSError as e:
        raise InputError(f"{e.filename or 'curves'}: cannot write ({e.strerror or e})") from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


# --- export ------------------------------------------------------------------------------

def to_record_log(table: pa.Table, log_format: dict[str, Any] | None = None,
                  source: str = "the table") -> str:
    """One trial's curve in the record log format.

    An imported curve (`log_format` from its metadata) is printed with the digits and time
    unit of its log and the log's own step_avg; any other curve with the loss's shortest
    exact decimals (at least 4) and whole ms, step_avg being the time per step so far. The
    total is the trial's num_iterations (its last step if unknown). A table of several
    trials is refused with a CurveError naming `source` (the file it was read from).
    """
    trials = set(table["trial_id"].to_pylist())
    if len(trials) > 1:  # a hand-made file: a record log is one run
        raise CurveError(f"{source}: holds {len(trials)} trials; a record log is one run's")
    names = ["step", "num_iterations", "train_time_ms", "val_loss"]
    if "step_avg_ms" in table.column_names:
        names.append("step_avg_ms")
    rows = sorted(table.select(names).to_pylist(), key=lambda r: r["step"])
    rows = [r for r in rows if r["val_loss"] is not None and r["train_time_ms"] is not None]
    if not rows:
        return ""
    total = rows[-1]["num_iterations"] or rows[-1]["step"]
    fmt = _checked_format(meta_of(table.schema).get("log_format") if log_format is None
                          else log_format)
    lines = [record_line(r["step"], total, r["val_loss"], r["train_time_ms"],
                         step_avg_ms=r.get("step_avg_ms") if fmt else None,
                         val_decimals=fmt.get("val_decimals"),
                         time_unit=fmt.get("time_unit", "ms"),
                         time_decimals=fmt.get("time_decimals", 0)) for r in rows]
    return "\n".join(lines) + "\n"


def _checked_format(value: Any) -> dict[str, Any]:
    """A curve's log_format if it is one (it comes from a file), else {}."""
    if not isinstance(value, dict):
        return {}
    digits = [value.get("val_decimals"), value.get("time_decimals")]
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 17 for d in digits):
        return {}
    if value.get("time_unit") not in ("ms", "s"):
        return {}
    return value


def record_line(step: int, total: int, val_loss: float, train_time_ms: float, *,
                step_avg_ms: float | None = None, val_decimals: int | None = 4,
                time_unit: str = "ms", time_decimals: int = 0) -> str:
    """One validation point as the record scripts print it (the trainer's log uses it too).
    `val_decimals=None`: as many decimals as the loss holds (at least 4)."""
    if val_decimals is None:
        digits = repr(float(val_loss)).partition(".")[2]
        val_decimals = max(4, len(digits)) if digits.isdigit() else 4
    avg = train_time_ms / max(step, 1) if step_avg_ms is None else step_avg_ms
    time = train_time_ms / 1000 if time_unit == "s" else train_time_ms
    return (f"step:{step}/{total} val_loss:{val_loss:.{val_decimals}f} "
            f"train_time:{time:.{time_decimals}f}{time_unit} step_avg:{avg:.2f}ms")
