"""Each preset is a whole recipe, and `medium` is RECORD.md's (Optimizers; Data, validation,
clock); the trainer builds our Muon and Adam from it and follows its schedules."""

import pytest
import torch

from ablate.model import GPT, ConfigError
from ablate.trainer.config import RECORD_NS_COEFFICIENTS, TrainConfig
from ablate.trainer.muon import Muon
from ablate.trainer.schedule import lr_multiplier, muon_momentum
from ablate.trainer.train import Run, build_optimizers

from conftest import tiny


def test_medium_is_the_records_recipe():
    cfg = TrainConfig.recipe("medium", extra_embeddings=1)
    assert cfg.num_iterations == 5690 and cfg.cooldown_frac == 0.7
    assert cfg.tokens_per_step == 8 * 65_536 == 524_288
    assert cfg.model.seq_len == cfg.micro_tokens == 65_536  # one stream per GPU and micro-step
    assert (cfg.val_tokens, cfg.val_seq_len, cfg.val_every) == (10_485_760, 262_144, 125)
    assert cfg.val_steps(8) == 5  # 5 steps of 8 x 262,144
    assert (cfg.lr_muon, cfg.muon_weight_decay, cfg.muon_momentum) == (0.025, 0.01, 0.95)
    assert (cfg.muon_momentum_start, cfg.muon_momentum_warmup) == (0.85, 300)
    assert cfg.muon_ns_coefficients == RECORD_NS_COEFFICIENTS and cfg.muon_ns_steps is None
    assert cfg.muon_ns_dtype == "bfloat16"
    assert (cfg.lr_head, cfg.lr_embed, cfg.lr_scalar) == (1 / 320, 0.3, 0.015)
    assert cfg.adam_betas == (0.8, 0.95) and cfg.adam_eps == 1e-10
    assert cfg.compile is None and cfg.compile_tuning and cfg.warmup_steps is None  # CUDA: on, 10


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_cpu_presets_keep_the_recipes_structure(preset):
    cfg, medium = TrainConfig.recipe(preset), TrainConfig.recipe("medium")
    assert cfg.tokens_per_step == 8 * cfg.model.seq_len  # 8 streams a step
    assert cfg.val_seq_len == 4 * cfg.model.seq_len  # validation streams 4x as long
    for name in ("lr_muon", "muon_weight_decay", "muon_momentum", "muon_ns_coefficients",
                 "lr_embed", "lr_scalar", "adam_betas", "adam_eps", "cooldown_frac"):
        assert getattr(cfg, name) == getattr(medium, name), name


@pytest.mark.parametrize("values, field", [
    (dict(workers=3), "tokens_per_step"),  # 8 streams do not split over 3 workers
    (dict(tokens_per_step=100), "tokens_per_step"),  # not whole streams of 64
    (dict(micro_tokens=96), "micro_tokens"),  # not a multiple of seq_len
    (dict(micro_tokens=192), "micro_tokens"),  # does not divide a worker's 512 tokens
    (dict(val_tokens=1000), "val_tokens"),
    (dict(val_seq_len=100), "val_seq_len"),
    (dict(batch_size=3, workers=2), "batch_size"),
    (dict(batch_size=2, tokens_per_step=512), "batch_size"),
    (dict(muon_momentum=1.0), "muon_momentum"),
    (dict(muon_ns_coefficients=[[1, 2]]), "muon_ns_coefficients"),
    (dict(adam_eps=0), "adam_eps"),
    (dict(final_lr_frac=0.1), "final_lr_frac"),  # the record decays to 0: no such field
])
def test_batches_that_do_not_split_are_refused_naming_the_field(values, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TrainConfig.recipe("tiny", **values)


def test_every_optimizer_setting_reaches_the_optimizers():
    cfg = TrainConfig.recipe("tiny", lr_muon=0.02, muon_weight_decay=0.03, muon_ns_steps=3,
                             muon_ns_coefficients=[[3.4445, -4.775, 2.0315]], lr_embed=0.2,
                             lr_head=0.001, lr_scalar=0.01, adam_betas=[0.9, 0.99], adam_eps=1e-8,
                             muon_ns_dtype="float32")
    adam, muon = build_optimizers(GPT(cfg.model), cfg, fused=False)
    assert isinstance(muon, Muon)
    assert [g["lr"] for g in adam.param_groups] == [0.2, 0.001, 0.01]
    assert adam.defaults["betas"] == (0.9, 0.99) and adam.defaults["eps"] == 1e-8
    assert adam.defaults["weight_decay"] == 0
    assert [(g["lr"], g["weight_decay"], g["wd_mul"]) for g in muon.param_groups] == \
        [(0.02, 0.03, 1.0), (0.02, 0.03, 2.0)]  # attention matrices, then the MLP's (x2)
    assert muon.ns_coefficients == [(3.4445, -4.775, 2.0315)] * 3
    assert muon.ns_dtype == torch.float32


def test_each_step_takes_the_schedules_lr_and_momentum(data_dir):
    run = Run(tiny(data_dir, num_iterations=300), None)
    adam, muon = run.optimizers
    for step in (0, 150, 299):
        run.step = step
        run.train_step(*run.batch())
        mult = lr_multiplier(step, 300, 0.7)
        assert [g["lr"] for g in adam.param_groups] == [g["initial_lr"] * mult for g in adam.param_groups]
        assert [g["lr"] for g in muon.param_groups] == [0.025 * mult] * 2
        assert [g["momentum"] for g in muon.param_groups] == [muon_momentum(step, 0.85, 0.95, 300)] * 2
        if step == 150:
            assert muon.param_groups[0]["momentum"] == pytest.approx(0.90)
    assert muon.param_groups[0]["lr"] == pytest.approx(0.025 / 210)  # 1 / (0.7 N) at the last step
    run.close()


def test_a_rank_reads_only_its_slice_of_each_step(data_dir):
    """Rank 1 of 2 reads the second half of each step's tokens (+1 target), as rows of seq_len."""
    from ablate.trainer.data import TokenStream, find_shards

    run = Run(tiny(data_dir, batch_size=8), None)  # 512 tokens a step
    run.rank, run.world, run.micro_steps, run.rows_per_micro = 1, 2, 2, 2
    whole = TokenStream(find_shards(data_dir, "train"))
    for _ in range(3):
        x, y = run.batch()
        tokens = torch.from_numpy(whole.next_batch(512).astype("int64"))
        assert x.shape == (2, 2, 64)
        assert torch.equal(x.flatten(), tokens[256:512]) and torch.equal(y.flatten(), tokens[257:513])
    run.close()


def test_adam_moments_take_each_parameters_dtype():
    """RECORD.md: the tables are bf16, so their Adam moments are bf16 (no fp32 copy); head and
    scalars are fp32. Muon's momentum is fp32 whatever the matrix's dtype."""
    cfg = TrainConfig.recipe("tiny")
    model = GPT(cfg.model).use_bf16()
    adam, muon = build_optimizers(model, cfg, fused=False)
    tokens = torch.randint(0, 257, (64,))
    model(tokens, tokens).backward()
    adam.step()
    muon.step()
    tables, head, scalars = (g["params"] for g in adam.param_groups)
    assert {adam.state[p]["exp_avg"].dtype for p in tables} == {torch.bfloat16}
    assert {adam.state[p]["exp_avg_sq"].dtype for p in head + scalars} == {torch.float32}
    assert {s["momentum_buffer"].dtype for s in muon.state.values()} == {torch.float32}
    saved = muon.state_dict()  # and a reload keeps it fp32 (torch would cast it to bf16)
    muon.load_state_dict(saved)
    assert {s["momentum_buffer"].dtype for s in muon.state.values()} == {torch.float32}


def test_the_small_preset_trains_on_cpu(data_dir):
    from ablate.trainer.train import train

    cfg = TrainConfig.recipe("small", data=str(data_dir), num_iterations=6, val_every=3,
                             val_tokens=1024)
    rows = train(cfg).rows
    assert [r["step"] for r in rows] == [0, 3, 6] and rows[-1]["status"] == "completed"
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 1
    assert rows[-1]["tokens_seen"] == 6 * 8 * 128
