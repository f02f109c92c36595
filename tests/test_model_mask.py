"""The document-causal sliding-window mask (RECORD.md, Attention mask): black-box on the tiny
model, and the CUDA path's FlexAttention block masks against the CPU path's dense masks."""

import warnings

import pytest
import torch
from test_model import awake

from ablate.model import GPT, GPTConfig
from ablate.model.gpt import attend, block_masks, dense_masks

EOT = 256


def stream(T: int, eots: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, EOT, (T,), generator=g)
    tokens[eots] = EOT
    return tokens


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return awake(GPT(GPTConfig.preset("tiny", extra_embeddings=1, **overrides)), seed)


def changed(tokens: torch.Tensor, position: int) -> torch.Tensor:
    out = tokens.clone()
    out[position] = (tokens[position] + 1) % EOT  # still not an end-of-text token
    return out


# --- black-box, on the tiny model ------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 3, 6])
def test_a_document_never_sees_another(window):
    """Documents start at 0, 10, 29 and 45: changing tokens inside the second one changes
    its own logits and no other document's, earlier or later."""
    model = tiny_model()
    tokens = stream(64, [0, 10, 29, 45])
    other = tokens.clone()
    for p in (12, 20, 28):
        other = changed(other, p)
    a, b = model(tokens, window=window), model(other, window=window)
    outside = torch.cat([torch.arange(0, 10), torch.arange(29, 64)])
    assert torch.equal(a[outside], b[outside])
    assert not torch.allclose(a[12:29], b[12:29])


def test_no_document_marker_means_one_document():
    model = tiny_model()
    tokens = stream(64, [])
    a, b = model(tokens), model(changed(tokens, 3))
    assert not torch.allclose(a[40:], b[40:])


@pytest.mark.parametrize("position", [0, 17, 40, 63])
def test_a_token_never_changes_earlier_logits(position):
    model = tiny_model()
    tokens = stream(64, [0, 30])
    a, b = model(tokens), model(changed(tokens, position))
    assert torch.equal(a[:position], b[:position])
    assert not torch.allclose(a[position], b[position])


def test_a_key_beyond_the_window_has_no_effect_one_inside_does():
    """One attention layer (then MLPs only): a query in block 5 (positions 40..47, blocks of 8)
    with a 3-block window sees blocks 3, 4 and 5 and nothing before."""
    model = tiny_model(attn_pattern="L---", value_embeds=0, skips="")
    tokens = stream(64, [0])  # one document
    logits = model(tokens, window=3)
    far, near = model(changed(tokens, 23), window=3), model(changed(tokens, 24), window=3)
    assert torch.equal(far[40:48], logits[40:48])  # block 2: three blocks back
    assert not torch.allclose(near[40:48], logits[40:48])  # block 3: inside
    # the short window (half, rounded down: 1 block) sees only the query's own block
    model = tiny_model(attn_pattern="S---", value_embeds=0, skips="")
    logits = model(tokens, window=3)
    assert torch.equal(model(changed(tokens, 39), window=3)[40:48], logits[40:48])
    assert not torch.allclose(model(changed(tokens, 40), window=3)[41:48], logits[41:48])


def test_the_whole_tiny_model_reaches_back_no_farther_than_its_windows_add_up():
    """tiny has attention L, -, S, L: with a 3-block long window (short: 1) each long layer
    reaches 2 blocks back, so 4 blocks in all; a key 5 blocks back has no effect."""
    model = tiny_model()
    tokens = stream(64, [0])
    logits = model(tokens, window=3)
    assert torch.equal(model(changed(tokens, 15), window=3)[48:56], logits[48:56])  # block 1
    assert not torch.allclose(model(changed(tokens, 16), window=3)[48:56], logits[48:56])  # block 2


def test_window_zero_keeps_the_diagonal_block():
    cfg = GPTConfig.preset("tiny")
    tokens = stream(64, [0])[None]
    for mask in dense_masks(tokens, cfg, 0):  # long 0 and short 0: the own block only
        i = torch.arange(64)
        expected = (i[:, None] >= i[None, :]) & (i[:, None] // 8 == i[None, :] // 8)
        assert torch.equal(mask[0, 0], expected)


def test_validation_uses_the_window_it_is_given():
    model = tiny_model()
    model.eval()
    tokens = stream(64, [0])
    assert not torch.equal(model(tokens, tokens.roll(-1), window=1),
                           model(tokens, tokens.roll(-1), window=6))


# --- the FlexAttention block mask means the dense mask ---------------------------------------

def random_streams(n: int, T: int, seed: int = 0):
    """Streams with no, one, few or many documents, boundaries on and off block edges."""
    g = torch.Generator().manual_seed(seed)
    out = [stream(T, []), stream(T, [0]), stream(T, list(range(0, T, 8))),
           stream(T, [0, 8, 9, 16, 47, 48])]
    for _ in range(n):
        density = [0.01, 0.05, 0.2][int(torch.randint(0, 3, (), generator=g))]
        eots = (torch.rand(T, generator=g) < density).nonzero().flatten().tolist()
        out.append(stream(T, eots, seed=int(torch.randint(0, 10**6, (), generator=g))))
    return out


def kernel_view(bm, docs: torch.Tensor) -> torch.Tensor:
    """What a FlexAttention kernel computes with a block mask: the listed partial blocks
    through the mask function, the listed full blocks entirely (which the document-causal
    mask must allow). (B, T, T) booleans."""
    B, T = docs.shape
    block = bm.BLOCK_SIZE[0]
    visible = torch.zeros(B, T, T, dtype=torch.bool)
    i = torch.arange(T)
    causal = (i[:, None] >= i[None, :]) & (docs[:, :, None] == docs[:, None, :])
    for b in range(B):
        element = bm.mask_mod(torch.tensor(b), torch.tensor(0), i[:, None], i[None, :])
        for qb in range(-(-T // block)):
            rows = slice(qb * block, (qb + 1) * block)
            for counts, indices, full in ((bm.kv_num_blocks, bm.kv_indices, False),
                                          (bm.full_kv_num_blocks, bm.full_kv_indices, True)):
                if counts is None:
                    continue
                for kb in indices[b, 0, qb, :max(int(counts[b, 0, qb]), 0)].tolist():
                    cols = slice(kb * block, (kb + 1) * block)
                    if full:
                        assert causal[b, rows, cols].all(), "a full block must be all visible"
                        visible[b, rows, cols] = True
                    else:
                        visible[b, rows, cols] |= element[rows, cols]
    return visible


# Both layouts: in the window's own blocks (the record's 128), and in the blocks the CUDA
# kernels take when the window's are smaller (the CPU presets' 8 and 16).
LAYOUTS = pytest.mark.parametrize("block", [8, None], ids=["window blocks", "kernel blocks"])


def skip_if_torch_is_wrong(block: int | None, backend: str = "inductor") -> None:
    """torch 2.13's compiled CPU FlexAttention gives wrong results for 8-token blocks on some
    CPUs (an AVX2 AMD EPYC: off by 1.5 on a plain causal mask from torch's own
    create_block_mask, exact at 16 and above; alone right, after other compiles in the same
    process wrong), so these cases would test torch, not us. The block lists themselves are
    checked exactly, kernel-free, by test_block_masks_mean_exactly_the_dense_masks; the CUDA
    kernels by tests/test_gpu.py."""
    if block is not None and backend == "inductor":
        pytest.skip(f"torch's compiled CPU FlexAttention is unreliable for {block}-token blocks "
                    "(see skip_if_torch_is_wrong)")


@LAYOUTS
def test_block_masks_mean_exactly_the_dense_masks(block):
    cfg = GPTConfig.preset("tiny")
    for tokens in random_streams(12, 64):
        tokens = tokens[None]
        docs = (tokens == EOT).cumsum(-1)
        for window in range(0, 10):
            for bm, dense in zip(block_masks(tokens, cfg, window, block), dense_masks(tokens, cfg, window)):
                assert torch.equal(kernel_view(bm, docs), dense[:, 0]), (tokens, window)


@LAYOUTS
def test_block_masks_of_independent_streams(block):
    cfg = GPTConfig.preset("tiny")
    tokens = torch.stack(random_streams(2, 64)[3:6])
    docs = (tokens == EOT).cumsum(-1)
    for bm, dense in zip(block_masks(tokens, cfg, 2, block), dense_masks(tokens, cfg, 2)):
        assert torch.equal(kernel_view(bm, docs), dense[:, 0])


@LAYOUTS
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own internals
def test_flex_attention_agrees_with_sdpa_on_random_streams(block):
    """FlexAttention (compiled: the eager fallback ignores which blocks the mask lists) on
    CPU, with the block masks the model uses on CUDA, against SDPA with the dense masks."""
    from torch.nn.attention.flex_attention import flex_attention

    skip_if_torch_is_wrong(block)
    cfg = GPTConfig.preset("tiny")
    flex = torch.compile(flex_attention, dynamic=False)
    g = torch.Generator().manual_seed(0)
    for tokens in random_streams(3, 64, seed=1):
        tokens = tokens[None]
        q, k, v = (torch.randn(1, 2, 64, 16, generator=g) for _ in range(3))
        for window in (0, 1, 2, 3, 5, 8):
            for bm, dense in zip(block_masks(tokens, cfg, torch.tensor(window), block),
                                 dense_masks(tokens, cfg, window)):
                expected = attend(q, k, v, dense, cfg.attn_scale)
                got = flex(q, k, v, block_mask=bm, scale=cfg.attn_scale)
                torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_model_on_block_masks_equals_the_model_on_dense_masks(monkeypatch):
    """The whole tiny model with its CUDA path's masks and FlexAttention, run on CPU."""
    skip_if_torch_is_wrong(8)
    model = tiny_model().requires_grad_(False)  # FlexAttention has no backward on CPU
    tokens = stream(64, [0, 13, 40])
    expected = model(tokens, window=3)
    monkeypatch.setattr(GPT, "attention_masks",
                        lambda self, t, w: block_masks(t, self.config, w, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = model(tokens, window=torch.tensor(3))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_trainer_passes_each_steps_window_to_training_and_validation(data_dir, monkeypatch):
    from ablate.trainer.train import train

    from conftest import tiny

    forward, seen = GPT.forward, []

    def spy(self, tokens, targets=None, window=None):
        seen.append((self.training, int(window)))
        return forward(self, tokens, targets, window=window)

    monkeypatch.setattr(GPT, "forward", spy)
    cfg = tiny(data_dir, num_iterations=12, val_every=4)
    train(cfg)
    schedule = [cfg.model.window_blocks(step / 12)[0] for step in range(13)]
    assert [w for training, w in seen if training] == schedule[:12]
    evaluated = sorted({w for training, w in seen if not training})
    assert evaluated == sorted({schedule[s] for s in (0, 4, 8, 12)})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("block, backend", [(8, "inductor"), (None, "aot_eager")],
                         ids=["window blocks", "kernel blocks"])
def test_the_cuda_path_compiles_as_one_graph_and_each_window_reuses_it(monkeypatch, block, backend):
    """What runs on GPUs, compiled on CPU: block masks built inside the graph, FlexAttention,
    no graph break; a new window size (a tensor) runs without recompiling. (Inductor's CPU
    kernel takes no kernel-block mask over a stream shorter than a block: that layout is
    traced to one graph and run by FlexAttention's reference path.)"""
    import torch._dynamo

    skip_if_torch_is_wrong(block, backend)
    model = tiny_model().requires_grad_(False)
    tokens = stream(64, [0, 20, 41])
    expected = {w: model(tokens, window=w) for w in (3, 5)}
    monkeypatch.setattr(GPT, "attention_masks",
                        lambda self, t, w: block_masks(t, self.config, w, block))
    torch._dynamo.reset()
    compiled = torch.compile(model, dynamic=False, fullgraph=True, backend=backend)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for w in (3, 5):
            got = compiled(tokens, window=torch.tensor(w, dtype=torch.int32))
            torch.testing.assert_close(got, expected[w], atol=1e-5, rtol=1e-5)
