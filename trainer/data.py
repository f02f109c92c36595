"""Token shards in modded-nanogpt's format, and the stream of batches read from them.

A shard is a 256 x int32 header (magic 20240520, version 1, token count) followed by the
tokens as uint16 from byte 1024: the format of the FineWeb GPT-2 shards users already have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablate.core.errors import AblateError

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
GPT2_EOT = 50256


class DataError(AblateError):
    """A missing, corrupt or foreign data file; the message names the file."""


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> Path:
    """Write tokens as one shard (atomically: temp file, then rename)."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise DataError(f"{path}: tokens must fit in uint16 (0..65535)")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = (MAGIC, VERSION, tokens.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.uint16).tobytes())
    os.replace(tmp, path)
    return path


def shard_length(path: str | os.PathLike) -> int:
    """Validate a shard's header and size; return its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(HEADER_BYTES), dtype=np.int32)
    except FileNotFoundError:
        raise DataError(f"{path}: no such shard file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a shard file") from None
    if header.size < HEADER_INTS:
        raise DataError(f"{path}: truncated header ({size} bytes; a shard starts with {HEADER_BYTES})")
    if header[0] != MAGIC:
        raise DataError(f"{path}: bad magic {int(header[0])} (expected {MAGIC}); not a token shard")
    if header[1] != VERSION:
        raise DataError(f"{path}: unsupported shard version {int(header[1])} (expected {VERSION})")
    n = int(header[2])
    expected = HEADER_BYTES + 2 * n
    if n <= 0:
        raise DataError(f"{path}: empty shard (header says {n} tokens)")
    if size != expected:
        raise DataError(f"{path}: header says {n} tokens ({expected} bytes) but the file has {size} "
                        "bytes; truncated or not uint16")
    return n


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """A shard's tokens, memory-mapped (shards are often 100M tokens): once per process while
    the file stays the same, so a warm worker's next trial maps nothing again."""
    info = os.stat(path)
    return _mapped(os.path.realpath(path), info.st_mtime_ns, info.st_size)


def largest_token(path: str | os.PathLike) -> int:
    """The largest token id in a shard (a full read of it: once per process and file)."""
    info = os.stat(path)
    return _largest(os.path.realpath(path), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=256)
def _mapped(path: str, mtime_ns: int, size: int) -> np.ndarray:
    n = shard_length(path)
    return np.memmap(path, dtype=np.uint16, mode="r", offset=HEADER_BYTES, shape=(n,))


@functools.lru_cache(maxsize=256)
def _largest(path: str, mtime_ns: int, size: int) -> int:
    return int(_mapped(path, mtime_ns, size).max())


def find_shards(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """`*{split}*.bin` in the folder, sorted (fineweb_train_000001.bin, ...)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"{d}: data folder not found (make one with `ablate data builtin --out {d}`)")
    files = sorted(p for p in d.glob(f"*{split}*.bin") if p.is_file())
    if not files:
        raise DataError(f"{d}: no {split} shards (*{split}*.bin) in the data folder")
    both = [f.name for f in files if "train" in f.name and "val" in f.name]
    if both:  # it would be trained on and validated on
        raise DataError(f"{d / both[0]}: named both a train and a val shard (*train*.bin and *val*.bin)")
    for f in files:
        shard_length(f)
    return files


@dataclass
class StreamPosition:
    """Where a stream stands: restored from checkpoints so a resumed run reads the same data."""
    shard: int = 0
    offset: int = 0
    epoch: int = 0


class TokenStream:
    """The record's reader: steps walk through the sorted shards in global batches.

    A global batch of `size` tokens covers `[pos, pos + size + 1)` of the current shard (the
    targets are the inputs shifted by one token); each rank reads only its own slice of it,
    and `pos` then advances by `size`. When `pos + size + 1` reaches the shard's end the next
    shard starts (the rest is skipped, as in the record); after the last shard the stream
    starts again at the first (a new epoch).

    With `vocab_size`, each shard is checked once, when first read, for token ids the
    model has no embedding row for: an out-of-range id would otherwise fail deep inside
    the embedding lookup (or, on a GPU, as an asynchronous device assert). The first shard
    is read and checked at once, so that data of another tokenizer fails before any output."""

    def __init__(self, files: Sequence[Path], position: StreamPosition | None = None,
                 vocab_size: int | None = None):
        self.files = list(files)
        self.lengths = [shard_length(f) for f in self.files]
        self.position = position or StreamPosition()
        self.vocab_size = vocab_size
        self._cache: tuple[int, np.ndarray] | None = None
        self._checked: set[int] = set()
        if vocab_size is not None and self.files:
            self._tokens(self.position.shard)

    def _tokens(self, shard: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != shard:
            tokens = read_shard(self.files[shard])
            if self.vocab_size is not None and shard not in self._checked:
                top = largest_token(self.files[shard])
                if top >= self.vocab_size:
                    raise DataError(f"{self.files[shard]}: holds token id {top}, beyond the "
                                    f"model's vocab_size {self.vocab_size}")
                self._checked.add(shard)
            self._cache = (shard, tokens)
        return self._cache[1]

    def next_batch(self, size: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens `[pos + start, pos + start + length)` of the next global batch of `size`
        tokens (default: the whole batch and its one extra target token), as uint16."""
        length = size + 1 - start if length is None else length
        if not (0 <= start and start + length <= size + 1):
            raise ValueError(f"slice [{start}, {start + length}) is outside a batch of {size} + 1 tokens")
        if max(self.lengths) <= size + 1:
            raise DataError(f"{self.files[0].parent}: every shard is shorter than one batch "
                            f"({size + 1:,} tokens); use a smaller tokens_per_step, val_tokens or "
                            "stream length")
        p = self.position
        while p.offset + size + 1 >= self.lengths[p.shard]:
            p.shard, p.offset = p.shard + 1, 0
            if p.shard == len(self.files):
                p.shard, p.epoch = 0, p.epoch + 1
        begin = p.offset + start
        chunk = np.array(self._tokens(p.shard)[begin:begin + length])
        p.offset += size
        return chunk


# --- The offline corpus and byte-level tokenisation --------------------------------------

BYTE_EOT = 256  # <|endoftext|> after the 256 byte values
BYTE_VOCAB = 257  # the tiny/small presets pad this to 320 (a multiple of 64)


def builtin_documents() -> list[tuple[str, str]]:
    """The stdlib's pydoc topics (~465k characters on 3.11): text that ships with Python."""
    from pydoc_data.topics import topics
    return sorted(topics.items())


def encode_bytes(documents: Iterable[str]) -> np.ndarray:
    """UTF-8 bytes, each document preceded by <|endoftext|> as in the FineWeb shards."""
    parts = []
    for doc in documents:
        parts.append(np.array([BYTE_EOT], dtype=np.uint16))
        parts.append(np.frombuffer(doc.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def prepare(documents: Sequence[tuple[str, str]], out: str | os.PathLike, *,
            val_fraction: float = 0.1, source: str = "") -> dict:
    """Split documents (whole documents held out, spread over the corpus, to ~val_fraction),
    tokenise to bytes, write train/val shards and a meta.json recording the corpus hash."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; refusing to "
                        "overwrite (choose another --out)")
    documents = _distinct(documents)
    if len(documents) < 2:
        raise DataError(f"{source or out}: need at least 2 documents (one for validation)")
    train, val, seen, held = [], [], 0, 0
    for _, text in documents:  # hold out whole documents until val has its share of text
        seen += len(text)
        if held < val_fraction * seen:
            val.append(text)
            held += len(text)
        else:
            train.append(text)
    digest = hashlib.sha256()
    for name, text in documents:
        digest.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    train_tokens, val_tokens = encode_bytes(train), encode_bytes(val)
    write_shard(out / "train_000000.bin", train_tokens)
    write_shard(out / "val_000000.bin", val_tokens)
    meta = dict(tokenizer="bytes", vocab_size=BYTE_VOCAB, eot=BYTE_EOT, source=source,
                corpus_sha256=digest.hexdigest(), documents=len(documents),
                train_tokens=int(train_tokens.size), val_tokens=int(val_tokens.size))
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


BUILTIN_SOURCE = "pydoc_data.topics"


def ensure_builtin(folder: str | os.PathLike) -> Path:
    """The built-in corpus's shards in `folder`, prepared unless they are there; atomic (a temp
    folder, then a rename), so trials racing on one node never read half-written shards."""
    import shutil
    import tempfile

    folder = Path(folder)
    if (folder / "meta.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".builtin-", dir=folder.parent))
    try:
        prepare(builtin_documents(), staging / "shards", source=BUILTIN_SOURCE)
        try:
            os.rename(staging / "shards", folder)
        except OSError:  # another process won the race (or left an empty folder)
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _distinct(documents: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The documents with repeats of an earlier one's text left out: a document in both
    train and val would make the validation loss a training loss."""
    seen, out = set(), []
    for name, text in documents:
        if text not in seen:
            seen.add(text)
            out.append((name, text))
    return out


def text_documents(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """Documents from text files: each file split on blank-line runs of 3+ newlines,
    or kept whole."""
    docs = []
    for p in paths:
        p = Path(p)
        if p.exists() and not p.is_file() and not p.is_dir():  # /dev/zero, a FIFO: no end
            raise DataError(f"{p}: not a regular file")
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{p}: no such text file") from None
        except UnicodeDecodeError:
            raise DataError(f"{p}: not UTF-8 text") from None
        except IsADirectoryError:
            raise DataError(f"{p}: is a folder, not a text file") from None
        for i, chunk in enumerate(c for c in re.split(r"\n{3,}", text) if c.strip()):
            docs.append((f"{p.name}:{i}", chunk))
    return docs


def data_vocab(data_dir: str | os.PathLike) -> int | None:
    """The vocabulary size recorded next to the shards (None for foreign shards, e.g. FineWeb)."""
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file():
        return None
    try:
        vocab = json.loads(meta.read_text())["vocab_size"]
    except (ValueError, KeyError, TypeError, RecursionError):
        vocab = None
    if isinstance(vocab, float) and vocab.is_integer():
        vocab = int(vocab)
    if isinstance(vocab, bool) or not isinstance(vocab, int) or not 1 <= vocab <= 2**16:
        raise DataError(f"{meta}: corrupt meta.json (vocab_size must be an integer in 1..65,536: "
                        "shards hold uint16 tokens)")
    return vocab
