"""An OpenAI-compatible server on 127.0.0.1 that has "memorized" one book (matter_bench.py).

It is tests/stub_openai.py (the same HTTP/1.1 server, latency and fault injection) with another
answer: for a request whose prompt ends inside the book, a known share of prompts (per model,
decided by a hash of the model id and the prompt, so the benchmark knows the ground truth
without asking the server) is answered with the book's next words, with one word in every
``edit_every`` replaced (near-verbatim, not verbatim); every other prompt gets filler made of
words that are not in the book. A prompt that cannot be placed in the book gets filler.

    python benchmarks/memorized_server.py --book emma.txt --recall memorizer=0.3 \
        --recall forgetter=0 --words 60

prints ``stub_openai listening on http://127.0.0.1:PORT/v1`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stub_openai import StubConfig, StubServer  # noqa: E402

ANCHOR_WORDS = 8
"""Words at the end of a prompt that place it in the book."""
_WORD = re.compile(r"[a-z0-9]+")
FILLER = ("quorvin", "belastre", "mondefair", "tulvick", "parsoline", "zenthra", "corvellum",
          "dasprite", "ombrelline", "fask", "wendrove", "isterling", "ulmacre", "pravenne",
          "gostrell", "hilvane", "jorrow", "kestramine", "lumbersk", "nivolet")
"""Made-up words: filler that cannot match an English book by chance."""


def planted(model: str, prompt: str, share: float) -> bool:
    """Whether ``model`` answers ``prompt`` from memory: a hash of both below ``share``. The
    benchmark calls this on the recorded attempts to know which continuations were planted."""
    if share <= 0:
        return False
    h = hashlib.sha256(f"{model}\x1f{prompt}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < share


class Book:
    """The book and an index from every run of ``ANCHOR_WORDS`` of its words (letters and
    digits, lower case) to the character offset right after the run."""

    def __init__(self, text: str) -> None:
        self.text = text
        found = [(m.group(), m.end()) for m in _WORD.finditer(text.lower())]
        self.index: dict[tuple[str, ...], int] = {}
        for j in range(len(found) - ANCHOR_WORDS + 1):
            key = tuple(w for w, _ in found[j:j + ANCHOR_WORDS])
            self.index.setdefault(key, found[j + ANCHOR_WORDS - 1][1])

    def after(self, prompt: str) -> int | None:
        """The book's character offset right after the prompt's last words, or None."""
        tail = _WORD.findall(prompt[-400:].lower())
        if len(tail) < ANCHOR_WORDS:
            return None
        return self.index.get(tuple(tail[-ANCHOR_WORDS:]))

    def next_words(self, offset: int, n: int) -> list[str]:
        """The ``n`` whitespace-separated pieces of the book from ``offset`` on."""
        return self.text[offset:offset + 20 * n].split()[:n]


class MemorizedServer(StubServer):
    def __init__(self, config: StubConfig, book: Book, recall: dict[str, float],
                 answer_words: int, edit_every: int, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(config, host, port)
        self.book = book
        self.recall = recall
        self.answer_words = answer_words
        self.edit_every = edit_every

    def _payload(self, api: str, body: dict[str, Any], text: str,
                 request_id: str) -> dict[str, Any]:
        model = str(body.get("model") or "")
        pos = self.book.after(text)
        digest = hashlib.sha256(text.encode()).digest()
        if pos is not None and planted(model, text, self.recall.get(model, 0.0)):
            words = self.book.next_words(pos, self.answer_words)
            reply = " ".join(FILLER[digest[i % 32] % len(FILLER)]
                             if self.edit_every and i % self.edit_every == self.edit_every - 1
                             else w for i, w in enumerate(words))
        else:
            reply = " ".join(FILLER[(digest[i % 32] + i) % len(FILLER)]
                             for i in range(self.answer_words))
        self.config.replies = {"": reply}
        return super()._payload(api, body, text, request_id)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--book", type=Path, required=True)
    ap.add_argument("--recall", action="append", default=[], metavar="MODEL=SHARE")
    ap.add_argument("--words", type=int, default=60, help="words in every answer")
    ap.add_argument("--edit-every", type=int, default=15,
                    help="one word in this many of a remembered answer is replaced")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    recall = {}
    for item in args.recall:
        name, _, share = item.rpartition("=")
        recall[name] = float(share)
    book = Book(args.book.read_text(encoding="utf-8"))
    server = MemorizedServer(StubConfig(latency=args.latency, words=args.words), book, recall,
                             args.words, args.edit_every, port=args.port)
    asyncio.run(server.serve_forever())


if __name__ == "__main__":
    sys.exit(main())
