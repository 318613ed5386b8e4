"""Which work words an attempt covers, and which attempts build a block: what the coverage of
a model x work, its longest block and the report's reconstruction exhibits are made of."""

from __future__ import annotations

import numpy as np

from casekit.analysis.findings import AttemptAnalysis
from casekit.normalize import Tokens
from casekit.strategies.measures import word_range


def _longest_consecutive(pos: np.ndarray) -> int:
    """The longest run of consecutive integers in increasing ``pos`` (its length)."""
    if not len(pos):
        return 0
    breaks = np.flatnonzero(np.diff(pos) != 1)
    bounds = np.concatenate(([0], breaks + 1, [len(pos)]))
    return int(np.diff(bounds).max())


def covered_positions(x: AttemptAnalysis, tokens: Tokens) -> np.ndarray:
    """The work words (light-words positions) an attempt put in its model x work's coverage:
    its credited spans' exactly aligned words, or a greedily reproduced teacher-forced
    window's words. Increasing, without repeats."""
    if x.teacher_forced is not None:
        tf = x.teacher_forced
        if not tf.greedy_reproduced or tf.suffix_chars is None:
            return np.zeros(0, dtype=np.int64)
        lo, hi = word_range(tokens, *tf.suffix_chars)
        return np.arange(lo, hi, dtype=np.int64)
    parts = [np.arange(j1, j2, dtype=np.int64) for s in x.spans
             for tag, _i1, _i2, j1, j2 in s.opcodes if tag == "equal"]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def block_contributors(attempts: list[AttemptAnalysis], tokens: Tokens, start: int | None,
                       words: int) -> list[str]:
    """The attempts that cover words of the block ``[start, start + words)``, ordered by
    their first word in it (then ledger order)."""
    if start is None or words <= 0:
        return []
    found: list[tuple[int, int, str]] = []
    end = start + words
    for x in attempts:
        if x.teacher_forced is None:
            # The first covered word inside: from the credited spans' "equal" ranges (whose
            # union is covered_positions), without making the positions.
            first = min((max(j1, start) for s in x.spans
                         for tag, _i1, _i2, j1, j2 in s.opcodes
                         if tag == "equal" and j1 < end and j2 > start and j2 > j1), default=None)
            if first is not None:
                found.append((first, x.seq, x.attempt_id))
            continue
        pos = covered_positions(x, tokens)
        inside = pos[(pos >= start) & (pos < end)]
        if len(inside):
            found.append((int(inside[0]), x.seq, x.attempt_id))
    return [aid for _, _, aid in sorted(found)]


def longest_run(mask: np.ndarray) -> tuple[int, int | None]:
    """The longest run of True in ``mask``: its length and start (None when there is none)."""
    if not mask.any():
        return 0, None
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    lengths = ends - starts
    i = int(np.argmax(lengths))
    return int(lengths[i]), int(starts[i])
