"""The ablation axes on top of the record model, and configs the model refuses."""

import pytest
import torch

from ablate.model import GPT, ConfigError, GPTConfig


def awake(model: GPT, seed: int = 0) -> GPT:
    """Give the zero-initialised output projections and head random values, as a few training
    steps would: at init they block every gradient but the head's, and every signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in model.blocks:
            if b.attn is not None:
                b.attn.o.copy_(torch.randn(b.attn.o.shape, generator=g) * 0.1)
            b.mlp.proj.copy_(torch.randn(b.mlp.proj.shape, generator=g) * 0.05)
        model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape, generator=g) * 0.1)
    return model


def grads(cfg: GPTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = awake(GPT(cfg))
    tokens = torch.randint(0, cfg.vocab_size, (cfg.seq_len,))
    model(tokens, tokens.roll(-1)).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("k", [1, 3])
def test_lambda_init_zero_leaves_extra_tables_without_gradient(k):
    g = grads(GPTConfig.preset("tiny", extra_embeddings=k, lambda_init="zero"))
    for j in range(1, k + 1):
        assert torch.count_nonzero(g[f"embeds.{j}.weight"]) == 0
    assert torch.count_nonzero(g["embeds.0.weight"]) > 0
    assert g["lambdas"][:, 2:].abs().sum() > 0  # the extra tables' weights do learn


@pytest.mark.parametrize("k", [1, 3])
def test_lambda_init_one_trains_every_table(k):
    g = grads(GPTConfig.preset("tiny", extra_embeddings=k, lambda_init="one"))
    for j in range(k + 1):
        assert torch.count_nonzero(g[f"embeds.{j}.weight"]) > 0
    assert g["lambdas"].abs().sum() > 0


def test_at_init_only_the_head_learns_and_the_loss_is_uniform():
    """Zero head: uniform logits over every head row (padding included), and no gradient
    reaches anything but the head on the first step."""
    cfg = GPTConfig.preset("tiny", extra_embeddings=1)
    torch.manual_seed(0)
    model = GPT(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (cfg.seq_len,))
    loss = model(tokens, tokens.roll(-1))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(320.0)).item(), abs=1e-6)
    loss.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0
    assert model.embeds[0].weight.grad.abs().sum() == 0


def test_mixing_formula_matches_hand_computation():
    """x = l0*x + l1*x00 + l2*x01 + l3*x02 before block 0, with x0j = rms_norm(embed_j(tokens))."""
    cfg = GPTConfig.preset("tiny", extra_embeddings=2, lambda_init="one", n_layer=2,
                           value_embeds=0, attn_pattern="LS", skips="")
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        model.lambdas.copy_(torch.tensor([[0.5, 2.0, -1.0, 3.0], [1.5, 0.0, 0.25, 0.0]]))
    tokens = torch.randint(0, cfg.vocab_size, (8,))
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    model(tokens)
    x0 = [torch.nn.functional.rms_norm(e(tokens), (cfg.d_model,)) for e in model.embeds]
    expected = 0.5 * x0[0] + 2.0 * x0[0] - 1.0 * x0[1] + 3.0 * x0[2]
    torch.testing.assert_close(seen[0][0], expected)


def test_token_lambdas_scale_the_main_stream_per_token():
    cfg = GPTConfig.preset("tiny", extra_embeddings=1, token_lambdas=True, lambda_init="one")
    model = GPT(cfg)
    assert len(model.token_lambdas) == cfg.n_layer
    assert all(torch.all(t.weight == 1) for t in model.token_lambdas)
    g = grads(cfg)
    assert g["token_lambdas.0.weight"].abs().sum() > 0


def test_shapes_of_streams_and_batches():
    cfg = GPTConfig.preset("tiny", extra_embeddings=2)
    model = GPT(cfg)
    assert len(model.embeds) == 3
    assert model.lambdas.shape == (cfg.n_layer, 4)
    assert torch.equal(model.lambdas[:, 0], torch.ones(cfg.n_layer))
    assert torch.count_nonzero(model.lambdas[:, 1:]) == 0
    assert model(torch.zeros(16, dtype=torch.long)).shape == (16, 320)
    assert model(torch.zeros(2, 16, dtype=torch.long)).shape == (2, 16, 320)


@pytest.mark.parametrize("overrides, field", [
    (dict(extra_embeddings=7), "extra_embeddings"),
    (dict(extra_embeddings=-1), "extra_embeddings"),
    (dict(n_head=3), "n_head"),
    (dict(lambda_init="half"), "lambda_init"),
    (dict(token_lambdas=True, token_lambda_init=0.0), "token_lambda_init"),
    (dict(value_embeds=9), "value_embeds"),
    (dict(window_final=128), "window_final"),  # longer than the 64-token sequence
    (dict(window_final=-8), "window_final"),  # a negative schedule
    (dict(window_final=0), "window_final"),
    (dict(window_schedule="exponential"), "window_schedule"),
    (dict(attn_pattern="LXSL"), "attn_pattern"),  # unknown layer kind
    (dict(attn_pattern="LSL"), "attn_pattern"),  # not one letter per layer
    (dict(attn_pattern="-SSL"), "attn_pattern"),  # layer 0 reads a value table
    (dict(skips="3->1"), "skips"),
    (dict(skips="0->9"), "skips"),
    (dict(skips="zero to three"), "skips"),
    (dict(attn_block=12), "seq_len"),  # 64 is not a whole number of 12-token blocks
    (dict(attn_block=-8), "attn_block"),
    (dict(eot_token=400), "eot_token"),
    (dict(head_dim=18, d_model=36), "head_dim"),
    (dict(attn_scale=0), "attn_scale"),
    (dict(not_a_field=1), "not_a_field"),
])
def test_impossible_configs_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}:") as e:
        GPTConfig.preset("tiny", **overrides)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("setting, field", [
    ("window_final=100000", "window_final"), ("attn_pattern=LQSL", "attn_pattern"),
    ("window_final=-1", "window_final")])
def test_the_cli_refuses_a_bad_model_field_with_one_line_and_exit_2(setting, field, capsys, tmp_path):
    from ablate.cli import main

    assert main(["train", "--out", str(tmp_path / "c.parquet"), "-s", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{field}:" in err


def test_zero_token_lambda_init_is_allowed_when_the_scalar_starts_at_one():
    GPTConfig.preset("tiny", token_lambdas=True, token_lambda_init=0.0, lambda_init="one")


def test_every_preset_takes_every_axis():
    for preset in GPTConfig.PRESETS:
        for k in range(6):
            GPTConfig.preset(preset, extra_embeddings=k, lambda_init="one", token_lambdas=True)
