"""`ablate stop DIR`: stop a running sweep from another shell, so that `ablate resume DIR`
goes on later.

The request is a file in the sweep's folder, `stop.json` (`{"now": false}`: finish the
running trials and start no new one; `{"now": true}`: stop the running trials too, each
resumable from its last checkpoint). The sweep's driver reads it at most once a second
through `StopControl` (sweeps/stoppers.py). The driver removes the file when it starts and
when it has acted on it: a request is for the sweep running now. No Ray here: `ablate stop`
and `ablate status` answer without it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ablate.sweeps.storage import exists, filesystem, join, read_text, write_text

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
