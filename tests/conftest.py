"""Shared fixtures: the built-in corpus as shards (made once), and one local Ray per session.

Each pytest process (`make test` runs two, pytest-xdist) starts its own Ray, one at a time,
with its files in a private temp folder, so that no other Ray on the machine attaches.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ablate-ray-"))
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


# The files that run whole sweeps (a minute or more each): started first, so that the two
# pytest processes of `make test` end together rather than one waiting on the other's last.
LONGEST_FIRST = ("test_stop.py", "test_faults.py", "test_interrupt.py", "test_cluster.py",
                 "test_tracking.py", "test_search_run.py", "test_tpe.py", "test_random_search.py",
                 "test_abnormal_end.py", "test_plain_cluster.py", "test_warm.py", "test_search_cli.py")


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


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray (2 CPUs) shared by a module's tests, shut down after them so
    that a module starting its own cluster never finds a second Ray running."""
    from ablate.sweeps.tuner import ray_session
    with ray_session(num_cpus=2):
        yield


def tiny(data_dir, **overrides):
    """A TrainConfig of the tiny model that trains in about a second."""
    from ablate.trainer.config import TrainConfig
    values = dict(preset="tiny", data=str(data_dir), num_iterations=12, val_every=4,
                  batch_size=4, val_tokens=1024)
    return TrainConfig.from_flat(values | overrides)
