"""The model tokenizer a strategy may need at plan time (the p_z census [Coo25] plans windows of
model tokens, so it needs the model's own tokenizer before any attempt is sent).

A provider that can give one implements :meth:`casekit.providers.base.Provider.plan_tokenizer`;
the local provider loads its GGUF's vocabulary only (no weights).
"""

from __future__ import annotations

import logging
import re
import zlib
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class Tokenizer(Protocol):
    """A model's tokenizer, as far as planning needs it."""

    name: str
    """Identifies the vocabulary (e.g. the model name); recorded in probe labels."""

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text``: no BOS, no special tokens (the text as the model reads it
        after whatever the provider prepends)."""
        ...

    def piece(self, token_id: int) -> bytes:
        """The UTF-8 bytes of one token (concatenated pieces must give the text back)."""
        ...


class WhitespaceTokenizer:
    """A stand-in tokenizer for tests and examples: each token is a run of whitespace followed
    by a run of non-whitespace (``\\s*\\S+``; trailing whitespace is one more token). Ids are
    the CRC-32 of the piece, so equal pieces have equal ids; lossless by construction."""

    PIECE_RE = re.compile(r"\s*\S+|\s+")

    def __init__(self, name: str = "whitespace") -> None:
        self.name = name
        self._pieces: dict[int, bytes] = {}

    def token_ids(self, text: str) -> list[int]:
        out = []
        for m in self.PIECE_RE.finditer(text):
            b = m.group().encode("utf-8")
            i = zlib.crc32(b)
            self._pieces[i] = b
            out.append(i)
        return out

    def piece(self, token_id: int) -> bytes:
        return self._pieces[token_id]
