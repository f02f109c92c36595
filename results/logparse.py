"""One record log's bytes -> the runs it holds.

A modded-nanogpt log is the training script's source, nvidia-smi's table, then lines such as
    step:5690/5690 val_loss:2.919956 train_time:1407511ms step_avg:247.37ms
    step:2900/2900 val_loss:3.27699 train_time:1481.958s step_avg:511.02ms ema_beta:0.9
(time in ms or in s, any number of decimals, any further `key:value` fields), or, in the
oldest logs, `s:250 tel:6.3097` (a validation loss, no total and no time). Only validation
lines are data; training-step lines (no val_loss) are skipped, and so is every line of the
printed source, which sits between `=====` rules and may hold a literal step line.

Several runs may follow one another in one file: a step that does not advance starts a new
run, unless the line repeats one of the current run's lines (a batch script echoing a run's
last lines). Everything is found with bytes.find rather than a line-by-line loop: the whole
published tree is ~240 MB, and only its validation lines matter.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from dataclasses import dataclass, field

from ablate.core.errors import AblateError

MAX_STEPS = 2**31 - 1  # a curve's num_iterations is an int32
_RULE_START = b"=" * 20
_RULE = re.compile(rb"={20,}[ \t\r]*")
_SOURCE_MARK = re.compile(rb"^(?:import \w|from [\w.]+ import |def \w|class \w)", re.M)
_STEP = re.compile(r"step:(\d+)/(\d+)")
_OLD = re.compile(r"s:(\d+) tel:(\S+)")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIME = re.compile(r"(\d+(?:\.(\d*))?)(ms|s)")
_GPU_ROW = re.compile(rb"^\|\s+(\d+)\s+NVIDIA\s+([A-Za-z0-9]+)", re.M)
_GPU_LIST = re.compile(rb"^GPU (\d+): NVIDIA ([A-Za-z0-9]+)", re.M)
_SMI_DATE = re.compile(rb"^[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) [\d:]{8} (\d{4})\s*$", re.M)
SOURCE_PEEK = 4096  # a printed script shows its imports within its first lines


class LogError(AblateError):
    """A log that cannot be imported; the message says why (the caller names the file)."""


@dataclass(frozen=True)
class LogPoint:
    """One validation line. `extra` holds the line's other numeric fields, in line order."""

    step: int
    total: int
    val_loss: float
    train_time_ms: float
    step_avg_ms: float | None = None
    extra: tuple[tuple[str, float], ...] = ()


@dataclass
class Run:
    """One run of a log: its points, where its lines start, and how they were written (so an
    export prints the same digits)."""

    points: list[LogPoint] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    start: int = 0  # byte offset of the first line: finds the nvidia-smi block before it
    timed: bool = True  # False for the old `s:N tel:X` lines, which have no time
    val_decimals: int = 4
    time_unit: str = "ms"
    time_decimals: int = 0

    @property
    def total(self) -> int:
        return self.points[-1].total

    def sha256(self) -> str:
        """Of the run's validation lines: a copy of a run is the same run wherever it sits."""
        return hashlib.sha256(b"\n".join(self.lines)).hexdigest()

    def log_format(self) -> dict[str, object]:
        return {"val_decimals": self.val_decimals, "time_unit": self.time_unit,
                "time_decimals": self.time_decimals}


@dataclass(frozen=True)
class Parsed:
    """A log's runs, with the hardware and date its nvidia-smi block states (per run)."""

    runs: list[Run]
    hardware: list[str]  # per run, e.g. "8xH100"; "" where no block says
    dates: list[str]  # per run, YYYY-MM-DD from nvidia-smi's clock line; "" if none


def parse_runs(data: bytes) -> Parsed:
    """Every run in a log; LogError if it has none or a line breaks the format's rules."""
    source = _source_spans(data)
    lines = _candidate_lines(data, source)
    runs: list[Run] = []
    current: Run | None = None
    seen: set[bytes] = set()
    for offset, number, raw in lines:
        point, old = _point(raw, number)
        if point is None:
            continue
        if current is not None and _continues(current, point, old):
            current.points.append(point)
            current.lines.append(raw)
            _note_format(current, raw, old)
            seen.add(raw)
            continue
        if current is not None and raw in seen and point.step > current.points[0].step:
            continue  # an echo of this run's tail (a new run may repeat its step-0 line)
        current = Run(start=offset, timed=not old)
        _note_format(current, raw, old)
        current.points.append(point)
        current.lines.append(raw)
        seen = {raw}
        runs.append(current)
    if not runs:
        inside = any(b"val_loss:" in data[a:b] for a, b in source)
        raise LogError("no step lines" + (" (only inside the printed source)" if inside else
                                           " (step:N/M val_loss:X train_time:T ... or s:N tel:X)"))
    for run in runs:
        if not run.timed:  # no total in the old style: the last step is the budget
            last = run.points[-1].step
            run.points = [LogPoint(p.step, last, p.val_loss, 0.0) for p in run.points]
    blocks = _smi_blocks(data)
    hardware, dates = [], []
    for run in runs:
        block = next((b for b in reversed(blocks) if b[0] < run.start), blocks[0] if blocks else None)
        hardware.append(_hardware(data, block))
        dates.append(_smi_date(data, block))
    return Parsed(runs, hardware, dates)


def _continues(run: Run, point: LogPoint, old: bool) -> bool:
    last = run.points[-1]
    return old == (not run.timed) and point.total == last.total and point.step > last.step


def _candidate_lines(data: bytes, source: list[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
    """(offset, line number, line) of each line holding `val_loss:` or ` tel:`, outside the
    printed source, in file order. Line numbers are counted only for these lines."""
    starts: set[int] = set()
    for needle in (b"val_loss:", b" tel:"):
        at = data.find(needle)
        while at != -1:
            starts.add(data.rfind(b"\n", 0, at) + 1)
            at = data.find(needle, at + len(needle))
    out = []
    counted, number = 0, 1
    for start in sorted(starts):
        if any(a <= start < b for a, b in source):
            continue
        end = data.find(b"\n", start)
        end = len(data) if end == -1 else end
        number += data.count(b"\n", counted, start)
        counted = start
        out.append((start, number, data[start:end].strip()))
    return out


def _source_spans(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of printed source: from the start or a `=====` rule to the next rule, when
    the range begins like a Python file (imports, defs). Without rules there is none."""
    rules = []
    at = 0 if data.startswith(_RULE_START) else data.find(b"\n" + _RULE_START)
    while at != -1:
        start = at + (data[at:at + 1] == b"\n")
        end = data.find(b"\n", start)
        if _RULE.fullmatch(data, start, len(data) if end == -1 else end):
            rules.append(start)
        at = data.find(b"\n" + _RULE_START, start)
    if not rules:
        return []
    edges = [0, *rules, len(data)]
    spans = []
    for a, b in zip(edges, edges[1:]):
        if b > a and _SOURCE_MARK.search(data, a, min(b, a + SOURCE_PEEK)):
            spans.append((a, b))
    return spans


def _point(raw: bytes, number: int) -> tuple[LogPoint | None, bool]:
    """The line's point and whether it is the old style; (None, _) for any other line."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, False
    tokens = text.split()
    if not tokens:
        return None, False
    if tokens[0].startswith("s:"):
        match = _OLD.fullmatch(text)
        if match is None:
            return None, True
        try:
            loss = float(match[2])
        except ValueError:
            return None, True
        return LogPoint(_bounded(int(match[1]), None, number), MAX_STEPS, loss, 0.0), True
    head = _STEP.fullmatch(tokens[0])
    if head is None:
        return None, False
    fields: dict[str, str] = {}
    for token in tokens[1:]:
        key, colon, value = token.partition(":")
        if not colon or _KEY.fullmatch(key) is None:
            return None, False  # prose or code, not a log line
        fields.setdefault(key, value)
    time = _TIME.fullmatch(fields.get("train_time", ""))
    if "val_loss" not in fields or time is None:
        return None, False  # a training-step line, or no time to place the point
    try:
        loss = float(fields["val_loss"])
    except ValueError:
        return None, False
    step, total = int(head[1]), int(head[2])
    _bounded(step, total, number)
    time_ms = float(time[1]) * (1000.0 if time[3] == "s" else 1.0)
    if not math.isfinite(time_ms):
        raise LogError(f"line {number}: train_time {time[1]}{time[3]} is not a finite number")
    avg = fields.get("step_avg", "")
    extra = []
    for key, value in fields.items():
        if key not in ("val_loss", "train_time", "step_avg"):
            as_number = number_of(value)
            if as_number is not None:  # a word (handoff:keep) is no curve column
                extra.append((key, as_number))
    step_avg = number_of(avg[:-2]) if avg.endswith("ms") else None
    return LogPoint(step, total, loss, time_ms, step_avg, tuple(extra)), False


def _bounded(step: int, total: int | None, number: int) -> int:
    limit = MAX_STEPS if total is None else total
    if not 0 <= step <= limit or (total is not None and total > MAX_STEPS):
        shown = f"{step}/{total}" if total is not None else f"{step}"
        raise LogError(f"line {number}: step {shown} is not a step of a run of at most "
                       f"{MAX_STEPS:,} steps")
    return step


def number_of(text: str) -> float | None:
    """A field's value as a number (nan included: `step_avg:nanms` is a number), or None."""
    try:
        return float(text)
    except ValueError:
        return None


def _note_format(run: Run, raw: bytes, old: bool) -> None:
    """Keep the most decimals any line of the run has: the precision its numbers hold."""
    text = raw.decode("ascii")
    loss = text.split("tel:" if old else "val_loss:", 1)[1].split()[0]
    decimals = len(loss.partition(".")[2])
    if len(run.points) == 1 or decimals > run.val_decimals:
        run.val_decimals = decimals
    if not old:
        time = _TIME.fullmatch(text.split("train_time:", 1)[1].split()[0])
        if time is not None:
            run.time_unit = time[3]
            if len(run.points) == 1 or len(time[2] or "") > run.time_decimals:
                run.time_decimals = len(time[2] or "")


def _smi_blocks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each nvidia-smi output: from its header (or `nvidia-smi -L` list) on."""
    blocks = []
    for needle, span in ((b"NVIDIA-SMI", 8192), (b"\nGPU 0: NVIDIA", 2048)):
        at = data.find(needle)
        while at != -1:
            blocks.append((max(at - 200, 0), at + span))
            at = data.find(needle, at + span)
    return sorted(blocks)


def _hardware(data: bytes, block: tuple[int, int] | None) -> str:
    if block is None:
        return ""
    a, b = block
    gpus = {m[1]: m[2] for m in _GPU_ROW.finditer(data, a, b)}
    gpus = gpus or {m[1]: m[2] for m in _GPU_LIST.finditer(data, a, b)}
    if not gpus:
        return ""
    models = sorted({m.decode() for m in gpus.values()})
    return f"{len(gpus)}x{'+'.join(models)}"


_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}


def _smi_date(data: bytes, block: tuple[int, int] | None) -> str:
    if block is None:
        return ""
    match = _SMI_DATE.search(data, block[0], block[1])
    if match is None:
        return ""
    return checked_date(int(match[3]), _MONTHS.get(match[1].decode(), 0), int(match[2]))


def checked_date(year: int, month: int, day: int) -> str:
    """YYYY-MM-DD if it is a calendar date, else ''."""
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return ""
