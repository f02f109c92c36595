import pytest
import torch

from ablate.model import GPT, ConfigError, GPTConfig, param_count


def grads(cfg: GPTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = GPT(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len))
    model(tokens, tokens.roll(-1, 1)).backward()
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


def test_mixing_formula_matches_hand_computation():
    """x = l0*x + l1*x00 + l2*x01 before every block, with x0j = rms_norm(embed_j(tokens))."""
    cfg = GPTConfig.preset("tiny", extra_embeddings=2, lambda_init="one", n_layer=2, value_embeds=0)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        model.lambdas.copy_(torch.tensor([[0.5, 2.0, -1.0, 3.0], [1.5, 0.0, 0.25, 0.0]]))
    tokens = torch.randint(0, cfg.vocab_size, (1, 8))
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    model(tokens)
    x0 = [torch.nn.functional.rms_norm(e(tokens), (cfg.d_model,)) for e in model.embeds]
    expected = 0.5 * x0[0] + 2.0 * x0[0] - 1.0 * x0[1] + 3.0 * x0[2]
    torch.testing.assert_close(seen[0], expected)


def test_token_lambdas_scale_the_main_stream_per_token():
    cfg = GPTConfig.preset("tiny", extra_embeddings=1, token_lambdas=True, lambda_init="one")
    model = GPT(cfg)
    assert len(model.token_lambdas) == cfg.n_layer
    assert all(torch.all(t.weight == 1) for t in model.token_lambdas)
    g = grads(cfg)
    assert g["token_lambdas.0.weight"].abs().sum() > 0


def test_shapes():
    cfg = GPTConfig.preset("tiny", extra_embeddings=2)
    model = GPT(cfg)
    assert len(model.embeds) == 3
    assert model.lambdas.shape == (cfg.n_layer, 4)
    assert torch.equal(model.lambdas[:, 0], torch.ones(cfg.n_layer))
    assert torch.count_nonzero(model.lambdas[:, 1:]) == 0
    logits = model(torch.zeros(2, 16, dtype=torch.long))
    assert logits.shape == (2, 16, cfg.vocab_size)


@pytest.mark.parametrize("overrides, field", [
    (dict(extra_embeddings=7), "extra_embeddings"),
    (dict(extra_embeddings=-1), "extra_embeddings"),
    (dict(n_head=3), "n_head"),
    (dict(lambda_init="half"), "lambda_init"),
    (dict(token_lambdas=True, token_lambda_init=0.0), "token_lambda_init"),
    (dict(value_embeds=9), "value_embeds"),
    (dict(window=0), "window"),
    (dict(not_a_field=1), "not_a_field"),
])
def test_impossible_configs_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        GPTConfig.preset("tiny", **overrides)


def test_zero_token_lambda_init_is_allowed_when_the_scalar_starts_at_one():
    GPTConfig.preset("tiny", token_lambdas=True, token_lambda_init=0.0, lambda_init="one")


def test_sliding_window_attends_only_within_the_window():
    cfg = GPTConfig.preset("tiny", window=4, n_layer=2, value_embeds=0)
    torch.manual_seed(0)
    model = GPT(cfg)
    for b in model.blocks:  # make attention matter: undo the zero init of the projections
        torch.nn.init.normal_(b.attn.proj.weight, std=0.1)
    tokens = torch.randint(0, cfg.vocab_size, (1, 16))
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % cfg.vocab_size
    a, b = model(tokens), model(changed)
    # 2 layers of window 4 reach back at most 6 positions; position 15 cannot see position 0
    torch.testing.assert_close(a[0, 15], b[0, 15])
    assert not torch.allclose(a[0, 1], b[0, 1])


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_block_mask_agrees_with_the_sdpa_band():
    """The CUDA path's mask (FlexAttention runs forward on CPU too) against the CPU path's."""
    from ablate.model.gpt import _block_mask, attention, attention_mask

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 256, 16) for _ in range(3))
    band = attention_mask(256, 64, torch.device("cpu"))
    flex = attention(q, k, v, _block_mask(256, 64, "cpu"))
    torch.testing.assert_close(flex, attention(q, k, v, band), atol=1e-5, rtol=1e-4)
    assert attention_mask(256, None, torch.device("cpu")) is None
