"""Word vocabulary and a k-gram index over a whole work (measurement.md section 2).

The index is built once per work: a vectorized polynomial rolling hash (uint64 arithmetic,
wrapping) of every k-gram of word ids, argsorted. A lookup hashes the query's k-grams, finds
equal hashes with ``np.searchsorted`` and then verifies every candidate pair on the actual ids,
so a hash collision can never produce a match.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: spreads small ids over the 64-bit range
_BASE = np.uint64(0xD6E8FEB86659FD93)  # odd polynomial base


class Vocab:
    """Word -> int id, shared by a work and the outputs matched against it."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._words: list[str] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def word(self, i: int) -> str:
        """The word with id ``i``."""
        return self._words[i]

    def ids(self, words: Sequence[str], *, add: bool) -> np.ndarray:
        """int64 ids of ``words``; with ``add=False`` unknown words get -1."""
        d = self._ids
        if add:
            before = len(d)
            setd = d.setdefault
            out = [setd(w, len(d)) for w in words]
            if len(d) > before:
                self._words.extend(itertools.islice(d, before, None))
        else:
            get = d.get
            out = [get(w, -1) for w in words]
        return np.array(out, dtype=np.int64) if out else np.zeros(0, dtype=np.int64)


def kgram_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """uint64 polynomial hash of every k-gram of ``ids`` (length ``len(ids) - k + 1``)."""
    n = len(ids) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    x = (np.asarray(ids, dtype=np.int64) + 2).astype(np.uint64) * _MIX
    h = x[:n].copy()
    for t in range(1, k):
        h *= _BASE
        h += x[t:t + n]
    return h


def kgram_valid(ids: np.ndarray, k: int) -> np.ndarray:
    """Bool per k-gram: True where the k-gram contains no negative (unknown or masked) id."""
    n = len(ids) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=bool)
    bad = np.concatenate(([0], np.cumsum(np.asarray(ids) < 0, dtype=np.int64)))
    return (bad[k:k + n] - bad[:n]) == 0


class KgramIndex:
    """Every k-gram of a work's word ids, sorted by hash, for vectorized exact lookups."""

    def __init__(self, work_ids: np.ndarray, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.work_ids = np.ascontiguousarray(work_ids, dtype=np.int64)
        h = kgram_hashes(self.work_ids, k)
        pos = np.flatnonzero(kgram_valid(self.work_ids, k)).astype(np.int64)
        order = np.argsort(h[pos], kind="stable")
        self.positions = pos[order]
        """Work positions of the indexed k-grams, sorted by hash (then position)."""
        self.sorted_hashes = h[self.positions]
        """The k-gram hashes, sorted."""

    def __len__(self) -> int:
        return len(self.positions)

    def counts(self, query_ids: np.ndarray) -> np.ndarray:
        """Per query k-gram, how many indexed work k-grams share its hash (0 where it holds a
        negative id). An upper bound on the matches ``lookup`` returns for it."""
        k = self.k
        q = np.ascontiguousarray(query_ids, dtype=np.int64)
        if len(q) < k:
            return np.zeros(0, dtype=np.int64)
        qh = kgram_hashes(q, k)
        cnt = (np.searchsorted(self.sorted_hashes, qh, side="right")
               - np.searchsorted(self.sorted_hashes, qh, side="left"))
        cnt[~kgram_valid(q, k)] = 0
        return cnt.astype(np.int64)

    def lookup(self, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All ``(query_pos, work_pos)`` pairs whose k-grams are equal.

        Sorted by query position, then work position. k-grams containing a negative id
        (unknown to the vocabulary, or masked) never match.
        """
        k = self.k
        q = np.ascontiguousarray(query_ids, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        if len(q) < k or len(self.positions) == 0:
            return empty, empty.copy()
        qpos = np.flatnonzero(kgram_valid(q, k)).astype(np.int64)
        qh = kgram_hashes(q, k)[qpos]
        lo = np.searchsorted(self.sorted_hashes, qh, side="left")
        hi = np.searchsorted(self.sorted_hashes, qh, side="right")
        cnt = hi - lo
        hit = cnt > 0
        qpos, lo, cnt = qpos[hit], lo[hit], cnt[hit]
        total = int(cnt.sum())
        if total == 0:
            return empty, empty.copy()
        first = np.concatenate(([0], np.cumsum(cnt)[:-1]))
        rank = np.arange(total, dtype=np.int64) - np.repeat(first, cnt) + np.repeat(lo, cnt)
        qp = np.repeat(qpos, cnt)
        wp = self.positions[rank]
        ok = np.ones(total, dtype=bool)
        w = self.work_ids
        for t in range(k):
            ok &= w[wp + t] == q[qp + t]
        if not ok.all():
            log.debug("k-gram index: %d hash collisions rejected", int((~ok).sum()))
        return qp[ok], wp[ok]
