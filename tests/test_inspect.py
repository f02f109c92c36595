"""`ablate inspect`: the lens, neighbours and paths on hand-built weights whose answers are
known, then end to end on tiny trained runs laid out as a sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ablate.analysis.lens import final_inverse_rms, lenses, path_coefficients
from ablate.analysis.neighbours import nearest, token_lambda_extremes
from ablate.analysis.nexttokens import next_token_stats
from ablate.model import GPT, GPTConfig

VOCAB = 257


def markov_stream(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tokens where each token has one clearly most frequent successor (70%), else random."""
    rng = np.random.default_rng(seed)
    favourite = rng.integers(0, VOCAB, VOCAB)
    tokens = np.empty(n, dtype=np.int64)
    tokens[0] = 0
    for i in range(1, n):
        tokens[i] = favourite[tokens[i - 1]] if rng.random() < 0.7 else rng.integers(0, VOCAB)
    return tokens, favourite


def planted_model(stats, k: int = 1, **overrides) -> GPT:
    """A tiny model whose head rows have equal norms (so the head's preferred input for a
    token is its own row's direction) and whose x00 is planted: row t = the head row of
    t's most frequent successor. Other tables are random."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", extra_embeddings=k, **overrides))
    with torch.no_grad():
        head = torch.randn(VOCAB, model.config.d_model)
        head = 1.5 * head / head.norm(dim=-1, keepdim=True) * model.config.d_model ** 0.5
        model.lm_head.weight.zero_()
        model.lm_head.weight[:VOCAB] = head
        best = {int(stats.rows[r]): int(stats.pair_next[i]) for i, r in
                zip(range(len(stats.pair_row)), stats.pair_row)
                if stats.pair_count[i] == stats.best[r]}
        for t, s in best.items():
            model.embeds[0].weight[t] = head[s]
    return model.eval()


def test_planted_table_is_the_perfect_one_gram_reader_and_random_is_not():
    tokens, _ = markov_stream()
    stats = next_token_stats(tokens, VOCAB)
    model = planted_model(stats)
    planted, random = lenses(model, stats, final_inverse_rms(model, tokens[:4096])).tables
    assert planted.top1_next == pytest.approx(1.0)
    assert random.top1_next < 0.1
    assert planted.kl_next < random.kl_next
    assert planted.kl_next < stats.kl_unigram_reference()  # better than predicting the unigram
    assert planted.ce_next == pytest.approx(stats.entropy_next() + planted.kl_next)


def test_ties_and_unigram_agreement():
    stats = next_token_stats(np.array([1, 2, 1, 3, 1, 2, 1, 3, 2]), VOCAB)
    assert stats.best.tolist() == [2, 2, 1]  # 1 -> 2, 3 tie (2 each); 2 -> 1 twice; 3 -> 1, 2
    assert stats.unigram[1] == pytest.approx(3 / 8)


def test_nearest_neighbours_of_planted_duplicates_are_each_other():
    torch.manual_seed(1)
    table = torch.randn(VOCAB, 32)
    table[40] = table[7] * 3  # same direction, another length
    table[99] = table[12]
    found = nearest(table, [7, 40, 12, 99], k=3)
    assert found[7][0][0] == 40 and found[40][0][0] == 7
    assert found[12][0][0] == 99 and found[99][0] == (12, pytest.approx(1.0))
    assert all(t not in [n for n, _ in found[t]] for t in found)


def test_path_coefficients_follow_residual_weights_and_skips():
    lam = np.array([[1, 0], [0.5, 0], [2, 0], [1, 0]], dtype=float)
    assert path_coefficients(lam, None, ()).tolist() == [1.0, 2.0, 1.0, 1.0]
    skips = np.array([0.25, 0, 0, 0])
    assert path_coefficients(lam, skips, ((0, 3),)).tolist() == [1.25, 2.0, 1.0, 1.0]


@pytest.mark.parametrize("overrides", [dict(), dict(lambda_init="one", token_lambdas=True)])
def test_all_paths_equal_the_model_while_blocks_add_nothing(overrides):
    """At init every block adds zero (zero output projections), so the final stream is the
    sum of the embedding contributions: their lens is exactly the model's next-token loss."""
    tokens, _ = markov_stream(4096)
    stats = next_token_stats(tokens, VOCAB)
    model = planted_model(stats, k=2, **overrides)
    with torch.no_grad():
        model.lambdas.uniform_(-1.5, 1.5)
        model.skip_weights.uniform_(0.5, 1.5)
        for t in model.token_lambdas or ():
            t.weight.uniform_(0.5, 2)
        x = torch.from_numpy(tokens[:4096]).view(-1, 64)
        logits = model(x)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
    per_token = next_token_stats(x[:, :-1].flatten().numpy(), VOCAB)  # the same pairs
    pairs = np.stack([x[:, :-1].flatten().numpy(), x[:, 1:].flatten().numpy()])
    codes, counts = np.unique(pairs[0] * VOCAB + pairs[1], return_counts=True)
    stats = per_token.__class__(**{**per_token.__dict__, "pair_row": np.searchsorted(
        per_token.rows, codes // VOCAB), "pair_next": codes % VOCAB, "pair_count": counts,
        "count": np.bincount(pairs[0], minlength=VOCAB)[per_token.rows]})
    lens = lenses(model, stats, final_inverse_rms(model, tokens[:4096]))
    grid, direct = lens.layers, lens.direct
    assert direct["ce_next"] == pytest.approx(loss.item(), abs=2e-4)
    assert len(grid) == 4 and len(grid[0]) == 3


def test_token_lambda_extremes_skip_untrained_rows():
    model = GPT(GPTConfig.preset("tiny", token_lambdas=True))
    with torch.no_grad():
        model.token_lambdas[2].weight[65] = 3.0
        model.token_lambdas[2].weight[66] = 0.5
        model.token_lambdas[2].weight[67] = 1.5
    ends = token_lambda_extremes(model, k=2)
    assert ends[2]["high"] == [(65, 3.0), (67, 1.5)] and ends[2]["low"] == [(66, 0.5), (67, 1.5)]
    assert ends[0] == {"high": [], "low": []}
    assert token_lambda_extremes(GPT(GPTConfig.preset("tiny"))) is None


# --- end to end on tiny trained runs ---------------------------------------------------------

RUNS = [(0, "zero", False), (0, "one", False), (1, "zero", False), (1, "one", False),
        (1, "one", True)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    """Tiny runs of 30 steps laid out as a sweep: <root>/demo/curves/ and weights/."""
    from ablate.trainer.config import TrainConfig
    from ablate.trainer.train import train

    root = tmp_path_factory.mktemp("storage")
    for k, init, per_token in RUNS:
        tid = f"k{k}_{init}" + ("_tl" if per_token else "")
        train(TrainConfig.from_flat(dict(
            preset="tiny", data=str(data_dir), num_iterations=30, val_every=30,
            extra_embeddings=k, lambda_init=init, token_lambdas=per_token, sweep="demo",
            trial_id=tid, out=str(root / "demo" / "curves" / f"{tid}.parquet"))))
    return root


def inspect_cli(*args) -> int:
    from ablate.cli import main
    return main(["inspect", *map(str, args)])


def test_inspect_end_to_end_writes_tables_and_plots(sweep, tmp_path, capsys):
    weights = sorted(p.name for p in (sweep / "demo" / "weights").iterdir())
    assert weights == sorted(f"{p.stem}.safetensors" for p in (sweep / "demo" / "curves").iterdir())
    plots = tmp_path / "plots"
    assert inspect_cli(sweep, "--plot", plots, "--format", "markdown", "--tokens", "e", "␠",
                       "101") == 0
    out = capsys.readouterr().out
    assert "**5 trials in 5 configs" in out
    for heading in ("Logit lens of each input table", "Final mixing weights", "contribution",
                    "Nearest neighbours", "Per-token lambdas"):
        assert heading in out
    assert "| x01 |" in out and "| all paths |" in out
    names = sorted(p.name for p in plots.iterdir())
    assert "table_lens.png" in names
    assert sum(n.startswith("mixing_") for n in names) == 5
    assert sum(n.startswith("layer_lens_") for n in names) == 5

    # plots are never overwritten: refused before anything is printed
    assert inspect_cli(sweep, "--plot", plots) == 2
    captured = capsys.readouterr()
    assert "already exists" in captured.err and captured.out == ""


def test_inspect_json_per_trial_and_config(sweep, capsys):
    assert inspect_cli(sweep / "demo" / "curves" / "k1_one_tl.parquet",
                       sweep / "demo" / "weights" / "k0_zero.safetensors", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    trials = {t["trial_id"]: t for t in report["trials"]}
    assert set(trials) == {"k1_one_tl", "k0_zero"}
    tl = trials["k1_one_tl"]
    assert tl["streams"] == ["residual", "x00", "x01"] and len(tl["mixing"]) == 4
    assert set(tl["tables"]) == {"x00", "x01"} and 0 <= tl["tables"]["x00"]["top1_next"] <= 1
    assert len(tl["token_lambdas"]) == 4 and len(tl["token_lambdas"][0]["high"]) == 5
    assert trials["k0_zero"]["token_lambdas"] is None
    assert all(c["std"]["val_loss"] is None for c in report["configs"])  # one seed each


def test_bad_weights_are_refused_per_trial(sweep, tmp_path, capsys):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(sweep / "demo", root / "demo")
    weights = root / "demo" / "weights"
    data = (weights / "k0_zero.safetensors").read_bytes()
    (weights / "k0_one.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    (weights / "k1_zero.safetensors").write_bytes(data)  # another trial's
    (weights / "k1_one.safetensors").unlink()  # missing
    assert inspect_cli(root, "--data", _data_of(sweep)) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(skipped) == 3
    assert any("k0_one.safetensors: truncated" in line for line in skipped)
    assert any("k1_zero.safetensors: weights of another config" in line for line in skipped)
    assert any("k1_one.safetensors: no weights file" in line for line in skipped)
    assert "2 trials in 2 configs" in captured.out

    for path in weights.iterdir():
        path.unlink()
    assert inspect_cli(root) == 2
    assert "no trial could be read" in capsys.readouterr().err


def _data_of(sweep):
    from ablate.results.curves import trial_meta
    return trial_meta(next((sweep / "demo" / "curves").iterdir()))["config"]["data"]


def test_nearest_neighbours_only_among_allowed_tokens():
    table = torch.randn(10, 8)
    table[3] = table[2]
    among = np.ones(10, dtype=bool)
    among[3] = False
    found = nearest(table, [2], k=20, among=among)[2]
    assert 3 not in [n for n, _ in found] and len(found) == 8


def test_tokens_are_read_and_shown_as_bytes_or_ids():
    from ablate.analysis.vocab import Vocabulary
    from ablate.results.errors import InputError

    bytes_ = Vocabulary(257, 256, "bytes")
    assert [bytes_.parse(t) for t in ("e", "␠", " ", "\\n", "#7", "7", "<eot>")] == \
        [101, 32, 32, 10, 7, 7, 256]
    assert [bytes_.decode(t) for t in (101, 32, 10, 200, 256)] == ["e", "␠", "\\n", "\\xc8", "<eot>"]
    with pytest.raises(InputError, match="--tokens 'ab': not one byte"):
        bytes_.parse("ab")
    with pytest.raises(InputError, match="outside the vocabulary"):
        bytes_.parse("300")
    ids = Vocabulary(50257, 50256, "gpt2")  # no tiktoken: ids only
    assert ids.decode(464) == "#464" and ids.parse("464") == 464
    with pytest.raises(InputError, match="give token ids"):
        ids.parse(" the")
