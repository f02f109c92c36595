"""`ablate status`: a sweep's trials read from storage, by a process that runs nothing.

Tune's experiment state is read as plain JSON: whatever Tune pickled into it stays bytes
(never unpickled), so a folder on shared storage cannot run code as the reader. Steps and
losses come from the curves (written at every validation point), else from Tune's last result.
"""

from __future__ import annotations

import json
from typing import Any

from ablate.results.curves import STATUSES
from ablate.sweeps import states
from ablate.sweeps.spec import step_budget
from ablate.sweeps.storage import curve_files, filesystem, join, last_row

# Tune's trial statuses in our words; TERMINATED is resolved by the last report's status.
TUNE_STATES = {"PENDING": states.PENDING, "PAUSED": states.PENDING, "RUNNING": states.RUNNING,
               "ERROR": states.FAILED}
UNTRACKED = "untracked"  # a curve Tune's state does not know (the driver died before saving)


def tune_trials(folder: str) -> list[dict[str, Any]]:
    """Every trial in the newest `experiment_state-*.json`: trial_id, status, config and
    last_result, as plain JSON. None of it is unpickled."""
    import pyarrow.fs

    fs, path = filesystem(folder)
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    files = sorted(i.path for i in infos if i.base_name.startswith("experiment_state-")
                   and i.base_name.endswith(".json") and i.type == pyarrow.fs.FileType.File)
    if not files:
        return []
    try:
        with fs.open_input_stream(files[-1]) as f:
            saved = json.loads(f.read().decode("utf-8"))
        out = []
        for trial_json, metadata_json in saved["trial_data"]:
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            config = trial.get("config")
            out.append({"trial_id": str(trial["trial_id"]), "status": str(trial.get("status")),
                        "config": config if isinstance(config, dict) else {},
                        "last_result": metadata.get("last_result") or {}})
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []  # half-written or foreign: the curves still tell


def sweep_status(folder: str, axes: list[str]) -> list[dict[str, Any]]:
    """Every trial Tune knows of (and every curve it does not): state, config, last step and
    val loss."""
    files = curve_files(folder)
    rows = []
    for trial in tune_trials(folder):
        reported = trial["last_result"] if isinstance(trial["last_result"], dict) else {}
        last = {k: reported.get(k) for k in ("step", "val_loss", "status", "num_iterations")}
        if trial["trial_id"] in files:
            last |= _curve_fields(join(folder, "curves", f"{trial['trial_id']}.parquet"))
            files.pop(trial["trial_id"])
        # Tune's view decides, as in the live view: a trial it stopped is `stopped` even if
        # its run reached the end before the abort (the curve column shows that).
        ended = reported.get("status") or last.get("status")
        state = (states.ended_state(ended) if trial["status"] == "TERMINATED"
                 else TUNE_STATES.get(trial["status"], trial["status"].lower()))
        if state == states.PENDING and last.get("status") in STATUSES:
            # Tune saves its state every 10 s or so; a curve written since then is newer news
            state = (states.RUNNING if last["status"] == "running"
                     else states.ended_state(last["status"]))
        rows.append(_status_row(trial["trial_id"], trial["config"], axes, state, last))
    for trial_id in files:
        last = _curve_fields(join(folder, "curves", f"{trial_id}.parquet"))
        rows.append(_status_row(trial_id, last.pop("config", {}), axes, UNTRACKED, last))
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
    return dict(trial_id=trial_id, state=state, config={k: config.get(k) for k in [*axes, "seed"]},
                num_iterations=last.get("num_iterations") or step_budget(config),
                step=last.get("step"), val_loss=last.get("val_loss"),
                curve_status=last.get("status"))


COLOURS = {states.COMPLETED: "green", states.STOPPED: "yellow", states.FAILED: "red",
           states.DIVERGED: "red", states.RUNNING: "cyan", states.STARTING: "blue"}


def print_status(rows: list[dict[str, Any]], expected: int, console) -> None:
    """The trials as a table that keeps every number whole at any width from 80 columns:
    ids, states and numbers never wrap; the config takes the width left, one `key=value` a
    line, a value moved under its key rather than cut."""
    from rich import box
    from rich.table import Table

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
    for r, (trial, state, step, loss, curve) in zip(rows, cells):
        table.add_row(trial, f"[{COLOURS.get(state, 'white')}]{state}[/]",
                      "\n".join(_packed(r["config"], width)), step, loss, curve)
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
