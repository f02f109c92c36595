"""Who drives a sweep, and asking it to stop.

`driver_lock`: a sweep has one driver at a time. `ablate sweep` and `ablate resume` hold an
exclusive lock on `<folder>/driver.lock` for the driver's life (flock: the OS releases it
when the process ends, however it ends); a second driver is refused with one line naming the
first. A lock file left by a driver that was killed is taken over, and said so. Object
stores have no lock: there the folder's existence check is what guards a new sweep.

`ablate stop DIR`: stop a running sweep from another shell, so that `ablate resume DIR`
goes on later.

The request is a file in the sweep's folder, `stop.json` (`{"now": false}`: finish the
running trials and start no new one; `{"now": true}`: stop the running trials too, each
resumable from its last checkpoint). The sweep's driver reads it at most once a second
through `StopControl` (sweeps/stoppers.py). The driver removes the file when it starts and
when it has acted on it: a request is for the sweep running now. No Ray here: `ablate stop`
and `ablate status` answer without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ablate.results.errors import printable
from ablate.sweeps.spec import SpecError
from ablate.sweeps.storage import exists, filesystem, is_uri, join, read_text, write_text

LOCK_FILE = "driver.lock"


@contextlib.contextmanager
def driver_lock(folder: str) -> Iterator[None]:
    """Hold the sweep's driver lock while the block runs (see the module doc)."""
    if is_uri(folder):
        yield
        return
    import fcntl

    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # a planted link: refused
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpecError(f"{folder}: another driver runs this sweep ({_holder(fd)}); wait for it, "
                            f"or stop it with `ablate stop {folder}`") from None
        left = _holder(fd)
        if left != "unknown":
            print(printable(f"ablate: {folder}: taking over the lock a driver left ({left}), which "
                            "ended without releasing it (killed, or its machine went down)"),
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean end leaves no holder's name behind
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Who the lock file says holds it: "pid N on HOST", or "unknown"."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").strip()
    return text if text.startswith("pid ") and len(text) < 200 else "unknown"

STOP_FILE = "stop.json"


def request_stop(folder: str, now: bool) -> None:
    write_text(join(folder, STOP_FILE), json.dumps({"now": now, "requested": time.time()}))


def stop_request(folder: str) -> dict[str, Any] | None:
    """The request in the folder: {"now": bool, "requested": epoch seconds}; None if there is
    none. Anything but that shape is no request (a folder's text never steers the driver)."""
    location = join(folder, STOP_FILE)
    try:
        if not exists(location):
            return None
        raw = json.loads(read_text(location))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("now"), bool):
        return None
    at = raw.get("requested")
    return {"now": raw["now"], "requested": at if isinstance(at, (int, float)) and at == at else None}


def clear_request(folder: str) -> None:
    location = join(folder, STOP_FILE)
    if exists(location):
        fs, path = filesystem(location)
        fs.delete_file(path)
