"""Facts of RECORD.md's Model section, each seen by a test (docs/record-parity.md maps them)."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_model import awake

from ablate.model import GPT, GPTConfig, param_count
from ablate.model.gpt import rotary_frequencies, rotary_tables, rotate


def meta_model(**overrides) -> GPT:
    with torch.device("meta"):
        return GPT(GPTConfig.preset("medium", **overrides))


def mini_medium(**overrides) -> GPTConfig:
    """The medium structure (16 layers, value tables, block 7, skips, windows) at CPU width."""
    return GPTConfig.preset("medium", **{**dict(vocab_size=300, eot_token=299, d_model=64,
                                                n_head=2, head_dim=32, seq_len=256, attn_block=16,
                                                window_final=128), **overrides})


# --- shapes and the exact parameter count ----------------------------------------------------

def record_params(k: int) -> int:
    """RECORD.md's shapes, written out: 1 + k input and 5 value tables of 50257 x 1024; 15
    attention blocks of 4 matrices 1024 x 1024; 16 MLPs of 4096 x 1024 and 1024 x 4096; head
    50304 x 1024; scalars: 16 skip weights, 16 x (k + 2) block lambdas, 16 x 2 value lambdas."""
    tables = (1 + k + 5) * 50257 * 1024
    attention = 15 * 4 * 1024 * 1024
    mlp = 16 * (4096 * 1024 + 1024 * 4096)
    head = 50304 * 1024
    scalars = 16 + 16 * (k + 2) + 16 * 2
    return tables + attention + mlp + head + scalars


@pytest.mark.parametrize("k", [0, 1])
def test_medium_has_the_records_exact_parameter_count(k):
    assert record_params(0) == 557_422_672 and record_params(1) == 608_885_856
    model = meta_model(extra_embeddings=k)
    assert model.num_params() == record_params(k)
    assert param_count(model.config) == record_params(k)


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
@pytest.mark.parametrize("k, token_lambdas", [(0, False), (1, False), (5, True)])
def test_parameter_count_formula_matches_every_preset(preset, k, token_lambdas):
    cfg = GPTConfig.preset(preset, extra_embeddings=k, token_lambdas=token_lambdas)
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() == param_count(cfg)


def test_medium_has_the_records_shapes():
    m = meta_model(extra_embeddings=1)
    cfg = m.config
    assert (cfg.n_layer, cfg.n_head, cfg.head_dim, cfg.d_model) == (16, 8, 128, 1024)
    assert [e.weight.shape for e in m.embeds] == [(50257, 1024)] * 2
    assert [e.weight.shape for e in m.value_embeds] == [(50257, 1024)] * 5
    assert m.lm_head.weight.shape == (50304, 1024)  # 50257 rounded up to a multiple of 128
    a = m.blocks[0].attn
    assert [w.shape for w in (a.q, a.k, a.v, a.o)] == [(1024, 1024)] * 4
    assert m.blocks[0].mlp.fc.shape == (4096, 1024) and m.blocks[0].mlp.proj.shape == (1024, 4096)
    assert m.lambdas.shape == (16, 3) and m.ve_lambdas.shape == (16, 2)
    assert m.skip_weights.shape == (16,)
    assert cfg.eot_token == 50256 and cfg.attn_scale == 0.12


def test_block_7_of_medium_has_no_attention():
    m = meta_model(extra_embeddings=1)
    assert [i for i, b in enumerate(m.blocks) if b.attn is None] == [7]
    assert not [n for n, _ in m.blocks[7].named_parameters() if "attn" in n]
    assert sorted(n for n, _ in m.blocks[7].named_parameters()) == ["mlp.fc", "mlp.proj"]


def test_nothing_else_no_biases_no_tying():
    m = meta_model(extra_embeddings=1)
    names = [n for n, _ in m.named_parameters()]
    assert not [n for n in names if "bias" in n]
    assert m.lm_head.weight is not m.embeds[0].weight
    assert not [x for x in m.modules() if isinstance(x, (torch.nn.Dropout, torch.nn.LayerNorm))]


# --- initialisation --------------------------------------------------------------------------

def test_init_distributions():
    """Tables N(0, 1); q, k, v and fc uniform with std 0.5/sqrt(1024) (bound sqrt(3)*std);
    output projections, MLP projections and head zero. Checked at the record's width
    (d_model 1024), with a small vocabulary and two layers to stay light."""
    cfg = GPTConfig.preset("medium", vocab_size=2048, n_layer=2, attn_pattern="LL", skips="",
                           value_embeds=1, extra_embeddings=1, seq_len=4096, eot_token=2047)
    torch.manual_seed(0)
    m = GPT(cfg)
    for e in (*m.embeds, *m.value_embeds):
        w = e.weight
        n = w.numel()  # mean within 4 standard errors, std within 4 of its own
        assert abs(w.mean().item()) < 4 / math.sqrt(n)
        assert abs(w.std().item() - 1) < 4 * math.sqrt(0.5 / n)
    std = 0.5 / math.sqrt(1024)
    a = m.blocks[0].attn
    for w in (a.q, a.k, a.v, m.blocks[0].mlp.fc, m.blocks[1].mlp.fc):
        n = w.numel()
        assert abs(w.mean().item()) < 4 * std / math.sqrt(n)
        assert abs(w.std().item() / std - 1) < 4 * math.sqrt(0.2 / n)  # uniform: var of s^2 is 0.8 s^4 / n
        assert w.abs().max().item() <= math.sqrt(3) * std
        assert w.abs().max().item() > 0.999 * math.sqrt(3) * std  # uniform, not normal
    for w in (a.o, m.blocks[0].mlp.proj, m.lm_head.weight):
        assert torch.count_nonzero(w) == 0


@pytest.mark.parametrize("lambda_init, expected", [("zero", [1.0, 0.0, 0.0]), ("one", [1.0, 1.0, 1.0])])
def test_scalar_inits(lambda_init, expected):
    m = GPT(mini_medium(extra_embeddings=1, lambda_init=lambda_init, token_lambdas=True))
    assert m.lambdas.tolist() == [expected] * 16
    assert m.ve_lambdas.tolist() == [[0.5, 0.5]] * 16
    assert m.skip_weights.tolist() == [1.0] * 16
    assert all(torch.all(t.weight == 1) for t in m.token_lambdas)


# --- rotary, soft cap, skips, value tables ---------------------------------------------------

def test_rotary_is_half_truncated_with_32_frequencies_from_1_to_1_over_1024():
    freqs = rotary_frequencies(128, 1 / 1024)
    expected = [(1 / 1024) ** (i / 31) for i in range(32)] + [0.0] * 32
    torch.testing.assert_close(freqs, torch.tensor(expected), rtol=1e-6, atol=0)
    cfg = GPTConfig()
    cos, sin = rotary_tables(65536, cfg, "cpu")
    p = 65535  # positions are absolute over the whole stream
    torch.testing.assert_close(cos[p], torch.cos(p * freqs))
    torch.testing.assert_close(sin[p], torch.sin(p * freqs))


def test_rotate_pairs_dims_j_and_j_plus_64():
    cfg = GPTConfig()
    rope = rotary_tables(5, cfg, "cpu")
    x = torch.randn(1, 5, 2, 128)
    y = rotate(x, rope)
    cos, sin = rope[0][None, :, None], rope[1][None, :, None]
    x1, x2 = x[..., :64], x[..., 64:]
    torch.testing.assert_close(y[..., :64], x1 * cos + x2 * sin)
    torch.testing.assert_close(y[..., 64:], -x1 * sin + x2 * cos)
    # the 32 zero frequencies leave dims 32..63 and 96..127 as they were
    torch.testing.assert_close(y[..., 32:64], x[..., 32:64])
    torch.testing.assert_close(y[..., 96:], x[..., 96:])


def test_soft_cap_is_15_z_over_sqrt_z2_plus_225():
    m = GPT(mini_medium())
    with torch.no_grad():
        m.lm_head.weight.normal_(0, 10)
    x = torch.randn(7, 64)
    z = x @ m.lm_head.weight.T
    torch.testing.assert_close(m.logits(x), 15 * z / torch.sqrt(z**2 + 225))
    assert not torch.allclose(m.logits(x), 15 * torch.tanh(z / 15), atol=1e-3)
    assert m.logits(x).abs().max() < 15


def block_inputs_and_outputs(model: GPT, tokens):
    ins, outs = [], []
    def keep(mod, args, out):
        ins.append(args[0])
        outs.append(out)

    for b in model.blocks:
        b.register_forward_hook(keep)
    model(tokens)
    return ins, outs


def test_skip_map_6_to_9_4_to_10_2_to_11_added_before_the_mix():
    torch.manual_seed(0)
    m = awake(GPT(mini_medium(extra_embeddings=1)))
    with torch.no_grad():  # distinct weights show which index each skip reads
        m.skip_weights.copy_(torch.arange(16, dtype=torch.float32) / 10 + 0.05)
        m.lambdas[:, 1:].normal_()  # a non-trivial mix after the skip
    tokens = torch.randint(0, 299, (64,))
    ins, outs = block_inputs_and_outputs(m, tokens)
    x00, x01 = (F.rms_norm(e(tokens)[None], (64,)) for e in m.embeds)
    skip = {9: 6, 10: 4, 11: 2}
    for i in range(1, 16):
        x = outs[i - 1]
        if i in skip:
            x = x + m.skip_weights[skip[i]] * outs[skip[i]]
        lam = m.lambdas[i]
        expected = lam[0] * x + lam[1] * x00 + lam[2] * x01
        torch.testing.assert_close(ins[i], expected, msg=f"block {i}")


def test_value_tables_feed_blocks_0_to_4_and_11_to_15():
    m = GPT(mini_medium())
    seen = {}
    for i, b in enumerate(m.blocks):
        if b.attn is not None:
            b.attn.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, args[1]))
    tokens = torch.randint(0, 299, (32,))
    m(tokens)
    for i in range(16):
        if i in (7,):
            assert i not in seen
        elif i < 5 or i > 10:
            torch.testing.assert_close(seen[i], m.value_embeds[i if i < 5 else i - 11](tokens[None]))
        else:
            assert seen[i] is None


@pytest.mark.parametrize("with_table", [True, False])
def test_value_mix_and_norms_inside_attention(with_table):
    """v = a0*rms_norm(v) + a1*ve (a0*rms_norm(v) without a value table); q, k normed per head
    then rotated; scale 0.12; the attention input is not normed."""
    from ablate.model.gpt import dense_masks

    cfg = mini_medium()
    torch.manual_seed(0)
    m = awake(GPT(cfg))
    attn = m.blocks[0].attn
    x = torch.randn(1, 32, 64) * 3  # not unit RMS: a pre-norm would show
    ve = torch.randn(1, 32, 64)
    lam = torch.tensor([0.3, -0.7])
    rope = rotary_tables(32, cfg, "cpu")
    tokens = torch.randint(0, 298, (1, 32))
    mask = dense_masks(tokens, cfg, 8)[0]
    out = attn(x, ve if with_table else None, lam, rope, mask)

    def heads(t):
        return t.view(1, 32, 2, 32)

    q = rotate(F.rms_norm(heads(x @ attn.q.T), (32,)), rope)
    k = rotate(F.rms_norm(heads(x @ attn.k.T), (32,)), rope)
    v = 0.3 * F.rms_norm(heads(x @ attn.v.T), (32,)) - (0.7 * heads(ve) if with_table else 0)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * 0.12
    y = torch.einsum("bhqk,bkhd->bqhd", scores.masked_fill(~mask, -torch.inf).softmax(-1), v)
    torch.testing.assert_close(out, y.reshape(1, 32, 64) @ attn.o.T, atol=1e-5, rtol=1e-4)


def test_block_is_x_plus_attn_of_x_then_plus_mlp_of_norm_x():
    cfg = mini_medium()
    torch.manual_seed(0)
    m = awake(GPT(cfg))
    x = torch.randn(1, 32, 64) * 2
    rope = rotary_tables(32, cfg, "cpu")
    mask = torch.ones(1, 1, 32, 32, dtype=torch.bool).tril()
    lam = m.ve_lambdas[0]
    b = m.blocks[0]
    h = x + b.attn(x, None, lam, rope, mask)
    mlp = F.relu(F.rms_norm(h, (64,)) @ b.mlp.fc.T).square() @ b.mlp.proj.T  # ReLU squared
    torch.testing.assert_close(b(x, None, lam, rope, mask), h + mlp)
    b7 = m.blocks[7]  # no attention: the MLP only
    torch.testing.assert_close(b7(x, None, lam, rope, mask), x + b7.mlp(F.rms_norm(x, (64,))))


def test_loss_is_plain_cross_entropy_over_every_head_row():
    """No z-loss, no label smoothing; the padding rows (300 -> 384 here) take part."""
    torch.manual_seed(0)
    m = awake(GPT(mini_medium()))
    tokens = torch.randint(0, 299, (64,))
    logits = m(tokens)
    assert logits.shape == (64, 384)
    torch.testing.assert_close(m(tokens, tokens.roll(-1)), F.cross_entropy(logits, tokens.roll(-1)))
    fresh = GPT(mini_medium())  # zero head: uniform over all 384 rows
    assert fresh(tokens, tokens.roll(-1)).item() == pytest.approx(math.log(384), abs=1e-5)


# --- evaluation, precision, parameter groups -------------------------------------------------

def test_chunked_evaluation_equals_unchunked():
    cfg = GPTConfig.preset("tiny", extra_embeddings=1)
    torch.manual_seed(0)
    m = awake(GPT(cfg))
    tokens = torch.randint(0, 257, (cfg.seq_len,))
    calls = []
    logits = m.logits
    m.logits = lambda x: calls.append(x.shape[0]) or logits(x)
    with torch.no_grad():
        whole = m(tokens, tokens.roll(-1))
        m.eval()
        chunked = m(tokens, tokens.roll(-1))
    assert calls == [64] + [16] * 4  # training: all at once; evaluation: 4 chunks
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


def test_bf16_storage_tables_and_matrices_fp32_head_and_scalars():
    m = GPT(mini_medium(extra_embeddings=1, token_lambdas=True, lambda_init="one")).use_bf16()
    groups = {g["name"]: g["params"] for g in m.param_groups()}
    for name in ("attn", "mlp", "tables"):
        assert {p.dtype for p in groups[name]} == {torch.bfloat16}, name
    for name in ("head", "scalars"):
        assert {p.dtype for p in groups[name]} == {torch.float32}, name
    awake(m)
    dtypes = {}
    m.blocks[3].register_forward_pre_hook(lambda mod, args: dtypes.update(stream=args[0].dtype))
    m.blocks[3].attn.register_forward_hook(lambda mod, args, out: dtypes.update(attn=out.dtype))
    tokens = torch.randint(0, 299, (64,))
    logits = m(tokens)
    # the fp32 0-dim lambdas and skip weights do not promote the bf16 stream
    assert dtypes == {"stream": torch.bfloat16, "attn": torch.bfloat16}
    assert logits.dtype == torch.float32
    m(tokens, tokens.roll(-1)).backward()  # and it trains


def test_param_groups_declare_every_parameter_once():
    m = meta_model(extra_embeddings=1, token_lambdas=True, lambda_init="one")
    groups = {g["name"]: g for g in m.param_groups()}
    listed = [p for g in groups.values() for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(list(m.parameters()))
    assert {g["optimizer"] for g in groups.values()} == {"muon", "adam"}
    assert len(groups["attn"]["params"]) == 15 * 4  # q, k, v, o as separate matrices
    assert {tuple(p.shape) for p in groups["attn"]["params"]} == {(1024, 1024)}
    assert len(groups["mlp"]["params"]) == 32
    assert groups["mlp"]["wd_mul"] == 2.0 and groups["attn"]["wd_mul"] == 1.0
    assert all(p.ndim == 2 for g in ("attn", "mlp") for p in groups[g]["params"])
    assert len(groups["tables"]["params"]) == 2 + 5
    assert groups["head"]["params"] == [m.lm_head.weight]


# --- the window schedule ---------------------------------------------------------------------

def test_window_schedule_grows_from_one_block_to_3456_tokens():
    cfg = GPTConfig()
    assert cfg.window_blocks(0.0) == (1, 0)  # 0 tokens rounds up to one block
    assert cfg.window_blocks(1.0) == (27, 13)  # 3456 = 27 x 128
    for x in (0.1, 0.25, 0.5, 0.9):
        tokens = 3456 * (4 * x**3 - 6 * x**2 + 3 * x)
        assert cfg.window_blocks(x)[0] == math.ceil(tokens / 128)
    assert cfg.window_blocks(0.5) == (14, 7)  # 1728 tokens = 13.5 blocks -> 14
    assert [cfg.attn_pattern[i] for i in (0, 4, 11, 15)] == ["L"] * 4
    assert cfg.attn_pattern.count("L") == 4 and cfg.attn_pattern[7] == "-"


def test_small_presets_reach_their_final_window_by_65_percent():
    """6 blocks make each window step large: the CPU presets reach the last one at 65% of
    the steps (the end of the cooldown's first half) and train there; the record's schedule
    reaches its 27th block only at its last steps, as the record does."""
    for preset in ("tiny", "small"):
        cfg = GPTConfig.preset(preset)
        final = cfg.window_blocks(1.0)
        assert cfg.window_blocks(0.65) == final and cfg.window_blocks(0.6) != final
    medium = GPTConfig.preset("medium")
    assert medium.window_full_at == 1.0
    assert medium.window_blocks(0.98) == (26, 13) and medium.window_blocks(1.0) == (27, 13)
