"""`ablate status`: a sweep's trials read from storage, by a process that runs nothing.

It reads only what ablate itself writes: the driver's trials.json (each trial's state and
config, sweeps/ledger.py), the curves (each trial's last step and val loss, written at
every validation point) and whether a driver holds the sweep's lock (sweeps/control.py).
Tune's own saved state is never read (it holds pickles).
"""

from __future__ import annotations

from typing import Any

from ablate.core import states
from ablate.core.errors import printable
from ablate.core.fields import coordinates_of
from ablate.sweeps.control import driver_running
from ablate.sweeps.spec import step_budget
from ablate.sweeps.storage import curve_files, join, last_row, trial_states


def sweep_status(folder: str, axes: list[str]) -> list[dict[str, Any]]:
    """Every trial the driver has recorded, and every curve: state, config, last step and
    val loss. A curve newer than trials.json (which may lag by a second) has the last word
    on a trial the driver last saw starting or running, or has not written down yet; with
    no driver holding the sweep's lock, a trial it saw running was interrupted."""
    files = curve_files(folder)
    rows = []
    orphaned = driver_running(folder) is False  # trials.json can lag a driver that died
    for trial_id, entry in trial_states(folder).items():
        has_curve = files.pop(trial_id, None) is not None
        last = _curve_fields(join(folder, "curves", f"{trial_id}.parquet")) if has_curve else {}
        last.setdefault("num_iterations", entry.get("num_iterations"))
        state, curve = entry["state"], last.get("status")
        if state in states.ACTIVE and curve in states.CURVE and curve != states.RUNNING:
            state = curve  # it ended since: completed, diverged or failed
        elif state in states.ACTIVE and orphaned:
            state = states.INTERRUPTED
        elif state == states.STARTING and curve == states.RUNNING:
            state = states.RUNNING
        rows.append(_status_row(trial_id, entry.get("config") or last.get("config", {}), axes,
                                state, last))
    for trial_id in files:  # not yet in trials.json (it lags), or a folder from before it
        last = _curve_fields(join(folder, "curves", f"{trial_id}.parquet"))
        status = last.get("status")
        state = status if status in states.CURVE else states.PENDING
        if state == states.RUNNING and orphaned:
            state = states.INTERRUPTED
        rows.append(_status_row(trial_id, last.get("config", {}), axes, state, last))
    return sorted(rows, key=lambda r: r["trial_id"])


def _curve_fields(location: str) -> dict[str, Any]:
    row = last_row(location)
    if row is None:
        return {}
    config = row["config"]
    return {"step": row.get("step"), "val_loss": row.get("val_loss"), "status": row.get("status"),
            "num_iterations": config.get("num_iterations", row.get("num_iterations")),
            "config": config}


def _status_row(trial_id: str, config: dict[str, Any], axes: list[str], state: str,
                last: dict[str, Any]) -> dict[str, Any]:
    last.pop("config", None)
    return dict(trial_id=trial_id, state=state, config=coordinates_of(config, axes),
                num_iterations=last.get("num_iterations") or step_budget(config),
                step=last.get("step"), val_loss=last.get("val_loss"),
                curve_status=last.get("status"))


COLOURS = {states.COMPLETED: "green", states.STOPPED: "yellow", states.FAILED: "red",
           states.DIVERGED: "red", states.RUNNING: "cyan", states.STARTING: "blue",
           states.INTERRUPTED: "magenta"}


def print_status(rows: list[dict[str, Any]], expected: int, console) -> None:
    """The trials as a table that keeps every number whole at any width from 80 columns:
    ids, states and numbers never wrap; the config takes the width left, one `key=value` a
    line, a value moved under its key rather than cut."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = []
    for r in rows:
        step = f"{r['step']}/{r['num_iterations']}" if r["step"] is not None else ""
        loss = f"{r['val_loss']:.4f}" if isinstance(r["val_loss"], (int, float)) else ""
        cells.append([r["trial_id"], r["state"], step, loss, r["curve_status"] or ""])
    names = ("trial", "state", "step", "val loss", "curve")
    fixed = sum(max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names))
    width = max(console.width - fixed - 3 * len(names), 12)  # between columns: pad, rule, pad
    table = Table(title=f"{len(rows)} of {expected} trials started", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    for name in names[:2]:
        table.add_column(name, no_wrap=True)
    table.add_column("config", width=width, overflow="fold")
    for name in names[2:]:
        table.add_column(name, justify="left" if name == "curve" else "right", no_wrap=True)
    for r, (trial, state, step, loss, curve) in zip(rows, cells):  # plain Text: folder text
        table.add_row(Text(printable(trial)), Text(printable(state), style=COLOURS.get(state, "white")),
                      Text(printable("\n".join(_packed(r["config"], width)))), step, loss,
                      Text(printable(curve)))
    console.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if expected > len(rows):
        counts[states.PENDING] = counts.get(states.PENDING, 0) + expected - len(rows)
    line = ""
    for entry in (f"{n} {k}" for k, n in counts.items()):  # wrapped between counts only
        if line and len(line) + 3 + len(entry) > console.width:
            console.print(line)
            line = ""
        line = f"{line} · {entry}" if line else entry
    console.print(line)


def _packed(config: dict[str, Any], width: int) -> list[str]:
    """`key=value` entries packed into lines of `width`; an entry too long for one line puts
    its value on the next, so that only a key is ever folded."""
    lines, line = [], ""
    for key, value in config.items():
        entry = f"{key}={value}"
        if line and len(line) + 1 + len(entry) <= width:
            line += " " + entry
            continue
        if line:
            lines.append(line)
        if len(entry) <= width:
            line = entry
        else:
            lines.append(f"{key}=")
            line = str(value)
    return [*lines, line] if line else lines
