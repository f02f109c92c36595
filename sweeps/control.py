"""Who drives a sweep, and asking it to stop.

`driver_lock`: a sweep has one driver at a time. `ablate sweep` and `ablate resume` hold an
exclusive lock on `<folder>/driver.lock` for the driver's life (flock: the OS releases it
when the process ends, however it ends); a second driver is refused with one line naming the
first. A lock file left by a driver that was killed is taken over, and said so. Object
stores have no lock: there the folder's existence check is what guards a new sweep.

`driver_running`: whether a driver holds that lock now, so that `ablate status` shows the
trials of a driver that died (SIGKILL, a full disk) as interrupted, not running.

`DriverWatch`: every end of a driver says where its sweep is and how to finish it. A Python
error is said by the driver itself; a driver that dies (Ray's core worker exits the process
when its raylet dies; SIGKILL; a crash) is said by a small watcher process forked before Ray
starts, which waits on a pipe that only the driver holds.

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
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ablate.core import states
from ablate.core.errors import AblateError, describe, expected, printable
from ablate.sweeps.spec import SpecError
from ablate.sweeps.storage import (
    SPEC_FILE,
    TRIALS_FILE,
    exists,
    filesystem,
    is_uri,
    join,
    read_text,
    write_text,
)

LOCK_FILE = "driver.lock"
LOCK_WAIT_S = 1.0  # how long a starting driver waits for a lock held a moment by `ablate status`


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
        if not _lock(fd, fcntl.LOCK_EX, wait=LOCK_WAIT_S):
            raise SpecError(f"{folder}: another driver runs this sweep ({_holder(fd)}); wait for it, "
                            f"or stop it with `ablate stop {folder}`")
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


def _lock(fd: int, kind: int, wait: float = 0.0) -> bool:
    import fcntl

    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def driver_running(folder: str) -> bool | None:
    """Whether a driver on this machine holds the sweep's lock now: None where that cannot be
    known (an object store; a lock file naming another host, whose flock this machine may
    not see), False where no lock file is left (a clean end)."""
    if is_uri(folder):
        return None
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        holder = _holder(fd)
        if holder != "unknown" and not holder.endswith(f" on {socket.gethostname()}"):
            return None
        import fcntl

        if not _lock(fd, fcntl.LOCK_SH):
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Who the lock file says holds it: "pid N on HOST", or "unknown"."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").strip()
    return text if text.startswith("pid ") and len(text) < 200 else "unknown"


class DriverWatch:
    """Around a sweep's driver: whatever way it ends, the user learns where the sweep is and
    how to finish it, and trials.json no longer says that trials run.

    A Python error (a full disk, a Ray error) is said here, on exit. A driver that dies
    without running Python again is said by the watcher: a process forked on entry, before
    Ray starts (so it holds neither Ray's connections nor the driver's lock), that blocks on
    a pipe only the driver writes to and reads end-of-file when the driver is gone. A
    refusal (an AblateError) needs no hint: it says what to do, and nothing ran."""

    def __init__(self, folder: str, json_out=None):
        self.folder, self.json_out = folder, json_out
        self.pipe: int | None = None  # both made on entry
        self.watcher: int | None = None

    def __enter__(self) -> DriverWatch:
        fds = (_fileno(sys.stderr), _fileno(self.json_out) if self.json_out else None)
        printable("")  # its import done before the fork
        read, self.pipe = os.pipe()  # not inherited by what the driver later spawns
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the watcher would print what the driver has buffered
        self.watcher = os.fork()
        if self.watcher == 0:
            os.close(self.pipe)
            self._watch(read, *fds)
        os.close(read)
        return self

    def _watch(self, read: int, stderr: int | None, json_out: int | None) -> None:
        """The watcher's whole life: wait, then speak if the driver died unheard. It writes
        to the file descriptors themselves: a lock another thread of the driver held at the
        fork (a stream's buffer) would never be released here."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # it outlives the driver it speaks for
        code = 0
        try:
            if not os.read(read, 1):
                why = "the sweep's driver ended abruptly (killed, or its Ray node went down)"
                hint = ended(self.folder)
                if hint and json_out is not None:
                    os.write(json_out, (_event(self.folder, why, hint) + "\n").encode())
                if hint and stderr is not None:
                    os.write(stderr, f"ablate: {printable(f'{why}; {hint}')}\n".encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)  # nothing of the driver's (atexit, buffers, Ray) runs here

    def __exit__(self, kind, error, tb) -> None:
        """A failure of the world (core.errors.expected: a full disk, a dropped connection)
        becomes one line naming the file and the resume command; a bug keeps its traceback,
        after the hint; Ctrl-C outside Tune's own handling gets the hint, then `interrupted`."""
        try:
            if error is None or isinstance(error, AblateError):
                return
            hint = ended(self.folder)
            if hint is None:
                return
            of_the_world = expected(error)
            why = describe(error) if of_the_world else (
                states.INTERRUPTED if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}")
            if self.json_out is not None:
                self.json_out.write(_event(self.folder, why, hint) + "\n")
                self.json_out.flush()
            if of_the_world:
                raise SpecError(f"{why}; {hint}") from None
            print(printable(f"ablate: {why}; {hint}"), file=sys.stderr, flush=True)
        finally:
            assert self.pipe is not None and self.watcher is not None  # __exit__ follows __enter__
            os.write(self.pipe, b"1")
            os.close(self.pipe)
            os.waitpid(self.watcher, 0)


def ended(folder: str) -> str | None:
    """After a driver ended before its sweep did: mark the trials it had running as
    interrupted, and return how to go on (None where no sweep folder was made). A folder cut
    off before its spec was saved holds nothing to resume: it is removed, so that the same
    command starts it again. Plain file calls only (the watcher is a fork: no pyarrow)."""
    if is_uri(folder):
        return f"the sweep in {folder} stopped early; finish it with `ablate resume {folder}`"
    if not Path(folder).is_dir():
        return None
    if not (Path(folder) / SPEC_FILE).exists():
        with contextlib.suppress(OSError):
            (Path(folder) / LOCK_FILE).unlink(missing_ok=True)
            Path(folder).rmdir()
        return "the sweep was cut off while starting; nothing ran; run the same command again"
    _mark_interrupted(folder)
    return f"the sweep in {folder} stopped early; finish it with `ablate resume {folder}`"


def _event(folder: str, why: str, hint: str) -> str:
    """The --json-log line of a driver that ended early."""
    return json.dumps({"event": "aborted", "time": round(time.time(), 3), "folder": folder,
                       "reason": why, "hint": hint})


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test's capture, a closed stream
        return None


def _mark_interrupted(folder: str) -> None:
    """trials.json's starting and running trials -> interrupted (what `ablate status` shows
    anyway once no driver holds the lock; this keeps the file itself true). Best effort: a
    full disk cannot take it."""
    path = Path(folder) / TRIALS_FILE
    try:
        trials = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        for entry in trials.values():
            if entry.get("state") in states.ACTIVE:
                entry["state"], changed = states.INTERRUPTED, True
        if changed:
            write_text(str(path), json.dumps(trials, sort_keys=True))
    except (OSError, ValueError, AttributeError, RecursionError):
        pass


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
