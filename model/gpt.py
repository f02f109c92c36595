"""The GPT of modded-nanogpt's medium track (RECORD.md), with k extra input embeddings.

Every block first mixes the residual stream with all input embeddings:

    x = l[i,0]*x + l[i,1]*x00 + l[i,2]*x01 + ... + l[i,k+1]*x0k,   x0j = norm(embed_j(tokens))

k = 0 is the record's parent, k = 1 the record. Then, if the block has attention,
x = x + attn(x) (no pre-norm: q, k and v are normed inside), and x = x + mlp(norm(x)).
Attention is document-causal within a sliding window of 128-token blocks that grows over
training; long windows on some layers, short on the others, none on one. Value tables feed
the first and last layers, three U-net skips carry early outputs to later blocks, and the
untied head ends in a soft cap. Pure torch; imports nothing else of the project.

The input is one flat token stream (T,) as in the record (or independent streams (B, T));
documents are cut at the end-of-text token, and positions run across the whole stream.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ablate.model.config import GPTConfig


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


# --- rotary ----------------------------------------------------------------------------------

def rotary_frequencies(head_dim: int, min_freq: float, device=None) -> torch.Tensor:
    """Half-truncated rotary: head_dim/4 frequencies from 1 down to min_freq, then as many
    zeros (those dimension pairs are not rotated). Made on `device`: a copy from the host
    would make every forward wait for the GPU."""
    freqs = min_freq ** torch.linspace(0, 1, steps=head_dim // 4, dtype=torch.float32,
                                       device=device)
    return torch.cat([freqs, freqs.new_zeros(head_dim // 4)])


def rotary_tables(T: int, cfg: GPTConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position x frequency, (T, head_dim/2), fp32; positions are absolute in
    the stream (not reset at document starts)."""
    freqs = rotary_frequencies(cfg.head_dim, cfg.rotary_min_freq, device)
    angles = torch.outer(torch.arange(T, dtype=torch.float32, device=device), freqs)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the pairs (j, j + head_dim/2) of x (B, T, H, head_dim), in fp32."""
    cos, sin = (t[None, :, None, :] for t in rope)
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


# --- the document-causal sliding-window mask -------------------------------------------------

def document_ids(tokens: torch.Tensor, eot: int) -> torch.Tensor:
    """Running count of end-of-text tokens up to and including each position."""
    return (tokens == eot).cumsum(-1)


def dense_masks(tokens: torch.Tensor, cfg: GPTConfig, window) -> tuple[torch.Tensor, torch.Tensor]:
    """(long, short) boolean masks (B, 1, T, T) for SDPA: key j is visible to query i if it is
    not after it, lies in the same document, and its block is one of the `window` most recent
    blocks up to the query's own (at least the own block)."""
    T, block = tokens.size(-1), cfg.attn_block
    docs = document_ids(tokens, cfg.eot_token)
    pos = torch.arange(T, device=tokens.device)
    visible = (pos[:, None] >= pos[None, :]) & (docs[:, :, None] == docs[:, None, :])
    behind = pos[:, None] // block - pos[None, :] // block  # how many blocks back the key lies
    window = torch.as_tensor(window, device=tokens.device)
    long, short = ((visible & (behind < w.clamp_min(1)))[:, None] for w in (window, window // 2))
    return long, short


# FlexAttention's default block size. Its compiled CUDA kernels work in tiles that divide it
# (16 to 128 tokens by GPU and head size): a block mask in blocks of 128 works on every GPU,
# one in blocks of 8 or 16 (the CPU presets' windows) does not.
FLEX_BLOCK = 128


def kernel_block(attn_block: int) -> int:
    """The block size of the FlexAttention mask for windows in `attn_block`-token blocks: the
    window's own block where FLEX_BLOCK divides it (the record's 128), else the least multiple
    of both, whose mask function then draws the window inside each block."""
    return math.lcm(attn_block, FLEX_BLOCK)


def block_masks(tokens: torch.Tensor, cfg: GPTConfig, window, block: int | None = None):
    """(long, short) FlexAttention block masks, the same visibility as `dense_masks`.

    Per query block, the kv blocks that may hold visible keys are listed most recent first.
    In blocks of the window's own size (`block` = attn_block, the record's layout) they come
    in two kinds: "full" blocks (strictly earlier, both blocks inside one document: every key
    visible, no per-element mask needed) and "partial" ones (the diagonal block and blocks
    across a document boundary: the document-causal mask decides per element). A window of
    W blocks keeps at most W - 1 full blocks, then as many partial ones as the window has
    room left for, always at least the diagonal one. In larger blocks (`kernel_block`, the
    default) every listed block is partial and the mask function also applies the window.
    """
    B, T = tokens.shape
    if T % cfg.attn_block:
        raise ValueError(f"stream length {T} is not a multiple of attn_block ({cfg.attn_block})")
    block = block or kernel_block(cfg.attn_block)
    docs = document_ids(tokens, cfg.eot_token)
    window = torch.as_tensor(window, device=tokens.device, dtype=torch.int32)
    if block == cfg.attn_block:
        return _window_block_masks(docs, block, window)
    return _kernel_block_masks(docs, block, cfg.attn_block, window)


def _touching(docs: torch.Tensor, block: int):
    """Block indices, and for each (query block, kv block): whether the kv block is not after
    the query block and shares a document with it; and whether both lie in one document."""
    B, n = docs.size(0), docs.size(1) // block
    idx = torch.arange(n, device=docs.device)
    first, last = docs.view(B, n, block)[..., 0], docs.view(B, n, block)[..., -1]
    q_first, q_last = first[:, :, None], last[:, :, None]
    kv_first, kv_last = first[:, None, :], last[:, None, :]
    touching = (idx[:, None] >= idx[None, :]) & (q_first <= kv_last) & (q_last >= kv_first)
    inside = (idx[:, None] > idx[None, :]) & (q_first == kv_last) & (q_last == kv_first)
    return idx, touching, inside


def _most_recent_first(dense: torch.Tensor, idx: torch.Tensor):
    counts = dense.sum(-1, dtype=torch.int32)
    order = torch.where(dense, idx, -1).argsort(dim=-1, descending=True).to(torch.int32)
    return counts[:, None].contiguous(), order[:, None].contiguous()


def _window_block_masks(docs: torch.Tensor, block: int, window: torch.Tensor):
    from torch.nn.attention.flex_attention import BlockMask

    def document_causal(b, h, q, kv):
        return (q >= kv) & (docs[b, q] == docs[b, kv])

    idx, touching, full = _touching(docs, block)
    partial_n, partial_idx = _most_recent_first(touching & ~full, idx)
    full_n, full_idx = _most_recent_first(full, idx)

    def within(w):
        w = w.clamp_min(1)
        return BlockMask.from_kv_blocks(
            torch.minimum(partial_n, (w - full_n).clamp_min(1)), partial_idx,
            torch.minimum(full_n, w - 1), full_idx,
            BLOCK_SIZE=block, mask_mod=document_causal)

    return within(window), within(window // 2)


def _kernel_block_masks(docs: torch.Tensor, block: int, attn_block: int, window: torch.Tensor):
    from torch.nn.attention.flex_attention import BlockMask

    T = docs.size(1)
    # Padding up to whole blocks (a stream shorter than a block is one block) as a document
    # of its own after the last, so that document ids stay sorted.
    padded = torch.cat([docs, (docs[:, -1:] + 1).expand(-1, -T % block)], dim=1)
    idx, touching, _ = _touching(padded, block)
    counts, order = _most_recent_first(touching, idx)  # a contiguous run back from the diagonal

    def within(w):
        w = w.clamp_min(1)

        def windowed(b, h, q, kv):
            return (q >= kv) & (padded[b, q] == padded[b, kv]) & (q // attn_block - kv // attn_block < w)

        reach = 1 + ((w - 1) * attn_block + block - 1) // block  # kv blocks the window spans
        return BlockMask.from_kv_blocks(torch.minimum(counts, reach), order, BLOCK_SIZE=block,
                                        mask_mod=windowed, seq_lengths=(T, T))

    return within(window), within(window // 2)


@functools.cache
def _compiled_flex_attention():
    # Eager FlexAttention materialises the whole score matrix; compiled, it is a fused kernel
    # that skips the blocks the mask leaves out.
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def attend(q, k, v, mask, scale: float) -> torch.Tensor:
    """Attention on (B, H, T, head_dim) with a mask from `dense_masks` or `block_masks`."""
    if isinstance(mask, torch.Tensor):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if torch.compiler.is_compiling():  # inside a compiled model: traced into its graph
        from torch.nn.attention.flex_attention import flex_attention
        return flex_attention(q, k, v, block_mask=mask, scale=scale)
    return _compiled_flex_attention()(q, k, v, block_mask=mask, scale=scale)


# --- the blocks ------------------------------------------------------------------------------

def init_uniform_(w: torch.Tensor) -> torch.Tensor:
    """Uniform with std 0.5 / sqrt(fan_in) (the record's, instead of torch's default)."""
    bound = math.sqrt(3) * 0.5 / math.sqrt(w.size(-1))
    return nn.init.uniform_(w, -bound, bound)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim, self.scale = cfg.n_head, cfg.head_dim, cfg.attn_scale
        D, inner = cfg.d_model, cfg.n_head * cfg.head_dim
        # q, k, v and the output projection are separate matrices: Muon orthogonalises each.
        self.q = nn.Parameter(torch.empty(inner, D))
        self.k = nn.Parameter(torch.empty(inner, D))
        self.v = nn.Parameter(torch.empty(inner, D))
        self.o = nn.Parameter(torch.empty(D, inner))

    def forward(self, x, ve, ve_lambdas, rope, mask) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = F.linear(x, torch.cat((self.q, self.k, self.v)))
        q, k, v = qkv.view(B, T, 3 * self.n_head, self.head_dim).chunk(3, dim=-2)
        q, k, v = rotate(norm(q), rope), rotate(norm(k), rope), norm(v)
        if ve is not None:  # value table: v = a0*v + a1*ve
            v = ve_lambdas[0] * v + ve_lambdas[1] * ve.view_as(v)
        else:
            v = ve_lambdas[0] * v
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, self.scale)
        return F.linear(y.transpose(1, 2).reshape(B, T, -1), self.o)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.d_model
        self.fc = nn.Parameter(torch.empty(hidden, cfg.d_model))
        self.proj = nn.Parameter(torch.empty(cfg.d_model, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.relu(F.linear(x, self.fc)).square(), self.proj)


class Block(nn.Module):
    """Attention (unless the layer has none) then the MLP; the lambda mix and the skips
    happen in GPT.forward, before the block."""

    def __init__(self, cfg: GPTConfig, kind: str):
        super().__init__()
        self.attn = CausalSelfAttention(cfg) if kind != "-" else None
        self.mlp = MLP(cfg)

    def forward(self, x, ve, ve_lambdas, rope, mask) -> torch.Tensor:
        if self.attn is not None:
            x = x + self.attn(x, ve, ve_lambdas, rope, mask)
        return x + self.mlp(norm(x))


# --- the model -------------------------------------------------------------------------------

class GPT(nn.Module):
    """`max_seq_len`: the longest stream the rotary tables are made for once (the trainer
    passes its validation streams' length); a longer one has them made on the fly."""

    def __init__(self, cfg: GPTConfig, max_seq_len: int | None = None):
        super().__init__()
        self.config = cfg
        self.make_rotary(max(cfg.seq_len, max_seq_len or 0))
        V, D, L = cfg.vocab_size, cfg.d_model, cfg.n_layer
        self.embeds = nn.ModuleList(nn.Embedding(V, D) for _ in range(1 + cfg.extra_embeddings))
        self.value_embeds = nn.ModuleList(nn.Embedding(V, D) for _ in range(cfg.value_embeds))
        self.blocks = nn.ModuleList(Block(cfg, kind) for kind in cfg.attn_pattern)
        self.lm_head = nn.Linear(D, cfg.padded_vocab, bias=False)
        # Scalars, fp32 always. Per block [residual, x00, x01, ...] mixing weights.
        self.lambdas = nn.Parameter(torch.empty(L, cfg.n_mix))
        # Per block (a0, a1) of v = a0*v + a1*ve; kept for every layer, as the record does.
        self.ve_lambdas = nn.Parameter(torch.empty(L, 2)) if cfg.attn_layers else None
        # One weight per layer, indexed by the skip's source; only the sources are used.
        self.skip_weights = nn.Parameter(torch.empty(L)) if cfg.skip_pairs else None
        # The skip map, parsed once: layer -> the sources added before it; sources to keep.
        self.skip_sources = {d: [s for s, t in cfg.skip_pairs if t == d] for _, d in cfg.skip_pairs}
        self.skip_kept = {s for s, _ in cfg.skip_pairs}
        self.token_lambdas = (nn.ModuleList(nn.Embedding(V, 1) for _ in range(L))
                              if cfg.token_lambdas else None)
        self.reset_parameters()

    # nn.ModuleList hands a type checker plain Modules: these views name what each list holds.
    @property
    def input_tables(self) -> list[nn.Embedding]:
        """embed_0 (x00), embed_1 (x01), ..."""
        return cast("list[nn.Embedding]", list(self.embeds))

    @property
    def value_tables(self) -> list[nn.Embedding]:
        return cast("list[nn.Embedding]", list(self.value_embeds))

    @property
    def layers(self) -> list[Block]:
        return cast("list[Block]", list(self.blocks))

    @property
    def token_lambda_tables(self) -> list[nn.Embedding]:
        """One Embedding(vocab, 1) per layer; empty without token lambdas."""
        return cast("list[nn.Embedding]", list(self.token_lambdas or ()))

    @torch.no_grad()
    def reset_parameters(self):
        """The record's init: N(0, 1) input and value tables, uniform (std 0.5/sqrt(fan_in))
        q, k, v and MLP fc, zero output projections and head; lambdas [1, 0, ..., 0] ("zero")
        or all ones ("one"), value lambdas (0.5, 0.5), skip weights 1."""
        cfg = self.config
        for e in (*self.input_tables, *self.value_tables):
            nn.init.normal_(e.weight)
        for b in self.layers:
            if b.attn is not None:
                for w in (b.attn.q, b.attn.k, b.attn.v):
                    init_uniform_(w)
                nn.init.zeros_(b.attn.o)
            init_uniform_(b.mlp.fc)
            nn.init.zeros_(b.mlp.proj)
        nn.init.zeros_(self.lm_head.weight)
        nn.init.constant_(self.lambdas, 0.0 if cfg.lambda_init == "zero" else 1.0)
        self.lambdas[:, 0] = 1.0
        if self.ve_lambdas is not None:
            nn.init.constant_(self.ve_lambdas, 0.5)
        if self.skip_weights is not None:
            nn.init.ones_(self.skip_weights)
        for t in self.token_lambda_tables:
            nn.init.constant_(t.weight, cfg.token_lambda_init)

    def use_bf16(self) -> GPT:
        """Store the tables and block matrices in bf16, as the record does on GPUs, so that
        activations run in bf16; head and scalars stay fp32. Call before building optimizers."""
        for part in (self.embeds, self.value_embeds, self.blocks):
            part.bfloat16()
        return self

    def param_groups(self) -> list[dict]:
        """Every parameter exactly once, by role: Muon matrices (q, k, v, o each its own matrix;
        the MLP's with weight-decay multiplier 2), then Adam's tables, head and scalars."""
        attn = [w for b in self.layers if b.attn is not None
                for w in (b.attn.q, b.attn.k, b.attn.v, b.attn.o)]
        mlp = [w for b in self.layers for w in (b.mlp.fc, b.mlp.proj)]
        tables = [e.weight for e in (*self.input_tables, *self.value_tables)]
        scalars = [p for p in (self.lambdas, self.ve_lambdas, self.skip_weights) if p is not None]
        scalars += [t.weight for t in self.token_lambda_tables]
        return [
            dict(name="attn", optimizer="muon", params=attn, wd_mul=1.0),
            dict(name="mlp", optimizer="muon", params=mlp, wd_mul=2.0),
            dict(name="tables", optimizer="adam", params=tables),
            dict(name="head", optimizer="adam", params=[self.lm_head.weight]),
            dict(name="scalars", optimizer="adam", params=scalars),
        ]

    def attention_masks(self, tokens: torch.Tensor, window):
        """(long, short) masks for (B, T) streams: FlexAttention block masks on CUDA, dense
        boolean masks for SDPA elsewhere (FlexAttention has no backward on CPU)."""
        if tokens.device.type == "cuda":
            return block_masks(tokens, self.config, window)
        return dense_masks(tokens, self.config, window)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                window=None) -> torch.Tensor:
        """Loss (if targets) or logits of one stream (T,) or independent streams (B, T).

        `window` is the long window in kv blocks at this step (an int or a 0-dim int tensor:
        a tensor lets a compiled model take every step's window without recompiling), e.g.
        `config.window_blocks(step / num_iterations)[0]`; None means the final window.
        """
        cfg = self.config
        stream = tokens.dim() == 1
        if stream:
            tokens = tokens[None]
            targets = targets[None] if targets is not None else None
        if window is None:
            window = cfg.window_blocks(1.0)[0]
        long, short = self.attention_masks(tokens, window)
        masks = {"L": long, "S": short, "-": None}
        rope = self.rotary(tokens.size(1))

        x0s = [norm(e(tokens)) for e in self.embeds]  # x00, x01, ..., x0k
        ve = [e(tokens) for e in self.value_embeds]
        ve = ve + [None] * (cfg.n_layer - 2 * len(ve)) + ve  # first and last layers share them
        kept = {}
        x = x0s[0]
        for i, block in enumerate(self.blocks):
            for src in self.skip_sources.get(i, ()):
                assert self.skip_weights is not None  # there are skip sources only with skip weights
                x = x + self.skip_weights[src] * kept[src]
            streams = x0s
            if self.token_lambdas is not None:
                streams = [x0s[0] * self.token_lambdas[i](tokens).type_as(x0s[0])] + x0s[1:]
            lam = self.lambdas[i]
            x = lam[0] * x + sum(lam[j + 1] * s for j, s in enumerate(streams))
            ve_lambdas = self.ve_lambdas[i] if self.ve_lambdas is not None else None
            x = block(x, ve[i], ve_lambdas, rope, masks[cfg.attn_pattern[i]])
            if i in self.skip_kept:
                kept[i] = x
        x = norm(x)
        if targets is None:
            logits = self.logits(x)
            return logits[0] if stream else logits
        return self.loss(x, targets)

    def make_rotary(self, positions: int, device=None) -> None:
        """(Re)make the rotary tables for `positions` positions: at construction, and for a
        model built on the meta device whose weights were then assigned (the tables are not
        part of the state dict)."""
        cos, sin = rotary_tables(positions, self.config, device)
        self.rope_cos = nn.Buffer(cos, persistent=False)  # fp32 always, like the rotary math
        self.rope_sin = nn.Buffer(sin, persistent=False)

    def rotary(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions 0..T-1, sliced from the tables made at construction."""
        if T > self.rope_cos.size(0):
            return rotary_tables(T, self.config, self.rope_cos.device)
        return self.rope_cos[:T], self.rope_sin[:T]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head in the stream's dtype, then fp32 and the soft cap cap*z/sqrt(z^2 + cap^2)."""
        z = F.linear(x, self.lm_head.weight.type_as(x)).float()
        cap = self.config.logit_softcap
        return cap * z * torch.rsqrt(z.square() + cap * cap) if cap else z

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every head row (padding included). In evaluation the
        logits are made `eval_chunks` pieces at a time, which bounds their memory."""
        x, targets = x.flatten(0, -2), targets.flatten()
        if self.training:
            return F.cross_entropy(self.logits(x), targets)
        n = self.config.eval_chunks
        total = cast(torch.Tensor, sum(F.cross_entropy(self.logits(xc), tc, reduction="sum")  # n >= 1
                                       for xc, tc in zip(x.chunk(n), targets.chunk(n), strict=True)))
        return total / targets.numel()

    def mixing_weights(self) -> list[list[float]]:
        """Each layer's [residual, x00, x01, ...] weights, for the curve's `lambdas` column."""
        return self.lambdas.detach().float().cpu().tolist()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
