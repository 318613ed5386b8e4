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

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocab:
        """A vocabulary whose word i has id i (as :meth:`words` lists them)."""
        self = cls()
        self._words = list(words)
        self._ids = {w: i for i, w in enumerate(self._words)}
        if len(self._ids) != len(self._words):
            raise ValueError("vocabulary words are not unique")
        return self

    def words(self) -> list[str]:
        """Every word, in id order."""
        return list(self._words)

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
            n = len(words)
            return np.fromiter(map(d.get, words, itertools.repeat(-1, n)), dtype=np.int64,
                               count=n)
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


def kgram_groups(ids: np.ndarray, k: int) -> np.ndarray:
    """Per k-gram of ``ids``, a group number shared exactly by the equal k-grams (compared on
    the ids, so a hash collision never joins two different k-grams); -1 for k-grams holding a
    negative id. Group numbers are dense from 0 (in hash order, not text order).

    Cost O(n log n) time and O(n) memory whatever the repetition: one sort of the hashes, one
    column-wise check of the neighbours with equal hashes, and (only when two different
    k-grams share a 64-bit hash) a lexicographic sort on the ids.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n = len(ids) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    h = kgram_hashes(ids, k)
    pos = np.flatnonzero(kgram_valid(ids, k))
    group = np.full(n, -1, dtype=np.int64)
    if not len(pos):
        return group
    order = pos[np.argsort(h[pos], kind="stable")]
    sh = h[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = sh[1:] != sh[:-1]
    same = np.flatnonzero(~new)  # rows whose hash equals the previous row's
    if len(same):
        a, b = order[same - 1], order[same]
        differ = np.zeros(len(same), dtype=bool)
        for t in range(k):  # column by column: no (pairs x k) temporary
            differ |= ids[a + t] != ids[b + t]
        if differ.any():
            log.debug("k-gram groups: %d hash collisions, sorting on the ids",
                      int(differ.sum()))
            # Sort on (hash, ids): equal k-grams become neighbours even when a colliding one
            # sat between them in hash order.
            keys = [ids[pos + t] for t in range(k - 1, -1, -1)]
            order = pos[np.lexsort((*keys, h[pos]))]
            new = np.ones(len(order), dtype=bool)
            eq = h[order[1:]] == h[order[:-1]]
            for t in range(k):
                eq &= ids[order[1:] + t] == ids[order[:-1] + t]
            new[1:] = ~eq
    group[order] = np.cumsum(new) - 1
    return group


def kgram_first(ids: np.ndarray, k: int) -> np.ndarray:
    """Start positions of the first occurrence of each distinct valid k-gram of ``ids``
    (increasing). O(n log n), exact (see :func:`kgram_groups`)."""
    group = kgram_groups(ids, k)
    valid = np.flatnonzero(group >= 0)
    if not len(valid):
        return valid.astype(np.int64)
    _, first = np.unique(group[valid], return_index=True)
    return np.sort(valid[first]).astype(np.int64)


def kgram_in(query_ids: np.ndarray, source_ids: np.ndarray, k: int) -> np.ndarray:
    """Bool per k-gram of ``query_ids``: True where an equal k-gram occurs in ``source_ids``
    (k-grams holding a negative id never occur). Linear in memory and O(n log n) in time in
    the two lengths, however often either repeats a k-gram: unlike a pair lookup, it never
    enumerates the (query, source) pairs."""
    q = np.asarray(query_ids, dtype=np.int64)
    src = np.asarray(source_ids, dtype=np.int64)
    nq = len(q) - k + 1
    if nq <= 0:
        return np.zeros(0, dtype=bool)
    if len(src) < k:
        return np.zeros(nq, dtype=bool)
    # One sequence: source, a -1 (no k-gram spans the join), query.
    group = kgram_groups(np.concatenate((src, np.full(1, -1, dtype=np.int64), q)), k)
    gs, gq = group[:len(src) - k + 1], group[len(src) + 1:]
    seen = np.zeros(int(group.max()) + 2, dtype=bool)
    seen[gs[gs >= 0]] = True
    return (gq >= 0) & seen[gq]


class KgramIndex:
    """Every k-gram of a work's word ids, sorted by hash, for vectorized exact lookups.

    Lookups go through a direct-address bucket table on the top bits of the hash (4 to 8
    buckets per indexed k-gram): a query k-gram's candidates are the indexed k-grams of its
    bucket, found with two gathers instead of a binary search over the whole index (which
    costs ~20 cache misses per query on a million-word work). Candidates are then filtered on
    the full 64-bit hash and verified on the word ids.
    """

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
        n = len(self.positions)
        # 4 to 8 buckets per entry: most query k-grams absent from the work land in an empty
        # bucket and cost no candidate. int32 offsets while they fit: 16-32 bytes per indexed
        # k-gram (positions and hashes take 16), capped at 2^30 buckets.
        self._bits = max(4, min(30, int(n).bit_length() + 2))
        self._shift = np.uint64(64 - self._bits)
        # bucket_start[b] .. bucket_start[b + 1]: the sorted entries whose top bits are b.
        tops = (self.sorted_hashes >> self._shift).astype(np.int64)
        dtype = np.int32 if n < 2**31 else np.int64
        self._bucket_start: np.ndarray = np.zeros((1 << self._bits) + 1, dtype=dtype)
        np.cumsum(np.bincount(tops, minlength=1 << self._bits), out=self._bucket_start[1:])

    def __len__(self) -> int:
        return len(self.positions)

    ARRAYS = ("work_ids", "positions", "sorted_hashes", "bucket_start")
    """The arrays :meth:`arrays` returns and :meth:`from_arrays` takes (the cache's content)."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The built index as arrays (for the index cache)."""
        return {"work_ids": self.work_ids, "positions": self.positions,
                "sorted_hashes": self.sorted_hashes, "bucket_start": self._bucket_start}

    @classmethod
    def from_arrays(cls, k: int, arrays: dict[str, np.ndarray]) -> KgramIndex:
        """An index from :meth:`arrays` without rebuilding it; raises ValueError when the
        arrays are inconsistent with each other (a damaged cache entry)."""
        self = cls.__new__(cls)
        self.k = k
        self.work_ids = np.ascontiguousarray(arrays["work_ids"], dtype=np.int64)
        self.positions = np.ascontiguousarray(arrays["positions"], dtype=np.int64)
        self.sorted_hashes = np.ascontiguousarray(arrays["sorted_hashes"], dtype=np.uint64)
        bucket = arrays["bucket_start"]
        n = len(self.positions)
        self._bits = max(4, min(30, int(n).bit_length() + 2))
        self._shift = np.uint64(64 - self._bits)
        if (len(self.sorted_hashes) != n or len(bucket) != (1 << self._bits) + 1
                or (n and (int(self.positions.max()) + k > len(self.work_ids)
                           or int(self.positions.min()) < 0))
                or int(bucket[-1]) != n):
            raise ValueError("k-gram index arrays are inconsistent")
        self._bucket_start = bucket
        return self

    def hash_table(self) -> dict[int, int | tuple[int, ...]]:
        """The indexed k-grams by hash (built once, ~90 bytes per indexed k-gram): a hash's
        work position, or its positions in increasing order when several k-grams share it.
        :meth:`may_match` tests a query in one C call, and a short query's seeds are found
        with one dict lookup per k-gram (casekit.analysis.matcher), where the array lookup
        takes a few dozen numpy calls whatever the query's length."""
        got: dict[int, int | tuple[int, ...]] | None = getattr(self, "_hash_table", None)
        if got is None:
            hashes = self.sorted_hashes.tolist()
            table: dict[int, int | tuple[int, ...]] = dict(zip(hashes, self.positions.tolist(),
                                                              strict=True))
            # Equal hashes are neighbours in sorted order: each such run's positions (sorted
            # by position within a hash) replace the one position the dict kept.
            if len(hashes) > 1:
                dup = np.flatnonzero(self.sorted_hashes[1:] == self.sorted_hashes[:-1])
                if len(dup):
                    starts = dup[np.concatenate(([True], dup[1:] != dup[:-1] + 1))]
                    pos = self.positions
                    for a in starts.tolist():
                        b = a + 1
                        while b < len(hashes) and hashes[b] == hashes[a]:
                            b += 1
                        table[hashes[a]] = tuple(pos[a:b].tolist())
            got = self._hash_table = table
        return got

    def query_hashes(self, q: np.ndarray) -> np.ndarray:
        """``kgram_hashes(q, k)``: the hashes :meth:`may_match` and :meth:`candidates` take."""
        return kgram_hashes(q, self.k)

    def may_match(self, qh: np.ndarray) -> bool:
        """False when no query k-gram hash (``kgram_hashes`` of the query) is an indexed
        k-gram's: then no query k-gram equals an indexed one (equal k-grams hash alike), and
        a lookup would find nothing. True says only that one might (hash collisions)."""
        return not self.hash_table().keys().isdisjoint(qh.tolist())

    def candidates(self, q: np.ndarray, qh: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per valid query k-gram with a non-empty bucket: its query position, first bucket
        entry and bucket size; and the k-gram hashes of the whole query (``qh`` when given).
        ``q``: int64, contiguous, at least k ids; the index must not be empty."""
        k = self.k
        if qh is None:
            qh = kgram_hashes(q, k)
        top = (qh >> self._shift).astype(np.intp)
        lo = self._bucket_start[top].astype(np.int64)
        cnt = self._bucket_start[top + 1].astype(np.int64) - lo
        neg = np.flatnonzero(q < 0)
        if len(neg):  # k-grams holding a negative id never match
            kill = (neg[:, None] - np.arange(k)).ravel()
            cnt[kill[(kill >= 0) & (kill < len(cnt))]] = 0
        qpos = np.flatnonzero(cnt)
        return qpos, lo[qpos], cnt[qpos], qh

    def counts(self, query_ids: np.ndarray) -> np.ndarray:
        """Per query k-gram, how many indexed work k-grams share its hash (0 where it holds a
        negative id). An upper bound on the matches ``lookup`` returns for it."""
        q = np.ascontiguousarray(query_ids, dtype=np.int64)
        if len(q) < self.k:
            return np.zeros(0, dtype=np.int64)
        out = np.zeros(len(q) - self.k + 1, dtype=np.int64)
        if len(self.positions) == 0:
            return out
        qpos, lo, cnt, qh = self.candidates(q)
        rank, owner = _expand(lo, cnt)
        same = self.sorted_hashes[rank] == qh[qpos[owner]]
        np.add.at(out, qpos[owner[same]], 1)
        return out

    def bucket_counts(self, query_ids: np.ndarray) -> np.ndarray:
        """Per query k-gram, the size of its hash bucket (0 where it holds a negative id):
        a cheaper upper bound of :meth:`counts`."""
        q = np.ascontiguousarray(query_ids, dtype=np.int64)
        if len(q) < self.k:
            return np.zeros(0, dtype=np.int64)
        out = np.zeros(len(q) - self.k + 1, dtype=np.int64)
        if len(self.positions):
            qpos, _, cnt, _ = self.candidates(q)
            out[qpos] = cnt
        return out

    def lookup(self, query_ids: np.ndarray, *, distinct: bool = False,
               ) -> tuple[np.ndarray, np.ndarray]:
        """All ``(query_pos, work_pos)`` pairs whose k-grams are equal.

        Sorted by query position, then work position. k-grams containing a negative id
        (unknown to the vocabulary, or masked) never match. With ``distinct=True`` only the
        first occurrence of each distinct query k-gram is looked up: the set of work positions
        found is the same, and a query repeating a k-gram costs no more than one holding it
        once (the pairs are then at most the work's k-grams, not query x work).
        """
        q = np.ascontiguousarray(query_ids, dtype=np.int64)
        if len(q) < self.k or len(self.positions) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy()
        qpos, lo, cnt, qh = self.candidates(q)
        # When the looked-up k-grams' hashes all differ, so do the k-grams, and each is its
        # own first occurrence: nothing to drop (the common case of a prompt, and far
        # cheaper than finding the first occurrences).
        if distinct and len(qpos) > 1 and len(np.unique(qh[qpos])) < len(qpos):
            keep = np.isin(qpos, kgram_first(q, self.k), assume_unique=True)
            qpos, lo, cnt = qpos[keep], lo[keep], cnt[keep]
        return self.pairs(q, qpos, lo, cnt, qh)

    def pairs(self, q: np.ndarray, qpos: np.ndarray, lo: np.ndarray, cnt: np.ndarray,
              qh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The verified ``(query_pos, work_pos)`` pairs of some of ``candidates(q)``'s rows
        (``q`` as an int64 contiguous array); see :meth:`lookup`."""
        empty = np.zeros(0, dtype=np.int64)
        if len(qpos) == 0:
            return empty, empty.copy()
        rank, owner = _expand(lo, cnt)
        qp = qpos[owner]
        same = self.sorted_hashes[rank] == qh[qp]
        qp = qp[same]
        if len(qp) == 0:
            return empty, empty.copy()
        wp = self.positions[rank[same]]
        # Verify every pair on the ids, so that a hash collision can never produce a match:
        # column by column, so the temporaries are one array per pair, not (pairs x k) (on a
        # 10 MB output that was 500 MB of temporaries per 4M-pair chunk).
        ok = np.ones(len(qp), dtype=bool)
        for t in range(self.k):
            ok &= self.work_ids[wp + t] == q[qp + t]
        if not ok.all():
            log.debug("k-gram index: %d hash collisions rejected", int((~ok).sum()))
            qp, wp = qp[ok], wp[ok]
        # Within one query position, entries of equal hash are sorted by work position.
        return qp, wp


def _expand(lo: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices ``lo[i] .. lo[i] + cnt[i] - 1`` for every i, and the i each came from."""
    total = int(cnt.sum())
    if total == len(cnt):  # every bucket holds one entry (the common case)
        return lo, np.arange(len(cnt))
    owner = np.repeat(np.arange(len(cnt)), cnt)
    first = np.cumsum(cnt) - cnt
    rank = np.arange(total, dtype=np.int64) - first[owner] + lo[owner]
    return rank, owner
