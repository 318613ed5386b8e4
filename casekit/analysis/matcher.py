"""Verbatim and near-verbatim spans between an output and a work (measurement.md section 2).

Words are compared as vocabulary ids of one profile (``light-words`` by default). Algorithm:

1. **Seeds**: every k-gram of the output (k = 5 by default) is looked up in the work's
   :class:`~casekit.analysis.index.KgramIndex`. Runs of consecutive seeds on one diagonal
   (``work_pos - out_pos``) are exactly the maximal exact matches (MEMs) of >= k words, so no
   extension step is needed: a longer match would have produced another seed.
2. **Chains** (near-verbatim): MEMs are chained in output order when the output gap and the work
   gap between them are both <= ``max_gap`` words (overlaps from repeated words are trimmed off
   the later MEM), choosing for each MEM the predecessor that maximizes matched words minus gap
   size. A gap holding a masked output word (prompt echo) is never bridged.
3. **Similarity**: a chain is cut into the longest pieces whose Levenshtein similarity over
   words, ``1 - distance / max(out_words, work_words)``, stays >= ``near_exact``. The distance
   used here is that of the anchored alignment (exact blocks plus an edit alignment of every
   gap), which is never below the optimal distance, so the check is conservative.
4. **Selection**: pieces are taken longest first (work words), never overlapping on the output
   side; a piece that overlaps an earlier choice is clipped to its free part and re-queued.
   When the work repeats a passage, this keeps the alignment giving the longest span (ties go
   to the earliest work position).
5. **Report**: each span's ``similarity`` and ``opcodes`` are
   ``rapidfuzz.distance.Levenshtein.normalized_similarity`` / ``.opcodes`` over the span's two
   word lists (the optimal alignment), for spans up to ``GLOBAL_ALIGN_MAX_WORDS`` words; longer
   spans use the anchored alignment (a lower bound of the similarity), which keeps the cost
   linear.
"""

from __future__ import annotations

import array
import bisect
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz.distance import Levenshtein

from casekit.analysis.index import KgramIndex, Vocab, kgram_hashes
from casekit.normalize import Tokens

if TYPE_CHECKING:
    from casekit.works import Work

log = logging.getLogger(__name__)

#: Spans longer than this (in words, either side) get the anchored instead of the global
#: alignment: rapidfuzz's Levenshtein is O(n*m/64) and 20,000 words take about 0.1 s.
GLOBAL_ALIGN_MAX_WORDS = 20_000
#: Seed pairs (output k-gram, work k-gram) materialized at once; bounds memory on degenerate
#: outputs.
SEED_PAIR_CHUNK = 1_000_000
SMALL_QUERY = 128
"""Query words up to which seeds are found in plain Python (:meth:`WorkMatcher._mems_small`):
a short output's few dozen lookups cost less than the array path's fixed few dozen numpy
calls."""
SMALL_PAIRS = 8
"""Seed pairs per query word beyond which a short query takes the array path after all."""
_ID_CODE = "i"
_ID_DTYPE = np.dtype(np.intc)
"""Word ids as :meth:`WorkMatcher._mems_small` compares them: C ints (a vocabulary holds
fewer than 2**31 words; -1 marks an unknown or masked word)."""
_EPS = 1e-9

Block = tuple[int, int, int, int]
"""An exact match: out_start, out_end, work_start, work_end (same length on both sides)."""
Opcode = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class Span:
    """An alignment between a run of output words and a run of work words.

    ``similarity`` is the normalized Levenshtein similarity over the two word lists,
    ``1 - distance / max(out_words, work_words)``, as computed by
    ``rapidfuzz.distance.Levenshtein.normalized_similarity`` (1.0 for verbatim).
    """

    out_start: int
    """First output word (index into the output Tokens)."""
    out_end: int
    """One past the last output word."""
    work_start: int
    """First work word (index into the work Tokens)."""
    work_end: int
    """One past the last work word."""
    similarity: float
    """Word-level normalized Levenshtein similarity; 1.0 for verbatim."""
    verbatim: bool
    """True when the two word runs are identical."""
    opcodes: tuple[Opcode, ...]
    """``(tag, out_i1, out_i2, work_j1, work_j2)`` with absolute word indices covering the whole
    span; tags are rapidfuzz's: "equal", "replace", "delete" (output words absent from the
    work), "insert" (work words absent from the output)."""

    @property
    def words(self) -> int:
        """Work words covered (``work_end - work_start``)."""
        return self.work_end - self.work_start

    @property
    def out_words(self) -> int:
        """Output words covered (``out_end - out_start``)."""
        return self.out_end - self.out_start

    def matched_work_positions(self) -> np.ndarray:
        """Work word indices aligned by "equal" opcodes (int64, increasing)."""
        parts = [np.arange(j1, j2, dtype=np.int64)
                 for tag, _i1, _i2, j1, j2 in self.opcodes if tag == "equal"]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def opcodes_cost(opcodes: tuple[Opcode, ...] | list[Opcode]) -> int:
    """Levenshtein distance of an alignment: one per substituted, deleted or inserted word."""
    cost = 0
    for tag, i1, i2, j1, j2 in opcodes:
        if tag != "equal":
            cost += max(i2 - i1, j2 - j1)
    return cost


def similarity_from_cost(cost: int, out_words: int, work_words: int) -> float:
    """``1 - cost / max(out_words, work_words)`` (rapidfuzz's normalized similarity)."""
    longest = max(out_words, work_words)
    return 1.0 if longest == 0 else 1.0 - cost / longest


@dataclass
class _Cand:
    blocks: list[Block]
    costs: list[int]

    @property
    def work_len(self) -> int:
        return self.blocks[-1][3] - self.blocks[0][2]

    def key(self) -> tuple[int, int, int, int]:
        matched = sum(b[1] - b[0] for b in self.blocks)
        return (-self.work_len, -matched, self.blocks[0][0], self.blocks[0][2])


def _diagonal_runs(qp: np.ndarray, wp: np.ndarray) -> np.ndarray:
    """Runs of seed pairs with consecutive query positions on one diagonal: rows
    (first query position, last query position, diagonal)."""
    if len(qp) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    diag = wp - qp
    # Sort by (diagonal, query position) with one int64 key: diag >= -max(qp), so
    # (diag + width) * width + qp is non-negative, unique per pair and ordered as wanted.
    width = int(qp.max()) + 1
    order = np.argsort((diag + width) * width + qp)
    qp, diag = qp[order], diag[order]
    new = np.ones(len(qp), dtype=bool)
    new[1:] = (diag[1:] != diag[:-1]) | (qp[1:] != qp[:-1] + 1)
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:], [len(qp)])) - 1
    return np.stack((qp[first], qp[last], diag[first]), axis=1)


def _true_runs(flags: np.ndarray) -> tuple[list[int], list[int]]:
    if len(flags) <= 64:  # short: plain Python beats numpy's per-call overhead
        starts: list[int] = []
        ends: list[int] = []
        prev = False
        for i, f in enumerate(flags.tolist()):
            if f and not prev:
                starts.append(i)
            elif prev and not f:
                ends.append(i)
            prev = f
        if prev:
            ends.append(len(flags))
        return starts, ends
    d = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()


class WorkMatcher:
    """Finds verbatim and near-verbatim spans of one work in outputs (built once per work)."""

    def __init__(self, tokens: Tokens, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"seed length k must be >= 1, got {k}")
        self.tokens = tokens
        self.k = k
        self.vocab = Vocab()
        self.work_ids = self.vocab.ids(tokens.words, add=True)
        self.index = KgramIndex(self.work_ids, k)

    @classmethod
    def for_work(cls, work: Work, profile: str, k: int = 5) -> WorkMatcher:
        """The matcher of a work's tokens under a profile, its vocabulary and k-gram index
        loaded from the index cache when an entry exists for the work's hash, the profile, k,
        the exclusions and the source of the normalizer and the index (else built and
        stored). A damaged entry is detected (checksum, shapes) and rebuilt."""
        from casekit.cache import index_cache_path, load_arrays, save_arrays

        tokens = work.tokens_for(profile)
        path = index_cache_path(work.sha256, profile, [(e.start, e.end) for e in work.excluded],
                                k)
        cached = load_arrays(path) if path.exists() else None
        if cached is not None:
            try:
                self = cls.__new__(cls)
                self.tokens, self.k = tokens, k
                words = str(cached.pop("vocab")[()])
                self.vocab = Vocab.from_words(words.split("\n") if words else [])
                self.index = KgramIndex.from_arrays(k, cached)
                self.work_ids = self.index.work_ids
                if len(self.work_ids) != len(tokens) or len(self.vocab) and int(
                        self.work_ids.max()) >= len(self.vocab):
                    raise ValueError("index does not fit the work's tokens")
                log.debug("k-gram index of %s (%s, k=%d) loaded from %s", work.id, profile, k,
                          path)
                return self
            except (KeyError, ValueError) as exc:
                log.warning("k-gram index cache entry %s is damaged (%s): rebuilding it", path,
                            exc)
        self = cls(tokens, k)
        save_arrays(path, {"vocab": np.array("\n".join(self.vocab.words())),
                           **self.index.arrays()})
        return self

    # --- seeds ----------------------------------------------------------------------------------

    def query_ids(self, out: Tokens, out_mask: np.ndarray | None = None) -> np.ndarray:
        """Output word ids in the work's vocabulary: -1 for unknown and for masked words."""
        if out.profile != self.tokens.profile:
            log.warning("output tokenized with %r but the work with %r: spans will be missed",
                        out.profile, self.tokens.profile)
        q = self.vocab.ids(out.words, add=False)
        if out_mask is not None:
            mask = np.asarray(out_mask, dtype=bool)
            if mask.shape != q.shape:
                raise ValueError(f"out_mask has {mask.shape[0] if mask.ndim else 0} entries "
                                 f"for {len(q)} output words")
            q[mask] = -1
        return q

    def may_seed(self, outs: Sequence[Tokens]) -> list[bool]:
        """Per output, False when none of its k-grams is one of the work's: then
        :meth:`exact_spans` and :meth:`near_spans` find nothing in it, whatever ``out_mask``
        (a mask only turns words into unknowns, which breaks k-grams). True says only that
        they might.

        One pass over all the outputs' words at once (one vocabulary lookup, one hash pass,
        one sorted search), where the same test output by output costs a dozen numpy calls
        each: most outputs share no k-gram with the work."""
        k = self.k
        if not outs:
            return []
        lengths = np.fromiter(map(len, outs), dtype=np.int64, count=len(outs))
        if len(self.index) == 0:
            return [False] * len(outs)
        words = list(itertools.chain.from_iterable(o.words for o in outs))
        qh = kgram_hashes(self.vocab.ids(words, add=False), k)
        if len(qh) == 0:
            return [False] * len(outs)
        table = self.index.sorted_hashes
        at = np.searchsorted(table, qh)
        np.minimum(at, len(table) - 1, out=at)
        hit = np.concatenate(([0], np.cumsum(table[at] == qh, dtype=np.int64)))
        # Output i's own k-grams start at its words but its last k - 1 (those straddle two
        # outputs and are not counted): none when it has fewer than k words.
        ends = np.cumsum(lengths)
        starts = ends - lengths
        first = np.minimum(starts, len(qh))
        last = np.minimum(np.maximum(ends - k + 1, starts), len(qh))
        return ((hit[last] - hit[first]) > 0).tolist()

    def _mems(self, q: np.ndarray) -> np.ndarray:
        """Maximal exact matches >= k words, rows (out_start, out_end, work_start, work_end),
        sorted by out_start then work_start.

        Seed pairs are materialized in chunks of about ``SEED_PAIR_CHUNK`` pairs, so a
        degenerate output (a phrase repeated thousands of times against a work that repeats it
        too) costs time in proportion to its pairs but bounded memory.
        """
        k = self.k
        if len(q) < k or len(self.index) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        qh = self.index.query_hashes(q)
        # Most outputs share no k-gram with the work: one set test says so exactly (no query
        # k-gram hash is an indexed one), before the bucket lookups and pair checks.
        if not self.index.may_match(qh):
            return np.zeros((0, 4), dtype=np.int64)
        if len(q) <= SMALL_QUERY:
            mems = self._mems_small(q, qh)
            if mems is not None:
                return mems
        qpos, lo, cnt, qh = self.index.candidates(q, qh)
        if len(qpos) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        total = int(cnt.sum())
        if total <= SEED_PAIR_CHUNK:
            runs = _diagonal_runs(*self.index.pairs(q, qpos, lo, cnt, qh))
        else:
            cuts = np.searchsorted(np.cumsum(cnt),
                                   np.arange(SEED_PAIR_CHUNK, total, SEED_PAIR_CHUNK))
            bounds = sorted({0, len(qpos), *(cuts.tolist())})
            log.info("%d candidate seed pairs for %d output words: matching in %d chunks",
                     total, len(q), len(bounds) - 1)
            parts = [_diagonal_runs(*self.index.pairs(q, qpos[a:b], lo[a:b], cnt[a:b], qh))
                     for a, b in zip(bounds, bounds[1:], strict=False)]
            runs = np.concatenate(parts)
            if len(runs):  # join runs split at a chunk boundary
                runs = runs[np.lexsort((runs[:, 0], runs[:, 2]))]
                new = np.ones(len(runs), dtype=bool)
                new[1:] = (runs[1:, 2] != runs[:-1, 2]) | (runs[1:, 0] != runs[:-1, 1] + 1)
                first = np.flatnonzero(new)
                last = np.concatenate((first[1:], [len(runs)])) - 1
                runs = np.stack((runs[first, 0], runs[last, 1], runs[first, 2]), axis=1)
        o_s = runs[:, 0]
        o_e = runs[:, 1] + k
        d = runs[:, 2]
        mems = np.stack((o_s, o_e, o_s + d, o_e + d), axis=1)
        return mems[np.lexsort((mems[:, 2], mems[:, 0]))]

    def _mems_small(self, q: np.ndarray, qh: np.ndarray) -> np.ndarray | None:
        """:meth:`_mems` of a short query in plain Python: each k-gram's seeds from the
        index's hash table, verified on the ids (a hash collision never matches, nor does a
        k-gram holding a negative id: no work id is negative), and grown into runs along
        their diagonals as the query positions go up. None when the seed pairs exceed
        ``SMALL_PAIRS`` per query word (a repetitive query against a repetitive work: the
        array path's work)."""
        k = self.k
        last = k - 1
        table = self.index.hash_table()
        work = self._work_array()
        ql = array.array(_ID_CODE, q.astype(_ID_DTYPE).tobytes())
        budget = SMALL_PAIRS * len(ql)
        active: dict[int, list[int]] = {}
        runs: list[tuple[int, int, int]] = []
        get = table.get
        for i, h in enumerate(qh.tolist()):
            hit = get(h)
            if hit is None:
                continue
            seeds: tuple[int, ...] = (hit,) if isinstance(hit, int) else hit
            if len(seeds) > 1:
                budget -= len(seeds)
                if budget < 0:
                    return None
            for p in seeds:
                d = p - i
                r = active.get(d)
                if r is not None and r[1] == i - 1:
                    # Its first k - 1 words are the verified seed's before it on the diagonal.
                    if work[p + last] == ql[i + last]:
                        r[1] = i
                    continue
                if work[p:p + k] != ql[i:i + k]:
                    continue
                if r is not None:
                    runs.append((r[0], r[1], d))
                active[d] = [i, i]
        runs.extend((r[0], r[1], d) for d, r in active.items())
        if not runs:
            return np.zeros((0, 4), dtype=np.int64)
        # Rows (out_start, out_end, work_start, work_end) by out_start then work_start, as
        # the array path sorts them (the pair is unique: one run per start and diagonal).
        rows = sorted(((s, e + k, s + d, e + k + d) for s, e, d in runs),
                      key=lambda m: (m[0], m[2]))
        return np.array(rows, dtype=np.int64)

    def prepare(self) -> None:
        """Build what lookups build on first use (the index's hash table, the work's ids as
        a compact array), e.g. before worker processes fork, so that they share it."""
        self.index.hash_table()
        self._work_array()

    def _work_array(self) -> array.array[int]:
        """The work's ids as an ``array.array`` of 4-byte ints (built once): compared
        slice by slice with a query's, and read element by element as Python ints."""
        got: array.array[int] | None = getattr(self, "_work_ids_array", None)
        if got is None:
            got = array.array(_ID_CODE, self.index.work_ids.astype(_ID_DTYPE).tobytes())
            self._work_ids_array = got
        return got

    def exact_spans(self, out: Tokens, out_mask: np.ndarray | None = None, *,
                    select: bool = False, distinct_work: bool = False) -> list[Span]:
        """Maximal exact matches of >= k words, sorted by (out_start, work_start).

        Every alignment is returned: when the work repeats a passage, an output copy of it
        gives one span per copy. With ``select=True`` only a longest-first selection that does
        not overlap on the output side is returned (overlapping ones clipped, kept if >= k).
        ``out_mask``: True for output words that may not be used; they break matches.
        ``distinct_work=True`` (with ``select=False``): one span per distinct work range, the
        first in output order, for callers that read only the work side; an output repeating
        a passage the work holds R times would otherwise make R spans per repetition.
        """
        q = self.query_ids(out, out_mask)
        mems = self._mems(q)
        if distinct_work and not select and len(mems):
            key = mems[:, 2] * (len(self.work_ids) + 1) + mems[:, 3]
            _, first = np.unique(key, return_index=True)
            mems = mems[np.sort(first)]
        blocks: list[Block] = [tuple(r) for r in mems.tolist()]  # type: ignore[misc]
        if select:
            chosen = self._select([_Cand([b], []) for b in blocks], q, 1.0, len(q))
            blocks = sorted(c.blocks[0] for c in chosen)
        return [Span(o_s, o_e, w_s, w_e, 1.0, True, (("equal", o_s, o_e, w_s, w_e),))
                for o_s, o_e, w_s, w_e in blocks]

    # --- near-verbatim --------------------------------------------------------------------------

    def near_spans(self, out: Tokens, near_exact: float = 0.90,
                   out_mask: np.ndarray | None = None, max_gap: int = 8) -> list[Span]:
        """Verbatim and near-verbatim spans, non-overlapping on the output side, by out_start.

        See the module docstring for the algorithm. ``near_exact`` is the minimum word-level
        Levenshtein similarity; ``max_gap`` the largest output or work gap (in words) bridged
        between two exact seeds; ``out_mask`` marks output words that may not be used.
        """
        if not 0.0 < near_exact <= 1.0:
            raise ValueError(f"near_exact must be in (0, 1], got {near_exact}")
        q = self.query_ids(out, out_mask)
        mems = _drop_isolated_duplicates(self._mems(q), max_gap)
        if len(mems) == 0:
            return []
        masked = np.zeros(len(q), dtype=bool) if out_mask is None else np.asarray(out_mask, bool)
        mcs = np.concatenate(([0], np.cumsum(masked, dtype=np.int64))).tolist()
        cands: list[_Cand] = []
        for chain in self._chains(mems, max_gap, mcs):
            costs = self._gap_costs(chain, q)
            cands.extend(self._segments(chain, costs, near_exact))
        chosen = self._select(cands, q, near_exact, len(q))
        spans = [self._span(c, q) for c in chosen]
        spans.sort(key=lambda s: (s.out_start, s.work_start))
        return spans

    def _chains(self, mems: np.ndarray, max_gap: int, mcs: list[int]) -> list[list[Block]]:
        """Best-predecessor chaining of MEMs (sorted by out_start); one chain per terminal."""
        rows = mems.tolist()
        m = len(rows)
        score = [0] * m
        pred = [-1] * m
        # A predecessor's diagonal (work - out) is within max_gap of the successor's: the two
        # gaps are both in [0, max_gap] after trimming and differ by the diagonal shift. On one
        # diagonal MEMs are disjoint, so each bucket is sorted by out_end and pruned from the
        # front once it ends more than max_gap words before the current MEM starts.
        buckets: dict[int, deque[int]] = {}
        width = 2 * max_gap + 1
        for j, (os_j, oe_j, ws_j, we_j) in enumerate(rows):
            lim = os_j - max_gap
            len_j = oe_j - os_j
            d_j = ws_j - os_j
            best, bp = len_j, -1
            # Visit the diagonals within max_gap (the order does not matter: ties go to the
            # lowest index): the known ones when there are fewer of them than the window.
            near: Iterable[int] = (
                [d for d in buckets if d_j - max_gap <= d <= d_j + max_gap]
                if len(buckets) < width else range(d_j - max_gap, d_j + max_gap + 1))
            for d in near:
                bucket = buckets.get(d)
                if not bucket:
                    continue
                while bucket and rows[bucket[0]][1] < lim:
                    bucket.popleft()
                for i in bucket:
                    os_i, oe_i, ws_i, we_i = rows[i]
                    if os_i >= os_j or oe_i >= oe_j or ws_i >= ws_j or we_i >= we_j:
                        continue
                    go, gw = os_j - oe_i, ws_j - we_i
                    x = max(0, -go, -gw)
                    if x >= len_j:
                        continue
                    go, gw = go + x, gw + x
                    if go > max_gap or gw > max_gap:
                        continue
                    if go and mcs[os_j + x] - mcs[oe_i]:
                        continue  # a masked output word in the gap: never bridged
                    sc = score[i] + len_j - x - max(go, gw)
                    if sc > best or (sc == best and bp >= 0 and i < bp):
                        best, bp = sc, i
            score[j], pred[j] = best, bp
            buckets.setdefault(d_j, deque()).append(j)
        used = set(pred)
        chains: list[list[Block]] = []
        for j in range(m):
            if j in used:
                continue
            idx = []
            i = j
            while i >= 0:
                idx.append(i)
                i = pred[i]
            idx.reverse()
            chain: list[Block] = []
            for i in idx:
                o_s, o_e, w_s, w_e = rows[i]
                if chain:
                    x = max(0, chain[-1][1] - o_s, chain[-1][3] - w_s)
                    o_s, w_s = o_s + x, w_s + x
                chain.append((o_s, o_e, w_s, w_e))
            chains.append(chain)
        return chains

    def _gap_costs(self, blocks: list[Block], q: np.ndarray) -> list[int]:
        """Levenshtein distance of the words between consecutive blocks."""
        w = self.work_ids
        costs = []
        for (_, oe, _, we), (os_, _, ws, _) in zip(blocks, blocks[1:], strict=False):
            go, gw = os_ - oe, ws - we
            if go == 0 or gw == 0:
                costs.append(go + gw)
            else:
                costs.append(Levenshtein.distance(q[oe:os_].tolist(), w[we:ws].tolist()))
        return costs

    def _segments(self, blocks: list[Block], costs: list[int], near_exact: float) -> list[_Cand]:
        """Cut a chain into its longest pieces with similarity >= near_exact, each holding at
        least one exact block of >= k words."""
        if len(blocks) == 1:
            return [_Cand(blocks, [])] if blocks[0][1] - blocks[0][0] >= self.k else []
        r = 1.0 - near_exact
        out: list[_Cand] = []
        stack = [(0, len(blocks))]
        while stack:
            lo, hi = stack.pop()
            if lo >= hi:
                continue
            a, b = _longest_feasible(blocks[lo:hi], costs[lo:hi - 1], r)
            a, b = a + lo, b + lo
            seg = blocks[a:b + 1]
            if max(x[1] - x[0] for x in seg) >= self.k:
                out.append(_Cand(seg, costs[a:b]))
            stack.append((lo, a))
            stack.append((b + 1, hi))
        return out

    def _select(self, cands: list[_Cand], q: np.ndarray, near_exact: float,
                n_out: int) -> list[_Cand]:
        """Longest first, non-overlapping on the output side; overlapping ones clipped."""
        ranges = sorted((c.blocks[0][0], c.blocks[-1][1]) for c in cands)
        if all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
            return list(cands)  # no overlap: longest-first selection would take them all
        claimed = np.zeros(n_out, dtype=bool)
        heap = [(c.key(), i, c) for i, c in enumerate(cands)]
        heapq.heapify(heap)
        serial = len(heap)
        chosen: list[_Cand] = []
        while heap:
            _, _, c = heapq.heappop(heap)
            o_s, o_e = c.blocks[0][0], c.blocks[-1][1]
            taken = claimed[o_s:o_e]
            if not taken.any():
                claimed[o_s:o_e] = True
                chosen.append(c)
                continue
            if taken.all():
                continue
            for run in _clip(c.blocks, claimed):
                for piece in self._segments(run, self._gap_costs(run, q), near_exact):
                    heapq.heappush(heap, (piece.key(), serial, piece))
                    serial += 1
        return chosen

    def _span(self, c: _Cand, q: np.ndarray) -> Span:
        o_s, o_e = c.blocks[0][0], c.blocks[-1][1]
        w_s, w_e = c.blocks[0][2], c.blocks[-1][3]
        lo, lw = o_e - o_s, w_e - w_s
        if len(c.blocks) == 1:
            ops: list[Opcode] = [("equal", o_s, o_e, w_s, w_e)]
        elif max(lo, lw) <= GLOBAL_ALIGN_MAX_WORDS:
            ops = [(op.tag, op.src_start + o_s, op.src_end + o_s,
                    op.dest_start + w_s, op.dest_end + w_s)
                   for op in Levenshtein.opcodes(q[o_s:o_e].tolist(),
                                                 self.work_ids[w_s:w_e].tolist())]
        else:
            ops = self._anchored_opcodes(c.blocks, q)
        cost = opcodes_cost(ops)
        return Span(o_s, o_e, w_s, w_e, similarity_from_cost(cost, lo, lw),
                    cost == 0 and lo == lw, tuple(ops))

    def _anchored_opcodes(self, blocks: list[Block], q: np.ndarray) -> list[Opcode]:
        ops: list[Opcode] = []

        def add(op: Opcode) -> None:
            if op[2] == op[1] and op[4] == op[3]:
                return
            if ops and ops[-1][0] == op[0] and ops[-1][2] == op[1] and ops[-1][4] == op[3]:
                prev = ops.pop()
                op = (op[0], prev[1], op[2], prev[3], op[4])
            ops.append(op)

        w = self.work_ids
        for n, (o_s, o_e, w_s, w_e) in enumerate(blocks):
            if n:
                p_oe, p_we = blocks[n - 1][1], blocks[n - 1][3]
                for op in Levenshtein.opcodes(q[p_oe:o_s].tolist(), w[p_we:w_s].tolist()):
                    add((op.tag, op.src_start + p_oe, op.src_end + p_oe,
                         op.dest_start + p_we, op.dest_end + p_we))
            add(("equal", o_s, o_e, w_s, w_e))
        return ops


def _drop_isolated_duplicates(mems: np.ndarray, max_gap: int) -> np.ndarray:
    """The MEMs (rows sorted by out_start, work_start) without those that can never be chosen:
    a MEM no other MEM could chain with (none on a diagonal within ``max_gap`` has an output
    range within ``max_gap`` of its own) is a chain alone, and of such MEMs with the same output
    range only the earliest in the work can win the longest-first selection (equal keys but
    the work start; the others are then wholly claimed, or clipped exactly like it).

    An output repeating a passage the work holds R times makes R MEMs per repetition; this
    keeps one, so chaining and selection cost grows with the output, not output x R. The check
    over-approximates "could chain" (a MEM kept that could have gone only costs time).
    """
    m = len(mems)
    if m < 2:
        return mems
    os_, oe, ws = mems[:, 0], mems[:, 1], mems[:, 2]
    # Only MEMs sharing an output range can be dropped: when no two do (most outputs), the
    # neighbour search below is skipped (it costs ~17 numpy passes).
    if (os_[1:] != os_[:-1]).all() or len(np.unique(os_ * (int(oe.max()) + 1) + oe)) == m:
        return mems
    diag = ws - os_
    near = _near_small(os_, oe, diag, max_gap) if m <= _NEAR_PAIRS else _near(
        os_, oe, diag, max_gap)
    alone = np.flatnonzero(~near)
    if len(alone) < 2:
        return mems
    # Among lone MEMs with one output range, keep the first (rows are sorted by work start).
    rng = mems[alone, 0] * (int(oe.max()) + 1) + mems[alone, 1]
    _, first = np.unique(rng, return_index=True)
    keep = ~np.isin(np.arange(m), alone)
    keep[alone[first]] = True
    if keep.all():
        return mems
    log.debug("matcher: %d of %d MEMs are lone duplicates of an output range: dropped",
              int((~keep).sum()), m)
    return mems[keep]


_NEAR_PAIRS = 256
"""MEMs up to which :func:`_drop_isolated_duplicates` compares every pair at once (a few
array passes over m x m) rather than searching each MEM's neighbours per diagonal offset (some
140 array passes whatever m)."""


def _near_small(os_: np.ndarray, oe: np.ndarray, diag: np.ndarray, max_gap: int) -> np.ndarray:
    """:func:`_near` by comparing every pair: MEM i is near when another MEM j lies on a
    diagonal within ``max_gap`` of its own with ``oe[j] >= os[i] - max_gap`` and
    ``os[j] <= oe[i] + max_gap``."""
    near = ((np.abs(diag[:, None] - diag[None, :]) <= max_gap)
            & (oe[None, :] >= os_[:, None] - max_gap) & (os_[None, :] <= oe[:, None] + max_gap))
    np.fill_diagonal(near, False)
    return near.any(axis=1)  # type: ignore[no-any-return]


def _near(os_: np.ndarray, oe: np.ndarray, diag: np.ndarray, max_gap: int) -> np.ndarray:
    """Per MEM, whether another MEM could chain with it (see :func:`_near_small`), by a
    neighbour search per diagonal offset: O(m log m) per offset."""
    m = len(os_)
    # Per diagonal the MEMs are disjoint, so sorted by out_start they are sorted by out_end:
    # one int64 key (diagonal, out_end) finds, on any diagonal, the first MEM ending at or
    # after a position.
    span = int(oe.max()) + 2 * max_gap + 2
    dmin = int(diag.min()) - max_gap
    key = (diag - dmin) * span + oe
    order = np.argsort(key, kind="stable")
    skey, s_os = key[order], os_[order]
    near = np.zeros(m, dtype=bool)
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    for delta in range(-max_gap, max_gap + 1):
        d2 = diag + delta - dmin
        lo = d2 * span + np.maximum(os_ - max_gap, 0)  # first MEM ending >= os - max_gap ...
        i = np.searchsorted(skey, lo, side="left")
        if delta == 0:  # ... that is not the MEM itself
            i = np.where(i == rank, i + 1, i)
        ok = i < m
        j = np.minimum(i, m - 1)
        near |= ok & (skey[j] // span == d2) & (s_os[j] <= oe + max_gap)
    return near


def _longest_feasible(blocks: list[Block], costs: list[int], r: float) -> tuple[int, int]:
    """Indices ``(a, b)`` of the longest (in work words) run of blocks ``a..b`` whose anchored
    distance ``sum(costs[a:b])`` is <= ``r * max(out_len, work_len)``.

    Solved twice, once against each side's length (either bound implies the max bound), each in
    O(m log m): with G the prefix sums of costs, the condition against side s is
    ``r * end_s(b) - G[b] >= r * start_s(a) - G[a]``; for each b the earliest feasible a is
    found by binary search among the strictly decreasing prefix minima of the right-hand side.
    """
    m = len(blocks)
    best = (0, 0)
    best_len = blocks[0][3] - blocks[0][2]
    if m == 1:
        return best
    g = [0]
    for c in costs:
        g.append(g[-1] + c)
    for s_idx, e_idx in ((0, 1), (2, 3)):
        cand: list[int] = []
        neg_x: list[float] = []
        for b in range(m):
            x_b = r * blocks[b][s_idx] - g[b]
            if not cand or -x_b > neg_x[-1]:
                cand.append(b)
                neg_x.append(-x_b)
            y_b = r * blocks[b][e_idx] - g[b]
            p = bisect.bisect_left(neg_x, -(y_b + _EPS))
            if p < len(cand):
                a = cand[p]
                length = blocks[b][3] - blocks[a][2]
                if length > best_len:
                    best, best_len = (a, b), length
    return best


def _clip(blocks: list[Block], claimed: np.ndarray) -> list[list[Block]]:
    """The parts of a chain outside the claimed output words, as runs of blocks with no claimed
    word inside or between them."""
    runs: list[list[Block]] = []
    cur: list[Block] = []
    for o_s, o_e, w_s, w_e in blocks:
        if cur and claimed[cur[-1][1]:o_s].any():
            runs.append(cur)
            cur = []
        seg = claimed[o_s:o_e]
        if not seg.any():
            cur.append((o_s, o_e, w_s, w_e))
            continue
        fs, fe = _true_runs(~seg)
        for s, e in zip(fs, fe, strict=True):
            if s > 0 and cur:
                runs.append(cur)
                cur = []
            cur.append((o_s + s, o_s + e, w_s + s, w_s + e))
        if cur and (not fe or fe[-1] < o_e - o_s):
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs
