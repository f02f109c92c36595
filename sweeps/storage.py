"""Where a sweep lives: a local folder or any URI pyarrow (and so Ray) opens: s3://, gs://,
file://. Every read and write of a sweep's folder outside Tune's own goes through here.

A sweep's folder, `<storage>/<name>/`:

    sweep.json              the spec as it ran and its trial ids' prefix (`ablate resume`, `status`)
    trials.json             each trial's state and config, as the driver last saw them
    curves/<trial>.parquet  one curve per trial (the trainer writes, results reads)
    checkpoints/<trial>/    its latest and best checkpoints (sweeps/checkpoints.py)
    experiment_state-*.json, tuner.pkl, ...   Tune's own state (never read back: it pickles)

No torch and no ray here: `ablate status` and `--dry-run` stay light.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from ablate.core import states
from ablate.core.files import atomic_path
from ablate.sweeps.spec import BUILTIN_DATA, SpecError, SweepSpec, parse_spec, spec_dict

SPEC_FILE = "sweep.json"
TRIALS_FILE = "trials.json"  # {trial_id: {"state", "config"}}: see sweeps/ledger.py
TUNE_FILES = ("tuner.pkl",)  # present once Tune has started a sweep in the folder


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def storage_root(location: str | os.PathLike) -> str:
    """A URI as given; a local path made absolute (trials run in other processes and nodes)."""
    location = str(location)
    return location.rstrip("/") if is_uri(location) else str(Path(location).expanduser().resolve())


def join(root: str | os.PathLike, *parts: str) -> str:
    """Path join that keeps a URI's `scheme://`."""
    if is_uri(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root, *parts))


def filesystem(location: str | os.PathLike):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    import pyarrow.fs

    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(str(location))
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def exists(location: str) -> bool:
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text(location: str) -> str:
    fs, path = filesystem(location)
    if not exists(location):
        raise FileNotFoundError(location)
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def write_text(location: str, text: str) -> None:
    """Write a whole file: a local one through a temp file and a rename, so that a reader (or
    a driver killed mid-write) never sees half of it; an object store's put is whole anyway.
    A failure names the file (a full disk's OSError names none)."""
    if not is_uri(location):
        try:
            with atomic_path(location) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), location) from None
        return
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode("utf-8"))


def upload(local: str | Path, uri: str) -> None:
    """Copy a local file to a URI atomically: a temp name, then a move (on object stores
    the final key appears whole or not at all)."""
    import pyarrow.fs

    fs, path = filesystem(uri)
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    pyarrow.fs.copy_files(str(local), tmp, destination_filesystem=fs)
    fs.move(tmp, path)


def copy_folder(location: str, local: Path) -> Path:
    """A local copy of a storage folder (curves in a bucket, for the report)."""
    import pyarrow.fs

    fs, path = filesystem(location)
    local.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(path, str(local), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return local


# --- the sweep's own files ------------------------------------------------------------------

def sweep_folder(storage: str, name: str) -> str:
    return join(storage, name)


def curve_location(storage: str, sweep: str, trial_id: str) -> str:
    return join(storage, sweep, "curves", f"{trial_id}.parquet")


def is_stored(folder: str) -> bool:
    """Whether a sweep (or a step search) already lives in `folder`."""
    try:
        return any(exists(join(folder, f)) for f in (*TUNE_FILES, "curves", SPEC_FILE))
    except (OSError, ValueError, NotImplementedError) as e:  # pyarrow: bad scheme, bucket, access
        raise SpecError(f"{folder}: storage not reachable ({' '.join(str(e).split())})") from None


def claim(folder: str) -> None:
    """Take a sweep's folder for this driver. On local storage the folder is made with an
    exclusive mkdir, so of two drivers starting the same sweep at once exactly one proceeds
    and neither writes into the other's files. (Object stores have no such primitive: there
    the existence check before it is what guards.)"""
    if is_uri(folder):
        return
    path = Path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise SpecError(f"{folder}: already exists (another sweep of that name, or one being "
                        "started now); choose another --storage or name") from None


def save_sweep(spec: SweepSpec, settings: dict[str, Any]) -> None:
    """sweep.json: the spec as the sweep runs it (its data folder as resolved for the trials)
    and the prefix of its trial ids. Every other trial setting is derived from these and the
    folder (load_sweep), so each fact is written once."""
    ran = spec if spec.data == BUILTIN_DATA else replace(spec, data=str(settings["data"]))
    text = json.dumps({"spec": spec_dict(ran), "trial_prefix": settings["trial_prefix"]},
                      indent=2, default=str)
    write_text(join(settings["storage"], spec.name, SPEC_FILE), text)


def load_sweep(folder: str) -> tuple[SweepSpec, dict[str, Any]]:
    """The spec that `ablate sweep` saved in a sweep's folder, and the trial settings derived
    from it, placed where the folder is now: a folder that was moved (or copied to a bucket)
    writes its curves and checkpoints under its new location, never the one recorded in it.
    Resources, retries, axes and target come from the spec, which was validated. A
    sweep.json from before its `settings` copy was dropped is read too, the copy ignored: an
    edited copy there cannot ask for a gang no node holds."""
    path = join(folder, SPEC_FILE)
    try:
        saved = json.loads(read_text(path))
        spec = parse_spec(saved["spec"], source=path)
        old = saved.get("settings")
        prefix = saved.get("trial_prefix", old.get("trial_prefix") if isinstance(old, dict) else None)
    except FileNotFoundError:
        raise SpecError(f"{folder}: not a sweep folder (no {SPEC_FILE}; "
                        "give <storage>/<sweep name> of a sweep started by `ablate sweep`)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SpecError(f"{path}: corrupt ({e})") from None
    except (OSError, RecursionError) as e:
        raise SpecError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    storage, name = parent_and_name(folder)
    builtin = spec.data == BUILTIN_DATA
    data = builtin_folder(storage) if builtin else Path(spec.data).resolve()
    settings = dict(storage=storage, sweep=name, data=str(data), builtin=builtin) | spec_settings(spec)
    if prefix is not None:
        settings["trial_prefix"] = prefix
    return spec, settings


def spec_settings(spec: SweepSpec) -> dict[str, Any]:
    """The trial settings that come from the spec alone (a new sweep's and a resumed one's)."""
    from dataclasses import asdict

    return dict(resources=asdict(spec.resources), max_failures=spec.max_failures,
                stall_timeout=spec.stall_timeout, axes=list(spec.axes), target=spec.target,
                baseline=spec.baseline)


def parent_and_name(folder: str) -> tuple[str, str]:
    """A sweep folder's storage root and name: `<storage>/<name>`."""
    folder = storage_root(folder)
    parent, _, name = folder.rstrip("/").rpartition("/")
    return parent, name


def trial_states(folder: str) -> dict[str, dict[str, Any]]:
    """Each trial's state and config as the driver last wrote them: {trial_id: {"state":
    one of states.STATES, "config": {axis: value, "seed": n}}}; {} before it has."""
    path = join(folder, TRIALS_FILE)
    try:
        saved = json.loads(read_text(path))
    except FileNotFoundError:
        return {}
    except (ValueError, OSError, RecursionError) as e:
        raise SpecError(f"{path}: corrupt ({e})") from None
    if not isinstance(saved, dict) or not all(
            isinstance(v, dict) and v.get("state") in states.STATES
            and isinstance(v.get("config", {}), dict) for v in saved.values()):
        raise SpecError(f"{path}: corrupt (not a table of trial states)")
    return saved


def write_trial_states(folder: str, trials: dict[str, dict[str, Any]]) -> None:
    write_text(join(folder, TRIALS_FILE), json.dumps(trials, sort_keys=True))


def stopped_trials(folder: str) -> set[str]:
    """The trials early stopping ended: `ablate resume` leaves them be."""
    return {t for t, v in trial_states(folder).items() if v["state"] == states.STOPPED}


PREFIX = re.compile(r"[0-9a-f]{5}")  # what new_prefix makes: nothing a path could climb with


def trial_prefix(folder: str, settings: dict[str, Any]) -> str:
    """The prefix of the sweep's trial ids (`<prefix>_<grid index>`): saved in sweep.json,
    or, for a folder from before it was saved, read off its curves' names. Curves, weights
    and checkpoints are named after the ids, so anything but a prefix new_prefix could have
    made (`../..`, an absolute path) is refused: it would write outside the folder."""
    saved = settings.get("trial_prefix")
    if saved is not None:
        if not isinstance(saved, str) or not PREFIX.fullmatch(saved):
            raise SpecError(f"{join(folder, SPEC_FILE)}: trial_prefix: {saved!r} is not a "
                            "trial-id prefix (5 hex digits); the folder was altered")
        return saved
    prefixes = {name.rpartition("_")[0] for name in curve_files(folder)}
    if len(prefixes) > 1:
        raise SpecError(f"{folder}: curves of several sweeps ({', '.join(sorted(prefixes))}); "
                        "cannot tell which trials to continue")
    prefix = prefixes.pop() if prefixes else new_prefix()
    if not PREFIX.fullmatch(prefix):
        raise SpecError(f"{folder}: curve names start {prefix!r}, not a trial-id prefix (5 hex digits)")
    return prefix


def new_prefix() -> str:
    return uuid.uuid4().hex[:5]


def curve_files(folder: str) -> dict[str, str]:
    """trial id -> path (in the folder's filesystem) of every curve of a sweep."""
    import pyarrow.fs

    fs, curves = filesystem(join(folder, "curves"))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(curves, allow_not_found=True))
    return {i.base_name.removesuffix(".parquet"): i.path for i in infos
            if i.base_name.endswith(".parquet") and i.type == pyarrow.fs.FileType.File}


def curve_tables(folder: str, columns: list[str]) -> dict:
    """trial id -> its curve's `columns` (a pyarrow Table), each curve read once; curves
    that cannot be read are left out (a trial with no readable curve starts afresh)."""
    import pyarrow.parquet as pq

    fs, _ = filesystem(join(folder, "curves"))
    tables = {}
    for trial_id, path in curve_files(folder).items():
        try:
            tables[trial_id] = pq.read_table(path, filesystem=fs, columns=columns)
        except Exception:  # unreadable or foreign
            continue
    return tables


def last_row(location: str) -> dict[str, Any] | None:
    """A stored curve's final point (results.curves.final_point, with `config`: the trial's
    params), or None if the file is missing, unreadable or empty: a trial with no readable
    curve has not got anywhere yet."""
    import pyarrow.parquet as pq

    from ablate.results.configs import parse_params
    from ablate.results.curves import final_point

    fs, path = filesystem(location)
    try:
        table = pq.read_table(path, filesystem=fs)
    except Exception:
        return None
    row = final_point(table)
    if row is not None:
        row["config"] = parse_params(row.get("params"))
    return row


# --- the data a sweep reads -----------------------------------------------------------------

def resolve_data(spec: SweepSpec, storage: str | Path) -> Path:
    """The shard folder a sweep reads: the spec's, or the built-in corpus. For local storage
    the corpus is prepared once under the storage root (shared storage: every node sees the
    same shards); for a URI each node prepares its own copy in the local temp folder."""
    from ablate.trainer.data import DataError, ensure_builtin, find_shards

    if spec.data != BUILTIN_DATA:
        folder = Path(spec.data).resolve()
        try:
            find_shards(folder, "train")
            find_shards(folder, "val")
        except DataError as e:
            raise SpecError(f"{spec.source}: sweep.data: {e}") from None
        return folder
    folder = builtin_folder(storage)
    try:
        ensure_builtin(folder)
    except OSError as e:  # a read-only or full storage root
        raise SpecError(f"{folder}: cannot prepare the built-in corpus there "
                        f"({e.strerror or e})") from None
    return folder


def check_links_stay_inside(folder: str) -> None:
    """Refuse a sweep folder with a link that leads out of it where a resume writes: any of
    its own entries (curves/, weights/, checkpoints/, mlflow.db, wandb/, ...) or anything below
    curves/, weights/ and checkpoints/. A resume would write through it, and a
    teammate's folder must not make a resume write elsewhere. Links that trackers make
    inside their own runs (W&B's logs) are theirs. A URI has no links."""
    if is_uri(folder):
        return
    root = Path(folder).resolve()
    paths = list(root.iterdir()) if root.is_dir() else []
    for sub in ("curves", "weights", "checkpoints"):
        if (root / sub).is_dir() and not (root / sub).is_symlink():
            for where, dirs, files in os.walk(root / sub):  # links to folders: not followed
                paths += [Path(where, name) for name in dirs + files]
    for path in paths:
        if not path.is_symlink():
            continue
        try:
            inside = path.resolve(strict=True).is_relative_to(root)
        except (OSError, RuntimeError):  # dangling, or a loop
            inside = False
        if not inside:
            raise SpecError(f"{path}: a link that leads out of the sweep folder {root} "
                            "(or nowhere); `ablate resume` would write through it, so remove it")


def builtin_folder(storage: str | Path) -> Path:
    """Where the built-in corpus is kept: `<storage>/.data/builtin` under a local storage root
    (a name no sweep can take), else in the node's temp folder. A `.data` that leads out of
    the storage root (a symlink) is refused: the corpus is written there."""
    if is_uri(storage):
        return Path(tempfile.gettempdir()) / "ablate" / "data" / "builtin"
    root = Path(storage).resolve()
    folder = (root / ".data" / "builtin").resolve()
    if not folder.is_relative_to(root):
        raise SpecError(f"{root / '.data'}: leads outside the storage root {root} "
                        "(the built-in corpus is written there); remove the link")
    return folder
