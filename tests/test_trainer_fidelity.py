"""Record-fidelity properties of the trainer: resume equals uninterrupted, determinism,
divergence handling. (Preset shapes and parameter counts: tests/test_model_record.py.)"""

import pyarrow.parquet as pq
import pytest
import torch

import ablate.model.gpt
from ablate.results.curves import trial_meta
from ablate.results.logs import parse_log, to_record_log
from ablate.trainer.train import Run, load_checkpoint, train

from conftest import tiny

EXACT = ("step", "val_loss", "train_loss", "tokens_seen", "lr", "lambdas", "status")


class Keep:
    """A reporter that keeps every checkpoint (a dict per step) and can crash on cue."""

    def __init__(self, crash_at: int | None = None):
        self.checkpoints, self.crash_at = {}, crash_at

    def report(self, metrics, checkpoint):
        if checkpoint is not None:
            self.checkpoints[metrics["step"]] = load_checkpoint(checkpoint)
        if metrics["step"] == self.crash_at:
            raise RuntimeError("worker lost")


def run_weights(cfg, reporter=None, resume=None):
    run = Run(cfg, reporter)
    result = run.run(resume)
    return result, {k: v.clone() for k, v in run.model.state_dict().items()}


def test_resumed_run_equals_uninterrupted_run(tmp_path, data_dir):
    cfg = tiny(data_dir, checkpoint_every=4, extra_embeddings=1, token_lambdas=True,
               out=str(tmp_path / "a.parquet"))
    whole, weights = run_weights(cfg)

    crash = Keep(crash_at=8)
    cut = tiny(data_dir, checkpoint_every=4, extra_embeddings=1, token_lambdas=True,
               out=str(tmp_path / "b.parquet"))
    with pytest.raises(RuntimeError, match="worker lost"):
        Run(cut, crash).run(None)
    assert pq.read_table(tmp_path / "b.parquet")["status"].to_pylist()[-1] == "failed"

    torch.save(crash.checkpoints[8], tmp_path / "state.pt")
    resumed, resumed_weights = run_weights(cut, resume=tmp_path / "state.pt")
    a = pq.read_table(tmp_path / "a.parquet").to_pylist()
    b = pq.read_table(tmp_path / "b.parquet").to_pylist()
    assert [r["step"] for r in b] == [0, 4, 8, 12]  # no row missing, none twice
    for ra, rb in zip(a, b, strict=True):
        assert {k: ra[k] for k in EXACT} == {k: rb[k] for k in EXACT}
    for name in weights:
        assert torch.equal(weights[name], resumed_weights[name]), name
    assert trial_meta(tmp_path / "b.parquet")["restarts"] == [8]
    assert trial_meta(tmp_path / "a.parquet")["restarts"] == []


def test_same_seed_same_curve_bit_for_bit(tmp_path, data_dir):
    rows = []
    for i in range(2):
        result = train(tiny(data_dir, extra_embeddings=2, out=str(tmp_path / f"{i}.parquet")))
        rows.append([{k: r[k] for k in EXACT} for r in result.rows])
    assert rows[0] == rows[1]
    other = train(tiny(data_dir, extra_embeddings=2, seed=1))
    assert [r["val_loss"] for r in other.rows][1:] != [r["val_loss"] for r in rows[0]][1:]


def test_nan_loss_ends_the_run_as_diverged_with_rows_kept(tmp_path, data_dir, monkeypatch):
    forward, calls = ablate.model.gpt.GPT.forward, []

    def poisoned(self, tokens, targets=None, **kwargs):
        out = forward(self, tokens, targets, **kwargs)
        if targets is not None and self.training and torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == 6:
                return out * float("nan")
        return out

    monkeypatch.setattr(ablate.model.gpt.GPT, "forward", poisoned)
    result = train(tiny(data_dir, out=str(tmp_path / "c.parquet")))
    assert result.status == "diverged"
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [r["step"] for r in rows] == [0, 4, 6]  # stopped at once, earlier rows kept
    assert [r["status"] for r in rows] == ["running", "running", "diverged"]
    assert rows[-1]["train_loss"] != rows[-1]["train_loss"]  # NaN


def test_record_log_export_parses_back(tmp_path, data_dir):
    result = train(tiny(data_dir, out=str(tmp_path / "c.parquet")))
    text = to_record_log(pq.read_table(result.curve))
    points = parse_log(text, "exported")
    assert [p.step for p in points] == [r["step"] for r in result.rows]
    for p, r in zip(points, result.rows):
        assert p.val_loss == pytest.approx(r["val_loss"], abs=5e-5)
        assert p.train_time_ms == pytest.approx(r["train_time_ms"], abs=0.5)
        assert p.total == 12


def test_export_log_command_prints_the_record_format(tmp_path, data_dir, capsys):
    from ablate.cli import main

    result = train(tiny(data_dir, out=str(tmp_path / "c.parquet")))
    assert main(["export-log", str(result.curve)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("step:12/12 val_loss:")
    assert len(lines) == len(result.rows)


def test_ablate_train_resume_continues_from_the_kept_checkpoint(tmp_path, data_dir, capsys):
    from ablate.cli import main

    args = ["train", "--data", str(data_dir), "--out", str(tmp_path / "c.parquet"),
            "-s", "num_iterations=8", "-s", "val_every=4", "-s", "checkpoint_every=4",
            "-s", "batch_size=4", "-s", "val_tokens=1024"]
    assert main(args + ["--checkpoint-dir", str(tmp_path / "ck")]) == 0
    whole = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert (tmp_path / "ck" / "latest" / "state.pt").is_file()  # the step-4 checkpoint
    assert main(args + ["--resume", str(tmp_path / "ck")]) == 0
    resumed = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [{k: r[k] for k in EXACT} for r in resumed] == [{k: r[k] for k in EXACT} for r in whole]
    assert trial_meta(tmp_path / "c.parquet")["restarts"] == [4]


def test_warm_up_is_undone_and_leaves_the_data_where_it_was(tmp_path, data_dir):
    """RECORD.md: untimed warm-up steps on random tokens, then weights and optimizer state
    restored and the data position untouched: the run equals one without warm-up."""
    cold, cold_weights = run_weights(tiny(data_dir, out=str(tmp_path / "a.parquet")))
    warm_run = Run(tiny(data_dir, warmup_steps=3, out=str(tmp_path / "b.parquet")), None)
    warm = warm_run.run(None)
    assert warm.warmup_ms > 0 and cold.warmup_ms == 0
    assert [{k: r[k] for k in EXACT} for r in warm.rows] == [{k: r[k] for k in EXACT} for r in cold.rows]
    for name, w in warm_run.model.state_dict().items():
        assert torch.equal(w, cold_weights[name]), name
