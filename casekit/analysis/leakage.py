"""Prompt-leakage discount (measurement.md section 3).

Text the tester supplied (system prompt, user prompt, prefill, seeds, summaries) must never be
credited as the model's recall:

- step 2, :func:`echo_mask`: output words inside a run of >= 5 words that also occurs in a
  prompt are masked before matching;
- step 3, :func:`supplied_positions`: work words whose text was given in the prompt are never
  credited;
- step 4, :class:`MgramTrim` [Liu26 Alg. 1]: work words inside a work m-gram (m = 5) that
  occurs in a prompt are never credited;
- :func:`discount` removes the never-credited work positions from spans and keeps the
  remaining sub-spans of >= k work words, with their alignment, out range and similarity
  recomputed from the original alignment.

Step 5 (the model's own earlier turns are not leakage) is the caller's business: pass only
tester-supplied texts here.

Cost. An analysis calls these once per attempt, so none of them may walk the whole work: the
never-credited positions are a :class:`PositionMask` (sorted runs, as many as the prompt has
m-grams found in the work), the prompt's m-grams are looked up in an index of the work built
once per work and profile (:class:`MgramTrim`), and supplied character ranges are located by
binary search over the work's word offsets. Per attempt the cost grows with the prompt and the
output, never with the work. :func:`mgram_positions` and :func:`supplied_mask` keep the dense
(one bool per work word) forms for tests and one-off use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from casekit.analysis.index import KgramIndex, Vocab, kgram_in
from casekit.analysis.matcher import Opcode, Span, similarity_from_cost
from casekit.normalize import Tokens, intersecting, tokenize

log = logging.getLogger(__name__)

_TAGS = ("equal", "replace", "delete", "insert")
_I64 = np.int64


class PositionMask:
    """A set of work positions as sorted, disjoint, non-adjacent half-open runs
    ``[starts[i], ends[i])``: the sparse form of a bool mask over a work's words."""

    __slots__ = ("ends", "starts")

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts = starts
        self.ends = ends

    @classmethod
    def from_runs(cls, starts: Iterable[int] | np.ndarray,
                  ends: Iterable[int] | np.ndarray) -> PositionMask:
        """The union of runs ``[starts[i], ends[i])`` in any order, overlapping or not; empty
        runs are dropped."""
        s = np.asarray(list(starts) if not isinstance(starts, np.ndarray) else starts, dtype=_I64)
        e = np.asarray(list(ends) if not isinstance(ends, np.ndarray) else ends, dtype=_I64)
        if s.shape != e.shape:
            raise ValueError("run starts and ends differ in length")
        keep = e > s
        s, e = s[keep], e[keep]
        if len(s) == 0:
            return cls(np.zeros(0, dtype=_I64), np.zeros(0, dtype=_I64))
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        reach = np.maximum.accumulate(e)
        # A run starts a new merged run when it begins after everything before it ended.
        new = np.concatenate(([True], s[1:] > reach[:-1]))
        idx = np.flatnonzero(new)
        ends_idx = np.concatenate((idx[1:], [len(s)])) - 1
        return cls(s[idx], reach[ends_idx])

    @classmethod
    def from_bool(cls, mask: np.ndarray) -> PositionMask:
        """The runs of True in a bool mask."""
        d = np.diff(np.concatenate(([0], np.asarray(mask, dtype=np.int8), [0])))
        return cls(np.flatnonzero(d == 1).astype(_I64), np.flatnonzero(d == -1).astype(_I64))

    def __or__(self, other: PositionMask) -> PositionMask:
        if not len(self.starts):
            return other
        if not len(other.starts):
            return self
        return PositionMask.from_runs(np.concatenate((self.starts, other.starts)),
                                      np.concatenate((self.ends, other.ends)))

    def __len__(self) -> int:
        """How many positions the mask holds."""
        return int((self.ends - self.starts).sum())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PositionMask) and np.array_equal(self.starts, other.starts)
                and np.array_equal(self.ends, other.ends))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        runs = ", ".join(f"[{a}, {b})" for a, b in zip(self.starts.tolist()[:5],
                                                       self.ends.tolist()[:5], strict=True))
        more = ", ..." if len(self.starts) > 5 else ""
        return f"PositionMask({runs}{more})"

    def any_in(self, lo: int, hi: int) -> bool:
        """True when some position in ``[lo, hi)`` is in the mask."""
        if hi <= lo or not len(self.starts):
            return False
        i = int(np.searchsorted(self.ends, lo, side="right"))  # first run ending after lo
        return i < len(self.starts) and int(self.starts[i]) < hi

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Bool per position: True where it is in the mask."""
        p = np.asarray(positions, dtype=_I64)
        if not len(self.starts):
            return np.zeros(p.shape, dtype=bool)
        i = np.searchsorted(self.starts, p, side="right") - 1
        ok = i >= 0
        out = np.zeros(p.shape, dtype=bool)
        out[ok] = self.ends[i[ok]] > p[ok]
        return out

    def to_bool(self, n: int) -> np.ndarray:
        """The dense mask over ``n`` positions."""
        depth = np.zeros(n + 1, dtype=_I64)
        s, e = np.minimum(self.starts, n), np.minimum(self.ends, n)
        np.add.at(depth, s, 1)
        np.add.at(depth, e, -1)
        return np.cumsum(depth[:n]) > 0


PositionMask.EMPTY = PositionMask(np.zeros(0, dtype=_I64),  # type: ignore[attr-defined]
                                  np.zeros(0, dtype=_I64))


def prompt_words(prompt_texts: Sequence[str], profile: str) -> list[list[str]]:
    """The words of each non-empty prompt text under ``profile`` (tokenize once, use for every
    step that needs them)."""
    return [tokenize(t, profile).words for t in prompt_texts if t]


def _joined_ids(vocab: Vocab, prompts: Sequence[Sequence[str]], *, add: bool) -> np.ndarray:
    """The prompts' word ids, each prompt followed by -1 so that no k-gram spans two prompts
    (k-grams holding a negative id never match)."""
    parts: list[np.ndarray] = []
    for words in prompts:
        parts.append(vocab.ids(words, add=add))
        parts.append(np.full(1, -1, dtype=_I64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=_I64)


def _cover(starts: np.ndarray, m: int, n: int) -> np.ndarray:
    """Bool over ``n`` positions: True inside some ``[s, s + m)``."""
    hit = np.zeros(n, dtype=bool)
    if len(starts):
        depth = np.zeros(n + 1, dtype=_I64)
        u = np.unique(starts)
        np.add.at(depth, u, 1)
        np.add.at(depth, np.minimum(u + m, n), -1)
        hit = np.cumsum(depth[:n]) > 0
    return hit


_ECHO_SMALL = 4096
"""Words (output and prompts) up to which :func:`_echo_hits` compares word tuples in a set:
O(n m) time and memory, fastest for short texts; longer ones take the arrays."""


def _tuples(words: Sequence[str], m: int) -> Iterable[tuple[str, ...]]:
    """Every m-gram of ``words`` as a tuple, in order (none when fewer than m words)."""
    return zip(*(words[j:] for j in range(m)), strict=False)  # shifted copies end early


def _echo_hits(words: Sequence[str], prompts: Sequence[Sequence[str]], m: int) -> np.ndarray:
    """Bool over ``words``: True where the word lies in an m-gram occurring contiguously in
    one of the prompts. Cost: O(n log n) time and O(n) memory in the prompts plus ``words``,
    whatever their repetition."""
    if m < 1:
        raise ValueError(f"run length must be >= 1, got {m}")
    n = len(words)
    if n < m or not prompts:
        return np.zeros(n, dtype=bool)
    if n + sum(len(p) for p in prompts) <= _ECHO_SMALL:
        # Short texts (an output and its prompt): a set of the prompts' m-grams, as word
        # tuples, does the same membership test without the array passes.
        # An m-gram can only be a prompt's when each of its words is a prompt word: only the
        # m-grams ending a run of m or more prompt words are made and looked up (an output
        # echoes little of its prompt; most of its words are not the prompt's). The prompts'
        # m-grams are made only when such a run occurs (in about half of the outputs of the
        # matter benchmark), as a set of word tuples.
        in_prompts = set().union(*prompts)
        grams: set[tuple[str, ...]] | None = None
        starts = []
        run = 0
        for i, w in enumerate(words):
            if w in in_prompts:
                run += 1
                if run >= m:
                    if grams is None:
                        grams = {g for p in prompts for g in _tuples(p, m)}
                    if tuple(words[i - m + 1:i + 1]) in grams:
                        starts.append(i - m + 1)
            else:
                run = 0
        if not starts:
            return np.zeros(n, dtype=bool)
        return _cover(np.array(starts, dtype=_I64), m, n)
    vocab = Vocab()
    ids = _joined_ids(vocab, prompts, add=True)
    if len(ids) <= m:
        return np.zeros(n, dtype=bool)
    # A membership test, not a pair lookup: a prompt and an output repeating one sentence
    # would otherwise make (output k-grams x prompt occurrences) pairs.
    hit = kgram_in(vocab.ids(words, add=False), ids, m)
    return _cover(np.flatnonzero(hit), m, n)


def echo_mask(out: Tokens, prompt_texts: Sequence[str], min_words: int = 5,
              profile: str = "light-words", *,
              prompts: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """Bool over output words: True inside a run of >= ``min_words`` consecutive words that
    also occurs contiguously in a prompt text (step 2, echo removal). ``prompts``: the prompt
    texts already tokenized with ``profile`` (:func:`prompt_words`), to tokenize them once."""
    if profile != out.profile:
        log.warning("echo_mask: output tokenized with %r, prompts with %r", out.profile, profile)
    if prompts is None:
        prompts = prompt_words(prompt_texts, profile)
    return _echo_hits(out.words, prompts, min_words)


def mask_char_ranges(mask: np.ndarray, tokens: Tokens) -> list[tuple[int, int]]:
    """Character ranges covered by runs of masked words."""
    out: list[tuple[int, int]] = []
    if not mask.any():
        return out  # most outputs echo nothing
    padded = np.concatenate([[False], mask.astype(bool), [False]]).astype(np.int8)
    d = np.diff(padded)
    for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
        c0, c1 = tokens.char_span(int(s), int(e))
        out.append((int(c0), int(c1)))
    return out


@dataclass(frozen=True)
class MgramTrim:
    """Step 4 [Liu26 Alg. 1] for one work and profile: the work's m-gram index, built once, in
    which each attempt's prompt m-grams are looked up. ``vocab`` maps the work's words to the
    ids ``index`` was built on."""

    vocab: Vocab
    index: KgramIndex

    @classmethod
    def for_tokens(cls, work: Tokens, m: int = 5) -> MgramTrim:
        """Build the vocabulary and the m-gram index of a work's tokens."""
        vocab = Vocab()
        return cls(vocab, KgramIndex(vocab.ids(work.words, add=True), m))

    @property
    def m(self) -> int:
        return self.index.k

    def starts(self, prompts: Sequence[Sequence[str]]) -> np.ndarray:
        """Sorted unique work positions where a work m-gram starts that occurs contiguously in
        one of the prompts (already tokenized with the work's profile)."""
        if not prompts:
            return np.zeros(0, dtype=_I64)
        ids = _joined_ids(self.vocab, prompts, add=False)
        # Each distinct prompt m-gram once: a prompt repeating a passage costs no more pairs.
        _, wpos = self.index.lookup(ids, distinct=True)
        return np.unique(wpos).astype(_I64, copy=False)

    def grams(self, prompts: Sequence[Sequence[str]]) -> frozenset[tuple[int, ...]]:
        """The m-grams (as word ids) occurring contiguously in one of the prompts (already
        tokenized with the work's profile), for :meth:`starts_in`. Unknown words are -1:
        m-grams holding one never match (as in the index), so they are left out."""
        m = self.m
        grams: set[tuple[int, ...]] = set()
        for words in prompts:
            ids = self.vocab.ids(words, add=False).tolist()
            runs = [ids]
            if ids and min(ids) < 0:  # the runs of known words
                runs = [[]]
                for x in ids:
                    if x < 0:
                        runs.append([])
                    else:
                        runs[-1].append(x)
            for r in runs:
                grams.update(zip(*(r[j:] for j in range(m)), strict=False))
        return frozenset(grams)

    def starts_in(self, grams: frozenset[tuple[int, ...]],
                  windows: Iterable[tuple[int, int]]) -> np.ndarray:
        """:meth:`starts` of the prompts whose :meth:`grams` are given, restricted to the
        starts ``s`` with ``lo <= s < hi`` for some window ``(lo, hi)``: the same positions
        there, found by testing the work's m-grams in the windows against the prompts'
        (compared on the word ids) instead of looking every prompt m-gram up in the whole
        work. The cost is the windows' length, not the number of times the prompt's phrases
        recur in the work (which grows with the work)."""
        m = self.m
        last = len(self.index.work_ids) - m + 1  # one past the last m-gram start
        found: list[int] = []
        if grams:
            for lo, hi in windows:
                lo, hi = max(0, lo), min(last, hi)
                if hi <= lo:
                    continue
                ids = self.index.work_ids[lo:hi + m - 1].tolist()
                found += [lo + i for i, g in enumerate(zip(*(ids[j:] for j in range(m)),
                                                           strict=False)) if g in grams]
        return np.unique(np.array(found, dtype=_I64))

    def positions_in(self, grams: frozenset[tuple[int, ...]],
                     ranges: Iterable[tuple[int, int]]) -> PositionMask:
        """:meth:`positions` of the prompts whose :meth:`grams` are given, where it matters
        for work ranges ``[lo, hi)``: the same positions inside each range (found by
        :meth:`starts_in`), none claimed outside them."""
        m = self.m
        wpos = self.starts_in(grams, ((lo - m + 1, hi) for lo, hi in ranges))
        if not len(wpos):
            return PositionMask.EMPTY  # type: ignore[attr-defined,no-any-return]
        return PositionMask.from_runs(wpos, wpos + m)

    def positions(self, prompts: Sequence[Sequence[str]]) -> PositionMask:
        """The work positions inside a work m-gram that occurs contiguously in one of the
        prompts (already tokenized with the work's profile)."""
        wpos = self.starts(prompts)
        if not len(wpos):
            return PositionMask.EMPTY  # type: ignore[attr-defined,no-any-return]
        return PositionMask.from_runs(wpos, wpos + self.m)


def trim_inside(intervals: Iterable[tuple[int, int]], mgram_starts: np.ndarray, m: int,
                k: int) -> list[tuple[int, int]]:
    """[Liu26 Alg. 1, lines 7-9] as the reference script does it: from each matched work
    interval ``[s, e)`` remove the work m-grams (starting at ``mgram_starts``, sorted) that lie
    wholly inside it and occur in the instruction, and keep the remaining pieces of >= ``k``
    words. An instruction m-gram that straddles the interval's edge removes nothing (unlike
    :func:`discount` with :meth:`MgramTrim.positions`, casekit's stricter default, which never
    credits a work word that any prompt m-gram touches)."""
    out: list[tuple[int, int]] = []
    for s, e in intervals:
        lo = int(np.searchsorted(mgram_starts, s, side="left"))
        hi = int(np.searchsorted(mgram_starts, e - m, side="right"))
        cur = s
        for p in mgram_starts[lo:hi].tolist():
            if p - cur >= k:
                out.append((cur, p))
            cur = max(cur, p + m)
        if e - cur >= k:
            out.append((cur, e))
    return out


def mgram_positions(work: Tokens, prompt_texts: Sequence[str], m: int = 5) -> np.ndarray:
    """Bool over work words: True where the word belongs to a work m-gram occurring in a prompt
    text (step 4, [Liu26 Alg. 1]); prompts are tokenized with the work's profile. Builds the
    work's index on every call: an analysis holds a :class:`MgramTrim` instead."""
    if m < 1:
        raise ValueError(f"run length must be >= 1, got {m}")
    if len(work) < m:
        return np.zeros(len(work), dtype=bool)
    trim = MgramTrim.for_tokens(work, m)
    return trim.positions(prompt_words(prompt_texts, work.profile)).to_bool(len(work))


def supplied_positions(work: Tokens, ranges: Sequence[tuple[int, int]]) -> PositionMask:
    """The work words whose raw char range intersects any of the raw char ranges ``[start,
    end)`` given in the prompt (step 3, position mask), found by binary search."""
    rr = [(int(a), int(b)) for a, b in ranges if int(b) > int(a)]
    if not rr or not len(work):
        return PositionMask.EMPTY  # type: ignore[attr-defined,no-any-return]
    a = np.array([x for x, _ in rr], dtype=_I64)
    b = np.array([y for _, y in rr], dtype=_I64)
    # Word i intersects [a, b) iff ends[i] > a and starts[i] < b; words are in text order, so
    # both bounds are monotone in i.
    lo = np.searchsorted(np.asarray(work.ends), a, side="right")
    hi = np.searchsorted(np.asarray(work.starts), b, side="left")
    return PositionMask.from_runs(lo, hi)


def supplied_mask(work: Tokens, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bool over work words: True where the word's raw char range intersects any of the raw
    char ranges ``[start, end)`` given in the prompt (step 3, position mask)."""
    return intersecting(work.starts, work.ends, ranges)


def _columns(span: Span) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The alignment as columns: output word (-1 for none), work word (-1), tag code."""
    outs: list[np.ndarray] = []
    works: list[np.ndarray] = []
    tags: list[np.ndarray] = []
    for tag, i1, i2, j1, j2 in span.opcodes:
        code = _TAGS.index(tag)
        if tag in ("equal", "replace"):
            if i2 - i1 != j2 - j1:
                raise ValueError(f"opcode {tag} with unequal sides in {span}")
            o, w = np.arange(i1, i2), np.arange(j1, j2)
        elif tag == "delete":
            o, w = np.arange(i1, i2), np.full(i2 - i1, -1)
        else:
            o, w = np.full(j2 - j1, -1), np.arange(j1, j2)
        outs.append(o)
        works.append(w)
        tags.append(np.full(len(o), code))
    if not outs:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), z.copy()
    return (np.concatenate(outs).astype(np.int64), np.concatenate(works).astype(np.int64),
            np.concatenate(tags).astype(np.int64))


def _sub_span(o: np.ndarray, w: np.ndarray, tag: np.ndarray) -> Span:
    """A span from a run of alignment columns (first and last columns are "equal")."""
    has_o, has_w = o >= 0, w >= 0
    out_start, work_start = int(o[has_o][0]), int(w[has_w][0])
    out_end, work_end = int(o[has_o][-1]) + 1, int(w[has_w][-1]) + 1
    cur_o = out_start + np.concatenate(([0], np.cumsum(has_o)))
    cur_w = work_start + np.concatenate(([0], np.cumsum(has_w)))
    change = np.flatnonzero(np.diff(tag)) + 1
    bounds = np.concatenate(([0], change, [len(tag)])).tolist()
    ops: list[Opcode] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        ops.append((_TAGS[int(tag[a])], int(cur_o[a]), int(cur_o[b]),
                    int(cur_w[a]), int(cur_w[b])))
    cost = int((tag != 0).sum())
    lo, lw = out_end - out_start, work_end - work_start
    return Span(out_start, out_end, work_start, work_end, similarity_from_cost(cost, lo, lw),
                cost == 0 and lo == lw, tuple(ops))


def discount(spans: Sequence[Span], work_mask: np.ndarray | PositionMask, k: int = 5, *,
             work_words: int | None = None) -> list[Span]:
    """Remove never-credited work positions from spans (steps 3-4).

    ``work_mask``: the never-credited work positions (the supplied-range positions united with
    the prompt's m-gram positions), as a :class:`PositionMask` or a bool array over the work's
    words; ``work_words``, the work's length, bounds the spans when the mask is sparse. Each
    span is cut at its masked work words (and the output words aligned to them); each remaining
    piece is trimmed to start and end on matching words and kept if it covers >= ``k`` work
    words. Pieces keep the original alignment: their opcodes are its restriction, their
    similarity is recomputed from it (``1 - edits / max(out_words, work_words)``). Spans
    untouched by the mask are returned as they are (if >= ``k`` work words).
    """
    if isinstance(work_mask, PositionMask):
        sparse, limit = work_mask, work_words
    else:
        dense = np.asarray(work_mask, dtype=bool)
        sparse, limit = PositionMask.from_bool(dense), len(dense)
    result: list[Span] = []
    for s in spans:
        if s.work_start < 0 or (limit is not None and s.work_end > limit) or s.out_start < 0:
            raise ValueError(f"span outside the work mask ({limit} words): {s}")
        if not sparse.any_in(s.work_start, s.work_end):
            if s.words >= k:
                result.append(s)
            continue
        o, w, tag = _columns(s)
        bad = np.zeros(len(w), dtype=bool)
        hw = w >= 0
        bad[hw] = sparse.contains(w[hw])
        d = np.diff(np.concatenate(([0], (~bad).astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(),
                        strict=True):
            eq = np.flatnonzero(tag[a:b] == 0)
            if len(eq) == 0:
                continue
            a2, b2 = a + int(eq[0]), a + int(eq[-1]) + 1
            piece = _sub_span(o[a2:b2], w[a2:b2], tag[a2:b2])
            if piece.words >= k:
                result.append(piece)
    return result
