"""How a trial's workers find each other: a c10d store confined to the address the workers
reach rank 0 at.

torch's TCPStore (which every rank joins to set up gloo or NCCL) listens on every interface
and answers any client that connects, so a default rendezvous opens a port to whoever can
reach the node. Given a socket already bound, the store listens on that instead: rank 0
binds one to its Ray node address, or to 127.0.0.1 when the whole gang is on one node
(always, on the embedded Ray), and every rank joins through it (sweeps/gang.py).
"""

from __future__ import annotations

import datetime
import os
import socket

LOOPBACK = "127.0.0.1"
_listener: socket.socket | None = None  # rank 0's bound socket, open for the store's life


def listen(address: str) -> int:
    """Rank 0: a socket bound to `address` on a port the OS picks; returns the port."""
    global _listener
    if _listener is not None:
        _listener.close()
    _listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    _listener.bind((address, 0))
    _listener.listen(4096)
    return _listener.getsockname()[1]


def join(backend: str, address: str, port: int, world_rank: int, world_size: int, timeout_s: int) -> None:
    """Every rank: the store (rank 0 serves it on its bound socket), then the process group."""
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    nccl_errors = ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_BLOCKING_WAIT")
    if backend == "nccl" and not any(v in os.environ for v in nccl_errors):
        os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"  # as Ray sets it: a timeout fails, not hangs
    rank0 = world_rank == 0
    listener = _listener.fileno() if rank0 and _listener is not None else None
    store = dist.TCPStore(address, port, world_size, is_master=rank0, timeout=timeout,  # pyright: ignore[reportPrivateImportUsage]  # torch's, not in its exports
                          master_listen_fd=listener)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size,
                            timeout=timeout)
