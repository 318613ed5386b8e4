"""Coverage map (the coverage-map block of partials/further.html.j2): one lane per category
at exact word positions, and its numeric table.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup

from casekit.analysis.findings import (
    ModelWorkFinding,
    SpanFinding,
)
from casekit.report import catalogue as C
from casekit.report import figures
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import KV
from casekit.works import Work

log = logging.getLogger(__name__)


#: Shade levels of a coverage bin: 0 (nothing covered) to COVERAGE_LEVELS (all covered).
COVERAGE_LEVELS = 5
#: Parts of the work in the coverage map's numeric table (tenths, under the figure's ticks).
COVERAGE_PARTS = 10


@dataclass(frozen=True)
class CoverageBin:
    level: int
    """0 (no word of the bin covered) .. COVERAGE_LEVELS (every word covered)."""
    covered: int
    words: int


@dataclass(frozen=True)
class CoverageRow:
    key: str
    label: str
    note: str
    covered: str
    runs: list[tuple[int, int]]
    """Covered word ranges [start, end), merged and sorted (what the lane draws)."""
    lane: Markup
    """The lane of the figure: SVG from numbers only (casekit/report/figures.py)."""
    swatch: Markup
    legend_swatch: Markup
    """The same paint for the legend (its own pattern id: ids are unique in the document)."""
    passages: str
    longest: str
    parts: list[str]
    """Share of the words covered in each tenth of the work (the numeric table)."""


@dataclass(frozen=True)
class CoverageMap:
    total_words: str
    rows: list[CoverageRow]
    axis: Markup
    parts: list[KV]
    """Headers of the numeric table's columns: the tenths of the work, first and last word
    (label "1,004–", value "1,338": set on two lines, a column is narrow)."""


def _word_range(tokens: Any, start: int, end: int) -> tuple[int, int]:
    """Word indices of the tokens inside raw chars [start, end) (as the analyzer maps a
    teacher-forced window onto the coverage mask)."""
    lo = bisect.bisect_left(tokens.starts, start)
    hi = bisect.bisect_right(tokens.ends, end)
    return lo, max(lo, hi)


def _coverage_bins(ranges: Iterable[tuple[int, int]], total: int, nbins: int,
                   ) -> list[CoverageBin]:
    """Bins [floor(i*W/N), floor((i+1)*W/N)) of a work of W words, each with the number of
    its words inside the union of ``ranges`` (word index ranges [start, end))."""
    mask = bytearray(total)
    for lo, hi in ranges:
        lo, hi = max(0, lo), min(total, hi)
        if lo < hi:
            mask[lo:hi] = b"\x01" * (hi - lo)
    out: list[CoverageBin] = []
    for i in range(nbins):
        a, b = i * total // nbins, (i + 1) * total // nbins
        covered = sum(mask[a:b])
        words = b - a
        level = 0
        if covered:
            level = max(1, -(-covered * COVERAGE_LEVELS // words))  # ceiling: any word shows
        out.append(CoverageBin(level=level, covered=covered, words=words))
    return out


def _matched_ranges(s: SpanFinding) -> list[tuple[int, int]]:
    """Work word ranges of a span that the coverage counts: its exactly aligned words
    (``equal`` opcodes), as the analyzer marks them; the whole span when it has no opcodes."""
    if not s.opcodes:
        return [(s.work_word_start, s.work_word_end)]
    return [(j1, j2) for tag, _i1, _i2, j1, j2 in s.opcodes if tag == "equal"]


def coverage_ranges(table: AttemptTable, mw: ModelWorkFinding, work: Work,
                    ) -> dict[str, list[tuple[int, int]]]:
    """Work word ranges credited to one model x work (the exactly aligned words of credited
    spans), per row of the coverage map: extraction (adversarial attempts' spans),
    regurgitation (benign attempts' spans) and
    reconstruction (every attempt's spans plus the teacher-forced windows reproduced
    greedily: the union behind the coverage figure)."""
    out: dict[str, list[tuple[int, int]]] = {"extraction": [], "regurgitation": [],
                                             "reconstruction": []}
    tokens = None
    # Only attempts with spans or a teacher-forced window add anything.
    rows = np.flatnonzero(table.of(mw.model_id, mw.work_id)
                          & (table.has_spans | table.has_teacher_forced))
    for x in table.analyses(rows):
        spans = [r for s in x.spans for r in _matched_ranges(s)]
        if x.intent == "adversarial":
            out["extraction"] += spans
        elif x.intent == "benign":
            out["regurgitation"] += spans
        out["reconstruction"] += spans
        tf = x.teacher_forced
        if tf is not None and tf.greedy_reproduced and tf.suffix_chars is not None:
            if tokens is None:
                tokens = work.tokens
            out["reconstruction"].append(_word_range(tokens, *tf.suffix_chars))
    return out


def build_coverage_map(table: AttemptTable, mw: ModelWorkFinding, work: Work,
                       ids: figures.FigureIds) -> CoverageMap:
    """The figure (one SVG lane per category, exact word positions) and its numeric table
    (covered words, passages, longest passage, share covered per tenth of the work)."""
    total = mw.coverage.total_words
    nparts = max(1, min(COVERAGE_PARTS, total))
    ranges = coverage_ranges(table, mw, work)
    rows = []
    for key, label, note in C.COVERAGE_ROWS:
        runs = figures.merge_ranges(ranges[key], total)
        covered = sum(hi - lo for lo, hi in runs)
        parts = _coverage_bins(runs, total, nparts) if total else []
        longest = max((hi - lo for lo, hi in runs), default=0)
        rows.append(CoverageRow(
            key=key, label=label, note=note, runs=runs,
            covered=C.COVERED_WORDS.format(covered=f"{covered:,}", total=f"{total:,}",
                                           share=fmt_pct(covered / total if total else None)),
            lane=figures.coverage_lane(ids, key, runs, total),
            swatch=figures.swatch(ids, key),
            legend_swatch=figures.swatch(ids, key),
            passages=f"{len(runs):,}",
            longest=(C.LONGEST_PASSAGE.format(n=f"{longest:,}", where=runs_longest(runs))
                     if runs else DASH),
            parts=[fmt_pct(b.covered / b.words) if b.words else DASH for b in parts]))
    # Each column headed by its number; the word numbers of each part are listed under the
    # table (a novel's "143,846-159,826" does not fit a tenth of the page at 9 pt).
    heads = [KV(f"{i + 1}", f"{i * total // nparts + 1:,}\u2013{(i + 1) * total // nparts:,}")
             for i in range(nparts)]
    return CoverageMap(total_words=f"{total:,}", rows=rows,
                       axis=figures.coverage_axis(nparts), parts=heads)


def runs_longest(runs: Sequence[tuple[int, int]]) -> str:
    """The longest run as 1-based inclusive word numbers (the first of equal runs)."""
    lo, hi = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
    return f"{lo + 1:,}\u2013{hi:,}"
