"""Item 4 of the reliability table: what a trial and the embedded Ray open to the network.

A trial's c10d store (every rank joins it to set up gloo or NCCL) listens on the address the
workers reach rank 0 at (loopback for a gang on one node), not on every interface; the
embedded Ray opens no metrics export; its session folder and Ray's token are this user's alone.
Listening sockets are read from /proc/net/tcp{,6}, as `ss -ltn` shows them."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest


def listening(port: int) -> set[str]:
    """The local addresses sockets listen on at `port` (0.0.0.0 or :: for every interface)."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if width == 4:
                found.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(str(ipaddress.IPv6Address(words)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_item04_a_trials_store_listens_on_the_node_address_only(local_ray):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from ablate.sweeps.gang import Gang

    group = placement_group([{"CPU": 0.01}, {"CPU": 0.5}, {"CPU": 0.5}])
    ray.get(group.ready(), timeout=60)
    gang = Gang(2, 0.5, 0, group=group)
    try:
        address, port = gang.store
        assert len(set(gang.pids)) == 2  # two processes joined the group through the store
        assert address == "127.0.0.1"  # the whole gang on one node: loopback
        assert listening(port) == {"127.0.0.1"}  # not 0.0.0.0 / ::
    finally:
        gang.kill()
        remove_placement_group(group)


EMBEDDED = """
import json, sys
from pathlib import Path
from ablate.sweeps.tuner import ray_session
with ray_session(num_cpus=1):
    import ray
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    ports = [int(p.read_text()) for p in session.glob("metrics_export_port_*")]
    print(json.dumps({"session": str(session), "metrics_ports": [p for p in ports if p > 0]}))
"""


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_item04_the_embedded_ray_keeps_its_files_private_and_exports_no_metrics():
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="t"))  # short: Ray's socket paths have a length limit
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_TMPDIR"} | {"TMPDIR": str(tmp)}
        out = subprocess.run([sys.executable, "-c", EMBEDDED], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        root = tmp / f"ablate-ray-{os.getuid()}"
        assert Path(seen["session"]).is_relative_to(root)  # sockets and logs under it
        assert stat.S_IMODE(root.stat().st_mode) == 0o700  # whatever Ray makes inside
        assert seen["metrics_ports"] == []  # no Prometheus export (every interface, no token)
        token = Path.home() / ".ray" / "auth_token"
        if token.exists() and token.stat().st_uid == os.getuid():
            assert stat.S_IMODE(token.stat().st_mode) == 0o600
            assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
