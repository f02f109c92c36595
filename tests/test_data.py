import numpy as np
import pytest

from ablate.trainer.data import (
    BYTE_EOT,
    HEADER_BYTES,
    MAGIC,
    DataError,
    StreamPosition,
    TokenStream,
    builtin_documents,
    find_shards,
    prepare,
    read_shard,
    text_documents,
    write_shard,
)


def test_shard_round_trip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 50304, size=10_000)
    path = write_shard(tmp_path / "fineweb_train_000001.bin", tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    header = np.fromfile(path, dtype=np.int32, count=3)
    assert header.tolist() == [MAGIC, 1, tokens.size]
    np.testing.assert_array_equal(read_shard(path), tokens)


def _header(magic=MAGIC, version=1, n=10):
    h = np.zeros(256, dtype=np.int32)
    h[:3] = magic, version, n
    return h.tobytes()


@pytest.mark.parametrize("content, message", [
    (_header(magic=123) + bytes(20), "bad magic"),
    (_header(version=7) + bytes(20), "unsupported shard version 7"),
    (_header(n=10) + bytes(12), "truncated"),
    (_header(n=10) + bytes(40), "not uint16"),  # int32 tokens under a uint16 header
    (_header(n=0), "empty shard"),
    (b"\x00" * 100, "truncated header"),
    (b"", "truncated header"),
])
def test_bad_shards_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "x_train_000000.bin"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_shard(path)
    assert str(path) in str(e.value)


def test_missing_data_is_refused(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        find_shards(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="no val shards"):
        write_shard(tmp_path / "a_train_0.bin", np.arange(10))
        find_shards(tmp_path, "val")


def test_stream_reads_in_order_across_shards_and_wraps(tmp_path):
    write_shard(tmp_path / "d_train_000000.bin", np.arange(10))
    write_shard(tmp_path / "d_train_000001.bin", np.arange(100, 107))
    s = TokenStream(find_shards(tmp_path, "train"))
    # A batch of 3 covers [pos, pos + 4): the targets are the inputs shifted by one; pos += 3.
    assert s.next_batch(3).tolist() == [0, 1, 2, 3]
    assert s.next_batch(3).tolist() == [3, 4, 5, 6]
    # pos 6: 6 + 3 + 1 reaches shard 0's end (10), so the record moves on to the next shard
    assert s.next_batch(3).tolist() == [100, 101, 102, 103]
    assert s.next_batch(3).tolist() == [0, 1, 2, 3]  # shard 1's rest too short: a new epoch
    assert s.position == StreamPosition(shard=0, offset=3, epoch=1)
    resumed = TokenStream(find_shards(tmp_path, "train"), StreamPosition(0, 3, 1))
    assert resumed.next_batch(3).tolist() == s.next_batch(3).tolist()


def test_each_rank_reads_exactly_its_slice_of_the_global_batch(tmp_path):
    """RECORD.md: rank r reads [pos + r*S, pos + (r+1)*S + 1) and pos advances by W*S."""
    write_shard(tmp_path / "d_train_000000.bin", np.arange(1000))
    W, S = 4, 8
    streams = [TokenStream(find_shards(tmp_path, "train")) for _ in range(W)]
    for step in range(3):
        pos = step * W * S
        for r, s in enumerate(streams):
            assert s.next_batch(W * S, r * S, S + 1).tolist() == list(range(pos + r * S, pos + (r + 1) * S + 1))
    with pytest.raises(DataError, match="shorter than one batch"):
        TokenStream(find_shards(tmp_path, "train")).next_batch(999)


def test_builtin_corpus_prepares_byte_shards(tmp_path):
    meta = prepare(builtin_documents(), tmp_path / "b", source="pydoc_data.topics")
    train = read_shard(tmp_path / "b" / "train_000000.bin")
    val = read_shard(tmp_path / "b" / "val_000000.bin")
    assert train.size > 300_000 and val.size > 10_000
    assert train[0] == BYTE_EOT and train.max() <= BYTE_EOT
    assert meta["vocab_size"] == 257 and len(meta["corpus_sha256"]) == 64
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare(builtin_documents(), tmp_path / "b")


def test_prepare_from_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n\n\nsecond doc\n\n\n\nthird")
    docs = text_documents([tmp_path / "a.txt"])
    assert [d for _, d in docs] == ["first doc", "second doc", "third"]
    prepare(docs, tmp_path / "out")
    assert find_shards(tmp_path / "out", "val")
    with pytest.raises(DataError, match="no such text file"):
        text_documents([tmp_path / "missing.txt"])
