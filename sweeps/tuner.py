"""Spec -> Ray Tune Tuner -> trials, on an embedded local Ray or a cluster; and the same
Tuner again, from the saved spec, to finish an interrupted sweep.

Nothing of Tune's own saved state is read back (Tune pickles it; a sweep folder on shared
storage must never run code as whoever resumes it): trial ids are `<prefix>_<grid index>`,
the same in every session, and each trial finds its curve and checkpoint by its id.

The trial's own driver holds only a custom `trial_slot` resource where the cluster declares
one (the embedded Ray does; examples/cluster.yaml gives the head node some), else a little
of Ray's memory resource: never a CPU its workers need. Its workers reserve W x (CPU, GPU)
as one gang, bundles of the trial's placement group (sweeps/worker.py, sweeps/gang.py).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.core.fields import coordinates
from ablate.results.curves import ended, final_point
from ablate.sweeps.spec import BUILTIN_DATA, SpecError, SweepSpec
from ablate.sweeps.storage import (
    curve_tables,
    join,
    new_prefix,
    spec_settings,
    stopped_trials,
    storage_root,
)

TRIAL_SLOT = "trial_slot"
DRIVER_MEMORY = 64 * 2**20  # bytes of Ray's memory resource a trial driver reserves where no slot is declared
# The embedded Ray runs on one machine: no Prometheus export (its port listens on every
# interface with no token, and nothing here reads it).
EMBEDDED_ENV = {"RAY_enable_metrics_collection": "0"}
# Joining a cluster: how long the head may take to answer a TCP connect, how many times Ray
# asks its GCS for the cluster id (~40 s each; Ray's default of 20 is a quarter hour), and
# the token authentication that `ray start` turns on in Ray 2.60 (the token from
# ~/.ray/auth_token or RAY_AUTH_TOKEN); a user's own RAY_AUTH_MODE wins.
CONNECT_TIMEOUT_S = 10.0
JOIN_ENV = {"RAY_gcs_server_port_wait_time_s": "1", "RAY_AUTH_MODE": "token"}
ADDRESS = re.compile(r"(ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:(?P<port>\d{1,5}))?")


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join a cluster (`address`) or start the embedded local Ray with no dashboard and with
    Ray's token authentication left on (Ray 2.60's gRPC servers listen on every interface and
    offer no loopback-only switch, so the token is what keeps other hosts out); either way
    shut it down after. Variables already set in the environment win over the defaults above
    (bench/sweep_overhead.py measures them that way).

    While the session lasts, SIGTERM (a batch system's time limit, `kill`) stops the driver as
    Ctrl-C does, so Tune ends its trials and the command says how to resume; Ray's own
    handler would dump a stack and exit 1. What SIGTERM did before comes back after."""
    import ray

    if address:
        join_environment()

    env = {k: os.environ.get(k, v) for k, v in ({} if address else EMBEDDED_ENV).items()}
    os.environ.update(env)  # the local raylet and its workers inherit these
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress view replaces Tune's
    kwargs: dict[str, Any] = dict(runtime_env={"env_vars": env}, log_to_driver=False,
                                  configure_logging=True, logging_level="ERROR")
    check_auth(address)
    if address:
        check_reachable(address)
    if ray.is_initialized():  # this process's Ray already (a caller's own session)
        yield
        return
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM)
    if address:
        try:
            with warnings.catch_warnings():  # Ray Client warns, then raises: one line will do
                warnings.simplefilter("ignore", UserWarning)
                ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError) as e:
            raise SpecError(f"--address {address}: cannot join a Ray cluster there "
                            f"({' '.join(str(e).split())})") from None
    else:
        # "local": our own Ray, even where another runs on the machine (a leftover, another
        # user's `ray start`), which a plain ray.init would join or fail on
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), resources={TRIAL_SLOT: 1000},
                 include_dashboard=False, _temp_dir=private_temp_dir(), **kwargs)
        private_token()
    if main_thread:
        signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        ray.shutdown()
        if main_thread:
            signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def private_temp_dir() -> str | None:
    """Where the embedded Ray keeps its session (sockets, logs): Ray makes its folders 0777,
    and makes them so again whenever a process joins, so they go inside one of this user's
    own, 0700: `<tmp>/ablate-ray-<uid>/ray`. A RAY_TMPDIR the user set is theirs to keep;
    a folder of that name that is not this user's own, or a link, is refused."""
    if os.environ.get("RAY_TMPDIR"):
        return None
    import stat
    import tempfile

    root = Path(tempfile.gettempdir()) / f"ablate-ray-{os.getuid()}"
    try:
        root.mkdir(mode=0o700)
    except FileExistsError:
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise SpecError(f"{root}: not this user's own folder (a link, or another user's); "
                            "remove it, or set RAY_TMPDIR to a folder of yours") from None
        root.chmod(0o700)
    return str(root / "ray")


def private_token() -> None:
    """Ray's auth token this user's alone: Ray writes ~/.ray/auth_token 0644 (in a 0755
    folder) when it makes one; made 0600 (and the folder 0700) where this user owns them."""
    import stat

    token = Path.home() / ".ray" / "auth_token"
    for path, mode in ((token.parent, 0o700), (token, 0o600)):
        try:
            info = path.lstat()
            if info.st_uid == os.getuid() and not stat.S_ISLNK(info.st_mode) and \
                    stat.S_IMODE(info.st_mode) & ~mode:
                path.chmod(mode)
        except OSError:
            continue


def join_environment() -> None:
    """JOIN_ENV where the user has not set its variables. Ray reads its config (the auth mode
    among it) from the environment when first imported, so it is read again here, as Ray
    itself does when it turns token authentication on."""
    if all(key in os.environ for key in JOIN_ENV):
        return
    for key, value in JOIN_ENV.items():
        os.environ.setdefault(key, value)
    from ray._raylet import Config  # pyright: ignore[reportAttributeAccessIssue]  # compiled: no stubs

    Config.initialize("")


def check_auth(address: str | None) -> None:
    """The embedded Ray keeps Ray's token authentication on: refuse to start without it."""
    if not address and os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        raise SpecError("RAY_AUTH_MODE=disabled: the embedded Ray keeps token authentication "
                        "on (its servers listen on every interface); unset it")


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an --address that is not `auto`, `host[:port]` or `ray://host[:port]`, or that
    nothing answers within `timeout` seconds: Ray itself would retry an unreachable head for
    many minutes without a word. Without a port, Ray's default is Ray's to try."""
    import socket

    if address == "auto":  # Ray finds the local cluster itself, and fails at once without one
        return
    m = ADDRESS.fullmatch(address)
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        raise SpecError(f"--address {address}: expected auto, host:port or ray://host:port")
    if m["port"] is None:
        return
    try:
        socket.create_connection((m["host"].strip("[]"), int(m["port"])), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise SpecError(f"--address {address}: no Ray cluster answers there ({reason}); "
                        "start one with `ray start --head`, or fix the address") from None


def trial_resources() -> dict[str, float]:
    """What a trial's driver reserves: a trial slot where the cluster declares them (the
    embedded Ray does), else a little of Ray's `memory` resource, which every node has (Ray
    refuses a zero-resource trial, and a sliver of CPU beside a gang that takes every CPU
    would wait for ever)."""
    import ray

    return {TRIAL_SLOT: 1} if ray.cluster_resources().get(TRIAL_SLOT) else {"memory": DRIVER_MEMORY}


def check_fits(spec: SweepSpec, embedded: bool, known: Mapping[str, float] | None = None) -> str | None:
    """Refuse a trial whose gang can never be placed: more CPUs or GPUs than the whole
    embedded Ray has. A cluster may grow (an autoscaler, nodes joining by hand), so there
    the sweep waits: returned is what it waits for (more in all, or a node large enough for
    one worker), for the views to say; None if it fits. `ablate resume` checks the same.
    `known`: the resources known before Ray starts (the embedded Ray gets this machine's CPUs,
    `os.cpu_count()`), checked alone so that a gang too large is refused in a moment; without
    it, the running Ray's."""
    res = spec.resources
    if known is None:
        import ray
        total = ray.cluster_resources()
    else:
        total = known
    for kind, per_worker in (("CPU", res.cpus_per_worker), ("GPU", res.gpus_per_worker)):
        if kind not in total and known is not None:
            continue
        need, have = res.workers * per_worker, total.get(kind, 0)
        if need <= have:
            continue
        if embedded:
            raise SpecError(f"{spec.source}: resources: a trial needs {need:g} {kind}s "
                            f"({res.workers} workers x {per_worker:g}), this machine's Ray has "
                            f"{have:g}; lower resources.workers or "
                            f"resources.{kind.lower()}s_per_worker, or join a cluster (--address)")
        return (f"waiting for resources: a trial needs {need:g} {kind}s ({res.workers} workers "
                f"x {per_worker:g}), the cluster has {have:g}; trials start when nodes join "
                "(Ctrl-C stops; `ablate resume` goes on later)")
    if known is not None:
        return None
    import ray
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if nodes and not any(n.get("CPU", 0) >= res.cpus_per_worker and n.get("GPU", 0) >= res.gpus_per_worker
                         for n in nodes):  # the totals suffice, but one worker fits on no node
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
        return (f"waiting for resources: one worker needs {res.cpus_per_worker:g} CPUs and "
                f"{res.gpus_per_worker:g} GPUs on one node, the largest node has "
                f"{largest.get('CPU', 0):g} and {largest.get('GPU', 0):g}; trials start when "
                "such a node joins (Ctrl-C stops; `ablate resume` goes on later)")
    return None


def check_fits_machine(spec: SweepSpec, address: str | None) -> None:
    """Before the embedded Ray starts: a gang larger than this machine's CPUs, which is what
    that Ray gets, is refused at once (its GPUs are Ray's to find once it runs)."""
    if not address:
        check_fits(spec, embedded=True, known={"CPU": float(os.cpu_count() or 1)})


def concurrent_trials(spec: SweepSpec) -> int:
    """How many trials the cluster can hold at once: more would only queue Train workers (and
    their processes) behind a busy CPU or GPU, and time each other's training unfairly."""
    import ray

    total = ray.cluster_resources()
    res = spec.resources
    fits = [total.get("CPU", 0) // (res.workers * res.cpus_per_worker) if res.cpus_per_worker else None,
            total.get("GPU", 0) // (res.workers * res.gpus_per_worker) if res.gpus_per_worker else None]
    fits = [int(f) for f in fits if f is not None]
    return max(1, min(fits)) if fits else 1


def trial_settings(spec: SweepSpec, storage: str | Path, data: str | Path) -> dict[str, Any]:
    """What every trial of a sweep or a step search needs besides its config: storage, sweep,
    data, builtin (prepare the built-in corpus on the node if missing), resources (workers,
    cpus_per_worker, gpus_per_worker, placement), max_failures, stall_timeout, the axes and target that
    each curve records for `ablate report` (and the baseline, when the spec names one), and
    the prefix of the sweep's trial ids."""
    return dict(storage=storage_root(storage), sweep=spec.name, data=str(data),
                builtin=spec.data == BUILTIN_DATA, trial_prefix=new_prefix()) | spec_settings(spec)


def trainable(settings: dict[str, Any]):
    """The Trial class with the sweep's typed settings and its resource request (sweeps/worker.py)."""
    from ray import tune

    from ablate.sweeps.worker import Trial, TrialSettings

    typed = TrialSettings.of(settings)
    return tune.with_resources(tune.with_parameters(Trial, settings=typed), typed.placement_group())


def earlier_sessions(folder: str, stopped: set[str]) -> tuple[set[str], list[tuple]]:
    """What the curves of earlier sessions hold, each curve read once: the trials that
    finished (their curve ended, or early stopping ended them), and every validation point
    as (num_iterations, step, val_loss), for the stopper."""
    tables = curve_tables(folder, ["num_iterations", "step", "val_loss", "status"])
    finished = {trial_id for trial_id, table in tables.items() if ended(final_point(table))}
    points = [point for table in tables.values()
              for point in zip(*(table[c].to_pylist() for c in ("num_iterations", "step", "val_loss")))]
    return finished | stopped, points


def same_trial_ids(prefix: str, max_concurrent: int, points: list[dict[str, Any]] | None = None):
    """Tune's grid search (or its run of given `points`), with trial ids `<prefix>_<index>`
    instead of a new random prefix each session: the same spec gives the same trials the same
    ids."""
    from ray.tune.search import BasicVariantGenerator

    generator = BasicVariantGenerator(max_concurrent=max_concurrent, points_to_evaluate=points)
    generator._uuid_prefix = f"{prefix}_"  # the one attribute Tune draws at random
    return generator


def build_tuner(spec: SweepSpec, settings: dict[str, Any], callbacks: list | None = None,
                control=None):
    """A Tuner for the spec's grid, new or continuing: trials whose curve has ended (or that
    early stopping ended, trials.json) end at once; unfinished ones continue from their last
    checkpoint; failed ones run again. The same_budget stopper starts from the losses the
    curves hold. Besides `callbacks` (the live view), the spec's trackers and TensorBoard log
    every trial at its training step (sweeps/tracking.py); `control` (sweeps/control.py) acts
    on `ablate stop`."""
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from ablate.sweeps import tracking
    from ablate.sweeps.control import clear_request
    from ablate.sweeps.ledger import TrialLedger
    from ablate.sweeps.stoppers import StopControl, early_stopping

    folder = join(settings["storage"], settings["sweep"])
    space = {"preset": spec.preset, **spec.fixed}
    points = None  # a grid: Tune's grid search; sampled points: those points, in their order
    if spec.sampling.method == "grid":
        space |= {name: tune.grid_search(values) for name, values in spec.axes.items()}
        space |= {"seed": tune.grid_search(list(spec.seeds))}
    elif spec.sampling.method == "random":  # the drawn points; the domains only name the keys
        points = [{k: t[k] for k in coordinates(list(spec.axes))} for t in spec.trials()]
        space |= {name: tune.choice(values) for name, values in spec.axes.items()}
        space |= {"seed": tune.choice(list(spec.seeds))}
    # tpe: the points come from the study, one at a time (sweeps/tpe.py), and set their keys
    if spec.sampling.method == "tpe":  # any point may run: the longest of them all
        from ablate.sweeps.tpe import candidates

        longest = max(spec.train_config(t).num_iterations for t in candidates(spec).trials())
    else:
        longest = max(spec.train_config(t).num_iterations for t in spec.trials())
    stopped = stopped_trials(folder)
    finished, history = earlier_sessions(folder, stopped)
    stopper, scheduler = early_stopping(spec.early_stopping, longest, history)
    clear_request(folder)  # `ablate stop` asks the sweep running now, not a later session
    control = control or StopControl(folder)
    stopper = CombinedStopper(stopper, control) if stopper else control
    loggers = tracking.callbacks(spec.tracking, settings["sweep"], folder, finished)
    at_once = spec.max_concurrent_trials or concurrent_trials(spec)
    if spec.sampling.method == "tpe":
        from ablate.sweeps.tpe import tpe_search

        trials, samples = tpe_search(spec, settings["storage"], settings["trial_prefix"], at_once), spec.size
    else:
        trials, samples = same_trial_ids(settings["trial_prefix"], at_once, points), len(points or [0])
    return tune.Tuner(
        trainable(settings | {"stopped": sorted(stopped)}),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=trials, scheduler=control.hold(scheduler), num_samples=samples,
            reuse_actors=True),  # a trial's driver process (and its imports) serves the next
        run_config=tune.RunConfig(name=settings["sweep"], storage_path=settings["storage"],
                                  verbose=0, stop=stopper,
                                  callbacks=[*(callbacks or []), TrialLedger(folder, list(spec.axes)),
                                             control, *loggers],
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
