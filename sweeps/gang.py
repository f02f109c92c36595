"""A trial slot's warm worker group: W Ray actors that join one process group once, then run
trial after trial.

Ray Train's `TorchTrainer.fit` pays 10-13 s of orchestration a trial on this machine (a
controller, a worker group, a rendezvous, a storage context), again for every trial; a sweep
of short trials spent more time starting than training. The gang pays that once per
concurrency slot, and a later trial on it starts in a tenth of a second (docs/sweeps.md).

What Ray Train did and the gang does itself:
- placement: the workers sit on bundles 1..W of the trial's own placement group (Tune's; bundle
  0 holds the trial's driver), so Tune's accounting of resources stays exact;
- rendezvous: rank 0's c10d store listens on loopback when the gang is on one node, else on
  rank 0's node address (sweeps/rendezvous.py), never on every interface;
- devices: on each node the gang's GPUs are visible to all its workers there (NCCL's peer
  paths), each worker on its own one;
- state between trials: none but the process group. Each trial builds its model, optimizers,
  data streams and RNG from its config (the trainer seeds everything), and compiled graphs
  are dropped when a trial's shapes differ from the previous one's.

Faults are the driver's to handle (sweeps/worker.py): a gang whose worker died, hung or
failed is killed whole and a new one is made.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from ablate.sweeps import rendezvous
from ablate.trainer.config import TrainConfig

if TYPE_CHECKING:
    from ablate.trainer.train import Points  # torch: imported by the workers only

PG_TIMEOUT_S = 1800  # the process group's collective timeout, as Ray Train's default


@dataclass(frozen=True)
class TrialWork:
    """What every worker needs to run one trial: the config (built once, by the driver), the
    curve's extra metadata, where rank 0 publishes the curve (URI storage) and keeps
    checkpoints, and whether the built-in corpus must be prepared on the node."""

    config: TrainConfig
    checkpoints: str  # the trial's checkpoint folder in storage (sweeps/checkpoints.py)
    curve_meta: dict[str, Any] = field(default_factory=dict)
    curve_uri: str | None = None  # the curve's place in URI storage; None: written in place
    builtin: bool = False


@dataclass(frozen=True)
class Point:
    """One validation point as rank 0 saw it: the metrics, the checkpoint it kept (if one was
    due) and the node it ran on."""

    metrics: dict[str, Any]
    checkpoint: str | None
    node_id: str


class GangWorker:
    """One rank of the gang (a Ray actor). Holds the process group for the gang's life and
    the current trial's run between its validation points."""

    def __init__(self) -> None:
        self.rank = -1
        self.run: Points | None = None
        self.work: TrialWork | None = None
        self.shapes: tuple | None = None

    def place(self) -> tuple[str, str, list[str]]:
        """This worker's node address, node id and GPU ids."""
        context = ray.get_runtime_context()
        return (ray.util.get_node_ip_address(), context.get_node_id(),
                [str(i) for i in context.get_accelerator_ids().get("GPU", [])])

    def listen(self, address: str) -> int:
        return rendezvous.listen(address)

    def join(self, backend: str, address: str, port: int, rank: int, world: int,
             devices: str | None, local_rank: int) -> int:
        """Join the gang's process group (and, on GPUs, see the node's gang devices, before
        CUDA starts in this process); returns the process id."""
        if devices is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = devices
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
        if backend == "nccl":
            import torch

            torch.cuda.set_device(local_rank)
        rendezvous.join(backend, address, port, rank, world, PG_TIMEOUT_S)
        self.rank = rank
        return os.getpid()

    def start(self, work: TrialWork, resume: str | None) -> None:
        """Begin a trial (up to, not including, its first validation point)."""
        from ablate.sweeps.checkpoints import local_copy
        from ablate.trainer.data import ensure_builtin
        from ablate.trainer.train import training_points

        self.stop()
        if work.builtin:
            ensure_builtin(Path(work.config.data))
        self._forget_compiled(work.config)
        self.work = work
        local = local_copy(resume) if resume is not None else None
        self.run = training_points(work.config, resume=local, curve_meta=work.curve_meta)

    def next(self) -> Point | None:
        """Train to the next validation point; None once the trial's run has ended. Rank 0
        keeps the point's checkpoint and publishes the curve before answering, so storage
        holds the point before the sweep hears of it."""
        if self.run is None:
            return None
        try:
            metrics, checkpoint = next(self.run)
        except StopIteration:
            self.run = None
            return None
        except BaseException:
            self._publish()  # the last rows, a failure's included
            raise
        kept = None
        if self.rank == 0:
            try:
                kept = self._keep(metrics, checkpoint)
            except BaseException as e:  # a full disk: the run ends failed, and says so
                self.run.throw(e)
        return Point(metrics, kept, ray.get_runtime_context().get_node_id())

    def stop(self) -> None:
        """Leave the current trial between two validation points (early stopping); the
        process group stays."""
        if self.run is not None:
            self.run.close()
            self.run = None
        gc.collect()

    def _keep(self, metrics: dict[str, Any], checkpoint: Path | None) -> str | None:
        from ablate.sweeps.checkpoints import keep_checkpoint

        assert self.work is not None
        kept = keep_checkpoint(checkpoint, self.work.checkpoints, metrics) if checkpoint else None
        self._publish()
        return kept

    def _publish(self) -> None:
        """Rank 0, URI storage: copy the local curve (and, once it has them, the final
        weights, first: a curve that says completed has its weights beside it) to storage."""
        work = self.work
        if self.rank != 0 or work is None or work.curve_uri is None or not Path(work.config.out).exists():
            return
        from ablate.sweeps.storage import upload
        from ablate.trainer.weights import weights_location, weights_path

        weights = weights_path(work.config.out)
        if weights.exists():
            upload(weights, weights_location(work.curve_uri))
        upload(work.config.out, work.curve_uri)

    def _forget_compiled(self, config: TrainConfig) -> None:
        """Drop the compiled graphs when this trial's shapes differ from the last one's: a
        same-shape trial reuses them (the compile is most of a short trial's start-up)."""
        shapes = (config.model, config.tokens_per_step, config.micro_tokens, config.val_seq_len)
        if config.compile is not False and self.shapes is not None and shapes != self.shapes:
            import torch._dynamo

            torch._dynamo.reset()
        self.shapes = shapes


class Gang:
    """W GangWorkers on bundles 1..W of the calling trial's placement group (or `group`), in
    one process group whose store listens at `store` (address, port)."""

    def __init__(self, workers: int, cpus_per_worker: float, gpus_per_worker: float, group=None):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = group or ray.util.get_current_placement_group()
        assert group is not None, "a gang is made inside a trial (its placement group) or given one"
        actor: Any = ray.remote(GangWorker)  # typed as Ray makes it: a class whose methods are remote
        self.workers: list[Any] = [
            actor.options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=0,
                          scheduling_strategy=PlacementGroupSchedulingStrategy(
                              group, placement_group_bundle_index=rank + 1)).remote()
            for rank in range(workers)]
        self.backend = "nccl" if gpus_per_worker else "gloo"
        self.pids = self._join()

    def _join(self) -> list[int]:
        places = ray.get([w.place.remote() for w in self.workers])
        nodes = [node for _, node, _ in places]
        address = rendezvous.LOOPBACK if len(set(nodes)) == 1 else places[0][0]
        port = ray.get(self.workers[0].listen.remote(address))
        self.store = (address, port)
        calls = []
        for rank, (worker, (_, node, gpus)) in enumerate(zip(self.workers, places)):
            node_gpus = sorted({g for _, n, ids in places if n == node for g in ids}, key=_gpu_order)
            devices = ",".join(node_gpus) if gpus else None
            local_rank = node_gpus.index(gpus[0]) if gpus else 0
            calls.append(worker.join.remote(self.backend, address, port, rank, len(self.workers),
                                            devices, local_rank))
        return ray.get(calls)

    def start(self, work: TrialWork, resume: str | None) -> None:
        ray.get([w.start.remote(work, resume) for w in self.workers])

    def next_refs(self) -> list[ray.ObjectRef]:
        return [w.next.remote() for w in self.workers]

    def stop(self, timeout: float = 60) -> None:
        ray.get([w.stop.remote() for w in self.workers], timeout=timeout)

    def kill(self) -> None:
        """End every worker now (a stopped process too: Ray SIGKILLs it)."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)


def _gpu_order(gpu_id: str) -> tuple[int, str]:
    return (int(gpu_id), gpu_id) if gpu_id.isdigit() else (1 << 30, gpu_id)
