"""Token ids as people read them: bytes for the built-in corpus, GPT-2 pieces otherwise.

GPT-2 pieces are decoded with `tiktoken` when it is installed and has its files; otherwise
tokens are shown (and must be given) as ids.
"""

from __future__ import annotations

import json
from pathlib import Path

from ablate.results.errors import InputError

GPT2_VOCAB = 50257


class Vocabulary:
    """Decodes token ids for display and parses the tokens a user names (`--tokens`)."""

    def __init__(self, size: int, eot: int, kind: str, encoding=None):
        self.size, self.eot, self.kind, self.encoding = size, eot, kind, encoding

    def decode(self, token: int) -> str:
        if token == self.eot:
            return "<eot>"
        if self.kind == "bytes" and token < 256:
            return show_byte(token)
        if self.encoding is not None:
            return repr(self.encoding.decode([token]))[1:-1].replace(" ", "␠")
        return f"#{token}"

    def parse(self, text: str) -> int:
        """An id (digits or #digits), `<eot>`, or text that is exactly one token."""
        raw = text.removeprefix("#")
        if raw.isdigit():
            token = int(raw)
        elif text == "<eot>":
            token = self.eot
        elif self.kind == "bytes":
            data = text.replace("␠", " ").encode("utf-8").decode("unicode_escape").encode("latin-1")
            if len(data) != 1:
                raise InputError(f"--tokens {text!r}: not one byte (give one character or an id)")
            token = data[0]
        elif self.encoding is not None:
            ids = self.encoding.encode(text, allowed_special="all")
            if len(ids) != 1:
                raise InputError(f"--tokens {text!r}: is {len(ids)} GPT-2 tokens, not one")
            token = ids[0]
        else:
            raise InputError(f"--tokens {text!r}: no tokenizer to read text (install tiktoken) "
                             "; give token ids")
        if not 0 <= token < self.size:
            raise InputError(f"--tokens {text!r}: id {token} is outside the vocabulary "
                             f"(0..{self.size - 1})")
        return token


def show_byte(token: int) -> str:
    """One byte as a visible glyph: the character, ␠ for a space, or an escape."""
    if token == 32:
        return "␠"
    if 33 <= token <= 126:
        return chr(token)
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(token, f"\\x{token:02x}")


def vocabulary(vocab_size: int, eot: int, data_dir: str | Path | None = None) -> Vocabulary:
    """The tokenizer the shards were made with (their meta.json), else guessed from the
    model's vocabulary: bytes (257) or GPT-2 (50257)."""
    kind = None
    meta = Path(data_dir) / "meta.json" if data_dir else None
    if meta is not None and meta.is_file():
        try:
            kind = json.loads(meta.read_text()).get("tokenizer")
        except (json.JSONDecodeError, AttributeError):
            kind = None
    if kind is None:
        kind = "bytes" if vocab_size == 257 and eot == 256 else (
            "gpt2" if vocab_size == GPT2_VOCAB else "ids")
    return Vocabulary(vocab_size, eot, kind, _gpt2() if kind == "gpt2" else None)


def _gpt2():
    try:
        import tiktoken  # pyright: ignore[reportMissingImports]  # optional, not a dependency
        return tiktoken.get_encoding("gpt2")
    except Exception:  # not installed, or its files cannot be fetched offline
        return None
