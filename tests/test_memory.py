"""Peak memory per GPU estimated before a sweep starts, and specs that would not fit refused."""

from pathlib import Path

import pytest

from ablate.cli import main
from ablate.sweeps.plan import check_memory, plan
from ablate.sweeps.spec import SpecError, load_spec
from ablate.trainer.config import TrainConfig
from ablate.trainer.memory import GIB, MIB, estimate_memory

MEDIUM = Path(__file__).resolve().parents[1] / "sweeps" / "presets" / "embeds-medium.toml"


def test_estimate_is_calibrated_on_the_record_and_predicts_its_parent():
    record = TrainConfig.recipe("medium", extra_embeddings=1, workers=8)
    assert estimate_memory(record).total / MIB == pytest.approx(53_988, abs=1)
    # The parent record (k = 0) was not used to calibrate: measured 53,367 MiB (RECORD.md).
    parent = TrainConfig.recipe("medium", extra_embeddings=0, workers=8)
    assert estimate_memory(parent).total / MIB == pytest.approx(53_367, rel=0.01)
    # One GPU runs the same stream per micro-step: only Muon's state is no longer shared.
    alone = estimate_memory(TrainConfig.recipe("medium", extra_embeddings=1), workers=1)
    assert 0 < alone.total - estimate_memory(record).total < 1.5 * GIB


def test_dry_run_of_the_medium_sweep_shows_the_records_batch_within_80_gb(capsys):
    assert main(["sweep", str(MEDIUM), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "524,288" in out and "1 x 65,536" in out
    spec = load_spec(MEDIUM)
    check_memory(spec)  # fits: no error
    for t in plan(spec).trials:
        assert t.tokens_per_step == 524_288 and t.micro_steps == 1
        assert t.memory.total < 80 * GIB
        assert f"{t.memory.total / GIB:.1f} GiB" in out


def test_a_spec_asking_8x_the_tokens_per_gpu_is_refused_with_the_numbers():
    spec = load_spec(MEDIUM, settings={"fixed.tokens_per_step": 8 * 524_288,
                                       "fixed.micro_tokens": 8 * 65_536})
    with pytest.raises(SpecError, match=r"resources.gpu_memory_gb: trial 0 \(extra_embeddings=0, "
                       r"num_iterations=4500\) needs an estimated 3\d\d\.\d GB per GPU") as e:
        check_memory(spec)
    assert "at 524,288 tokens per micro-step, more than the 80 GB declared" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_8x_the_tokens_per_step_fits_as_8_micro_steps():
    spec = load_spec(MEDIUM, settings={"fixed.tokens_per_step": 8 * 524_288})
    check_memory(spec)
    assert {t.micro_steps for t in plan(spec).trials} == {8}
    fewer = load_spec(MEDIUM, settings={"resources.workers": 2})
    assert {(t.tokens_per_step, t.micro_steps) for t in plan(fewer).trials} == {(524_288, 4)}


def test_cpu_specs_are_not_held_to_gpu_memory():
    spec = load_spec(Path(MEDIUM).parent / "demo.toml", settings={"fixed.tokens_per_step": 2**20})
    check_memory(spec)
