"""Shared fixtures: the built-in corpus as shards (made once), and one local Ray per session.

Each pytest process (`make test` runs two, pytest-xdist) starts its own Ray, one at a time,
with its files in a private temp folder, so that no other Ray on the machine attaches. Tests
share it (in-process sweeps, and `ablate` drivers through `--address`) unless what they test is
a Ray's own start or end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile

import pytest

os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ablate-ray-"))
# One torch thread in each pytest process (set before torch is first imported): `make test`
# runs two on two cores beside Ray's workers, and torch's default of a thread a core makes
# them spin against each other (a tiny training 3x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


# The files that run whole sweeps (half a minute to three minutes each, measured under
# `make test`): started first, longest first, so that the two pytest processes end together
# rather than one waiting on the other's last (`make test` keeps this order: xdist's
# --no-loadscope-reorder).
LONGEST_FIRST = ("test_cluster.py", "test_faults.py", "test_plain_cluster.py", "test_interrupt.py",
                 "test_stop.py", "test_search_run.py", "test_abnormal_end.py", "test_tpe.py",
                 "test_tracking.py", "test_warm.py", "test_gpu_path.py",
                 "test_sweeps.py", "test_search_cli.py", "test_accumulation.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first (in a fixed order, the same in every pytest process); tests
    marked `gpu` need a CUDA device: skipped, with the reason, where none is visible."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu_check.sh runs it on a GPU machine)")
    for item in gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    from ablate.trainer.data import builtin_documents, prepare
    folder = tmp_path_factory.mktemp("data") / "builtin"
    prepare(builtin_documents(), folder, source="pydoc_data.topics")
    return folder


_shared_ray: contextlib.ExitStack | None = None


def shared_ray() -> str:
    """This pytest process's embedded local Ray (2 CPUs), started by the first test that asks
    and kept for every later one (a Ray start and end cost 5-10 s of CPU); its GCS address,
    which `ablate ... --address` drivers join so that they start no Ray of their own."""
    global _shared_ray
    import ray

    from ablate.sweeps.tuner import ray_session
    if _shared_ray is None or not ray.is_initialized():
        end_shared_ray()
        _shared_ray = contextlib.ExitStack()
        _shared_ray.enter_context(ray_session(num_cpus=2))
    return ray.get_runtime_context().gcs_address


def end_shared_ray() -> None:
    """For a test that starts a Ray of its own (a cluster, a fault hook, the embedded Ray under
    test): no other may run in this process meanwhile."""
    global _shared_ray
    import ray

    if _shared_ray is not None:
        _shared_ray.close()
        _shared_ray = None
    ray.shutdown()


def pytest_sessionfinish(session, exitstatus):
    if _shared_ray is not None:
        end_shared_ray()


@pytest.fixture
def local_ray() -> str:
    """The shared local Ray (`shared_ray`): a sweep run in this process uses it."""
    return shared_ray()


def free_port() -> int:
    """A port free now on loopback (for a Ray node's services, which another Ray beside it
    would otherwise collide with at their fixed defaults)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny(data_dir, **overrides):
    """A TrainConfig of the tiny model that trains in about a second."""
    from ablate.trainer.config import TrainConfig
    values = dict(preset="tiny", data=str(data_dir), num_iterations=12, val_every=4,
                  batch_size=4, val_tokens=1024)
    return TrainConfig.from_flat(values | overrides)
