"""What a trial costs beyond its training: a sweep of N tiny trials on the embedded Ray against
the same N trainings run back to back with `torchrun --nproc_per_node=W -m ablate.trainer train`.

    .venv/bin/python bench/sweep_overhead.py                      # health-check 2 s and 0.1 s
    .venv/bin/python bench/sweep_overhead.py --health-check 0.1 --tree /tmp/old-checkout

Prints, per setting: the sweep's wall time, the ratio to torchrun's, the overhead per trial
in seconds (sweep minus torchrun, divided by N), and each trial's fixed cost (its wall time in
Tune minus its training time). Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
[sweep]
name = "overhead"
data = "{data}"
seeds = {seeds}

[resources]
workers = {workers}

[fixed]
num_iterations = {steps}
val_every = {val_every}
batch_size = 8
val_tokens = 2048

[axes]
extra_embeddings = {embeddings}
"""


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float | None = None) -> float | None:
    """Wall seconds of a command, or None if it hung past `timeout` (it and the Ray it
    started, all in its own session, are then killed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return time.perf_counter() - t0


def train_seconds(curve: Path) -> float:
    import pyarrow.parquet as pq
    return pq.read_table(curve, columns=["train_time_ms"])["train_time_ms"][-1].as_py() / 1000


def torchrun(configs, args, data: Path, out: Path, env) -> tuple[float, list[float]]:
    total, fixed = 0.0, []
    for i, cfg in enumerate(configs):
        curve = out / f"torchrun-{i}.parquet"
        sets = [f"-s={k}={v}" for k, v in cfg.items()]
        wall = run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.workers}",
                    "-m", "ablate.trainer", "train", "--data", str(data), "--out", str(curve), *sets],
                   env, ROOT)
        total += wall
        fixed.append(wall - train_seconds(curve))
    return total, fixed


def sweep(args, data: Path, out: Path, env, interval: str) -> tuple[float | None, list[float]]:
    from ray.tune import ExperimentAnalysis

    spec = out / f"spec-{interval}.toml"
    spec.write_text(SPEC.format(data=data, seeds=args.seeds, workers=args.workers, steps=args.steps,
                                val_every=args.val_every, embeddings=list(range(args.trials // args.seeds))))
    storage = out / f"sweep-{interval}"
    env = env | {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": interval}
    wall = run([sys.executable, "-m", "ablate.sweeps.cli", "sweep", str(spec), "--storage", str(storage)],
               env, args.tree, timeout=args.timeout)
    if wall is None:
        return None, []
    fixed = []
    for trial in ExperimentAnalysis(str(storage / "overhead")).trials:
        curve = storage / "overhead" / "curves" / f"{trial.trial_id}.parquet"
        fixed.append(trial.last_result["time_total_s"] - train_seconds(curve))
    return wall, fixed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--health-check", nargs="+", default=["2", "0.1"], metavar="S",
                   help="RAY_TRAIN_HEALTH_CHECK_INTERVAL_S values to measure")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a sweep counts as hung")
    p.add_argument("--tree", type=Path, default=ROOT,
                   help="checkout whose `sweeps` to measure (e.g. an older one, for before/after)")
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.tree), OMP_NUM_THREADS="1")
    configs = [dict(extra_embeddings=k, seed=s, num_iterations=args.steps, val_every=args.val_every,
                    batch_size=8, val_tokens=2048)
               for k, s in itertools.product(range(args.trials // args.seeds), range(args.seeds))]
    with tempfile.TemporaryDirectory(prefix="ablate-bench-") as tmp:
        out = Path(tmp)
        env.setdefault("RAY_TMPDIR", str(out / "ray"))  # private: no other Ray attaches
        data = out / "data"
        run([sys.executable, "-m", "ablate.trainer", "data", "builtin", "--out", str(data)], env, ROOT)
        base, base_fixed = torchrun(configs, args, data, out, env)
        n = len(configs)
        print(f"{n} trials of {args.steps} tiny steps on {args.workers} gloo workers, {os.cpu_count()} CPUs")
        print(f"torchrun back to back: {base:6.1f} s  ({base / n:.1f} s a run, "
              f"fixed cost {statistics.mean(base_fixed):.1f} s a run)")
        for interval in args.health_check:
            wall, fixed = sweep(args, data, out, env, interval)
            if wall is None:
                print(f"sweep, health check {interval:>4} s: hung, killed after {args.timeout:.0f} s")
                continue
            print(f"sweep, health check {interval:>4} s: {wall:6.1f} s  ratio {wall / base:4.2f}  "
                  f"overhead {(wall - base) / n:5.1f} s a trial  "
                  f"(in Tune: fixed cost {statistics.mean(fixed):.1f} s a trial)")


if __name__ == "__main__":
    main()
