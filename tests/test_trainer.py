import json
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import torch

from ablate.results.curves import SCHEMA, read_curve
from ablate.trainer.schedule import lr_multiplier
from ablate.trainer.train import train

from conftest import tiny


def test_a_run_writes_its_curve(tmp_path, data_dir):
    cfg = tiny(data_dir, out=str(tmp_path / "c.parquet"), extra_embeddings=1)
    result = train(cfg)
    table = pq.read_table(result.curve)
    assert table.column_names == SCHEMA.names
    rows = table.to_pylist()
    assert [r["step"] for r in rows] == [0, 4, 8, 12]
    assert [r["status"] for r in rows] == ["running"] * 3 + ["completed"]
    assert rows[0]["train_loss"] is None and rows[0]["train_time_ms"] == 0
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert all(b["train_time_ms"] > a["train_time_ms"] for a, b in zip(rows, rows[1:]))
    assert rows[-1]["tokens_seen"] == 12 * 4 * 64
    assert len(rows[-1]["lambdas"]) == cfg.model.n_layer
    assert len(rows[-1]["lambdas"][0]) == 3  # residual, x00, x01
    read_curve(result.curve)  # schema version checked


def test_the_curve_records_the_schedules_lr_multiplier(tmp_path, data_dir):
    result = train(tiny(data_dir, num_iterations=12, cooldown_frac=0.5))
    assert [r["lr"] for r in result.rows] == [lr_multiplier(s, 12, 0.5) for s in (0, 4, 8, 12)]
    assert result.rows[-1]["lr"] == 0.0  # the record decays to 0, no floor


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from conftest import tiny
    from ablate.trainer.train import Run
    cfg = tiny({data!r}, out={out!r}, workers=2, extra_embeddings=1)
    run = Run(cfg, None)
    run._own_group = False  # keep the group to compare weights after the run
    run.run(None)
    torch.save(run.model.state_dict(), {folder!r} + f"/rank{{dist.get_rank()}}.pt")
    dist.barrier()
    dist.destroy_process_group()
""")


def test_two_gloo_workers_end_with_identical_weights(tmp_path, data_dir):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent),
                                        data=str(data_dir), out=str(tmp_path / "c.parquet"),
                                        folder=str(tmp_path)))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    str(script)], check=True, capture_output=True, timeout=240)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert json.loads(rows[-1]["params"])["workers"] == 2 and rows[-1]["status"] == "completed"
    # DDP trained for real: the weights moved away from the init
    assert torch.count_nonzero(a["blocks.0.mlp.proj"]) > 0


def test_training_reads_the_device_only_at_checks_and_validations(data_dir, monkeypatch):
    """No per-step host sync: the loss is read back every nan_check_every steps and at
    validation points, nowhere else."""
    from ablate.trainer.train import Run

    reads, read = [], Run.train_loss

    def counted(self):
        reads.append(self.step)
        return read(self)

    monkeypatch.setattr(Run, "train_loss", counted)
    train(tiny(data_dir, num_iterations=12, val_every=6, nan_check_every=4))
    assert reads == [4, 6, 8, 12]


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, data_dir, capsys):
    from ablate.cli import main

    common = ["train", "--data", str(data_dir), "-s", "num_iterations=8", "-s", "val_every=4",
              "-s", "checkpoint_every=4", "-s", "tokens_per_step=256", "-s", "val_tokens=1024"]
    assert main([*common, "--out", str(tmp_path / "a.parquet"),
                 "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    assert main([*common, "--out", str(tmp_path / "b.parquet"), "--resume", str(tmp_path / "ck"),
                 "-s", "lr_head=0.001"]) == 2
    assert "resume: the checkpoint is of another config (lr_head" in capsys.readouterr().err
    assert not (tmp_path / "b.parquet").exists()


def test_a_tiny_runs_final_val_loss_is_its_lowest(data_dir):
    """The demo's shape: 100 steps, validation every 20. A window step late in training (or
    any other late rise) would leave the last point above an earlier one."""
    for k, init in ((0, "zero"), (1, "one")):
        rows = train(tiny(data_dir, num_iterations=100, val_every=20, batch_size=8, val_tokens=8192,
                          extra_embeddings=k, lambda_init=init)).rows
        losses = [r["val_loss"] for r in rows]
        assert losses[-1] <= min(losses) + 0.005, (k, init, losses)
