"""Reconstruction exhibits (partials/reconstruction.html.j2): the longest contiguous block of a
model x work, when several attempts' outputs were stitched to make it, exhibited whole.

The memorization finding's block criterion counts the longest run of covered work words
across attempts, so a block can pass the case's threshold although no single output comes
near it. The judge must then see the block itself, which attempt covers which words, the work
text each attempt's prompt supplied (never credited to that attempt, but possibly covered by
another's output), and beside it the longest span any single output has in the block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from casekit.analysis.coverage import covered_positions
from casekit.analysis.findings import AttemptAnalysis, Findings, ModelWorkFinding
from casekit.errors import CasekitError
from casekit.normalize import tokenize
from casekit.report import catalogue as C
from casekit.report.ledger_facts import AttemptLookup
from casekit.report.table import AttemptTable
from casekit.report.text import (
    MATCH,
    SUPPLIED,
    Segment,
    opcode_ranges,
    paint,
    visible_segments,
    wrap_class,
)
from casekit.works import Work

log = logging.getLogger(__name__)

#: Characters of the work shown before and after a block (or a matched passage): where the
#: copying starts and stops is part of the evidence.
CONTEXT_CHARS = 300
#: Words of a block an exhibit shows at most (or the case's reconstruction threshold, when that
#: is larger): a block stitched from a novel's worth of outputs is shown by its first words
#: and the attempts that cover them, its extent and every contributor stated and listed in
#: findings.json, so that the pages follow the case's shape, not the number of attempts.
BLOCK_SHOWN_WORDS = 500
#: CSS classes of the reconstruction exhibit's own marks (casekit's words, never model text).
CONTRIB_TAG = "ctag"
BOUNDARY = "bmark"
CONTEXT = "context"


def context_bounds(raw: str, start: int, end: int, chars: int = CONTEXT_CHARS,
                   ) -> tuple[int, int]:
    """About ``chars`` characters before ``start`` and after ``end``, cut at a blank so that
    no word is shown in part."""
    lo = max(0, start - chars)
    if lo > 0:
        blank = raw.find(" ", lo, start)
        nl = raw.find("\n", lo, start)
        cuts = [c for c in (blank, nl) if c >= 0]
        lo = min(cuts) + 1 if cuts else start
    hi = min(len(raw), end + chars)
    if hi < len(raw):
        blank = raw.rfind(" ", end, hi)
        nl = raw.rfind("\n", end, hi)
        cut = max(blank, nl)
        hi = cut if cut >= 0 else end
    return lo, hi


@dataclass(frozen=True)
class Contributor:
    n: int
    tag: str
    attempt_id: str
    seq: str
    record_hash: str
    strategy: str
    intent: str
    kind: str
    covers: str
    """Work words of the block this attempt covers."""
    block_words: int
    longest_in_block: int
    """Its longest contiguous run of block words (what one output shows on its own)."""
    longest_span: str
    below_threshold: bool
    supplied: str
    exhibit: str
    exhibit_anchor: str
    output: list[Segment]
    output_note: str
    wrap: str


@dataclass(frozen=True)
class BlockExhibit:
    number: str
    anchor: str
    model_id: str
    work_id: str
    work_title: str
    role: str
    words: str
    work_words: str
    chars: str
    decides: bool
    verdict: str
    longest_single: str
    contributors: list[Contributor]
    """The contributing attempts exhibited: the fewest that cover the block whole, and the
    one with the longest single-output run in it."""
    total: int
    """Every attempt that covers words of the block (findings' longest_block_attempts)."""
    others_note: str
    shown_words: str
    shown_note: str
    """Empty when the block is shown whole; else which of its words are shown, and why."""
    original: list[Segment]
    original_wrap: str


@dataclass(frozen=True)
class _Inside:
    """One attempt's part in a block: its runs of covered block words, and the longest."""

    attempt_id: str
    runs: list[tuple[int, int]]
    longest: int
    words: int


def _runs(pos: np.ndarray) -> list[tuple[int, int]]:
    """Runs [lo, hi) of consecutive integers in increasing ``pos``."""
    if not len(pos):
        return []
    breaks = np.flatnonzero(np.diff(pos) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks + 1, [len(pos)]))
    return [(int(pos[a]), int(pos[b - 1]) + 1) for a, b in zip(starts, ends, strict=True)]


def _longest_run(pos: np.ndarray) -> int:
    return max((hi - lo for lo, hi in _runs(pos)), default=0)


def rests_on_stitching(mw: ModelWorkFinding, f: Findings, single: int) -> bool:
    """The memorization finding holds by the block criterion, and no single attempt covers
    the threshold's number of contiguous words of the block (``single``: the most any one
    covers): without stitching the block would not reach it."""
    th = f.thresholds
    return (mw.memorization == "memorization shown"
            and mw.coverage.longest_block_words >= th.substantial_portion_min_words
            and single < th.substantial_portion_min_words)


def _block_parts(table: AttemptTable, mw: ModelWorkFinding, work: Work) -> list[_Inside]:
    """Every block attempt's covered words inside the block, in the order findings.json lists
    them, read from the table a row group at a time: nothing but the runs is kept of each
    (a block stitched from a novel's worth of outputs has tens of thousands)."""
    cov = mw.coverage
    assert cov.longest_block_start is not None
    b0, b1 = cov.longest_block_start, cov.longest_block_start + cov.longest_block_words
    ids = list(cov.longest_block_attempts)
    rows = table.rows_of(ids)
    missing = [aid for aid, r in zip(ids, rows, strict=True) if r < 0]
    if missing:
        raise CasekitError(f"block attempt {missing[0]} is not in the findings' attempts; "
                           "re-run `casekit analyze`")
    got: dict[str, _Inside] = {}
    for x in table.analyses(rows):
        pos = covered_positions(x, work.tokens)
        inside = pos[(pos >= b0) & (pos < b1)]
        runs = _runs(inside)
        got[x.attempt_id] = _Inside(x.attempt_id, runs,
                                    max((b - a for a, b in runs), default=0), int(len(inside)))
    return [got[aid] for aid in ids]


def _stitched(mw: ModelWorkFinding, parts: list[_Inside]) -> bool:
    """The longest block needs more than one attempt: none covers all of it."""
    cov = mw.coverage
    if cov.longest_block_start is None or len(parts) < 2:
        return False
    return all(p.longest < cov.longest_block_words for p in parts)


def shown_words(f: Findings) -> int:
    """The most words of a block an exhibit shows: :data:`BLOCK_SHOWN_WORDS`, or the case's
    reconstruction threshold when that is larger (the part shown then reaches it)."""
    return max(BLOCK_SHOWN_WORDS, f.thresholds.substantial_portion_min_words)


def exhibited(parts: list[_Inside], b0: int, w1: int) -> list[int]:
    """Indexes into ``parts`` of the attempts an exhibit shows for the block words
    ``[b0, w1)``: the fewest whose runs cover them (:func:`minimal_cover`), and the attempt
    with the longest single run in the whole block (ties to the first listed), in list order."""
    keep = set(minimal_cover(b0, w1, [[(a, min(b, w1)) for a, b in p.runs if a < w1]
                                      for p in parts]))
    if parts:
        keep.add(max(range(len(parts)), key=lambda i: (parts[i].longest, -i)))
    return sorted(keep)


def minimal_cover(b0: int, b1: int, runs_of: list[list[tuple[int, int]]]) -> list[int]:
    """Indexes into ``runs_of`` of the fewest attempts whose runs cover ``[b0, b1)``, by the
    greedy interval cover (from the block's start, the run that reaches furthest among those
    starting at or before the first uncovered word: optimal for intervals), ties to the
    lower index. A word no run covers is stepped over, so a gap never loops."""
    runs = sorted((a, -b, i) for i, rs in enumerate(runs_of) for a, b in rs)
    chosen: list[int] = []
    frontier, j = b0, 0
    while frontier < b1:
        best: tuple[int, int] | None = None  # (end, -index)
        while j < len(runs) and runs[j][0] <= frontier:
            a, nb, i = runs[j]
            if best is None or (-nb, -i) > best:
                best = (-nb, -i)
            j += 1
        if best is None or best[0] <= frontier:
            if j >= len(runs):
                break
            frontier = runs[j][0]
            continue
        frontier = best[0]
        if -best[1] not in chosen:
            chosen.append(-best[1])
    return sorted(chosen)


def build_block_exhibit(number: int, mw: ModelWorkFinding, f: Findings,
                        parts: list[_Inside], keep: list[int],
                        analyses: dict[str, AttemptAnalysis], records: AttemptLookup, work: Work,
                        anchor_of: dict[str, tuple[str, str]],
                        ) -> BlockExhibit:
    """The block of ``mw`` exhibited: the work text with context, each contributing attempt's
    words tagged, the prompt-supplied text marked, and every contributing output shown. A
    block longer than :func:`shown_words` is shown by its first words (said on the page).
    ``parts``: every block attempt's runs in the block (:func:`_block_parts`); ``keep``: the
    indexes into it of those :func:`exhibited` picks, and ``analyses`` their analyses."""
    th = f.thresholds
    cov = mw.coverage
    assert cov.longest_block_start is not None
    b0, b1 = cov.longest_block_start, cov.longest_block_start + cov.longest_block_words
    w1 = min(b1, b0 + shown_words(f))
    toks = work.tokens
    c0, c1 = toks.char_span(b0, b1)
    cw1 = toks.char_span(b0, w1)[1]
    lo, hi = context_bounds(work.raw, c0, c1)
    if w1 < b1:
        hi = cw1
    # Per contributor: block words covered, and the work chars its prompt supplied.
    contributors: list[Contributor] = []
    covers: list[list[tuple[int, int]]] = []
    supplied: list[list[tuple[int, int]]] = []
    shown_outputs: list[tuple[str, str]] = []
    for n, i in enumerate(keep, start=1):
        aid = parts[i].attempt_id
        x = analyses[aid]
        runs = parts[i].runs
        inside_words = parts[i].words
        rec = records.get(x.seq)
        if rec is None or rec.attempt.id != aid or rec.hash != x.record_hash:
            raise CasekitError(f"block attempt {aid} is not in the ledger as the findings "
                               "record it; re-run `casekit analyze`")
        covers.append([toks.char_span(a, min(b, w1)) for a, b in runs if a < w1])
        sup = [(r.start, r.end) for r in rec.attempt.supplied]
        supplied.append(sup)
        in_block = [(max(s, c0), min(e, c1)) for s, e in sup if min(e, c1) > max(s, c0)]
        sup_words = [len(tokenize(work.raw[s:e], work.match_profile)) for s, e in sup]
        if sup:
            sup_text = "; ".join(
                C.BLOCK_SUPPLIED.format(chars=f"{s:,}\u2013{e:,}", words=f"{w:,}")
                for (s, e), w in zip(sup, sup_words, strict=True))
            sup_text += (C.BLOCK_SUPPLIED_INSIDE if in_block else C.BLOCK_SUPPLIED_OUTSIDE)
        else:
            sup_text = C.BLOCK_NOTHING_SUPPLIED
        text, note = "", ""
        if x.teacher_forced is not None:
            kind = C.BLOCK_KIND_TF
            note = C.BLOCK_TF_OUTPUT
            out_segs: list[Segment] = []
        else:
            kind = C.BLOCK_KIND_OUTPUT
            text = (rec.result.text if rec.result else None) or ""
            key = text.strip()
            same = next((m for t, m in shown_outputs if key and (key in t or t.strip() in key)),
                        None)
            if same is not None:
                note = C.BLOCK_SAME_OUTPUT.format(tag=same)
                out_segs = []
            else:
                shown_outputs.append((text, f"[{n}]"))
                spans = [s for s in x.spans if s.work_word_end > b0 and s.work_word_start < b1]
                ranges, _ = opcode_ranges(tokenize(text, work.match_profile), spans, "out")
                ranges += [(s, e, SUPPLIED) for s, e in x.echo_ranges]
                out_segs = paint(text, ranges)
        ex = anchor_of.get(aid)
        longest_in = parts[i].longest
        pos = covered_positions(x, toks)
        contributors.append(Contributor(
            n=n, tag=f"[{n}]", attempt_id=aid, seq=str(x.seq), record_hash=x.record_hash,
            strategy=x.strategy_key, intent=x.intent, kind=kind,
            covers="; ".join(f"{a:,}\u2013{b:,}" for a, b in runs),
            block_words=inside_words, longest_in_block=longest_in,
            longest_span=(f"{x.longest_words:,}" if x.teacher_forced is None
                          else f"{len(pos):,}"),
            below_threshold=(x.teacher_forced is None
                             and x.longest_words < f.min_span(mw.work_id)),
            supplied=sup_text, exhibit=ex[0] if ex else "", exhibit_anchor=ex[1] if ex else "",
            output=out_segs, output_note=note, wrap=wrap_class(out_segs)))
    original = _original(work.raw, lo, hi, c0, c1, covers, supplied)
    if w1 < b1:
        original.append(Segment(C.BLOCK_SHOWN_END_MARK.format(more=f"{b1 - w1:,}"), BOUNDARY))
    best = max(contributors, key=lambda c: (c.longest_in_block, -c.n))
    decides = rests_on_stitching(mw, f, best.longest_in_block)
    sp_words = th.substantial_portion_min_words
    if decides:
        verdict = C.BLOCK_DECIDES.format(words=f"{cov.longest_block_words:,}",
                                         threshold=f"{sp_words:,}", k=f"{len(parts):,}",
                                         single=f"{best.longest_in_block:,}")
    elif cov.longest_block_words >= sp_words:
        verdict = C.BLOCK_REACHES_NOT_DECIDING.format(
            words=f"{cov.longest_block_words:,}", threshold=f"{sp_words:,}",
            status=mw.memorization)
    else:
        verdict = C.BLOCK_BELOW.format(words=f"{cov.longest_block_words:,}",
                                       threshold=f"{sp_words:,}")
    return BlockExhibit(
        number=f"R-{number}", anchor=f"block-{number}", model_id=mw.model_id,
        work_id=mw.work_id, work_title=work.spec.title, role=mw.role,
        words=f"{cov.longest_block_words:,}", work_words=f"{b0:,}\u2013{b1:,}",
        chars=f"{c0:,}\u2013{c1:,}", decides=decides, verdict=verdict,
        longest_single=C.BLOCK_LONGEST_SINGLE.format(
            words=f"{best.longest_in_block:,}", tag=best.tag, seq=best.seq),
        contributors=contributors, total=len(parts),
        others_note=(C.BLOCK_OTHERS.format(total=f"{len(parts):,}", shown=f"{len(contributors):,}",
                                           others=f"{len(parts) - len(contributors):,}")
                     if len(parts) > len(contributors) and w1 == b1 else
                     C.BLOCK_OTHERS_PART.format(total=f"{len(parts):,}",
                                                shown=f"{len(contributors):,}")
                     if len(parts) > len(contributors) else ""),
        shown_words=f"{w1 - b0:,}",
        shown_note=(C.BLOCK_SHOWN_PART.format(
            shown=f"{w1 - b0:,}", words=f"{b1 - b0:,}", range=f"{b0:,}\u2013{w1:,}",
            chars=f"{c0:,}\u2013{cw1:,}", cap=f"{shown_words(f):,}") if w1 < b1 else ""),
        original=original, original_wrap=wrap_class(original))


def tag_list(nums: tuple[int, ...]) -> str:
    """Contributor numbers as short as they read: runs of three or more as ranges,
    "1–4, 7, 9–12" (sorted input). Separated by ", " so that a long tag can wrap."""
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{nums[i]}–{nums[j]}")
        else:
            parts.extend(str(n) for n in nums[i:j + 1])
        i = j + 1
    return ", ".join(parts)


def _original(raw: str, lo: int, hi: int, c0: int, c1: int,
              covers: list[list[tuple[int, int]]], supplied: list[list[tuple[int, int]]],
              ) -> list[Segment]:
    """The work text [lo, hi) with the block [c0, c1) marked: context plain (class
    ``context``), a boundary mark at each end, each contributor's words highlighted and
    tagged ``[n]`` where the set of contributors changes, prompt-supplied text marked."""
    cuts = {lo, hi, c0, c1}
    for runs in covers + supplied:
        for s, e in runs:
            cuts.update(p for p in (s, e) if lo < p < hi)
    points = sorted(p for p in cuts if lo <= p <= hi)
    out: list[Segment] = []
    prev_who: tuple[int, ...] = ()
    prev_sup: tuple[int, ...] = ()
    for a, b in zip(points, points[1:], strict=False):
        if a == c0:
            out.append(Segment(C.BLOCK_START_MARK, BOUNDARY))
        if a == c1:
            out.append(Segment(C.BLOCK_END_MARK, BOUNDARY))
        piece = raw[a:b]
        if a < c0 or a >= c1:
            out.extend(visible_segments(piece, CONTEXT))
            continue
        who = tuple(i + 1 for i, runs in enumerate(covers) if any(s <= a < e for s, e in runs))
        sup = tuple(i + 1 for i, runs in enumerate(supplied) if any(s <= a < e for s, e in runs))
        if sup and sup != prev_sup:
            out.append(Segment(C.BLOCK_SUPPLIED_TAG.format(tags=tag_list(sup)), CONTRIB_TAG))
        if who and who != prev_who:
            out.append(Segment(f"[{tag_list(who)}]", CONTRIB_TAG))
        if who or piece.strip():
            prev_who = who or prev_who
        prev_sup = sup
        cls = " ".join(c for c, on in ((MATCH, bool(who)), (SUPPLIED, bool(sup))) if on)
        out.extend(visible_segments(piece, cls))
    if hi == c1:
        out.append(Segment(C.BLOCK_END_MARK, BOUNDARY))
    return out


def build_block_exhibits(f: Findings, table: AttemptTable, records: AttemptLookup,
                         works: dict[str, Work], anchor_of: dict[str, tuple[str, str]],
                         ) -> dict[tuple[str, str], BlockExhibit]:
    """A reconstruction exhibit per model x work whose longest block reaches the reporting
    threshold and is stitched: no single attempt covers all of it (numbered R-1, R-2, ... in
    findings order). Each block's attempts are read once for their runs in it; analyses are
    made again only for the few exhibited."""
    out: dict[tuple[str, str], BlockExhibit] = {}
    for mw in f.findings:
        cov = mw.coverage
        if cov.longest_block_words < f.thresholds.min_span_words or cov.longest_block_start is None:
            continue
        work = works[mw.work_id]
        parts = _block_parts(table, mw, work)
        if not _stitched(mw, parts):
            continue
        b0 = cov.longest_block_start
        w1 = min(b0 + cov.longest_block_words, b0 + shown_words(f))
        keep = exhibited(parts, b0, w1)
        analyses = table.by_id(parts[i].attempt_id for i in keep)
        out[(mw.model_id, mw.work_id)] = build_block_exhibit(
            len(out) + 1, mw, f, parts, keep, analyses, records, work, anchor_of)
    return out
